"""Labelled text sets: reading files, named sets, Hugging Face datasets, the label encoder, splits and pairs.

One concern per module:

* :mod:`.labels`: the one label encoder (:class:`LabelEncoding`; ``1``, ``1.0`` and ``"1"`` are one class), used by
  the loaders and the evaluators, and :class:`UnseenLabelWarning`;
* :mod:`.reading`: ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json`` files, every row located by file and line;
* :mod:`.named`: the bundled TREC set and the shared offline data folder;
* :mod:`.splits`: :class:`SplitSet`, :func:`load_splits`, :func:`from_hf_dataset`, seeded (stratified) carving;
* :mod:`.pairs`: :func:`symmetrize_pairs` (only after the split) and :class:`PairLeakWarning`.

Example::

    from sbert_align.data import load_splits, train_validation_split

    data = load_splits("trec6")
    data = train_validation_split(data, validation_fraction=0.1, seed=0)
    train = data.dataset("train")          # datasets.Dataset with columns text, label (int ids)
    print(data.label_names[:3], len(data.texts("validation")))
"""

from __future__ import annotations

from .labels import (
    LabelEncoding,
    UnseenLabelWarning,
    decode_labels,
    encode_label_lists,
    encode_labels,
    label_name,
    unseen_labels,
    warn_unseen_labels,
)
from .named import (
    DEFAULT_DEMO_DATA,
    NAMED_SETS,
    bundled_path,
    find_split_file,
    named_set_key,
    resolve_named_set,
    shared_data_dir,
)
from .pairs import PairLeakWarning, symmetrize_pairs
from .reading import Rows, check_columns, read_rows, read_table
from .splits import SplitSet, carve_indices, find_empty_texts, from_hf_dataset, load_splits, train_validation_split

__all__ = [
    "SplitSet",
    "LabelEncoding",
    "encode_labels",
    "decode_labels",
    "read_table",
    "load_splits",
    "from_hf_dataset",
    "train_validation_split",
    "symmetrize_pairs",
    "PairLeakWarning",
    "shared_data_dir",
    "bundled_path",
    "NAMED_SETS",
    "DEFAULT_DEMO_DATA",
    # added with the package split
    "UnseenLabelWarning",
    "label_name",
    "encode_label_lists",
    "unseen_labels",
    "warn_unseen_labels",
    "Rows",
    "read_rows",
    "check_columns",
    "carve_indices",
    "find_empty_texts",
    "find_split_file",
    "named_set_key",
    "resolve_named_set",
]

"""Labelled text sets: reading files, named sets, Hugging Face datasets, the label encoder, splits and pairs.

One concern per module:

* :mod:`.labels`: the one label encoder (:class:`LabelEncoding`; ``1``, ``1.0`` and ``"1"`` are one class), used by
  the loaders and the evaluators, and the one unseen-label check (:func:`check_unseen_labels`,
  :class:`UnseenLabelWarning`);
* :mod:`.texts`: the one empty-text rule (:func:`find_empty_texts`), used by the loaders and the evaluators;
* :mod:`.reading`: ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json`` files, every row located by file and line;
* :mod:`.named`: the bundled TREC set and the shared offline data folder;
* :mod:`.container`: :class:`SplitSet`, the split set every loader returns;
* :mod:`.carving`: seeded (stratified) carving of held-out splits, :func:`carve_indices` and
  :func:`train_validation_split`;
* :mod:`.columns`: which columns hold the texts and the label, and whether the labels are classes or scores;
* :mod:`.building`: located rows -> :class:`SplitSet`, with every row checked;
* :mod:`.loading`: :func:`load_splits` (names, files, folders, the hub) and :func:`from_hf_dataset`;
* :mod:`.pairs`: :func:`symmetrize_pairs` (only after the split) and :class:`PairLeakWarning`;
* :mod:`.corpus`: real prose for self-supervised pairs: :func:`read_python_docs` (the Python documentation from
  Debian's ``python3-doc``), :class:`Document`;
* :mod:`.nearby`: :func:`nearby_pairs` (units near each other in one document, never across documents) and
  :func:`split_documents` (train / held-out by document).

Example::

    from sbert_align.data import load_splits, train_validation_split

    data = load_splits("trec6")
    data = train_validation_split(data, validation_fraction=0.1, seed=0)
    train = data.dataset("train")          # datasets.Dataset with columns text, label (int ids)
    print(data.label_names[:3], len(data.texts("validation")))
"""

from __future__ import annotations

from .carving import carve_indices, train_validation_split
from .container import SplitSet
from .corpus import Document, html_to_document, load_documents, python_docs_dir, read_python_docs, save_documents
from .labels import (
    LabelEncoding,
    UnseenLabelWarning,
    check_unseen_labels,
    decode_labels,
    encode_label_lists,
    encode_labels,
    label_name,
    unseen_labels,
    warn_unseen_labels,
)
from .loading import from_hf_dataset, load_splits
from .named import (
    DEFAULT_DEMO_DATA,
    NAMED_SETS,
    bundled_path,
    find_split_file,
    named_set_key,
    resolve_named_set,
    shared_data_dir,
)
from .nearby import (
    NearbyPairs,
    ShortDocumentWarning,
    document_units,
    nearby_pairs,
    split_documents,
    split_sentences,
)
from .pairs import PairLeakWarning, symmetrize_pairs
from .reading import Rows, check_columns, read_rows, read_table
from .texts import find_empty_texts

__all__ = [
    "SplitSet",
    "Document",
    "read_python_docs",
    "html_to_document",
    "python_docs_dir",
    "save_documents",
    "load_documents",
    "nearby_pairs",
    "NearbyPairs",
    "split_documents",
    "split_sentences",
    "document_units",
    "ShortDocumentWarning",
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
    "check_unseen_labels",
    "Rows",
    "read_rows",
    "check_columns",
    "carve_indices",
    "find_empty_texts",
    "find_split_file",
    "named_set_key",
    "resolve_named_set",
]

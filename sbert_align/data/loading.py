"""Loading a labelled set by name, path or Hugging Face name: :func:`load_splits` and :func:`from_hf_dataset`.

Both find the rows (a named set, a file, a folder, a hub data set) and hand them to :mod:`.building`, which checks
every row and builds the :class:`SplitSet`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .building import _build_split_set
from .carving import _check_carve
from .container import SplitSet
from .named import NAMED_SETS, find_split_file, named_set_key, resolve_named_set
from .reading import SUFFIXES, Rows, read_rows

__all__ = ["load_splits", "from_hf_dataset"]


def load_splits(
    spec: str | os.PathLike,
    *,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    allow_empty_texts: bool = False,
) -> SplitSet:
    """Load a labelled set by short name, local path or Hugging Face name, check every row, and split it.

    Names and paths:

    * ``trec6`` / ``trec50``: the bundled TREC question set (``label_coarse`` / ``label_fine``), always offline;
    * ``banking77``, ``clinc150``, ``sst2``, ``mrpc``, ``stsb``, ``quora``: the shared offline copies (see
      :func:`shared_data_dir`);
    * a ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json`` file: a test split is carved from it (seeded, stratified by class
      for classification sets, see :func:`carve_indices`);
    * a folder holding ``train.*`` and ``test.*`` (``dev.*`` / ``val.*`` / ``validation.*`` when there is no test);
    * ``hf:<name>`` (or any ``owner/name`` that is not a local path): ``datasets.load_dataset``, when the hub is
      reachable (see :func:`from_hf_dataset`).

    Data format: a text column (``text`` / ``sentence``) or two (``text1`` + ``text2``, ``sentence1`` + ``sentence2``,
    ``question1`` + ``question2``; renamed to ``text`` / ``text1`` / ``text2``) and a label column (``label``,
    ``labels``, ``label_coarse``, ``score``, ``intent`` or ``category``). Class labels become ids into
    ``label_names`` (:class:`LabelEncoding`: ``1``, ``1.0`` and ``"1"`` are one class); a column named ``score``, or
    one holding only numbers of which some are not integers, is kept as float similarity scores. Validation splits are
    carved from train later (:func:`train_validation_split`), never from test.

    Args:
        spec: ``trec6``, ``trec50``, ``banking77``, ... ; a file or folder path; ``hf:<name>``.
        text_columns: Text column(s), e.g. ``["question"]``; detected when ``None``.
        label_column: The label column; detected when ``None``.
        test_fraction: For a single file without a test split, the share carved off (seeded) as test.
        seed: Seed of that carving.
        allow_empty_texts: Keep empty and whitespace-only texts instead of refusing them.

    Returns:
        The :class:`SplitSet` with ``train`` and ``test``.

    Raises:
        ValueError: an unknown name, missing shared data, an unreadable file; a ragged CSV / TSV row, a JSON row
            without a needed column, a row without a label, a non-integer number among class labels, or empty texts
            (each naming the file and line of the first such row, and how many there are); missing columns.

    Warns:
        UnseenLabelWarning: the test split holds class labels that never occur in train (the message gives their count
            and up to 10 of them).

    Example:
        ::

            from sbert_align.data import load_splits, train_validation_split

            data = load_splits("trec6")
            data = train_validation_split(data, validation_fraction=0.1, seed=0)
            train = data.dataset("train")  # datasets.Dataset with columns text, label (int ids)
            print(data.label_names[:3], len(data.texts("validation")))
    """
    spec_str = str(spec)
    key = named_set_key(spec_str)
    path = Path(spec_str).expanduser()
    common = {"allow_empty_texts": allow_empty_texts, "stacklevel": 3}
    if key is not None and not path.exists():
        named = resolve_named_set(key)
        raw = {"train": read_rows(named.train), "test": read_rows(named.test)}
        label = label_column or (named.label if named.label in raw["train"].columns else None)
        return _build_split_set(key, raw, text_columns or named.text_columns, label, named.source, **common)
    if path.is_file():
        _check_carve(test_fraction, what="test")
        rows = read_rows(path)
        if not len(rows):
            raise ValueError(f"data: {path} has no rows.")
        raw = {"all": rows}
        return _build_split_set(
            path.stem, raw, text_columns, label_column, str(path), carve=(test_fraction, seed), **common
        )
    if path.is_dir():
        train = find_split_file(path, ["train"])
        test = find_split_file(path, ["test", "dev", "val", "validation"])
        if train is None or test is None:
            raise ValueError(f"data: folder {str(path)!r} must hold train.* and test.* (csv, tsv or jsonl).")
        raw = {"train": read_rows(train), "test": read_rows(test)}
        return _build_split_set(path.name, raw, text_columns, label_column, str(path), **common)
    if path.suffix.lower() in SUFFIXES and not spec_str.startswith("hf:"):
        raise ValueError(f"data: no such file {spec_str!r}.")
    if spec_str.startswith("hf:") or ("/" in spec_str and not spec_str.startswith((".", "/", "~"))):
        return _load_hub(
            spec_str.removeprefix("hf:"), text_columns, label_column, test_fraction, seed, allow_empty_texts
        )
    known = ", ".join(sorted(NAMED_SETS))
    raise ValueError(f"data: {spec_str!r} is neither a known name ({known}), an existing path, nor hf:<name>.")


def _load_hub(
    name: str,
    text_columns: Sequence[str] | None,
    label_column: str | None,
    test_fraction: float,
    seed: int,
    allow_empty_texts: bool,
) -> SplitSet:
    try:
        import datasets

        ds = datasets.load_dataset(name)
    except Exception as e:  # offline, unknown name, gated, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"data: could not load {name!r} from the Hugging Face hub ({first[:200]}).") from None
    return from_hf_dataset(
        ds,
        name=name,
        text_columns=text_columns,
        label_column=label_column,
        test_fraction=test_fraction,
        seed=seed,
        allow_empty_texts=allow_empty_texts,
    )


def from_hf_dataset(
    ds: Any,
    *,
    name: str = "hf",
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    allow_empty_texts: bool = False,
) -> SplitSet:
    """A ``datasets.DatasetDict`` (or one ``Dataset``) -> :class:`SplitSet`, with the checks of :func:`load_splits`.

    Class labels of a ``ClassLabel`` feature keep their names (``-1``, the "no label" of unlabelled test splits, is a
    missing label). Without a ``test`` split, ``validation`` (or ``dev`` / ``val``) is used as test; a single split
    gets a seeded test carve-out (:func:`carve_indices`). Messages locate rows as ``split '<name>' row <index>``.

    Args:
        ds: A ``DatasetDict`` with a ``train`` split, or a ``Dataset``.
        name: The set's name.
        text_columns: Text column(s); detected when None.
        label_column: The label column; detected when None.
        test_fraction: Share carved off as test when there is only a train split.
        seed: Seed of that carving.
        allow_empty_texts: Keep empty and whitespace-only texts instead of refusing them.

    Returns:
        The :class:`SplitSet`.

    Raises:
        ValueError: no ``train`` split, missing columns or labels, or empty texts (naming the split and row index).

    Warns:
        UnseenLabelWarning: the test split holds class labels that never occur in train.

    Example:
        ::

            from datasets import Dataset
            from sbert_align.data import from_hf_dataset

            ds = Dataset.from_dict({"text": [f"text {i}" for i in range(10)], "label": ["a", "b"] * 5})
            data = from_hf_dataset(ds, name="toy", test_fraction=0.2, seed=0)
            print(data.summary())  # toy: texts, train 8, test 2, 2 classes
    """
    from datasets import Dataset

    parts = {"train": ds} if isinstance(ds, Dataset) else dict(ds)
    if "train" not in parts:
        raise ValueError(f"{name}: no 'train' split (has {sorted(parts)}).")
    test_key = next((k for k in ("test", "validation", "dev", "val") if k in parts), None)

    def rows_of(split: str) -> Rows:
        d = parts[split]
        rows = d.to_list()
        for col, feat in d.features.items():
            if hasattr(feat, "names") and hasattr(feat, "int2str"):
                for r in rows:
                    v = r.get(col)
                    r[col] = None if v is None or int(v) < 0 else feat.int2str(int(v))
        return Rows.from_records(rows, source=f"split {split!r}")

    common = {"allow_empty_texts": allow_empty_texts, "stacklevel": 3}
    if test_key is None:
        raw = {"train": rows_of("train")}
        return _build_split_set(
            name, raw, text_columns, label_column, f"hf:{name}", carve=(test_fraction, seed), **common
        )
    raw = {"train": rows_of("train"), "test": rows_of(test_key)}
    return _build_split_set(name, raw, text_columns, label_column, f"hf:{name}", **common)

"""Split labelled sets: :class:`SplitSet`, loading (:func:`load_splits`, :func:`from_hf_dataset`) and seeded carving.

Two kinds of sets, one container:

* classification: a ``text`` column and a ``label`` column (class names or ids);
* pairs: ``text1``, ``text2`` and a ``label`` (0/1) or a similarity ``score``.

Carving (:func:`carve_indices`, used by :func:`train_validation_split` and for the test split of a single file) is
``sklearn.model_selection.train_test_split``, seeded: stratified by class for classification sets, plain for pair and
score sets. Stratification needs every class to have at least two members and both sides to have room for every
class; when that fails, a documented per-class fallback is used with a warning.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .labels import LabelEncoding, decode_labels, label_name, warn_unseen_labels
from .named import NAMED_SETS, find_split_file, named_set_key, resolve_named_set
from .reading import SUFFIXES, Rows, check_columns, read_rows

__all__ = ["SplitSet", "load_splits", "from_hf_dataset", "train_validation_split", "carve_indices", "find_empty_texts"]

_TEXT_CANDIDATES = (
    ("text1", "text2"),
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("text",),
    ("sentence",),
)
_LABEL_CANDIDATES = ("label", "labels", "label_coarse", "score", "intent", "category")
_RENAME = {"sentence": "text", "sentence1": "text1", "sentence2": "text2", "question1": "text1", "question2": "text2"}
_EMPTY_TEXT_HINT = "Remove or fill them, or pass allow_empty_texts=True to keep them."


def find_empty_texts(texts: Sequence[Any]) -> list[int]:
    """Positions of the empty or whitespace-only texts (``None`` counts as empty).

    Example:
        ::

            from sbert_align.data import find_empty_texts

            assert find_empty_texts(["a", "", "  ", None, "b"]) == [1, 2, 3]
    """
    return [i for i, t in enumerate(texts) if t is None or (isinstance(t, str) and not t.strip())]


# ----------------------------------------------------------------------------------------------- container
@dataclass
class SplitSet:
    """A labelled text set that has been split: ``train``, ``test`` and optionally ``validation``.

    Each split is a dict of equal-length columns: the text columns (``text``, or ``text1`` and ``text2``) and
    ``label``. Class labels are stored as integer ids into ``label_names``; a similarity score (STS-B) is stored as a
    float and ``label_names`` is ``None``.

    Args:
        name: The set's name.
        splits: ``{split: {column: values}}``; ``train`` and ``test`` are required.
        text_columns: ``("text",)`` for classification, ``("text1", "text2")`` for pairs.
        label_names: Class names in id order; None for similarity scores.
        source: Where the data came from.
        notes: How the data were changed (carving, symmetrising), for reports.
        allow_empty_texts: Keep empty or whitespace-only texts; by default they are refused.

    Raises:
        ValueError: a missing ``train`` / ``test`` split or column, columns of different lengths, an empty train split,
            or empty texts (naming the split, the row and how many) unless ``allow_empty_texts``.

    Example:
        ::

            from sbert_align.data import SplitSet

            data = SplitSet(
                "toy",
                {"train": {"text": ["hi", "bye"], "label": [0, 1]}, "test": {"text": ["hello"], "label": [0]}},
                label_names=["greet", "leave"],
            )
            print(data.summary())  # toy: texts, train 2, test 1, 2 classes
    """

    name: str
    splits: dict[str, dict[str, list]]
    text_columns: tuple[str, ...] = ("text",)
    label_names: list[str] | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)
    allow_empty_texts: bool = False

    def __post_init__(self) -> None:
        for required in ("train", "test"):
            if required not in self.splits:
                raise ValueError(f"splits: a {required!r} split is required, got {sorted(self.splits)}.")
        for split, cols in self.splits.items():
            missing = [c for c in (*self.text_columns, "label") if c not in cols]
            if missing:
                raise ValueError(f"splits[{split!r}]: missing columns {missing}.")
            lengths = {len(cols[c]) for c in (*self.text_columns, "label")}
            if len(lengths) != 1:
                raise ValueError(f"splits[{split!r}]: columns have different lengths {sorted(lengths)}.")
        if len(self.splits["train"]["label"]) == 0:
            raise ValueError(f"{self.name}: the train split is empty.")
        if not self.allow_empty_texts:
            empty = {
                (split, c): find_empty_texts(cols[c]) for split, cols in self.splits.items() for c in self.text_columns
            }
            count = sum(len(v) for v in empty.values())
            if count:
                (split, column), rows = next((key, v) for key, v in empty.items() if v)
                raise ValueError(
                    f"{self.name}: {count} empty or whitespace-only text{'s' if count != 1 else ''}; the first is in "
                    f"split {split!r} row {rows[0]} (column {column!r}). {_EMPTY_TEXT_HINT}"
                )

    @property
    def is_pairs(self) -> bool:
        """Whether the set holds text pairs (two text columns)."""
        return len(self.text_columns) == 2

    @property
    def num_classes(self) -> int | None:
        """The number of classes; None for similarity scores."""
        return None if self.label_names is None else len(self.label_names)

    def split_names(self) -> list[str]:
        """The split names, e.g. ``["train", "test", "validation"]``."""
        return list(self.splits)

    def _get(self, split: str) -> dict[str, list]:
        if split not in self.splits:
            raise ValueError(f"split: {split!r} is not one of {sorted(self.splits)}.")
        return self.splits[split]

    def texts(self, split: str = "train") -> list[str]:
        """The texts of a classification split (for pairs, use :meth:`pairs`)."""
        if self.is_pairs:
            raise ValueError(f"{self.name} is a pair set; use .pairs(split) instead of .texts(split).")
        return list(self._get(split)[self.text_columns[0]])

    def pairs(self, split: str = "train") -> list[tuple[str, str]]:
        """The ``(text1, text2)`` pairs of a pair split."""
        cols = self._get(split)
        if not self.is_pairs:
            raise ValueError(f"{self.name} is not a pair set.")
        return list(zip(cols[self.text_columns[0]], cols[self.text_columns[1]]))

    def labels(self, split: str = "train") -> list:
        """The labels of a split: class ids, or float scores."""
        return list(self._get(split)["label"])

    def label_strings(self, split: str = "train") -> list[str]:
        """The labels of a split as class names (scores as strings)."""
        labels = self.labels(split)
        return decode_labels(labels, self.label_names) if self.label_names is not None else [str(v) for v in labels]

    def dataset(self, split: str = "train"):
        """The split as a ``datasets.Dataset`` with the columns the sbert-align losses expect."""
        from datasets import Dataset

        cols = self._get(split)
        return Dataset.from_dict({c: list(cols[c]) for c in (*self.text_columns, "label")})

    def subsample(self, split: str, n: int | None, seed: int = 0) -> SplitSet:
        """Keep at most ``n`` rows of one split (seeded, order kept); ``None`` keeps everything."""
        cols = self._get(split)
        size = len(cols["label"])
        if n is None or n >= size:
            return self
        if n <= 0:
            raise ValueError(f"n: expected a positive number of rows, got {n}.")
        keep = sorted(random.Random(seed).sample(range(size), n))
        new = dict(self.splits)
        new[split] = {c: [v[i] for i in keep] for c, v in cols.items()}
        return replace(self, splits=new)

    def summary(self) -> str:
        """One line: name, kind, split sizes and the number of classes."""
        sizes = ", ".join(f"{s} {len(c['label'])}" for s, c in self.splits.items())
        kind = "pairs" if self.is_pairs else "texts"
        classes = f", {self.num_classes} classes" if self.label_names is not None else ", scores"
        return f"{self.name}: {kind}, {sizes}{classes}"


# ----------------------------------------------------------------------------------------------- carving
def _fallback_split(labels: Sequence[int], n_held: int, fraction: float, seed: int) -> list[int]:
    """Per class, a seeded ``round(size * fraction)`` held out; at least one on each side for classes of two or more,
    nothing for classes of one; when that holds nothing out, ``n_held`` rows at random."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    held: list[int] = []
    for y in sorted(by_class, key=str):
        idx = by_class[y]
        if len(idx) < 2:
            continue
        rng.shuffle(idx)
        held += idx[: min(max(round(len(idx) * fraction), 1), len(idx) - 1)]
    if not held:
        held = rng.sample(range(len(labels)), n_held)
    return held


def carve_indices(
    n: int,
    fraction: float,
    seed: int = 0,
    labels: Sequence[Any] | None = None,
    *,
    what: str = "validation",
    label_names: Sequence[str] | None = None,
    stacklevel: int = 2,
) -> tuple[list[int], list[int]]:
    """Seeded split of ``n`` rows into kept and held-out indices (both sorted, so row order is kept).

    ``round(n * fraction)`` rows (at least 1, at most ``n - 1``) are held out with
    ``sklearn.model_selection.train_test_split(random_state=seed)``, stratified by ``labels`` when they are given.
    Stratification needs every class to have at least two members and both sides to hold at least one row per class;
    otherwise a ``UserWarning`` says why and a per-class fallback is used: each class of two or more members holds out
    ``round(size * fraction)`` of them (at least 1, at most ``size - 1``), classes of one member stay whole on the kept
    side (when that holds out nothing, ``round(n * fraction)`` rows are drawn at random).

    Args:
        n: Number of rows.
        fraction: Share held out, in ``(0, 1)``.
        seed: The seed; the same seed gives the same split.
        labels: Class labels to stratify by; None (pairs, scores) for a plain shuffled split.
        what: The held-out split's name, for messages.
        label_names: Class names by id, when ``labels`` are ids, so that messages name classes, not ids.
        stacklevel: Passed to :func:`warnings.warn` for the fallback warning.

    Returns:
        ``(kept, held)`` sorted row indices.

    Raises:
        ValueError: ``fraction`` outside ``(0, 1)``, fewer than 2 rows, or labels of the wrong length.

    Example:
        ::

            from sbert_align.data import carve_indices

            kept, held = carve_indices(10, 0.2, seed=0, labels=[0, 1] * 5)
            assert len(held) == 2 and sorted(kept + held) == list(range(10))
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"{what}_fraction: expected a number in (0, 1), got {fraction!r}.")
    if n < 2:
        raise ValueError(f"cannot carve a {what} split out of {n} row(s); at least 2 are needed.")
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels: expected {n} labels, got {len(labels)}.")
    from sklearn.model_selection import train_test_split

    n_held = min(max(round(n * fraction), 1), n - 1)
    order = np.arange(n)
    if labels is None:
        kept, held = train_test_split(order, test_size=n_held, random_state=seed, shuffle=True)
        return sorted(kept.tolist()), sorted(held.tolist())
    counts = Counter(labels)
    single = sorted((y for y, c in counts.items() if c < 2), key=str)
    if single:
        named = [repr(label_names[y] if label_names is not None else y) for y in single]
        shown = ", ".join(named[:10]) + (", ..." if len(named) > 10 else "")
        reason = f"{len(single)} class(es) have a single row ({shown})"
    elif n_held < len(counts):
        reason = f"the {what} split would hold {n_held} rows, fewer than the {len(counts)} classes"
    elif n - n_held < len(counts):
        reason = f"the kept rows ({n - n_held}) would be fewer than the {len(counts)} classes"
    else:
        reason = None
    if reason is None:
        kept, held = train_test_split(order, test_size=n_held, random_state=seed, shuffle=True, stratify=list(labels))
        return sorted(kept.tolist()), sorted(held.tolist())
    warnings.warn(
        f"{what} split: cannot stratify with scikit-learn ({reason}); using the per-class fallback instead: classes "
        "of one row stay out of the held-out split, every other class keeps at least one row on each side.",
        UserWarning,
        stacklevel=stacklevel,
    )
    held_set = set(_fallback_split(list(labels), n_held, fraction, seed))
    return [i for i in range(n) if i not in held_set], sorted(held_set)


def _take(cols: Mapping[str, list], indices: Sequence[int]) -> dict[str, list]:
    return {c: [v[i] for i in indices] for c, v in cols.items()}


def _warn_unseen(data: SplitSet, splits: Sequence[str], stacklevel: int) -> None:
    """Warn (:class:`UnseenLabelWarning`) for held-out splits with class labels that never occur in train."""
    if data.label_names is None:
        return
    seen = set(data.splits["train"]["label"])
    for split in splits:
        labels = data.splits[split]["label"]
        unseen_ids = sorted({y for y in labels if y not in seen})
        if unseen_ids:
            warn_unseen_labels(
                [data.label_names[y] for y in unseen_ids],
                held_out=f"{data.name}: the {split!r} split",
                seen="train",
                count=sum(y not in seen for y in labels),
                stacklevel=stacklevel + 1,
            )


# ----------------------------------------------------------------------------------------------- building
def _pick_columns(
    columns: Sequence[str], text_columns: Sequence[str] | None, label_column: str | None, where: str
) -> tuple[tuple[str, ...], str]:
    cols = set(columns)
    if text_columns is None:
        for cand in _TEXT_CANDIDATES:
            if all(c in cols for c in cand):
                text_columns = cand
                break
        else:
            raise ValueError(
                f"{where}: cannot find the text column(s) among {sorted(cols)}; expected 'text' (or 'sentence') or "
                "'text1' + 'text2' (or sentence1/2, question1/2). Pass text_columns=[...] "
                "(command line: --text-column NAME)."
            )
    missing = [c for c in text_columns if c not in cols]
    if missing:
        raise ValueError(
            f"{where}: text column(s) {missing} not found among {sorted(cols)}. Pass text_columns=[...] "
            "(command line: --text-column NAME)."
        )
    if label_column is None:
        label_column = next((c for c in _LABEL_CANDIDATES if c in cols and c not in text_columns), None)
        if label_column is None:
            raise ValueError(
                f"{where}: cannot find a label column among {sorted(cols)}; expected one of "
                f"{list(_LABEL_CANDIDATES)}. "
                "Pass label_column=... (command line: --label-column NAME)."
            )
    elif label_column not in cols:
        raise ValueError(
            f"{where}: label column {label_column!r} not found among {sorted(cols)}. Pass label_column=... "
            "(command line: --label-column NAME)."
        )
    if label_column in text_columns:
        raise ValueError(f"{where}: {label_column!r} cannot be both a text column and the label column.")
    return tuple(text_columns), label_column


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _is_score_column(label_column: str, values: Sequence[Any]) -> bool:
    """A similarity score column: named ``score``, or numbers only with at least one that is not an integer."""
    if label_column == "score":
        return True
    numbers = [_as_float(v) for v in values]
    if any(f is None for f in numbers):
        return False
    return any(not f.is_integer() for f in numbers if np.isfinite(f))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _check_text_columns(text_columns: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if text_columns is None:
        return None
    cols = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if len(cols) not in (1, 2):
        raise ValueError(f"text_columns: expected one column (texts) or two (pairs), got {list(cols)}.")
    return cols


def _build(
    name: str,
    raw: Mapping[str, Rows],
    text_columns: Sequence[str] | None,
    label_column: str | None,
    source: str,
    *,
    allow_empty_texts: bool,
    carve: tuple[float, int] | None = None,
    stacklevel: int = 3,
) -> SplitSet:
    """Located rows per split -> :class:`SplitSet` (shared column choice, shared label encoding, row checks).

    With ``carve=(test_fraction, seed)``, ``raw`` holds one table that is split into ``train`` and ``test``.
    """
    first_split, first = next(iter(raw.items()))
    if len(first) == 0:
        raise ValueError(f"{name}: {first.source} has no rows.")
    text_columns, label_column = _pick_columns(first.columns, _check_text_columns(text_columns), label_column, name)
    needed = (*text_columns, label_column)
    for rows in raw.values():
        if len(rows):
            _pick_columns(rows.columns, text_columns, label_column, f"{name} ({rows.source})")
            check_columns(rows, needed, name)

    missing = [(rows, i) for rows in raw.values() for i, r in enumerate(rows.rows) if _missing(r[label_column])]
    if missing:
        rows, i = missing[0]
        raise ValueError(
            f"{name}: {rows.where(i)} has no value in the label column {label_column!r}; "
            f"{_count(len(missing), 'row')} in all without a label. Every row needs one."
        )
    scores = _is_score_column(label_column, [r[label_column] for rows in raw.values() for r in rows.rows])
    labels: dict[str, list] = {}
    for split, rows in raw.items():
        out = []
        for i, r in enumerate(rows.rows):
            v = r[label_column]
            try:
                if scores:
                    f = _as_float(v)
                    if f is None or not np.isfinite(f):
                        raise ValueError(f"{v!r} is not a finite number, and {label_column!r} holds similarity scores")
                    out.append(f)
                else:
                    out.append(label_name(v))
            except ValueError as e:
                raise ValueError(f"{name}: {rows.where(i)}, label column {label_column!r}: {e}") from None
        labels[split] = out
    encoding = None if scores else LabelEncoding.fit(*labels.values())

    splits: dict[str, dict[str, list]] = {}
    empty: list[tuple[Rows, int, str]] = []
    for split, rows in raw.items():
        cols: dict[str, list] = {}
        for c in text_columns:
            values = [r[c] for r in rows.rows]
            empty += [(rows, i, c) for i in find_empty_texts(values)]
            cols[c] = ["" if v is None else str(v) for v in values]
        cols["label"] = labels[split] if encoding is None else encoding.encode(labels[split])
        splits[split] = cols
    if empty and not allow_empty_texts:
        rows, i, column = empty[0]
        raise ValueError(
            f"{name}: {_count(len(empty), 'empty or whitespace-only text')}; the first is at {rows.where(i)} "
            f"(column {column!r}). {_EMPTY_TEXT_HINT}"
        )

    notes = []
    if carve is not None:
        fraction, seed = carve
        cols = splits.pop(first_split)
        stratify = None if encoding is None or len(text_columns) == 2 else cols["label"]
        kept, held = carve_indices(
            len(cols["label"]),
            fraction,
            seed,
            stratify,
            what="test",
            label_names=None if encoding is None else encoding.names,
            stacklevel=stacklevel + 1,
        )
        splits = {"train": _take(cols, kept), "test": _take(cols, held)}
        how = "stratified" if stratify is not None else "not stratified"
        notes.append(f"test split carved from {first.source}: {fraction:.0%}, seed {seed} ({how})")

    splits = {s: {_RENAME.get(c, c): v for c, v in cols.items()} for s, cols in splits.items()}
    data = SplitSet(
        name=name,
        splits=splits,
        text_columns=tuple(_RENAME.get(c, c) for c in text_columns),
        label_names=None if encoding is None else list(encoding.names),
        source=source,
        notes=notes,
        allow_empty_texts=allow_empty_texts,
    )
    _warn_unseen(data, [s for s in data.splits if s != "train"], stacklevel + 1)
    return data


# ----------------------------------------------------------------------------------------------- loading
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
        return _build(key, raw, text_columns or named.text_columns, label, named.source, **common)
    if path.is_file():
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}.")
        rows = read_rows(path)
        if not len(rows):
            raise ValueError(f"data: {path} has no rows.")
        raw = {"all": rows}
        return _build(path.stem, raw, text_columns, label_column, str(path), carve=(test_fraction, seed), **common)
    if path.is_dir():
        train = find_split_file(path, ["train"])
        test = find_split_file(path, ["test", "dev", "val", "validation"])
        if train is None or test is None:
            raise ValueError(f"data: folder {str(path)!r} must hold train.* and test.* (csv, tsv or jsonl).")
        raw = {"train": read_rows(train), "test": read_rows(test)}
        return _build(path.name, raw, text_columns, label_column, str(path), **common)
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
        return _build(name, raw, text_columns, label_column, f"hf:{name}", carve=(test_fraction, seed), **common)
    raw = {"train": rows_of("train"), "test": rows_of(test_key)}
    return _build(name, raw, text_columns, label_column, f"hf:{name}", **common)


# ----------------------------------------------------------------------------------------------- validation
def train_validation_split(
    data: SplitSet, validation_fraction: float = 0.1, seed: int = 0, stratify: bool = True
) -> SplitSet:
    """Carve a seeded ``validation`` split out of ``train`` (never out of test).

    ``round(len(train) * validation_fraction)`` rows are held out with
    ``sklearn.model_selection.train_test_split(random_state=seed)`` (:func:`carve_indices`), stratified by class when
    the labels are classes and ``stratify`` is set; pair and score sets are split without stratification. When
    stratification is impossible (a class with a single row, or fewer validation rows than classes), a warning says so
    and the per-class fallback of :func:`carve_indices` is used. The same seed gives the same split; row order is kept.

    Args:
        data: The set; it must not have a validation split yet.
        validation_fraction: Share of train held out, in ``(0, 1)``.
        seed: The seed.
        stratify: Stratify by class (classification sets only).

    Returns:
        A new :class:`SplitSet` with ``train``, ``test`` and ``validation``.

    Raises:
        ValueError: a validation split already exists, ``validation_fraction`` outside ``(0, 1)``, or fewer than two
            train rows.

    Example:
        ::

            from sbert_align.data import load_splits, train_validation_split

            data = train_validation_split(load_splits("trec6"), validation_fraction=0.1, seed=0)
            print(len(data.texts("validation")))  # 545
    """
    if "validation" in data.splits:
        raise ValueError(f"{data.name} already has a validation split.")
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, (int, float))
        or not 0 < validation_fraction < 1
    ):
        raise ValueError(f"validation_fraction: expected a number in (0, 1), got {validation_fraction!r}.")
    train = data.splits["train"]
    n = len(train["label"])
    if n < 2:
        raise ValueError(f"{data.name}: train has {n} row(s); cannot carve a validation split.")
    labels = train["label"] if stratify and data.label_names is not None and not data.is_pairs else None
    kept, held = carve_indices(
        n, validation_fraction, seed, labels, what="validation", label_names=data.label_names, stacklevel=3
    )
    new = dict(data.splits)
    new["train"] = _take(train, kept)
    new["validation"] = _take(train, held)
    how = "stratified" if labels is not None else "not stratified"
    out = replace(
        data,
        splits=new,
        notes=[*data.notes, f"validation carved from train: {validation_fraction:.0%}, seed {seed} ({how})"],
    )
    _warn_unseen(out, ["validation"], stacklevel=3)
    return out

"""The container of a split labelled set: :class:`SplitSet`, and the warning for held-out labels unseen in train.

Two kinds of sets, one container:

* classification: a ``text`` column and a ``label`` column (class ids into ``label_names``);
* pairs: ``text1``, ``text2`` and a ``label`` (0/1) or a similarity ``score`` (``label_names`` is ``None``).

The loaders (:mod:`.loading`) build it, :mod:`.carving` adds a validation split.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .labels import check_unseen_labels, decode_labels
from .texts import _EMPTY_TEXT_HINT, find_empty_texts

__all__ = ["SplitSet"]


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


def _warn_unseen(data: SplitSet, splits: Sequence[str], stacklevel: int) -> None:
    """Warn (:class:`UnseenLabelWarning`) for held-out splits with class labels that never occur in train."""
    if data.label_names is None:
        return
    names = data.label_names
    seen = [names[y] for y in set(data.splits["train"]["label"])]
    for split in splits:
        check_unseen_labels(
            [names[y] for y in data.splits[split]["label"]],
            seen,
            held_out=f"{data.name}: the {split!r} split",
            seen="train",
            stacklevel=stacklevel + 1,
        )

"""What the ``sbert-align`` commands share: the error type they report as one line, and data loading with the
command-line column options.

Example::

    from sbert_align.cli.common import DataOptions, load_data

    data = load_data("trec6", DataOptions(label_column="label_fine"), max_train=500)
    print(data.summary())
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..data import SplitSet, load_splits

__all__ = [
    "PROG",
    "CLIError",
    "Log",
    "DataOptions",
    "load_data",
    "is_score_pairs",
    "numeric_labels",
    "positive_pairs",
    "first_line",
]

PROG = "sbert-align"

#: a progress logger: one line of text (the command line prints ``[sbert-align] ...`` to stderr)
Log = Callable[[str], None]


class CLIError(ValueError):
    """A failure to report as one line ``sbert-align: error: ...`` (exit status 1)."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when the message is empty), cut to ``limit``."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


@dataclass(frozen=True)
class DataOptions:
    """How to read a data file or folder: the ``--text-column`` / ``--label-column`` / ``--allow-empty-texts``
    options, passed on to :func:`sbert_align.data.load_splits`.

    Args:
        text_columns: the text column (one) or the two columns of a pair; ``None`` detects them.
        label_column: the label (or score) column; ``None`` detects it.
        allow_empty_texts: keep rows whose text is empty instead of refusing the data.

    Example::

        from sbert_align.cli.common import DataOptions

        opts = DataOptions(text_columns=("question1", "question2"), label_column="is_duplicate")
    """

    text_columns: tuple[str, ...] | None = None
    label_column: str | None = None
    allow_empty_texts: bool = False

    def __post_init__(self) -> None:
        if self.text_columns is not None:
            cols = (self.text_columns,) if isinstance(self.text_columns, str) else tuple(self.text_columns)
            if len(cols) not in (1, 2) or not all(isinstance(c, str) and c for c in cols):
                raise ValueError(
                    f"text_columns: expected one column name, or two for pairs, got {list(self.text_columns)!r}."
                )
            object.__setattr__(self, "text_columns", cols)

    @classmethod
    def from_args(cls, args: Any) -> DataOptions:
        """The options of a parsed command line (absent attributes keep their defaults)."""
        return cls(
            text_columns=getattr(args, "text_columns", None) or None,
            label_column=getattr(args, "label_column", None),
            allow_empty_texts=bool(getattr(args, "allow_empty_texts", False)),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded with results, compared when a partial result is reused)."""
        return {
            "text_columns": None if self.text_columns is None else list(self.text_columns),
            "label_column": self.label_column,
            "allow_empty_texts": self.allow_empty_texts,
        }


def load_data(
    spec: str | os.PathLike,
    options: DataOptions | None = None,
    *,
    max_train: int | None = None,
    seed: int = 0,
) -> SplitSet:
    """:func:`sbert_align.data.load_splits` with the command-line options, then at most ``max_train`` train rows.

    Args:
        spec: a data name, file, folder or ``hf:NAME`` (see :func:`sbert_align.data.load_splits`).
        options: column options (default: detect everything).
        max_train: keep at most this many train rows (seeded subsample; ``None`` keeps all).
        seed: seed of the subsample.

    Example::

        from sbert_align.cli.common import load_data

        data = load_data("trec6", max_train=300)
    """
    options = options or DataOptions()
    kwargs: dict[str, Any] = {}
    if options.text_columns is not None:
        kwargs["text_columns"] = list(options.text_columns)
    if options.label_column is not None:
        kwargs["label_column"] = options.label_column
    if options.allow_empty_texts:
        kwargs["allow_empty_texts"] = True
    return load_splits(spec, **kwargs).subsample("train", max_train, seed=seed)


def is_score_pairs(data: SplitSet) -> bool:
    """True for pairs labelled with float similarity scores (STS-B): pairs whose ``label_names`` is ``None``."""
    return data.is_pairs and data.label_names is None


def numeric_labels(data: SplitSet, split: str) -> list[float] | None:
    """The labels of ``split`` as numbers: scores as they are, class names that are numbers ("0", "1") as those
    numbers; ``None`` when a class name is not a number."""
    if data.label_names is None:
        return [float(v) for v in data.labels(split)]
    try:
        return [float(s) for s in data.label_strings(split)]
    except ValueError:
        return None


def positive_pairs(data: SplitSet, split: str) -> list[tuple[str, str]]:
    """The pairs of a 0/1 pair set whose label is 1 (a duplicate / paraphrase)."""
    values = numeric_labels(data, split)
    if values is None:
        raise CLIError(f"data: {data.name} pair labels {data.label_names} are not 0/1.")
    return [p for p, y in zip(data.pairs(split), values) if y == 1]

"""Which columns of a table hold the texts and the label, and what the label column holds.

* text columns: ``text`` / ``sentence`` (classification) or ``text1`` + ``text2``, ``sentence1`` + ``sentence2``,
  ``question1`` + ``question2`` (pairs), renamed to ``text`` / ``text1`` / ``text2``; or the columns the user names;
* the label column: ``label``, ``labels``, ``label_coarse``, ``score``, ``intent`` or ``category``; or the one the
  user names. A column named ``score``, or one holding only numbers of which some are not integers, holds similarity
  scores; any other holds class labels, encoded with :class:`LabelEncoding`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .labels import LabelEncoding, label_name
from .reading import Rows, _count
from .texts import find_empty_texts

_TEXT_CANDIDATES = (
    ("text1", "text2"),
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("text",),
    ("sentence",),
)
_LABEL_CANDIDATES = ("label", "labels", "label_coarse", "score", "intent", "category")
_RENAME = {"sentence": "text", "sentence1": "text1", "sentence2": "text2", "question1": "text1", "question2": "text2"}


def _check_text_columns(text_columns: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if text_columns is None:
        return None
    cols = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if len(cols) not in (1, 2):
        raise ValueError(f"text_columns: expected one column (texts) or two (pairs), got {list(cols)}.")
    return cols


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


def _read_labels(
    name: str, raw: Mapping[str, Rows], label_column: str
) -> tuple[dict[str, list], LabelEncoding | None]:
    """The label column of every split: class ids (and their :class:`LabelEncoding`) or float similarity scores.

    Every row needs a label. A column named ``score``, or one holding only numbers of which some are not integers,
    holds similarity scores (the encoding is then None); otherwise the labels are classes, one encoding for all
    splits (``1``, ``1.0`` and ``"1"`` are one class).

    Raises:
        ValueError: a row without a label, a score that is not a finite number, or a value that is not a class label,
            naming the row's location (and how many rows lack a label).
    """
    missing = [(rows, i) for rows in raw.values() for i in find_empty_texts([r[label_column] for r in rows.rows])]
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
    if scores:
        return labels, None
    encoding = LabelEncoding.fit(*labels.values())
    return {split: encoding.encode(values) for split, values in labels.items()}, encoding

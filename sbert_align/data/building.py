"""Located rows per split -> :class:`SplitSet`: the columns, the labels and the texts checked, a test split carved.

:func:`sbert_align.data.load_splits` and :func:`sbert_align.data.from_hf_dataset` read the rows (:class:`Rows`, each
row located by file and line, or by split and index) and hand them here, so both check the same things and name the
first bad row the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .carving import _take, carve_indices
from .columns import _RENAME, _check_text_columns, _pick_columns, _read_labels
from .container import SplitSet, _warn_unseen
from .reading import Rows, _count, check_columns
from .texts import _EMPTY_TEXT_HINT, find_empty_texts


def _build_split_set(
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

    labels, encoding = _read_labels(name, raw, label_column)

    splits: dict[str, dict[str, list]] = {}
    empty: list[tuple[Rows, int, str]] = []
    for split, rows in raw.items():
        cols: dict[str, list] = {}
        for c in text_columns:
            values = [r[c] for r in rows.rows]
            empty += [(rows, i, c) for i in find_empty_texts(values)]
            cols[c] = ["" if v is None else str(v) for v in values]
        cols["label"] = labels[split]
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

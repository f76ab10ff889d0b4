"""Pair utilities: symmetrising text pairs only after the split, and the warning for pairs that leak across it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .container import SplitSet

__all__ = ["symmetrize_pairs", "PairLeakWarning"]


class PairLeakWarning(UserWarning):
    """A held-out pair (in either order) also appears in train."""


def symmetrize_pairs(data: Any, *, held_out: Sequence[str] = ("validation", "test")) -> Any:
    """Add the swapped copy ``(text2, text1, label)`` of every *train* pair; held-out splits stay as they are.

    Pairs must be symmetrised only after the split: swapped copies made before the split put the same pair on both
    sides of it (leakage). So this function only accepts split data: a :class:`SplitSet` of pairs, or a
    ``datasets.DatasetDict`` with a ``train`` split and ``text1`` / ``text2`` columns.

    Args:
        data: A :class:`SplitSet` of pairs, or a ``datasets.DatasetDict`` with ``train`` and a held-out split.
        held_out: The held-out splits checked for leaked pairs.

    Returns:
        An object of the same kind with ``train`` symmetrised.

    Raises:
        ValueError: unsplit data (a single ``Dataset``, a list or a dict of columns), a set that is not a pair set,
            no held-out split, or no ``text1`` / ``text2`` columns.

    Warns:
        PairLeakWarning: a pair of a held-out split (in either order) also appears in train, before symmetrising.

    Example:
        ::

            from sbert_align.data import load_splits, symmetrize_pairs, train_validation_split

            data = train_validation_split(load_splits("mrpc"), validation_fraction=0.1, seed=0)
            data = symmetrize_pairs(data)  # train doubled; validation and test unchanged
    """
    from datasets import Dataset, DatasetDict

    if isinstance(data, SplitSet):
        if not data.is_pairs:
            raise ValueError(f"symmetrize_pairs: {data.name} is not a pair set (text columns {data.text_columns}).")
        c1, c2 = data.text_columns
        splits = data.splits
    elif isinstance(data, DatasetDict):
        if "train" not in data:
            raise ValueError("symmetrize_pairs: the DatasetDict has no 'train' split; split the data first.")
        cols = data["train"].column_names
        if "text1" not in cols or "text2" not in cols:
            raise ValueError(f"symmetrize_pairs: expected 'text1' and 'text2' columns, got {cols}.")
        c1, c2 = "text1", "text2"
        splits = {k: {c: data[k][c] for c in data[k].column_names} for k in data}
    else:
        raise ValueError(
            "symmetrize_pairs: refusing unsplit data "
            f"({type(data).__name__}); split it first (train_validation_split / a DatasetDict with 'train' and a "
            "held-out split), because swapped copies made before the split leak pairs between train and validation."
        )
    if not any(k in splits for k in held_out):
        raise ValueError(
            f"symmetrize_pairs: no held-out split ({', '.join(held_out)}) found in {sorted(splits)}; split the data "
            "first, because swapped copies made before the split leak pairs between train and validation."
        )
    train = splits["train"]
    train_keys = {frozenset((a, b)) for a, b in zip(train[c1], train[c2])}
    for split in held_out:
        if split not in splits:
            continue
        leaked = sum(frozenset((a, b)) in train_keys for a, b in zip(splits[split][c1], splits[split][c2]))
        if leaked:
            warnings.warn(
                f"symmetrize_pairs: {leaked} pair(s) of the {split!r} split also appear in train (in either order): "
                f"the {split} scores will be inflated by leakage. De-duplicate before training.",
                PairLeakWarning,
                stacklevel=2,
            )
    swapped = {c: list(v) for c, v in train.items()}
    swapped[c1], swapped[c2] = list(train[c2]), list(train[c1])
    new_train = {c: list(train[c]) + swapped[c] for c in train}
    if isinstance(data, SplitSet):
        new = dict(data.splits)
        new["train"] = new_train
        return replace(data, splits=new, notes=[*data.notes, "train pairs symmetrised (swapped copies added)"])
    out = DatasetDict(dict(data))
    out["train"] = Dataset.from_dict(new_train, features=data["train"].features)
    return out

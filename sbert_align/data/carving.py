"""Seeded carving of held-out splits: :func:`carve_indices` and :func:`train_validation_split`.

Carving is ``sklearn.model_selection.train_test_split``, seeded: stratified by class for classification sets, plain
for pair and score sets. Stratification needs every class to have at least two members and both sides to have room
for every class; when that fails, a documented per-class fallback is used with a warning. The loaders
(:mod:`.building`) carve a test split out of a single file with it; :func:`train_validation_split` carves validation
out of train, never out of test.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .container import SplitSet, _warn_unseen

__all__ = ["carve_indices", "train_validation_split"]


def _check_carve(fraction: Any, n: int | None = None, *, what: str, where: str = "") -> None:
    """The one check before carving: ``fraction`` is a number in ``(0, 1)`` and ``n`` rows (when given) are 2 or more.

    Args:
        fraction: The share to hold out; the message names it ``{what}_fraction``.
        n: The number of rows to carve from; None checks the fraction alone (before the rows are read).
        what: The held-out split's name (``"test"``, ``"validation"``).
        where: What the rows are, to start the message with (e.g. ``"trec6 (train)"``).

    Raises:
        ValueError: naming the argument and what was expected.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"{what}_fraction: expected a number in (0, 1), got {fraction!r}.")
    if n is not None and n < 2:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}cannot carve a {what} split out of {n} row(s); at least 2 are needed.")


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
    _check_carve(fraction, n, what=what)
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
    train = data.splits["train"]
    n = len(train["label"])
    _check_carve(validation_fraction, n, what="validation", where=f"{data.name} (train)")
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

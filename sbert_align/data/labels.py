"""The one label encoder of sbert-align: class labels (names or numbers) <-> integer class ids.

Every part of the project that turns labels into class ids uses :class:`LabelEncoding`: the data loaders
(:func:`sbert_align.data.load_splits`) and the evaluators (:mod:`sbert_align.evaluation`, through
:func:`encode_label_lists`). Two labels are one class when their *canonical names* (:func:`label_name`) are equal:

* integers, integer-valued floats and numeric strings are numbers: ``1``, ``1.0``, ``"1"``, ``"1.0"`` and ``" 1 "``
  are all the class ``"1"``;
* other strings are stripped of surrounding whitespace (``"card "`` is ``"card"``);
* a non-integer number (``0.5``, ``"2.75"``), a missing value (``None``, NaN) or an empty string is not a class label
  and raises a ``ValueError``.

Class ids are positions in the sorted names: numbers first, in numeric order (``"2"`` before ``"10"``), then the
other names in string order.

Held-out labels (test, validation, query labels) that never occur in the labels learnt from are found here too, once
(:func:`unseen_labels`), and warned about with :class:`UnseenLabelWarning` (:func:`check_unseen_labels`), by the
loaders and the kNN evaluator alike.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LabelEncoding",
    "UnseenLabelWarning",
    "label_name",
    "encode_labels",
    "decode_labels",
    "encode_label_lists",
    "unseen_labels",
    "warn_unseen_labels",
    "check_unseen_labels",
]

#: How many unseen label names a warning lists before "...".
MAX_NAMES_SHOWN = 10


class UnseenLabelWarning(UserWarning):
    """Held-out labels (test, validation or query labels) that never occur in the labels a model learns from.

    A kNN vote or a classifier trained on the reference / train labels can never predict such a label, so every item
    that carries one counts as wrong. This is sometimes legitimate (an open-set test split), so it is a warning.
    """


def _number_name(number: float, value: Any) -> str:
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"{value!r} is not a class label (a missing or infinite number).")
    if not number.is_integer():
        raise ValueError(
            f"{value!r} is a non-integer number where class labels are expected (a similarity score column must be "
            "numbers only and is detected as scores; class labels must be names or integers)."
        )
    return str(int(number))


def label_name(value: Any) -> str:
    """The canonical name of one class label: equal names are one class.

    Args:
        value: A label: a string, an integer (Python, NumPy or a bool), or an integer-valued float.

    Returns:
        ``str(int(value))`` for numbers and numeric strings (``1``, ``1.0``, ``"1.0"`` -> ``"1"``); the stripped string
        otherwise.

    Raises:
        ValueError: ``None``, NaN, an empty or whitespace-only string, a non-integer number (``0.5``, ``"0.5"``), or a
            value that is neither a string nor a number.

    Example:
        ::

            from sbert_align.data import label_name

            assert label_name(1) == label_name(1.0) == label_name("1.0") == "1"
            assert label_name(" card ") == "card"
    """
    if value is None:
        raise ValueError("None is not a class label (a missing value).")
    if isinstance(value, str):
        name = value.strip()
        if not name:
            raise ValueError(f"{value!r} is not a class label (an empty string).")
        if "_" in name:  # int() and float() read "1_000" as a number; as a label it is a name
            return name
        try:
            return str(int(name))
        except ValueError:
            pass
        try:
            number = float(name)
        except ValueError:
            return name
        if math.isnan(number) or math.isinf(number):
            return name  # "nan" / "inf" written as words are names, not numbers
        return _number_name(number, value)
    if isinstance(value, (bool, np.bool_, numbers.Integral)):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _number_name(float(value), value)
    raise ValueError(f"{value!r} ({type(value).__name__}) is not a class label; expected a string or an integer.")


def _sort_key(name: str) -> tuple[int, int, str]:
    try:
        return (0, int(name), "")
    except ValueError:
        return (1, 0, name)


@dataclass(frozen=True)
class LabelEncoding:
    """Both directions between class labels and integer class ids; ids are positions in ``names``.

    Labels are compared by their canonical name (:func:`label_name`): ``1``, ``1.0`` and ``"1.0"`` are one class.

    Args:
        names: The canonical class names, in id order. :meth:`fit` builds them from labels.

    Raises:
        ValueError: two names that are one class (``("1", "1.0")``), or a name that is not a class label.

    Example:
        ::

            from sbert_align.data import LabelEncoding

            encoding = LabelEncoding.fit(["b", "a"], ["c", "a"])
            assert encoding.names == ("a", "b", "c")
            assert encoding.encode(["c", "a"]) == [2, 0]
            assert encoding.decode([1]) == ["b"]
    """

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        canonical = tuple(label_name(n) for n in self.names)
        if len(set(canonical)) != len(canonical):
            twice = sorted({n for n in canonical if canonical.count(n) > 1}, key=_sort_key)
            raise ValueError(f"names: {twice} occur more than once (as one class: 1, 1.0 and '1' are the same).")
        object.__setattr__(self, "names", canonical)

    @classmethod
    def fit(cls, *label_lists: Iterable[Any]) -> LabelEncoding:
        """The sorted union of the classes of one or more label lists (numbers first, numerically, then names).

        Raises:
            ValueError: no label at all, or a value that is not a class label (see :func:`label_name`).
        """
        values = {label_name(v) for labels in label_lists for v in labels}
        if not values:
            raise ValueError("labels: expected at least one label, got none.")
        return cls(tuple(sorted(values, key=_sort_key)))

    @property
    def index(self) -> dict[str, int]:
        """Canonical name -> class id."""
        return {name: i for i, name in enumerate(self.names)}

    def encode(self, labels: Iterable[Any]) -> list[int]:
        """Labels -> class ids.

        Raises:
            ValueError: a label that is not one of ``names`` (the message lists some of the known classes).
        """
        index = self.index
        out = []
        for v in labels:
            name = label_name(v)
            if name not in index:
                shown = ", ".join(repr(n) for n in self.names[:MAX_NAMES_SHOWN])
                more = ", ..." if len(self.names) > MAX_NAMES_SHOWN else ""
                raise ValueError(f"labels: {v!r} is not one of the {len(self.names)} known classes ({shown}{more}).")
            out.append(index[name])
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Class ids -> canonical names.

        Raises:
            ValueError: an id outside ``0 .. len(names) - 1``.
        """
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.names):
                raise ValueError(f"ids: {i} is outside 0..{len(self.names) - 1}.")
            out.append(self.names[i])
        return out


def encode_labels(labels: Sequence[Any], names: Sequence[Any] | None = None) -> tuple[list[int], list[str]]:
    """Class labels (names or numbers) -> integer class ids, with :class:`LabelEncoding`.

    Args:
        labels: The labels; ``1``, ``1.0`` and ``"1"`` are one class.
        names: The classes, in id order; when None, the sorted classes of ``labels``.

    Returns:
        ``(ids, names)``: one id per label and the canonical class names (``names[ids[i]]`` is label ``i``).

    Raises:
        ValueError: no labels, a missing or non-integer label, or a label not among ``names``.

    Example:
        ::

            from sbert_align.data import decode_labels, encode_labels

            ids, names = encode_labels(["b", "a", "c", "a"])
            assert (ids, names) == ([1, 0, 2, 0], ["a", "b", "c"])
            assert decode_labels(ids, names) == ["b", "a", "c", "a"]
            assert encode_labels([1, 1.0, "1", 2])[0] == [0, 0, 0, 1]
    """
    encoding = LabelEncoding(tuple(names)) if names is not None else LabelEncoding.fit(labels)
    return encoding.encode(labels), list(encoding.names)


def decode_labels(ids: Sequence[int], names: Sequence[Any]) -> list[str]:
    """Integer class ids -> class names (the inverse of :func:`encode_labels`).

    Args:
        ids: Class ids.
        names: The class names, in id order.

    Returns:
        ``[names[i] for i in ids]`` (canonical names).

    Raises:
        ValueError: an id outside ``0 .. len(names) - 1``.

    Example:
        ::

            from sbert_align.data import decode_labels

            assert decode_labels([1, 0], ["neg", "pos"]) == ["pos", "neg"]
    """
    return LabelEncoding(tuple(names)).decode(ids)


def _label_list(labels: Any, name: str) -> tuple[list[Any], str | None]:
    """``labels`` as a list and its kind (``"string"`` / ``"integer"``, None when empty); one clear error otherwise."""
    if labels is None:
        raise ValueError(f"{name} must be a list of string or integer labels, got None.")
    if isinstance(labels, (str, bytes)):
        raise ValueError(f"{name} must be a list of labels, got a single string.")
    if hasattr(labels, "tolist"):  # torch tensors, numpy arrays
        labels = labels.tolist()
    try:
        items = list(labels)
    except TypeError:
        raise ValueError(f"{name} must be a list of string or integer labels, got {type(labels).__name__}.") from None
    kinds = set()
    for i, label in enumerate(items):
        if isinstance(label, str):
            kinds.add("string")
        elif isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Real):
            raise ValueError(
                f"{name} must hold strings or integers, got {type(label).__name__} {label!r} at position {i}."
            )
        else:
            if not isinstance(label, numbers.Integral) and not float(label).is_integer():
                raise ValueError(
                    f"{name} must hold strings or integers, got the non-integer number {label!r} at position {i}."
                )
            kinds.add("integer")
    if len(kinds) > 1:
        raise ValueError(f"{name} mix string and integer labels; use one kind.")
    return items, next(iter(kinds), None)


def encode_label_lists(*labeled: tuple[Any, str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Encode one or more label lists to shared class ids with :class:`LabelEncoding`, checking each argument.

    This is the evaluators' entry to the one label encoder: each list must hold only strings or only integers
    (integer-valued floats such as ``1.0`` count as integers; the lists together must be of one kind), so that the
    ``classes`` returned give the labels back in the kind they were given.

    Args:
        *labeled: ``(labels, argument_name)`` pairs; ``labels`` is a list, a NumPy array or a tensor.

    Returns:
        ``(ids, classes)``: one int64 array of class ids per input, and the classes in id order, so that
        ``classes[ids[i]]`` gives list ``i`` back: an int64 array for integer labels, an object array of (canonical,
        stripped) names for string labels.

    Raises:
        ValueError: None or a single string, a label that is neither a string nor an integer (bools and non-integer
            floats included), an empty or whitespace-only string label, or string and integer labels mixed (the
            message names the arguments).

    Example:
        ::

            from sbert_align.data import encode_label_lists

            (ref_ids, query_ids), classes = encode_label_lists(
                (["b", "a", "b"], "reference_labels"), (["a"], "query_labels")
            )
            assert ref_ids.tolist() == [1, 0, 1] and query_ids.tolist() == [0]
            assert list(classes[ref_ids]) == ["b", "a", "b"]
    """
    lists, kinds = [], set()
    for labels, name in labeled:
        items, kind = _label_list(labels, name)
        lists.append(items)
        if kind is not None:
            kinds.add(kind)
    if len(kinds) > 1:
        names = " and ".join(name for _, name in labeled)
        raise ValueError(f"{names} mix string and integer labels; use one kind.")
    names_lists = []
    for items, (_, name) in zip(lists, labeled):
        names = []
        for i, v in enumerate(items):
            try:
                names.append(label_name(v))
            except ValueError as e:
                raise ValueError(f"{name}[{i}]: {e}") from None
        names_lists.append(names)
    encoding = LabelEncoding.fit(*names_lists) if any(names_lists) else LabelEncoding(())
    index = encoding.index
    ids = [np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names)) for names in names_lists]
    if kinds == {"integer"}:
        classes = np.array([int(n) for n in encoding.names], dtype=np.int64)
    else:
        classes = np.array(encoding.names, dtype=object)
    return ids, classes


def unseen_labels(held_out: Iterable[Any], seen: Iterable[Any]) -> list[str]:
    """The classes of ``held_out`` that never occur in ``seen``, sorted as class ids are, by canonical name.

    This is the one unseen-label computation; :func:`check_unseen_labels` (used by the loaders and the kNN evaluator)
    warns with it.

    Example:
        ::

            from sbert_align.data import unseen_labels

            assert unseen_labels(["a", "c", "d", "c"], ["a", "b", 1]) == ["c", "d"]
    """
    known = {label_name(v) for v in seen}
    return sorted({label_name(v) for v in held_out} - known, key=_sort_key)


def warn_unseen_labels(
    unseen: Sequence[Any], *, held_out: str, seen: str, count: int | None = None, stacklevel: int = 3
) -> None:
    """Warn (:class:`UnseenLabelWarning`) that ``held_out`` holds labels that never occur in ``seen``.

    Args:
        unseen: The unseen classes (their names); nothing happens when empty.
        held_out: What holds them, e.g. ``"the 'test' split"`` or ``"query_labels"``.
        seen: Where they are missing, e.g. ``"train"`` or ``"reference_labels"``.
        count: How many items carry an unseen label (said in the message when given).
        stacklevel: Passed to :func:`warnings.warn`.

    Example:
        ::

            import warnings
            from sbert_align.data import UnseenLabelWarning, warn_unseen_labels

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                warn_unseen_labels(["oos"], held_out="query_labels", seen="reference_labels", count=3)
            assert issubclass(caught[0].category, UnseenLabelWarning)
    """
    if not unseen:
        return
    shown = ", ".join(repr(str(n)) for n in unseen[:MAX_NAMES_SHOWN])
    more = f", ... ({len(unseen) - MAX_NAMES_SHOWN} more)" if len(unseen) > MAX_NAMES_SHOWN else ""
    items = f" ({count} item{'s' if count != 1 else ''})" if count is not None else ""
    warnings.warn(
        f"{held_out} holds {len(unseen)} label{'s' if len(unseen) != 1 else ''} that never "
        f"occur{'s' if len(unseen) == 1 else ''} in {seen}{items}: "
        f"{shown}{more}. Nothing learnt from {seen} can predict them, so those items always count as wrong.",
        UnseenLabelWarning,
        stacklevel=stacklevel,
    )


def check_unseen_labels(
    held_out_labels: Iterable[Any], seen_labels: Iterable[Any], *, held_out: str, seen: str, stacklevel: int = 2
) -> list[str]:
    """Warn (:class:`UnseenLabelWarning`) when ``held_out_labels`` hold classes that never occur in ``seen_labels``.

    The unseen classes are :func:`unseen_labels`; the warning (:func:`warn_unseen_labels`) gives their number, up to
    10 of them and how many items carry one. The loaders use it for held-out splits, the kNN evaluator for query
    labels.

    Args:
        held_out_labels: The held-out labels (test, validation or query labels).
        seen_labels: The labels learnt from (train or reference labels).
        held_out: What holds the held-out labels, for the message, e.g. ``"the 'test' split"`` or ``"query_labels"``.
        seen: What holds the seen labels, for the message, e.g. ``"train"`` or ``"reference_labels"``.
        stacklevel: As for :func:`warnings.warn`, counted from this function (2: its caller).

    Returns:
        The unseen classes (canonical names, sorted as class ids are); empty when there are none (and no warning).

    Raises:
        ValueError: a value that is not a class label (see :func:`label_name`).

    Example:
        ::

            import warnings
            from sbert_align.data import UnseenLabelWarning, check_unseen_labels

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                unseen = check_unseen_labels(["a", "c", "c"], ["a", "b"], held_out="query_labels", seen="train")
            assert unseen == ["c"] and issubclass(caught[0].category, UnseenLabelWarning)
    """
    counts: Counter[str] = Counter()
    for value, count in Counter(held_out_labels).items():
        counts[label_name(value)] += count
    unseen = unseen_labels(counts, set(seen_labels))
    if unseen:
        count = sum(counts[name] for name in unseen)
        warn_unseen_labels(unseen, held_out=held_out, seen=seen, count=count, stacklevel=stacklevel + 1)
    return unseen

"""What counts as an empty text: the one rule, used by :class:`SplitSet`, the loaders and the evaluators.

A text is empty when it is ``None`` or a string of whitespace only. The loaders and :class:`SplitSet` refuse empty
texts unless ``allow_empty_texts`` is set; so do the evaluators (:mod:`sbert_align.evaluation`), which never accept
``None``. The loaders find rows without a label by the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["find_empty_texts"]

#: The end of the loaders' and :class:`SplitSet`'s message about empty texts.
_EMPTY_TEXT_HINT = "Remove or fill them, or pass allow_empty_texts=True to keep them."


def find_empty_texts(texts: Sequence[Any]) -> list[int]:
    """Positions of the empty or whitespace-only texts (``None`` counts as empty).

    Example:
        ::

            from sbert_align.data import find_empty_texts

            assert find_empty_texts(["a", "", "  ", None, "b"]) == [1, 2, 3]
    """
    return [i for i, t in enumerate(texts) if t is None or (isinstance(t, str) and not t.strip())]

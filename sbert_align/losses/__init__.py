"""Losses for ``SentenceTransformer.fit`` and ``SentenceTransformerTrainer``."""

from __future__ import annotations

from .all_negatives import AllNegativesLoss
from .annealed_pair import AnnealedPairLoss
from .cached_all_negatives import CachedAllNegativesLoss
from .cached_class_alignment import CachedClassAlignmentLoss
from .class_alignment import ClassAlignmentLoss

__all__ = [
    "AllNegativesLoss",
    "AnnealedPairLoss",
    "CachedAllNegativesLoss",
    "CachedClassAlignmentLoss",
    "ClassAlignmentLoss",
]

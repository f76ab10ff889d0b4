"""Losses for ``SentenceTransformer.fit`` and ``SentenceTransformerTrainer``."""

from __future__ import annotations

from .all_negatives import AllNegativesLoss
from .anchor import AnchorLoss
from .annealed_pair import AnnealedPairLoss
from .auxiliary import AuxiliaryLoss
from .cached_all_negatives import CachedAllNegativesLoss
from .cached_class_alignment import CachedClassAlignmentLoss
from .class_alignment import ClassAlignmentLoss
from .simsiam import SimSiamLoss

__all__ = [
    "AllNegativesLoss",
    "AnnealedPairLoss",
    "CachedAllNegativesLoss",
    "CachedClassAlignmentLoss",
    "ClassAlignmentLoss",
    "AuxiliaryLoss",
    "AnchorLoss",
    "SimSiamLoss",
]

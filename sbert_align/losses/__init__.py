"""Losses for ``SentenceTransformer.fit`` and ``SentenceTransformerTrainer``."""

from __future__ import annotations

from .all_negatives import AllNegativesLoss
from .annealed_pair import AnnealedPairLoss
from .class_alignment import ClassAlignmentLoss

__all__ = ["AllNegativesLoss", "AnnealedPairLoss", "ClassAlignmentLoss"]

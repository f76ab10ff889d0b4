"""sbert-align: teach a sentence encoder a task's geometry.

Losses that drop into ``SentenceTransformer.fit`` and ``SentenceTransformerTrainer``, a memory bank, fused
similarity kernels, and kNN / clustering / retrieval evaluators.
"""

from __future__ import annotations

from .kernels import pairwise_loss, similarity_topk
from .memory import MemoryBank
from .objectives import CosineTargetObjective, MarginObjective, PairObjective, SupConObjective, get_objective
from .schedules import Schedule, schedule_value

__version__ = "0.1.0"

__all__ = [
    "pairwise_loss",
    "similarity_topk",
    "MemoryBank",
    "PairObjective",
    "CosineTargetObjective",
    "MarginObjective",
    "SupConObjective",
    "get_objective",
    "Schedule",
    "schedule_value",
]

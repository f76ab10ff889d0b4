"""sbert-align: teach a sentence encoder a task's geometry.

Losses that drop into ``SentenceTransformer.fit`` and ``SentenceTransformerTrainer``, a memory bank, fused
similarity kernels, and kNN / clustering / retrieval evaluators.
"""

from __future__ import annotations

from .classifier import KNNClassifier, ThresholdChoice, best_threshold
from .data import (
    SplitSet,
    UnseenLabelWarning,
    decode_labels,
    encode_labels,
    load_splits,
    nearby_pairs,
    split_documents,
    symmetrize_pairs,
    train_validation_split,
)
from .evaluation import (
    KMeansEvaluator,
    KNNEvaluator,
    QueryKeyTopKEvaluator,
    kmeans_metrics,
    knn_classify,
    knn_metrics,
    query_key_metrics,
)
from .kernels import StreamingTopK, confound_penalty, pairwise_loss, similarity_topk
from .losses import (
    AllNegativesLoss,
    AnchorLoss,
    AnnealedPairLoss,
    AuxiliaryLoss,
    CachedAllNegativesLoss,
    CachedClassAlignmentLoss,
    ClassAlignmentLoss,
    SimSiamLoss,
)
from .memory import MemoryBank, TrainingMemory
from .objectives import CosineTargetObjective, MarginObjective, PairObjective, SupConObjective, get_objective
from .schedules import Schedule, schedule_value
from .trainer_hooks import LossStateCallback
from .unfreezing import GradualUnfreezing

__version__ = "0.1.0"

__all__ = [
    "ClassAlignmentLoss",
    "AllNegativesLoss",
    "AnnealedPairLoss",
    "CachedClassAlignmentLoss",
    "CachedAllNegativesLoss",
    "AuxiliaryLoss",
    "AnchorLoss",
    "SimSiamLoss",
    "GradualUnfreezing",
    "KNNClassifier",
    "ThresholdChoice",
    "best_threshold",
    "nearby_pairs",
    "split_documents",
    "StreamingTopK",
    "confound_penalty",
    "KNNEvaluator",
    "KMeansEvaluator",
    "QueryKeyTopKEvaluator",
    "knn_classify",
    "knn_metrics",
    "kmeans_metrics",
    "query_key_metrics",
    "SplitSet",
    "load_splits",
    "train_validation_split",
    "symmetrize_pairs",
    "encode_labels",
    "decode_labels",
    "UnseenLabelWarning",
    "pairwise_loss",
    "similarity_topk",
    "MemoryBank",
    "TrainingMemory",
    "LossStateCallback",
    "PairObjective",
    "CosineTargetObjective",
    "MarginObjective",
    "SupConObjective",
    "get_objective",
    "Schedule",
    "schedule_value",
]

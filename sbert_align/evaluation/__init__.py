"""Evaluators usable during training (``evaluator=`` in ``SentenceTransformerTrainer`` or ``model.fit``) and alone.

* :class:`KNNEvaluator`: kNN classification over a labelled reference set (accuracy, macro-F1; leave-one-out).
* :class:`KMeansEvaluator`: KMeans clusters against the labels (V-measure, NMI, ARI, homogeneity, completeness).
* :class:`QueryKeyTopKEvaluator`: paired query-key retrieval (top-k accuracy beside the random baseline, MRR).

Each evaluator calls a pure function on embeddings (:func:`knn_classify` / :func:`knn_metrics`,
:func:`kmeans_metrics`, :func:`query_key_metrics`) that can be used without a model.
"""

from __future__ import annotations

from ._common import check_inputs, check_same_length
from .clustering import KMeansEvaluator, kmeans_metrics
from .knn import KNNEvaluator, knn_classify, knn_metrics
from .query_key import OwnKeyRanks, QueryKeyTopKEvaluator, own_key_ranks, query_key_metrics

__all__ = [
    "KNNEvaluator",
    "KMeansEvaluator",
    "QueryKeyTopKEvaluator",
    "knn_classify",
    "knn_metrics",
    "kmeans_metrics",
    "query_key_metrics",
    "own_key_ranks",
    "OwnKeyRanks",
    "check_inputs",
    "check_same_length",
]

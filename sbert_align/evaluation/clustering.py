"""KMeans clustering of embeddings scored against the true labels: :func:`kmeans_metrics` and :class:`KMeansEvaluator`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from torch import Tensor

from ..data.labels import encode_label_lists
from ..kernels import normalize_rows
from ._common import AlignmentEvaluator, check_embeddings, check_inputs, check_same_length

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["KMeansEvaluator", "kmeans_metrics", "check_n_clusters"]


def check_n_clusters(n_clusters: int | None, num_texts: int, num_labels: int) -> int:
    """``n_clusters`` or, when None, the number of distinct labels; it must lie in ``[1, num_texts]``."""
    if n_clusters is None:
        n_clusters = num_labels
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer or None, got {n_clusters!r}.")
    if n_clusters > num_texts:
        raise ValueError(f"n_clusters ({n_clusters}) must not exceed the number of texts ({num_texts}).")
    return int(n_clusters)


def kmeans_metrics(
    embeddings: Tensor | np.ndarray,
    labels: Any,
    n_clusters: int | None = None,
    seed: int = 0,
    n_init: int = 10,
) -> dict[str, float]:
    """Cluster L2-normalised embeddings with KMeans and compare the clusters with the labels.

    KMeans is ``sklearn.cluster.KMeans(n_clusters, random_state=seed, n_init=n_init)``, run on the L2-normalised
    embeddings (so Euclidean KMeans works on the cosine geometry: ``|a - b|^2 = 2 - 2 cos(a, b)``), in float64.

    Args:
        embeddings: ``(N, D)`` embeddings.
        labels: ``N`` true labels, strings or integers (one kind; ``1`` and ``1.0`` are one class).
        n_clusters: Number of clusters; None means the number of distinct labels. At most ``N``.
        seed: ``random_state`` of KMeans; the same seed gives the same clusters.
        n_init: Number of KMeans restarts (the best inertia is kept).

    Returns:
        ``v_measure``, ``nmi`` (``normalized_mutual_info_score``, arithmetic mean, which equals the V-measure with
        beta 1), ``ari`` (adjusted Rand index), ``homogeneity`` and ``completeness``, all from ``sklearn.metrics``.

    Raises:
        ValueError: empty or non-2-D embeddings, labels that are neither strings nor integers (or mix both) or differ
            in number from the embeddings, or a bad ``n_clusters`` / ``n_init``.

    Example:
        ::

            import numpy as np
            from sbert_align.evaluation import kmeans_metrics

            rng = np.random.default_rng(0)
            labels = rng.integers(0, 4, size=200)
            embeddings = rng.normal(size=(200, 16)) + 3 * np.eye(16)[labels]
            print(kmeans_metrics(embeddings, labels, seed=0))
    """
    emb = check_embeddings(embeddings, "embeddings")
    (truth,), classes = encode_label_lists((labels, "labels"))
    check_same_length(emb, truth, "embeddings", "labels")
    n_clusters = check_n_clusters(n_clusters, emb.shape[0], len(classes))
    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}.")
    points = normalize_rows(emb.to(device="cpu", dtype=torch.float64)).numpy()
    clusters = KMeans(n_clusters=n_clusters, random_state=seed, n_init=int(n_init)).fit_predict(points)
    homogeneity, completeness, v_measure = skm.homogeneity_completeness_v_measure(truth, clusters)
    return {
        "v_measure": float(v_measure),
        "nmi": float(skm.normalized_mutual_info_score(truth, clusters)),
        "ari": float(skm.adjusted_rand_score(truth, clusters)),
        "homogeneity": float(homogeneity),
        "completeness": float(completeness),
    }


class KMeansEvaluator(AlignmentEvaluator):
    """Cluster the embeddings of labelled texts with KMeans and score the clusters against the labels.

    With a well-aligned encoder, the classes are the clusters. The texts are embedded once per call, L2-normalised,
    and clustered with ``sklearn.cluster.KMeans(n_clusters, random_state=seed, n_init=n_init)``
    (see :func:`kmeans_metrics`); a fixed seed makes calls comparable across checkpoints.

    Metrics: ``v_measure`` (primary), ``nmi``, ``ari``, ``homogeneity``, ``completeness``, prefixed with ``name``
    when it is set.

    Args:
        texts: The texts to cluster; no empty or whitespace-only text.
        labels: Their labels: strings or integers (one kind; ``1`` and ``1.0`` are one class).
        n_clusters: Number of clusters; None (default) means the number of distinct labels. At most ``len(texts)``.
        seed: ``random_state`` of KMeans.
        n_init: KMeans restarts; the run with the lowest inertia is kept.
        name: Name of the evaluation set; prefixes the metrics and names the CSV file.
        batch_size: Batch size for encoding.
        show_progress_bar: Show a progress bar while encoding.
        write_csv: Append the metrics to ``kmeans_evaluation[_{name}]_results.csv`` in ``output_path`` when one is
            given.
        truncate_dim: Truncate embeddings to this dimension (Matryoshka models); None keeps the model's own.
        allow_empty_texts: Embed empty and whitespace-only texts instead of refusing them.

    Raises:
        ValueError: an empty list, empty or whitespace-only texts (naming the argument, the count and the first index),
            texts and labels of different lengths, labels that are neither strings nor integers (or mix both), or a bad
            ``n_clusters`` / ``n_init``.

    Example:
        ::

            from sentence_transformers import SentenceTransformer
            from sbert_align.evaluation import KMeansEvaluator

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            evaluator = KMeansEvaluator(
                texts=["I lost my card", "my card was stolen", "what is the weather", "will it rain"],
                labels=["card", "card", "weather", "weather"],
                name="intent-dev",
            )
            results = evaluator(model)
            print(results[evaluator.primary_metric])  # key "intent-dev_v_measure"
    """

    csv_stem = "kmeans_evaluation"

    def __init__(
        self,
        texts: list[str],
        labels: list[str] | list[int],
        n_clusters: int | None = None,
        seed: int = 0,
        n_init: int = 10,
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        allow_empty_texts: bool = False,
    ):
        super().__init__(name, batch_size, show_progress_bar, write_csv, truncate_dim)
        self.texts = check_inputs(texts, "texts", allow_empty_texts)
        (self.label_ids,), self.classes = encode_label_lists((labels, "labels"))
        check_same_length(self.texts, self.label_ids, "texts", "labels")
        self.n_clusters = check_n_clusters(n_clusters, len(self.texts), len(self.classes))
        if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
            raise ValueError(f"n_init must be a positive integer, got {n_init!r}.")
        self.seed = seed
        self.n_init = int(n_init)
        self.primary_metric = "v_measure"
        self.metric_names = ["v_measure", "nmi", "ari", "homogeneity", "completeness"]

    def compute_metrics(self, model: SentenceTransformer) -> dict[str, float]:
        embeddings = self.embed(model, self.texts)
        return kmeans_metrics(embeddings, self.label_ids, self.n_clusters, seed=self.seed, n_init=self.n_init)

    @property
    def description(self) -> str:
        return "KMeans Clustering"

    def get_config_dict(self) -> dict[str, Any]:
        return {"n_clusters": self.n_clusters, "seed": self.seed, "n_init": self.n_init, **super().get_config_dict()}

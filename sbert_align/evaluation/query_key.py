"""Paired query-key retrieval: where does each query's own key rank? :func:`query_key_metrics`, the evaluator."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..kernels import normalize_rows
from ._common import AlignmentEvaluator, check_embeddings, check_inputs, check_same_length

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

__all__ = ["QueryKeyTopKEvaluator", "OwnKeyRanks", "query_key_metrics", "own_key_ranks", "resolve_ks"]


def resolve_ks(ks: Iterable[int], num_keys: int) -> list[int]:
    """Sorted distinct ``ks`` smaller than ``num_keys``; larger ones are dropped with a warning.

    ``k >= num_keys`` is dropped because every query then finds its key (top-``k`` accuracy and its baseline are
    both 1). A ``ValueError`` is raised for a non-positive or non-integer ``k``, and when no ``k`` is left.
    """
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    ks = list(ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks must hold positive integers, got {k!r}.")
    if not ks:
        raise ValueError("ks is empty: give at least one k.")
    kept = sorted({int(k) for k in ks if k < num_keys})
    dropped = sorted({int(k) for k in ks if k >= num_keys})
    if not kept:
        raise ValueError(f"every k in ks={sorted(set(map(int, ks)))} is >= the number of keys ({num_keys}).")
    if dropped:
        logger.warning(f"Dropping ks {dropped}: not smaller than the number of keys ({num_keys}).")
    return kept


class OwnKeyRanks:
    """Exact own-key ranks of paired queries, with distractor keys fed in chunks.

    ``rank_i = 1 + #{j : cos(q_i, k_j) > cos(q_i, k_i) + tol}`` over the paired keys and every distractor added
    with :meth:`add`; ties count in the query's favour, so a duplicate of the own key does not push it down, even
    when the two are scored in different matrix products (``tol = 2 sqrt(D) eps``, a few units of rounding). The paired
    keys are scored at construction: for each chunk of queries, the block of their own keys first (its diagonal is the
    own similarity, taken from the same product it is compared within), then the other paired keys, only counted.
    Distractors are then only counted, so they can be embedded and fed a chunk at a time. Held: the normalised
    queries, their own similarities and counts, and one ``query_chunk_size x chunk_size`` tile.

    Args:
        queries: ``(Q, D)``.
        keys: ``(Q, D)``: key ``i`` belongs to query ``i``.
        chunk_size: Keys per tile.
        query_chunk_size: Queries per tile.
    """

    @torch.no_grad()
    def __init__(self, queries: Tensor, keys: Tensor, *, chunk_size: int = 16384, query_chunk_size: int = 1024):
        if chunk_size < 1 or query_chunk_size < 1:
            raise ValueError(f"chunk_size and query_chunk_size must be >= 1, got {chunk_size} and {query_chunk_size}.")
        if keys.shape[0] != queries.shape[0]:
            raise ValueError(f"one key per query: {queries.shape[0]} queries, {keys.shape[0]} keys.")
        self.dtype = torch.float64 if torch.float64 in (queries.dtype, keys.dtype) else torch.float32
        self.chunk_size, self.query_chunk_size = chunk_size, query_chunk_size
        self.queries = normalize_rows(queries.to(self.dtype))
        #: Similarities within this of the own key's count as ties: ``2 sqrt(D)`` units of rounding, the typical
        #: difference between two summation orders of a D-term dot product of unit vectors.
        self.tolerance = 2.0 * math.sqrt(queries.shape[1]) * torch.finfo(self.dtype).eps
        self.own = torch.empty(queries.shape[0], 1, dtype=self.dtype, device=queries.device)
        self.counts = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
        self.num_keys = keys.shape[0]
        n = keys.shape[0]
        for a in range(0, n, query_chunk_size):
            q = self.queries[a : a + query_chunk_size]
            b = a + q.shape[0]
            own_block = q @ normalize_rows(keys[a:b].to(device=q.device, dtype=self.dtype)).T
            # A key beats the own key only by more than the rounding of two products: the same pair scored in two
            # matrix products (another chunking, a duplicate text among the distractors) can differ in the last
            # bits, and such a near-tie counts in the query's favour like an exact one.
            self.own[a:b] = own_block.diagonal()[:, None] + self.tolerance
            self.counts[a:b] = (own_block > self.own[a:b]).sum(dim=1)
            for start, stop in ((0, a), (b, n)):
                for s in range(start, stop, chunk_size):
                    self._count(a, keys[s : min(s + chunk_size, stop)])

    def _count(self, a: int, keys: Tensor) -> None:
        q = self.queries[a : a + self.query_chunk_size]
        kc = normalize_rows(keys.to(device=q.device, dtype=self.dtype))
        self.counts[a : a + q.shape[0]] += ((q @ kc.T) > self.own[a : a + q.shape[0]]).sum(dim=1)

    @torch.no_grad()
    def add(self, distractors: Tensor) -> None:
        """Count the distractor keys ``(n, D)`` that beat each query's own key."""
        if distractors.dim() != 2 or distractors.shape[1] != self.queries.shape[1]:
            raise ValueError(
                f"distractors must be 2-D with dimension {self.queries.shape[1]}, got {tuple(distractors.shape)}."
            )
        for s in range(0, distractors.shape[0], self.chunk_size):
            for a in range(0, self.queries.shape[0], self.query_chunk_size):
                self._count(a, distractors[s : s + self.chunk_size])
        self.num_keys += distractors.shape[0]

    def ranks(self) -> Tensor:
        """``(Q,)`` int64 1-based ranks among all keys seen."""
        return self.counts + 1


def own_key_ranks(
    queries: Tensor,
    keys: Tensor,
    *,
    chunk_size: int = 16384,
    query_chunk_size: int = 1024,
) -> Tensor:
    """1-based rank of key ``i`` among all keys by cosine similarity to query ``i``, without an (Q x N) matrix.

    ``rank_i = 1 + #{j : cos(q_i, k_j) > cos(q_i, k_i)}``: ties count in the query's favour, so a duplicate of the
    own key does not push it down. Computed by :class:`OwnKeyRanks`. Peak memory:
    ``O(query_chunk_size * chunk_size)`` beside the inputs.

    Args:
        queries: ``(Q, D)``.
        keys: ``(N, D)`` with ``N >= Q``; key ``i`` belongs to query ``i``, keys ``Q..N-1`` are distractors.
        chunk_size: Keys per chunk.
        query_chunk_size: Queries per chunk.

    Returns:
        ``(Q,)`` int64 ranks on ``queries``' device.
    """
    if keys.shape[0] < queries.shape[0]:
        raise ValueError(
            f"there must be at least one key per query: {queries.shape[0]} queries, {keys.shape[0]} keys."
        )
    q = queries.shape[0]
    ranker = OwnKeyRanks(queries, keys[:q], chunk_size=chunk_size, query_chunk_size=query_chunk_size)
    ranker.add(keys[q:])
    return ranker.ranks()


def _metrics_from_ranks(ranks: np.ndarray, n: int, ks: list[int]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"top{k}_accuracy"] = float(np.mean(ranks <= k))
        metrics[f"top{k}_random_baseline"] = k / n
    metrics["mrr"] = float(np.mean(1.0 / ranks))
    metrics["mrr_random_baseline"] = float(np.sum(1.0 / np.arange(1, n + 1)) / n)
    return metrics


def query_key_metrics(
    query_embeddings: Tensor | np.ndarray,
    key_embeddings: Tensor | np.ndarray,
    ks: Iterable[int] = (1, 5, 10, 100),
    chunk_size: int = 16384,
) -> dict[str, float]:
    """Top-k accuracy for several k, their random baselines and the MRR of paired queries and keys.

    Key ``i`` is the match of query ``i``; keys after the ``Q`` paired ones are distractors. With
    ``N = len(key_embeddings)`` and ranks from :func:`own_key_ranks` (ties in the query's favour):

    * ``top{k}_accuracy``: share of queries whose own key ranks ``<= k``;
    * ``top{k}_random_baseline``: ``k / N``, the same share for a random ranking;
    * ``mrr``: mean of ``1 / rank`` over all ``N`` keys (no cut-off);
    * ``mrr_random_baseline``: ``H_N / N`` (``H_N`` the N-th harmonic number), the MRR of a random ranking.

    ``ks`` not smaller than ``N`` are dropped with a warning (see :func:`resolve_ks`).

    Example:
        ::

            import numpy as np
            from sbert_align.evaluation import query_key_metrics

            rng = np.random.default_rng(0)
            keys = rng.normal(size=(50, 16))
            queries = keys + 0.5 * rng.normal(size=(50, 16))
            print(query_key_metrics(queries, keys, ks=(1, 5, 10)))
    """
    queries = check_embeddings(query_embeddings, "query_embeddings")
    keys = check_embeddings(key_embeddings, "key_embeddings").to(queries.device)
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"query_embeddings have dimension {queries.shape[1]} but key_embeddings have {keys.shape[1]}."
        )
    if keys.shape[0] < queries.shape[0]:
        raise ValueError(
            f"key_embeddings must hold one key per query (then optional distractors): {queries.shape[0]} queries, "
            f"{keys.shape[0]} keys."
        )
    n = keys.shape[0]
    ks = resolve_ks(ks, n)
    ranks = own_key_ranks(queries, keys, chunk_size=chunk_size).cpu().numpy()
    return _metrics_from_ranks(ranks, n, ks)


class QueryKeyTopKEvaluator(AlignmentEvaluator):
    """For paired queries and keys, how often is a query's own key among its ``k`` most similar keys?

    ``keys[i]`` is the match of ``queries[i]`` (e.g. a question and its answer, a title and its abstract). Every
    query is ranked against all ``N = len(keys) + len(distractor_keys)`` keys by cosine similarity; the own key's
    exact rank is counted in chunks (:func:`own_key_ranks`), never with an ``N x N`` matrix. Ties count in the
    query's favour (a duplicate key does not push the own key down). Queries and their keys are embedded first;
    distractor keys are then embedded and counted ``chunk_size`` at a time, so a million of them never exist at once.

    Metrics, prefixed with ``name`` when it is set: ``top{k}_accuracy`` for each ``k`` in ``ks``, with
    ``top{k}_random_baseline = k / N`` beside it; ``mrr`` (primary, over the full ranking) and
    ``mrr_random_baseline``. Each ``k >= N`` is dropped from ``ks`` with a warning, since every query then finds its
    key; if no ``k`` is left, that is a ``ValueError``.

    Args:
        queries: The query texts; no empty or whitespace-only text.
        keys: The matching keys, one per query, in the same order; no empty or whitespace-only text.
        ks: The cut-offs ``k`` to report.
        distractor_keys: Extra keys that match no query; they only make the ranking harder.
        name: Name of the evaluation set; prefixes the metrics and names the CSV file.
        batch_size: Batch size for encoding.
        show_progress_bar: Show a progress bar while encoding.
        write_csv: Append the metrics to ``query_key_evaluation[_{name}]_results.csv`` in ``output_path`` when one
            is given.
        truncate_dim: Truncate embeddings to this dimension (Matryoshka models); None keeps the model's own.
        chunk_size: Keys per chunk when ranking; distractor keys embedded at a time.
        allow_empty_texts: Embed empty and whitespace-only texts instead of refusing them.

    Raises:
        ValueError: empty lists, empty or whitespace-only texts (naming the argument, the count and the first index),
            ``queries`` and ``keys`` of different lengths, or no usable ``k``.

    Example:
        ::

            from sentence_transformers import SentenceTransformer
            from sbert_align.evaluation import QueryKeyTopKEvaluator

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            evaluator = QueryKeyTopKEvaluator(
                queries=["capital of France", "largest planet", "author of Hamlet"],
                keys=["Paris is the capital of France.", "Jupiter is the largest planet.", "Shakespeare wrote Hamlet."],
                ks=(1, 2),
                name="qa-dev",
            )
            results = evaluator(model)
            print(results["qa-dev_top1_accuracy"], results["qa-dev_top1_random_baseline"])  # baseline 1/3
    """

    csv_stem = "query_key_evaluation"

    def __init__(
        self,
        queries: list[str],
        keys: list[str],
        ks: Iterable[int] = (1, 5, 10, 100),
        distractor_keys: list[str] | None = None,
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        chunk_size: int = 16384,
        allow_empty_texts: bool = False,
    ):
        super().__init__(name, batch_size, show_progress_bar, write_csv, truncate_dim)
        self.queries = check_inputs(queries, "queries", allow_empty_texts)
        self.keys = check_inputs(keys, "keys", allow_empty_texts)
        check_same_length(self.queries, self.keys, "queries", "keys")
        self.distractor_keys = (
            check_inputs(distractor_keys, "distractor_keys", allow_empty_texts)
            if distractor_keys is not None and (isinstance(distractor_keys, str) or len(distractor_keys) > 0)
            else []
        )
        self.num_keys = len(self.keys) + len(self.distractor_keys)
        self.ks = resolve_ks(ks, self.num_keys)
        self.chunk_size = chunk_size
        self.primary_metric = "mrr"
        self.metric_names = [
            *(f"top{k}_{kind}" for k in self.ks for kind in ("accuracy", "random_baseline")),
            "mrr",
            "mrr_random_baseline",
        ]

    def compute_metrics(self, model: SentenceTransformer) -> dict[str, float]:
        queries, keys = self.embed_many(model, self.queries, self.keys)
        ranker = OwnKeyRanks(queries, keys, chunk_size=self.chunk_size)
        # Distractors are embedded and counted one chunk at a time: a million of them never exist at once.
        for chunk in self.embed_chunks(model, self.distractor_keys, self.chunk_size, "Embedding distractor keys"):
            ranker.add(chunk)
        return _metrics_from_ranks(ranker.ranks().cpu().numpy(), self.num_keys, self.ks)

    @property
    def description(self) -> str:
        return "Query-Key Top-k"

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"ks": self.ks}
        if self.distractor_keys:
            config["distractor_keys"] = len(self.distractor_keys)
        return {**config, **super().get_config_dict()}

"""k-nearest-neighbour classification in embedding space: the metric functions and :class:`KNNEvaluator`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import Tensor

from ..data.labels import check_unseen_labels, encode_label_lists
from ..kernels import StreamingTopK, similarity_topk
from ._common import AlignmentEvaluator, check_embeddings, check_inputs, check_same_length

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["KNNEvaluator", "knn_classify", "knn_metrics", "check_k", "order_neighbours", "vote", "vote_weights"]

WEIGHTS = ("uniform", "distance")
#: Queries voted at once; bounds the (queries x classes) vote table.
VOTE_CHUNK = 4096


def check_k(k: int, num_references: int, leave_one_out: bool) -> int:
    """Validate ``k`` against the number of neighbours each query can have (see :func:`knn_classify`)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    candidates = num_references - 1 if leave_one_out else num_references
    if k >= candidates:
        if leave_one_out:
            raise ValueError(
                f"k must be smaller than the number of texts minus one (leave_one_out: each text has "
                f"{candidates} other texts as candidates), got k={k} for {num_references} texts."
            )
        raise ValueError(f"k must be smaller than the number of references ({num_references}), got k={k}.")
    return k


def knn_classify(
    reference_embeddings: Tensor | np.ndarray,
    reference_labels: Any,
    query_embeddings: Tensor | np.ndarray | None = None,
    k: int = 5,
    weights: Literal["uniform", "distance"] = "uniform",
    leave_one_out: bool = False,
    chunk_size: int = 16384,
) -> np.ndarray:
    """Predict a label for each query by a vote of its ``k`` most cosine-similar references.

    The neighbour search is :func:`sbert_align.kernels.similarity_topk`, which walks the references in chunks of
    ``chunk_size``, so the full (queries x references) similarity matrix never exists.

    Votes:
        * ``weights="uniform"``: each neighbour counts 1.
        * ``weights="distance"``: each neighbour counts ``1 / (1 - cos)``, the inverse cosine distance, as
          scikit-learn's ``KNeighborsClassifier(metric="cosine", weights="distance")``; when a query has neighbours at
          distance 0 (cos = 1, e.g. a duplicate text), those count 1 and the others 0, again as scikit-learn.

    Ties are broken deterministically: among the classes with the highest vote, the one whose neighbours have the
    highest summed cosine similarity wins; if still tied, the class of the nearest neighbour among the tied classes
    (neighbours with equal similarity are ordered by reference index, smaller first). scikit-learn instead picks
    the smallest label on ties, so the two agree exactly where no tie occurs.

    Args:
        reference_embeddings: ``(N, D)`` embeddings of the labelled references.
        reference_labels: ``N`` labels, all strings or all integers (integer-valued floats count as integers; ``1``
            and ``1.0`` are one class).
        query_embeddings: ``(Q, D)`` embeddings to classify; must be None with ``leave_one_out``.
        k: Number of neighbours. Must be smaller than the number of candidates per query: ``k < N``, and with
            ``leave_one_out`` ``k < N - 1`` (each text has ``N - 1`` others; ``k`` equal to that would let every
            text vote for every other one, a constant majority classifier rather than a kNN).
        weights: ``"uniform"`` or ``"distance"``, see above.
        leave_one_out: Classify every reference by the others: the query set is the reference set, ``k + 1``
            neighbours are searched and the text itself is dropped *by index* (duplicates of it still vote).
        chunk_size: References per chunk of the neighbour search.

    Returns:
        The predicted labels, a numpy array of length ``Q`` (``N`` with ``leave_one_out``) holding labels of
        ``reference_labels``' kind.

    Raises:
        ValueError: embeddings that are empty, not 2-D or of different dimensions; labels that are neither strings nor
            integers, mix both, or do not match the references in number; a bad ``k`` or ``weights``.

    Example:
        ::

            import numpy as np
            from sbert_align.evaluation import knn_classify

            rng = np.random.default_rng(0)
            references, queries = rng.normal(size=(100, 16)), rng.normal(size=(10, 16))
            labels = rng.choice(["sports", "finance", "weather"], size=100)
            predictions = knn_classify(references, labels, queries, k=5)
    """
    references = check_embeddings(reference_embeddings, "reference_embeddings")
    (ref_ids,), classes = encode_label_lists((reference_labels, "reference_labels"))
    check_same_length(references, ref_ids, "reference_embeddings", "reference_labels")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}.")
    if leave_one_out:
        if query_embeddings is not None:
            raise ValueError("leave_one_out=True classifies the references themselves; pass query_embeddings=None.")
        queries = references
    else:
        if query_embeddings is None:
            raise ValueError("query_embeddings is required unless leave_one_out=True.")
        queries = check_embeddings(query_embeddings, "query_embeddings").to(references.device)
        if queries.shape[1] != references.shape[1]:
            raise ValueError(
                f"query_embeddings have dimension {queries.shape[1]} but reference_embeddings have "
                f"{references.shape[1]}."
            )
    k = check_k(k, references.shape[0], leave_one_out)

    sims, idx = similarity_topk(queries, references, k + 1 if leave_one_out else k, chunk_size=chunk_size)
    predicted = _vote_neighbours(sims, idx, ref_ids, len(classes), weights, k, leave_one_out)
    return classes[predicted]


def _vote_neighbours(
    sims: Tensor, idx: Tensor, reference_ids: np.ndarray, num_classes: int, weights: str, k: int, leave_one_out: bool
) -> np.ndarray:
    """Class ids voted by each query's neighbours (``(Q, k)``, or ``k + 1`` with ``leave_one_out``), in chunks of
    :data:`VOTE_CHUNK` queries, by the rules of :func:`knn_classify`."""
    ref_ids_t = torch.as_tensor(reference_ids, device=idx.device)
    predictions = []
    for start in range(0, sims.shape[0], VOTE_CHUNK):
        s, i = order_neighbours(sims[start : start + VOTE_CHUNK], idx[start : start + VOTE_CHUNK])
        if leave_one_out:
            s, i = _drop_self(s, i, start, k)
        predictions.append(vote(s.double(), ref_ids_t[i], num_classes, weights))
    return torch.cat(predictions).cpu().numpy()


def order_neighbours(sims: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
    """Sort each row by decreasing similarity, equal similarities by increasing reference index.

    ``similarity_topk`` returns neighbours most similar first, but its order among equal similarities is not
    guaranteed to follow the index; the tie-breaking rule needs it to.
    """
    by_index = torch.argsort(idx, dim=1)
    sims, idx = sims.gather(1, by_index), idx.gather(1, by_index)
    by_sim = torch.sort(sims, dim=1, descending=True, stable=True).indices
    return sims.gather(1, by_sim), idx.gather(1, by_sim)


def _drop_self(sims: Tensor, idx: Tensor, offset: int, k: int) -> tuple[Tensor, Tensor]:
    """Of ``k + 1`` neighbours per row, drop the row's own index (or the last neighbour when it is absent)."""
    own = torch.arange(offset, offset + idx.shape[0], device=idx.device)[:, None]
    is_self = idx == own
    # Without the item among the k + 1 (more than k exact duplicates came first), drop the farthest neighbour.
    is_self[:, -1] |= ~is_self.any(dim=1)
    keep = ~is_self
    return sims[keep].view(-1, k), idx[keep].view(-1, k)


def vote_weights(sims: Tensor, weights: str) -> Tensor:
    """Each neighbour's vote: 1 (``"uniform"``), or ``1 / (1 - cos)`` (``"distance"``; neighbours at distance 0 take
    all the vote when a row has any, as scikit-learn's), for neighbour similarities ``sims`` ``(Q, k)``."""
    if weights == "uniform":
        return torch.ones_like(sims)
    dist = (1.0 - sims).clamp_min(0.0)
    zero = dist == 0
    return torch.where(zero.any(dim=1, keepdim=True), zero.to(sims.dtype), 1.0 / dist)


def vote(sims: Tensor, labels: Tensor, num_classes: int, weights: str) -> Tensor:
    """Class ids chosen by the votes of neighbours ``labels`` (rows sorted by decreasing similarity ``sims``)."""
    rows, k = labels.shape
    w = vote_weights(sims, weights)
    votes = torch.zeros(rows, num_classes, dtype=sims.dtype, device=sims.device).scatter_add_(1, labels, w)
    summed = torch.zeros_like(votes).scatter_add_(1, labels, sims)
    # Rank of each class's nearest neighbour (k for classes without neighbours): scatter the smallest position.
    positions = torch.arange(k, device=labels.device).expand(rows, k)
    first = torch.full((rows, num_classes), k, dtype=torch.long, device=labels.device)
    first = first.scatter_reduce(1, labels, positions, reduce="amin")

    tied = votes == votes.max(dim=1, keepdim=True).values
    summed = summed.masked_fill(~tied, float("-inf"))
    tied &= summed == summed.max(dim=1, keepdim=True).values
    return first.masked_fill(~tied, k + 1).argmin(dim=1)


def knn_metrics(
    reference_embeddings: Tensor | np.ndarray,
    reference_labels: Any,
    query_embeddings: Tensor | np.ndarray | None = None,
    query_labels: Any = None,
    k: int = 5,
    weights: Literal["uniform", "distance"] = "uniform",
    leave_one_out: bool = False,
    chunk_size: int = 16384,
) -> dict[str, float]:
    """Accuracy and macro-F1 of :func:`knn_classify` against the true labels.

    ``query_labels`` are the true labels of ``query_embeddings``; with ``leave_one_out`` both are None and the
    references are scored against ``reference_labels``. Labels are encoded by the project's one label encoder
    (:func:`sbert_align.data.encode_label_lists`): ``1`` and ``1.0`` are one class. Macro-F1 is
    ``sklearn.metrics.f1_score(average="macro")`` over the labels present in the truth or the predictions.

    A query whose label occurs in no reference can never be predicted right: it counts as wrong in the accuracy (and
    its class scores an F1 of 0), and an :class:`~sbert_align.data.UnseenLabelWarning` names such labels.

    Args:
        reference_embeddings: ``(N, D)`` embeddings of the labelled references.
        reference_labels: ``N`` labels, all strings or all integers (integer-valued floats count as integers).
        query_embeddings: ``(Q, D)`` embeddings to classify; None with ``leave_one_out``.
        query_labels: ``Q`` true labels of the queries, of the same kind; None with ``leave_one_out``.
        k: Number of neighbours (see :func:`knn_classify`).
        weights: ``"uniform"`` or ``"distance"``.
        leave_one_out: Score every reference by the others.
        chunk_size: References per chunk of the neighbour search.

    Returns:
        ``{"accuracy": ..., "macro_f1": ...}``.

    Raises:
        ValueError: missing or mismatched labels or embeddings, labels that are neither strings nor integers (or mix
            both), or a bad ``k`` / ``weights``.

    Warns:
        UnseenLabelWarning: query labels that no reference has (their count and up to 10 of them).

    Example:
        ::

            import numpy as np
            from sbert_align.evaluation import knn_metrics

            rng = np.random.default_rng(0)
            embeddings, labels = rng.normal(size=(100, 16)), rng.integers(0, 3, size=100)
            print(knn_metrics(embeddings, labels, k=5, leave_one_out=True))
    """
    if leave_one_out:
        if query_labels is not None:
            raise ValueError("leave_one_out=True scores the references themselves; pass query_labels=None.")
        query_labels = reference_labels
    elif query_labels is None:
        raise ValueError("query_labels is required unless leave_one_out=True.")
    (truth, ref_ids), classes = encode_label_lists(
        (query_labels, "query_labels"), (reference_labels, "reference_labels")
    )
    if query_embeddings is not None:
        check_same_length(
            check_embeddings(query_embeddings, "query_embeddings"), truth, "query_embeddings", "query_labels"
        )
    _warn_unseen_queries(truth, ref_ids, classes)
    predicted = knn_classify(
        reference_embeddings, ref_ids, query_embeddings, k, weights, leave_one_out, chunk_size=chunk_size
    )
    return _scores(predicted, truth)


def _warn_unseen_queries(query_ids: np.ndarray, reference_ids: np.ndarray, classes: np.ndarray) -> None:
    """Warn (:class:`~sbert_align.data.UnseenLabelWarning`) when query labels never occur among the references."""
    check_unseen_labels(
        classes[query_ids],
        classes[np.unique(reference_ids)],
        held_out="query_labels",
        seen="reference_labels",
        stacklevel=4,
    )


def _scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1; a query whose label no reference has is never predicted right, so it counts as wrong."""
    return {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
    }


class KNNEvaluator(AlignmentEvaluator):
    """Classify texts by a vote of their ``k`` most similar labelled reference texts; report accuracy and macro-F1.

    The class geometry a class-alignment loss trains is exactly what a kNN classifier reads, so this is the
    evaluator to select checkpoints by. All texts are embedded once per call (L2-normalised). The queries are embedded
    first; the references are then embedded and searched ``chunk_size`` at a time
    (:class:`sbert_align.kernels.StreamingTopK`), so with a million references neither their embeddings nor a
    million x queries matrix ever exist at once (with ``leave_one_out`` every reference is also a query, so all their
    embeddings are held, and the search streams over them). Votes, weights and tie-breaking are those of :func:`knn_classify`: cosine
    similarity; ``"distance"`` weights are ``1 / (1 - cos)`` like scikit-learn's; ties go to the class with the
    higher summed similarity, then to the class of the nearest neighbour.

    Metrics: ``accuracy`` (primary) and ``macro_f1``, prefixed with ``name`` when it is set.

    A query whose label occurs in no reference can never be predicted right and counts as wrong; the constructor
    warns about such labels (:class:`~sbert_align.data.UnseenLabelWarning`).

    Args:
        reference_texts: The labelled texts that vote (e.g. the training set); no empty or whitespace-only text.
        reference_labels: Their labels: strings or integers (one kind; ``1`` and ``1.0`` are one class).
        query_texts: The texts to classify (e.g. the validation set); None with ``leave_one_out``.
        query_labels: Their true labels; None with ``leave_one_out``.
        k: Neighbours per vote; ``k < len(reference_texts)`` (``k < len(reference_texts) - 1`` with
            ``leave_one_out``).
        weights: ``"uniform"`` (one vote each) or ``"distance"`` (inverse cosine distance).
        leave_one_out: Classify each reference text by all the others (no query set): a text never votes for
            itself, though its duplicates do.
        name: Name of the evaluation set; prefixes the metrics (``"{name}_accuracy"``) and names the CSV file.
        batch_size: Batch size for encoding.
        show_progress_bar: Show a progress bar while encoding.
        write_csv: Append the metrics to ``knn_evaluation[_{name}]_results.csv`` in ``output_path`` when one is
            given (the trainer gives ``{output_dir}/eval``).
        truncate_dim: Truncate embeddings to this dimension (Matryoshka models); None keeps the model's own.
        chunk_size: References embedded and searched at a time.
        allow_empty_texts: Embed empty and whitespace-only texts instead of refusing them.

    Raises:
        ValueError: empty lists, empty or whitespace-only texts (naming the argument, the count and the first index),
            texts and labels of different lengths, labels that are neither strings nor integers (or mix both), a bad
            ``k`` or ``weights``.

    Warns:
        UnseenLabelWarning: query labels that no reference has.

    Example:
        ::

            from sentence_transformers import SentenceTransformer
            from sbert_align.evaluation import KNNEvaluator

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            evaluator = KNNEvaluator(
                reference_texts=["I lost my card", "my card was stolen", "what is the weather", "will it rain"],
                reference_labels=["card", "card", "weather", "weather"],
                query_texts=["someone took my card", "is it sunny today"],
                query_labels=["card", "weather"],
                k=1,
                name="intent-dev",
            )
            results = evaluator(model)
            print(evaluator.primary_metric)  # => "intent-dev_accuracy"
            print(results[evaluator.primary_metric])
    """

    csv_stem = "knn_evaluation"

    def __init__(
        self,
        reference_texts: list[str],
        reference_labels: list[str] | list[int],
        query_texts: list[str] | None = None,
        query_labels: list[str] | list[int] | None = None,
        k: int = 5,
        weights: Literal["uniform", "distance"] = "uniform",
        leave_one_out: bool = False,
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
        chunk_size: int = 16384,
        allow_empty_texts: bool = False,
    ):
        super().__init__(name, batch_size, show_progress_bar, write_csv, truncate_dim)
        self.reference_texts = check_inputs(reference_texts, "reference_texts", allow_empty_texts)
        if leave_one_out:
            if query_texts is not None or query_labels is not None:
                raise ValueError(
                    "leave_one_out=True classifies reference_texts themselves; leave out query_texts/labels."
                )
            self.query_texts = None
            (self.reference_ids,), self.classes = encode_label_lists((reference_labels, "reference_labels"))
            self.query_ids = self.reference_ids
        else:
            if query_texts is None or query_labels is None:
                raise ValueError("query_texts and query_labels are required unless leave_one_out=True.")
            self.query_texts = check_inputs(query_texts, "query_texts", allow_empty_texts)
            (self.reference_ids, self.query_ids), self.classes = encode_label_lists(
                (reference_labels, "reference_labels"), (query_labels, "query_labels")
            )
            check_same_length(self.query_texts, self.query_ids, "query_texts", "query_labels")
            _warn_unseen_queries(self.query_ids, self.reference_ids, self.classes)
        check_same_length(self.reference_texts, self.reference_ids, "reference_texts", "reference_labels")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}.")
        self.k = check_k(k, len(self.reference_texts), leave_one_out)
        self.weights = weights
        self.leave_one_out = bool(leave_one_out)
        self.chunk_size = chunk_size
        self.primary_metric = "accuracy"
        self.metric_names = ["accuracy", "macro_f1"]

    def compute_metrics(self, model: SentenceTransformer) -> dict[str, float]:
        # The labels were checked (and unseen query labels warned about) once, in __init__.
        if self.leave_one_out:
            references = self.embed(model, self.reference_texts)
            predicted = knn_classify(
                references,
                self.reference_ids,
                None,
                k=self.k,
                weights=self.weights,
                leave_one_out=True,
                chunk_size=self.chunk_size,
            )
            return _scores(predicted, self.query_ids)
        # References are embedded and searched one chunk at a time: a million of them never exist at once.
        search = StreamingTopK(self.embed(model, self.query_texts), self.k)
        for chunk in self.embed_chunks(model, self.reference_texts, self.chunk_size, "Embedding references"):
            search.add(chunk)
        sims, idx = search.result()
        predicted = _vote_neighbours(sims, idx, self.reference_ids, len(self.classes), self.weights, self.k, False)
        return _scores(predicted, self.query_ids)

    @property
    def description(self) -> str:
        return "kNN Classification"

    def get_config_dict(self) -> dict[str, Any]:
        return {"k": self.k, "weights": self.weights, "leave_one_out": self.leave_one_out, **super().get_config_dict()}

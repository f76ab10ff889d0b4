"""Classify texts with the aligned space: :class:`KNNClassifier`, a kNN vote over labelled reference texts, with an
out-of-scope threshold, saved inside the model folder.

A class-alignment loss trains an embedding space in which texts of one class lie close together; reading it with a
k-nearest-neighbour vote is the classifier that space was trained for. :class:`KNNClassifier` embeds the reference
texts once (:meth:`~KNNClassifier.fit`), then classifies new texts by the vote of their ``k`` most cosine-similar
references, exactly as :func:`sbert_align.evaluation.knn_classify` and
:class:`~sbert_align.evaluation.KNNEvaluator` do (the same search, the same weights, the same tie-breaking), so the
accuracy an evaluator reported during training is the accuracy the classifier delivers.

Out of scope: each prediction comes with a *score*, the cosine similarity of the text's nearest reference (top-1).
With a ``threshold``, a text whose score is below it is predicted as ``unknown_label`` (``"unknown"``) instead of a
class: nothing known is close enough. :meth:`~KNNClassifier.choose_threshold` picks the threshold on validation data
(in-scope texts with their labels, plus out-of-scope texts); :func:`best_threshold` is the same choice on scores.

Saved layout (everything loads without pickle)::

    model_folder/                 a sentence-transformers model folder: SentenceTransformer(model_folder) loads it
        modules.json, model.safetensors, ...
        knn_classifier/
            config.json           k, weights, threshold, unknown_label, classes, truncate_dim, format and version,
                                  and the fingerprint of the encoder the references were embedded with
            index.safetensors     "embeddings" (N x D float32, L2-normalised) and "label_ids" (N int64)

Example::

    from sentence_transformers import SentenceTransformer
    from sbert_align.classifier import KNNClassifier

    model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
    clf = KNNClassifier(model, k=1).fit(
        ["I lost my card", "my card was stolen", "will it rain today", "is it sunny"],
        ["card", "card", "weather", "weather"],
    )
    clf.predict(["someone took my card"])               # array(['card'], dtype=object)
    clf.save("intent-model")                            # the model and its index, in one folder
    clf = KNNClassifier.load("intent-model")
"""

from __future__ import annotations

import json
import math
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from .data.labels import check_unseen_labels, encode_label_lists, label_name
from .evaluation import check_inputs, check_same_length
from .evaluation.knn import VOTE_CHUNK, WEIGHTS, check_k, order_neighbours, vote, vote_weights
from .files import atomic_dir, atomic_write_json
from .kernels import similarity_topk

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "KNNClassifier",
    "ThresholdChoice",
    "best_threshold",
    "model_fingerprint",
    "CLASSIFIER_FOLDER",
    "THRESHOLD_CRITERIA",
    "FORMAT",
    "FORMAT_VERSION",
]

#: The folder of the index inside a model folder.
CLASSIFIER_FOLDER = "knn_classifier"
#: The files in it.
INDEX_FILE = "index.safetensors"
CONFIG_FILE = "config.json"
#: ``config.json["format"]``: what wrote the folder.
FORMAT = "sbert-align-knn-classifier"
#: ``config.json["format_version"]``: raised when the layout changes in a way older readers cannot read.
FORMAT_VERSION = 1
#: What :meth:`KNNClassifier.choose_threshold` can maximise (see :func:`best_threshold`).
THRESHOLD_CRITERIA = ("balanced", "accuracy")


# --------------------------------------------------------------------------------------------------------------------
# the encoder's identity


def model_fingerprint(model: Any) -> str:
    """The identity of an encoder's embeddings: a hash of its weights, tokenizer and module settings.

    It is :func:`sbert_align.mteb.content_revision` (``sha256-`` and 16 hex digits): the same weights and settings give
    the same fingerprint wherever the model is loaded from (a saved and reloaded folder included); another or a
    retrained model gives another one. A :class:`KNNClassifier` stores it with its index so that references embedded
    by one encoder are never compared with queries embedded by another.

    Example:
        ::

            from sentence_transformers import SentenceTransformer
            from sbert_align.classifier import model_fingerprint

            model_fingerprint(SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2"))   # 'sha256-...'
    """
    from .mteb.run import content_revision

    return content_revision(model)


# --------------------------------------------------------------------------------------------------------------------
# choosing the out-of-scope threshold


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold :func:`best_threshold` chose and what it gives on the data it was chosen on.

    Args:
        threshold: Texts whose score is below it are out of scope.
        criterion: The criterion maximised (see :func:`best_threshold`).
        value: The criterion's value at ``threshold``.
        in_scope_accuracy: Share of in-scope texts kept (score >= threshold) *and* classified right.
        oos_recall: Share of out-of-scope texts rejected (score < threshold).
    """

    threshold: float
    criterion: str
    value: float
    in_scope_accuracy: float
    oos_recall: float


def best_threshold(
    in_scope_scores: Any,
    in_scope_correct: Any,
    oos_scores: Any,
    criterion: Literal["balanced", "accuracy"] = "balanced",
) -> ThresholdChoice:
    """The score threshold that best separates in-scope from out-of-scope texts.

    A text is *kept* when its score is ``>= threshold`` and *rejected* (out of scope) otherwise. An in-scope text
    counts as right when it is kept and its predicted class is right (``in_scope_correct``); an out-of-scope text when
    it is rejected. Criteria:

    * ``"balanced"`` (default): the mean of in-scope accuracy and out-of-scope recall,
      ``(right in-scope / n_in + rejected out-of-scope / n_oos) / 2``; the two numbers CLINC150 reports (Larson et
      al. 2019), weighted equally whatever the sizes of the two sets.
    * ``"accuracy"``: accuracy over all texts, out of scope being one more class,
      ``(right in-scope + rejected out-of-scope) / (n_in + n_oos)``.

    Every distinct threshold is tried (the criterion only changes at a score): keeping everything, rejecting
    everything, and one threshold between each two consecutive distinct scores (their midpoint). Of equally good
    thresholds the lowest (rejecting the fewest texts) is chosen.

    Args:
        in_scope_scores: The scores of the in-scope texts.
        in_scope_correct: For each in-scope text, whether its predicted class is right (before any threshold).
        oos_scores: The scores of the out-of-scope texts.
        criterion: ``"balanced"`` or ``"accuracy"``.

    Returns:
        The :class:`ThresholdChoice`.

    Raises:
        ValueError: empty or non-finite scores, ``in_scope_correct`` of another length, or an unknown criterion.

    Example:
        ::

            from sbert_align.classifier import best_threshold

            choice = best_threshold([0.9, 0.8, 0.7], [True, True, False], [0.5, 0.75])
            assert 0.75 < choice.threshold <= 0.8  # keeps the two right in-scope texts, rejects both others
            assert choice.in_scope_accuracy == 2 / 3 and choice.oos_recall == 1.0
    """
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(f"criterion must be one of {THRESHOLD_CRITERIA}, got {criterion!r}.")
    ins = _scores_array(in_scope_scores, "in_scope_scores")
    oos = _scores_array(oos_scores, "oos_scores")
    correct = np.asarray(in_scope_correct, dtype=bool).reshape(-1)
    check_same_length(ins, correct, "in_scope_scores", "in_scope_correct")
    distinct = np.unique(np.concatenate([ins, oos]))  # sorted
    # candidate i keeps exactly the texts with score >= distinct[i]; the last candidate keeps nothing
    right_in = np.sort(ins[correct])
    kept_right = len(right_in) - np.searchsorted(right_in, distinct, side="left")
    rejected_oos = np.searchsorted(np.sort(oos), distinct, side="left")
    kept_right = np.append(kept_right, 0)
    rejected_oos = np.append(rejected_oos, len(oos))
    in_acc = kept_right / len(ins)
    oos_recall = rejected_oos / len(oos)
    if criterion == "balanced":
        value = (in_acc + oos_recall) / 2
    else:
        value = (kept_right + rejected_oos) / (len(ins) + len(oos))
    i = int(np.argmax(value))  # the first maximum: the lowest threshold
    if i == 0:
        threshold = float(distinct[0])
    elif i == len(distinct):
        threshold = float(np.nextafter(distinct[-1], np.inf))
    else:
        lo, hi = float(distinct[i - 1]), float(distinct[i])
        mid = (lo + hi) / 2
        threshold = mid if lo < mid <= hi else hi
    return ThresholdChoice(threshold, criterion, float(value[i]), float(in_acc[i]), float(oos_recall[i]))


def _scores_array(scores: Any, name: str) -> np.ndarray:
    arr = np.asarray(scores.detach().cpu() if isinstance(scores, Tensor) else scores, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name} is empty: it must hold at least one score.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds a NaN or infinite score.")
    return arr


# --------------------------------------------------------------------------------------------------------------------
# argument checks


def _check_threshold(threshold: Any) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a number (a cosine similarity) or None, got {threshold!r}.")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number or None, got {threshold!r}.")
    return float(threshold)


def _check_unknown_label(unknown_label: Any) -> str | int:
    if isinstance(unknown_label, (bool, np.bool_)) or not isinstance(unknown_label, (str, numbers.Integral)):
        raise ValueError(f"unknown_label must be a string or an integer, got {unknown_label!r}.")
    label_name(unknown_label)  # an empty string is no label
    return unknown_label if isinstance(unknown_label, str) else int(unknown_label)


def _check_positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 1:
        expected = "a positive integer" + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}.")
    return int(value)


# --------------------------------------------------------------------------------------------------------------------
# the classifier


class KNNClassifier:
    """Classify texts by a vote of their ``k`` most similar labelled reference texts, in the model's embedding space.

    :meth:`fit` embeds the reference texts (L2-normalised) and keeps them with their labels as the index;
    :meth:`predict` embeds new texts and lets their ``k`` most cosine-similar references vote. Search, votes and
    tie-breaking are those of :func:`sbert_align.evaluation.knn_classify` (and so of
    :class:`~sbert_align.evaluation.KNNEvaluator`): the neighbour search streams over chunks of ``chunk_size``
    references (:func:`sbert_align.kernels.similarity_topk`), so a million references never make a (queries x
    references) matrix; ``"distance"`` weights are ``1 / (1 - cos)`` as scikit-learn's; ties go to the class with the
    higher summed similarity, then to the class of the nearest neighbour.

    Labels are encoded by the project's label encoder (:func:`sbert_align.data.encode_label_lists`): all strings or
    all integers; ``1`` and ``1.0`` are one class; ``classes_`` holds the classes in id order (numbers first,
    numerically, then names) and gives predictions back in the kind of the labels fitted on.

    The score of a prediction is the cosine similarity of the text's nearest reference (top-1). It is what the
    out-of-scope ``threshold`` is compared with: it does not depend on ``k`` or on the vote, and it is continuous,
    where a vote share with ``k=5`` takes only six values. A text whose score is below ``threshold`` is predicted as
    ``unknown_label``; :meth:`choose_threshold` picks the threshold on validation data.

    Saving: :meth:`save` writes the model *and* the index into one folder (``SentenceTransformer(path)`` still loads
    it; :meth:`load` loads both); :meth:`save_index` adds the index to an existing model folder. The index records a
    fingerprint of the encoder (:func:`model_fingerprint`), and loading it with another or a retrained encoder fails
    (or, with ``strict=False``, warns).

    Args:
        model: The ``SentenceTransformer`` that embeds references and queries.
        k: Neighbours per vote; must be smaller than the number of references.
        weights: ``"uniform"`` (one vote each) or ``"distance"`` (inverse cosine distance).
        threshold: Out-of-scope threshold on the top-1 cosine similarity; None: every text gets a class.
        unknown_label: The prediction for texts below ``threshold``: a string or an integer that is none of the
            classes.
        batch_size: Batch size for encoding.
        truncate_dim: Truncate embeddings to this dimension (Matryoshka models); None keeps the model's own.
        chunk_size: References per chunk of the neighbour search.
        show_progress_bar: Show a progress bar while encoding.
        allow_empty_texts: Embed empty and whitespace-only texts instead of refusing them.

    Attributes (after :meth:`fit` or :meth:`load`):
        classes_: The classes in id order (an int64 array for integer labels, an object array of names otherwise);
            the columns of :meth:`predict_proba`.
        embeddings_: ``(N, D)`` float32 tensor of the normalised reference embeddings, on the model's device.
        label_ids_: ``(N,)`` int64 tensor: the class id of each reference.
        model_fingerprint_: The :func:`model_fingerprint` of the encoder the references were embedded with.

    Raises:
        ValueError: a bad ``k``, ``weights``, ``threshold``, ``unknown_label``, ``batch_size``, ``truncate_dim`` or
            ``chunk_size``.

    Example:
        ::

            from sentence_transformers import SentenceTransformer
            from sbert_align.classifier import KNNClassifier

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            clf = KNNClassifier(model, k=1, threshold=0.3).fit(
                ["I lost my card", "my card was stolen", "will it rain today", "is it sunny"],
                ["card", "card", "weather", "weather"],
            )
            labels, scores = clf.predict_with_scores(["someone took my card", "recommend a good novel"])
            print(labels, scores)                    # ['card' 'unknown'] and the top-1 similarities
            print(clf.predict_proba(["is it sunny tomorrow"]), clf.classes_)
    """

    def __init__(
        self,
        model: SentenceTransformer,
        k: int = 5,
        weights: Literal["uniform", "distance"] = "uniform",
        threshold: float | None = None,
        unknown_label: str | int = "unknown",
        batch_size: int = 32,
        truncate_dim: int | None = None,
        chunk_size: int = 16384,
        show_progress_bar: bool = False,
        allow_empty_texts: bool = False,
    ):
        if model is None:
            raise ValueError("model must be a SentenceTransformer, got None.")
        self.model = model
        self.k = _check_positive_int(k, "k")
        if weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}.")
        self.weights = weights
        self.threshold = _check_threshold(threshold)
        self.unknown_label = _check_unknown_label(unknown_label)
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.truncate_dim = _check_positive_int(truncate_dim, "truncate_dim", allow_none=True)
        self.chunk_size = _check_positive_int(chunk_size, "chunk_size")
        self.show_progress_bar = bool(show_progress_bar)
        self.allow_empty_texts = bool(allow_empty_texts)
        self.classes_: np.ndarray | None = None
        self.embeddings_: Tensor | None = None
        self.label_ids_: Tensor | None = None
        self.model_fingerprint_: str | None = None

    # ----------------------------------------------------------------------------------------------------------------
    # fitting and predicting

    def fit(self, texts: list[str], labels: list[str] | list[int]) -> KNNClassifier:
        """Embed ``texts`` (L2-normalised) and keep them with their ``labels`` as the references that vote.

        Args:
            texts: The labelled reference texts (e.g. the training set).
            labels: One label per text: strings or integers (one kind; ``1`` and ``1.0`` are one class).

        Returns:
            ``self``.

        Raises:
            ValueError: empty lists, empty or whitespace-only texts (unless ``allow_empty_texts``), texts and labels of
                different lengths, labels that are neither strings nor integers (or mix both), ``k`` not smaller than
                the number of texts, a ``truncate_dim`` larger than the model's dimension, or (with a ``threshold``)
                an ``unknown_label`` that is one of the classes.

        Example:
            ::

                clf = KNNClassifier(model, k=3).fit(train_texts, train_labels)
        """
        texts = check_inputs(texts, "texts", self.allow_empty_texts)
        (ids,), classes = encode_label_lists((labels, "labels"))
        check_same_length(texts, ids, "texts", "labels")
        check_k(self.k, len(texts), leave_one_out=False)
        if self.threshold is not None:
            self._check_unknown_against(classes)
        embeddings = self._embed(texts)
        if self.truncate_dim is not None and embeddings.shape[1] != self.truncate_dim:
            raise ValueError(
                f"truncate_dim={self.truncate_dim} is larger than the model's embedding dimension "
                f"({embeddings.shape[1]})."
            )
        self.embeddings_ = embeddings.float().contiguous()
        self.label_ids_ = torch.as_tensor(ids, dtype=torch.long, device=self.embeddings_.device)
        self.classes_ = classes
        self.model_fingerprint_ = model_fingerprint(self.model)
        return self

    def predict(self, texts: list[str]) -> np.ndarray:
        """The class of each text (``unknown_label`` where its score is below ``threshold``).

        Args:
            texts: The texts to classify.

        Returns:
            A numpy array with one label per text, of the kind of the labels fitted on (int64 for integer labels, an
            object array otherwise; an object array too when a ``threshold`` can put a string ``unknown_label`` among
            integer classes).

        Raises:
            ValueError: not fitted yet, empty input or empty texts, or (with a threshold) an ``unknown_label`` that is
                one of the classes.

        Example:
            ::

                clf.predict(["is it going to rain"])          # array(['weather'], dtype=object)
        """
        return self.predict_with_scores(texts)[0]

    def predict_with_scores(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The predictions of :meth:`predict` and the score each was compared with the threshold on.

        The score is the cosine similarity between the text and its nearest reference (top-1), in ``[-1, 1]``.

        Args:
            texts: The texts to classify.

        Returns:
            ``(labels, scores)``: the labels as :meth:`predict` gives them and a float64 array of scores.

        Raises:
            ValueError: as :meth:`predict`.

        Example:
            ::

                labels, scores = clf.predict_with_scores(["is it going to rain", "book me a table"])
        """
        self._check_fitted()
        ids, scores, _ = self._classify(self._embed_queries(texts), proba=False)
        return self._labels(ids, scores), scores

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """The share of the (weighted) vote each class gets: one row per text, one column per class of ``classes_``.

        Rows sum to 1. The threshold plays no part here: these are the votes of the ``k`` neighbours. The class
        :meth:`predict` gives is a class with the largest share (ties broken as described in the class docstring).

        Args:
            texts: The texts to classify.

        Returns:
            A ``(len(texts), len(classes_))`` float64 array.

        Raises:
            ValueError: not fitted yet, empty input or empty texts.

        Example:
            ::

                proba = clf.predict_proba(["is it going to rain"])
                dict(zip(clf.classes_, proba[0]))              # {'card': 0.0, 'weather': 1.0}
        """
        self._check_fitted()
        return self._classify(self._embed_queries(texts), proba=True)[2]

    def kneighbors(self, texts: list[str], n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The most similar references of each text, in the order the vote reads them.

        Args:
            texts: The query texts.
            n_neighbors: How many (default ``k``); at most the number of references.

        Returns:
            ``(similarities, indices)``, each ``(len(texts), n_neighbors)``: cosine similarities (decreasing; equal
            ones by increasing index) and the references' positions in the texts given to :meth:`fit`.

        Raises:
            ValueError: not fitted yet, empty input or empty texts, or a bad ``n_neighbors``.

        Example:
            ::

                sims, idx = clf.kneighbors(["is it going to rain"], n_neighbors=2)
        """
        self._check_fitted()
        n = self.k if n_neighbors is None else _check_positive_int(n_neighbors, "n_neighbors")
        if n > self.embeddings_.shape[0]:
            raise ValueError(f"n_neighbors must be at most the number of references ({self.num_references}), got {n}.")
        queries = self._embed_queries(texts).to(self.embeddings_.device)
        sims, idx = [], []
        for start in range(0, queries.shape[0], VOTE_CHUNK):
            s, i = similarity_topk(
                queries[start : start + VOTE_CHUNK], self.embeddings_, n, chunk_size=self.chunk_size
            )
            s, i = order_neighbours(s, i)
            sims.append(s.double().cpu())
            idx.append(i.cpu())
        return torch.cat(sims).numpy(), torch.cat(idx).numpy()

    # ----------------------------------------------------------------------------------------------------------------
    # out of scope

    def choose_threshold(
        self,
        texts: list[str],
        labels: list[str] | list[int],
        oos_texts: list[str],
        criterion: Literal["balanced", "accuracy"] = "balanced",
    ) -> ThresholdChoice:
        """Pick the out-of-scope threshold on validation data and set ``self.threshold`` to it.

        The in-scope ``texts`` (with their true ``labels``) and the out-of-scope ``oos_texts`` are classified and
        scored; the threshold maximising ``criterion`` is chosen by :func:`best_threshold`: by default the mean of
        in-scope accuracy (kept *and* right) and out-of-scope recall (rejected). Use data that the references do not
        contain (a validation split), or the scores of in-scope texts are inflated by their own copies.

        Args:
            texts: In-scope validation texts.
            labels: Their true labels (same kind as the labels fitted on); a label no reference has is never right
                (an :class:`~sbert_align.data.UnseenLabelWarning` names such labels).
            oos_texts: Out-of-scope validation texts.
            criterion: ``"balanced"`` (default) or ``"accuracy"``, see :func:`best_threshold`.

        Returns:
            The :class:`ThresholdChoice` (threshold, criterion value, in-scope accuracy and out-of-scope recall on
            this data).

        Raises:
            ValueError: not fitted yet, empty lists or texts, mismatched lengths, labels of another kind, an unknown
                criterion, or an ``unknown_label`` that is one of the classes.

        Warns:
            UnseenLabelWarning: ``labels`` that are none of the classes.

        Example:
            ::

                choice = clf.choose_threshold(val_texts, val_labels, oos_val_texts)
                print(choice.threshold, choice.in_scope_accuracy, choice.oos_recall)
                clf.predict(["book me a flight to the moon"])          # 'unknown' when below the threshold
        """
        if criterion not in THRESHOLD_CRITERIA:
            raise ValueError(f"criterion must be one of {THRESHOLD_CRITERIA}, got {criterion!r}.")
        self._check_fitted()
        self._check_unknown_against(self.classes_)
        correct, scores = self._in_scope_results(texts, labels)
        oos_scores = self._classify(self._embed_queries(oos_texts, "oos_texts"), proba=False)[1]
        choice = best_threshold(scores, correct, oos_scores, criterion)
        self.threshold = choice.threshold
        return choice

    def evaluate_oos(self, texts: list[str], labels: list[str] | list[int], oos_texts: list[str]) -> dict[str, Any]:
        """In-scope accuracy and out-of-scope recall at the current ``threshold`` (the pair CLINC150 reports).

        Args:
            texts: In-scope test texts.
            labels: Their true labels.
            oos_texts: Out-of-scope test texts.

        Returns:
            ``in_scope_accuracy`` (kept and right, over the in-scope texts), ``oos_recall`` (rejected, over the
            out-of-scope texts), ``oos_precision`` (out-of-scope among the rejected; None when none is rejected),
            ``closed_set_accuracy`` (in-scope accuracy without any threshold), ``in_scope_rejected`` (share of in-scope
            texts rejected), ``threshold``, ``n_in_scope`` and ``n_oos``.

        Raises:
            ValueError: as :meth:`choose_threshold`.

        Example:
            ::

                metrics = clf.evaluate_oos(test_texts, test_labels, oos_test_texts)
                print(metrics["in_scope_accuracy"], metrics["oos_recall"])
        """
        self._check_fitted()
        if self.threshold is not None:
            self._check_unknown_against(self.classes_)
        correct, scores = self._in_scope_results(texts, labels)
        oos_scores = self._classify(self._embed_queries(oos_texts, "oos_texts"), proba=False)[1]
        t = -math.inf if self.threshold is None else self.threshold
        kept, oos_rejected = scores >= t, oos_scores < t
        rejected = int((~kept).sum()) + int(oos_rejected.sum())
        return {
            "in_scope_accuracy": float(np.mean(correct & kept)),
            "oos_recall": float(np.mean(oos_rejected)),
            "oos_precision": float(oos_rejected.sum() / rejected) if rejected else None,
            "closed_set_accuracy": float(np.mean(correct)),
            "in_scope_rejected": float(np.mean(~kept)),
            "threshold": self.threshold,
            "n_in_scope": len(correct),
            "n_oos": len(oos_scores),
        }

    def _in_scope_results(self, texts: list[str], labels: Any) -> tuple[np.ndarray, np.ndarray]:
        """(whether each predicted class is right, the scores) for in-scope texts, before any threshold."""
        texts = check_inputs(texts, "texts", self.allow_empty_texts)
        (truth, class_ids), _ = encode_label_lists((labels, "labels"), (self.classes_, "the classifier's classes"))
        check_same_length(texts, truth, "texts", "labels")
        check_unseen_labels(labels, self.classes_, held_out="labels", seen="the classifier's classes", stacklevel=3)
        ids, scores, _ = self._classify(self._embed(texts), proba=False)
        return class_ids[ids] == truth, scores

    # ----------------------------------------------------------------------------------------------------------------
    # saving and loading

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Save the model and the index into one folder, atomically.

        The folder is a plain sentence-transformers model folder (``SentenceTransformer(path)`` loads it) with the
        index in ``knn_classifier/`` (:meth:`load` reads both). It is built under a temporary name and swapped in
        whole (:func:`sbert_align.files.atomic_dir`).

        Args:
            path: The folder to write.
            overwrite: Replace a non-empty folder at ``path`` (whole, never merged).

        Returns:
            ``path``.

        Raises:
            ValueError: not fitted yet, or the model's weights changed since :meth:`fit` (the index would not match
                them: fit again).
            FileExistsError: ``path`` is a non-empty folder and ``overwrite`` is False, or a file.

        Example:
            ::

                clf.save("intent-model")
                SentenceTransformer("intent-model")          # the encoder alone
                KNNClassifier.load("intent-model")           # the encoder and the classifier
        """
        path = Path(path)
        self._check_fitted()
        self._check_model_unchanged()
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"path {str(path)!r} is a file; expected a folder.")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise FileExistsError(
                f"path {str(path)!r} is not empty; pass overwrite=True to replace it whole, or choose a new folder."
            )
        with atomic_dir(path) as tmp:
            self.model.save(str(tmp))
            self._write_index(tmp / CLASSIFIER_FOLDER)
        return path

    def save_index(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write only the index into an existing model folder, as ``path/knn_classifier/`` (atomically).

        For a model saved by other means (``sbert-align train`` saves its model this way). The folder's model must be
        the one the index was fitted with; :meth:`load` checks that.

        Args:
            path: A sentence-transformers model folder (with ``modules.json``).
            overwrite: Replace an index already there.

        Returns:
            The index folder, ``path/knn_classifier``.

        Raises:
            ValueError: not fitted yet, ``path`` is not a model folder, or the model changed since :meth:`fit`.
            FileExistsError: an index is there already and ``overwrite`` is False.

        Example:
            ::

                model.save("intent-model")
                clf.save_index("intent-model")
        """
        path = Path(path)
        self._check_fitted()
        if not (path / "modules.json").is_file():
            raise ValueError(
                f"path {str(path)!r} is not a sentence-transformers model folder (no modules.json); save the model "
                "there first, or use save(path) to write both."
            )
        target = path / CLASSIFIER_FOLDER
        if target.exists() and not overwrite:
            raise FileExistsError(f"{str(target)!r} exists already; pass overwrite=True to replace it.")
        self._check_model_unchanged()
        with atomic_dir(target) as tmp:
            self._write_index(tmp)
        return target

    def _write_index(self, folder: Path) -> None:
        from safetensors.torch import save_file

        from . import __version__

        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "embeddings": self.embeddings_.detach().to("cpu", torch.float32).contiguous(),
            "label_ids": self.label_ids_.detach().to("cpu", torch.int64).contiguous(),
        }
        save_file(
            tensors, str(folder / INDEX_FILE), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)}
        )
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, "sbert_align_version": __version__}
        atomic_write_json(folder / CONFIG_FILE, {**config, **self.get_config_dict()})

    @classmethod
    def load(
        cls,
        path: str | Path,
        model: SentenceTransformer | None = None,
        *,
        device: str | None = None,
        strict: bool = True,
        **kwargs: Any,
    ) -> KNNClassifier:
        """Load a classifier saved by :meth:`save` (or :meth:`save_index`): the model folder and its index.

        Nothing loaded can run code: the index is safetensors and JSON, checked field by field; the model loads as
        ``SentenceTransformer(path, device=device)`` (remote code only if the folder's own settings and the
        ``trust_remote_code`` you pass in ``kwargs`` allow it, as sentence-transformers decides).

        Args:
            path: The model folder holding ``knn_classifier/``.
            model: An already loaded encoder to use instead of loading the one in ``path`` (e.g. on another device).
                It must be the encoder the index was fitted with.
            device: Device of the model loaded from ``path`` (ignored when ``model`` is given).
            strict: Raise when the encoder's fingerprint differs from the one the index was fitted with; False only
                warns.
            **kwargs: Constructor arguments that are not saved, or that override the saved ones: ``k``,
                ``weights``, ``threshold``, ``unknown_label``, ``batch_size``, ``chunk_size``,
                ``show_progress_bar``, ``allow_empty_texts``.

        Returns:
            The fitted :class:`KNNClassifier`.

        Raises:
            ValueError: no ``knn_classifier/`` in ``path`` (fit and save one first, or train with ``sbert-align
                train``), a malformed or newer-format index, or (``strict``) an encoder other than the one the index
                was fitted with.

        Example:
            ::

                clf = KNNClassifier.load("intent-model")
                clf = KNNClassifier.load("intent-model", device="cuda", threshold=0.45)
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        folder = path / CLASSIFIER_FOLDER
        if not (folder / CONFIG_FILE).is_file():
            raise ValueError(
                f"{str(path)!r} holds no kNN classifier ({CLASSIFIER_FOLDER}/{CONFIG_FILE} is missing): fit one and "
                "save it there (KNNClassifier(model).fit(texts, labels).save(path)), or train with 'sbert-align "
                "train', which saves one with the model."
            )
        config = _read_config(folder / CONFIG_FILE)
        try:
            tensors = load_file(str(folder / INDEX_FILE))
        except (OSError, SafetensorError) as e:
            raise ValueError(f"{folder / INDEX_FILE}: unreadable index ({e}).") from None
        embeddings, label_ids = _check_index(tensors, config, folder / INDEX_FILE)

        unknown_kwargs = set(kwargs) - _LOAD_OVERRIDES
        if unknown_kwargs:
            raise ValueError(
                f"load() got unexpected arguments {sorted(unknown_kwargs)}; expected some of {sorted(_LOAD_OVERRIDES)}."
            )
        given = model is not None
        if model is None:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(path), device=device)
        saved = {key: config[key] for key in ("k", "weights", "threshold", "unknown_label", "truncate_dim")}
        clf = cls(model, **{**saved, "chunk_size": config.get("chunk_size", 16384), **kwargs})
        fingerprint = model_fingerprint(model)
        if config["model_fingerprint"] != fingerprint:
            message = (
                f"the kNN classifier in {str(path)!r} was fitted with the encoder {config['model_fingerprint']}, but "
                f"the model {'given' if given else 'loaded from there'} is {fingerprint} (other or retrained "
                "weights, another tokenizer or settings, or another dtype): its embeddings are not comparable with the "
                "index. Fit the classifier again with this model, or pass strict=False to use it anyway."
            )
            if strict:
                raise ValueError(message)
            warnings.warn(message, UserWarning, stacklevel=2)
        classes = config["classes"]
        clf.classes_ = (
            np.array(classes, dtype=np.int64) if classes and isinstance(classes[0], int) else np.array(classes, object)
        )
        check_k(clf.k, embeddings.shape[0], leave_one_out=False)
        if clf.threshold is not None:
            clf._check_unknown_against(clf.classes_)
        device_ = model.device
        clf.embeddings_ = embeddings.to(device_)
        clf.label_ids_ = label_ids.to(device_)
        clf.model_fingerprint_ = config["model_fingerprint"]
        return clf

    def get_config_dict(self) -> dict[str, Any]:
        """The settings saved in ``config.json`` (and shown by ``repr``)."""
        config: dict[str, Any] = {
            "k": self.k,
            "weights": self.weights,
            "threshold": self.threshold,
            "unknown_label": self.unknown_label,
            "truncate_dim": self.truncate_dim,
            "chunk_size": self.chunk_size,
        }
        if self.classes_ is not None:
            config.update(
                classes=[int(c) if self.classes_.dtype.kind == "i" else str(c) for c in self.classes_],
                num_references=self.num_references,
                dimension=int(self.embeddings_.shape[1]),
                normalized=True,
                model_fingerprint=self.model_fingerprint_,
            )
        return config

    # ----------------------------------------------------------------------------------------------------------------
    # helpers

    @property
    def num_references(self) -> int:
        """How many references vote (0 before :meth:`fit`)."""
        return 0 if self.embeddings_ is None else int(self.embeddings_.shape[0])

    def __repr__(self) -> str:
        fitted = (
            f", classes={len(self.classes_)}, references={self.num_references}" if self.classes_ is not None else ""
        )
        threshold = f", threshold={self.threshold:.4f}" if self.threshold is not None else ""
        return f"KNNClassifier(k={self.k}, weights={self.weights!r}{threshold}{fitted})"

    def _check_fitted(self) -> None:
        if self.embeddings_ is None or self.classes_ is None:
            raise ValueError(
                "This KNNClassifier is not fitted yet: call fit(texts, labels) first (or load a saved one)."
            )

    def _check_unknown_against(self, classes: np.ndarray) -> None:
        self.unknown_label = _check_unknown_label(self.unknown_label)
        name = label_name(self.unknown_label)
        if any(label_name(c) == name for c in classes):
            raise ValueError(
                f"unknown_label {self.unknown_label!r} is also one of the classes, so an out-of-scope prediction could "
                "not be told from that class; choose another unknown_label."
            )

    def _check_model_unchanged(self) -> None:
        now = model_fingerprint(self.model)
        if now != self.model_fingerprint_:
            raise ValueError(
                f"the model changed since fit (its fingerprint was {self.model_fingerprint_}, it is {now}: it was "
                "trained further, or its settings changed), so the index no longer matches it; call fit again."
            )

    def _embed(self, texts: list) -> Tensor:
        return self.model.encode(
            texts,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_tensor=True,
            normalize_embeddings=True,
            truncate_dim=self.truncate_dim,
        )

    def _embed_queries(self, texts: Any, name: str = "texts") -> Tensor:
        texts = check_inputs(texts, name, self.allow_empty_texts)
        queries = self._embed(texts)
        if queries.shape[1] != self.embeddings_.shape[1]:
            raise ValueError(
                f"the model embeds {name} in dimension {queries.shape[1]} but the references have "
                f"{self.embeddings_.shape[1]}: the model or truncate_dim is not the one the classifier was fitted with."
            )
        return queries

    def _classify(self, queries: Tensor, proba: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(class ids, top-1 scores, vote shares or None) for embedded queries, as knn_classify computes them."""
        self.threshold = _check_threshold(self.threshold)
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}, got {self.weights!r}.")
        k = check_k(self.k, self.num_references, leave_one_out=False)
        references = self.embeddings_
        queries = queries.to(references.device)
        num_classes = len(self.classes_)
        ids, scores, shares = [], [], []
        for start in range(0, queries.shape[0], VOTE_CHUNK):
            sims, idx = similarity_topk(queries[start : start + VOTE_CHUNK], references, k, chunk_size=self.chunk_size)
            sims, idx = order_neighbours(sims, idx)
            sims = sims.double()
            neighbour_ids = self.label_ids_[idx]
            ids.append(vote(sims, neighbour_ids, num_classes, self.weights).cpu())
            scores.append(sims[:, 0].cpu())
            if proba:
                w = vote_weights(sims, self.weights)
                votes = torch.zeros(sims.shape[0], num_classes, dtype=sims.dtype, device=sims.device)
                votes.scatter_add_(1, neighbour_ids, w)
                shares.append((votes / votes.sum(dim=1, keepdim=True)).cpu())
        return (
            torch.cat(ids).numpy(),
            torch.cat(scores).numpy(),
            torch.cat(shares).numpy() if proba else None,
        )

    def _labels(self, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        labels = self.classes_[ids]
        if self.threshold is None:
            return labels
        self._check_unknown_against(self.classes_)
        rejected = scores < self.threshold
        if labels.dtype.kind == "i" and isinstance(self.unknown_label, int):
            out = labels.copy()
        else:
            out = labels.astype(object)
        out[rejected] = self.unknown_label
        return out


#: ``load`` keyword arguments: the constructor's, but ``model`` and ``truncate_dim`` (fixed by the index).
_LOAD_OVERRIDES = frozenset(
    {
        "k",
        "weights",
        "threshold",
        "unknown_label",
        "batch_size",
        "chunk_size",
        "show_progress_bar",
        "allow_empty_texts",
    }
)


def _read_config(path: Path) -> dict[str, Any]:
    """``config.json`` of an index, checked field by field (a model folder from the Hub is untrusted input)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable classifier config ({e}).") from None

    def bad(what: str) -> ValueError:
        return ValueError(f"{path}: {what}; this is not a classifier config written by sbert-align.")

    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise bad(f"'format' must be {FORMAT!r}")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise bad("'format_version' must be a positive integer")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {version} was written by a newer sbert-align (this one reads up to "
            f"{FORMAT_VERSION}); upgrade sbert-align."
        )
    missing = [
        key
        for key in ("k", "weights", "threshold", "unknown_label", "classes", "truncate_dim", "model_fingerprint")
        if key not in config
    ]
    if missing:
        raise bad(f"missing {missing}")
    classes = config["classes"]
    if not isinstance(classes, list) or not classes:
        raise bad("'classes' must be a non-empty list")
    kinds = {
        (int if not isinstance(c, bool) else None) if isinstance(c, int) else (str if isinstance(c, str) else None)
        for c in classes
    }
    if len(kinds) != 1 or None in kinds:
        raise bad("'classes' must be all strings or all integers")
    try:
        names = [label_name(c) for c in classes]
    except ValueError as e:
        raise bad(f"'classes' holds a value that is not a class label ({e})") from None
    if len(set(names)) != len(names):
        raise bad("'classes' names a class twice")
    if not isinstance(config["model_fingerprint"], str):
        raise bad("'model_fingerprint' must be a string")
    for key in ("dimension", "num_references"):
        if key in config and (isinstance(config[key], bool) or not isinstance(config[key], int)):
            raise bad(f"'{key}' must be an integer")
    try:  # the constructor's own checks of k, weights, threshold, unknown_label, truncate_dim, chunk_size
        _check_positive_int(config["k"], "k")
        if config["weights"] not in WEIGHTS:
            raise ValueError(f"weights must be one of {WEIGHTS}")
        _check_threshold(config["threshold"])
        _check_unknown_label(config["unknown_label"])
        _check_positive_int(config["truncate_dim"], "truncate_dim", allow_none=True)
        _check_positive_int(config.get("chunk_size", 16384), "chunk_size")
    except ValueError as e:
        raise bad(str(e).rstrip(".")) from None
    return config


def _check_index(tensors: dict[str, Tensor], config: dict[str, Any], path: Path) -> tuple[Tensor, Tensor]:
    """The (embeddings, label_ids) of an index file, checked against its config."""
    if set(tensors) != {"embeddings", "label_ids"}:
        raise ValueError(f"{path}: expected the tensors 'embeddings' and 'label_ids', got {sorted(tensors)}.")
    embeddings, label_ids = tensors["embeddings"], tensors["label_ids"]
    if embeddings.dim() != 2 or embeddings.shape[0] == 0 or not embeddings.dtype.is_floating_point:
        raise ValueError(
            f"{path}: 'embeddings' must be a non-empty 2-D float tensor, got {tuple(embeddings.shape)} {embeddings.dtype}."
        )
    if label_ids.dtype != torch.int64 or label_ids.shape != (embeddings.shape[0],):
        raise ValueError(
            f"{path}: 'label_ids' must be int64 with one id per embedding ({embeddings.shape[0]}), got "
            f"{tuple(label_ids.shape)} {label_ids.dtype}."
        )
    num_classes = len(config["classes"])
    if int(label_ids.min()) < 0 or int(label_ids.max()) >= num_classes:
        raise ValueError(f"{path}: 'label_ids' must lie in 0..{num_classes - 1} (one per class of config.json).")
    for key, actual in (("dimension", embeddings.shape[1]), ("num_references", embeddings.shape[0])):
        if key in config and config[key] != actual:
            raise ValueError(f"{path}: config.json says {key} {config[key]} but the index has {actual}.")
    if config["truncate_dim"] is not None and embeddings.shape[1] != config["truncate_dim"]:
        raise ValueError(
            f"{path}: truncate_dim is {config['truncate_dim']} but the embeddings have dimension {embeddings.shape[1]}."
        )
    if not torch.isfinite(embeddings).all():
        raise ValueError(f"{path}: 'embeddings' hold NaN or infinite values.")
    return embeddings.float(), label_ids

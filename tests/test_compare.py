"""``sbert-align compare --concat / --finetune``: the concatenation of encoders, brief alignment of every cell, the
frozen-vs-aligned rank correlation, and resuming both (tiny random BERTs, tiny data; no network)."""

from __future__ import annotations

import csv
import json
import os
import random

import numpy as np
import pytest
import torch

from sbert_align import cli
from sbert_align.cli import compare as compare_module
from sbert_align.data import load_splits

CLASS_WORDS = {
    "geo": ["city", "country", "river"],
    "bank": ["money", "card", "bank"],
    "mood": ["love", "happy", "good"],
}
#: one optimizer step per cell: 8 texts, batch 8, a sliver of an epoch
ONE_STEP = ["--finetune", "0.01", "--finetune-max-train", "8", "--finetune-batch-size", "8", "--finetune-lr", "1e-3"]


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    """train.csv / test.csv of (text, label): each class has its own words, mixed with shared filler words."""
    folder = tmp_path_factory.mktemp("toy")
    rng = random.Random(0)
    for split, n in (("train", 24), ("test", 10)):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            for label, words in CLASS_WORDS.items():
                for _ in range(n):
                    w.writerow([" ".join(rng.choice(words + ["the", "a", "is"]) for _ in range(6)), label])
    return folder


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    """Two different tiny encoders, runs/a and runs/b."""
    from conftest import build_tiny_model_dir

    root = tmp_path_factory.mktemp("runs")
    return [build_tiny_model_dir(root / name, seed=seed) for name, seed in (("a", 0), ("b", 1))]


def _run(capsys, argv):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _rows(out, stem="frozen_knn"):
    return list(csv.DictReader((out / f"{stem}.csv").read_text().splitlines()))


def _assert_one_line_error(err: str, *fragments: str):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Loading weights", "Computing widget", "[sbert-align]"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("sbert-align: error:") and "Traceback" not in err
    for f in fragments:
        assert f in lines[0], lines[0]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------ pooling modules
@pytest.mark.parametrize("pooling", ["cls", "mean", "layer-mean"])
def test_pooled_model_embeds_as_the_frozen_pooling_and_trains_a_copy(tiny_model, pooling):
    from sbert_align.cli.pooling import frozen_embeddings, pooled_model

    texts = ["the city is big", "a river", "money card bank transfer payment refund is good", "happy"]
    student = pooled_model(tiny_model, pooling)
    frozen = frozen_embeddings(tiny_model, texts, [pooling], show_progress_bar=False)[pooling]
    got = student.encode(texts, convert_to_tensor=True, batch_size=2)  # other batches: other padding
    torch.testing.assert_close(got.cpu(), frozen, atol=1e-5, rtol=1e-5)
    if pooling == "layer-mean":  # the layer weights are the plain mean, and stay so
        weights = [p for n, p in student.named_parameters() if "layer_weights" in n]
        assert len(weights) == 1 and not weights[0].requires_grad
    # the copy is independent: changing it leaves the frozen model as it was
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[n], p) for n, p in tiny_model.named_parameters())


def test_concat_embeddings_normalises_each_part_then_the_whole():
    from sbert_align.cli.compare import concat_embeddings, concat_label

    a, b = torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[0.0, 0.0, 10.0], [0.0, 2.0, 0.0]])
    got = concat_embeddings([a, b])
    s = 2**-0.5
    expected = torch.tensor([[0.6 * s, 0.8 * s, 0, 0, s], [s, 0, 0, s, 0]])
    torch.testing.assert_close(got, expected)
    # the cosine of two concatenations is the mean of the parts' cosines
    x, y = torch.randn(5, 7), torch.randn(5, 3)
    c = concat_embeddings([x, y])
    cos = torch.nn.functional.cosine_similarity
    torch.testing.assert_close((c[0] * c[1]).sum(), (cos(x[0], x[1], dim=0) + cos(y[0], y[1], dim=0)) / 2)
    assert concat_label(["minilm-l6", "mpnet-base"]) == "concat(minilm-l6+mpnet-base)"
    with pytest.raises(ValueError, match="same n"):
        concat_embeddings([x, torch.randn(4, 3)])


# ------------------------------------------------------------------------------------------------ --concat
def test_concat_row_equals_knn_on_the_concatenation_computed_independently(capsys, tmp_path, two_models, toy_dir):
    from sentence_transformers import SentenceTransformer

    from sbert_align.evaluation import knn_metrics

    out = tmp_path / "cmp"
    argv = ["compare", "--models", *map(str, two_models), "--data", str(toy_dir), "--pooling", "mean", "cls"]
    code, printed, err = _run(capsys, [*argv, "--k", "3", "--concat", "--out", str(out), "--quiet"])
    assert code == 0, err
    rows = _rows(out)
    assert [(r["model"], r["pooling"]) for r in rows] == [
        ("a", "mean"),
        ("a", "cls"),
        ("b", "mean"),
        ("b", "cls"),
        ("concat(a+b)", "mean"),
        ("concat(a+b)", "cls"),
    ]
    concat = next(r for r in rows if r["model"] == "concat(a+b)" and r["pooling"] == "mean")
    assert json.loads(concat["concat_of"]) == [str(m) for m in two_models]

    # independently: each folder's own SentenceTransformer (mean pooling), normalised, concatenated, normalised
    data = load_splits(toy_dir)

    def embed(texts):
        parts = [
            SentenceTransformer(str(m), device="cpu").encode(texts, normalize_embeddings=True) for m in two_models
        ]
        return _unit(np.concatenate(parts, axis=1))

    expected = knn_metrics(
        embed(data.texts("train")), data.labels("train"), embed(data.texts("test")), data.labels("test"), k=3
    )
    assert float(concat["accuracy"]) == pytest.approx(expected["accuracy"], abs=1e-9)
    assert float(concat["macro_f1"]) == pytest.approx(expected["macro_f1"], abs=1e-9)
    assert "| concat(a+b) | mean |" in (out / "frozen_knn.md").read_text()
    record = json.loads((out / "frozen_knn.json").read_text())
    assert record["complete"] is True and "correlation" not in record and len(record["rows"]) == 6
    assert sorted(p.name for p in out.iterdir()) == [f"frozen_knn.{s}" for s in ("csv", "json", "md", "png")]


def test_concat_resumes_from_kept_embeddings(capsys, tmp_path, monkeypatch, two_models, toy_dir):
    argv = ["compare", "--models", *map(str, two_models), "--data", str(toy_dir), "--pooling", "mean", "layer-mean"]
    argv += ["--k", "3", "--concat", "--quiet"]
    code, _, err = _run(capsys, [*argv, "--out", str(tmp_path / "whole")])
    assert code == 0, err
    whole = [(r["model"], r["pooling"], r["accuracy"], r["macro_f1"]) for r in _rows(tmp_path / "whole")]

    out = tmp_path / "cmp"
    real, calls = compare_module.frozen_embeddings, []

    def interrupted_on_the_second_model(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "frozen_embeddings", interrupted_on_the_second_model)
    code, _, err = _run(capsys, [*argv, "--out", str(out)])
    assert code == 130, err
    kept = sorted(p.name for p in out.glob("frozen_knn.partial.*.safetensors"))
    assert len(kept) == 1 and json.loads((out / "frozen_knn.partial.json").read_text())["models_done"] == [
        str(two_models[0])
    ]

    # the rerun encodes only the second model; the first one's embeddings come from the kept file
    calls.clear()
    monkeypatch.setattr(compare_module, "frozen_embeddings", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    code, _, err = _run(capsys, [*argv, "--out", str(out)])
    assert code == 0, err
    assert len(calls) == 1 and "reusing" in err
    assert [(r["model"], r["pooling"], r["accuracy"], r["macro_f1"]) for r in _rows(out)] == whole
    assert not list(out.glob("*.partial.*")) and not (out / "frozen_knn.partial.json").exists()


def test_kept_embeddings_are_checked_and_encoded_again_when_gone(tmp_path, monkeypatch, two_models, toy_dir):
    from sbert_align.cli.reports import compare_embeddings_path, read_compare_embeddings, write_compare_embeddings

    texts = ["a", "b", "c"]
    emb = {"mean": torch.randn(3, 4), "cls": torch.randn(3, 4)}
    write_compare_embeddings(tmp_path, "s", "m", texts, emb, fingerprint="sha256:x")
    back = read_compare_embeddings(tmp_path, "s", "m", texts, ["mean", "cls"], fingerprint="sha256:x")
    assert back is not None and all(torch.equal(back[p], emb[p]) for p in emb)
    assert read_compare_embeddings(tmp_path, "s", "m", texts, ["mean"], fingerprint="sha256:y") is None  # retrained
    assert read_compare_embeddings(tmp_path, "s", "m", ["a", "c", "b"], ["mean"], "sha256:x") is None  # other texts
    assert read_compare_embeddings(tmp_path, "s", "m", texts, ["layer-mean"], "sha256:x") is None  # other pooling
    assert read_compare_embeddings(tmp_path, "s", "other", texts, ["mean"], "sha256:x") is None
    compare_embeddings_path(tmp_path, "s", "m").write_bytes(b"not safetensors")
    assert read_compare_embeddings(tmp_path, "s", "m", texts, ["mean"], "sha256:x") is None

    # in a run: a reused model whose kept file is missing is encoded again, and the concatenation is still right
    models, seen = [str(m) for m in two_models], []

    def nothing_kept(m, texts):
        seen.append(m)
        return None

    quiet = {"k": 3, "show_progress_bar": False, "log": lambda s: None, "concat": True}
    first = cli.compare_frozen(models, [str(toy_dir)], ["mean"], **quiet)
    reuse = {models[0]: [r for r in first if r["model_path"] == models[0]]}
    real, calls = compare_module.frozen_embeddings, []
    monkeypatch.setattr(compare_module, "frozen_embeddings", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    again = cli.compare_frozen(models, [str(toy_dir)], ["mean"], **quiet, reuse=reuse, load_embeddings=nothing_kept)
    assert seen == [models[0]] and len(calls) == 2
    assert [(r["model"], r["accuracy"]) for r in again] == [(r["model"], r["accuracy"]) for r in first]
    assert again[-1]["model"] == "concat(a+b)"


# ------------------------------------------------------------------------------------------------ --finetune
def test_finetune_adds_aligned_rows_and_their_rank_correlation(capsys, tmp_path, monkeypatch, two_models, toy_dir):
    from scipy.stats import permutation_test, spearmanr

    from sbert_align.cli.models import load_model

    real, seen = compare_module.finetune_cell, []
    fresh = {str(m): sum(p.double().sum().item() for p in load_model(str(m)).parameters()) for m in two_models}

    def spy(model, pooling, data, options, **kw):
        # the frozen model it starts from is untouched by the cells trained before
        seen.append((pooling, sum(p.double().sum().item() for p in model.parameters())))
        student, info = real(model, pooling, data, options, **kw)
        seen[-1] += (type(student[1]).__name__, student[-1].pooling_mode)
        return student, info

    monkeypatch.setattr(compare_module, "finetune_cell", spy)
    out = tmp_path / "cmp"
    argv = ["compare", "--models", *map(str, two_models), "--data", str(toy_dir), "--k", "3", "--out", str(out)]
    code, printed, err = _run(capsys, [*argv, *ONE_STEP, "--quiet"])
    assert code == 0, err
    assert [s[0] for s in seen] == ["cls", "mean", "layer-mean"] * 2
    assert [s[2:] for s in seen[:3]] == [("Pooling", "cls"), ("Pooling", "mean"), ("WeightedLayerPooling", "mean")]
    assert [s[1] for s in seen] == pytest.approx([fresh[str(two_models[0])]] * 3 + [fresh[str(two_models[1])]] * 3)

    rows = _rows(out)
    assert len(rows) == 6 and all(r["aligned_accuracy"] and r["train_steps"] == "1" for r in rows)
    assert all(r["n_finetune_train"] == "8" and float(r["train_loss"]) > 0 for r in rows)
    assert any(r["aligned_accuracy"] != r["accuracy"] for r in rows)  # the step changed something
    record = json.loads((out / "frozen_knn.json").read_text())
    frozen = [float(r["accuracy"]) for r in rows]
    aligned = [float(r["aligned_accuracy"]) for r in rows]
    expected = spearmanr(frozen, aligned)
    corr = record["correlation"]
    assert corr["all"]["n"] == 6
    assert corr["all"]["spearman"] == pytest.approx(float(expected.statistic), abs=1e-12)
    # six cells: the exact p-value over all 720 pairings, as scipy's permutation test computes it
    exact = permutation_test(
        (frozen,), lambda x: spearmanr(x, aligned).statistic, permutation_type="pairings", n_resamples=np.inf
    )
    assert corr["all"]["p_method"] == "exact permutation"
    assert corr["all"]["p_value"] == pytest.approx(exact.pvalue, abs=1e-9)
    assert list(corr["per_data"]) == [str(toy_dir)] and corr["per_data"][str(toy_dir)] == corr["all"]
    assert record["settings"]["finetune"] == {
        "epochs": 0.01, "max_train": 8, "batch_size": 8, "lr": 1e-3, "warmup_ratio": 0.1, "seed": 0,
    }  # fmt: skip
    md = (out / "frozen_knn.md").read_text()
    assert "## After a brief alignment" in md and f"all cells: {expected.statistic:.4f} (6 cells" in md
    assert (out / "frozen_knn.aligned.png").stat().st_size > 1000
    assert "frozen_knn.aligned.png" in err  # listed among the outputs


def test_finetune_cells_are_recorded_as_they_finish_and_reused(capsys, tmp_path, monkeypatch, tiny_model_dir, toy_dir):
    out = tmp_path / "cmp"
    argv = ["compare", "--models", str(tiny_model_dir), "--data", str(toy_dir), "--pooling", "cls", "mean"]
    argv += ["--k", "3", "--out", str(out), "--quiet", *ONE_STEP]
    real, calls = compare_module.finetune_cell, []

    def interrupted_on_the_second_cell(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(compare_module, "finetune_cell", interrupted_on_the_second_cell)
    code, _, err = _run(capsys, argv)
    assert code == 130, err
    partial = json.loads((out / "frozen_knn.partial.json").read_text())
    assert partial["complete"] is False and partial["models_done"] == [str(tiny_model_dir)]
    done = [r for r in partial["rows"] if "aligned_accuracy" in r]
    assert [r["pooling"] for r in done] == ["cls"] and len(partial["rows"]) == 2
    assert not (out / "frozen_knn.json").exists()

    # the rerun trains only the unfinished cell, and keeps the recorded one as it was
    calls.clear()
    monkeypatch.setattr(compare_module, "finetune_cell", lambda *a, **kw: calls.append(a[1]) or real(*a, **kw))
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    assert calls == ["mean"] and "1 of 2 fine-tuned cells" in err
    rows = {r["pooling"]: r for r in json.loads((out / "frozen_knn.json").read_text())["rows"]}
    assert {k: rows["cls"][k] for k in done[0]} == {**done[0], "model": rows["cls"]["model"]}
    assert rows["mean"]["aligned_accuracy"] is not None and not (out / "frozen_knn.partial.json").exists()

    # an interrupted run is reused only by a rerun with the same fine-tuning settings
    other = [*argv[:-1], "2e-3"]
    calls.clear()
    monkeypatch.setattr(compare_module, "finetune_cell", interrupted_on_the_second_cell)
    code, _, err = _run(capsys, argv)
    assert code == 130 and calls == ["cls", "mean"]
    calls.clear()
    monkeypatch.setattr(compare_module, "finetune_cell", lambda *a, **kw: calls.append(a[1]) or real(*a, **kw))
    code, _, err = _run(capsys, other)
    assert code == 0, err
    assert calls == ["cls", "mean"] and "reusing" not in err


def test_finetune_options_and_correlation_edge_cases():
    from sbert_align.cli.compare import FinetuneOptions
    from sbert_align.cli.reports import frozen_aligned_correlation

    assert FinetuneOptions(epochs=0.5, batch_size=32).steps(100) == 2  # 3 full batches per epoch, half of them
    assert FinetuneOptions(epochs=1).steps(10) == 1  # no full batch: one step of all
    assert FinetuneOptions(epochs=2.5, batch_size=8).steps(80) == 25
    for bad in ({"epochs": 0}, {"epochs": -1}, {"epochs": float("inf")}, {"epochs": 1, "batch_size": 0}):
        with pytest.raises(ValueError):
            FinetuneOptions(**bad)
    with pytest.raises(ValueError, match="warmup_ratio"):
        FinetuneOptions(epochs=1, warmup_ratio=1.0)

    assert frozen_aligned_correlation([{"data": "d", "accuracy": 0.5}]) is None  # frozen only
    two = [{"data": "d", "accuracy": a, "aligned_accuracy": b} for a, b in [(0.5, 0.8), (0.6, 0.9)]]
    corr = frozen_aligned_correlation(two)
    assert corr["all"] == {"n": 2, "spearman": None, "p_value": None, "p_method": None} and corr["per_data"] == {}
    flat = [{"data": "d", "accuracy": a, "aligned_accuracy": 0.9} for a in (0.5, 0.6, 0.7)]
    assert frozen_aligned_correlation(flat)["all"]["spearman"] is None  # a constant side: no ranking
    mixed = [
        {"data": d, "accuracy": a, "aligned_accuracy": b}
        for d, a, b in [("x", 0.1, 0.3), ("x", 0.2, 0.2), ("x", 0.3, 0.1), ("y", 0.4, 0.5), ("y", 0.5, 0.6)]
    ]
    in_order = [{"data": "d", "accuracy": a, "aligned_accuracy": a + 0.1} for a in (0.5, 0.6, 0.7)]
    corr = frozen_aligned_correlation(in_order)["all"]
    assert corr["spearman"] == pytest.approx(1.0) and corr["p_value"] == pytest.approx(1 / 3)  # 2 of 3! pairings
    many = [{"data": "d", "accuracy": i / 10, "aligned_accuracy": (i % 4) / 10} for i in range(9)]
    assert frozen_aligned_correlation(many)["all"]["p_method"] == "t approximation"  # 9! pairings: scipy's
    corr = frozen_aligned_correlation(mixed)
    assert corr["per_data"]["x"]["spearman"] == pytest.approx(-1.0) and "y" not in corr["per_data"]
    assert corr["all"]["n"] == 5


def test_report_with_aligned_rows_renames_the_json_last_and_drops_a_stale_scatter(tmp_path, monkeypatch):
    from sbert_align import files
    from sbert_align.cli.reports import compare_paths, write_compare_report

    rows = [
        {"model": "m", "pooling": p, "data": "d", "accuracy": a, "aligned_accuracy": b, "n_train": 4, "n_test": 2}
        for p, a, b in [("cls", 0.5, 0.7), ("mean", 0.6, 0.9), ("layer-mean", 0.7, 0.8)]
    ]
    paths = compare_paths(tmp_path, "r")
    real_replace, order = os.replace, []

    def recording(src, dst):
        if not os.path.basename(dst).startswith("."):
            order.append(os.path.basename(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", recording)
    written = write_compare_report(rows, tmp_path, "r", k=3, seconds=1.0, settings={"finetune": {"epochs": 1}})
    assert order == ["r.md", "r.csv", "r.png", "r.aligned.png", "r.json"] and written["aligned_png"].is_file()
    assert json.loads(paths["json"].read_text())["correlation"]["all"]["spearman"] == pytest.approx(0.5)
    # a later frozen-only run into the same stem: the earlier scatter is not part of its set
    order.clear()
    frozen = [{k: v for k, v in r.items() if k != "aligned_accuracy"} for r in rows]
    write_compare_report(frozen, tmp_path, "r", k=3, seconds=1.0, settings={})
    assert order == ["r.md", "r.csv", "r.png", "r.json"] and not paths["aligned_png"].exists()
    assert "correlation" not in json.loads(paths["json"].read_text())


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "extra, fragment",
    [(["--finetune", "0"], "positive"), (["--finetune", "-1"], "positive"), (["--finetune", "x"], "positive")],
)
def test_bad_finetune_values_give_one_line_and_status_2(capsys, extra, fragment):
    with pytest.raises(SystemExit) as e:
        cli.main(["compare", "--models", "a", "b", "--data", "d", *extra])
    assert e.value.code == 2
    _assert_one_line_error(capsys.readouterr().err, "--finetune", fragment)


def test_concat_with_one_model_and_stray_finetune_options_give_one_line(capsys, tmp_path, tiny_model_dir, toy_dir):
    argv = ["compare", "--models", str(tiny_model_dir), "--data", str(toy_dir), "--out", str(tmp_path / "o")]
    code, _, err = _run(capsys, [*argv, "--concat"])
    assert code == 1
    _assert_one_line_error(err, "--concat", "at least two")
    code, _, err = _run(capsys, [*argv, "--finetune-lr", "1e-4"])
    assert code == 1
    _assert_one_line_error(err, "--finetune-lr", "only with --finetune")
    assert not (tmp_path / "o").exists()  # refused before anything was written

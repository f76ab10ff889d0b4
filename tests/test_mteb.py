"""sbert_align.mteb: local MTEB tasks (classification, clustering, STS) run through a real ``mteb.evaluate`` offline,
results saved through MTEB's own result cache and read back with MTEB's own API."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")

from sbert_align import cli  # noqa: E402
from sbert_align.data import SplitSet  # noqa: E402
from sbert_align.files import TEMP_MARK  # noqa: E402
from sbert_align.mteb import (  # noqa: E402
    content_revision,
    local_classification_task,
    local_clustering_task,
    local_sts_task,
    local_tasks,
    model_identity,
    resolve_tasks,
    results_table,
    run_mteb,
)

# Each class has its own words: even a random encoder maps a class's texts close together, so a working pipeline
# must score far above chance, and the same texts with shuffled labels must not.
CLASS_WORDS = [["city", "country", "river"], ["money", "card", "bank"], ["love", "happy", "good"]]
FAST = {"classification": {"n_experiments": 2}, "clustering": {"n_clusters": 2}}


def _separable_set(n_per_class: int = 16, shuffle_labels: bool = False, seed: int = 0, name: str = "toy") -> SplitSet:
    rng = random.Random(seed)

    def make(n):
        texts, labels = [], []
        for c, words in enumerate(CLASS_WORDS):
            for _ in range(n):
                texts.append(" ".join(rng.choice(words) for _ in range(6)))
                labels.append(c)
        if shuffle_labels:
            rng.shuffle(labels)
        return {"text": texts, "label": labels}

    return SplitSet(name, {"train": make(n_per_class), "test": make(n_per_class)}, ("text",), ["geo", "bank", "mood"])


def _score_pairs(n: int = 24, seed: int = 0) -> dict[str, list]:
    rng = random.Random(seed)
    words = [w for ws in CLASS_WORDS for w in ws]
    a = [" ".join(rng.choice(words) for _ in range(5)) for _ in range(n)]
    b = [" ".join(rng.choice(words) for _ in range(5)) for _ in range(n)]
    return {"text1": a, "text2": b, "label": [round(rng.uniform(0, 5), 2) for _ in range(n)]}


def _sts_set(seed: int = 0) -> SplitSet:
    return SplitSet("sts", {"train": _score_pairs(8, seed + 1), "test": _score_pairs(24, seed)}, ("text1", "text2"))


def _write_sts_csv(path, seed: int = 0):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text1", "text2", "score"])
        cols = _score_pairs(40, seed)
        w.writerows(zip(cols["text1"], cols["text2"], cols["label"]))
    return path


def _main_scores(rows):
    return {r["task"]: r["score"] for r in rows if r["main"]}


def _no_temp_left(folder):
    return not [p for p in folder.parent.iterdir() if TEMP_MARK in p.name]


def test_local_tasks_run_offline_and_measure_something(tiny_model):
    tasks = local_tasks(_separable_set(), **FAST)
    assert [t.metadata.type for t in tasks] == ["Classification", "Clustering"]
    assert [t.metadata.name for t in tasks] == ["LocalToyClassification", "LocalToyClustering"]
    rows = run_mteb(tiny_model, tasks, batch_size=16)
    keys = {"main", "metric", "score", "split", "subset", "task", "type", "model", "revision"}
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(keys))}
    main = _main_scores(rows)
    assert main["LocalToyClassification"] > 0.9
    assert main["LocalToyClustering"] > 0.5
    assert {r["metric"] for r in rows if r["task"] == "LocalToyClassification"} >= {"accuracy", "f1"}

    control = _main_scores(run_mteb(tiny_model, local_tasks(_separable_set(shuffle_labels=True), **FAST)))
    assert control["LocalToyClassification"] < 0.6  # chance is 1/3
    assert control["LocalToyClustering"] < 0.3


def test_local_sts_task_is_mteb_sts_on_the_pairs(tiny_model, tmp_path):
    data = _sts_set()
    (task,) = local_tasks(data)
    assert (task.metadata.type, task.metadata.name, task.metadata.main_score) == (
        "STS",
        "LocalStsSTS",
        "cosine_spearman",
    )
    rows = run_mteb(tiny_model, [task])
    got = {r["metric"]: r["score"] for r in rows}
    # the same protocol by hand: Spearman / Pearson of the cosine similarity of each pair against its score
    from scipy.stats import pearsonr, spearmanr

    pairs = data.pairs("test")
    e1 = tiny_model.encode([a for a, _ in pairs], normalize_embeddings=True)
    e2 = tiny_model.encode([b for _, b in pairs], normalize_embeddings=True)
    cos = (e1 * e2).sum(axis=1)
    assert got["cosine_spearman"] == pytest.approx(spearmanr(cos, data.labels("test"))[0], abs=1e-4)
    assert got["cosine_pearson"] == pytest.approx(pearsonr(cos, data.labels("test"))[0], abs=1e-4)
    assert task.min_score == min(data.labels("train") + data.labels("test"))

    # from a tiny CSV, through "local:<path>" (a test split is carved from the single file)
    (from_csv,) = resolve_tasks([f"local:{_write_sts_csv(tmp_path / 'pairs.csv')}"])
    assert from_csv.metadata.name == "LocalPairsSTS" and from_csv.metadata.type == "STS"
    with pytest.raises(ValueError, match="need \\(text1, text2, score\\) pairs"):
        local_sts_task(_separable_set())
    flat = SplitSet(
        "flat", {s: {**_score_pairs(4), "label": [1.5] * 4} for s in ("train", "test")}, ("text1", "text2")
    )
    with pytest.raises(ValueError, match="different, finite scores"):
        local_sts_task(flat)


def test_resolve_tasks_from_local_names_and_errors(tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(20)))
    tasks = resolve_tasks([f"local:{path}"])
    assert [t.metadata.name for t in tasks] == ["LocalToyClassification", "LocalToyClustering"]
    task = local_classification_task(_separable_set(), name="MyTask", samples_per_label=4)
    assert resolve_tasks(task) == [task] and task.samples_per_label == 4
    with pytest.raises(ValueError, match="unknown MTEB task"):
        resolve_tasks(["NoSuchTaskNameAnywhere"])
    with pytest.raises(ValueError, match="occur more than once"):
        resolve_tasks([f"local:{path}", f"local:{path}"])
    pairs = SplitSet("p", {s: {"text1": ["a"], "text2": ["b"], "label": [1]} for s in ("train", "test")},
                     ("text1", "text2"), ["0", "1"])  # fmt: skip
    with pytest.raises(ValueError, match="need \\(text, label\\) data"):
        local_clustering_task(pairs)
    with pytest.raises(ValueError, match="class-labelled pairs"):
        local_tasks(pairs)
    with pytest.raises(ValueError, match="eval_split"):
        local_classification_task(_separable_set(), eval_split="validation")
    # the dataset revision is a content hash of the data and the protocol
    rev = local_classification_task(_separable_set()).metadata.dataset["revision"]
    assert rev == local_classification_task(_separable_set()).metadata.dataset["revision"]
    assert rev.startswith("sha256-") and len(rev) == len("sha256-") + 16
    assert rev != local_classification_task(_separable_set(seed=1)).metadata.dataset["revision"]
    assert rev != local_classification_task(_separable_set(), n_experiments=3).metadata.dataset["revision"]


def test_mteb_task_names_resolve_without_loading_data():
    # Names resolve from mteb's own registry (no hub access); their data would need the hub when run.
    (task,) = resolve_tasks(["Banking77Classification"])
    assert task.metadata.type == "Classification" and task.metadata.main_score == "accuracy"


def test_content_revision_follows_the_weights(tiny_model_dir, tiny_model):
    from conftest import make_tiny_sentence_transformer

    rev = content_revision(tiny_model)
    assert rev.startswith("sha256-") and len(rev) == len("sha256-") + 16
    tiny_model.encode(["a city", "the bank"])  # encoding sets the tokenizer's padding / truncation: not content
    assert content_revision(tiny_model) == rev == content_revision(make_tiny_sentence_transformer(tiny_model_dir))
    assert model_identity(tiny_model) == (f"local/{tiny_model_dir.name}", rev)  # the folder the weights came from
    assert model_identity(tiny_model, "frozen")[0] == "local/frozen"
    assert model_identity(tiny_model, "org/x", "v1") == ("org/x", "v1")
    with pytest.raises(ValueError, match="model_revision"):
        model_identity(tiny_model, "x", "a/b")
    import torch

    with torch.no_grad():
        next(tiny_model.parameters())[0, 0] += 1e-3
    assert content_revision(tiny_model) != rev
    tiny_model.max_seq_length = 16
    assert content_revision(tiny_model) != rev


def _second_model(tmp_path):
    from conftest import build_tiny_model_dir, make_tiny_sentence_transformer

    return make_tiny_sentence_transformer(build_tiny_model_dir(tmp_path / "other", seed=1))


def test_results_go_through_mteb_result_cache_and_read_back(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "mteb-results"
    tasks = [*local_tasks(_separable_set(), **FAST), local_sts_task(_sts_set())]
    names = [t.metadata.name for t in tasks]
    messages: list[str] = []
    frozen = run_mteb(tiny_model, tasks, output_folder=folder, model_name="frozen", log=messages.append)
    trained = run_mteb(_second_model(tmp_path), tasks, output_folder=folder, model_name="trained")
    assert any("[3/3] LocalStsSTS: cosine_spearman" in m for m in messages)  # progress, one line per task
    rev_frozen, rev_trained = frozen[0]["revision"], trained[0]["revision"]
    assert rev_frozen == content_revision(tiny_model) != rev_trained

    # MTEB's own reader: the layout results/<model>/<revision>/<Task>.json with model_meta.json
    cache = mteb.ResultCache(cache_path=folder)
    assert sorted(cache.get_models(include_remote=False)) == [
        ("local__frozen", rev_frozen),
        ("local__trained", rev_trained),
    ]
    assert sorted(cache.get_task_names(include_remote=False)) == sorted(names)
    for task in tasks:
        path = cache.get_task_result_path(task.metadata.name, "local/frozen", rev_frozen)
        assert path == folder / "results" / "local__frozen" / rev_frozen / f"{task.metadata.name}.json"
        loaded = cache.load_task_result(task.metadata.name, "local/frozen", rev_frozen, raise_if_not_found=True)
        assert loaded.dataset_revision == task.metadata.dataset["revision"]
    bench = cache.load_results(tasks=names, include_remote=False)
    by_model = {(m.model_name, m.model_revision): m for m in bench.model_results}
    assert set(by_model) == {("local/frozen", rev_frozen), ("local/trained", rev_trained)}
    for rows, key in ((frozen, ("local/frozen", rev_frozen)), (trained, ("local/trained", rev_trained))):
        got = {tr.task_name: tr.get_score() for tr in by_model[key].task_results}
        assert got == pytest.approx(_main_scores(rows), abs=1e-6)
    settings = [json.loads(line) for line in (path.parent / "run_settings.jsonl").read_text().splitlines()]
    assert sorted(s["task"] for s in settings) == sorted(names)  # merged across the per-task staging
    wide = bench.to_dataframe(include_model_revision=True)  # MTEB's own table of the same files
    assert len(wide) == len(names)
    assert _no_temp_left(folder)

    # the comparison, built from the cache
    table = results_table(folder, tasks)
    assert table.labels == ["local/frozen", "local/trained"]
    assert [r["task"] for r in table.rows] == names
    assert [r["metric"] for r in table.rows] == ["accuracy", "v_measure", "cosine_spearman"]
    assert [r["scores"][0] for r in table.rows] == pytest.approx([_main_scores(frozen)[n] for n in names], abs=1e-6)
    md = table.markdown()
    assert md.splitlines()[0] == "| task | metric | local/frozen | local/trained |"
    assert md.splitlines()[-1].startswith("| mean |")
    assert table.to_dict()["models"][1] == {"name": "local/trained", "revision": rev_trained, "label": "local/trained"}
    everything = results_table(folder)  # every task in the folder, by name; a local task's metric is not in MTEB
    assert [r["task"] for r in everything.rows] == sorted(names) and everything.rows[0]["metric"] == "main_score"
    assert results_table(folder, ["LocalStsSTS"], models=["local/trained"]).labels == ["local/trained"]

    # finished tasks are read back, not run again
    def refuse(*args, **kwargs):
        raise AssertionError("mteb.evaluate must not run for cached results")

    monkeypatch.setattr(mteb, "evaluate", refuse)
    again = run_mteb(tiny_model, tasks, output_folder=folder, model_name="frozen")
    assert _main_scores(again) == pytest.approx(_main_scores(frozen), abs=1e-6)
    # results of other data are never replaced silently
    other = local_tasks(_separable_set(seed=5), **FAST)[:1]
    with pytest.raises(ValueError, match="other data"):
        run_mteb(tiny_model, other, output_folder=folder, model_name="frozen")
    monkeypatch.undo()
    before = (folder / "results" / "local__frozen" / rev_frozen / "LocalToyClassification.json").read_text()
    run_mteb(tiny_model, other, output_folder=folder, model_name="frozen", overwrite=True)
    after = (folder / "results" / "local__frozen" / rev_frozen / "LocalToyClassification.json").read_text()
    assert before != after and json.loads(after)["dataset_revision"] == other[0].metadata.dataset["revision"]


def test_a_failed_task_keeps_finished_ones_and_writes_nothing(tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "res"
    tasks = local_tasks(_separable_set(), **FAST)
    real = mteb.evaluate

    def fail_on_clustering(model, task, **kwargs):
        if task.metadata.type == "Clustering":
            raise RuntimeError("boom")
        return real(model, task, **kwargs)

    monkeypatch.setattr(mteb, "evaluate", fail_on_clustering)
    with pytest.raises(ValueError, match="LocalToyClustering failed: RuntimeError: boom"):
        run_mteb(tiny_model, tasks, output_folder=folder, model_name="m")
    (revision_dir,) = (folder / "results" / "local__m").iterdir()
    assert sorted(p.name for p in revision_dir.iterdir()) == [
        "LocalToyClassification.json",
        "model_meta.json",
        "run_settings.jsonl",
    ]
    assert _no_temp_left(folder)


def test_cli_evaluate_mteb_results_compares_models(capsys, tmp_path, tiny_model_dir):
    from conftest import build_tiny_model_dir

    data = _separable_set(8)
    folder = tmp_path / "data"
    folder.mkdir()
    for split in ("train", "test"):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([["text", "label"], *zip(data.texts(split), data.label_strings(split))])
    sts = _write_sts_csv(tmp_path / "sts.csv")
    trained = build_tiny_model_dir(tmp_path / "run" / "model", seed=3)
    results = tmp_path / "mteb-results"
    for model in (tiny_model_dir, trained):
        argv = ["evaluate", "--model", str(model), "--mteb", f"local:{folder}", f"local:{sts}",
                "--mteb-results", str(results), "--out", str(tmp_path / "eval.json"), "--quiet"]  # fmt: skip
        assert cli.main(argv) == 0
    printed, err = capsys.readouterr()
    names = [f"local/{tiny_model_dir.name}", "local/run/model"]  # a folder named "model" keeps its parent's name
    assert f"| task | metric | {names[0]} | {names[1]} |" in printed
    assert "[3/3] LocalStsSTS: cosine_spearman" in err
    assert (results / "comparison.md").read_text().startswith(f"| task | metric | {names[0]} | {names[1]} |")
    out = json.loads((tmp_path / "eval.json").read_text())
    assert out["mteb_model"]["name"] == names[1]
    assert [m["name"] for m in out["mteb_comparison"]["models"]] == names
    bench = mteb.ResultCache(cache_path=results).load_results(include_remote=False)
    assert sorted(m.model_name for m in bench.model_results) == sorted(names)
    assert all(len(m.task_results) == 3 for m in bench.model_results)
    scores = {r["task"]: r["scores"][names[1]] for r in out["mteb_comparison"]["rows"]}
    assert all(np.isfinite(v) for v in scores.values()) and len(scores) == 3
    # --mteb-results without --mteb is a one-line error
    code = cli.main(
        ["evaluate", "--model", str(trained), "--mteb-results", str(results), "--out", str(tmp_path / "x")]
    )
    assert code == 1 and "--mteb-results needs --mteb" in capsys.readouterr().err

"""sbert_align.mteb: local MTEB tasks from (text, label) data, run through a real ``mteb.evaluate`` offline."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("mteb")

from sbert_align.data import SplitSet  # noqa: E402
from sbert_align.mteb import (  # noqa: E402
    local_classification_task,
    local_clustering_task,
    local_tasks,
    resolve_tasks,
    run_mteb,
)

# Each class has its own words: even a random encoder maps a class's texts close together, so a working pipeline
# must score far above chance, and the same texts with shuffled labels must not.
CLASS_WORDS = [["city", "country", "river"], ["money", "card", "bank"], ["love", "happy", "good"]]


def _separable_set(n_per_class: int = 16, shuffle_labels: bool = False, seed: int = 0) -> SplitSet:
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

    return SplitSet("toy", {"train": make(n_per_class), "test": make(n_per_class)}, ("text",), ["geo", "bank", "mood"])


def _main_scores(rows):
    return {r["task"]: r["score"] for r in rows if r["main"]}


def test_local_tasks_run_offline_and_measure_something(tiny_model):
    tasks = local_tasks(_separable_set(), classification={"n_experiments": 2}, clustering={"n_clusters": 2})
    assert [t.metadata.type for t in tasks] == ["Classification", "Clustering"]
    assert [t.metadata.name for t in tasks] == ["LocalToyClassification", "LocalToyClustering"]
    rows = run_mteb(tiny_model, tasks, batch_size=16)
    assert {tuple(sorted(r)) for r in rows} == {("main", "metric", "score", "split", "subset", "task", "type")}
    main = _main_scores(rows)
    assert main["LocalToyClassification"] > 0.9
    assert main["LocalToyClustering"] > 0.5
    assert {r["metric"] for r in rows if r["task"] == "LocalToyClassification"} >= {"accuracy", "f1"}

    shuffled = local_tasks(
        _separable_set(shuffle_labels=True), classification={"n_experiments": 2}, clustering={"n_clusters": 2}
    )
    control = _main_scores(run_mteb(tiny_model, shuffled, batch_size=16))
    assert control["LocalToyClassification"] < 0.6  # chance is 1/3
    assert control["LocalToyClustering"] < 0.3


def test_resolve_tasks_from_local_names_and_errors(tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(20)))
    tasks = resolve_tasks([f"local:{path}"])
    assert [t.metadata.name for t in tasks] == ["LocalToyClassification", "LocalToyClustering"]
    task = local_classification_task(_separable_set(), name="MyTask", samples_per_label=4)
    assert resolve_tasks(task) == [task] and task.samples_per_label == 4
    with pytest.raises(ValueError, match="unknown MTEB task"):
        resolve_tasks(["NoSuchTaskNameAnywhere"])
    with pytest.raises(ValueError, match="need \\(text, label\\) data"):
        pairs = SplitSet("p", {s: {"text1": ["a"], "text2": ["b"], "label": [1]} for s in ("train", "test")},
                         ("text1", "text2"), ["0", "1"])  # fmt: skip
        local_clustering_task(pairs)
    with pytest.raises(ValueError, match="eval_split"):
        local_classification_task(_separable_set(), eval_split="validation")


def test_mteb_task_names_resolve_without_loading_data():
    # Names resolve from mteb's own registry (no hub access); their data would need the hub when run.
    (task,) = resolve_tasks(["Banking77Classification"])
    assert task.metadata.type == "Classification" and task.metadata.main_score == "accuracy"

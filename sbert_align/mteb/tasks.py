"""Local MTEB tasks from (text, label) sets and (text1, text2, score) sets, and task resolution.

Each builder returns an instance of a subclass of one of MTEB's own abstract tasks, created on the fly with its
``TaskMetadata`` and a ``load_data`` that hands MTEB the in-memory data (nothing is read from the hub):

* :func:`local_classification_task`: ``AbsTaskClassification``; a logistic regression trained on
  ``samples_per_label`` embedded train examples per class (several seeded experiments), scored on ``eval_split``;
  main score accuracy.
* :func:`local_clustering_task`: ``AbsTaskClustering``; MiniBatchKMeans with as many clusters as labels on
  bootstrapped subsets of ``eval_split``; main score V-measure.
* :func:`local_sts_task`: ``AbsTaskSTS``; Pearson / Spearman correlation between the pairs' similarity scores and the
  cosine similarity of their embeddings on ``eval_split``; main score ``cosine_spearman`` (MTEB's STS protocol).

The dataset revision recorded in a local task's metadata (and so in every result file) is a content hash of its
data and protocol settings, ``sha256-<16 hex digits>``: a result file tells which data produced it, and
:func:`~sbert_align.mteb.run_mteb` never reuses results of other data.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "local_classification_task",
    "local_clustering_task",
    "local_sts_task",
    "local_tasks",
    "resolve_tasks",
]

#: the prefix of a task argument naming local data (``local:trec6``, ``local:path/to/data.csv``)
LOCAL_PREFIX = "local:"


def require_mteb():
    """The ``mteb`` module, or an ``ImportError`` that says how to install it."""
    try:
        import mteb  # noqa: F401
    except ImportError:
        raise ImportError("MTEB support needs the mteb package: pip install 'sbert-align[mteb]'") from None
    import mteb

    return mteb


def short_hash(obj: Any) -> str:
    """``sha256-`` and the first 16 hex digits of the SHA-256 of ``obj`` as canonical JSON."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return "sha256-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _load(data):
    from ..data import SplitSet, load_splits

    return data if isinstance(data, SplitSet) else load_splits(data)


def _labelled(data):
    data = _load(data)
    if data.is_pairs or data.label_names is None:
        raise ValueError(f"local MTEB classification / clustering tasks need (text, label) data; {data.summary()}.")
    return data


def _scored(data):
    data = _load(data)
    if not data.is_pairs or data.label_names is not None:
        raise ValueError(
            f"local MTEB STS tasks need (text1, text2, score) pairs with similarity scores; {data.summary()}."
        )
    return data


def _check_split(data, eval_split: str, *, held_out: bool) -> None:
    if eval_split not in data.splits or (held_out and eval_split == "train"):
        what = "a held-out split" if held_out else "a split"
        raise ValueError(f"eval_split: expected {what} of {data.name} ({sorted(data.splits)}), got {eval_split!r}.")


def _task_name(data, kind: str, name: str | None) -> str:
    if name:
        return name
    stem = re.sub(r"[^0-9A-Za-z]+", "", data.name.title()) or "Local"
    return f"Local{stem}{kind}"


def _metadata(name: str, kind: str, main_score: str, data, eval_split: str, revision: str):
    from mteb.abstasks.task_metadata import TaskMetadata

    return TaskMetadata(
        name=name,
        description=f"Local {kind} task built by sbert-align from {data.summary()} (source: {data.source or 'local'}).",
        reference=None,
        dataset={"path": f"local/{data.name}", "revision": revision},
        type=kind,
        category="t2t",
        modalities=["text"],
        eval_splits=[eval_split],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation="",
    )


def _build(base: type, task_name: str, metadata, dataset, attrs: dict[str, Any], seed: int):
    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = dataset
        self.data_loaded = True

    cls = type(task_name, (base,), {"metadata": metadata, "load_data": load_data, "__module__": __name__, **attrs})
    return cls(seed=seed)


def local_classification_task(
    data,
    name: str | None = None,
    *,
    eval_split: str = "test",
    samples_per_label: int = 8,
    n_experiments: int = 10,
    max_iter: int = 100,
    seed: int = 42,
):
    """An MTEB ``AbsTaskClassification`` on a local (text, label) set: train split -> classifier, ``eval_split`` scored.

    Args:
        data: a :class:`~sbert_align.data.SplitSet` or a name / path for :func:`~sbert_align.data.load_splits`.
        name: task name (default ``Local<Data>Classification``).
        eval_split: the split to score (``test``, or ``validation`` when the set has one).
        samples_per_label: train examples per class per experiment (MTEB's default is 8).
        n_experiments: seeded experiments averaged.
        max_iter: iterations of the logistic regression.
        seed: MTEB's task seed.

    Example::

        from sbert_align.mteb import local_classification_task

        task = local_classification_task("trec6", n_experiments=3)
        task.metadata.name, task.metadata.main_score           # ('LocalTrec6Classification', 'accuracy')
    """
    require_mteb()
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.classification import AbsTaskClassification
    from sklearn.linear_model import LogisticRegression

    data = _labelled(data)
    _check_split(data, eval_split, held_out=True)
    task_name = _task_name(data, "Classification", name)
    columns = {s: {"text": data.texts(s), "label": [int(v) for v in data.labels(s)]} for s in ("train", eval_split)}
    params = {"samples_per_label": samples_per_label, "n_experiments": n_experiments, "max_iter": max_iter}
    revision = short_hash({"kind": "Classification", "data": columns, "params": params, "seed": seed})
    return _build(
        AbsTaskClassification,
        task_name,
        _metadata(task_name, "Classification", "accuracy", data, eval_split, revision),
        DatasetDict({s: Dataset.from_dict(c) for s, c in columns.items()}),
        {
            "evaluator_model": LogisticRegression(max_iter=max_iter),
            "samples_per_label": samples_per_label,
            "n_experiments": n_experiments,
        },
        seed,
    )


def local_clustering_task(
    data,
    name: str | None = None,
    *,
    eval_split: str = "test",
    n_clusters: int = 10,
    max_documents_per_cluster: int = 2048,
    seed: int = 42,
):
    """An MTEB ``AbsTaskClustering`` on the ``eval_split`` texts of a local (text, label) set.

    MTEB clusters ``n_clusters`` bootstrapped subsets of ``max_documents_per_cluster`` texts (all of them when the
    split is smaller) into as many clusters as labels and reports the mean V-measure (main score), plus its spread.

    Example::

        from sbert_align.mteb import local_clustering_task

        local_clustering_task("trec6").metadata.name             # 'LocalTrec6Clustering'
    """
    require_mteb()
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.clustering import AbsTaskClustering

    data = _labelled(data)
    _check_split(data, eval_split, held_out=False)
    task_name = _task_name(data, "Clustering", name)
    columns = {"sentences": data.texts(eval_split), "labels": [int(v) for v in data.labels(eval_split)]}
    params = {"n_clusters": n_clusters, "max_documents_per_cluster": max_documents_per_cluster}
    revision = short_hash({"kind": "Clustering", "data": columns, "params": params, "seed": seed})
    return _build(
        AbsTaskClustering,
        task_name,
        _metadata(task_name, "Clustering", "v_measure", data, eval_split, revision),
        DatasetDict({eval_split: Dataset.from_dict(columns)}),
        {
            "max_fraction_of_documents_to_embed": None,
            "max_document_to_embed": None,
            "max_documents_per_cluster": max_documents_per_cluster,
            "n_clusters": n_clusters,
        },
        seed,
    )


def local_sts_task(data, name: str | None = None, *, eval_split: str = "test", seed: int = 42):
    """An MTEB ``AbsTaskSTS`` on the ``eval_split`` pairs of a local (text1, text2, score) set (e.g. ``stsb``).

    MTEB correlates the pairs' scores with the similarity of their two embeddings (cosine, the model's own similarity,
    Manhattan and Euclidean; Pearson and Spearman each); the main score is ``cosine_spearman``. The score range
    (``min_score`` / ``max_score``, used by MTEB to normalise the scores, which leaves the correlations unchanged) is
    taken from the data, all splits together.

    Args:
        data: a :class:`~sbert_align.data.SplitSet` of score pairs (``label_names is None``) or a name / path for
            :func:`~sbert_align.data.load_splits` (``stsb``, a CSV with ``text1,text2,score``).
        name: task name (default ``Local<Data>STS``).
        eval_split: the split to score.
        seed: MTEB's task seed.

    Raises:
        ValueError: data that are not score pairs, an unknown split, fewer than two pairs or a single score value.

    Example::

        from sbert_align.mteb import local_sts_task

        task = local_sts_task("stsb")
        task.metadata.name, task.metadata.main_score            # ('LocalStsbSTS', 'cosine_spearman')
    """
    require_mteb()
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS

    data = _scored(data)
    _check_split(data, eval_split, held_out=False)
    task_name = _task_name(data, "STS", name)
    pairs = data.pairs(eval_split)
    scores = [float(v) for v in data.labels(eval_split)]
    every = [float(v) for s in data.splits for v in data.labels(s)]
    if len(pairs) < 2 or len(set(scores)) < 2 or not all(math.isfinite(v) for v in every):
        raise ValueError(
            f"data: the {eval_split} split of {data.name} needs at least two pairs with different, finite scores."
        )
    columns = {"sentence1": [a for a, _ in pairs], "sentence2": [b for _, b in pairs], "score": scores}
    low, high = min(every), max(every)
    revision = short_hash({"kind": "STS", "data": columns, "range": [low, high], "seed": seed})
    return _build(
        AbsTaskSTS,
        task_name,
        _metadata(task_name, "STS", "cosine_spearman", data, eval_split, revision),
        DatasetDict({eval_split: Dataset.from_dict(columns)}),
        {"min_score": low, "max_score": high},
        seed,
    )


def local_tasks(
    data,
    *,
    classification: dict[str, Any] | None = None,
    clustering: dict[str, Any] | None = None,
    sts: dict[str, Any] | None = None,
) -> list:
    """The local MTEB tasks of one set: classification and clustering for (text, label) data, STS for score pairs.

    ``classification`` / ``clustering`` / ``sts`` are keyword arguments for :func:`local_classification_task` /
    :func:`local_clustering_task` / :func:`local_sts_task` (e.g. ``classification={"n_experiments": 3}``).

    Raises:
        ValueError: 0/1 pairs (``mrpc``, ``quora``): neither labelled texts nor similarity scores.

    Example::

        from sbert_align.mteb import local_tasks

        [t.metadata.name for t in local_tasks("trec6")]        # ['LocalTrec6Classification', 'LocalTrec6Clustering']
        [t.metadata.name for t in local_tasks("stsb")]         # ['LocalStsbSTS']
    """
    data = _load(data)
    if data.is_pairs:
        if data.label_names is not None:
            raise ValueError(
                f"local MTEB tasks need (text, label) data or (text1, text2, score) pairs; {data.summary()} holds "
                f"class-labelled pairs {data.label_names}."
            )
        return [local_sts_task(data, **(sts or {}))]
    return [
        local_classification_task(data, **(classification or {})),
        local_clustering_task(data, **(clustering or {})),
    ]


def resolve_tasks(tasks: Iterable[Any] | Any) -> list:
    """Task objects from a mix of MTEB task objects, ``"local:<data>"`` strings (the local tasks of a set that
    :func:`~sbert_align.data.load_splits` understands, see :func:`local_tasks`) and MTEB task names (their data need
    the hub).

    Example::

        from sbert_align.mteb import resolve_tasks

        [t.metadata.name for t in resolve_tasks(["local:trec6", "local:stsb"])]
        # ['LocalTrec6Classification', 'LocalTrec6Clustering', 'LocalStsbSTS']
    """
    mteb = require_mteb()
    from mteb.abstasks.abstask import AbsTask

    out, names = [], []
    for t in [tasks] if isinstance(tasks, (str, AbsTask)) else tasks:
        if isinstance(t, AbsTask):
            out.append(t)
        elif isinstance(t, str) and t.startswith(LOCAL_PREFIX):
            out.extend(local_tasks(t.removeprefix(LOCAL_PREFIX)))
        elif isinstance(t, str):
            names.append(t)
        else:
            raise ValueError(f"tasks: expected MTEB tasks, 'local:<data>' or task names, got {type(t).__name__}.")
    if names:
        try:
            out.extend(mteb.get_tasks(tasks=names))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"tasks: unknown MTEB task(s) {names}: {first[:200]}") from None
    if not out:
        raise ValueError("tasks: no task given.")
    seen = [t.metadata.name for t in out]
    dup = sorted({n for n in seen if seen.count(n) > 1})
    if dup:
        raise ValueError(f"tasks: the task name(s) {dup} occur more than once; give each task its own name.")
    return out

"""MTEB on local data: a classification task and a clustering task built from any (text, label) set, and a runner.

Needs the ``[mteb]`` extra (``pip install "sbert-align[mteb]"``, mteb 2.x). The local tasks never touch the hub:
their data come from a :class:`~sbert_align.data.SplitSet` (or anything :func:`~sbert_align.data.load_splits`
understands); MTEB task names (``"Banking77Classification"``) work too when the hub is reachable.

* :func:`local_classification_task`: MTEB's ``AbsTaskClassification`` protocol: a logistic regression trained on
  ``samples_per_label`` embedded train examples per class (several seeded experiments), scored on the test split;
  main score accuracy.
* :func:`local_clustering_task`: MTEB's ``AbsTaskClustering`` protocol: MiniBatchKMeans with as many clusters as
  labels on bootstrapped subsets of the test split, V-measure as main score.
* :func:`run_mteb`: runs ``mteb.evaluate`` on a ``SentenceTransformer`` (no result cache, no files unless asked) and
  returns a tidy table: one row per (task, split, subset, metric).

Example::

    from sentence_transformers import SentenceTransformer
    from sbert_align.mteb import local_tasks, run_mteb

    model = SentenceTransformer(path_to_model)
    rows = run_mteb(model, local_tasks("trec6"))
    for r in rows:
        if r["main"]:
            print(r["task"], r["metric"], round(r["score"], 4))
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .files import staged_files

__all__ = ["local_classification_task", "local_clustering_task", "local_tasks", "resolve_tasks", "run_mteb"]


def _require_mteb():
    try:
        import mteb  # noqa: F401
    except ImportError:
        raise ImportError("MTEB support needs the mteb package: pip install 'sbert-align[mteb]'") from None
    import mteb

    return mteb


def _as_splitset(data):
    from .data import SplitSet, load_splits

    data = data if isinstance(data, SplitSet) else load_splits(data)
    if data.is_pairs or data.label_names is None:
        raise ValueError(f"local MTEB tasks need (text, label) data; {data.summary()}.")
    return data


def _task_name(data, kind: str, name: str | None) -> str:
    if name:
        return name
    stem = re.sub(r"[^0-9A-Za-z]+", "", data.name.title()) or "Local"
    return f"Local{stem}{kind}"


def _metadata(name: str, kind: str, main_score: str, data, eval_split: str):
    from mteb.abstasks.task_metadata import TaskMetadata

    return TaskMetadata(
        name=name,
        description=f"Local {kind.lower()} task built by sbert-align from {data.summary()} (source: {data.source or 'local'}).",
        reference=None,
        dataset={"path": f"local/{data.name}", "revision": "local"},
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
    """
    _require_mteb()
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.classification import AbsTaskClassification
    from sklearn.linear_model import LogisticRegression

    data = _as_splitset(data)
    if eval_split not in data.splits or eval_split == "train":
        raise ValueError(
            f"eval_split: expected a held-out split of {data.name} ({sorted(data.splits)}), got {eval_split!r}."
        )
    task_name = _task_name(data, "Classification", name)
    dataset = DatasetDict(
        {
            s: Dataset.from_dict({"text": data.texts(s), "label": [int(v) for v in data.labels(s)]})
            for s in ("train", eval_split)
        }
    )

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = dataset
        self.data_loaded = True

    cls = type(
        task_name,
        (AbsTaskClassification,),
        {
            "metadata": _metadata(task_name, "Classification", "accuracy", data, eval_split),
            "evaluator_model": LogisticRegression(max_iter=max_iter),
            "samples_per_label": samples_per_label,
            "n_experiments": n_experiments,
            "load_data": load_data,
            "__module__": __name__,
        },
    )
    return cls(seed=seed)


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
    """
    _require_mteb()
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.clustering import AbsTaskClustering

    data = _as_splitset(data)
    if eval_split not in data.splits:
        raise ValueError(f"eval_split: {eval_split!r} is not a split of {data.name} ({sorted(data.splits)}).")
    task_name = _task_name(data, "Clustering", name)
    dataset = DatasetDict(
        {
            eval_split: Dataset.from_dict(
                {"sentences": data.texts(eval_split), "labels": [int(v) for v in data.labels(eval_split)]}
            )
        }
    )

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        self.dataset = dataset
        self.data_loaded = True

    cls = type(
        task_name,
        (AbsTaskClustering,),
        {
            "metadata": _metadata(task_name, "Clustering", "v_measure", data, eval_split),
            "max_fraction_of_documents_to_embed": None,
            "max_document_to_embed": None,
            "max_documents_per_cluster": max_documents_per_cluster,
            "n_clusters": n_clusters,
            "load_data": load_data,
            "__module__": __name__,
        },
    )
    return cls(seed=seed)


def local_tasks(
    data, *, classification: dict[str, Any] | None = None, clustering: dict[str, Any] | None = None
) -> list:
    """The classification and the clustering task of one local (text, label) set.

    ``classification`` / ``clustering`` are keyword arguments for :func:`local_classification_task` /
    :func:`local_clustering_task` (e.g. ``classification={"n_experiments": 3}``).
    """
    data = _as_splitset(data)
    return [
        local_classification_task(data, **(classification or {})),
        local_clustering_task(data, **(clustering or {})),
    ]


def resolve_tasks(tasks: Iterable[Any]) -> list:
    """Task objects from a mix of MTEB task objects, ``"local:<data>"`` strings (the two local tasks of a set that
    :func:`~sbert_align.data.load_splits` understands) and MTEB task names (need the hub to load their data)."""
    mteb = _require_mteb()
    from mteb.abstasks.abstask import AbsTask

    out, names = [], []
    for t in [tasks] if isinstance(tasks, (str, AbsTask)) else tasks:
        if isinstance(t, AbsTask):
            out.append(t)
        elif isinstance(t, str) and t.startswith("local:"):
            out.extend(local_tasks(t.removeprefix("local:")))
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
    return out


def run_mteb(
    model,
    tasks: Sequence[Any] | Any,
    *,
    batch_size: int = 32,
    output_folder: str | Path | None = None,
    show_progress_bar: bool = False,
) -> list[dict[str, Any]]:
    """Run MTEB on a ``SentenceTransformer`` and return a tidy table.

    Args:
        model: a ``SentenceTransformer`` (or anything ``mteb.evaluate`` accepts).
        tasks: task objects, ``"local:<data>"`` strings or MTEB task names (see :func:`resolve_tasks`).
        batch_size: encoding batch size.
        output_folder: when given, MTEB's result JSON files are cached there (each file replaced atomically, and only
            once the whole evaluation succeeded); by default nothing is written.
        show_progress_bar: MTEB's progress bars.

    Returns:
        One dict per (task, split, subset, metric): ``task``, ``type``, ``split``, ``subset``, ``metric``, ``score``
        and ``main`` (True for the task's main score). Only defined scalar metrics are listed (MTEB's ``ap`` is NaN
        for more than two classes and is left out).
    """
    mteb = _require_mteb()
    task_objs = resolve_tasks(tasks)
    with contextlib.ExitStack() as stack:
        cache = None
        if output_folder is not None:  # MTEB writes into a temporary sibling; its files move in only on success
            cache = mteb.ResultCache(cache_path=str(stack.enter_context(staged_files(output_folder))))
        try:
            with warnings.catch_warnings():
                # sklearn's "ill-defined precision" warnings for classes a weak classifier never predicts
                warnings.filterwarnings("ignore", module="sklearn")
                result = mteb.evaluate(
                    model,
                    task_objs,
                    cache=cache,
                    overwrite_strategy="always",
                    encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
                    show_progress_bar=show_progress_bar,
                    co2_tracker=False,
                )
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"mteb evaluation failed: {type(e).__name__}: {first[:300]}") from e
    types = {t.metadata.name: t.metadata.type for t in task_objs}
    mains = {t.metadata.name: t.metadata.main_score for t in task_objs}
    rows: list[dict[str, Any]] = []
    for tr in result.task_results:
        for split, entries in tr.scores.items():
            for entry in entries:
                subset = entry.get("hf_subset", "default")
                for metric, value in entry.items():
                    if metric in ("hf_subset", "languages", "main_score") or isinstance(value, bool):
                        continue
                    if isinstance(value, (int, float)) and not math.isnan(value):
                        rows.append(
                            {
                                "task": tr.task_name,
                                "type": types.get(tr.task_name, ""),
                                "split": split,
                                "subset": subset,
                                "metric": metric,
                                "score": float(value),
                                "main": metric == mains.get(tr.task_name),
                            }
                        )
    return rows

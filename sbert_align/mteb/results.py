"""Read MTEB results back from a result cache folder and compare models task by task.

:func:`results_table` loads with MTEB's own reader (``mteb.ResultCache(folder).load_results``), so it sees exactly
what MTEB's tools see: every (model, revision) in the folder, each with the main score of each task
(``TaskResult.get_score()``, the mean over the task's splits and subsets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tasks import LOCAL_PREFIX, require_mteb, resolve_tasks

__all__ = ["MTEBTable", "results_table"]


@dataclass
class MTEBTable:
    """Main scores of several models on several tasks: one row per task, one column per (model, revision).

    Attributes:
        models: ``(name, revision)`` of each column, in the order the models were first evaluated.
        labels: the column headers: the model name, with ``@revision`` where a name occurs with several revisions.
        rows: one dict per task: ``task``, ``metric`` (the task's main score, ``main_score`` when unknown) and
            ``scores`` (one float per column, ``None`` where that model has no result for the task).
        folder: the result cache folder.
    """

    models: list[tuple[str, str]]
    labels: list[str]
    rows: list[dict[str, Any]]
    folder: str = ""
    mean: list[float | None] = field(default_factory=list)

    def markdown(self, digits: int = 4) -> str:
        """The table in Markdown: task, main metric, one column per model; a ``mean`` row when every model has every
        task (MTEB's "Mean (Task)").

        Example::

            from sbert_align.mteb import results_table

            print(results_table("mteb-results").markdown())
        """

        def fmt(v: float | None) -> str:
            return "–" if v is None else f"{v:.{digits}f}"

        header = ["task", "metric", *self.labels]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["---:"] * len(self.labels)) + "|"]
        for r in self.rows:
            lines.append("| " + " | ".join([r["task"], r["metric"], *(fmt(v) for v in r["scores"])]) + " |")
        if self.mean and len(self.rows) > 1:
            lines.append("| " + " | ".join(["mean", "", *(fmt(v) for v in self.mean)]) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``folder``, ``models`` (name, revision, label) and ``rows`` (task, metric, label -> score)."""
        return {
            "folder": self.folder,
            "models": [{"name": n, "revision": r, "label": lab} for (n, r), lab in zip(self.models, self.labels)],
            "rows": [
                {"task": r["task"], "metric": r["metric"], "scores": dict(zip(self.labels, r["scores"]))}
                for r in self.rows
            ],
            "mean": dict(zip(self.labels, self.mean)) if self.mean else None,
        }


def _metric(task_result, known: dict[str, str]) -> str:
    if task_result.task_name in known:
        return known[task_result.task_name]
    try:  # a task MTEB knows by name; local tasks are not in its registry
        return str(task_result.task.metadata.main_score)
    except Exception:
        return "main_score"


def _labels(models: list[tuple[str, str]]) -> list[str]:
    names = [n for n, _ in models]
    return [n if names.count(n) == 1 else f"{n}@{r}" for n, r in models]


def results_table(
    folder: str | Path,
    tasks: Iterable[Any] | None = None,
    models: Sequence[str] | None = None,
) -> MTEBTable:
    """Compare the models in an MTEB result cache folder task by task, from MTEB's own reader.

    Args:
        folder: the folder given to :func:`~sbert_align.mteb.run_mteb` as ``output_folder`` (``--mteb-results``).
        tasks: task objects or names to show, in this order (``local:<data>`` strings are resolved); default: every
            task in the folder, sorted by name.
        models: model names to show (as MTEB filters them); default: every model in the folder.

    Raises:
        ValueError: the folder does not exist.

    Example::

        from sbert_align.mteb import results_table

        table = results_table("mteb-results", tasks=["local:trec6"])
        print(table.markdown())
    """
    mteb = require_mteb()
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder: no MTEB results folder {str(folder)!r}.")
    known: dict[str, str] = {}
    names: list[str] | None = None
    if tasks is not None:
        from mteb.abstasks.abstask import AbsTask

        names = []
        for t in [tasks] if isinstance(tasks, (str, AbsTask)) else tasks:
            if isinstance(t, str) and not t.startswith(LOCAL_PREFIX):
                names.append(t)
                continue
            for task in resolve_tasks(t):
                names.append(task.metadata.name)
                known[task.metadata.name] = task.metadata.main_score
    cache = mteb.ResultCache(cache_path=folder)
    bench = cache.load_results(models=list(models) if models else None, tasks=names, include_remote=False)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    first: dict[tuple[str, str], float] = {}
    metrics: dict[str, str] = {}
    for model_result in bench.model_results:
        key = (str(model_result.model_name), str(model_result.model_revision))
        for tr in model_result.task_results:
            found.setdefault(key, {})[tr.task_name] = tr.get_score()
            metrics.setdefault(tr.task_name, _metric(tr, known))
            stamp = tr.date.timestamp() if tr.date else math.inf
            first[key] = min(first.get(key, math.inf), stamp)
    order = sorted(found, key=lambda k: (first[k], k))
    rows_tasks = names if names is not None else sorted(metrics)
    rows = [
        {
            "task": t,
            "metric": metrics.get(t, known.get(t, "main_score")),
            "scores": [None if found[k].get(t) is None else float(found[k][t]) for k in order],
        }
        for t in rows_tasks
    ]
    complete = bool(rows) and all(v is not None for r in rows for v in r["scores"])
    mean = [sum(r["scores"][j] for r in rows) / len(rows) for j in range(len(order))] if complete else []
    return MTEBTable(models=order, labels=_labels(order), rows=rows, folder=str(folder), mean=mean)

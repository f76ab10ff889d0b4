"""MTEB on local data, with results kept in MTEB's own result cache.

Needs the ``[mteb]`` extra (``pip install "sbert-align[mteb]"``, mteb 2.x). The local tasks never touch the hub:
their data come from a :class:`~sbert_align.data.SplitSet` (or anything :func:`~sbert_align.data.load_splits`
understands); MTEB task names (``"Banking77Classification"``) work too when the hub is reachable.

* Tasks (:mod:`.tasks`): :func:`local_classification_task` and :func:`local_clustering_task` from any (text, label)
  set, :func:`local_sts_task` from any (text1, text2, score) set, :func:`local_tasks` (the tasks that fit a set),
  :func:`resolve_tasks` (``"local:<data>"`` strings, names and task objects).
* Running (:mod:`.run`): :func:`run_mteb` runs ``mteb.evaluate`` task by task, shows progress, returns a tidy table
  and, given ``output_folder``, saves the results through ``mteb.ResultCache`` in MTEB's layout
  ``<folder>/results/<model>/<revision>/<Task>.json`` (atomically, reusing finished tasks). A local model is filed
  under ``local/<name>`` and a content hash of its weights as revision (:func:`model_identity`,
  :func:`content_revision`).
* Reading back (:mod:`.results`): :func:`results_table` compares every model in a results folder task by task, read
  with MTEB's own ``ResultCache.load_results``; :meth:`MTEBTable.markdown` prints it.

Example::

    from sentence_transformers import SentenceTransformer
    from sbert_align.mteb import results_table, run_mteb

    tasks = ["local:trec6", "local:stsb"]
    run_mteb(SentenceTransformer(frozen_path), tasks, output_folder="mteb-results", model_name="frozen")
    run_mteb(SentenceTransformer(trained_path), tasks, output_folder="mteb-results", model_name="trained")
    print(results_table("mteb-results", tasks).markdown())

    import mteb
    mteb.ResultCache("mteb-results").load_results()       # MTEB's own BenchmarkResults of the same files
"""

from __future__ import annotations

from .results import MTEBTable, results_table
from .run import content_revision, local_model_name, model_identity, run_mteb
from .tasks import (
    local_classification_task,
    local_clustering_task,
    local_sts_task,
    local_tasks,
    resolve_tasks,
)

__all__ = [
    "MTEBTable",
    "content_revision",
    "local_classification_task",
    "local_clustering_task",
    "local_sts_task",
    "local_tasks",
    "model_identity",
    "resolve_tasks",
    "results_table",
    "run_mteb",
    "local_model_name",
]

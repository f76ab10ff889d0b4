"""Run MTEB on a model and keep its results in MTEB's own result cache.

:func:`run_mteb` evaluates one task at a time with ``mteb.evaluate``. With ``output_folder``, the results go into
MTEB's result cache there, in MTEB's own layout, so that ``mteb.ResultCache(output_folder)`` and every MTEB tool read
them back::

    output_folder/results/<model name, "/" as "__">/<revision>/<Task>.json     one TaskResult per task
                                                             /model_meta.json  the model's ModelMeta
                                                             /run_settings.jsonl  versions, encode kwargs per task

Model identity (:func:`model_identity`): MTEB files results by model name and revision. A local folder or an
in-memory model has no hub revision, and MTEB would file every such model under ``no_model_name/available`` /
``no_revision_available``; here the name is the one given (default: the name MTEB reads from the model, else
``local/<folder name>``) and the revision is :func:`content_revision`, a hash of the weights, the tokenizer and the
module settings. Frozen and trained models (or a folder retrained in place) therefore never share a results folder,
and the same weights always land in the same one.

Writing is atomic per task: MTEB writes into a temporary sibling folder (:func:`~sbert_align.files.staged_files`),
whose files are then moved into ``output_folder`` one by one, each replacing its namesake; an interrupted run keeps
the tasks it finished. A task whose results are already in the cache for this model and revision, from the same data
(the task's dataset revision) is not run again but read back; results from other data are only replaced with
``overwrite=True``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..files import staged_files
from .tasks import require_mteb, resolve_tasks, short_hash

__all__ = ["content_revision", "model_identity", "run_mteb", "local_model_name"]

#: the name MTEB gives a model it knows nothing about
_NO_NAME = "no_model_name/available"
#: the prefix of the names given to local models
LOCAL_ORG = "local"


def content_revision(model: Any) -> str:
    """A stable revision for a model without a hub revision: ``sha256-`` and 16 hex digits of a content hash.

    The hash covers every tensor of the ``state_dict`` (name, dtype, shape and bytes), the fast tokenizers'
    serialised form (less the padding / truncation state that each ``encode`` call sets), each module's class and ``get_config_dict()``, and ``max_seq_length``, ``similarity_fn_name``,
    prompts and ``truncate_dim``: everything that changes the embeddings. The same weights and settings give the same
    revision wherever the model is loaded from (it takes well under a second for MiniLM, a few seconds for larger
    models).

    Example::

        from sbert_align.cli import load_model
        from sbert_align.mteb import content_revision

        content_revision(load_model("minilm-l6", device="cpu"))       # 'sha256-2c7...'
    """
    import hashlib

    import torch

    digest = hashlib.sha256()

    def add(tag: str, payload: Any) -> None:
        digest.update(tag.encode("utf-8") + b"\0")
        digest.update(payload)

    modules = list(model.children()) if hasattr(model, "children") else []
    settings = {
        "modules": [
            [type(m).__name__, m.get_config_dict() if callable(getattr(m, "get_config_dict", None)) else None]
            for m in modules
        ],
        **{
            key: getattr(model, key, None)
            for key in ("max_seq_length", "similarity_fn_name", "prompts", "default_prompt_name", "truncate_dim")
        },
    }
    add("settings", short_hash(settings).encode())
    for i, m in enumerate(modules):
        backend = getattr(getattr(m, "tokenizer", None), "backend_tokenizer", None)
        if backend is not None and callable(getattr(backend, "to_str", None)):
            state = json.loads(backend.to_str())
            for runtime in ("truncation", "padding"):  # set by each encode call, not part of the model
                state.pop(runtime, None)
            add(f"tokenizer{i}", json.dumps(state, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        add(f"{key}|{t.dtype}|{tuple(t.shape)}", t.reshape(-1).view(torch.uint8).numpy())
    return "sha256-" + digest.hexdigest()[:16]


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"model_name: expected a name such as 'org/model' or 'my-model', got {name!r}.")
    return name if "/" in name else f"{LOCAL_ORG}/{name}"


def local_model_name(folder: str | Path) -> str:
    """The name MTEB results of a local model folder are filed under: ``local/<folder name>``, or
    ``local/<parent>/model`` for a folder named ``model`` (what ``sbert-align train`` writes: ``runs/t6/model`` ->
    ``local/t6/model``). The CLI and :func:`run_mteb` both use it, so their results share one column."""
    path = Path(folder).expanduser().resolve()
    if path.name == "model" and path.parent.name:
        return f"{LOCAL_ORG}/{path.parent.name}/model"
    return f"{LOCAL_ORG}/{path.name or 'model'}"


def _default_name(model: Any, mteb_name: str | None) -> str:
    if mteb_name and mteb_name != _NO_NAME and not mteb_name.startswith(("/", ".", "~")):
        return mteb_name
    modules = list(model.children()) if hasattr(model, "children") else []
    config = getattr(getattr(modules[0], "auto_model", None), "config", None) if modules else None
    source = str(getattr(config, "_name_or_path", "") or "").rstrip("/\\")
    return local_model_name(source) if source else f"{LOCAL_ORG}/sentence-transformer"


def _wrap(model: Any, model_name: str | None, model_revision: str | None):
    """``(the model MTEB runs, its ModelMeta)``, with our name and revision in the meta."""
    from sentence_transformers import SentenceTransformer

    if not isinstance(model, SentenceTransformer):
        meta = getattr(model, "mteb_model_meta", None)
        if meta is None:
            raise ValueError(f"model: expected a SentenceTransformer or an MTEB encoder, got {type(model).__name__}.")
        if model_name or model_revision:
            raise ValueError(
                "model_name / model_revision: only for a SentenceTransformer; an MTEB encoder has its own."
            )
        return model, meta
    from mteb.models import SentenceTransformerEncoderWrapper

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # mteb calls ST's renamed methods
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        wrapper = SentenceTransformerEncoderWrapper(model)
    meta = wrapper.mteb_model_meta
    name = _check_name(model_name) if model_name else _default_name(model, meta.name)
    revision = model_revision.strip() if model_revision else content_revision(model)
    if not revision or "/" in revision or "\\" in revision or revision in (".", ".."):
        raise ValueError(f"model_revision: expected a folder-safe revision such as 'v1', got {model_revision!r}.")
    meta = meta.model_copy(update={"name": name, "revision": revision})
    wrapper.mteb_model_meta = meta
    return wrapper, meta


def model_identity(model: Any, model_name: str | None = None, model_revision: str | None = None) -> tuple[str, str]:
    """The ``(name, revision)`` under which :func:`run_mteb` files a model's results.

    Args:
        model: a ``SentenceTransformer``.
        model_name: the name; one without ``/`` gets the prefix ``local/`` (MTEB wants ``org/name``). Default: the
            name MTEB reads from the model's card data (a hub name), else ``local/<folder the weights came from>``.
        model_revision: the revision. Default: :func:`content_revision`.

    Example::

        from sbert_align.cli import load_model
        from sbert_align.mteb import model_identity

        model_identity(load_model("runs/t6/model"), "trained-t6")   # ('local/trained-t6', 'sha256-...')
    """
    require_mteb()
    _, meta = _wrap(model, model_name, model_revision)
    return str(meta.name), str(meta.revision)


def _rows(task_result, task_types: dict[str, str], mains: dict[str, str], name: str, revision: str) -> list[dict]:
    rows: list[dict[str, Any]] = []
    for split, entries in task_result.scores.items():
        for entry in entries:
            subset = entry.get("hf_subset", "default")
            for metric, value in entry.items():
                if metric in ("hf_subset", "languages", "main_score") or isinstance(value, bool):
                    continue
                if isinstance(value, (int, float)) and not math.isnan(value):
                    rows.append(
                        {
                            "task": task_result.task_name,
                            "type": task_types.get(task_result.task_name, ""),
                            "split": split,
                            "subset": subset,
                            "metric": metric,
                            "score": float(value),
                            "main": metric == mains.get(task_result.task_name),
                            "model": name,
                            "revision": revision,
                        }
                    )
    return rows


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _evaluate(mteb, wrapped, task, cache, encode_kwargs: dict, show_progress_bar: bool):
    try:
        with warnings.catch_warnings():
            # sklearn's "ill-defined precision" warnings for classes a weak classifier never predicts
            warnings.filterwarnings("ignore", module="sklearn")
            result = mteb.evaluate(
                wrapped,
                task,
                cache=cache,
                overwrite_strategy="always",
                encode_kwargs=dict(encode_kwargs),
                show_progress_bar=show_progress_bar,
                co2_tracker=False,
            )
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"mteb evaluation of {task.metadata.name} failed: {type(e).__name__}: {first[:300]}") from e
    (task_result,) = result.task_results
    return task_result


def run_mteb(
    model,
    tasks: Sequence[Any] | Any,
    *,
    batch_size: int = 32,
    output_folder: str | Path | None = None,
    model_name: str | None = None,
    model_revision: str | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run MTEB tasks on a ``SentenceTransformer``, one after the other, and return a tidy table.

    Args:
        model: a ``SentenceTransformer`` (or an MTEB encoder with its own ``mteb_model_meta``).
        tasks: task objects, ``"local:<data>"`` strings or MTEB task names (see :func:`resolve_tasks`).
        batch_size: encoding batch size.
        output_folder: MTEB's result cache folder (``mteb.ResultCache(output_folder)`` reads it back; see the module
            docstring for the layout and the atomic writing). ``None``: nothing is written, nothing reused.
        model_name: the model's name in the results (see :func:`model_identity`).
        model_revision: its revision (default: :func:`content_revision`).
        overwrite: run and replace tasks whose results ``output_folder`` already holds for this model and revision
            (by default they are read back when they come from the same data, and refused when not).
        show_progress_bar: encoding progress bars.
        log: progress messages, one per task started and finished (default: stderr when ``show_progress_bar``,
            else none).

    Returns:
        One dict per (task, split, subset, metric): ``task``, ``type``, ``split``, ``subset``, ``metric``, ``score``,
        ``main`` (True for the task's main score), ``model`` and ``revision``. Only defined scalar metrics are listed
        (MTEB's ``ap`` is NaN for more than two classes and is left out).

    Raises:
        ValueError: a task that fails, or results of other data (another dataset revision) already in
            ``output_folder`` for this model, revision and task without ``overwrite``.

    Example::

        from sentence_transformers import SentenceTransformer
        from sbert_align.mteb import results_table, run_mteb

        model = SentenceTransformer(path_to_model)
        rows = run_mteb(model, ["local:trec6", "local:stsb"], output_folder="mteb-results", model_name="frozen")
        print(results_table("mteb-results").markdown())
    """
    mteb = require_mteb()
    task_objs = resolve_tasks(tasks)
    wrapped, meta = _wrap(model, model_name, model_revision)
    name, revision = str(meta.name), str(meta.revision)
    if output_folder is not None and name == _NO_NAME:
        raise ValueError("model_name: this model has no name for its results; pass one.")
    say = log if log is not None else (_stderr if show_progress_bar else (lambda msg: None))
    encode_kwargs = {"batch_size": batch_size, "show_progress_bar": show_progress_bar}
    folder = Path(output_folder) if output_folder is not None else None
    cache = mteb.ResultCache(cache_path=folder) if folder is not None else None
    if folder is not None:
        where = cache.get_task_result_path("Task", meta).parent
        say(f"MTEB: {len(task_objs)} task(s), model {name} revision {revision}; results in {where}")
    types = {t.metadata.name: str(t.metadata.type) for t in task_objs}
    mains = {t.metadata.name: t.metadata.main_score for t in task_objs}
    rows: list[dict[str, Any]] = []
    for i, task in enumerate(task_objs, 1):
        tname = task.metadata.name
        prefix = f"[{i}/{len(task_objs)}] {tname}"
        task_result = None
        if cache is not None and not overwrite:
            task_result = _cached(cache, task, meta, prefix)
        if task_result is not None:
            status = "cached"
        else:
            say(f"{prefix}: running")
            start = time.perf_counter()
            if folder is None:
                task_result = _evaluate(mteb, wrapped, task, None, encode_kwargs, show_progress_bar)
            else:
                with staged_files(folder) as tmp:
                    stage = mteb.ResultCache(cache_path=tmp)
                    # MTEB merges run_settings.jsonl with the file it finds: let it find the real one
                    settings = cache.get_task_result_path(tname, meta).parent / "run_settings.jsonl"
                    if settings.is_file():
                        target = stage.get_task_result_path(tname, meta).parent / settings.name
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(settings, target)
                    task_result = _evaluate(mteb, wrapped, task, stage, encode_kwargs, show_progress_bar)
            status = f"{time.perf_counter() - start:.1f} s"
        main = mains.get(tname)
        try:
            score = f"{main} {task_result.get_score():.4f}"
        except Exception:
            score = "done"
        say(f"{prefix}: {score} ({status})")
        rows += _rows(task_result, types, mains, name, revision)
    return rows


def _cached(cache, task, meta, prefix: str):
    """The cached TaskResult of ``task`` when it is complete and from the same data; ``None`` when there is none.

    Raises:
        ValueError: results of other data (dataset revision) or with missing splits: only ``overwrite`` replaces them.
    """
    existing = cache.load_task_result(task.metadata.name, meta)
    if existing is None:
        return None
    path = cache.get_task_result_path(task.metadata.name, meta)
    wanted = str(task.metadata.dataset.get("revision"))
    missing = existing.get_missing_evaluations(task)
    if existing.dataset_revision != wanted or missing:
        why = (
            f"dataset revision {existing.dataset_revision}, now {wanted}"
            if existing.dataset_revision != wanted
            else f"missing splits {sorted(missing)}"
        )
        raise ValueError(
            f"{prefix}: {path} holds results for this model and revision from other data or settings ({why}); "
            "pass overwrite=True (sbert-align evaluate --mteb-overwrite) to replace them, or use another folder."
        )
    return existing

"""``sbert-align compare``: kNN accuracy of frozen encoders under several poolings, on several data sets.

Every model gets a unique label (:func:`~sbert_align.cli.models.model_labels`), so two folders both named ``model``
are two rows, never one. Outputs (``<name>.md``, ``.csv``, ``.png``, ``.json``) are written only once the run is
complete, the JSON last as the marker of a complete set (:func:`~sbert_align.cli.reports.write_compare_report`);
after each model, ``<name>.partial.json`` records the finished ones (``"complete": false``) with a fingerprint of
each local model folder (:func:`~sbert_align.cli.models.model_fingerprint`), and rerunning the same command after an
interruption reuses them, except for folders that changed since (``--no-resume`` starts over).

Example::

    sbert-align compare --models minilm-l6 mpnet-base --data trec6 trec50 --pooling cls mean layer-mean --threads 1
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import CLIError, DataOptions, Log, load_data
from .models import load_model, model_fingerprint, model_labels
from .pooling import POOLINGS, frozen_embeddings
from .reports import compare_paths, read_compare_partial, write_compare_partial, write_compare_report

__all__ = ["compare_frozen", "compare_settings", "run_compare"]


def compare_frozen(
    models: Sequence[str],
    datasets: Sequence[str],
    poolings: Sequence[str] = POOLINGS,
    k: int = 5,
    batch_size: int = 64,
    max_train: int | None = None,
    show_progress_bar: bool = True,
    log: Log = print,
    on_model_done: Callable[[list[dict[str, Any]]], None] | None = None,
    *,
    data_options: DataOptions | None = None,
    reuse: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """kNN accuracy (train as references, test as queries) of frozen encoders under each pooling, per dataset.

    Every distinct text of all datasets is encoded once per model (TREC-6 and TREC-50 share their texts).

    Args:
        models: model arguments (aliases, folders, hub names); each gets a unique label.
        datasets: data names / files / folders of (text, label) data.
        poolings: a subset of :data:`~sbert_align.cli.pooling.POOLINGS`.
        k: neighbours of the kNN.
        batch_size: encoding batch size.
        max_train: keep at most this many train texts per dataset (seeded).
        show_progress_bar: a progress bar while encoding.
        log: progress lines.
        on_model_done: called with the rows so far after each model (the command line records them there, so an
            interrupted run keeps the finished models).
        data_options: column options for files and folders.
        reuse: model argument -> its rows from an earlier, interrupted run with the same settings; those models
            are not encoded again.

    Returns:
        One row per (model, pooling, dataset): ``model`` (label), ``model_path`` (the argument), ``pooling``,
        ``data``, ``k``, ``accuracy``, ``macro_f1``, ``n_train``, ``n_test``, ``encode_seconds_all_data``.

    Example::

        from sbert_align.cli import compare_frozen

        rows = compare_frozen(["minilm-l6"], ["trec6"], ["mean"], max_train=300)
        rows[0]["accuracy"]
    """
    from ..evaluation.knn import knn_metrics

    if not models:
        raise CLIError("models: give at least one model.")
    labels = model_labels(models)
    loaded = {}
    for d in dict.fromkeys(datasets):
        data = load_data(d, data_options, max_train=max_train)
        if data.is_pairs or data.label_names is None:
            raise CLIError(f"data: {d} is a pair/score set; compare needs (text, label) data.")
        loaded[d] = data
    all_texts = list(dict.fromkeys(t for data in loaded.values() for s in ("train", "test") for t in data.texts(s)))
    pos = {t: i for i, t in enumerate(all_texts)}
    rows: list[dict[str, Any]] = []
    for m, label in zip(models, labels):
        if reuse and m in reuse:
            rows += [{**r, "model": label} for r in reuse[m]]
            log(f"{label}: reusing its results from the interrupted run")
        else:
            model = load_model(m, device="cpu")
            t0 = time.perf_counter()
            log(f"{label}: encoding {len(all_texts)} distinct texts ...")
            emb = frozen_embeddings(
                model, all_texts, poolings, batch_size=batch_size, show_progress_bar=show_progress_bar
            )
            seconds = time.perf_counter() - t0
            log(f"{label}: encoded in {seconds:.0f} s")
            for d, data in loaded.items():
                tr = [pos[t] for t in data.texts("train")]
                te = [pos[t] for t in data.texts("test")]
                for p in poolings:
                    res = knn_metrics(emb[p][tr], data.labels("train"), emb[p][te], data.labels("test"), k=k)
                    rows.append(
                        {
                            "model": label,
                            "model_path": m,
                            "pooling": p,
                            "data": d,
                            "k": k,
                            "accuracy": res["accuracy"],
                            "macro_f1": res["macro_f1"],
                            "n_train": len(tr),
                            "n_test": len(te),
                            "encode_seconds_all_data": round(seconds, 1),
                        }
                    )
                    log(f"  {d:>10} {p:>10}: kNN@{k} accuracy {res['accuracy']:.4f}")
            del model, emb
        if on_model_done is not None:
            on_model_done(rows)
    return rows


def compare_settings(args: Any) -> dict[str, Any]:
    """What the rows of a ``compare`` run depend on (a rerun reuses partial rows only when these are equal)."""
    return {
        "data": list(args.data),
        "poolings": list(args.pooling),
        "k": args.k,
        "max_train_samples": args.max_train_samples,
        **DataOptions.from_args(args).as_dict(),
    }


def run_compare(args: Any, log: Log = print) -> list[dict[str, Any]]:
    """``sbert-align compare``: kNN accuracy of frozen encoders under several poolings; writes a Markdown table,
    CSV, JSON and a bar chart under ``--out`` once every model is done (earlier outputs stay until then), and
    ``<name>.partial.json`` after each model, which a rerun of the same command reuses (for each local model
    folder, only while its fingerprint is unchanged)."""
    t0 = time.perf_counter()
    out, stem = Path(args.out), args.name
    settings = compare_settings(args)
    paths = compare_paths(out, stem)
    fingerprints = {m: model_fingerprint(m) for m in args.models}  # before any model is loaded
    reuse = {} if args.no_resume else read_compare_partial(out, stem, settings, fingerprints)
    reuse = {m: rows for m, rows in reuse.items() if m in args.models}
    if reuse:
        log(f"found {paths['partial']}: reusing {len(reuse)} finished model(s) (--no-resume starts over)")

    def record(rows: list[dict[str, Any]]) -> None:
        done = list(dict.fromkeys(r["model_path"] for r in rows))
        write_compare_partial(
            rows, out, stem, models=args.models, models_done=done, settings=settings, fingerprints=fingerprints
        )

    try:
        rows = compare_frozen(
            args.models,
            args.data,
            args.pooling,
            k=args.k,
            batch_size=args.batch_size,
            max_train=args.max_train_samples,
            show_progress_bar=not args.quiet,
            log=log,
            on_model_done=record,
            data_options=DataOptions.from_args(args),
            reuse=reuse,
        )
    except KeyboardInterrupt:
        if paths["partial"].is_file():
            log(
                f"interrupted: finished models are kept in {paths['partial']} (complete: false); rerun the same "
                "command to finish. Earlier complete outputs are untouched."
            )
        raise
    written = write_compare_report(rows, out, stem, k=args.k, seconds=time.perf_counter() - t0, settings=settings)
    print(written["md"].read_text(encoding="utf-8"))
    log("wrote " + ", ".join(str(p) for p in written.values()))
    return rows

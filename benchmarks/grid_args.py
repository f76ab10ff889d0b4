"""The command-line options every benchmark grid shares, and the checks that go with them.

A grid script (``bench_quality.py``, ``bench_pairs.py``, ``bench_confound.py``, ``bench_nearby.py``,
``bench_forgetting.py``, ``bench_oos.py``) builds its own parser with its own options and adds the shared ones from
here: the training budget (:func:`add_budget_arguments`) and the results folder with the hidden flags a grid passes to
each row's own process (:func:`add_results_arguments`). After parsing, :func:`select_methods` and :func:`check_budget`
give every grid the same error for the same mistake, through ``parser.error`` (usage line, exit status 2), before
anything trains.

Example::

    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", nargs="+", default=[])
    add_budget_arguments(parser)
    add_results_arguments(parser, Path("results"))
    args = parser.parse_args(["--methods", "all", "--lr", "1e-4"])
    args.methods = select_methods(parser, args.methods, ["frozen", "ca"])
    check_budget(parser, args)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["add_budget_arguments", "add_results_arguments", "check_budget", "select_methods"]


def add_budget_arguments(parser: argparse.ArgumentParser, *, epochs: int | None = 3) -> None:
    """Add the budget every method of a grid gets: ``--epochs`` (left out when ``epochs`` is None, for a grid that
    counts steps instead), ``--seed``, ``--batch-size``, ``--lr``, ``--warmup``, ``--threads`` and ``--device``."""
    if epochs is not None:
        parser.add_argument(
            "--epochs", type=int, default=epochs, help=f"training epochs of each row (default {epochs})"
        )
    parser.add_argument("--seed", type=int, default=0, help="seed of each row (default 0)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    parser.add_argument("--lr", type=float, default=5e-5, help="the encoder's learning rate (default 5e-5)")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the steps spent in linear warm-up")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each row (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")


def add_results_arguments(parser: argparse.ArgumentParser, out_dir: Path, *, row_process: bool = True) -> None:
    """Add ``--force`` and ``--out-dir`` (default ``out_dir``) and, with ``row_process``, the hidden ``--row`` /
    ``--row-out`` that ``harness.spawn_row`` passes to the process that runs one row."""
    parser.add_argument("--force", action="store_true", help="rerun rows that are already in the results")
    parser.add_argument("--out-dir", type=Path, default=out_dir, help=f"results folder (default {out_dir})")
    if row_process:
        parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--row-out", type=Path, help=argparse.SUPPRESS)


def select_methods(
    parser: argparse.ArgumentParser, requested: Sequence[str], known: Iterable[str], *, hint: str | None = None
) -> list[str]:
    """The methods a command asked for, in its order without repeats; ``all`` stands for every known method.

    Stops through ``parser.error`` when none was asked for or one is unknown (naming every known one). ``hint`` says
    where the names come from in the first message (default: ``names from --list``).
    """
    known = list(known)
    if not requested:
        parser.error(f"--methods is required: {hint or 'names from --list'}, or 'all'")
    if "all" in requested:
        return known
    unknown = [m for m in requested if m not in known]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return list(dict.fromkeys(requested))


def check_budget(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    counts: Iterable[str] = ("epochs", "batch_size", "threads"),
) -> None:
    """Stop through ``parser.error`` on a budget no row could train with: a count in ``counts`` below 1, a learning
    rate that is not a positive finite number, a warm-up share outside [0, 1), or (where the parser has them) ``--row``
    without exactly one method and a ``--row-out``."""
    for name in counts:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (math.isfinite(args.lr) and args.lr > 0):
        parser.error(f"--lr must be a positive number, not {args.lr}")
    if not (math.isfinite(args.warmup) and 0 <= args.warmup < 1):
        parser.error("--warmup must be in [0, 1)")
    if getattr(args, "row", False) and (len(args.methods) != 1 or args.row_out is None):
        parser.error("--row runs exactly one method and needs --row-out")

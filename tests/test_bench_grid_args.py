"""The command-line options the benchmark grids share (``benchmarks/grid_args.py``), and that every grid uses them."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import grid_args  # noqa: E402

KNOWN = ["frozen", "ca", "ce"]


def _parser(**budget) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grid")
    parser.add_argument("--methods", nargs="+", default=[])
    grid_args.add_budget_arguments(parser, **budget)
    grid_args.add_results_arguments(parser, Path("results"))
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    args.methods = grid_args.select_methods(parser, args.methods, KNOWN)
    grid_args.check_budget(parser, args)
    return args


def test_defaults_are_the_shared_budget():
    args = _parse(["--methods", "ca"])
    assert (args.epochs, args.seed, args.batch_size, args.lr, args.warmup, args.threads, args.device) == (
        3,
        0,
        32,
        5e-5,
        0.1,
        1,
        "cpu",
    )
    assert (args.force, args.out_dir, args.row, args.row_out) == (False, Path("results"), False, None)
    assert not hasattr(_parser(epochs=None).parse_args([]), "epochs")  # a grid that counts steps
    assert _parser(epochs=1).parse_args([]).epochs == 1


def test_methods_all_keeps_order_and_drops_repeats():
    assert _parse(["--methods", "all"]).methods == KNOWN
    assert _parse(["--methods", "ce", "ca", "ce"]).methods == ["ce", "ca"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--methods is required: names from --list, or 'all'"),
        (["--methods", "nope", "ca"], "unknown method(s) nope; known: frozen, ca, ce"),
        (["--methods", "ca", "--epochs", "0"], "--epochs must be at least 1"),
        (["--methods", "ca", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--methods", "ca", "--threads", "0"], "--threads must be at least 1"),
        (["--methods", "ca", "--lr", "0"], "--lr must be a positive number, not 0.0"),
        (["--methods", "ca", "--lr=-1e-4"], "--lr must be a positive number"),
        (["--methods", "ca", "--lr", "nan"], "--lr must be a positive number, not nan"),
        (["--methods", "ca", "--warmup", "1"], "--warmup must be in [0, 1)"),
        (["--methods", "ca", "--warmup", "-0.1"], "--warmup must be in [0, 1)"),
        (
            ["--methods", "ca", "ce", "--row", "--row-out", "x.json"],
            "--row runs exactly one method and needs --row-out",
        ),
        (["--methods", "ca", "--row"], "--row runs exactly one method and needs --row-out"),
    ],
)
def test_bad_input_stops_with_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        _parse(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: grid") and message in err


def test_hint_names_where_the_methods_come_from(capsys):
    parser = _parser()
    with pytest.raises(SystemExit):
        grid_args.select_methods(parser, [], KNOWN, hint="frozen, ca, ce")
    assert "--methods is required: frozen, ca, ce, or 'all'" in capsys.readouterr().err


def test_a_one_method_row_passes():
    args = _parse(["--methods", "ca", "--row", "--row-out", "row.json", "--lr", "1e-4", "--warmup", "0"])
    assert (args.row, args.row_out, args.lr, args.warmup) == (True, Path("row.json"), 1e-4, 0.0)


def test_parser_without_row_flags_is_checked_all_the_same(capsys):
    parser = argparse.ArgumentParser(prog="grid")
    parser.add_argument("--methods", nargs="+", default=["ca", "ce"])
    grid_args.add_budget_arguments(parser, epochs=1)
    grid_args.add_results_arguments(parser, Path("results"), row_process=False)
    args = parser.parse_args([])
    grid_args.check_budget(parser, args)  # two methods, no --row: fine
    assert not hasattr(args, "row")
    with pytest.raises(SystemExit):
        grid_args.check_budget(parser, parser.parse_args(["--lr", "-1"]))
    assert "--lr must be a positive number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("bench_quality", ["--dataset", "trec6", "--methods", "frozen"]),
        ("bench_pairs", ["--dataset", "mrpc", "--methods", "frozen"]),
        ("bench_confound", ["--methods", "ca"]),
        ("bench_nearby", ["--methods", "frozen"]),
        ("bench_forgetting", ["--methods", "frozen"]),
        ("bench_oos", []),
    ],
)
def test_every_grid_refuses_a_learning_rate_of_zero(module, argv, capsys):
    grid = importlib.import_module(module)
    assert grid.parse_args(argv).lr == 5e-5
    with pytest.raises(SystemExit) as stop:
        grid.parse_args([*argv, "--lr", "0"])
    assert stop.value.code == 2
    assert "--lr must be a positive number" in capsys.readouterr().err

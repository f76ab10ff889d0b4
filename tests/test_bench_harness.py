"""The benchmarks' row harness (``benchmarks/harness.py``): flags, a row in its own process, the locked merge."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import harness  # noqa: E402


def test_row_flags_round_trip_floats_switches_and_lists():
    flags = harness.row_flags(
        {"methods": "ca", "lr": 5e-5, "max_train": None, "validation": True, "force": False, "weights": [1.0, 3]}
    )
    assert flags == ["--methods", "ca", "--lr", "5e-05", "--validation", "--weights", "1.0", "3"]
    assert float(flags[3]) == 5e-5


SCRIPT = """
import argparse, json, os, signal, sys
parser = argparse.ArgumentParser()
parser.add_argument("--row", action="store_true")
parser.add_argument("--row-out")
parser.add_argument("--mode")
parser.add_argument("--lr", type=float)
args = parser.parse_args()
if args.mode == "exit":
    sys.exit(3)
if args.mode == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
with open(args.row_out, "w") as f:
    json.dump({"method": "m", "lr": args.lr, "threads_env": os.environ["OMP_NUM_THREADS"], "status": "ok"}, f)
"""


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "row_script.py"
    path.write_text(textwrap.dedent(SCRIPT))
    return path


def test_spawn_row_reads_back_the_row_the_process_wrote(script):
    row = harness.spawn_row(script, {"mode": "ok", "lr": 5e-5}, threads=1, failed={"method": "m"})
    assert row == {"method": "m", "lr": 5e-5, "threads_env": "1", "status": "ok"}


@pytest.mark.parametrize(("mode", "reason"), [("exit", "exit code 3"), ("kill", "killed by signal 9")])
def test_spawn_row_turns_a_process_without_a_row_into_a_failed_row(script, mode, reason):
    row = harness.spawn_row(script, {"mode": mode}, threads=2, failed={"method": "m", "seed": 0})
    assert row["status"] == "failed" and row["method"] == "m" and row["seed"] == 0 and row["threads"] == 2
    assert reason in row["error"]
    if mode == "kill":
        assert "possibly out of memory" in row["error"]


def test_merge_row_replaces_the_row_with_its_key_and_rewrites_the_table(tmp_path):
    json_path, md_path = tmp_path / "r.json", tmp_path / "r.md"

    def key_of(row):
        return (row["method"], row["seed"])

    def render(results):
        return "\n".join(f"{r['method']} {r['seed']} {r['status']}" for r in results["rows"]) + "\n"

    harness.merge_row(json_path, md_path, {"method": "a", "seed": 0, "status": "failed"}, {"m": 1}, key_of, render)
    harness.merge_row(json_path, md_path, {"method": "b", "seed": 0, "status": "ok"}, {"m": 2}, key_of, render)
    harness.merge_row(json_path, md_path, {"method": "a", "seed": 0, "status": "ok"}, {"m": 3}, key_of, render)
    results = json.loads(json_path.read_text())
    assert [(r["method"], r["status"]) for r in results["rows"]] == [("b", "ok"), ("a", "ok")]
    assert results["meta"] == {"m": 3}
    assert md_path.read_text() == "b 0 ok\na 0 ok\n"
    assert harness.read_cached(json_path, ("a", 0), key_of)["status"] == "ok"
    assert harness.read_cached(json_path, ("a", 1), key_of) is None


def test_cached_row_skips_failed_rows_and_read_results_rejects_other_files(tmp_path):
    results = {"rows": [{"k": 1, "status": "failed"}]}
    assert harness.cached_row(results, 1, lambda r: r["k"]) is None
    assert harness.read_results(tmp_path / "missing.json") == {"meta": {}, "rows": []}
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a results file"):
        harness.read_results(bad)


def test_failed_rows_lines_lists_only_failed_rows_in_order_and_nothing_without_them():
    rows = [
        {"method": "a", "status": "ok"},
        {"method": "b", "status": "failed", "error": "ValueError: boom"},
        {"method": "c", "status": "failed"},
    ]
    assert harness.failed_rows_lines(rows, lambda r: f"{r['method']} (seed 0)") == [
        "## Failed rows",
        "",
        "- b (seed 0): ValueError: boom",
        "- c (seed 0): unknown error",
        "",
    ]
    assert harness.failed_rows_lines(rows[:1], lambda r: r["method"]) == []


def test_method_lines_use_the_registry_then_the_rows_stored_summary():
    class Method:
        summary = "registered summary"

    rows = [{"method": "b"}, {"method": "a"}, {"method": "gone", "summary": "stored summary"}, {"method": "a"}]
    order = {"a": 0, "b": 1, "gone": 2}.get
    assert harness.method_lines(rows, {"a": Method(), "b": Method()}, order) == [
        "## Methods",
        "",
        "- `a`: registered summary",
        "- `b`: registered summary",
        "- `gone`: stored summary",
    ]

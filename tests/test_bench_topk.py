"""``benchmarks/bench_topk.py``'s reports: every run adds a section; none replaces another run's measurements."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_topk  # noqa: E402


def _cuda_row(b: int, chunked_ms: float) -> dict:
    s = chunked_ms / 1e3
    return {
        "B": b, "N": 4096, "D": 64, "k": 5, "dtype": "float32",
        "chunked_s": s, "triton_s": s / 2, "floor_s": s / 4,
        "triton_over_chunked": 0.5, "chunked_over_floor": 4.0, "triton_over_floor": 2.0,
        "chunked_peak_bytes": 2**20, "triton_peak_bytes": 2**19, "same_indices_rows": 1.0, "max_value_diff": 0.0,
    }  # fmt: skip


def _meta(run_id: str, date: str, **extra) -> dict:
    return {"run_id": run_id, "date": date, "device": "cuda", "device_name": "GPU X", "torch": "t", "triton": "3",
            "reps": 5, **extra}  # fmt: skip


def test_save_run_adds_a_run_and_replaces_only_its_own_earlier_self(tmp_path):
    first = {"meta": _meta("a", "2026-01-01 00:00 UTC", title="First run"), "rows": [_cuda_row(8, 110.0)]}
    bench_topk.save_run(tmp_path, "topk_cuda", first, bench_topk.render_cuda)
    second = {"meta": _meta("b", "2026-01-02 00:00 UTC", note="A note."), "rows": [_cuda_row(16, 230.0)]}
    bench_topk.save_run(tmp_path, "topk_cuda", second, bench_topk.render_cuda)
    second["rows"].append(_cuda_row(32, 370.0))  # the same run, one more row
    md = bench_topk.save_run(tmp_path, "topk_cuda", second, bench_topk.render_cuda)

    runs = bench_topk.read_runs(tmp_path / "topk_cuda.json")
    assert [r["meta"]["run_id"] for r in runs] == ["a", "b"]
    assert [len(r["rows"]) for r in runs] == [1, 2]
    text = md.read_text()
    assert "110.0 ms" in text and "230.0 ms" in text and "370.0 ms" in text
    # newest first, each under its own heading, the note under its table
    assert text.index("## Run of 2026-01-02") < text.index("## First run") < text.index("110.0 ms")
    assert text.index("370.0 ms") < text.index("A note.") < text.index("## First run")


def test_a_file_of_the_one_run_layout_is_kept_as_a_run(tmp_path):
    legacy = {"meta": _meta("old", "2025-12-31 00:00 UTC"), "rows": [_cuda_row(4, 44.0)]}
    (tmp_path / "topk_cuda.json").write_text(json.dumps(legacy))
    new = {"meta": _meta("new", "2026-01-01 00:00 UTC"), "rows": [_cuda_row(8, 88.0)]}
    md = bench_topk.save_run(tmp_path, "topk_cuda", new, bench_topk.render_cuda)
    assert [r["meta"]["run_id"] for r in bench_topk.read_runs(tmp_path / "topk_cuda.json")] == ["old", "new"]
    assert "44.0 ms" in md.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [("[1, 2]", "not a results file"), ('{"runs": [', "topk_cuda.json: not valid JSON")],
    ids=["not-a-report", "damaged-json"],
)
def test_a_file_that_cannot_be_read_as_a_report_is_named_and_left_as_it_is(tmp_path, content, message):
    path = tmp_path / "topk_cuda.json"
    path.write_text(content)
    new = {"meta": _meta("new", "2026-01-01 00:00 UTC"), "rows": [_cuda_row(8, 88.0)]}
    with pytest.raises(ValueError, match=message):
        bench_topk.save_run(tmp_path, "topk_cuda", new, bench_topk.render_cuda)
    assert path.read_text() == content


def test_two_cpu_runs_against_faiss_both_stay_in_the_report(tmp_path):
    pytest.importorskip("faiss")
    pytest.importorskip("threadpoolctl")
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_topk.py"), "--device", "cpu", "--shapes",
               "37,3001,16,5", "--threads", "1", "--reps", "1", "--no-eager", "--out-dir", str(tmp_path)]  # fmt: skip
    for title in ("one", "two"):
        done = subprocess.run([*command, "--title", title], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    runs = bench_topk.read_runs(tmp_path / "topk_cpu.json")
    assert [r["meta"]["title"] for r in runs] == ["one", "two"]
    for run, title in zip(runs, ("one", "two"), strict=True):
        (row,) = run["rows"]
        assert (row["B"], row["N"], row["D"], row["k"], row["threads"]) == (37, 3001, 16, 5, 1)
        assert row["same_index_sets_rows"] > 0.99  # ours and faiss agree on random inputs
        assert run["meta"]["command"].endswith(f"--title {title}")
    text = (tmp_path / "topk_cpu.md").read_text()
    assert text.index("## two") < text.index("## one")

"""Fused Triton top-k against chunked matmul + ``torch.topk`` (issue 4, item 4), side by side, in one run.

For each shape (B queries, N keys, D, k) and input dtype: the median time and peak extra memory of

* ``chunked``: ``similarity_topk(backend="chunked")``, what ``auto`` runs: per chunk of 16,384 keys, one
  matmul in fp32 (half inputs are upcast), ``torch.topk`` and a merge;
* ``triton``: ``similarity_topk(backend="triton")``, the fused kernel of ``sbert_align/kernels/triton_topk.py``
  (half inputs stay half on the tensor cores, with fp32 accumulation);
* ``floor``: the chunked path's matmuls alone (same chunks, same fp32 upcast, a row maximum instead of the top-k),
  i.e. what chunked would cost if the top-k were free;

with ratios, and whether the two backends return the same neighbours (share of rows with identical indices, largest
value difference). float32 is the like-for-like comparison (both on CUDA cores, IEEE fp32); with bf16 inputs the
fused kernel also gains from the tensor cores, which the chunked path does not use.

The issue's rule: ``auto`` switches to the fused kernel on CUDA only if it beats chunked here. Peak memory: CUDA
``max_memory_allocated`` minus the memory allocated before the call (inputs excluded).

On the CPU (``--device cpu``, issue 10 part 4) the comparison is exact kNN against faiss instead: for each shape and
thread count, interleaved (ours, ours_prenorm, faiss, floor, ..., then again), medians of ``--reps`` calls:

* ``ours``: ``similarity_topk(queries, keys, k)`` as a user calls it (raw inputs; it normalises them);
* ``ours_prenorm``: ``similarity_topk(queries, keys, k, normalize=False)`` on the inputs faiss gets (normalised
  beforehand, not timed): the like-for-like comparison with faiss's search;
* ``faiss``: ``faiss.IndexFlatIP.search`` on pre-normalised queries, the index built beforehand (not timed);
* ``floor``: the matrix products of our tiles alone, into the same reused buffer, no selection;

peak memory = the largest rise of the process's resident memory during one call (sampled every 2 ms), and
whether ours and faiss return the same neighbours. Results: ``benchmarks/results/topk_cpu.{json,md}``.

Every run adds its own section (its rows, settings, command line, and ``--title`` / ``--note`` when given) to the
report of its device, filled row by row; no run replaces or rewrites another's measurements, and ratios are compared
within a run (the machine's speed differs between runs).

Usage::

    python benchmarks/bench_topk.py --device cpu                  # 10000x100000 and 1000x1000000, D 384, k 10,
                                                                  # 1 and 2 threads; adds a run to topk_cpu.{json,md}
    python benchmarks/bench_topk.py --device cuda                 # adds a run to benchmarks/results/topk_cuda.*
    TRITON_INTERPRET=1 python benchmarks/bench_topk.py --device cpu --shapes 70,3000,48,5 --dtypes float32
        # a smoke run of the Triton code path on CPU (interpreter timings mean nothing; topk_triton_interpreter.*)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_kernels import _median_seconds  # noqa: E402
from harness import results_lock  # noqa: E402

from sbert_align.files import atomic_write_json, atomic_write_text  # noqa: E402

CPU_SHAPES = ["10000,100000,384,10", "1000,1000000,384,10"]
DEFAULT_SHAPES = ["4096,1048576,768,10", "1024,1048576,384,10", "4096,65536,768,10", "1024,1048576,384,50"]


def _peak_extra_bytes(fn, device) -> int | None:
    import torch

    if device != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def run_shape(b: int, n: int, d: int, k: int, dtype_name: str, device: str, reps: int) -> dict:
    import torch
    import torch.nn.functional as F

    from sbert_align.kernels import similarity_topk

    dtype = getattr(torch, dtype_name)
    g = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(b, d, generator=g).to(device=device, dtype=dtype)
    keys = torch.randn(n, d, generator=g).to(device=device, dtype=dtype)

    def chunked():
        return similarity_topk(q, keys, k, backend="chunked")

    def triton():
        return similarity_topk(q, keys, k, backend="triton")

    def floor(chunk=16384):
        qn = F.normalize(q.float(), dim=-1)
        best = torch.full((b,), float("-inf"), device=device)
        for s in range(0, n, chunk):
            best = torch.maximum(best, (qn @ F.normalize(keys[s : s + chunk].float(), dim=-1).T).amax(1))
        return best

    row = {"B": b, "N": n, "D": d, "k": k, "dtype": dtype_name}
    for name, fn in (("chunked", chunked), ("triton", triton), ("floor", floor)):
        row[f"{name}_s"] = _median_seconds(fn, reps, device)
        row[f"{name}_peak_bytes"] = _peak_extra_bytes(fn, device)
    (cv, ci), (tv, ti) = chunked(), triton()
    row["same_indices_rows"] = float((ci == ti).all(1).float().mean())
    row["max_value_diff"] = float((cv.double() - tv.double()).abs().max())
    row["triton_over_chunked"] = row["triton_s"] / row["chunked_s"]
    row["chunked_over_floor"] = row["chunked_s"] / row["floor_s"]
    row["triton_over_floor"] = row["triton_s"] / row["floor_s"]
    print(
        f"topk {dtype_name} B={b} N={n} D={d} k={k}: chunked {row['chunked_s'] * 1e3:.1f} ms, "
        f"triton {row['triton_s'] * 1e3:.1f} ms ({row['triton_over_chunked']:.2f}x), "
        f"floor {row['floor_s'] * 1e3:.1f} ms; same indices in {row['same_indices_rows']:.4f} of rows",
        flush=True,
    )
    return row


class _PeakRSS:
    """The largest rise of this process's resident memory while the block runs (sampled every 2 ms)."""

    def __enter__(self):
        import threading

        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.extra = self.peak - self.base


def run_cpu_shape(b: int, n: int, d: int, k: int, threads: int, reps: int, eager: bool = True) -> dict:
    """Ours vs faiss ``IndexFlatIP`` vs the matmul floor, interleaved, at one shape and thread count."""
    import faiss
    import torch

    from sbert_align.kernels import StreamingTopK, normalize_rows, similarity_topk
    from sbert_align.kernels.cpu_matmul import AUTO_MIN_TILES, numpy_blas_threads, tile_matmul
    from sbert_align.kernels.cpu_select import CPU_SELECT_ENV_VAR, use_compiled_select
    from sbert_align.kernels.topk import CPU_QUERY_TILE, cpu_key_tile

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(b, d, generator=g)
    keys = torch.randn(n, d, generator=g)
    qn, kn = normalize_rows(q).numpy(), normalize_rows(keys)
    index = faiss.IndexFlatIP(d)
    index.add(kn.numpy())

    def ours():
        return similarity_topk(q, keys, k)

    qn_t = torch.from_numpy(qn)

    def ours_prenorm():  # faiss's inputs: normalised beforehand, not timed
        return similarity_topk(qn_t, kn, k, normalize=False)

    def faiss_search():
        return index.search(qn, k)

    key_tile = cpu_key_tile(min(b, CPU_QUERY_TILE))

    def floor(backend="torch"):
        qt = torch.from_numpy(qn)
        buf = torch.empty(CPU_QUERY_TILE * key_tile)
        with numpy_blas_threads(threads):
            for ks in range(0, n, key_tile):
                kt = kn[ks : ks + key_tile].T
                for qs in range(0, b, CPU_QUERY_TILE):
                    part = qt[qs : qs + CPU_QUERY_TILE]
                    out = buf[: part.shape[0] * kt.shape[1]].view(part.shape[0], kt.shape[1])
                    tile_matmul(part, kt, out, backend)

    def ours_eager():  # the same search with the eager selection (what the compiled one replaces)
        previous = os.environ.get(CPU_SELECT_ENV_VAR)
        os.environ[CPU_SELECT_ENV_VAR] = "eager"
        try:
            return similarity_topk(q, keys, k)
        finally:
            if previous is None:
                del os.environ[CPU_SELECT_ENV_VAR]
            else:
                os.environ[CPU_SELECT_ENV_VAR] = previous

    methods = {
        "ours": ours,
        "ours_prenorm": ours_prenorm,
        "faiss": faiss_search,
        "floor": floor,
        "floor_numpy": lambda: floor("numpy"),
    }
    if eager:
        methods["ours_eager"] = ours_eager
    times: dict[str, list[float]] = {name: [] for name in methods}
    peaks: dict[str, int] = {}
    # One-time costs before any call is measured: numba compiles the selection and the tile products of both BLAS are
    # timed once (on a first stretch of the keys long enough to trigger both), so the peaks below are a search's own.
    query_tiles = -(-b // CPU_QUERY_TILE)
    similarity_topk(q, keys[: min(n, -(-AUTO_MIN_TILES // query_tiles) * key_tile)], k)
    for name, fn in methods.items():  # warm-up, and the peak memory of one call
        with _PeakRSS() as peak:
            fn()
        peaks[name] = peak.extra
    for _ in range(reps):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    (ov, oi), (fv, fi) = ours(), faiss_search()
    fi = torch.from_numpy(fi)
    row = {"B": b, "N": n, "D": d, "k": k, "threads": threads, "dtype": "float32", "reps": reps}
    for name in methods:
        row[f"{name}_s"] = statistics.median(times[name])
        row[f"{name}_all_s"] = times[name]
        row[f"{name}_peak_bytes"] = peaks[name]
    row["ours_over_faiss"] = row["ours_s"] / row["faiss_s"]
    row["ours_prenorm_over_faiss"] = row["ours_prenorm_s"] / row["faiss_s"]
    row["ours_over_floor"] = row["ours_s"] / row["floor_s"]
    row["faiss_over_floor"] = row["faiss_s"] / row["floor_s"]
    row["same_indices_rows"] = float((oi == fi).all(1).float().mean())
    row["same_index_sets_rows"] = float((oi.sort(1).values == fi.sort(1).values).all(1).float().mean())
    row["max_value_diff"] = float((ov - torch.from_numpy(fv)).abs().max())
    row["tile"] = f"{min(b, CPU_QUERY_TILE)}x{key_tile}"
    search = StreamingTopK(q, k)  # which tile product ours used (measured in its warm-up call, then cached)
    row["ours_matmul"] = search._matmul(-(-n // search.key_tile), search._workers(n))[0]
    row["floor_numpy_over_floor"] = row["floor_numpy_s"] / row["floor_s"]
    row["ours_select"] = "compiled" if use_compiled_select(k, torch.float32, b * n) else "eager"
    if eager:
        row["ours_eager_over_faiss"] = row["ours_eager_s"] / row["faiss_s"]
    print(
        f"topk cpu B={b} N={n} D={d} k={k} threads={threads}: ours {row['ours_s']:.2f} s, faiss {row['faiss_s']:.2f}"
        f" s, floor {row['floor_s']:.2f} s (numpy's BLAS {row['floor_numpy_s']:.2f} s; ours used"
        f" {row['ours_matmul']}'s and the {row['ours_select']} selection"
        + (f"; with the eager one {row['ours_eager_s']:.2f} s" if eager else "")
        + f"); ours/faiss {row['ours_over_faiss']:.2f}, ours/floor"
        f" {row['ours_over_floor']:.2f}; on pre-normalised inputs {row['ours_prenorm_s']:.2f} s, /faiss"
        f" {row['ours_prenorm_over_faiss']:.2f}; same indices in {row['same_indices_rows']:.4f} of rows",
        flush=True,
    )
    return row


CPU_LEGEND = (
    "float32, random normal inputs (seed 0). Interleaved calls (ours, ours pre-norm., faiss, floor, floor numpy, ours"
    " eager, ...); median of the run's calls after a warm-up call. ours = `similarity_topk(q, keys, k)` on raw inputs"
    " (it normalises them; its tile product, torch's or numpy's BLAS, is measured once per process and tile shape in"
    " the warm-up call, see `sbert_align/kernels/cpu_matmul.py`; its selection compiled by numba or eager,"
    " `sbert_align/kernels/cpu_select.py`); ours eager = the same search with the eager selection"
    " (`SBERT_ALIGN_CPU_SELECT=eager`); ours pre-norm. = `similarity_topk(q, keys, k, normalize=False)` on the inputs"
    " faiss gets (normalised beforehand, not timed), the like-for-like comparison with faiss's search; faiss ="
    " `IndexFlatIP.search` on pre-normalised queries, index built beforehand; floor = our tiles' matrix products alone"
    " (no selection) with torch's BLAS, floor numpy = the same with numpy's. Peak = the rise of resident memory during"
    " one call (inputs and the faiss index excluded). ours/faiss < 1 means ours is faster."
)


def _cpu_row(r: dict) -> str:
    return (
        f"| {r['B']} | {r['N']} | {r['D']} | {r['k']} | {r['threads']} | {r['ours_s']:.2f} s |"
        f" {r.get('ours_matmul', 'torch')}, {r.get('ours_select', 'eager')} |"
        f" {_seconds(r.get('ours_eager_s'))} | {_seconds(r.get('ours_prenorm_s'))} | {r['faiss_s']:.2f} s |"
        f" {r['floor_s']:.2f} s | {_seconds(r.get('floor_numpy_s'))} | {r['ours_over_faiss']:.2f} |"
        f" {_ratio(r.get('ours_eager_over_faiss'))} | {_ratio(r.get('ours_prenorm_over_faiss'))} |"
        f" {r['ours_over_floor']:.2f} | "
        f"{_mib(r['ours_peak_bytes'])} / {_mib(r['faiss_peak_bytes'])} | {r['same_indices_rows']:.4f} | "
        f"{r['same_index_sets_rows']:.4f} | {r['max_value_diff']:.1e} |"
    )


def render_cpu(runs: list[dict]) -> str:
    """The Markdown report of every CPU run, newest first, one table per run."""
    return _render_runs(
        runs,
        "# Exact kNN on the CPU: `similarity_topk` vs faiss `IndexFlatIP`",
        "topk_cpu",
        CPU_LEGEND,
        lambda meta: (
            f"{meta.get('device_name', '?')}; torch {meta['torch']}, faiss {meta['faiss']}, numpy"
            f" {meta.get('numpy', '?')} with {meta.get('numpy_blas', '?')}; median of {meta['reps']} calls."
        ),
        "| B | N | D | k | threads | ours | product, selection | ours eager | ours pre-norm. | faiss | floor |"
        " floor numpy | ours/faiss | ours eager/faiss | ours pre-norm./faiss | ours/floor | peak ours / faiss |"
        " same indices (rows) | same sets (rows) | max value diff |",
        _cpu_row,
    )


def _render_runs(runs, title: str, stem: str, legend: str, describe, header: str, row_line) -> str:
    """A report of ``runs``, newest first: ``title``, how sections relate, ``legend``, then per run its heading,
    ``describe(meta)``, a table (``header``, one ``row_line(row)`` per row) and its note."""
    lines = [title, "", runs_rule(stem), "", legend]
    for run in reversed(runs):
        meta = run["meta"]
        lines += [*_run_heading(meta), describe(meta), "", header, "|---" * header.count(" | ") + "|---|"]
        lines += [row_line(r) for r in run["rows"]]
        lines += _run_note(meta)
    return "\n".join(lines) + "\n"


def runs_rule(stem: str) -> str:
    """The paragraph that says how the report's sections relate (``stem``: the file's name without its suffix)."""
    return (
        "Every run of the script adds its own section here (newest first; a run fills its section row by row, so an"
        f" interrupted run keeps its finished rows) and never replaces another run's: `{stem}.json` beside this file"
        " holds every run with its settings. The backends are compared within a run (interleaved or back"
        " to back on one warm machine); compare ratios, not seconds, across sections, since machines and their load"
        " differ between runs."
    )


def _run_heading(meta: dict) -> list[str]:
    title = meta.get("title") or f"Run of {meta['date']}"
    lines = ["", f"## {title}", ""]
    if meta.get("command"):
        lines.append(f"Command: `{meta['command']}`, {meta['date']}.")
    else:
        lines.append(f"Run of {meta['date']}.")
    return lines


def _run_note(meta: dict) -> list[str]:
    return ["", meta["note"]] if meta.get("note") else []


def read_runs(path: Path) -> list[dict]:
    """The runs stored at ``path``: ``{"runs": [{"meta": ..., "rows": [...]}, ...]}``; a file of the older one-run
    layout (``{"meta": ..., "rows": [...]}``) reads as one run, and a missing file as none."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not valid JSON ({error}); move it aside or repair it, nothing was written."
        ) from None
    if isinstance(data, dict) and isinstance(data.get("runs"), list):
        return data["runs"]
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        return [{"meta": data.get("meta", {}), "rows": data["rows"]}]
    raise ValueError(f"{path}: not a results file of bench_topk.py (expected an object with 'runs' or 'rows').")


def save_run(out_dir: Path, stem: str, run: dict, render) -> Path:
    """Put ``run`` into ``<out_dir>/<stem>.json`` beside the runs already there (replacing only the run with its own
    ``run_id``, i.e. its earlier, shorter self) and rewrite ``<stem>.md`` from all of them; both writes atomic, the
    read-merge-write under the harness's lock, so no earlier measurement is ever lost."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    with results_lock(json_path):
        run_id = run["meta"]["run_id"]
        runs = [r for r in read_runs(json_path) if r["meta"].get("run_id") != run_id] + [run]
        atomic_write_json(json_path, {"runs": runs})
        atomic_write_text(md_path, render(runs))
    return md_path


def _run_meta(args) -> dict:
    """What identifies and describes this run: its id, date, command line and optional title and note."""
    now = time.time()
    return {
        "run_id": f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(now))}Z-{os.getpid()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now)),
        "command": "python benchmarks/bench_topk.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "title": args.title,
        "note": args.note,
    }


def main_cpu(args) -> None:
    import faiss
    import torch

    meta = {
        **_run_meta(args),
        "device": "cpu",
        "device_name": _cpu_name(),
        "torch": torch.__version__,
        "faiss": faiss.__version__,
        "numpy": __import__("numpy").__version__,
        "numpy_blas": _numpy_blas(),
        "python": platform.python_version(),
        "reps": args.reps,
    }
    rows = []
    for shape in args.shapes or CPU_SHAPES:
        b, n, d, k = (int(x) for x in shape.split(","))
        for threads in args.threads:
            rows.append(run_cpu_shape(b, n, d, k, threads, args.reps, eager=not args.no_eager))
            md = save_run(args.out_dir, "topk_cpu", {"meta": meta, "rows": rows}, render_cpu)
    print(md.read_text())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    return f"{model} ({os.cpu_count()} logical CPUs)"


def _ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _seconds(x) -> str:
    return "-" if x is None else f"{x:.2f} s"


def _numpy_blas() -> str:
    """numpy's own BLAS (other packages, faiss and scipy, bring their own copies)."""
    import numpy as np  # noqa: F401  (loads its BLAS)
    from threadpoolctl import threadpool_info

    libs = [
        f"{i['internal_api']} {i.get('version') or ''}".strip()
        for i in threadpool_info()
        if i["user_api"] == "blas" and "numpy" in i["filepath"]
    ]
    return ", ".join(libs) or "its BLAS not found"


def _mib(x) -> str:
    return "-" if x is None else f"{x / 2**20:.0f} MiB"


CUDA_LEGEND = (
    "Median of the run's calls after a warm-up; peak = extra memory allocated during one call. `floor` = the chunked"
    " path's fp32 matmuls alone. triton/chunked < 1 means the fused kernel is faster."
)


def _cuda_row(r: dict) -> str:
    return (
        f"| {r['dtype']} | {r['B']} | {r['N']} | {r['D']} | {r['k']} | {r['chunked_s'] * 1e3:.1f} ms | "
        f"{r['triton_s'] * 1e3:.1f} ms | {r['floor_s'] * 1e3:.1f} ms | {r['triton_over_chunked']:.2f} | "
        f"{r['chunked_over_floor']:.2f} | {r['triton_over_floor']:.2f} | "
        f"{_mib(r['chunked_peak_bytes'])} / {_mib(r['triton_peak_bytes'])} | {r['same_indices_rows']:.4f} | "
        f"{r['max_value_diff']:.1e} |"
    )


def render_cuda(runs: list[dict], stem: str = "topk_cuda") -> str:
    """The Markdown report of every fused-vs-chunked run, newest first, one table per run."""
    return _render_runs(
        runs,
        "# similarity_topk: fused Triton vs chunked matmul + torch.topk",
        stem,
        CUDA_LEGEND,
        lambda meta: (
            f"{meta.get('device_name', meta['device'])}; torch {meta['torch']}, triton {meta.get('triton')}; median"
            f" of {meta['reps']} calls."
        ),
        "| dtype | B | N | D | k | chunked | triton | floor | triton/chunked | chunked/floor | triton/floor "
        "| peak chunked / triton | same indices (rows) | max value diff |",
        _cuda_row,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--shapes", nargs="+", default=None, help="B,N,D,k ... (default: per device)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="CPU thread counts (--device cpu)")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    p.add_argument(
        "--no-eager", action="store_true", help="--device cpu: skip the search with the eager selection (ours eager)"
    )
    p.add_argument("--reps", type=int, default=None, help="calls per median (default 5 on cuda, 3 on cpu)")
    p.add_argument(
        "--out-dir",
        type=Path,
        default=ROOT / "benchmarks" / "results",
        help="where topk_<device>.{json,md} are; this run is added beside the runs already there",
    )
    p.add_argument("--title", default=None, help="a heading for this run's section of the report")
    p.add_argument("--note", default=None, help="a paragraph printed under this run's table")
    args = p.parse_args()
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        args.reps = args.reps or 3
        main_cpu(args)
        return
    args.reps = args.reps or 5
    args.shapes = args.shapes or DEFAULT_SHAPES
    import torch

    meta = {
        **_run_meta(args),
        "device": args.device,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "reps": args.reps,
    }
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    if args.device == "cuda":
        meta["device_name"] = torch.cuda.get_device_name()
    else:
        meta["device_name"] = f"CPU ({platform.machine()}, Triton interpreter: timings are not meaningful)"
    # The interpreter's smoke run (CPU, timings meaningless) keeps to a file of its own.
    stem = "topk_cuda" if args.device == "cuda" else "topk_triton_interpreter"
    rows = []
    for dtype_name in args.dtypes:
        for shape in args.shapes:
            b, n, d, k = (int(x) for x in shape.split(","))
            rows.append(run_shape(b, n, d, k, dtype_name, args.device, args.reps))
            md = save_run(args.out_dir, stem, {"meta": meta, "rows": rows}, functools.partial(render_cuda, stem=stem))
    print(md.read_text())


if __name__ == "__main__":
    main()

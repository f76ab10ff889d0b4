"""Forward+backward time and peak memory of the pairwise-loss backends, side by side, in one run.

For each objective and shape (D, B, M): ``reference`` (materialised matrix), ``chunked`` (tiled autograd),
``triton`` (fused kernels, CUDA only) and, for ``supcon``, the peer pytorch-metric-learning
``CrossBatchMemory(SupConLoss)`` on the same inputs (its memory pre-filled with the same M entries, and sized
M + B so that after it enqueues the batch its keys are exactly ours: memory + batch, self-pairs removed).

Inputs: queries ``(B, D)`` with grad, keys ``[queries, memory]`` (the memory detached, as a memory bank is),
``exclude_self=True``, 64 classes drawn uniformly. CPU: fp32; CUDA: bf16 (``--dtype`` to change).

Time: the median of ``--reps`` forward+backward calls after one warm-up (fewer repetitions on long configurations;
the count is in the JSON). Peak memory: on CPU, every configuration runs in a fresh process and reports its max RSS
minus the RSS after the inputs were built; on CUDA, ``torch.cuda.max_memory_allocated`` minus the memory allocated
before the call (inputs excluded). Configurations that would not fit or would take too long are skipped, and the
table says so (estimates from the pair count; see ``--max-seconds`` and ``--max-gib``).

Usage::

    python benchmarks/bench_kernels.py --device cpu           # writes benchmarks/results/kernels_cpu.{json,md}
    python benchmarks/bench_kernels.py --device cuda --out-dir $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sbert_align.files import atomic_write_text  # noqa: E402

OBJECTIVES = {"supcon": {"temperature": 0.1}, "cosine_target": {"t_neg": 0.0}, "margin": {"margin": 0.5}}
N_CLASSES = 64
GIB = 1 << 30


# ------------------------------------------------------------------------------------------------ one configuration
def _inputs(b, m, d, dtype, device, seed=0):
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(b, d, generator=g).to(device=device, dtype=dtype).requires_grad_(True)
    mem = torch.randn(m, d, generator=g).to(device=device, dtype=dtype)
    y = torch.randint(0, N_CLASSES, (b,), generator=g).to(device)
    ym = torch.randint(0, N_CLASSES, (m,), generator=g).to(device)
    return q, mem, y, ym


def _make_step(backend, objective, q, mem, y, ym):
    """A closure running forward+backward once and returning the loss value."""
    import torch

    from sbert_align.kernels import pairwise_loss

    params = OBJECTIVES[objective]
    if backend == "pml":
        from pytorch_metric_learning.losses import CrossBatchMemory, SupConLoss

        b, m, d = q.shape[0], mem.shape[0], q.shape[1]
        wrapper = CrossBatchMemory(SupConLoss(temperature=params["temperature"]), embedding_size=d, memory_size=m + b)
        wrapper = wrapper.to(q.device)
        wrapper.embedding_memory = wrapper.embedding_memory.to(q.dtype)
        wrapper.embedding_memory[:m] = mem
        wrapper.label_memory[:m] = ym

        def step():
            wrapper.queue_idx, wrapper.has_been_filled = m, False
            q.grad = None
            loss = wrapper(q, y)
            loss.backward()
            return float(loss.detach())

        return step

    def step():
        q.grad = None
        keys, labels = ([q, mem], [y, ym]) if mem.shape[0] else ([q], [y])
        loss = pairwise_loss(q, keys, y, labels, objective=objective, backend=backend, exclude_self=True, **params)
        loss.backward()
        return float(loss.detach())

    del torch
    return step


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_config(cfg: dict) -> dict:
    """Time and measure one (objective, backend, shape) in this process."""
    import torch

    device, dtype = cfg["device"], getattr(torch, cfg["dtype"])
    if device == "cpu":
        torch.set_num_threads(cfg.get("threads") or os.cpu_count())
    q, mem, y, ym = _inputs(cfg["B"], cfg["M"], cfg["D"], dtype, device)
    step = _make_step(cfg["backend"], cfg["objective"], q, mem, y, ym)
    out = dict(cfg)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out["loss"] = step()  # warm-up (compiles Triton kernels)
        torch.cuda.synchronize()
        times = []
        start_ev, end_ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        budget = cfg.get("time_budget_s", 20.0)
        t_start = time.perf_counter()
        for _ in range(cfg["reps"]):
            start_ev.record()
            step()
            end_ev.record()
            torch.cuda.synchronize()
            times.append(start_ev.elapsed_time(end_ev) / 1e3)
            if time.perf_counter() - t_start > budget:
                break
        out["peak_bytes"] = torch.cuda.max_memory_allocated() - base
        out["device_name"] = torch.cuda.get_device_name()
    else:
        # Warm up on a tiny problem first (loads the BLAS kernels, thread pools, allocator arenas) so that the baseline
        # holds the process's fixed costs and the difference is the configuration's own working memory.
        small = _inputs(min(cfg["B"], 64), min(cfg["M"], 256), cfg["D"], dtype, device, seed=1)
        _make_step(cfg["backend"], cfg["objective"], *small)()
        del small
        base = _max_rss_bytes()
        times = []
        t0 = time.perf_counter()
        out["loss"] = step()
        first = time.perf_counter() - t0
        if first * cfg["reps"] > cfg.get("time_budget_s", 60.0):
            times = [first]  # long configuration: the single (cold) run is the measurement
        else:
            for _ in range(cfg["reps"]):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
        out["peak_bytes"] = _max_rss_bytes() - base
        out["device_name"] = platform.processor() or platform.machine()
    out["time_s"] = statistics.median(times)
    out["times_s"] = times
    out["status"] = "ok"
    return out


# ------------------------------------------------------------------------------------------------ the sweep
def _estimates(backend, b, m, d, device, dtype_bytes):
    """(bytes, seconds) rough estimates used only to decide what to skip."""
    pairs = b * (b + m)
    flops = 6.0 * pairs * d
    if device == "cpu":
        rate = {"reference": 40e9, "chunked": 40e9, "pml": 30e9}[backend]
    else:
        rate = {"reference": 40e12, "chunked": 5e12, "triton": 300e12, "pml": 10e12}[backend]
    mem = {"reference": 36 * pairs, "pml": 120 * pairs, "chunked": 0, "triton": 0}[backend]
    mem += 3 * (b + m) * d * dtype_bytes
    return mem, flops / rate


def sweep(args) -> list[dict]:
    device = args.device
    dtype = args.dtype or ("float32" if device == "cpu" else "bfloat16")
    dtype_bytes = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}[dtype]
    backends = ["reference", "chunked"] + (["triton"] if device == "cuda" else []) + ["pml"]
    rows = []
    forced = {tuple(map(int, s.split(","))) for s in args.force}
    for objective in args.objectives:
        for d in args.dims:
            for b in args.batches:
                for m in args.memories:
                    for backend in backends:
                        if backend == "pml" and objective != "supcon":
                            continue
                        cfg = {"device": device, "dtype": dtype, "objective": objective, "backend": backend,
                               "B": b, "M": m, "D": d, "reps": args.reps, "threads": args.threads,
                               "time_budget_s": args.time_budget}  # fmt: skip
                        est_mem, est_s = _estimates(backend, b, m, d, device, dtype_bytes)
                        is_forced = (b, m, d) in forced and backend in ("chunked", "triton")
                        if est_mem > args.max_gib * GIB:
                            rows.append({**cfg, "status": f"skipped: needs ~{est_mem / GIB:.0f} GiB (estimate)"})
                        elif est_s > args.max_seconds and not is_forced:
                            rows.append({**cfg, "status": f"skipped: ~{est_s:.0f} s per step (estimate)"})
                        else:
                            rows.append(_run_one(cfg, device))
                        r = rows[-1]
                        if args.partial_json:  # keep what was measured even if the run is cut short
                            atomic_write_text(args.partial_json, json.dumps(rows))
                        msg = (f"{r['time_s'] * 1e3:10.1f} ms {r['peak_bytes'] / 2**20:10.1f} MiB loss={r['loss']:.5f}"
                               if r["status"] == "ok" else r["status"])  # fmt: skip
                        print(f"{objective:14s} D={d:4d} B={b:5d} M={m:8d} {backend:9s} {msg}", flush=True)
    return rows


def _run_one(cfg, device):
    if device == "cuda":
        import torch

        try:
            return run_config(cfg)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return {**cfg, "status": "skipped: out of GPU memory"}
        except Exception as exc:  # report, do not hide
            torch.cuda.empty_cache()
            return {**cfg, "status": f"error: {type(exc).__name__}: {str(exc)[:200]}"}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        killed = proc.returncode in (-9, 137)
        why = "killed (out of memory)" if killed else f"error: {proc.stderr.strip().splitlines()[-1:]}"
        return {**cfg, "status": why}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ top-k (CUDA)
def _median_seconds(fn, reps: int = 5, device: str = "cuda") -> float:
    """Median wall time of ``fn`` over ``reps`` runs after one warm-up run (synchronised on CUDA)."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------ Triton block sweep
SWEEP_CONFIGS = [
    (64, 128, 64, 8, 4),
    (64, 128, 64, 4, 4),
    (128, 128, 64, 8, 3),
    (64, 64, 64, 4, 4),
    (128, 64, 64, 8, 4),
    (64, 256, 64, 8, 3),
]


def sweep_triton(out, b=4096, m=65536, d=768, dtype_name="bfloat16"):
    """Forward-only and forward+backward time of the Triton backend per block configuration (supcon)."""
    import torch

    from sbert_align.kernels._inputs import check_pair_inputs
    from sbert_align.kernels.triton_pairwise import triton_pairwise_loss
    from sbert_align.objectives import get_objective

    q, mem, y, ym = _inputs(b, m, d, getattr(torch, dtype_name), "cuda")
    obj = get_objective("supcon", temperature=0.1)
    rows = []
    for bb, bn, bd, warps, stages in SWEEP_CONFIGS:
        config = {"BLOCK_B": bb, "BLOCK_N": bn, "BLOCK_D": bd, "num_warps": warps, "num_stages": stages}

        def fwd(config=config):
            with torch.no_grad():
                return triton_pairwise_loss(check_pair_inputs(q, [q, mem], y, [y, ym], True), obj, config=config)

        def fwd_bwd(config=config):
            q.grad = None
            triton_pairwise_loss(check_pair_inputs(q, [q, mem], y, [y, ym], True), obj, config=config).backward()

        res = {"config": config}
        try:
            for name, fn in (("fwd", fwd), ("fwd_bwd", fwd_bwd)):
                res[name + "_s"] = _median_seconds(fn)
            flops = 2.0 * b * (b + m) * d
            res["fwd_tflops"] = flops / res["fwd_s"] / 1e12
            res["fwd_bwd_tflops"] = 3 * flops / res["fwd_bwd_s"] / 1e12
            print(f"sweep {config}: fwd {res['fwd_s'] * 1e3:.2f} ms ({res['fwd_tflops']:.0f} TFLOP/s), fwd+bwd "
                  f"{res['fwd_bwd_s'] * 1e3:.2f} ms ({res['fwd_bwd_tflops']:.0f} TFLOP/s)", flush=True)  # fmt: skip
        except Exception as exc:
            res["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
            print(f"sweep {config}: {res['error']}", flush=True)
        rows.append(res)
    out["sweep"] = {"B": b, "M": m, "D": d, "dtype": dtype_name, "rows": rows}


# ------------------------------------------------------------------------------------------------ report
def _fmt_cell(r):
    if r is None:
        return "-"
    if r["status"] != "ok":
        return r["status"]
    return f"{r['time_s'] * 1e3:.1f} ms / {r['peak_bytes'] / 2**20:.0f} MiB"


def _ratio(a, b, key):
    if a is None or b is None or a.get("status") != "ok" or b.get("status") != "ok" or not b[key]:
        return "-"
    return f"{a[key] / b[key]:.2f}"


def write_reports(rows, meta, out_dir: Path, device: str):
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"kernels_{device}.json", json.dumps({"meta": meta, "rows": rows}, indent=1))
    index = {(r["objective"], r["D"], r["B"], r["M"], r["backend"]): r for r in rows}
    shapes = sorted({(r["objective"], r["D"], r["B"], r["M"]) for r in rows}, key=lambda s: (s[0], s[1], s[2], s[3]))
    has_triton = device == "cuda"
    lines = [
        f"# Pairwise-loss kernels, forward+backward, {meta['device_name']} ({meta['dtype']})",
        "",
        f"Generated by `benchmarks/bench_kernels.py --device {device}` on {meta['date']}. Each cell: median time "
        "of forward+backward / peak extra memory (CPU: max RSS minus baseline, fresh process per cell; CUDA: "
        "`max_memory_allocated` minus the inputs). Keys = batch (with grad, self-pairs excluded) + a detached "
        f"memory of M entries; {N_CLASSES} classes. `pml` = pytorch-metric-learning "
        "`CrossBatchMemory(SupConLoss)` on the same inputs (supcon only). Ratios: time and memory relative to "
        "`reference` (and, last column, the peer's time over ours). 'skipped' cells were not run, for the reason "
        "given (estimates from the pair count).",
        "",
    ]
    head = ["objective", "D", "B", "M", "reference", "chunked"] + (["triton"] if has_triton else []) + ["pml"]
    head += ["chunked/ref time", "chunked/ref mem"]
    if has_triton:
        head += ["triton/ref time", "triton/ref mem", "TFLOP/s triton (6BMD)"]
    ours = "triton" if has_triton else "chunked"
    head += [f"pml/{ours} time", "loss ref / ours / pml"]
    merged = any("source" in r for r in rows)
    if merged:
        head.append(f"run ({ours})")
        lines[-1:-1] = [
            "",
            f"Merged from {', '.join(meta.get('sources', []))} (later files win; the last column names the run "
            f"each row's `{ours}` cell comes from).",
        ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for obj, d, b, m in shapes:
        ref, ch, tr, pml = (index.get((obj, d, b, m, be)) for be in ("reference", "chunked", "triton", "pml"))
        cells = [obj, str(d), str(b), str(m), _fmt_cell(ref), _fmt_cell(ch)]
        if has_triton:
            cells.append(_fmt_cell(tr))
        cells.append(_fmt_cell(pml) if obj == "supcon" else "n/a")
        cells += [_ratio(ch, ref, "time_s"), _ratio(ch, ref, "peak_bytes")]
        if has_triton:
            cells += [_ratio(tr, ref, "time_s"), _ratio(tr, ref, "peak_bytes")]
            tf = "-"
            if tr and tr.get("status") == "ok":
                tf = f"{6.0 * b * (b + m) * d / tr['time_s'] / 1e12:.0f}"
            cells.append(tf)
        mine = tr if has_triton else ch
        cells.append(_ratio(pml, mine, "time_s") if obj == "supcon" else "n/a")
        losses = [f"{x['loss']:.4f}" if x and x.get("status") == "ok" else "-" for x in (ref, mine, pml)]
        cells.append(" / ".join(losses if obj == "supcon" else losses[:2]))
        if merged:
            cells.append((mine or {}).get("source", "-"))
        lines.append("| " + " | ".join(cells) + " |")
    if meta.get("topk"):
        lines += [
            "",
            "## similarity_topk (chunked matmul + torch.topk) against its matmul floor (runs before `bench_topk.py` existed)",
            "",
        ]
        lines += [
            "| B | N | D | k | chunked top-k | matmuls alone | top-k overhead |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in meta["topk"]:
            over = t["chunked_topk_s"] / t["matmul_floor_s"]
            lines.append(
                f"| {t['B']} | {t['N']} | {t['D']} | {t['k']} | {t['chunked_topk_s'] * 1e3:.1f} ms | "
                f"{t['matmul_floor_s'] * 1e3:.1f} ms | {over:.2f}x |"
            )
    sweep = meta.get("sweep")
    if sweep or meta.get("sweep_lines"):
        lines += ["", "## Triton block sweep (supcon, B=4096, M=65536, D=768, bf16; fwd / fwd+bwd)", ""]
        if sweep:
            for r in sweep["rows"]:
                if "error" in r:
                    lines.append(f"- {r['config']}: {r['error']}")
                else:
                    lines.append(
                        f"- {r['config']}: fwd {r['fwd_s'] * 1e3:.2f} ms ({r['fwd_tflops']:.0f} TFLOP/s), "
                        f"fwd+bwd {r['fwd_bwd_s'] * 1e3:.2f} ms ({r['fwd_bwd_tflops']:.0f} TFLOP/s)"
                    )
        for line in meta.get("sweep_lines", []):
            lines.append(f"- {line}")
    for line in meta.get("topk_lines", []):
        lines.append(f"- {line}")
    atomic_write_text(out_dir / f"kernels_{device}.md", "\n".join(lines) + "\n")


_ROW = re.compile(
    r"^(?P<objective>\w+)\s+D=\s*(?P<D>\d+) B=\s*(?P<B>\d+) M=\s*(?P<M>\d+) (?P<backend>\w+)\s+"
    r"(?:(?P<ms>[\d.]+) ms\s+(?P<mib>[\d.]+) MiB loss=(?P<loss>[-\d.]+)|(?P<status>.+))$"
)


def merge_reports(args):
    """Combine the printed rows of cut-short runs (``*.log``) and finished reports (``*.json``), later files winning.

    A run that hit the device's time limit leaves only its log; its rows are the numbers it printed (median time,
    peak memory, loss), tagged with ``source``.
    """
    merged, meta = {}, {"device": args.device, "dtype": args.dtype or "bfloat16", "sources": []}
    for name in args.merge:
        path = Path(name)
        meta["sources"].append(path.name)
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            rows = data["rows"] if isinstance(data, dict) else data
            if isinstance(data, dict):
                meta.update({k: v for k, v in data["meta"].items() if k != "sources"})
            for r in rows:
                merged[(r["objective"], r["D"], r["B"], r["M"], r["backend"])] = {**r, "source": path.name}
            continue
        for line in path.read_text().splitlines():
            m = _ROW.match(line.strip())
            if m:
                r = {k: m[k] for k in ("objective", "backend")} | {k: int(m[k]) for k in ("D", "B", "M")}
                if m["ms"]:
                    r |= {"status": "ok", "time_s": float(m["ms"]) / 1e3, "peak_bytes": float(m["mib"]) * 2**20}
                    r["loss"] = float(m["loss"])
                else:
                    r["status"] = m["status"].strip()
                r["source"] = path.name
                merged[(r["objective"], r["D"], r["B"], r["M"], r["backend"])] = r
            elif line.startswith("sweep {"):
                meta.setdefault("sweep_lines", []).append(line)
            elif line.startswith("topk "):
                meta.setdefault("topk_lines", []).append(line)
    meta.setdefault("device_name", "unknown")
    meta.setdefault("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    write_reports(list(merged.values()), meta, args.out_dir, args.device)
    print((args.out_dir / f"kernels_{args.device}.md").read_text())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (CUDA default), float16")
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES))
    p.add_argument("--dims", nargs="+", type=int, default=[384, 768])
    p.add_argument("--batches", nargs="+", type=int, default=[256, 1024, 4096])
    p.add_argument("--memories", nargs="+", type=int, default=[0, 65536, 1048576])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--time-budget", type=float, default=60.0, help="seconds of repetitions per configuration")
    p.add_argument("--max-seconds", type=float, default=60.0, help="skip configurations estimated slower per step")
    p.add_argument("--max-gib", type=float, default=None, help="skip configurations estimated larger (GiB)")
    p.add_argument("--force", nargs="*", default=[], help="B,M,D shapes run for chunked/triton whatever the time")
    p.add_argument("--sweep", action="store_true", help="time Triton block configurations first (CUDA)")
    p.add_argument("--skip-grid", action="store_true", help="only the sweep, not the backend grid")
    p.add_argument("--partial-json", default=None, help="rewrite this file with the rows after every row")
    p.add_argument("--merge", nargs="*", default=None, help="no run: merge logs (*.log) / JSON reports into one")
    p.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run_config(json.loads(args.worker))))
        return
    if args.merge is not None:
        merge_reports(args)
        return
    if args.max_gib is None:
        args.max_gib = 16.0 if args.device == "cpu" else 70.0
    import torch

    meta = {
        "device": args.device,
        "dtype": args.dtype or ("float32" if args.device == "cpu" else "bfloat16"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if args.device == "cuda":
        import triton

        meta["device_name"] = torch.cuda.get_device_name()
        meta["triton"] = triton.__version__
    else:
        meta["device_name"] = f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    try:
        import pytorch_metric_learning

        meta["pytorch_metric_learning"] = pytorch_metric_learning.__version__
    except ImportError:
        meta["pytorch_metric_learning"] = None
    if args.sweep and args.device == "cuda":
        sweep_triton(meta)
    rows = [] if args.skip_grid else sweep(args)
    write_reports(rows, meta, args.out_dir, args.device)
    print((args.out_dir / f"kernels_{args.device}.md").read_text())


if __name__ == "__main__":
    main()

"""Where the fused supcon forward + backward spends its time on a GPU (issue 13, item 3): a torch.profiler table.

Runs ``pairwise_loss(..., objective="supcon", backend="triton")`` forward + backward, the bench_kernels step, at
B x (B + M) x D in bf16, times forward alone and forward + backward (CUDA events, median of 5), and prints the
profiler's per-kernel table for three steps, so the split between the forward kernel, the backward kernels and the
rest is visible. Usage (on the device)::

    python benchmarks/device/profile_supcon.py --b 4096 --m 1048576 --d 768
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import torch
    from bench_kernels import OBJECTIVES, _inputs, _make_step
    from torch.profiler import ProfilerActivity, profile

    from sbert_align.kernels import pairwise_loss

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--b", type=int, default=4096)
    p.add_argument("--m", type=int, default=1 << 20)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--backend", default="triton")
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    q, mem, y, ym = _inputs(a.b, a.m, a.d, dtype, a.device)
    step = _make_step(a.backend, "supcon", q, mem, y, ym)

    def fwd():
        with torch.no_grad():
            return pairwise_loss(q, [q, mem], y, [y, ym], objective="supcon", backend=a.backend, exclude_self=True,
                                 **OBJECTIVES["supcon"])  # fmt: skip

    def timed(fn) -> float:
        out = []
        for _ in range(6):
            if a.device == "cuda":
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                fn()
                e.record()
                torch.cuda.synchronize()
                out.append(s.elapsed_time(e) / 1e3)
            else:
                import time

                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
        return statistics.median(out[1:])

    flops = 2.0 * a.b * (a.b + a.m) * a.d
    tf, tfb = timed(fwd), timed(step)
    print(f"B {a.b} M {a.m} D {a.d} {dtype} {a.backend}: forward {tf * 1e3:.1f} ms ({flops / tf / 1e12:.0f} TFLOP/s "
          f"at 2BND), forward+backward {tfb * 1e3:.1f} ms ({3 * flops / tfb / 1e12:.0f} TFLOP/s at 6BND), backward "
          f"{(tfb - tf) * 1e3:.1f} ms ({2 * flops / max(tfb - tf, 1e-9) / 1e12:.0f} TFLOP/s at 4BND)")  # fmt: skip
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(3):
            step()
        if a.device == "cuda":
            torch.cuda.synchronize()
    key = "device_time_total" if a.device == "cuda" else "cpu_time_total"
    try:
        print(prof.key_averages().table(sort_by=key, row_limit=14, max_name_column_width=60))
    except Exception:  # older profilers name the column cuda_time_total
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=60))


if __name__ == "__main__":
    main()

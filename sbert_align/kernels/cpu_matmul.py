"""The matrix products of the CPU top-k search: torch's BLAS or numpy's, whichever is faster on this machine.

:class:`~sbert_align.kernels.StreamingTopK` spends nearly all of its CPU time in one product per tile of
similarities (queries x keys). torch's PyPI wheels compute it with MKL, numpy's with OpenBLAS (the BLAS faiss uses),
and which is faster depends on the machine and the shape. On the 2-core AMD EPYC of
``benchmarks/results/topk_cpu.md`` the difference was small and went both ways: numpy's product made one run of the
whole search 3-7 % faster, and in the next the measurement kept torch's (its bare products 2 % faster). So the
search measures both once per process and tile shape and keeps numpy's only when clearly faster
(:func:`choose_cpu_matmul`). The two agree to rounding (about 1e-7 in float32), as MKL does with itself at another
thread count.

Which product runs: ``$SBERT_ALIGN_CPU_MATMUL`` (``auto``, the default, ``torch`` or ``numpy``), read at each
search. ``auto`` measures only for searches of at least :data:`AUTO_MIN_TILES` tiles (the measurement costs about
eight tile products, once per process and shape) and otherwise uses torch's. While a search multiplies with numpy, its
BLAS runs on as many threads as the search's workers each have (one when the key tiles are shared among worker
threads, else ``torch.get_num_threads()``), through threadpoolctl; the limit is process-wide while the search runs
and is restored after it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from ._env import env_choice

__all__ = [
    "CPU_MATMULS",
    "CPU_MATMUL_ENV_VAR",
    "AUTO_MIN_TILES",
    "requested_cpu_matmul",
    "choose_cpu_matmul",
    "tile_matmul",
    "numpy_blas_threads",
]

CPU_MATMULS = ("auto", "torch", "numpy")
CPU_MATMUL_ENV_VAR = "SBERT_ALIGN_CPU_MATMUL"
#: ``auto`` measures the two products only for a search (one :meth:`StreamingTopK.add`) of at least this many tiles,
#: so that the measurement (about eight tile products, once per process and tile shape) stays a few percent of the
#: search; smaller searches use torch's product.
AUTO_MIN_TILES = 100
_NUMPY_DTYPES = (torch.float32, torch.float64)

_choices: dict[tuple[int, int, int, torch.dtype, int], str] = {}
_lock = threading.Lock()


def requested_cpu_matmul() -> str:
    """``$SBERT_ALIGN_CPU_MATMUL`` (default ``auto``), checked."""
    return env_choice(CPU_MATMUL_ENV_VAR, CPU_MATMULS)


def tile_matmul(a: Tensor, b_t: Tensor, out: Tensor, backend: str) -> Tensor:
    """``a @ b_t`` written into ``out`` (contiguous, ``(rows, cols)``) by torch's (``"torch"``) or numpy's
    (``"numpy"``) BLAS; all three on the CPU, and for numpy float32 or float64 without autograd history."""
    if backend == "torch":
        return torch.mm(a, b_t, out=out)
    np.matmul(a.numpy(), b_t.numpy(), out=out.numpy())
    return out


def _numpy_usable(dtype: torch.dtype) -> bool:
    if dtype not in _NUMPY_DTYPES:
        return False
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:  # without it numpy's BLAS threads cannot be set per search
        return False
    return True


def _time_matmuls(rows: int, cols: int, dim: int, dtype: torch.dtype, threads: int, reps: int = 3) -> dict[str, float]:
    """The best of ``reps`` timings of each product at this tile shape (after one untimed call each, alternating),
    with ``threads`` threads for both."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(rows, dim, generator=g, dtype=dtype)
    b_t = torch.randn(cols, dim, generator=g, dtype=dtype).T
    out = torch.empty(rows, cols, dtype=dtype)
    best = {"torch": float("inf"), "numpy": float("inf")}
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with numpy_blas_threads(threads):
            for rep in range(reps + 1):
                for backend in best:
                    t0 = time.perf_counter()
                    tile_matmul(a, b_t, out, backend)
                    if rep:
                        best[backend] = min(best[backend], time.perf_counter() - t0)
    finally:
        torch.set_num_threads(caller_threads)
    return best


def choose_cpu_matmul(rows: int, cols: int, dim: int, dtype: torch.dtype, threads: int, *, tiles: int) -> str:
    """The product a CPU search of ``tiles`` tiles of ``rows x cols`` similarities (``dim`` features, ``dtype``, on
    ``threads`` threads per worker) should use: ``$SBERT_ALIGN_CPU_MATMUL`` when set, else (``auto``) numpy's when it
    was at least 3 % faster at this shape in this process (measured once, see :data:`AUTO_MIN_TILES`), else torch's.

    Example:
        ::

            import torch
            from sbert_align.kernels.cpu_matmul import choose_cpu_matmul

            choose_cpu_matmul(2048, 1024, 384, torch.float32, 1, tiles=500)  # "torch" or "numpy"
    """
    requested = requested_cpu_matmul()
    if requested == "numpy" and not _numpy_usable(dtype):
        raise ValueError(f"{CPU_MATMUL_ENV_VAR}=numpy needs float32 or float64 inputs and threadpoolctl, got {dtype}.")
    if requested != "auto":
        return requested
    key = (rows, cols, dim, dtype, threads)
    with _lock:
        if key in _choices:
            return _choices[key]
        if tiles < AUTO_MIN_TILES or not _numpy_usable(dtype):
            return "torch"
        seconds = _time_matmuls(rows, cols, dim, dtype, threads)
        _choices[key] = "numpy" if seconds["numpy"] < 0.97 * seconds["torch"] else "torch"
        return _choices[key]


@contextlib.contextmanager
def numpy_blas_threads(threads: int) -> Iterator[None]:
    """Run numpy's BLAS (and any other BLAS loaded in the process, through threadpoolctl) on ``threads`` threads
    inside the block; the previous limits come back on exit. Process-wide while it lasts."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield

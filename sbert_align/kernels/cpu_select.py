"""The compiled selection of the CPU top-k search: one pass over a tile of similarities into the running top-k.

After each tile's matrix product, :class:`~sbert_align.kernels.StreamingTopK` must find the similarities that beat
their row's current ``k``-th best and insert them. In eager PyTorch that is a dozen small operations per tile (block
maxima, candidate lists, sorts): 3-31 % on top of the bare products in ``benchmarks/results/topk_cpu.md`` (its "ours
eager" column against "floor").
This module does what faiss does instead, compiled with numba (no C compiler needed): per row, a scan that compares
similarities with the row's running threshold and, rarely, inserts one into the row's sorted list of ``k``. Each run
of ``block`` similarities is first counted against the threshold in a vectorised loop, and only a run with a count
above zero is scanned again for insertions; once the first keys are seen, most of a tile is read once, right after
its product. (Session 10 replaced a separate ``torch.amax`` pass over the runs, which read each tile twice: the
fused count was 5 % faster at 10,000 x 100,000 on one thread and 3 % on two, and level at 1,000 x 1,000,000, in
interleaved timings; the count must be branch-free, over a contiguous slice, into an int32 for LLVM to vectorise it:
0.28 ms per 2048 x 1024 tile in a one-tile timing, where the same count over 2-D indexing into an int64 took 1.4 ms.)

Order and ties are those of the eager path: each row's list stays sorted by value (descending), then key index
(ascending); keys arrive in index order, so a similarity enters only when strictly above the current ``k``-th value,
and lands after the equal values already listed. Unfilled places hold ``(-inf, -1)`` and take any key, even one whose
similarity is ``-inf``. A NaN similarity never enters; here it leaves the other keys of its run alone, while the
eager filter loses them too (``torch.amax`` of the run is NaN), so with NaN in the embeddings the two paths may
differ, and the neighbours are undefined either way.

numba is a dependency but optional at run time: :func:`compiled_select_available` is False when it does not import,
and the search keeps its eager selection. The function compiles on first use (a few seconds per dtype, cached on
disk where the package directory is writable) and releases the GIL, so worker threads run it side by side.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from ._env import env_choice

__all__ = [
    "COMPILED_SELECT_MAX_K",
    "COMPILED_SELECT_MIN_PAIRS",
    "CPU_SELECT_ENV_VAR",
    "compiled_select_available",
    "use_compiled_select",
    "merge_tile",
]

#: Largest ``k`` for the compiled selection: an insertion shifts up to ``k`` entries, so very large ``k`` (with
#: ``k * log(N / k)`` insertions per row) is left to the eager path's sorts.
COMPILED_SELECT_MAX_K = 256
#: ``auto`` compiles (once per process) and uses the compiled selection for a search (one ``add``) of at least this
#: many (query, key) pairs, so small searches never wait for the compiler.
COMPILED_SELECT_MIN_PAIRS = 1 << 24
#: ``auto`` (default), ``compiled`` or ``eager``: which selection the CPU search uses.
CPU_SELECT_ENV_VAR = "SBERT_ALIGN_CPU_SELECT"


@functools.cache
def _kernel():
    import numba
    import numpy as np

    @numba.njit(nogil=True, cache=True, error_model="numpy")
    def merge_tile_kernel(sim, best_v, best_i, row0, col0, block):  # pragma: no cover - compiled
        rows, cols = sim.shape
        k = best_v.shape[1]
        for r in range(rows):
            bv = best_v[row0 + r]
            bi = best_i[row0 + r]
            thr = bv[k - 1]
            open_place = bi[k - 1] < 0
            row = sim[r]
            for c0 in range(0, cols, block):
                c1 = min(c0 + block, cols)
                if not open_place:
                    # The filter: how many of the run beat the threshold, branch-free over a contiguous slice into
                    # an int32, which LLVM vectorises (the same count over 2-D indexing into an int64 was 5x slower).
                    run = row[c0:c1]
                    above = np.int32(0)
                    for c in range(c1 - c0):
                        above += np.int32(run[c] > thr)
                    if above == 0:
                        continue
                for c in range(c0, c1):
                    v = row[c]
                    if v > thr or (open_place and v == v):
                        j = k - 1
                        while j > 0 and (bi[j - 1] < 0 or bv[j - 1] < v):
                            bv[j] = bv[j - 1]
                            bi[j] = bi[j - 1]
                            j -= 1
                        bv[j] = v
                        bi[j] = col0 + c
                        thr = bv[k - 1]
                        open_place = bi[k - 1] < 0

    return merge_tile_kernel


@functools.cache
def compiled_select_available() -> bool:
    """True when numba imports (the compiled selection can run)."""
    try:
        import numba  # noqa: F401
    except Exception:  # ImportError, or numba refusing this numpy version
        return False
    return True


def use_compiled_select(k: int, dtype: torch.dtype, pairs: int) -> bool:
    """Whether a CPU search of ``pairs`` (query, key) pairs in ``dtype`` for ``k`` neighbours uses the compiled
    selection: ``$SBERT_ALIGN_CPU_SELECT`` = ``compiled`` / ``eager`` decides; ``auto`` (default) uses it when numba
    imports, ``k <= COMPILED_SELECT_MAX_K``, the dtype is float32 / float64 and ``pairs >=
    COMPILED_SELECT_MIN_PAIRS``."""
    requested = env_choice(CPU_SELECT_ENV_VAR, ("auto", "compiled", "eager"))
    if requested == "eager" or (requested == "auto" and pairs < COMPILED_SELECT_MIN_PAIRS):
        return False  # (small searches do not even import numba)
    usable = compiled_select_available() and k <= COMPILED_SELECT_MAX_K and dtype in (torch.float32, torch.float64)
    if requested == "compiled":
        if not usable:
            raise ValueError(
                f"{CPU_SELECT_ENV_VAR}=compiled needs numba, k <= {COMPILED_SELECT_MAX_K} and float32 / float64 "
                f"inputs (got k={k}, {dtype}, numba {'found' if compiled_select_available() else 'not found'})."
            )
        return True
    return usable


def merge_tile(sim: Tensor, best_v: Tensor, best_i: Tensor, row0: int, col0: int, block: int) -> None:
    """Merge tile ``sim`` (``(rows, cols)``, contiguous, float32 or float64, on the CPU) into rows ``row0 ...`` of the
    running top-k ``best_v`` / ``best_i`` (``(B, k)``, contiguous, sorted; same dtype as ``sim`` / int64), in place;
    the tile's column ``c`` is key ``col0 + c``. A run of ``block`` similarities is read again only when some of it
    beats the row's threshold (:class:`~sbert_align.kernels.StreamingTopK` passes its ``FILTER_BLOCK``).

    Example:
        ::

            import torch
            from sbert_align.kernels.cpu_select import merge_tile

            best_v, best_i = torch.full((2, 3), float("-inf")), torch.full((2, 3), -1)
            merge_tile(torch.rand(2, 500), best_v, best_i, 0, 0, block=128)  # the top-3 of each row, in place
    """
    _kernel()(sim.numpy(), best_v.numpy(), best_i.numpy(), row0, col0, block)

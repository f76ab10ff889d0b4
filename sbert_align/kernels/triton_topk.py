"""Fused Triton top-k cosine similarity: the nearest-neighbour search without writing the similarities out.

The chunked path (:mod:`.topk`) computes a (B x chunk) similarity block with one matmul, writes it to memory, and
then reads it again in ``torch.topk``. This kernel keeps each (BLOCK_B x BLOCK_N) tile in registers: the tile's
similarities come from the same GEMM loop as the loss kernels (:func:`~.triton_pairwise._sim_tile`), and each row
merges the tile into a running top-k held in registers. Only ``k`` candidates per row and per program reach
memory; a small sort on the host merges the programs' candidates.

Per tile, a row's running top-k (``K_PAD`` slots, unsorted) is updated by repeated extraction: take the tile's
maximum (the smallest column among equal maxima), and if it beats the row's current worst entry, it replaces it.
The loop stops as soon as no row of the block has anything better than its worst entry, so after the first few
tiles most tiles cost one row-maximum on top of the GEMM. Ties go to the smaller key index, exactly as in
:func:`~.topk.chunked_similarity_topk`: keys are visited in increasing index order within a program, an entry must
be strictly greater than the current worst to enter, and among equal worst entries the one with the largest index
leaves first.

Limits: ``k <= MAX_K`` (the extraction loop is O(k) per tile; larger ``k`` goes through the chunked path) and no
NaN in the inputs. Offsets and indices are int32 inside a launch, so queries and keys are launched in row ranges
of at most 2**31 elements (``max_rows_per_launch``).

Status: correct against the float64 truth and the chunked path (under ``TRITON_INTERPRET=1`` in CI, natively on an
H100). Timed there (``benchmarks/results/topk_cuda.md``): 0.09x-0.20x of chunked's time with bf16 inputs (tensor
cores), 0.86x-2.36x with fp32 inputs; so ``similarity_topk(backend="auto")`` chooses it for float16 / bfloat16
inputs on CUDA only, and ``backend="triton"`` asks for it at any dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._inputs import compute_dtype
from ._normalize import inverse_row_norms
from .topk import FUSED_TOPK_MAX_K, sort_by_value_then_index
from .triton_pairwise import (
    _common_input_dtype,
    _config,
    _dot_settings,
    _sim_tile,
    _target_programs,
    max_rows_per_launch,
)

__all__ = ["triton_similarity_topk", "MAX_K"]

#: Largest ``k`` the fused kernel takes (its per-row state is ``next_power_of_2(k)`` registers).
MAX_K = FUSED_TOPK_MAX_K
_INT32_MAX = 2**31 - 1
_IDX_NONE = tl.constexpr(_INT32_MAX)


@triton.jit
def _worst_entry(best_v, best_i, slots, K_PAD: tl.constexpr):
    """Value, index and slot of each row's worst running entry: the smallest value, the largest index among ties."""
    wv = tl.min(best_v, axis=1)
    is_min = best_v == wv[:, None]
    wi = tl.max(tl.where(is_min, best_i, -1), axis=1)
    ws = tl.min(tl.where(is_min & (best_i == wi[:, None]), slots[None, :], K_PAD), axis=1)
    return wv, ws


@triton.jit
def _topk_kernel(
    q_ptr,
    k_ptr,
    rq_ptr,
    rk_ptr,
    val_ptr,
    idx_ptr,
    B,
    N,
    D,
    stride_q,
    stride_k,
    tiles_per_split,
    K: tl.constexpr,
    K_PAD: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    n_splits = tl.num_programs(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    in_b = offs_b < B
    rq = tl.load(rq_ptr + offs_b, mask=in_b, other=0.0)
    slots = tl.arange(0, K_PAD)
    # Slots >= K hold +inf so that they are never the worst entry (and are never written out).
    best_v = tl.where(
        slots[None, :] < K,
        tl.full((BLOCK_B, K_PAD), float("-inf"), ACC_DTYPE),
        tl.full((BLOCK_B, K_PAD), float("inf"), ACC_DTYPE),
    )
    best_i = tl.full((BLOCK_B, K_PAD), _IDX_NONE, tl.int32)
    wv, ws = _worst_entry(best_v, best_i, slots, K_PAD)

    t_start = pid_s * tiles_per_split
    t_end = tl.minimum(t_start + tiles_per_split, tl.cdiv(N, BLOCK_N))
    for t in range(t_start, t_end):
        offs_n = t * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.load(rk_ptr + offs_n, mask=offs_n < N, other=0.0)
        s = _sim_tile(
            q_ptr, k_ptr, rq, rk, offs_b, offs_n, B, N, D, stride_q, stride_k,
            BLOCK_B, BLOCK_N, BLOCK_D, ACC_DTYPE, PRECISION, DOT_UPCAST,
        )  # fmt: skip
        s = tl.where(offs_n[None, :] < N, s, float("-inf"))
        m = tl.max(s, axis=1)
        better = m > wv
        go = tl.max(better.to(tl.int32), axis=0) > 0
        while go:
            col = tl.min(tl.where(s == m[:, None], offs_n[None, :], _IDX_NONE), axis=1)
            put = (slots[None, :] == ws[:, None]) & better[:, None]
            best_v = tl.where(put, m[:, None], best_v)
            best_i = tl.where(put, col[:, None], best_i)
            s = tl.where(offs_n[None, :] == col[:, None], float("-inf"), s)
            wv, ws = _worst_entry(best_v, best_i, slots, K_PAD)
            m = tl.max(s, axis=1)
            better = m > wv
            go = tl.max(better.to(tl.int32), axis=0) > 0

    out = (offs_b[:, None] * n_splits + pid_s) * K + slots[None, :]
    keep = in_b[:, None] & (slots[None, :] < K)
    tl.store(val_ptr + out, best_v, mask=keep)
    tl.store(idx_ptr + out, best_i, mask=keep)


def triton_similarity_topk(
    queries: Tensor,
    keys: Tensor,
    k: int,
    *,
    normalize: bool = True,
    chunk_size: int | None = None,
    config: dict | None = None,
    splits: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` similarities of each query among ``keys`` with the fused kernel; same contract as
    :func:`~.topk.chunked_similarity_topk` (values in float32, or float64 for float64 inputs; ties to the smaller
    index).

    Args:
        queries: ``(B, D)`` on a CUDA device (or CPU under ``TRITON_INTERPRET=1``).
        keys: ``(N, D)``; may live elsewhere (e.g. a memory bank on the CPU): it is moved in chunks.
        k: ``1 <= k <= min(N, MAX_K)``.
        normalize: Cosine similarity (True) or plain dot product (False).
        chunk_size: Keys per launch (None: all at once when the keys are on the queries' device, else 2**20).
        config: Block sizes overriding the defaults (``BLOCK_B``, ``BLOCK_N``, ``BLOCK_D``, ``num_warps``, ...).
        splits: Programs along the keys per block of queries (None: enough to fill the device).
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"the Triton top-k takes 1 <= k <= {MAX_K}, got k={k}; use backend='chunked'.")
    n_q, dim = queries.shape
    if n_q > max_rows_per_launch(dim):
        # int32 offsets address at most 2**31 query elements per launch: search in blocks of queries.
        step = max_rows_per_launch(dim)
        parts = [
            triton_similarity_topk(
                queries[s : s + step], keys, k,
                normalize=normalize, chunk_size=chunk_size, config=config, splits=splits,
            )
            for s in range(0, n_q, step)
        ]  # fmt: skip
        return torch.cat([v for v, _ in parts]), torch.cat([i for _, i in parts])
    acc = compute_dtype(queries, keys)
    in_dtype = _common_input_dtype(queries, (keys,))
    cfg = dict(_config(in_dtype, queries.device))
    cfg.update(config or {})
    q = queries.to(in_dtype).contiguous()
    rq = inverse_row_norms(q, acc) if normalize else torch.ones(n_q, dtype=acc, device=q.device)
    same_device = keys.device == q.device
    chunk = int(chunk_size) if chunk_size else (keys.shape[0] if same_device else 1 << 20)
    chunk = min(chunk, max_rows_per_launch(dim))  # int32 offsets within a launch (and int32 indices)
    k_pad = triton.next_power_of_2(k)
    dot = _dot_settings(in_dtype, acc)
    grid_b = triton.cdiv(n_q, cfg["BLOCK_B"])
    target_programs = _target_programs(q.device)
    cand_v, cand_i = [], []
    for start in range(0, keys.shape[0], chunk):
        kc = keys[start : start + chunk].to(device=q.device, dtype=in_dtype).contiguous()
        n_k = kc.shape[0]
        rk = inverse_row_norms(kc, acc) if normalize else torch.ones(n_k, dtype=acc, device=q.device)
        n_tiles = triton.cdiv(n_k, cfg["BLOCK_N"])
        n_splits = min(n_tiles, int(splits) if splits else max(1, triton.cdiv(target_programs, grid_b)))
        tiles_per_split = triton.cdiv(n_tiles, n_splits)
        n_splits = triton.cdiv(n_tiles, tiles_per_split)
        vals = torch.empty(n_q, n_splits, k, dtype=acc, device=q.device)
        idx = torch.empty(n_q, n_splits, k, dtype=torch.int32, device=q.device)
        _topk_kernel[(grid_b, n_splits)](
            q, kc, rq, rk, vals, idx, n_q, n_k, dim, q.stride(0), kc.stride(0), tiles_per_split,
            K=k, K_PAD=k_pad, **dot, **cfg,
        )  # fmt: skip
        cand_v.append(vals.reshape(n_q, -1))
        # A program that saw fewer than k keys leaves (-inf, INT32_MAX) entries; they sort last and are never kept
        # while k <= N.
        cand_i.append(idx.reshape(n_q, -1).long() + start)
    values, indices = sort_by_value_then_index(torch.cat(cand_v, 1), torch.cat(cand_i, 1))
    return values[:, :k].contiguous(), indices[:, :k].contiguous()

"""Fused Triton backend for the pairwise objectives (CUDA; also runs under ``TRITON_INTERPRET=1`` on a CPU).

Forward (one kernel, :func:`_pair_fwd_kernel`): for a block of queries and a range of key tiles it computes the
raw dot products (``tl.dot`` over chunks of the embedding dimension, fp32 accumulation for fp16/bf16 inputs),
scales them by the precomputed inverse norms (cosine similarity; the inverse norms follow the one rule of every
backend, :func:`~._normalize.inverse_row_norms`: 0 for a row with a norm below ``NORMALIZE_EPS``, so such a row has
cosine 0 with everything and zero gradient), builds the label masks and the self-exclusion
mask from plain contiguous loads, and reduces each tile into the per-query statistics of the objective and an online
log-sum-exp. The (B x M) matrix never exists. The key range is split across programs too (``splits``), so that a
small batch still fills the GPU; the partial statistics are added and the partial log-sum-exps merged in torch.

Backward: ``d loss / d stats`` and ``d loss / d lse`` come from autograd through the objective's own
:meth:`~sbert_align.objectives.PairObjective.finalize` (as in the chunked backend). Then, per chunk of keys, one
kernel (:func:`_pair_bwd_dsim_kernel`) recomputes the similarities and writes the gradient of the chunk's
similarities ``dsim`` (the per-pair derivative, masks and the softmax term fused in one pass, scaled by a power of
two so fp16 cannot underflow), and two tensor-core matmuls accumulate ``dQn += dsim @ Kn`` and, only for key parts
that require grad (the batch), ``dKn = dsim.T @ Qn``. The memory part never gets a dK matmul, and its kernel
writes ``dsim * rk`` (its inverse key norms folded in) so that ``dQn += dsim' @ K`` reads the raw keys: no
normalised copy of the memory is made (fp16 excepted, where the fold could underflow). Peak extra memory: one
``(B x chunk)`` block in the input dtype.

Formula duplication (kept minimal): the per-pair terms and their derivatives of the three objectives are restated in
Triton language in :func:`_pair_terms` / :func:`_pair_dsim` (selected by the constexpr ``OBJ``); the reductions to a
scalar (``finalize``) and the gradient of that reduction are the objective's own code, in torch.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..objectives import CosineTargetObjective, MarginObjective, PairObjective, SupConObjective
from ._inputs import PairInputs, compute_dtype
from ._normalize import inverse_row_norms, normalize_backward, normalize_rows

__all__ = ["triton_pairwise_loss", "INTERPRET"]

#: True when this module was imported with ``TRITON_INTERPRET=1`` (kernels run on CPU tensors, slowly).
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

OBJ_COSINE, OBJ_MARGIN, OBJ_SUPCON = 0, 1, 2
#: Elements of one (B x chunk) dsim block in the backward pass.
BWD_CHUNK_ELEMENTS = 1 << 26
#: At most this many keys per backward chunk. Keys of a part with grad (the batch), and fp16 keys, are normalised
#: in the accumulation dtype for the dQ product (chunk x D fp32): at B = 256 and 2**26 / B = 262,144 keys that was
#: 0.8 GB at D = 768 and made the peak 2.0 GB on an H100; 65,536 keys bound it to 0.2 GB. A memory of bf16 / fp32
#: keys is no longer copied at all (its inverse norms are folded into dsim). B >= 1024 is unaffected.
BWD_CHUNK_MAX_KEYS = 1 << 16
_NEG_INF = tl.constexpr(float("-inf"))
#: Largest element offset a kernel computes in int32 (``row * stride + column``).
INT32_ADDRESSABLE = 2**31 - 1


def max_rows_per_launch(stride: int) -> int:
    """Rows of a row-major matrix with this row stride that one launch can address with int32 offsets."""
    return max(1, INT32_ADDRESSABLE // max(1, stride))


@triton.jit
def _sim_tile(
    q_ptr,
    k_ptr,
    rq,
    rk,
    offs_b,
    offs_n,
    B,
    N,
    D,
    stride_q,
    stride_k,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
):
    """Cosine similarities of a (BLOCK_B x BLOCK_N) tile: raw dot products times the two inverse norms."""
    acc = tl.zeros((BLOCK_B, BLOCK_N), dtype=ACC_DTYPE)
    in_b = offs_b < B
    in_n = offs_n < N
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        in_d = offs_d < D
        q = tl.load(
            q_ptr + offs_b[:, None] * stride_q + offs_d[None, :], mask=in_b[:, None] & in_d[None, :], other=0.0
        )
        k = tl.load(
            k_ptr + offs_n[:, None] * stride_k + offs_d[None, :], mask=in_n[:, None] & in_d[None, :], other=0.0
        )
        if DOT_UPCAST:  # the interpreter's bf16 tl.dot is wrong (Triton 3.9); bf16 products are exact in fp32
            q = q.to(tl.float32)
            k = k.to(tl.float32)
        acc = tl.dot(q, tl.trans(k), acc, input_precision=PRECISION, out_dtype=ACC_DTYPE)
    return acc * rq[:, None] * rk[None, :]


@triton.jit
def _masks(offs_b, offs_n, B, N, ql, kl, key_offset, EXCLUDE_SELF: tl.constexpr):
    """(positive & valid, negative & valid, valid) for a tile; valid = in bounds and not the query itself."""
    valid = (offs_b[:, None] < B) & (offs_n[None, :] < N)
    if EXCLUDE_SELF:
        valid = valid & (offs_b[:, None] != (offs_n[None, :] + key_offset))
    same = ql[:, None] == kl[None, :]
    return same & valid, (ql[:, None] != kl[None, :]) & valid, valid


@triton.jit
def _pair_fwd_kernel(
    q_ptr,
    k_ptr,
    rq_ptr,
    rk_ptr,
    ql_ptr,
    kl_ptr,
    stats_ptr,
    lse_ptr,
    B,
    N,
    D,
    stride_q,
    stride_k,
    key_offset,
    tiles_per_split,
    params_ptr,
    OBJ: tl.constexpr,
    EXCLUDE_SELF: tl.constexpr,
    FIXED_MAX: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    in_b = offs_b < B
    rq = tl.load(rq_ptr + offs_b, mask=in_b, other=0.0)
    ql = tl.load(ql_ptr + offs_b, mask=in_b, other=-1)
    p_target = tl.load(params_ptr + 0)
    p_scale = tl.load(params_ptr + 1)
    # Per-pair terms are accumulated element-wise in (BLOCK_B x BLOCK_N) registers and reduced over keys once at
    # the end: no cross-thread reduction per tile. With FIXED_MAX the log-sum-exp uses the bound scale * s <= scale
    # (cosine similarities are <= 1) instead of a running maximum, which is exact while exp(-2 * scale) stays a
    # normal float (scale <= 40, i.e. temperature >= 0.025); otherwise the running maximum is kept per tile.
    a0 = tl.zeros((BLOCK_B, BLOCK_N), dtype=ACC_DTYPE)
    a1 = tl.zeros((BLOCK_B, BLOCK_N), dtype=ACC_DTYPE)
    a2 = tl.zeros((BLOCK_B, BLOCK_N), dtype=ACC_DTYPE)
    a3 = tl.zeros((BLOCK_B, BLOCK_N), dtype=ACC_DTYPE)
    m_i = tl.full((BLOCK_B,), _NEG_INF, dtype=ACC_DTYPE)
    l_i = tl.zeros((BLOCK_B,), dtype=ACC_DTYPE)
    n_start = pid_s * tiles_per_split * BLOCK_N
    for t in range(0, tiles_per_split):
        offs_n = n_start + t * BLOCK_N + tl.arange(0, BLOCK_N)
        in_n = offs_n < N
        rk = tl.load(rk_ptr + offs_n, mask=in_n, other=0.0)
        kl = tl.load(kl_ptr + offs_n, mask=in_n, other=-1)
        s = _sim_tile(
            q_ptr, k_ptr, rq, rk, offs_b, offs_n, B, N, D, stride_q, stride_k,
            BLOCK_B, BLOCK_N, BLOCK_D, ACC_DTYPE, PRECISION, DOT_UPCAST,
        )  # fmt: skip
        posv, negv, valid = _masks(offs_b, offs_n, B, N, ql, kl, key_offset, EXCLUDE_SELF)
        # --- per-pair terms (the Triton restatement of objectives.pair_stats) ---
        if OBJ == 2:  # supcon: [n_pos, sum of positive sims] + logsumexp(scale * s)
            a0 += tl.where(posv, 1.0, 0.0)
            a1 += tl.where(posv, s, 0.0)
            if FIXED_MAX:
                a2 += tl.where(valid, tl.exp(s * p_scale - p_scale), 0.0)
            else:
                x = tl.where(valid, s * p_scale, _NEG_INF)
                m_new = tl.maximum(m_i, tl.max(x, axis=1))
                m_safe = tl.where(m_new == _NEG_INF, 0.0, m_new)
                l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(x - m_safe[:, None]), axis=1)
                m_i = m_new
        else:  # cosine_target / margin: [sum pos (1-s)^2, n_pos, sum neg term, n_neg]
            a0 += tl.where(posv, (1.0 - s) * (1.0 - s), 0.0)
            a1 += tl.where(posv, 1.0, 0.0)
            if OBJ == 0:
                nt = (s - p_target) * (s - p_target)
            else:
                h = tl.maximum(s - p_target, 0.0)
                nt = h * h
            a2 += tl.where(negv, nt, 0.0)
            a3 += tl.where(negv, 1.0, 0.0)
    out = stats_ptr + (pid_s * B + offs_b) * 4
    tl.store(out + 0, tl.sum(a0, axis=1), mask=in_b)
    tl.store(out + 1, tl.sum(a1, axis=1), mask=in_b)
    if OBJ != 2:
        tl.store(out + 2, tl.sum(a2, axis=1), mask=in_b)
        tl.store(out + 3, tl.sum(a3, axis=1), mask=in_b)
    else:
        tl.store(out + 2, tl.zeros((BLOCK_B,), dtype=ACC_DTYPE), mask=in_b)
        tl.store(out + 3, tl.zeros((BLOCK_B,), dtype=ACC_DTYPE), mask=in_b)
        if FIXED_MAX:
            l_i = tl.sum(a2, axis=1)
            m_i = tl.zeros((BLOCK_B,), dtype=ACC_DTYPE) + p_scale
    if OBJ == 2:
        lse = tl.where(l_i > 0, m_i + tl.log(l_i), _NEG_INF)
        tl.store(lse_ptr + pid_s * B + offs_b, lse, mask=in_b)


@triton.jit
def _pair_bwd_dsim_kernel(
    q_ptr,
    k_ptr,
    rq_ptr,
    rk_ptr,
    ql_ptr,
    kl_ptr,
    gstats_ptr,
    glse_ptr,
    lse_ptr,
    gscale_ptr,
    out_ptr,
    B,
    N,
    D,
    stride_q,
    stride_k,
    stride_out,
    key_offset,
    params_ptr,
    OBJ: tl.constexpr,
    EXCLUDE_SELF: tl.constexpr,
    SCALE_KEYS: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    ACC_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_UPCAST: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    in_b = offs_b < B
    in_n = offs_n < N
    rq = tl.load(rq_ptr + offs_b, mask=in_b, other=0.0)
    ql = tl.load(ql_ptr + offs_b, mask=in_b, other=-1)
    rk = tl.load(rk_ptr + offs_n, mask=in_n, other=0.0)
    kl = tl.load(kl_ptr + offs_n, mask=in_n, other=-1)
    gscale = tl.load(gscale_ptr)
    p_target = tl.load(params_ptr + 0)
    p_scale = tl.load(params_ptr + 1)
    s = _sim_tile(
        q_ptr, k_ptr, rq, rk, offs_b, offs_n, B, N, D, stride_q, stride_k,
        BLOCK_B, BLOCK_N, BLOCK_D, ACC_DTYPE, PRECISION, DOT_UPCAST,
    )  # fmt: skip
    posv, negv, valid = _masks(offs_b, offs_n, B, N, ql, kl, key_offset, EXCLUDE_SELF)
    # --- per-pair derivatives (the Triton restatement of objectives.pair_grad + the softmax term) ---
    if OBJ == 2:
        g1 = tl.load(gstats_ptr + offs_b * 4 + 1, mask=in_b, other=0.0)
        g_lse = tl.load(glse_ptr + offs_b, mask=in_b, other=0.0)
        lse = tl.load(lse_ptr + offs_b, mask=in_b, other=0.0)
        soft = tl.exp(s * p_scale - lse[:, None])
        d = tl.where(posv, g1[:, None], 0.0) + tl.where(valid, (g_lse * p_scale)[:, None] * soft, 0.0)
    else:
        g0 = tl.load(gstats_ptr + offs_b * 4 + 0, mask=in_b, other=0.0)
        g2 = tl.load(gstats_ptr + offs_b * 4 + 2, mask=in_b, other=0.0)
        if OBJ == 0:
            dn = 2.0 * (s - p_target)
        else:
            dn = 2.0 * tl.maximum(s - p_target, 0.0)
        d = tl.where(posv, g0[:, None] * (2.0 * (s - 1.0)), tl.where(negv, g2[:, None] * dn, 0.0))
    if SCALE_KEYS:
        # dsim_ij * rk_j: then dsim @ K_raw is dsim @ Kn, and no normalised copy of the keys is made.
        d = d * rk[None, :]
    d = d * gscale
    out = out_ptr + offs_b[:, None] * stride_out + offs_n[None, :]
    tl.store(out, d.to(out_ptr.dtype.element_ty), mask=in_b[:, None] & in_n[None, :])


def _objective_id(objective: PairObjective) -> tuple[int, float, float]:
    """Constexpr id and parameters (target / margin, logit scale) of a built-in objective."""
    if isinstance(objective, SupConObjective):
        return OBJ_SUPCON, 0.0, float(objective.lse_scale)
    if isinstance(objective, MarginObjective):
        return OBJ_MARGIN, objective.margin, 0.0
    if isinstance(objective, CosineTargetObjective):
        return OBJ_COSINE, objective.t_neg, 0.0
    raise ValueError(
        f"The triton backend knows the built-in objectives only (cosine_target, margin, supcon), got "
        f"{type(objective).__name__}; use backend='chunked' for a custom objective."
    )


def _config(dtype: torch.dtype, device: torch.device) -> dict:
    """Block sizes per dtype: bigger tiles on a GPU, small ones under the interpreter (numpy is slow per program)."""
    if device.type != "cuda":
        return {"BLOCK_B": 16, "BLOCK_N": 16, "BLOCK_D": 16, "num_warps": 4, "num_stages": 1}
    if dtype == torch.float64:
        return {"BLOCK_B": 32, "BLOCK_N": 32, "BLOCK_D": 16, "num_warps": 4, "num_stages": 2}
    if dtype == torch.float32:
        return {"BLOCK_B": 64, "BLOCK_N": 64, "BLOCK_D": 32, "num_warps": 4, "num_stages": 3}
    return {"BLOCK_B": 64, "BLOCK_N": 128, "BLOCK_D": 64, "num_warps": 8, "num_stages": 4}


def _dot_settings(in_dtype: torch.dtype, acc: torch.dtype) -> dict:
    """The constexpr arguments of :func:`_sim_tile`'s dot product for these input / accumulation dtypes (shared by
    the loss and the top-k kernels): IEEE fp32 for fp32/fp64 inputs, the bf16 upcast under the interpreter."""
    return {
        "ACC_DTYPE": tl.float64 if acc == torch.float64 else tl.float32,
        "PRECISION": "ieee" if in_dtype in (torch.float32, torch.float64) else "tf32",
        "DOT_UPCAST": bool(INTERPRET and in_dtype == torch.bfloat16),
    }


def _target_programs(device: torch.device) -> int:
    """How many programs a launch should offer: four per SM on CUDA (two under the interpreter)."""
    return 4 * _num_sms(device) if device.type == "cuda" else 2


def _common_input_dtype(queries: Tensor, parts: tuple[Tensor, ...]) -> torch.dtype:
    dtypes = {queries.dtype, *(p.dtype for p in parts)}
    if len(dtypes) == 1:
        return queries.dtype
    return compute_dtype(queries, *parts)


class _TritonPairLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: PairInputs, objective: PairObjective, opts: dict, queries: Tensor, *parts: Tensor):
        obj_id, p_target, p_scale = _objective_id(objective)
        acc = compute_dtype(queries, *parts)
        in_dtype = _common_input_dtype(queries, parts)
        cfg = dict(_config(in_dtype, queries.device))
        if opts.get("block_n"):
            cfg["BLOCK_N"] = opts["block_n"]
        cfg.update(opts.get("config") or {})
        q = queries.to(in_dtype).contiguous()
        n_q, dim = q.shape
        # Inverse norms reduced in acc straight from the rows: no copy of a large memory in the accumulation dtype.
        rq = inverse_row_norms(q, acc)
        ql = inputs.query_labels.contiguous()
        dot = _dot_settings(in_dtype, acc)
        # Parameters travel as a tensor in the accumulation dtype (a Python float argument would be rounded to fp32).
        params = torch.tensor([p_target, p_scale], dtype=acc, device=q.device)
        fixed_max = bool(obj_id == OBJ_SUPCON and p_scale <= 40.0 and not opts.get("online_max"))
        grid_b = triton.cdiv(n_q, cfg["BLOCK_B"])
        target_programs = _target_programs(q.device)
        all_stats, all_lse, part_meta = [], [], []
        offset = 0
        for idx, (part, labels) in enumerate(zip(parts, inputs.key_label_parts)):
            n_k = part.shape[0]
            k = part.to(in_dtype).contiguous()
            rk = inverse_row_norms(k, acc)
            part_meta.append((k, rk, labels.contiguous(), offset))
            # Kernels address a key tile as row * stride + column in int32: launch on row ranges that fit.
            rows = max_rows_per_launch(k.stride(0))
            for s0 in range(0, n_k, rows):
                n_s = min(rows, n_k - s0)
                n_tiles = triton.cdiv(n_s, cfg["BLOCK_N"])
                splits = max(1, min(n_tiles, triton.cdiv(target_programs, grid_b)))
                if opts.get("splits"):
                    splits = min(n_tiles, int(opts["splits"]))
                tiles_per_split = triton.cdiv(n_tiles, splits)
                splits = triton.cdiv(n_tiles, tiles_per_split)
                stats = torch.empty(splits, n_q, 4, dtype=acc, device=q.device)
                lse = torch.empty(splits, n_q, dtype=acc, device=q.device)
                _pair_fwd_kernel[(grid_b, splits)](
                    q, k[s0:], rq, rk[s0:], ql, part_meta[-1][2][s0:], stats, lse,
                    n_q, n_s, dim, q.stride(0), k.stride(0), offset + s0, tiles_per_split, params,
                    OBJ=obj_id, EXCLUDE_SELF=bool(inputs.exclude_self and idx == 0 and offset + s0 < n_q),
                    FIXED_MAX=fixed_max,
                    **dot, **cfg,
                )  # fmt: skip
                all_stats.append(stats.sum(0))
                if obj_id == OBJ_SUPCON:
                    all_lse.append(lse)
            offset += n_k
        stats = torch.stack(all_stats).sum(0) if all_stats else torch.zeros(n_q, 4, dtype=acc, device=q.device)
        stats = stats[:, : objective.n_stats].contiguous()
        lse = None
        if objective.lse_scale is not None:
            if all_lse:
                lse = torch.logsumexp(torch.cat(all_lse, 0), dim=0)
            else:
                lse = torch.full((n_q,), float("-inf"), dtype=acc, device=q.device)
        ctx.inputs, ctx.objective, ctx.cfg, ctx.opts = inputs, objective, cfg, opts
        ctx.meta = (obj_id, p_target, p_scale, dot, in_dtype, params)
        ctx.part_meta = part_meta
        # The key parts are saved too, though the backward reads them through part_meta: unpacking them makes
        # autograd check that none was changed in place in between (a memory bank written before the backward
        # would otherwise silently give the gradient of other keys).
        ctx.save_for_backward(queries, q, rq, stats, lse if lse is not None else stats.new_empty(0), *parts)
        ctx.has_lse = lse is not None
        return objective.finalize(stats, lse)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        queries, q, rq, stats, lse, *_ = ctx.saved_tensors
        lse = lse if ctx.has_lse else None
        objective: PairObjective = ctx.objective
        inputs: PairInputs = ctx.inputs
        obj_id, p_target, p_scale, dot, in_dtype, params = ctx.meta
        cfg = ctx.cfg
        acc = stats.dtype
        need_q = ctx.needs_input_grad[3]
        need_k = list(ctx.needs_input_grad[4:])
        n_q, dim = q.shape

        g_small, g_lse = objective.finalize_grads(stats, lse, grad_out)
        g_stats = torch.zeros(n_q, 4, dtype=acc, device=q.device)
        g_stats[:, : objective.n_stats] = g_small
        if lse is not None:
            lse_safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse)).contiguous()
            g_lse = g_lse.contiguous()
            bound = 4.0 * g_stats.abs().amax() + float(p_scale) * g_lse.abs().amax()
        else:
            g_lse = lse_safe = torch.zeros(1, dtype=acc, device=q.device)
            bound = 4.0 * g_stats.abs().amax()
        # A power of two that brings |dsim| to <= 1: exact in every float format, and fp16 cannot underflow.
        gscale = torch.exp2(-torch.ceil(torch.log2(bound.clamp_min(1e-30)))).to(torch.float32).reshape(1)

        qn = normalize_rows(q.to(acc)).to(in_dtype)
        d_qn = torch.zeros(n_q, dim, dtype=acc, device=q.device)
        d_parts = []
        chunk = ctx.opts.get("chunk_size") or max(
            cfg["BLOCK_N"], min(BWD_CHUNK_MAX_KEYS, BWD_CHUNK_ELEMENTS // max(1, n_q))
        )
        for idx, (k, rk, labels, offset) in enumerate(ctx.part_meta):
            n_k = k.shape[0]
            d_part = torch.zeros_like(inputs.key_parts[idx]) if need_k[idx] else None
            if n_k > 0 and (need_q or need_k[idx]):
                exclude = bool(inputs.exclude_self and idx == 0 and offset < n_q)
                # A part without grad (the memory) folds its inverse norms into dsim, so dQn += dsim' @ K reads
                # the keys as they are. fp16 keeps the normalised copy: with rk folded in, the small dsim of keys
                # with large norms could fall below fp16's range (bf16 has fp32's exponent range).
                scale_keys = bool(need_q and not need_k[idx] and in_dtype != torch.float16)
                for c0 in range(0, n_k, chunk):
                    c1 = min(n_k, c0 + chunk)
                    g = torch.empty(n_q, c1 - c0, dtype=in_dtype, device=q.device)
                    grid = (triton.cdiv(n_q, cfg["BLOCK_B"]), triton.cdiv(c1 - c0, cfg["BLOCK_N"]))
                    _pair_bwd_dsim_kernel[grid](
                        q, k[c0:c1], rq, rk[c0:c1], inputs.query_labels, labels[c0:c1],
                        g_stats, g_lse, lse_safe, gscale, g,
                        n_q, c1 - c0, dim, q.stride(0), k.stride(0), g.stride(0), offset + c0, params,
                        OBJ=obj_id, EXCLUDE_SELF=exclude, SCALE_KEYS=scale_keys, **dot, **cfg,
                    )  # fmt: skip
                    if need_q:
                        kn = k[c0:c1] if scale_keys else normalize_rows(k[c0:c1].to(acc)).to(in_dtype)
                        d_qn += _mm_acc(g, kn, acc)
                    if need_k[idx]:
                        d_kn = _mm_acc(g.T, qn, acc) / gscale.to(acc)
                        d_part[c0:c1] = normalize_backward(inputs.key_parts[idx][c0:c1], d_kn, acc)
            d_parts.append(d_part)
        # dsim was scaled by gscale, a power of two: undone once here, exactly.
        d_q = normalize_backward(queries, d_qn / gscale.to(acc), acc) if need_q else None
        return (None, None, None, d_q, *d_parts)


def _mm_acc(a: Tensor, b: Tensor, acc: torch.dtype) -> Tensor:
    """``a @ b`` in ``acc``: half-precision operands with an fp32 output on CUDA (one rounding fewer), else cast."""
    if a.is_cuda and a.dtype in (torch.float16, torch.bfloat16) and acc == torch.float32:
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (RuntimeError, TypeError):
            pass
    return (a @ b).to(acc)


_SM_COUNT: dict[int, int] = {}


def _num_sms(device: torch.device) -> int:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def triton_pairwise_loss(
    inputs: PairInputs,
    objective: PairObjective,
    tile_size: int | None = None,
    *,
    chunk_size: int | None = None,
    splits: int | None = None,
    config: dict | None = None,
) -> Tensor:
    """The loss of a built-in objective over all (query, key) pairs, with fused Triton kernels.

    Args:
        inputs: Validated :class:`~sbert_align.kernels._inputs.PairInputs` (CUDA tensors, or CPU tensors when
            ``TRITON_INTERPRET=1`` was set before this module was imported).
        objective: ``cosine_target``, ``margin`` or ``supcon`` (custom objectives: use the chunked backend).
        tile_size: Keys per kernel tile (``BLOCK_N``, a power of two >= 16); None: per-dtype default.
        chunk_size: Keys per backward dsim block (None: about 2^26 / B, at most ``BWD_CHUNK_MAX_KEYS``).
        splits: Programs along the keys in the forward pass (None: enough to fill the GPU).
        config: Override of the kernel meta-parameters (BLOCK_B, BLOCK_N, BLOCK_D, num_warps, num_stages).

    Returns:
        A scalar loss (float32, or float64 for float64 inputs).
    """
    if inputs.queries.device.type != "cuda" and not INTERPRET:
        raise ValueError(
            "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before sbert_align.kernels.triton_pairwise "
            f"is imported); got tensors on {inputs.queries.device}."
        )
    block_n = None
    if tile_size is not None:
        if tile_size < 16:
            raise ValueError(f"tile_size must be >= 16 for the triton backend, got {tile_size}.")
        block_n = 1 << (int(tile_size).bit_length() - 1)
    opts = {"block_n": block_n, "chunk_size": chunk_size, "splits": splits, "config": config}
    with torch.autocast(device_type=inputs.queries.device.type, enabled=False):
        return _TritonPairLoss.apply(inputs, objective, opts, inputs.queries, *inputs.key_parts)

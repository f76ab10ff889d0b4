"""Tiled PyTorch backend: the loss over (queries x keys) without ever holding the whole similarity matrix.

A ``torch.autograd.Function`` walks the keys in tiles of ``tile_size``. The forward pass keeps only the additive
per-query statistics of the objective (:meth:`PairObjective.pair_stats`, summed over tiles) and, for softmax
objectives, an online log-sum-exp (tiles merged with ``logaddexp``, the FlashAttention trick). The backward pass
gets ``d loss / d stats`` and ``d loss / d lse`` by autograd through :meth:`PairObjective.finalize` on those small
tensors, then recomputes each tile (or, for problems of at most ``KEEP_TILES_MAX_PAIRS`` pairs, reuses the
forward's tiles) to rebuild its gradient
``dsim = pair_grad(...) + g_lse * lse_scale * softmax`` and accumulates ``dQn += dsim @ Kn`` and, only for key parts
that require grad, ``dKn = dsim.T @ Qn``. A detached key part (the memory bank) costs no key-gradient work, and a
key part that *is* the queries tensor adds its ``dKn`` into ``dQn`` (one normalisation backward for both; when one
tile holds the whole batch, ``Kn == Qn`` and both sides are the single matmul ``(dsim + dsim.T) @ Qn``).

No formula is restated here: the per-pair terms come from the objective. Normalisation happens per tile in the
compute dtype (float32, or float64 for float64 inputs; fp16/bf16 inputs accumulate in float32) by
:func:`~._normalize.normalize_rows`, the rule of every backend (a row with a norm below ``NORMALIZE_EPS`` is a zero
vector: cosine 0 with every key, zero gradient); its gradient is written out in
:func:`~._normalize.normalize_backward`.

Peak memory: O((B + tile) * D + B * tile), never O(B * M) (below ``KEEP_TILES_MAX_PAIRS`` pairs, the kept tiles
add at most that many pairs' worth). Works on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..objectives import PairObjective, masked_logsumexp
from ._inputs import PairInputs, compute_dtype
from ._normalize import normalize_backward, normalize_rows

__all__ = ["chunked_pairwise_loss", "default_tile_size"]

#: Elements of one (B x tile) block that the default tile size aims at (4 MiB in float32): large enough for an
#: efficient matmul, small enough that the handful of tile-sized temporaries stays far below the (B x M) matrix.
TILE_ELEMENTS = 1 << 20
#: Up to this many (query, key) pairs in all, the forward pass keeps its tiles (normalised keys, similarities,
#: masks: ~5-6 bytes a pair, 16-24 MiB at the limit, plus the normalised keys) for the backward instead of
#: recomputing them: one matmul and the normalisations fewer. It is the size up to which ``auto`` materialises the
#: whole matrix anyway (``REFERENCE_MAX_PAIRS``), where memory is not the concern. Above it, the backward
#: recomputes every tile and memory stays O((B + tile) * D + B * tile).
KEEP_TILES_MAX_PAIRS = 1 << 22


def default_tile_size(num_queries: int) -> int:
    """Keys per tile: about ``TILE_ELEMENTS / B``, at least 128, at most 16384, a power of two."""
    target = max(128, min(16384, TILE_ELEMENTS // max(1, num_queries)))
    return 1 << (target.bit_length() - 1)


def _tile_masks(
    q_labels: Tensor, k_labels: Tensor, exclude_self: bool, key_start: int
) -> tuple[Tensor, Tensor | None]:
    """``pos`` and ``valid`` for keys ``key_start ..`` (global index); ``valid`` is None when every pair is valid."""
    pos = q_labels[:, None] == k_labels[None, :]
    n_q, n_k = q_labels.shape[0], k_labels.shape[0]
    if not exclude_self or key_start >= n_q:
        return pos, None
    q_idx = torch.arange(n_q, device=q_labels.device)
    k_idx = torch.arange(key_start, key_start + n_k, device=q_labels.device)
    return pos, q_idx[:, None] != k_idx[None, :]


def _iter_tiles(inputs: PairInputs, tile: int):
    """Yield ``(part_index, start_in_part, global_start, raw_key_tile, label_tile)`` over all key parts."""
    offset = 0
    for p, (part, labels) in enumerate(zip(inputs.key_parts, inputs.key_label_parts)):
        for s in range(0, part.shape[0], tile):
            yield p, s, offset + s, part[s : s + tile], labels[s : s + tile]
        offset += part.shape[0]


class _ChunkedPairLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: PairInputs, objective: PairObjective, tile: int, queries: Tensor, *parts: Tensor):
        dtype = compute_dtype(queries, *parts)
        qn = normalize_rows(queries.to(dtype))
        n_q = qn.shape[0]
        stats = torch.zeros(n_q, objective.n_stats, dtype=dtype, device=qn.device)
        lse = None
        if objective.lse_scale is not None:
            lse = torch.full((n_q,), float("-inf"), dtype=dtype, device=qn.device)
        keep = n_q * inputs.num_keys <= KEEP_TILES_MAX_PAIRS
        kept: list[tuple[Tensor, Tensor, Tensor, Tensor | None]] = []
        for _, _, gstart, k_raw, k_lab in _iter_tiles(inputs, tile):
            kn = normalize_rows(k_raw.to(dtype))
            sim = qn @ kn.T
            pos, valid = _tile_masks(inputs.query_labels, k_lab, inputs.exclude_self, gstart)
            valid_t = torch.ones_like(pos) if valid is None else valid
            stats += objective.pair_stats(sim, pos, valid_t)
            if lse is not None:
                lse = torch.logaddexp(lse, masked_logsumexp(sim * objective.lse_scale, valid_t))
            if keep:
                kept.append((kn, sim, pos, valid))
        ctx.inputs, ctx.objective, ctx.tile = inputs, objective, tile
        ctx.part_is_queries = [part is inputs.queries for part in inputs.key_parts]
        ctx.kept = (qn, kept) if keep else None
        ctx.save_for_backward(queries, stats, lse if lse is not None else stats.new_empty(0), *parts)
        ctx.has_lse = lse is not None
        return objective.finalize(stats, lse)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        queries, stats, lse, *parts = ctx.saved_tensors
        inputs: PairInputs = ctx.inputs
        objective: PairObjective = ctx.objective
        lse = lse if ctx.has_lse else None
        dtype = stats.dtype
        need_q = ctx.needs_input_grad[3]
        need_k = list(ctx.needs_input_grad[4:])

        # d loss / d stats and d loss / d lse, by autograd through finalize on the small per-query tensors.
        g_stats, g_lse = objective.finalize_grads(stats, lse, grad_out)
        if lse is not None:
            # Rows with no valid key have lse = -inf; nothing flows there (guards exp(+inf) * 0).
            lse_safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))

        qn = normalize_rows(queries.to(dtype)) if ctx.kept is None else ctx.kept[0]
        d_qn = torch.zeros_like(qn)
        # A key part that *is* the queries tensor (the usual batch-as-keys case) sends its key gradient into d_qn:
        # same rows, same normalisation, so one normalisation backward serves both sides.
        fold = [need_q and same for same in ctx.part_is_queries]
        d_parts: list[Tensor | None] = [
            torch.zeros_like(p) if need and not folded else None for p, need, folded in zip(parts, need_k, fold)
        ]
        for t, (p, start, gstart, k_raw, k_lab) in enumerate(_iter_tiles(inputs, ctx.tile)):
            if ctx.kept is not None:
                kn, sim, pos, valid = ctx.kept[1][t]
            else:
                kn = normalize_rows(k_raw.to(dtype))
                sim = qn @ kn.T
                pos, valid = _tile_masks(inputs.query_labels, k_lab, inputs.exclude_self, gstart)
            valid_t = torch.ones_like(pos) if valid is None else valid
            dsim = objective.pair_grad(sim, pos, valid_t, g_stats)
            if g_lse is not None:
                scale = objective.lse_scale
                soft = torch.exp(sim * scale - lse_safe[:, None])
                if valid is not None:
                    soft = torch.where(valid, soft, torch.zeros_like(soft))
                dsim = dsim + (g_lse * scale)[:, None] * soft
            if need_k[p] and fold[p] and start == 0 and k_raw.shape[0] == qn.shape[0]:
                # The tile is the whole batch as keys, so kn == qn row for row: both sides in one matmul.
                d_qn.addmm_(dsim + dsim.T, qn)
                continue
            if need_q:
                d_qn.addmm_(dsim, kn)
            if need_k[p] and fold[p]:
                d_qn[start : start + k_raw.shape[0]].addmm_(dsim.T, qn)
            elif need_k[p]:
                d_kn = dsim.T @ qn
                d_parts[p][start : start + k_raw.shape[0]] += normalize_backward(k_raw, d_kn, dtype)
        d_q = normalize_backward(queries, d_qn, dtype) if need_q else None
        ctx.kept = None
        return (None, None, None, d_q, *d_parts)


def chunked_pairwise_loss(inputs: PairInputs, objective: PairObjective, tile_size: int | None = None) -> Tensor:
    """The loss of ``objective`` over all (query, key) pairs, walking the keys in tiles of ``tile_size``.

    Args:
        inputs: Validated :class:`~sbert_align.kernels._inputs.PairInputs`.
        objective: The :class:`~sbert_align.objectives.PairObjective` (its formula is reused, never restated).
        tile_size: Keys per tile (None: :func:`default_tile_size` for the number of queries).

    Returns:
        A scalar (float32, or float64 for float64 inputs), differentiable w.r.t. the queries and every key part
        that requires grad.
    """
    tile = int(tile_size) if tile_size is not None else default_tile_size(inputs.queries.shape[0])
    if tile < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}.")
    with torch.autocast(device_type=inputs.queries.device.type, enabled=False):
        return _ChunkedPairLoss.apply(inputs, objective, tile, inputs.queries, *inputs.key_parts)

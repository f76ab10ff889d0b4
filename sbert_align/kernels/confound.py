"""The confound penalty: push apart texts that share a confound (source, publisher, template) but not the class.

A *confound* is a second label per text that training data correlates with the class but that must not decide it
(e.g. a source tag that agrees with the class 90 % of the time in training, and not at all in use). An encoder that
clusters by it has learned a shortcut. The *flipped-label task* is the set of pairs where the confound says "same"
and the class says "different"; this module computes a penalty on exactly those pairs, so that sharing the confound
stops implying similarity.

Definition (``s_ij = cos(q_i, k_j)``, one normalisation rule with the other kernels: a row with a norm below
``NORMALIZE_EPS`` is a zero vector with ``s = 0`` and zero gradient)::

    S = {(i, j) : c_i == c_j and y_i != y_j}                    (shortcut pairs: same confound, other class)
    L_conf = sum_{(i, j) in S} max(0, s_ij)^2 / max(1, |S|)

over every query ``i`` of the batch and every key ``j`` (the batch itself, other processes' batches, the memory).
``y`` are the class ids, ``c`` the confound ids. A pair of an item with itself has ``y_i == y_j``, so it is never in
``S`` and needs no exclusion; keys whose confound is unknown (:data:`CONFOUND_NONE`, e.g. memory rows written without
one) never match a query's confound (queries' confounds are >= 0). With no shortcut pair the penalty is exactly 0 and
still attached to the graph (zero gradient), never NaN.

Why this form:

* it is the negative half of the ``margin`` / ``cosine_target`` objectives (hinge at 0, squared) restricted to the
  shortcut pairs, so it adds weight exactly where the confound and the class disagree, whatever the class objective;
* the hinge at 0 asks for orthogonality, not opposition: ``s <= 0`` is enough for a shortcut pair to stop looking
  alike, and pushing to -1 would encode the confound again (as anti-similarity);
* its per-pair gradient ``2 max(0, s)`` is bounded (<= 2) and vanishes once a pair is orthogonal, so the weight has
  the same meaning at every batch and memory size (a mean over pairs, not a sum);
* its statistics (sum of terms, number of pairs) are additive over tiles of keys, so it is computed tile by tile
  like every other objective, without the (B x M) matrix.

Backends: ``reference`` (the materialised matrix, plain autograd: the ground truth) and ``chunked`` (a tiled
``torch.autograd.Function``: keys in tiles, per-query statistics, the backward recomputes each tile; peak memory
O((B + tile) * D + B * tile)). There is no fused Triton kernel for this term: ``backend="triton"`` runs the chunked
path (the class objective beside it still runs fused).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..objectives import PairObjective
from ._inputs import check_labels, check_pair_inputs, compute_dtype
from ._normalize import normalize_backward, normalize_rows

__all__ = [
    "CONFOUND_NONE",
    "ConfoundPenalty",
    "ConfoundInputs",
    "check_confounds",
    "confound_pair_mask",
    "confound_penalty",
    "reference_confound_penalty",
    "chunked_confound_penalty",
    "resolve_confound_backend",
]

#: Confound id of a row whose confound is unknown (a memory row written without one): it matches no query.
CONFOUND_NONE = -1


class ConfoundPenalty(PairObjective):
    """``max(0, s)^2`` averaged over the shortcut pairs (same confound, other class); see the module docstring.

    It speaks the :class:`~sbert_align.objectives.PairObjective` interface, with one difference of meaning: its ``pos``
    mask is the *shortcut* mask (:func:`confound_pair_mask`), not "same class". So the statistics, the tiled
    backward (:meth:`pair_grad`, :meth:`finalize_grads`) and the cross-process reduction
    (:func:`sbert_align.distributed.across_processes`) work as for the class objectives.

    Statistics: ``[sum of max(0, s)^2 over the query's shortcut pairs, number of shortcut pairs]``.
    """

    name = "confound_hinge"
    n_stats = 2

    def pair_stats(self, sim: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
        m = (pos & valid).to(sim.dtype)
        return torch.stack([(torch.clamp(sim, min=0.0) ** 2 * m).sum(1), m.sum(1)], dim=1)

    def pair_grad(self, sim: Tensor, pos: Tensor, valid: Tensor, grad_stats: Tensor) -> Tensor:
        g = grad_stats[:, 0:1] * 2.0 * torch.clamp(sim, min=0.0)
        return torch.where(pos & valid, g, torch.zeros_like(sim))

    def finalize(self, stats: Tensor, lse: Tensor | None = None) -> Tensor:
        total = stats.sum(0)
        return total[0] / total[1].clamp(min=1)

    def get_config_dict(self) -> dict[str, Any]:
        return {"confound_penalty": self.name}


def confound_pair_mask(
    query_labels: Tensor, query_confounds: Tensor, key_labels: Tensor, key_confounds: Tensor
) -> Tensor:
    """``(B, M)`` boolean mask of the shortcut pairs: ``c_i == c_j`` and ``y_i != y_j`` (and ``c_j`` known)."""
    same = query_confounds[:, None] == key_confounds[None, :]
    known = key_confounds[None, :] != CONFOUND_NONE
    return same & known & (query_labels[:, None] != key_labels[None, :])


def check_confounds(confounds: Tensor, n: int, name: str, allow_unknown: bool = False) -> Tensor:
    """Confound ids as a 1-D int64 tensor of length ``n``, all ``>= 0`` (or :data:`CONFOUND_NONE` where
    ``allow_unknown``), or a ``ValueError`` naming ``name``."""
    confounds = check_labels(confounds, n, name)
    low = CONFOUND_NONE if allow_unknown else 0
    if confounds.numel() and int(confounds.min()) < low:
        raise ValueError(
            f"{name} must be integer confound ids >= 0, got {int(confounds.min())}"
            + (f" ({CONFOUND_NONE} marks an unknown confound, which only memory rows may have)." if low == 0 else ".")
        )
    return confounds


@dataclass
class ConfoundInputs:
    """Validated inputs of the penalty: queries ``(B, D)`` and key parts ``[(M_p, D)]`` with class and confound ids."""

    queries: Tensor
    query_labels: Tensor
    query_confounds: Tensor
    key_parts: list[Tensor]
    key_label_parts: list[Tensor]
    key_confound_parts: list[Tensor]

    @property
    def num_keys(self) -> int:
        return sum(k.shape[0] for k in self.key_parts)


def _check_inputs(
    queries: Tensor,
    keys: Tensor | Sequence[Tensor],
    query_labels: Tensor,
    key_labels: Tensor | Sequence[Tensor],
    query_confounds: Tensor,
    key_confounds: Tensor | Sequence[Tensor],
) -> ConfoundInputs:
    base = check_pair_inputs(queries, keys, query_labels, key_labels, exclude_self=False)
    conf_parts = [key_confounds] if isinstance(key_confounds, Tensor) else list(key_confounds)
    if len(conf_parts) != len(base.key_parts):
        raise ValueError(f"keys has {len(base.key_parts)} parts but key_confounds has {len(conf_parts)}.")
    q_conf = check_confounds(query_confounds, queries.shape[0], "query_confounds").to(queries.device)
    k_conf = [
        check_confounds(c, k.shape[0], f"key_confounds[{i}]", allow_unknown=True).to(queries.device)
        for i, (k, c) in enumerate(zip(base.key_parts, conf_parts))
    ]
    return ConfoundInputs(base.queries, base.query_labels, q_conf, base.key_parts, base.key_label_parts, k_conf)


def reference_confound_penalty(inputs: ConfoundInputs, penalty: ConfoundPenalty) -> Tensor:
    """The penalty on the materialised (B x M) similarity matrix, differentiated by autograd (the ground truth)."""
    dtype = compute_dtype(inputs.queries, *inputs.key_parts)
    with torch.autocast(device_type=inputs.queries.device.type, enabled=False):
        q = normalize_rows(inputs.queries.to(dtype))
        k = torch.cat([normalize_rows(part.to(dtype)) for part in inputs.key_parts], dim=0)
        mask = confound_pair_mask(
            inputs.query_labels,
            inputs.query_confounds,
            torch.cat(inputs.key_label_parts),
            torch.cat(inputs.key_confound_parts),
        )
        return penalty.loss(q @ k.T, mask, mask)


def _iter_tiles(inputs: ConfoundInputs, tile: int):
    """Yield ``(part_index, start_in_part, raw_key_tile, shortcut_mask)`` over all key parts."""
    for p, (part, labels, confs) in enumerate(
        zip(inputs.key_parts, inputs.key_label_parts, inputs.key_confound_parts)
    ):
        for s in range(0, part.shape[0], tile):
            mask = confound_pair_mask(
                inputs.query_labels, inputs.query_confounds, labels[s : s + tile], confs[s : s + tile]
            )
            yield p, s, part[s : s + tile], mask


class _ChunkedConfound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs: ConfoundInputs, penalty: ConfoundPenalty, tile: int, queries: Tensor, *parts: Tensor):
        dtype = compute_dtype(queries, *parts)
        qn = normalize_rows(queries.to(dtype))
        stats = torch.zeros(qn.shape[0], penalty.n_stats, dtype=dtype, device=qn.device)
        for _, _, k_raw, mask in _iter_tiles(inputs, tile):
            if mask.any():
                stats += penalty.pair_stats(qn @ normalize_rows(k_raw.to(dtype)).T, mask, mask)
        ctx.inputs, ctx.penalty, ctx.tile = inputs, penalty, tile
        ctx.part_is_queries = [part is inputs.queries for part in inputs.key_parts]
        ctx.save_for_backward(queries, stats, *parts)
        return penalty.finalize(stats, None)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        queries, stats, *parts = ctx.saved_tensors
        inputs: ConfoundInputs = ctx.inputs
        penalty: ConfoundPenalty = ctx.penalty
        dtype = stats.dtype
        need_q = ctx.needs_input_grad[3]
        need_k = list(ctx.needs_input_grad[4:])
        g_stats, _ = penalty.finalize_grads(stats, None, grad_out)
        qn = normalize_rows(queries.to(dtype))
        d_qn = torch.zeros_like(qn)
        # a key part that *is* the queries tensor sends its key gradient into d_qn (one normalisation backward)
        fold = [need_q and same for same in ctx.part_is_queries]
        d_parts: list[Tensor | None] = [
            torch.zeros_like(p) if need and not folded else None for p, need, folded in zip(parts, need_k, fold)
        ]
        for p, start, k_raw, mask in _iter_tiles(inputs, ctx.tile):
            if not (need_q or need_k[p]) or not mask.any():
                continue
            kn = normalize_rows(k_raw.to(dtype))
            dsim = penalty.pair_grad(qn @ kn.T, mask, mask, g_stats)
            if need_q:
                d_qn.addmm_(dsim, kn)
            if need_k[p] and fold[p]:
                d_qn[start : start + k_raw.shape[0]].addmm_(dsim.T, qn)
            elif need_k[p]:
                d_parts[p][start : start + k_raw.shape[0]] += normalize_backward(k_raw, dsim.T @ qn, dtype)
        d_q = normalize_backward(queries, d_qn, dtype) if need_q else None
        return (None, None, None, d_q, *d_parts)


def chunked_confound_penalty(inputs: ConfoundInputs, penalty: ConfoundPenalty, tile_size: int | None = None) -> Tensor:
    """The penalty walking the keys in tiles of ``tile_size`` (None: the chunked backend's default for B queries);
    a tile without any shortcut pair costs no matmul."""
    from .chunked import default_tile_size

    tile = int(tile_size) if tile_size is not None else default_tile_size(inputs.queries.shape[0])
    if tile < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}.")
    with torch.autocast(device_type=inputs.queries.device.type, enabled=False):
        return _ChunkedConfound.apply(inputs, penalty, tile, inputs.queries, *inputs.key_parts)


def resolve_confound_backend(backend: str | None, device_type: str, num_pairs: int) -> str:
    """``reference`` or ``chunked``: the argument, else ``$SBERT_ALIGN_KERNEL``, else by size as
    :func:`sbert_align.kernels.resolve_backend` decides; ``triton`` (no fused kernel for this term) means chunked."""
    from . import _requested, reference_fits

    chosen, _ = _requested(backend)
    if chosen == "triton":
        return "chunked"
    if chosen != "auto":
        return chosen
    return "reference" if reference_fits(num_pairs, device_type) else "chunked"


def confound_penalty(
    queries: Tensor,
    keys: Tensor | Sequence[Tensor],
    query_labels: Tensor,
    key_labels: Tensor | Sequence[Tensor],
    query_confounds: Tensor,
    key_confounds: Tensor | Sequence[Tensor],
    *,
    backend: str | None = "auto",
    tile_size: int | None = None,
    penalty: ConfoundPenalty | None = None,
) -> Tensor:
    """Mean of ``max(0, s_ij)^2`` over the pairs that share the confound but not the class (module docstring).

    Args:
        queries: ``(B, D)`` embeddings.
        keys: ``(M, D)`` embeddings, or a sequence of parts (e.g. ``[batch, memory]``), each keeping its own
            ``requires_grad`` (a detached memory costs no key-gradient work).
        query_labels: ``(B,)`` integer class ids.
        key_labels: ``(M,)`` class ids, or a sequence matching the parts of ``keys``.
        query_confounds: ``(B,)`` integer confound ids, ``>= 0``.
        key_confounds: ``(M,)`` confound ids (``>= 0``, or :data:`CONFOUND_NONE` for unknown), or a sequence
            matching the parts of ``keys``.
        backend: ``"auto"``, ``"reference"``, ``"chunked"`` or ``"triton"`` (runs the chunked path: there is no
            fused kernel for this term); ``$SBERT_ALIGN_KERNEL`` overrides ``"auto"``.
        tile_size: Keys per tile of the chunked path (None: its default).
        penalty: The :class:`ConfoundPenalty` (e.g. one whose reduction runs across processes); None: a fresh one.

    Returns:
        A scalar (float32, or float64 for float64 inputs); exactly 0 (attached, zero gradient) without shortcut pairs.

    Example:
        ::

            import torch
            from sbert_align.kernels.confound import confound_penalty

            q = torch.randn(8, 16, requires_grad=True)
            memory = torch.randn(100, 16)
            y, y_mem = torch.randint(0, 3, (8,)), torch.randint(0, 3, (100,))
            c, c_mem = torch.randint(0, 3, (8,)), torch.randint(0, 3, (100,))
            loss = confound_penalty(q, [q, memory], y, [y, y_mem], c, [c, c_mem])
            loss.backward()
    """
    inputs = _check_inputs(queries, keys, query_labels, key_labels, query_confounds, key_confounds)
    penalty = penalty if penalty is not None else ConfoundPenalty()
    chosen = resolve_confound_backend(backend, queries.device.type, queries.shape[0] * inputs.num_keys)
    if chosen == "reference":
        return reference_confound_penalty(inputs, penalty)
    return chunked_confound_penalty(inputs, penalty, tile_size=tile_size)

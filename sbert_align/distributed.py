"""Cross-process helpers for DDP training: gather embeddings, labels and loss statistics from every rank (uneven
batches allowed), with or without gradient, and reduce an objective over every process's anchors.

Everything here is a no-op in a single process.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "is_distributed",
    "gather_keys",
    "gather_detached",
    "gather_with_grad",
    "rank_offset",
    "across_processes",
    "gather_sizes",
]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_sizes(n: int, device: torch.device) -> list[int]:
    """Every rank's ``n`` (e.g. its batch size), in rank order; ``[n]`` in a single process."""
    if not is_distributed():
        return [n]
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _pad_rows(x: Tensor, rows: int) -> Tensor:
    if x.shape[0] == rows:
        return x
    pad = x.new_zeros((rows - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad], dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """``all_gather`` of equal-shaped tensors whose backward hands each rank the sum over ranks of the gradient of
    its own part (what ``torch.distributed.nn.all_gather`` does, without its deprecation warning)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rank = dist.get_rank()
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        if dist.get_backend() == dist.Backend.NCCL:
            out = torch.empty_like(grad[0])
            dist.reduce_scatter_tensor(out, grad.flatten(0, 1))
            return out
        grad = grad.clone()
        dist.all_reduce(grad)  # gloo has no reduce-scatter
        return grad[ctx.rank]


def gather_with_grad(x: Tensor, sizes: list[int] | None = None) -> list[Tensor]:
    """Every rank's ``x`` (rows may differ across ranks; ``sizes`` when already known), in rank order; gradients
    flow back to their rank."""
    if not is_distributed():
        return [x]
    sizes = sizes or gather_sizes(x.shape[0], x.device)
    stacked = _AllGatherWithGrad.apply(_pad_rows(x, max(sizes)))
    return [part[:n] for part, n in zip(stacked.unbind(0), sizes)]


def _gather_rows(x: Tensor, sizes: list[int]) -> list[Tensor]:
    """Every rank's ``x`` without gradient, in rank order (rows per rank in ``sizes``)."""
    parts = [x.new_zeros((max(sizes), *x.shape[1:])) for _ in sizes]
    dist.all_gather(parts, _pad_rows(x, max(sizes)).contiguous())
    return [p[:n] for p, n in zip(parts, sizes)]


def rank_offset(sizes: list[int]) -> int:
    """Rows on the ranks before this one, given every rank's row count (:func:`gather_sizes`); 0 in one process."""
    return sum(sizes[: dist.get_rank()]) if is_distributed() else 0


def gather_detached(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """All ranks' embeddings (detached) and labels, concatenated in rank order; identical on every rank."""
    embeddings = embeddings.detach()
    if not is_distributed():
        return embeddings, labels
    sizes = gather_sizes(embeddings.shape[0], embeddings.device)
    return torch.cat(_gather_rows(embeddings, sizes)), torch.cat(_gather_rows(labels, sizes))


def gather_keys(embeddings: Tensor, labels: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """The other ranks' embeddings *with gradient* (flowing back to their rank) and labels, in rank order.

    Returns lists of parts (empty when not distributed); the local batch is not included, so callers put it first
    and keep ``exclude_self`` meaning "query i is key i".
    """
    if not is_distributed():
        return [], []
    sizes = gather_sizes(embeddings.shape[0], embeddings.device)
    keys = gather_with_grad(embeddings, sizes)
    key_labels = _gather_rows(labels, sizes)
    rank = dist.get_rank()
    return [k for r, k in enumerate(keys) if r != rank], [y for r, y in enumerate(key_labels) if r != rank]


def across_processes(objective: Any) -> Any:
    """A copy of a :class:`~sbert_align.objectives.PairObjective` whose reduction runs over every process's anchors.

    Its ``finalize`` gathers the per-query statistics and log-sum-exps of all ranks (with gradient) before reducing,
    so every rank computes the loss of the whole global batch, exactly as one process would on the concatenated
    batch; backward hands each rank ``world_size`` times the global gradient of its own anchors, which DDP's
    gradient averaging turns into the single-process gradient. Outside DDP the objective is returned unchanged.
    """
    if not is_distributed():
        return objective
    local_finalize = objective.finalize

    def finalize(stats: Tensor, lse: Tensor | None) -> Tensor:
        all_stats = torch.cat(gather_with_grad(stats))
        all_lse = None if lse is None else torch.cat(gather_with_grad(lse))
        return local_finalize(all_stats, all_lse)

    out = copy.copy(objective)
    out.finalize = finalize
    return out

"""Cross-process helpers for DDP training: gather embeddings and labels from every rank (uneven batches allowed)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "gather_keys", "gather_detached"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _pad_rows(x: Tensor, rows: int) -> Tensor:
    if x.shape[0] == rows:
        return x
    pad = x.new_zeros((rows - x.shape[0], *x.shape[1:]))
    return torch.cat([x, pad], dim=0)


def gather_detached(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """All ranks' embeddings (detached) and labels, concatenated in rank order; identical on every rank."""
    embeddings = embeddings.detach()
    if not is_distributed():
        return embeddings, labels
    sizes = _gather_sizes(embeddings.shape[0], embeddings.device)
    rows = max(sizes)
    emb_parts = [embeddings.new_zeros((rows, embeddings.shape[1])) for _ in sizes]
    lab_parts = [labels.new_zeros((rows,)) for _ in sizes]
    dist.all_gather(emb_parts, _pad_rows(embeddings, rows).contiguous())
    dist.all_gather(lab_parts, _pad_rows(labels, rows).contiguous())
    return (
        torch.cat([e[:n] for e, n in zip(emb_parts, sizes)]),
        torch.cat([y[:n] for y, n in zip(lab_parts, sizes)]),
    )


def gather_keys(embeddings: Tensor, labels: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """The other ranks' embeddings *with gradient* (flowing back to their rank) and labels, in rank order.

    Returns lists of parts (empty when not distributed); the local batch is not included, so callers put it first
    and keep ``exclude_self`` meaning "query i is key i".
    """
    if not is_distributed():
        return [], []
    import torch.distributed.nn as dist_nn

    sizes = _gather_sizes(embeddings.shape[0], embeddings.device)
    rows = max(sizes)
    gathered = dist_nn.all_gather(_pad_rows(embeddings, rows).contiguous())
    lab_parts = [labels.new_zeros((rows,)) for _ in sizes]
    dist.all_gather(lab_parts, _pad_rows(labels, rows).contiguous())
    rank = dist.get_rank()
    keys = [g[:n] for r, (g, n) in enumerate(zip(gathered, sizes)) if r != rank]
    key_labels = [y[:n] for r, (y, n) in enumerate(zip(lab_parts, sizes)) if r != rank]
    return keys, key_labels

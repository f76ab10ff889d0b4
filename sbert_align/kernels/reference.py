"""The plain PyTorch ground truth: materialise the whole (B x M) similarity matrix and apply the objective.

Every other backend is tested against this one. It is also the fastest choice for small shapes, and what
``backend="auto"`` picks for them. Memory: O(B * M).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..objectives import PairObjective
from ._inputs import PairInputs, compute_dtype

__all__ = ["reference_pairwise_loss", "reference_similarity_topk"]


def pair_masks(
    query_labels: Tensor, key_labels: Tensor, exclude_self: bool, key_offset: int = 0
) -> tuple[Tensor, Tensor]:
    """``pos`` (same label) and ``valid`` (not an item with itself) masks for keys starting at ``key_offset``."""
    pos = query_labels[:, None] == key_labels[None, :]
    if exclude_self:
        q_idx = torch.arange(query_labels.shape[0], device=query_labels.device)
        k_idx = torch.arange(key_labels.shape[0], device=key_labels.device) + key_offset
        valid = q_idx[:, None] != k_idx[None, :]
    else:
        valid = torch.ones_like(pos)
    return pos, valid


def reference_pairwise_loss(inputs: PairInputs, objective: PairObjective) -> Tensor:
    """The loss of ``objective`` over all (query, key) pairs, computed on the materialised matrix."""
    dtype = compute_dtype(inputs.queries, *inputs.key_parts)
    with torch.autocast(device_type=inputs.queries.device.type, enabled=False):
        q = F.normalize(inputs.queries.to(dtype), dim=-1)
        k = torch.cat([F.normalize(part.to(dtype), dim=-1) for part in inputs.key_parts], dim=0)
        sim = q @ k.T
        pos, valid = pair_masks(inputs.query_labels, torch.cat(inputs.key_label_parts), inputs.exclude_self)
        return objective.loss(sim, pos, valid)


def reference_similarity_topk(queries: Tensor, keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` cosine similarities of each query among all keys, on the materialised matrix."""
    dtype = compute_dtype(queries, keys)
    sim = F.normalize(queries.to(dtype), dim=-1) @ F.normalize(keys.to(dtype), dim=-1).T
    return torch.topk(sim, k, dim=1)

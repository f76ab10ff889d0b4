"""The plain PyTorch ground truth: materialise the whole (B x M) similarity matrix and apply the objective.

Every other backend is tested against this one. It is also the fastest choice for small shapes, and what
``backend="auto"`` picks for them. Memory: O(B * M). Rows are normalised by
:func:`~._normalize.normalize_rows` (rows with a norm below ``NORMALIZE_EPS`` are zero vectors: cosine 0, zero
gradient), differentiated by plain autograd, which is what holds the tiled backends' hand-written normalisation
backward to the rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..objectives import PairObjective
from ._inputs import PairInputs, compute_dtype
from ._normalize import normalize_rows

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
        q = normalize_rows(inputs.queries.to(dtype))
        k = torch.cat([normalize_rows(part.to(dtype)) for part in inputs.key_parts], dim=0)
        sim = q @ k.T
        pos, valid = pair_masks(inputs.query_labels, torch.cat(inputs.key_label_parts), inputs.exclude_self)
        return objective.loss(sim, pos, valid)


def reference_similarity_topk(queries: Tensor, keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``k`` cosine similarities of each query among all keys, on the materialised matrix."""
    dtype = compute_dtype(queries, keys)
    sim = normalize_rows(queries.to(dtype)) @ normalize_rows(keys.to(dtype)).T
    return torch.topk(sim, k, dim=1)

"""Streaming top-k cosine similarity: the nearest-neighbour search of kNN and retrieval evaluation.

Keys are walked in chunks; each chunk's similarities are merged into a running top-k, so the
(queries x keys) matrix never exists at once. Peak memory: O(B * (chunk_size + k)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import compute_dtype
from ._normalize import normalize_rows

__all__ = ["chunked_similarity_topk", "sort_by_value_then_index", "topk_smallest_index_ties", "FUSED_TOPK_MAX_K"]

#: Largest ``k`` the fused Triton top-k (:mod:`.triton_topk`) takes; its per-row state is ``next_power_of_2(k)``
#: registers. Defined here so that dispatch can check it without importing Triton.
FUSED_TOPK_MAX_K = 64


def sort_by_value_then_index(values: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
    """Order each row by value (descending), equal values by index (ascending)."""
    order = torch.argsort(indices, dim=1)
    values, indices = torch.gather(values, 1, order), torch.gather(indices, 1, order)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    return torch.gather(values, 1, order), torch.gather(indices, 1, order)


def topk_smallest_index_ties(sim: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``torch.topk`` with a fixed tie rule: among equal values the smaller column index wins, also at the k-th
    place. ``torch.topk`` alone picks tied columns in an unspecified order; rows where a tie straddles the k-th
    place (rare outside duplicated texts) are repaired exactly, the rest cost one small sort of k values."""
    values, indices = torch.topk(sim, k, dim=1)
    kth = values[:, -1:]
    ties_out = (sim == kth).sum(1) > (values == kth).sum(1)
    for row in ties_out.nonzero().flatten().tolist():
        above = (sim[row] > kth[row]).nonzero().flatten()
        equal = (sim[row] == kth[row]).nonzero().flatten()[: k - above.numel()]
        indices[row] = torch.cat([above, equal])
        values[row] = sim[row, indices[row]]
    return sort_by_value_then_index(values, indices)


@torch.no_grad()
def chunked_similarity_topk(
    queries: Tensor,
    keys: Tensor,
    k: int,
    *,
    chunk_size: int = 16384,
    query_chunk_size: int = 4096,
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` similarities of each query among ``keys``, walking the keys in chunks.

    Ties are broken towards the smaller key index, as ``torch.topk`` does on one matrix.
    Returns ``(values, indices)``, each ``(B, k)``, values in descending order.
    """
    dtype = compute_dtype(queries, keys)
    values_out, indices_out = [], []
    for qs in range(0, queries.shape[0], query_chunk_size):
        q = queries[qs : qs + query_chunk_size].to(dtype)
        if normalize:
            q = normalize_rows(q)
        best_v = torch.full((q.shape[0], 0), float("-inf"), dtype=dtype, device=q.device)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
        for ks in range(0, keys.shape[0], chunk_size):
            kc = keys[ks : ks + chunk_size].to(device=q.device, dtype=dtype)
            if normalize:
                kc = normalize_rows(kc)
            sim = q @ kc.T
            take = min(k, sim.shape[1])
            v, i = topk_smallest_index_ties(sim, take)
            # Both lists are ordered by (value desc, index asc) and earlier chunks hold smaller indices, so a stable
            # sort of the concatenation by value keeps the smaller index first on ties.
            cand_v = torch.cat([best_v, v], dim=1)
            cand_i = torch.cat([best_i, i + ks], dim=1)
            order = torch.sort(cand_v, dim=1, descending=True, stable=True).indices[:, :k]
            best_v = torch.gather(cand_v, 1, order)
            best_i = torch.gather(cand_i, 1, order)
        values_out.append(best_v)
        indices_out.append(best_i)
    return torch.cat(values_out), torch.cat(indices_out)

"""Streaming top-k cosine similarity: the nearest-neighbour search of kNN and retrieval evaluation.

Keys are walked in chunks; each chunk's similarities are merged into a running top-k, so the
(queries x keys) matrix never exists at once. Peak memory: O(B * (chunk_size + k)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._inputs import compute_dtype

__all__ = ["chunked_similarity_topk"]


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
            q = F.normalize(q, dim=-1)
        best_v = torch.full((q.shape[0], 0), float("-inf"), dtype=dtype, device=q.device)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
        for ks in range(0, keys.shape[0], chunk_size):
            kc = keys[ks : ks + chunk_size].to(device=q.device, dtype=dtype)
            if normalize:
                kc = F.normalize(kc, dim=-1)
            sim = q @ kc.T
            take = min(k, sim.shape[1])
            v, i = torch.topk(sim, take, dim=1)
            # Earlier chunks come first in the concatenation, so stable sorting keeps smaller indices first on ties.
            cand_v = torch.cat([best_v, v], dim=1)
            cand_i = torch.cat([best_i, i + ks], dim=1)
            order = torch.sort(cand_v, dim=1, descending=True, stable=True).indices[:, :k]
            best_v = torch.gather(cand_v, 1, order)
            best_i = torch.gather(cand_i, 1, order)
        values_out.append(best_v)
        indices_out.append(best_i)
    return torch.cat(values_out), torch.cat(indices_out)

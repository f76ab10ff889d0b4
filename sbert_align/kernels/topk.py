"""Streaming top-k cosine similarity: the nearest-neighbour search of kNN and retrieval evaluation.

Keys are walked in tiles; each tile's similarities are merged into a running top-k (:class:`StreamingTopK`), so the
(queries x keys) matrix never exists at once. Peak memory: the normalised queries, the ``(B, k)`` state and one tile
of ``query_tile x key_tile`` similarities.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._inputs import compute_dtype
from ._normalize import NORMALIZE_EPS, normalize_rows

__all__ = [
    "StreamingTopK",
    "chunked_similarity_topk",
    "CPU_QUERY_TILE",
    "CPU_KEY_TILE",
    "sort_by_value_then_index",
    "topk_smallest_index_ties",
    "FUSED_TOPK_MAX_K",
]

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
    place. ``torch.topk`` alone picks tied columns in an unspecified order. A tie straddles the k-th place exactly
    when the (k+1)-th largest value equals the k-th, so one ``topk`` of ``k + 1`` finds those rows (rare outside
    duplicated texts), which are repaired exactly; the rest cost one small sort of k values."""
    if k < sim.shape[1]:
        values, indices = torch.topk(sim, k + 1, dim=1)
        straddles = values[:, k] == values[:, k - 1]
        values, indices = values[:, :k], indices[:, :k]
    else:
        values, indices = torch.topk(sim, k, dim=1)
        straddles = torch.zeros(0, dtype=torch.bool)
    for row in straddles.nonzero().flatten().tolist():
        kth = values[row, -1]
        above = (sim[row] > kth).nonzero().flatten()
        equal = (sim[row] == kth).nonzero().flatten()[: k - above.numel()]
        indices[row] = torch.cat([above, equal])
        values[row] = sim[row, indices[row]]
    return sort_by_value_then_index(values, indices)


#: CPU tiles: queries x keys per matrix product. Small enough that one tile of similarities (8 MiB) stays in cache
#: while it is filtered, large enough for the matrix product to run at full speed; of 1024-4096 x 1024-2048, 2048 x
#: 1024 had the least overhead over the products alone (one thread, 2048 x 100,000 x 384; faiss's ``IndexFlatIP``
#: uses 4096 x 1024 blocks for the same reason).
CPU_QUERY_TILE = 2048
CPU_KEY_TILE = 1024
#: Up to this many candidates per row (similarities above the row's current k-th best) in a tile, they are merged
#: directly; a tile with a row that has more (the first tiles, adversarial orders) runs ``torch.topk`` on its rows.
SPARSE_CANDIDATES = 32


class StreamingTopK:
    """The running top-``k`` cosine similarities of fixed queries over keys that arrive in chunks.

    Feed keys with :meth:`add` (in order: key indices continue from one call to the next) and read the result with
    :meth:`result`. Only the queries, the ``(B, k)`` state and one tile of similarities are held, so keys can be
    embedded and searched chunk by chunk: a million keys never exist at once.

    Each tile of similarities (``query_tile x key_tile``) is written into one reused buffer; one pass (the row
    maxima) finds the rows whose maximum beats their current ``k``-th best value, and only those rows' similarities
    above it are candidates. Once the first few thousand keys are seen there are few (``~ key_tile * k / seen`` per row and tile on data in random order),
    and they are merged directly (up to :data:`SPARSE_CANDIDATES` per row); rows with more (the first tiles) go
    through ``torch.topk``. So the selection costs little beside the matrix product. On CUDA the filter (which needs
    a device sync) is skipped and every row goes through ``torch.topk``.

    Ties go to the smaller key index: keys arrive in index order, a tile's candidates must be strictly better than the
    current ``k``-th value to enter, and equal values within a tile are taken by index.

    Args:
        queries: ``(B, D)``.
        k: Neighbours per query.
        normalize: Cosine similarity (rows normalised by :func:`~sbert_align.kernels.normalize_rows`) or plain dot
            product.
        query_tile: Queries per matrix product (default :data:`CPU_QUERY_TILE` on the CPU, 4096 on CUDA).
        key_tile: Keys per matrix product (default :data:`CPU_KEY_TILE` on the CPU, 16384 on CUDA).

    Example:
        ::

            import torch
            from sbert_align.kernels import StreamingTopK

            search = StreamingTopK(torch.randn(4, 8), k=5)
            for _ in range(3):
                search.add(torch.randn(1000, 8))  # e.g. one chunk of encoded references at a time
            values, indices = search.result()  # (4, 5) each; indices run over all 3000 keys
    """

    def __init__(
        self,
        queries: Tensor,
        k: int,
        *,
        normalize: bool = True,
        query_tile: int | None = None,
        key_tile: int | None = None,
    ):
        if queries.dim() != 2:
            raise ValueError(f"queries must be 2-D (B, D), got shape {tuple(queries.shape)}.")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        cuda = queries.device.type == "cuda"
        self.query_tile = int(query_tile or (4096 if cuda else CPU_QUERY_TILE))
        self.key_tile = int(key_tile or (16384 if cuda else CPU_KEY_TILE))
        if self.query_tile < 1 or self.key_tile < 1:
            raise ValueError(f"query_tile and key_tile must be >= 1, got {self.query_tile} and {self.key_tile}.")
        self.k = int(k)
        self.normalize = normalize
        self.filter = not cuda
        with torch.no_grad():
            self.dtype = compute_dtype(queries)
            q = queries.detach().to(self.dtype)
            self.queries = normalize_rows(q) if normalize else q
        b = self.queries.shape[0]
        self.values = torch.full((b, self.k), float("-inf"), dtype=self.dtype, device=queries.device)
        self.indices = torch.full((b, self.k), -1, dtype=torch.long, device=queries.device)
        self.seen = 0
        self._buffer: Tensor | None = None
        self._keys: Tensor | None = None

    @property
    def dim(self) -> int:
        return self.queries.shape[1]

    @torch.no_grad()
    def add(self, keys: Tensor) -> None:
        """Search ``keys`` (``(n, D)``, any device and floating dtype; float64 keys need float64 queries)."""
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be 2-D with dimension {self.dim}, got shape {tuple(keys.shape)}.")
        if keys.dtype == torch.float64 and self.dtype != torch.float64:
            raise ValueError("float64 keys need float64 queries (the search runs in the queries' compute dtype).")
        device = self.queries.device
        for ks in range(0, keys.shape[0], self.key_tile):
            kc = self._keys_tile(keys[ks : ks + self.key_tile].to(device=device))
            kt = kc.T
            for qs in range(0, self.queries.shape[0], self.query_tile):
                q = self.queries[qs : qs + self.query_tile]
                sim = torch.mm(q, kt, out=self._tile(q.shape[0], kc.shape[0]))
                self._merge(qs, sim)
            self.seen += kc.shape[0]

    def _keys_tile(self, keys: Tensor) -> Tensor:
        """``keys`` in the compute dtype, normalised when asked, in a reused buffer: ``normalize_rows``'s rule and
        rounding (``x / ||x||``, zero rows below ``NORMALIZE_EPS``), written in place."""
        if self._keys is None:
            self._keys = torch.empty(self.key_tile * self.dim, dtype=self.dtype, device=self.queries.device)
        out = self._keys[: keys.numel()].view(keys.shape).copy_(keys)
        if self.normalize:
            norm = torch.linalg.vector_norm(out, dim=1, keepdim=True)
            out.div_(norm.clamp_min(NORMALIZE_EPS))
            small = norm < NORMALIZE_EPS
            if small.any():
                out.masked_fill_(small, 0.0)
        return out

    def _tile(self, rows: int, cols: int) -> Tensor:
        """A contiguous ``(rows, cols)`` view of one reused buffer (no allocation, hence no page faults, per tile)."""
        size = self.query_tile * self.key_tile
        if self._buffer is None:
            self._buffer = torch.empty(size, dtype=self.dtype, device=self.queries.device)
        return self._buffer[: rows * cols].view(rows, cols)

    def _merge(self, qs: int, sim: Tensor) -> None:
        """Merge one tile of similarities (queries ``qs...``, keys ``self.seen...``) into the running top-k."""
        best_v = self.values[qs : qs + sim.shape[0]]
        best_i = self.indices[qs : qs + sim.shape[0]]
        if not self.filter or self.seen < self.k:
            self._merge_rows(best_v, best_i, sim, None)
            return
        # Only rows whose maximum beats their current k-th best can change (one pass over the tile); within them,
        # only the similarities above it are candidates, found in row-major order (by row, then by key index).
        kth = best_v[:, -1]
        rows = (sim.amax(dim=1) > kth).nonzero().flatten()
        if rows.numel() == 0:
            return
        if rows.numel() < sim.shape[0]:
            sim, kth = sim.index_select(0, rows), kth.index_select(0, rows)
        coords = (sim > kth[:, None]).nonzero()
        counts = torch.bincount(coords[:, 0], minlength=sim.shape[0])
        if int(counts.max()) > SPARSE_CANDIDATES:
            self._merge_rows(best_v, best_i, sim, rows)
        else:
            self._merge_candidates(best_v, best_i, sim, coords, counts, rows)

    def _merge_rows(self, best_v: Tensor, best_i: Tensor, sim: Tensor, rows: Tensor | None) -> None:
        """Merge the top-k of tile rows ``sim`` (the tile's ``rows``, or all of them when None)."""
        old_v = best_v if rows is None else best_v.index_select(0, rows)
        old_i = best_i if rows is None else best_i.index_select(0, rows)
        v, i = topk_smallest_index_ties(sim, min(self.k, sim.shape[1]))
        self._keep_best(best_v, best_i, rows, torch.cat([old_v, v], dim=1), torch.cat([old_i, i + self.seen], dim=1))

    def _merge_candidates(
        self, best_v: Tensor, best_i: Tensor, sim: Tensor, coords: Tensor, counts: Tensor, rows: Tensor
    ) -> None:
        """Merge a few candidates per row: ``sim`` holds the tile's ``rows``, each with at least one candidate;
        ``coords`` are the candidates' (row of ``sim``, key) positions, row-major."""
        width = self.k + int(counts.max())
        sim_rows, cols = coords[:, 0], coords[:, 1]
        starts = torch.cumsum(counts, 0) - counts
        place = self.k + torch.arange(coords.shape[0], device=sim.device) - starts[sim_rows]
        cand_v = torch.full((sim.shape[0], width), float("-inf"), dtype=sim.dtype, device=sim.device)
        cand_i = torch.full((sim.shape[0], width), -1, dtype=torch.long, device=sim.device)
        cand_v[:, : self.k] = best_v.index_select(0, rows)
        cand_i[:, : self.k] = best_i.index_select(0, rows)
        cand_v[sim_rows, place] = sim[sim_rows, cols]
        cand_i[sim_rows, place] = cols + self.seen
        self._keep_best(best_v, best_i, rows, cand_v, cand_i)

    def _keep_best(self, best_v: Tensor, best_i: Tensor, rows: Tensor | None, cand_v: Tensor, cand_i: Tensor) -> None:
        """Keep the ``k`` best of each candidate row. The running list comes first and holds smaller key indices
        than this tile, and a tile's candidates come in key order, so a stable sort keeps smaller indices first on
        ties."""
        order = torch.sort(cand_v, dim=1, descending=True, stable=True).indices[:, : self.k]
        new_v, new_i = torch.gather(cand_v, 1, order), torch.gather(cand_i, 1, order)
        if rows is None:
            best_v.copy_(new_v)
            best_i.copy_(new_i)
        else:
            best_v.index_copy_(0, rows, new_v)
            best_i.index_copy_(0, rows, new_i)

    def result(self) -> tuple[Tensor, Tensor]:
        """``(values, indices)``, each ``(B, k)``, most similar first; raises when fewer than ``k`` keys were added."""
        if self.seen < self.k:
            raise ValueError(f"only {self.seen} keys were added, fewer than k={self.k}.")
        return self.values, self.indices


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
    """Top-``k`` similarities of each query among ``keys``, walking the keys in tiles (:class:`StreamingTopK`).

    ``chunk_size`` and ``query_chunk_size`` bound the tile (keys x queries); on the CPU the tile is at most
    :data:`CPU_KEY_TILE` x :data:`CPU_QUERY_TILE`, which is faster than larger ones. Ties are broken towards the
    smaller key index, as ``torch.topk`` does on one matrix. Returns ``(values, indices)``, each ``(B, k)``, values
    in descending order.
    """
    dtype = compute_dtype(queries, keys)
    cuda = queries.device.type == "cuda"
    search = StreamingTopK(
        queries.to(dtype),
        k,
        normalize=normalize,
        query_tile=query_chunk_size if cuda else min(query_chunk_size, CPU_QUERY_TILE),
        key_tile=chunk_size if cuda else min(chunk_size, CPU_KEY_TILE),
    )
    search.add(keys)
    return search.result()

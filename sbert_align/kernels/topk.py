"""Streaming top-k cosine similarity: the nearest-neighbour search of kNN and retrieval evaluation.

Keys are walked in tiles; each tile's similarities are merged into a running top-k (:class:`StreamingTopK`), so the
(queries x keys) matrix never exists at once. Peak memory: the normalised queries and, per worker thread (one per
torch thread on the CPU, see :func:`_single_threaded_workers`), a ``(B, k)`` state, one tile of ``query_tile x
key_tile`` similarities (8 MiB in float32 on the CPU) and one normalised key tile; nothing grows with the number of
keys.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from ._inputs import compute_dtype
from ._normalize import NORMALIZE_EPS, normalize_rows
from .cpu_matmul import choose_cpu_matmul, numpy_blas_threads, tile_matmul
from .cpu_select import merge_tile, use_compiled_select

__all__ = [
    "StreamingTopK",
    "chunked_similarity_topk",
    "CPU_QUERY_TILE",
    "CPU_KEY_TILE",
    "cpu_key_tile",
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
#: With fewer queries than :data:`CPU_QUERY_TILE`, the key tile grows (in steps of :data:`CPU_KEY_TILE`, up to this)
#: so that a tile keeps about ``CPU_QUERY_TILE x CPU_KEY_TILE`` similarities: half as many tiles, and as much less
#: per-tile work, for 1,000 queries.
CPU_MAX_KEY_TILE = 8192


def cpu_key_tile(queries: int) -> int:
    """The CPU key tile for ``queries`` queries per tile (see :data:`CPU_MAX_KEY_TILE`)."""
    fit = CPU_QUERY_TILE * CPU_KEY_TILE // max(1, min(queries, CPU_QUERY_TILE))
    return min(CPU_MAX_KEY_TILE, max(CPU_KEY_TILE, fit // CPU_KEY_TILE * CPU_KEY_TILE))


#: With several torch threads on the CPU (OpenMP builds) and at least this many (query, key) pairs and two key tiles in
#: one :meth:`StreamingTopK.add`, ``w = min(torch.get_num_threads(), tiles)`` Python threads share that call's key
#: tiles (its tile ``t`` to thread ``t % w``), each with one intra-op thread and a running top-k of its own (see
#: :func:`_single_threaded_workers`).
CPU_PARALLEL_MIN_PAIRS = 1 << 24
#: Up to this many candidates per row (similarities above the row's current k-th best) in a tile, they are merged
#: directly; a tile with a row that has more (the first tiles, adversarial orders) runs ``torch.topk`` on its rows.
SPARSE_CANDIDATES = 32
#: The filter's block: one pass takes the maximum of each run of this many similarities of a row, and only runs whose
#: maximum beats the row's current k-th best are read again. 128 reduces as fast as whole rows (one thread, 2048 x
#: 1024 tiles: 0.23 ms vs 0.18 ms; 32 took 0.51 ms and 16 6.7 ms) and leaves 8 blocks per row to compare. The compiled
#: selection (:mod:`.cpu_select`) counts, run by run of this many, the similarities above the threshold instead (64
#: and 256 were no faster in one-thread timings).
FILTER_BLOCK = 128
#: When the blocks to read again cover more than this share of a tile, its rows are merged by ``torch.topk`` instead
#: of listing the candidates (which would take more memory than the tile: a value and two int64 positions each).
DENSE_SHARE = 0.125


#: Whether torch's intra-op thread count is per thread (the OpenMP backend, as in the PyPI wheels); with the native
#: backend one pool serves every thread, so worker threads would not run side by side.
_PER_THREAD_COUNTS = torch.backends.openmp.is_available()


@contextlib.contextmanager
def _single_threaded_workers(workers: int) -> Iterator[concurrent.futures.ThreadPoolExecutor | None]:
    """A pool of ``workers`` Python threads that each run torch with one intra-op thread, or None for one worker.

    The selection between matrix products is many small eager operations that gain little from intra-op threads;
    with one worker per thread, each searching its own key tiles, the selection runs on every core as the products
    do (``benchmarks/results/topk_cpu.md``). ``torch.set_num_threads(1)`` in a worker sets that thread's OpenMP and
    MKL thread counts (both per thread) and torch's default for threads started later; the caller's setting is
    restored on exit, so the caller's own thread count never changes. While a search runs, a thread that first uses
    torch gets one intra-op thread; a caller in a thread with its own count leaves that count as the process default.
    Only used with torch's OpenMP backend (:data:`_PER_THREAD_COUNTS`), where those counts are per thread.
    """
    if workers <= 1:
        yield None
        return
    threads = torch.get_num_threads()
    pool = concurrent.futures.ThreadPoolExecutor(
        workers, thread_name_prefix="sbert_align_topk", initializer=torch.set_num_threads, initargs=(1,)
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)
        torch.set_num_threads(threads)


class _Lane:
    """One worker's share of a :class:`StreamingTopK`: the running top-k over the keys it searched (ascending key
    order within the lane) and its reused buffers."""

    def __init__(self, rows: int, k: int, dtype: torch.dtype, device: torch.device):
        self.values = torch.full((rows, k), float("-inf"), dtype=dtype, device=device)
        self.indices = torch.full((rows, k), -1, dtype=torch.long, device=device)
        self.seen = 0  # keys searched by this lane
        self.tile: Tensor | None = None
        self.keys: Tensor | None = None


class StreamingTopK:
    """The running top-``k`` cosine similarities of fixed queries over keys that arrive in chunks.

    Feed keys with :meth:`add` (in order: key indices continue from one call to the next) and read the result with
    :meth:`result`. Only the queries and, per worker thread, a ``(B, k)`` state and one tile of similarities and of
    keys are held, so keys can be embedded and searched chunk by chunk: a million keys never exist at once.

    Each tile of similarities (``query_tile x key_tile``) is written into one reused buffer; one pass takes the
    maxima of blocks of :data:`FILTER_BLOCK` keys, and only the blocks whose maximum beats their row's current
    ``k``-th best value are read again for candidates (similarities above it). Once the first few thousand keys are
    seen there are few (``~ key_tile * k / seen`` per row and tile on data in random order), and they are merged
    directly (up to :data:`SPARSE_CANDIDATES` per row); rows with more (the first tiles) go through ``torch.topk``. So
    the selection costs little beside the matrix product. On CUDA the filter (which needs a device sync) is skipped
    and every row goes through ``torch.topk``.

    On the CPU with several torch threads, the key tiles of each :meth:`add` are shared among worker threads (see
    :data:`CPU_PARALLEL_MIN_PAIRS`), each keeping its own running top-k; :meth:`result` merges them. The CPU tile
    products run on torch's BLAS or numpy's, whichever was faster at the tile shape in this process
    (:mod:`.cpu_matmul`; ``$SBERT_ALIGN_CPU_MATMUL`` = ``torch`` / ``numpy`` fixes it). For searches of at least
    :data:`~.cpu_select.COMPILED_SELECT_MIN_PAIRS` pairs and ``k <= 256``, the selection after each product is one
    compiled pass (numba, :mod:`.cpu_select`) instead of the eager filter and merges described above, with the same
    result bit for bit (``$SBERT_ALIGN_CPU_SELECT`` = ``compiled`` / ``eager`` fixes it).

    Ties go to the smaller key index: keys arrive in index order (within each worker too), a tile's candidates must
    be strictly better than the current ``k``-th value to enter, equal values within a tile are taken by index, and
    the workers' lists are merged by value, then index.

    Args:
        queries: ``(B, D)``.
        k: Neighbours per query.
        normalize: Cosine similarity (rows normalised by :func:`~sbert_align.kernels.normalize_rows`) or plain dot
            product.
        query_tile: Queries per matrix product (default :data:`CPU_QUERY_TILE` on the CPU, 4096 on CUDA).
        key_tile: Keys per matrix product (default :func:`cpu_key_tile` on the CPU, 16384 on CUDA).

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
        rows = min(self.query_tile, queries.shape[0])
        self.key_tile = int(key_tile or (16384 if cuda else cpu_key_tile(rows)))
        if self.query_tile < 1 or self.key_tile < 1:
            raise ValueError(f"query_tile and key_tile must be >= 1, got {self.query_tile} and {self.key_tile}.")
        self.k = int(k)
        self.normalize = normalize
        self.filter = not cuda
        with torch.no_grad():
            self.dtype = compute_dtype(queries)
            q = queries.detach().to(self.dtype)
            self.queries = normalize_rows(q) if normalize else q
        self.seen = 0
        self._lanes = [_Lane(self.queries.shape[0], self.k, self.dtype, self.queries.device)]
        self._broken = False

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
        self._check_usable()
        starts = range(0, keys.shape[0], self.key_tile)
        workers = self._workers(keys.shape[0])
        while len(self._lanes) < workers:
            self._lanes.append(_Lane(self.queries.shape[0], self.k, self.dtype, self.queries.device))
        inference = torch.is_inference_mode_enabled()  # per thread, like grad mode: the workers take the caller's
        matmul, threads = self._matmul(len(starts), workers)
        compiled = self.filter and use_compiled_select(self.k, self.dtype, self.queries.shape[0] * keys.shape[0])
        try:
            with (
                numpy_blas_threads(threads) if matmul == "numpy" else contextlib.nullcontext(),
                _single_threaded_workers(workers) as pool,
            ):
                if pool is None:
                    self._search(keys, starts, self._lanes[0], inference, matmul, compiled)
                else:
                    jobs = [
                        pool.submit(
                            self._search, keys, starts[w::workers], self._lanes[w], inference, matmul, compiled
                        )
                        for w in range(workers)
                    ]
                    for job in jobs:
                        job.result()  # waits; re-raises a worker's error here
        except BaseException:
            # Some tiles were merged and others not: the state no longer answers for any prefix of the keys.
            self._broken = True
            raise
        self.seen += keys.shape[0]

    def _check_usable(self) -> None:
        if self._broken:
            raise RuntimeError(
                "this StreamingTopK is unusable: an earlier add() failed part way, so its running top-k mixes searched "
                "and unsearched keys; start a new one."
            )

    def _workers(self, n: int) -> int:
        """How many threads search ``n`` keys: on the CPU one per torch thread once the work is large enough (each
        with one intra-op thread and every ``workers``-th key tile), else one. CUDA: one."""
        threads = torch.get_num_threads()
        tiles = -(-n // self.key_tile)
        small = self.queries.shape[0] * n < CPU_PARALLEL_MIN_PAIRS
        if not self.filter or not _PER_THREAD_COUNTS or threads < 2 or tiles < 2 or small:
            return 1
        return min(threads, tiles)

    def _matmul(self, key_tiles: int, workers: int) -> tuple[str, int]:
        """The tile product of this search (``"torch"``, or ``"numpy"`` on the CPU, see :mod:`.cpu_matmul`) and the
        threads of each worker."""
        threads = 1 if workers > 1 else torch.get_num_threads()
        if self.queries.device.type != "cpu":
            return "torch", threads
        rows = min(self.query_tile, self.queries.shape[0])
        tiles = key_tiles * -(-self.queries.shape[0] // self.query_tile)
        return choose_cpu_matmul(rows, self.key_tile, self.dim, self.dtype, threads, tiles=tiles), threads

    def _search(
        self, keys: Tensor, starts: range, lane: _Lane, inference: bool, matmul: str = "torch", compiled: bool = False
    ) -> None:
        """Search the key tiles that begin at ``starts`` (ascending) into ``lane``, in the caller's inference mode,
        with the tile product ``matmul`` and the compiled selection (:mod:`.cpu_select`) or the eager one."""
        device = self.queries.device
        with torch.no_grad(), torch.inference_mode(inference):  # both are per thread
            for ks in starts:
                kc = self._keys_tile(lane, keys[ks : ks + self.key_tile].to(device=device))
                kt = kc.T
                for qs in range(0, self.queries.shape[0], self.query_tile):
                    q = self.queries[qs : qs + self.query_tile]
                    sim = tile_matmul(q, kt, self._tile(lane, q.shape[0], kc.shape[0]), matmul)
                    if compiled:
                        merge_tile(sim, lane.values, lane.indices, qs, self.seen + ks, FILTER_BLOCK)
                    else:
                        self._merge(lane, qs, sim, self.seen + ks)
                lane.seen += kc.shape[0]

    def _keys_tile(self, lane: _Lane, keys: Tensor) -> Tensor:
        """``keys`` in the compute dtype, normalised when asked, in the lane's reused buffer: ``normalize_rows``'s rule
        and rounding (``x / ||x||``, zero rows below ``NORMALIZE_EPS``), written in place. Without normalisation,
        contiguous keys already in the compute dtype are used as they are (no copy)."""
        if not self.normalize and keys.dtype == self.dtype and keys.is_contiguous():
            return keys
        if lane.keys is None:
            lane.keys = torch.empty(self.key_tile * self.dim, dtype=self.dtype, device=self.queries.device)
        out = lane.keys[: keys.numel()].view(keys.shape)
        if not self.normalize:
            return out.copy_(keys)
        if keys.dtype != self.dtype:
            keys = out.copy_(keys)
        norm = torch.linalg.vector_norm(keys, dim=1, keepdim=True)
        torch.div(keys, norm.clamp_min(NORMALIZE_EPS), out=out)  # read, normalise and write in one pass
        small = norm < NORMALIZE_EPS
        if small.any():
            out.masked_fill_(small, 0.0)
        return out

    def _tile(self, lane: _Lane, rows: int, cols: int) -> Tensor:
        """A contiguous ``(rows, cols)`` view of the lane's reused buffer (no allocation, hence no page faults, per
        tile)."""
        if lane.tile is None:
            size = min(self.query_tile, self.queries.shape[0]) * self.key_tile
            lane.tile = torch.empty(size, dtype=self.dtype, device=self.queries.device)
        return lane.tile[: rows * cols].view(rows, cols)

    def _merge(self, lane: _Lane, qs: int, sim: Tensor, seen: int) -> None:
        """Merge one tile of similarities (queries ``qs...``, keys ``seen...``) into the lane's running top-k."""
        best_v = lane.values[qs : qs + sim.shape[0]]
        best_i = lane.indices[qs : qs + sim.shape[0]]
        if not self.filter or lane.seen < self.k:  # the lane's first keys: every row changes
            self._merge_rows(best_v, best_i, sim, None, seen)
            return
        found = self._candidates(sim, best_v[:, -1])
        if found is None:
            return
        rows, candidates = found
        if candidates is None or int(candidates[0].max()) > SPARSE_CANDIDATES:
            self._merge_rows(best_v, best_i, sim.index_select(0, rows), rows, seen)
        else:
            counts, slots, cols, values = candidates
            self._merge_candidates(best_v, best_i, rows, counts, slots, cols + seen, values)

    def _candidates(
        self, sim: Tensor, kth: Tensor
    ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor, Tensor] | None] | None:
        """The similarities of tile ``sim`` above their row's current ``k``-th best ``kth``: None when there are
        none, else ``(rows, candidates)``; ``rows`` are the tile rows that may change (ascending), and
        ``candidates`` is ``(counts, slots, cols, values)``: each row's number of candidates, and each candidate's
        position in ``rows``, column and value, ordered by row, then by column. ``candidates`` is None when the blocks
        to read again cover more than :data:`DENSE_SHARE` of the tile (adversarial key orders): listing every
        candidate would then cost more memory than the tile, and ``torch.topk`` of those rows is the better merge.

        One pass over the tile takes the maxima of blocks of :data:`FILTER_BLOCK` columns (as fast as the row maxima,
        and vectorised, unlike an elementwise comparison with a per-row threshold); only blocks whose maximum beats
        the row's threshold are read again. Once a few thousand keys are seen, those are a few per tile.
        """
        n_rows, n_cols = sim.shape
        block = FILTER_BLOCK if n_cols % FILTER_BLOCK == 0 else n_cols  # a ragged (last) tile: one block per row
        blocks = sim.view(n_rows, n_cols // block, block)
        hits = (blocks.amax(dim=2) > kth[:, None]).nonzero()  # (row, block), row-major
        if hits.numel() == 0:
            return None
        hit_rows, hit_blocks = hits[:, 0], hits[:, 1]
        if hit_rows.shape[0] * block > DENSE_SHARE * sim.numel():
            return torch.unique_consecutive(hit_rows), None
        hit_values = blocks[hit_rows, hit_blocks]  # (hits, block)
        found = (hit_values > kth.index_select(0, hit_rows)[:, None]).nonzero()  # (hit, offset), row-major
        hit, offset = found[:, 0], found[:, 1]
        tile_rows = hit_rows.index_select(0, hit)
        rows, slots, counts = torch.unique_consecutive(tile_rows, return_inverse=True, return_counts=True)
        cols = hit_blocks.index_select(0, hit) * block + offset
        return rows, (counts, slots, cols, hit_values[hit, offset])

    def _merge_rows(self, best_v: Tensor, best_i: Tensor, sim: Tensor, rows: Tensor | None, seen: int) -> None:
        """Merge the top-k of tile rows ``sim`` (the tile's ``rows``, or all of them when None; keys from
        ``seen``)."""
        old_v = best_v if rows is None else best_v.index_select(0, rows)
        old_i = best_i if rows is None else best_i.index_select(0, rows)
        v, i = topk_smallest_index_ties(sim, min(self.k, sim.shape[1]))
        self._keep_best(best_v, best_i, rows, torch.cat([old_v, v], dim=1), torch.cat([old_i, i + seen], dim=1))

    def _merge_candidates(
        self,
        best_v: Tensor,
        best_i: Tensor,
        rows: Tensor,
        counts: Tensor,
        slots: Tensor,
        cols: Tensor,
        values: Tensor,
    ) -> None:
        """Merge a few candidates per row (see :meth:`_candidates` for the arguments; ``cols`` are key indices)."""
        width = self.k + int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        place = self.k + torch.arange(cols.shape[0], device=cols.device) - starts[slots]
        cand_v = torch.full((rows.shape[0], width), float("-inf"), dtype=values.dtype, device=values.device)
        cand_i = torch.full((rows.shape[0], width), -1, dtype=torch.long, device=values.device)
        cand_v[:, : self.k] = best_v.index_select(0, rows)
        cand_i[:, : self.k] = best_i.index_select(0, rows)
        cand_v[slots, place] = values
        cand_i[slots, place] = cols
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
        self._check_usable()
        if self.seen < self.k:
            raise ValueError(f"only {self.seen} keys were added, fewer than k={self.k}.")
        if len(self._lanes) == 1:
            return self._lanes[0].values, self._lanes[0].indices
        # Each lane holds the top-k of its own keys under the same order (value, then smaller index), so the top-k
        # of their union is the top-k over all keys. Unfilled places (-inf, -1) must sort after every key, even one
        # whose similarity is -inf: they get the largest index while sorting.
        values = torch.cat([lane.values for lane in self._lanes], dim=1)
        indices = torch.cat([lane.indices for lane in self._lanes], dim=1)
        indices = indices.masked_fill(indices < 0, torch.iinfo(torch.long).max)
        values, indices = sort_by_value_then_index(values, indices)
        return values[:, : self.k].contiguous(), indices[:, : self.k].contiguous()


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
    :data:`CPU_QUERY_TILE` queries x :func:`cpu_key_tile` keys (about 2 million similarities), which is faster than
    larger ones. Ties are broken towards the smaller key index (a stable sort of the whole matrix). Returns
    ``(values, indices)``, each ``(B, k)``, values in descending order.
    """
    dtype = compute_dtype(queries, keys)
    cuda = queries.device.type == "cuda"
    query_tile = query_chunk_size if cuda else min(query_chunk_size, CPU_QUERY_TILE)
    search = StreamingTopK(
        queries.to(dtype),
        k,
        normalize=normalize,
        query_tile=query_tile,
        key_tile=chunk_size if cuda else min(chunk_size, cpu_key_tile(min(query_tile, queries.shape[0]))),
    )
    search.add(keys)
    return search.result()

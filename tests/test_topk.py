"""Streaming top-k against the materialised reference; a fixed tie rule whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sbert_align import similarity_topk
from sbert_align.kernels.reference import reference_similarity_topk


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
@pytest.mark.parametrize("k", [1, 5, 37])
def test_matches_reference_on_random_data(chunk_size, k):
    torch.manual_seed(k)
    q, keys = torch.randn(13, 9, dtype=torch.float64), torch.randn(101, 9, dtype=torch.float64)
    values, indices = similarity_topk(q, keys, k, chunk_size=chunk_size)
    ref_v, ref_i = reference_similarity_topk(q, keys, k)
    assert torch.allclose(values, ref_v) and torch.equal(indices, ref_i)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 100])
def test_ties_go_to_the_smaller_index(chunk_size):
    # keys 0..9 are five distinct vectors, each duplicated: key 2j and 2j+1 tie. Small integers make every dot
    # product exact, so ties stay ties whichever chunk computes them (normalised similarities computed in
    # different chunks may differ in the last bit, which is then no tie).
    torch.manual_seed(0)
    base = torch.randint(-3, 4, (5, 4)).double()
    keys = base.repeat_interleave(2, dim=0)
    q = torch.randint(-3, 4, (3, 4)).double()
    for k in range(1, 11):
        values, indices = similarity_topk(q, keys, k, chunk_size=chunk_size, normalize=False)
        sim = q @ keys.T
        expected = [sorted(range(10), key=lambda j, r=r: (-sim[r, j].item(), j))[:k] for r in range(3)]
        assert indices.tolist() == expected


def test_dot_product_and_errors():
    q, keys = torch.randn(2, 3), torch.randn(6, 3)
    values, indices = similarity_topk(q, keys, 2, normalize=False)
    ref = torch.topk(q @ keys.T, 2)
    assert torch.allclose(values, ref.values) and torch.equal(indices, ref.indices)
    with pytest.raises(ValueError, match="k must be between 1 and the number of keys"):
        similarity_topk(q, keys, 7)
    with pytest.raises(ValueError, match="empty"):
        similarity_topk(q, keys[:0], 1)
    with pytest.raises(ValueError, match="dimension"):
        similarity_topk(q, torch.randn(6, 4), 1)


def test_backends_and_override(monkeypatch):
    """``auto`` is the chunked path, except half-precision inputs on CUDA (the fused kernel); ``reference`` is one chunk holding every key (same tie rule); the environment
    variable overrides ``auto`` only."""
    import sbert_align.kernels as kernels

    monkeypatch.delenv("SBERT_ALIGN_KERNEL", raising=False)
    torch.manual_seed(3)
    q, keys = torch.randn(6, 5, dtype=torch.float64), torch.randn(40, 5, dtype=torch.float64)
    chunked = similarity_topk(q, keys, 4, chunk_size=7, backend="chunked")
    reference = similarity_topk(q, keys, 4, backend="reference")
    assert torch.equal(chunked[1], reference[1]) and torch.allclose(chunked[0], reference[0])
    assert kernels.resolve_topk_backend("auto", "cpu", 4) == "chunked"
    assert kernels.resolve_topk_backend("auto", "cuda", 4) == "chunked"
    assert kernels.resolve_topk_backend("auto", "cuda", 4, torch.float32) == "chunked"  # fp32: not reliably faster
    assert kernels.resolve_topk_backend("auto", "cpu", 4, torch.bfloat16) == "chunked"
    fused = "triton" if kernels.triton_available() else "chunked"
    assert kernels.resolve_topk_backend("auto", "cuda", 4, torch.bfloat16) == fused
    assert kernels.resolve_topk_backend("auto", "cuda", 64, torch.float16) == fused
    assert kernels.resolve_topk_backend("auto", "cuda", 65, torch.float16) == "chunked"  # beyond the kernel's k
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "reference")
    assert kernels.resolve_topk_backend("auto", "cpu", 4) == "reference"
    assert kernels.resolve_topk_backend("chunked", "cpu", 4) == "chunked"
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "fused")
    with pytest.raises(ValueError, match="SBERT_ALIGN_KERNEL"):
        similarity_topk(q, keys, 2)


def test_triton_backend_refusals(monkeypatch):
    monkeypatch.delenv("SBERT_ALIGN_KERNEL", raising=False)
    q, keys = torch.randn(2, 3), torch.randn(100, 3)
    with pytest.raises(ValueError, match="k <= 64"):
        similarity_topk(q, keys, 65, backend="triton")
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "triton")  # a process-wide preference falls back instead
    with pytest.warns(UserWarning, match="k <= 64"):
        assert torch.equal(similarity_topk(q, keys, 65)[1], similarity_topk(q, keys, 65, backend="chunked")[1])
    if not torch.cuda.is_available():
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
        with pytest.raises(ValueError, match="CUDA"):
            similarity_topk(q, keys, 3, backend="triton")
        with pytest.warns(UserWarning, match="CUDA"):
            similarity_topk(q, keys, 3)


def _expected(q: torch.Tensor, keys: torch.Tensor, k: int, normalize: bool = True) -> list[list[int]]:
    """Indices of the top-k by (value desc, index asc), from the full matrix: the independent reference."""
    from sbert_align.kernels import normalize_rows

    sim = (normalize_rows(q) @ normalize_rows(keys).T) if normalize else q @ keys.T
    # A stable sort of the whole matrix keeps equal values in index order.
    return torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k].tolist()


@pytest.mark.parametrize("query_tile,key_tile", [(1, 1), (3, 5), (4, 64), (50, 7)])
@pytest.mark.parametrize("k", [1, 6, 40])
def test_streaming_topk_fed_in_uneven_chunks_matches_the_full_matrix(query_tile, key_tile, k):
    from sbert_align.kernels import StreamingTopK

    torch.manual_seed(k + key_tile)
    q, keys = torch.randn(17, 9, dtype=torch.float64), torch.randn(203, 9, dtype=torch.float64)
    keys[5] = 0.0  # a zero row and one below NORMALIZE_EPS: cosine 0 with every query
    keys[100] *= 1e-8
    search = StreamingTopK(q, k, query_tile=query_tile, key_tile=key_tile)
    for start, stop in [(0, 3), (3, 50), (50, 51), (51, 203)]:
        search.add(keys[start:stop])
    values, indices = search.result()
    ref_v, _ = reference_similarity_topk(q, keys, k)
    assert indices.tolist() == _expected(q, keys, k)
    assert torch.allclose(values, ref_v)


def test_streaming_topk_when_every_tile_improves_every_row():
    # Keys in increasing similarity to every query: each tile beats the running k-th best of every row, so the
    # filter lets all rows through at every tile (the worst case for the filtered merge).
    from sbert_align.kernels import StreamingTopK

    q = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    angles = torch.linspace(3.0, 0.0, 300, dtype=torch.float64)
    keys = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    search = StreamingTopK(q, 7, query_tile=1, key_tile=16)
    search.add(keys)
    assert search.result()[1].tolist() == [list(range(299, 292, -1))] * 2


def test_streaming_topk_ties_across_tiles_and_zero_rows():
    from sbert_align.kernels import StreamingTopK

    torch.manual_seed(1)
    base = torch.randint(-3, 4, (6, 4)).double()
    keys = torch.cat([base, base, torch.zeros(3, 4, dtype=torch.float64), base])  # exact duplicates in later tiles
    q = torch.cat([torch.randint(-3, 4, (4, 4)).double(), torch.zeros(1, 4, dtype=torch.float64)])
    for key_tile in (1, 4, 6, 7):
        for k in (1, 5, 12, 21):
            search = StreamingTopK(q, k, normalize=False, key_tile=key_tile, query_tile=2)
            search.add(keys)
            assert search.result()[1].tolist() == _expected(q, keys, k, normalize=False)


def test_streaming_topk_errors():
    from sbert_align.kernels import StreamingTopK

    search = StreamingTopK(torch.randn(2, 4), 5)
    search.add(torch.randn(3, 4))
    with pytest.raises(ValueError, match="only 3 keys"):
        search.result()
    with pytest.raises(ValueError, match="dimension 4"):
        search.add(torch.randn(3, 5))
    with pytest.raises(ValueError, match="float64 keys"):
        search.add(torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="k must be"):
        StreamingTopK(torch.randn(2, 4), 0)


@pytest.mark.parametrize("sparse_candidates", [0, 3, 10_000])
def test_streaming_topk_candidate_merge_and_row_topk_agree(monkeypatch, sparse_candidates):
    # 0: every tile through torch.topk; 10_000: every tile (after the first k keys) merged as candidates.
    from sbert_align.kernels import StreamingTopK
    from sbert_align.kernels import topk as topk_module

    monkeypatch.setattr(topk_module, "SPARSE_CANDIDATES", sparse_candidates)
    torch.manual_seed(3)
    # Small integers: every dot product is exact, so duplicates tie exactly in whichever tile they are scored.
    base = torch.randint(-4, 5, (40, 6)).double()
    keys = torch.cat([base, base.flip(0), torch.randint(-4, 5, (300, 6)).double()])
    q = torch.randint(-4, 5, (9, 6)).double()
    for k in (1, 4, 15):
        search = StreamingTopK(q, k, normalize=False, query_tile=4, key_tile=32)
        search.add(keys)
        assert search.result()[1].tolist() == _expected(q, keys, k, normalize=False)


@pytest.mark.parametrize("dense_share", [0.0, 0.125, 2.0])
@pytest.mark.parametrize("filter_block", [1, 4, 16, 128])
def test_streaming_topk_block_filter_matches_the_full_matrix(monkeypatch, filter_block, dense_share):
    # The filter reads a tile's block maxima; tiles whose width is not a multiple of the block (the last one here)
    # fall back to one block per row. Every block size must find the same neighbours, ties included, whether the
    # hit rows are merged by listing candidates (dense_share 2: always) or by torch.topk (0: always).
    from sbert_align.kernels import StreamingTopK
    from sbert_align.kernels import topk as topk_module

    monkeypatch.setattr(topk_module, "FILTER_BLOCK", filter_block)
    monkeypatch.setattr(topk_module, "DENSE_SHARE", dense_share)
    torch.manual_seed(filter_block)
    base = torch.randint(-4, 5, (50, 6)).double()
    keys = torch.cat([base, torch.randint(-4, 5, (400, 6)).double(), base.flip(0)])  # 500 keys: 3 full tiles of 128
    q = torch.randint(-4, 5, (11, 6)).double()
    for k in (1, 7, 33):
        search = StreamingTopK(q, k, normalize=False, query_tile=5, key_tile=128)
        search.add(keys)
        assert search.result()[1].tolist() == _expected(q, keys, k, normalize=False)
    q, keys = torch.randn(13, 16), torch.randn(1100, 16)
    search = StreamingTopK(q, 10, key_tile=256)
    search.add(keys)
    values, indices = search.result()
    ref_v, ref_i = reference_similarity_topk(q.double(), keys.double(), 10)
    assert torch.equal(indices, ref_i)
    assert torch.allclose(values.double(), ref_v, atol=1e-6)


def test_streaming_topk_worker_threads_match_one_thread_and_leave_thread_settings(monkeypatch):
    # With several torch threads the CPU search shares the key tiles among Python threads of one intra-op thread
    # each, every one with its own running top-k; the merged result must equal the one-thread search bit for bit
    # (ties across threads included), and the caller's thread count (and torch's default for threads started later)
    # must be what it was.
    import threading

    from sbert_align.kernels import StreamingTopK
    from sbert_align.kernels import topk as topk_module

    torch.manual_seed(5)
    q, keys = torch.randn(37, 12), torch.randn(900, 12)
    keys[400:450] = keys[:50]  # exact duplicates in later tiles: ties go to the smaller index in both
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = StreamingTopK(q, 9, query_tile=4, key_tile=64)
        one.add(keys[:500])
        one.add(keys[500:])
        torch.set_num_threads(3)
        monkeypatch.setattr(topk_module, "CPU_PARALLEL_MIN_PAIRS", 1)
        several = StreamingTopK(q, 9, query_tile=4, key_tile=64)
        assert several._workers(500) == 3 and several._workers(64) == 1
        several.add(keys[:500])
        several.add(keys[500:])
        assert len(several._lanes) == 3
        assert torch.get_num_threads() == 3
        seen = []
        thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert seen == [3]
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(several.result()[1], one.result()[1])
    assert torch.equal(several.result()[0], one.result()[0])
    assert several.result()[1].tolist() == _expected(q, keys, 9)


def test_cpu_key_tile_keeps_the_tile_size_and_stays_a_multiple_of_the_filter_block():
    from sbert_align.kernels.topk import CPU_KEY_TILE, CPU_MAX_KEY_TILE, FILTER_BLOCK, cpu_key_tile

    assert cpu_key_tile(2048) == cpu_key_tile(10_000) == CPU_KEY_TILE
    assert cpu_key_tile(1000) == 2 * CPU_KEY_TILE
    assert cpu_key_tile(1) == cpu_key_tile(0) == CPU_MAX_KEY_TILE
    assert all(cpu_key_tile(b) % FILTER_BLOCK == 0 for b in range(1, 3000, 37))


def test_candidates_of_a_dense_tile_are_not_listed():
    # A tile whose hit blocks cover more than DENSE_SHARE of it (a lane's first keys, adversarial orders) goes to
    # torch.topk by rows: listing its candidates would take several times the tile's memory.
    from sbert_align.kernels import StreamingTopK

    search = StreamingTopK(torch.randn(6, 4), 3)
    sim = torch.randn(6, 256)
    rows, candidates = search._candidates(sim, torch.full((6,), float("-inf")))
    assert rows.tolist() == list(range(6)) and candidates is None
    kth = sim.max(dim=1).values.clone()
    kth[2] = sim[2].sort().values[-3]  # row 2 alone has two candidates
    rows, (counts, slots, cols, values) = search._candidates(sim, kth)
    assert rows.tolist() == [2] and counts.tolist() == [2] and slots.tolist() == [0, 0]
    assert cols.tolist() == sorted(sim[2].topk(2).indices.tolist())
    assert torch.equal(values, sim[2, cols])
    assert search._candidates(sim, sim.max(dim=1).values) is None


@pytest.mark.parametrize("k", [3, 100])
def test_streaming_topk_worker_threads_under_inference_mode_and_large_k(monkeypatch, k):
    # Inference mode is per thread like grad mode: the workers must run in the caller's mode (sentence-transformers
    # encodes under torch.inference_mode), and k may exceed the keys one worker sees (3 workers x 64-key tiles).
    from sbert_align.kernels import StreamingTopK
    from sbert_align.kernels import topk as topk_module

    monkeypatch.setattr(topk_module, "CPU_PARALLEL_MIN_PAIRS", 1)
    torch.manual_seed(k)
    q, keys = torch.randn(7, 10), torch.randn(250, 10)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        with torch.inference_mode():
            search = StreamingTopK(q, k, query_tile=4, key_tile=64)
            search.add(keys)
        values, indices = search.result()
    finally:
        torch.set_num_threads(previous)
    assert len(search._lanes) == 3
    assert indices.tolist() == _expected(q, keys, k)


def test_streaming_topk_refuses_to_go_on_after_a_failed_add(monkeypatch):
    from sbert_align.kernels import StreamingTopK
    from sbert_align.kernels import topk as topk_module

    search = StreamingTopK(torch.randn(3, 4), 2, key_tile=8)
    search.add(torch.randn(20, 4))
    calls = []

    def failing_merge(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C between two tiles
        return original(self, *args)

    original = topk_module.StreamingTopK._merge
    monkeypatch.setattr(topk_module.StreamingTopK, "_merge", failing_merge)
    with pytest.raises(KeyboardInterrupt):
        search.add(torch.randn(20, 4))
    monkeypatch.setattr(topk_module.StreamingTopK, "_merge", original)
    with pytest.raises(RuntimeError, match="an earlier add"):
        search.add(torch.randn(5, 4))
    with pytest.raises(RuntimeError, match="an earlier add"):
        search.result()


def test_streaming_topk_lane_merge_puts_unfilled_places_after_minus_infinity():
    # Merging the workers' lists: a key scored -inf (an overflowed dot product) still beats a lane's unfilled place
    # (-inf, -1), and equal values go to the smaller index across lanes.
    from sbert_align.kernels import StreamingTopK
    from sbert_align.kernels.topk import _Lane

    search = StreamingTopK(torch.zeros(1, 2), 3, normalize=False)
    inf = float("-inf")
    lane0, lane1 = _Lane(1, 3, torch.float32, torch.device("cpu")), _Lane(1, 3, torch.float32, torch.device("cpu"))
    lane0.values[0], lane0.indices[0] = torch.tensor([2.0, inf, inf]), torch.tensor([4, 7, -1])
    lane1.values[0], lane1.indices[0] = torch.tensor([2.0, inf, inf]), torch.tensor([1, -1, -1])
    search._lanes, search.seen = [lane0, lane1], 8
    values, indices = search.result()
    assert indices.tolist() == [[1, 4, 7]] and values.tolist() == [[2.0, 2.0, inf]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_numpy_tile_product_gives_the_same_neighbours(monkeypatch, dtype, threads):
    # $SBERT_ALIGN_CPU_MATMUL=numpy multiplies each tile with numpy's BLAS (OpenBLAS in its wheels) instead of
    # torch's; the neighbours must be the reference's (ties included), with one worker and with worker threads, and
    # numpy's BLAS thread limit must come back after the search.
    threadpool_info = pytest.importorskip("threadpoolctl").threadpool_info

    from sbert_align.kernels import StreamingTopK
    from sbert_align.kernels import topk as topk_module

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    before = blas_threads()
    torch.manual_seed(11)
    q, keys = torch.randn(29, 16, dtype=dtype), torch.randn(700, 16, dtype=dtype)
    keys[500:530] = keys[:30]  # exact duplicates in later tiles
    monkeypatch.setenv("SBERT_ALIGN_CPU_MATMUL", "numpy")
    monkeypatch.setattr(topk_module, "CPU_PARALLEL_MIN_PAIRS", 1)
    calls = []
    real = topk_module.tile_matmul
    monkeypatch.setattr(topk_module, "tile_matmul", lambda *a: calls.append(a[3]) or real(*a))
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        search = StreamingTopK(q, 7, query_tile=8, key_tile=64)
        search.add(keys[:400])
        search.add(keys[400:])
    finally:
        torch.set_num_threads(previous)
    assert set(calls) == {"numpy"} and len(calls) == 4 * (7 + 5)
    assert len(search._lanes) == threads
    values, indices = search.result()
    # The reference: the full matrix by the same BLAS (two BLAS round differently, so duplicated keys tie exactly
    # only within one), then a stable sort (ties in index order).
    from sbert_align.kernels import normalize_rows

    sim = torch.from_numpy(np.matmul(normalize_rows(q).numpy(), normalize_rows(keys).numpy().T))
    ref_v, ref_i = torch.sort(sim, dim=1, descending=True, stable=True)
    assert indices.tolist() == ref_i[:, :7].tolist()
    atol = 1e-6 if dtype == torch.float32 else 1e-12
    assert torch.allclose(values, ref_v[:, :7], atol=atol)
    torch_v, _ = reference_similarity_topk(q, keys, 7)  # torch's product: the same values to rounding
    assert torch.allclose(values, torch_v.to(dtype), atol=atol)
    assert blas_threads() == before


def test_cpu_matmul_choice_is_measured_once_and_only_for_large_searches(monkeypatch):
    pytest.importorskip("threadpoolctl")
    from sbert_align.kernels import cpu_matmul

    timed = []

    def fake_times(rows, cols, dim, dtype, threads):
        timed.append((rows, cols, dim, dtype, threads))
        return {"torch": 1.0, "numpy": 0.5 if dim == 8 else 0.99}

    monkeypatch.setattr(cpu_matmul, "_time_matmuls", fake_times)
    monkeypatch.setattr(cpu_matmul, "_choices", {})
    monkeypatch.delenv("SBERT_ALIGN_CPU_MATMUL", raising=False)
    small = cpu_matmul.AUTO_MIN_TILES - 1
    assert cpu_matmul.choose_cpu_matmul(64, 128, 8, torch.float32, 1, tiles=small) == "torch" and timed == []
    assert cpu_matmul.choose_cpu_matmul(64, 128, 8, torch.float32, 1, tiles=1000) == "numpy"
    assert cpu_matmul.choose_cpu_matmul(64, 128, 8, torch.float32, 1, tiles=1) == "numpy"  # cached
    assert cpu_matmul.choose_cpu_matmul(64, 128, 9, torch.float32, 1, tiles=1000) == "torch"  # 1 % is not enough
    assert len(timed) == 2
    # numpy has no bfloat16 product: never chosen for it; the override is checked
    assert cpu_matmul.choose_cpu_matmul(64, 128, 8, torch.bfloat16, 1, tiles=1000) == "torch" and len(timed) == 2
    monkeypatch.setenv("SBERT_ALIGN_CPU_MATMUL", "torch")
    assert cpu_matmul.choose_cpu_matmul(64, 128, 8, torch.float32, 1, tiles=1000) == "torch"
    monkeypatch.setenv("SBERT_ALIGN_CPU_MATMUL", "numpy")
    with pytest.raises(ValueError, match="float32 or float64"):
        cpu_matmul.choose_cpu_matmul(64, 128, 8, torch.bfloat16, 1, tiles=1000)
    monkeypatch.setenv("SBERT_ALIGN_CPU_MATMUL", "mkl")
    with pytest.raises(ValueError, match="SBERT_ALIGN_CPU_MATMUL"):
        cpu_matmul.choose_cpu_matmul(64, 128, 8, torch.float32, 1, tiles=1000)


def test_cpu_matmul_timing_runs_both_products_and_restores_the_thread_count():
    pytest.importorskip("threadpoolctl")
    from sbert_align.kernels import cpu_matmul

    previous = torch.get_num_threads()
    seconds = cpu_matmul._time_matmuls(33, 70, 12, torch.float32, 1, reps=2)
    assert set(seconds) == {"torch", "numpy"} and all(0 < s < 10 for s in seconds.values())
    assert torch.get_num_threads() == previous
    a, b = torch.randn(5, 3), torch.randn(4, 3)
    out = torch.empty(5, 4)
    assert torch.allclose(cpu_matmul.tile_matmul(a, b.T, out, "numpy"), a @ b.T, atol=1e-6)


@pytest.mark.parametrize("query_tile,key_tile", [(1, 1), (3, 5), (4, 64), (50, 7), (8, 100)])
@pytest.mark.parametrize("k", [1, 6, 40])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_selection_matches_the_full_matrix(monkeypatch, query_tile, key_tile, k, dtype):
    # The numba selection (one scan per row into a sorted list, see kernels/cpu_select.py) against the stable sort of
    # the full matrix, on uneven chunks and tiles.
    pytest.importorskip("numba")
    from sbert_align.kernels import StreamingTopK, normalize_rows

    monkeypatch.setenv("SBERT_ALIGN_CPU_MATMUL", "torch")

    def search(q, keys, parts, select, normalize=True):
        monkeypatch.setenv("SBERT_ALIGN_CPU_SELECT", select)
        topk = StreamingTopK(q, k, query_tile=query_tile, key_tile=key_tile, normalize=normalize)
        for lo, hi in zip(parts[:-1], parts[1:]):
            topk.add(keys[lo:hi])
        return topk.result()

    torch.manual_seed(k + key_tile)
    q, keys = torch.randn(23, 10, dtype=dtype), torch.randn(311, 10, dtype=dtype)
    keys[77] = 0.0  # a zero key: similarity exactly 0 with every query
    values, indices = search(q, keys, [0, 150, 311], "compiled")
    assert indices.tolist() == _expected(q, keys, k)
    full = normalize_rows(q) @ normalize_rows(keys).T
    atol = 1e-6 if dtype == torch.float32 else 1e-12  # tile products may round unlike the full one, in the last bit
    assert torch.allclose(values, torch.gather(full, 1, indices), atol=atol)

    # Ties: small integers make every product exact whatever the tiling, so equal values are really equal; the
    # smaller key index must come first, within a tile and across tiles and chunks.
    qi, ki = torch.randint(-2, 3, (23, 4)).to(dtype), torch.randint(-2, 3, (311, 4)).to(dtype)
    values, indices = search(qi, ki, [0, 1, 150, 311], "compiled", normalize=False)
    assert indices.tolist() == _expected(qi, ki, k, normalize=False)

    # Duplicated random keys across chunks of one key (another product path, so duplicates need not tie exactly in
    # the full matrix): the same answer, bit for bit, as the eager selection on the same products.
    keys[200:240] = keys[:40]
    compiled = search(q, keys, [0, 1, 150, 311], "compiled")
    eager = search(q, keys, [0, 1, 150, 311], "eager")
    assert torch.equal(compiled[1], eager[1]) and torch.equal(compiled[0], eager[0])


def test_compiled_selection_with_worker_threads_equals_the_eager_one(monkeypatch):
    pytest.importorskip("numba")
    from sbert_align.kernels import StreamingTopK
    from sbert_align.kernels import topk as topk_module

    torch.manual_seed(3)
    q, keys = torch.randn(41, 16), torch.randn(3000, 16)
    keys[2000:2100] = keys[:100]
    monkeypatch.setenv("SBERT_ALIGN_CPU_MATMUL", "torch")
    monkeypatch.setattr(topk_module, "CPU_PARALLEL_MIN_PAIRS", 1)
    results = {}
    previous = torch.get_num_threads()
    try:
        for select in ("eager", "compiled"):
            for threads in (1, 2):
                monkeypatch.setenv("SBERT_ALIGN_CPU_SELECT", select)
                torch.set_num_threads(threads)
                search = StreamingTopK(q, 12, query_tile=16, key_tile=256)
                search.add(keys[:1700])
                search.add(keys[1700:])
                assert len(search._lanes) == threads
                results[select, threads] = search.result()
    finally:
        torch.set_num_threads(previous)
    for key, (values, indices) in results.items():
        assert torch.equal(indices, results["eager", 1][1]), key
        assert torch.equal(values, results["eager", 1][0]), key


def test_compiled_selection_fills_open_places_with_minus_infinity_and_skips_nan():
    pytest.importorskip("numba")
    from sbert_align.kernels.cpu_select import merge_tile
    from sbert_align.kernels.topk import FILTER_BLOCK

    inf, nan = float("inf"), float("nan")
    best_v, best_i = torch.full((2, 3), -inf), torch.full((2, 3), -1)
    sim = torch.tensor([[-inf, nan, 0.5, -inf], [nan, 2.0, 2.0, 1.0]])
    merge_tile(sim, best_v, best_i, 0, 10, FILTER_BLOCK)
    assert best_i.tolist() == [[12, 10, 13], [11, 12, 13]]
    assert best_v[0, 0] == 0.5 and torch.isneginf(best_v[0, 1:]).all() and best_v[1].tolist() == [2.0, 2.0, 1.0]
    # a later tile: equal values do not displace earlier (smaller) indices; larger ones enter in order
    merge_tile(torch.tensor([[0.5, 0.7, 0.5, 0.6]]), best_v, best_i, 0, 20, FILTER_BLOCK)
    assert best_i[0].tolist() == [21, 23, 12] and best_v[0].tolist() == pytest.approx([0.7, 0.6, 0.5])
    # a whole run of FILTER_BLOCK with a NaN in it: the NaN never enters, and the run's other keys still do
    run = torch.zeros(1, 2 * FILTER_BLOCK)
    run[0, 5], run[0, 9], run[0, FILTER_BLOCK + 1] = nan, 0.9, 0.8
    merge_tile(run, best_v, best_i, 0, 100, FILTER_BLOCK)
    assert best_i[0].tolist() == [109, 101 + FILTER_BLOCK, 21]


@pytest.mark.parametrize("cols", [37, 128, 300, 1024])
def test_compiled_selection_over_whole_and_ragged_blocks(cols):
    # Rows are addressed from row0; runs with no similarity above the threshold are skipped, the ragged run after the
    # last whole one included.
    pytest.importorskip("numba")
    from sbert_align.kernels.cpu_select import merge_tile
    from sbert_align.kernels.topk import FILTER_BLOCK

    g = torch.Generator().manual_seed(cols)
    bv, bi = torch.full((5, 4), float("-inf")), torch.full((5, 4), -1)
    tiles = []
    for t in range(3):  # three tiles of keys: the later ones mostly skipped
        tile = torch.randn(3, cols, generator=g)
        tile[:, -1] = 10.0 + t  # the best of each tile in its last column (a ragged block when cols % 128 != 0)
        merge_tile(tile, bv, bi, 2, 1000 * t, FILTER_BLOCK)
        tiles.append(tile)
    tiles = torch.cat(tiles, 1)
    assert (bi[:2] == -1).all()
    order = torch.sort(tiles, dim=1, descending=True, stable=True).indices[:, :4]
    expected = (order // cols) * 1000 + order % cols
    assert bi[2:].tolist() == expected.tolist()
    assert torch.equal(bv[2:], torch.gather(tiles, 1, order))


def test_compiled_selection_choice(monkeypatch):
    from sbert_align.kernels import cpu_select

    monkeypatch.delenv("SBERT_ALIGN_CPU_SELECT", raising=False)
    monkeypatch.setattr(cpu_select, "compiled_select_available", lambda: True)
    big = cpu_select.COMPILED_SELECT_MIN_PAIRS
    assert cpu_select.use_compiled_select(10, torch.float32, big)
    assert not cpu_select.use_compiled_select(10, torch.float32, big - 1)  # small searches stay eager
    assert not cpu_select.use_compiled_select(cpu_select.COMPILED_SELECT_MAX_K + 1, torch.float32, big)
    assert not cpu_select.use_compiled_select(10, torch.bfloat16, big)
    monkeypatch.setenv("SBERT_ALIGN_CPU_SELECT", "eager")
    assert not cpu_select.use_compiled_select(10, torch.float32, big)
    monkeypatch.setenv("SBERT_ALIGN_CPU_SELECT", "compiled")
    assert cpu_select.use_compiled_select(10, torch.float32, 1)
    with pytest.raises(ValueError, match="k <= 256"):
        cpu_select.use_compiled_select(1000, torch.float32, 1)
    monkeypatch.setattr(cpu_select, "compiled_select_available", lambda: False)
    with pytest.raises(ValueError, match="numba not found"):
        cpu_select.use_compiled_select(10, torch.float32, 1)
    monkeypatch.setenv("SBERT_ALIGN_CPU_SELECT", "fast")
    with pytest.raises(ValueError, match="SBERT_ALIGN_CPU_SELECT"):
        cpu_select.use_compiled_select(10, torch.float32, 1)


@pytest.mark.parametrize("select", ["eager", "compiled"])
def test_unnormalised_search_reads_contiguous_keys_in_place(monkeypatch, select):
    # normalize=False with contiguous keys in the compute dtype: the key tiles are views of the caller's keys (no
    # copy into the lane's buffer); strided or other-dtype keys are copied; the answer is the same either way.
    if select == "compiled":
        pytest.importorskip("numba")
    from sbert_align.kernels import StreamingTopK

    monkeypatch.setenv("SBERT_ALIGN_CPU_SELECT", select)
    torch.manual_seed(5)
    q = torch.randint(-3, 4, (9, 6)).float()
    keys = torch.randint(-3, 4, (200, 6)).float()  # small integers: exact products, real ties
    expected = _expected(q, keys, 7, normalize=False)
    for given, copied in ((keys, False), (keys.T.contiguous().T, True), (keys.to(torch.float16), True)):
        search = StreamingTopK(q, 7, normalize=False, query_tile=4, key_tile=33)
        search.add(given)
        assert search.result()[1].tolist() == expected
        assert (search._lanes[0].keys is not None) == copied

"""Streaming top-k against the materialised reference; a fixed tie rule whatever the chunking."""

from __future__ import annotations

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
    """``auto`` is the chunked path; ``reference`` is one chunk holding every key (same tie rule); the environment
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

"""The chunked backend and the dispatch, held to the materialised reference (values and gradients).

Tolerances (relative to the reference's scale): float64 1e-10, float32 1e-5, fp16 1e-3 (inputs in fp16, both
backends accumulate in fp32, so only summation order differs), bf16 1e-2 against a float64 reference on the
upcast inputs.
"""

from __future__ import annotations

import pytest
import torch

from sbert_align.kernels import pairwise_loss, resolve_backend, similarity_topk
from sbert_align.kernels._inputs import check_pair_inputs
from sbert_align.kernels.chunked import chunked_pairwise_loss, default_tile_size
from sbert_align.objectives import get_objective

OBJECTIVES = [
    ("supcon", {"temperature": 0.1}),
    ("supcon", {"temperature": 0.5, "reduction": "sum"}),
    ("cosine_target", {"t_neg": 0.0}),
    ("cosine_target", {"t_neg": -0.3, "balance": True}),
    ("margin", {"margin": 0.2}),
    ("margin", {"margin": 0.5, "reduction": "sum"}),
]
OBJ_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for n, p in OBJECTIVES]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    assert torch.isfinite(a).all(), "NaN/inf in the backend's output"
    # floor: a gradient that is zero up to rounding (D = 1: normalised 1-D vectors have no direction to move)
    return float((a - b).norm() / b.norm().clamp_min(1e-3))


def _case(b, m, d, n_classes=3, dtype=torch.float64, seed=0, labels=None, mem_labels=None, mem_grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    mem = torch.randn(m, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_(mem_grad)
    y = labels if labels is not None else torch.randint(0, n_classes, (b,), generator=g)
    ym = mem_labels if mem_labels is not None else torch.randint(0, n_classes, (m,), generator=g)
    return q, mem, y, ym


def _run(backend, q, keys, y, key_labels, name, params, exclude_self, tile_size=None):
    """Loss and gradients w.r.t. q and every key part that requires grad (other than q itself)."""
    loss = pairwise_loss(
        q,
        keys,
        y,
        key_labels,
        objective=name,
        backend=backend,
        exclude_self=exclude_self,
        tile_size=tile_size,
        **params,
    )
    wrt = [q] + [k for k in keys if k.requires_grad and k is not q]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)]
    return loss, grads


def _compare(q, keys, y, key_labels, name, params, exclude_self, tile_size, tol):
    ref_loss, ref_grads = _run("reference", q, keys, y, key_labels, name, params, exclude_self)
    loss, grads = _run("chunked", q, keys, y, key_labels, name, params, exclude_self, tile_size)
    assert loss.dtype == ref_loss.dtype
    assert abs(float(loss.detach()) - float(ref_loss.detach())) <= tol * max(1.0, abs(float(ref_loss.detach()))), (
        loss,
        ref_loss,
    )
    for g, rg in zip(grads, ref_grads):
        assert g.dtype == rg.dtype and g.shape == rg.shape
        assert _rel(g, rg) <= tol, _rel(g, rg)
    return loss, grads


SHAPES = [
    # (B, M, D, tile): B not a multiple of the tile, M = 1, D = 1, tile 1, tile larger than everything
    (7, 13, 5, 4),
    (7, 1, 5, 4),
    (5, 9, 1, 3),
    (6, 0, 4, 4),
    (3, 11, 8, 1),
    (9, 20, 6, 1000),
]


@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("exclude_self", [True, False])
def test_chunked_matches_reference_float64(name, params, shape, exclude_self):
    b, m, d, tile = shape
    q, mem, y, ym = _case(b, m, d, seed=b * 100 + m, mem_grad=True)
    _compare(q, [q, mem], y, [y, ym], name, params, exclude_self, tile, tol=1e-10)


@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_chunked_label_edge_cases(name, params):
    # labels with gaps, all one class, no positives at all
    q, mem, _, _ = _case(7, 10, 5)
    cases = [
        (torch.tensor([3, 100, 7, 3, 3, 7, 100]), torch.tensor([7, 3, 100, 100, 3, 7, 7, 3, 100, 3])),
        (torch.full((7,), 4), torch.full((10,), 4)),
        (torch.arange(7) * 10, torch.arange(10) * 10 + 1000),
    ]
    for y, ym in cases:
        for exclude_self in (True, False):
            _compare(q, [q, mem], y, [y, ym], name, params, exclude_self, 3, tol=1e-10)


@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_chunked_gradcheck(name, params):
    q, mem, y, ym = _case(4, 6, 3, seed=1, mem_grad=True)
    obj = get_objective(name, **params)

    def f(qq, mm):
        inputs = check_pair_inputs(qq, [qq, mm], y, [y, ym], True)
        return chunked_pairwise_loss(inputs, obj, tile_size=3)

    # margin's max(0, .)^2 has a continuous first derivative, so gradcheck holds away from the kink.
    assert torch.autograd.gradcheck(f, (q.detach().requires_grad_(), mem.detach().requires_grad_()))


def test_chunked_several_parts_mixed_requires_grad():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    extra = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    mem1 = torch.randn(7, 4, generator=g, dtype=torch.float64)
    mem2 = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 5])
    ys = [y, torch.tensor([0, 0, 1, 9, 2]), torch.randint(0, 3, (7,), generator=g), torch.tensor([5, 1, 1])]
    for name, params in OBJECTIVES:
        for exclude_self in (True, False):
            # batch part is q itself plus extra keys that require grad, a detached memory, a memory with grad
            keys = [q, extra, mem1, mem2]
            _compare(q, keys, y, ys, name, params, exclude_self, 4, tol=1e-10)
    loss = pairwise_loss(q, [q, mem1], y, [y, ys[2]], backend="chunked", tile_size=2)
    loss.backward()
    assert mem1.grad is None and q.grad is not None


def test_chunked_keys_are_not_the_queries():
    """Queries and keys are different tensors (query-key retrieval); gradients go to both."""
    q, mem, y, ym = _case(5, 8, 4, seed=7, mem_grad=True)
    for name, params in OBJECTIVES:
        _compare(q, [mem], y, [ym], name, params, False, 3, tol=1e-10)


@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_no_valid_key_is_finite_with_zero_gradient(name, params):
    q = torch.randn(1, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([2])
    for backend in ("reference", "chunked"):
        loss = pairwise_loss(q, [q], y, [y], objective=name, backend=backend, exclude_self=True, **params)
        (grad,) = torch.autograd.grad(loss, q)
        assert float(loss.detach()) == 0.0
        assert torch.equal(grad, torch.zeros_like(grad))
    # and with an empty memory part
    mem = torch.zeros(0, 4, dtype=torch.float64)
    loss = pairwise_loss(q, [q, mem], y, [y, y[:0]], objective=name, backend="chunked", exclude_self=True, **params)
    (grad,) = torch.autograd.grad(loss, q)
    assert float(loss.detach()) == 0.0 and torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_chunked_float32(name, params):
    q, mem, y, ym = _case(37, 70, 16, dtype=torch.float32, seed=5)
    _compare(q, [q, mem], y, [y, ym], name, params, True, 16, tol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 1e-3), (torch.bfloat16, 2**-8)])
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_chunked_half_inputs_same_as_reference(name, params, dtype, tol):
    """Same half-precision inputs: both accumulate in fp32, so the losses agree to summation order.

    The gradients differ by about one rounding of the input dtype: the reference rounds the query-side and the
    key-side gradient of the batch to the dtype separately and then adds them, chunked adds them in fp32 and rounds
    once. So chunked must be within ``tol`` (half an ulp of bf16, ~4e-3) of the reference and no farther from the
    float64 truth than the reference is.
    """
    q, mem, y, ym = _case(33, 50, 24, dtype=dtype, seed=11)
    loss, grads = _run("chunked", q, [q, mem], y, [y, ym], name, params, True, 16)
    ref_loss, ref_grads = _run("reference", q, [q, mem], y, [y, ym], name, params, True)
    assert loss.dtype == torch.float32 and grads[0].dtype == dtype
    assert abs(loss.item() - ref_loss.item()) <= 1e-5 * max(1.0, abs(ref_loss.item()))
    assert _rel(grads[0], ref_grads[0]) <= tol
    q64 = q.detach().double().requires_grad_(True)
    _, truth = _run("reference", q64, [q64, mem.detach().double()], y, [y, ym], name, params, True)
    assert _rel(grads[0], truth[0]) <= _rel(ref_grads[0], truth[0])


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 1e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_chunked_half_against_float64_truth(name, params, dtype, tol):
    """Half inputs against the float64 reference on the same (upcast) values: the stated per-dtype tolerance."""
    q, mem, y, ym = _case(33, 50, 24, dtype=dtype, seed=12)
    loss, grads = _run("chunked", q, [q, mem], y, [y, ym], name, params, True, 16)
    q64 = q.detach().double().requires_grad_(True)
    ref_loss, ref_grads = _run("reference", q64, [q64, mem.detach().double()], y, [y, ym], name, params, True)
    assert abs(float(loss.detach()) - float(ref_loss.detach())) <= tol * max(1.0, abs(float(ref_loss.detach())))
    assert _rel(grads[0], ref_grads[0]) <= 10 * tol  # the gradient is rounded to the input dtype once more


def test_chunked_under_autocast_is_unchanged():
    q, mem, y, ym = _case(9, 12, 8, dtype=torch.float32, seed=2)
    plain = pairwise_loss(q, [q, mem], y, [y, ym], backend="chunked", exclude_self=True, tile_size=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = pairwise_loss(q, [q, mem], y, [y, ym], backend="chunked", exclude_self=True, tile_size=5)
    assert auto.dtype == torch.float32
    assert torch.equal(plain, auto)


@pytest.mark.parametrize("keep", [True, False])
def test_chunked_uses_no_quadratic_memory_in_backward(monkeypatch, keep):
    """No block wider than the tile, ever (so no (B x M) matrix). Above ``KEEP_TILES_MAX_PAIRS`` pairs the backward
    recomputes every tile; below it, the forward's tiles (at most that many pairs in all) are reused."""
    import sbert_align.kernels.chunked as ch

    widths = []
    real = ch._tile_masks

    def spy(q_labels, k_labels, exclude_self, key_start):
        widths.append(k_labels.shape[0])
        return real(q_labels, k_labels, exclude_self, key_start)

    monkeypatch.setattr(ch, "_tile_masks", spy)
    if not keep:
        monkeypatch.setattr(ch, "KEEP_TILES_MAX_PAIRS", 8 * 108 - 1)
    q, mem, y, ym = _case(8, 100, 4, dtype=torch.float32)
    loss = pairwise_loss(q, [q, mem], y, [y, ym], backend="chunked", tile_size=16)
    assert sum(widths) == 8 + 100  # the forward visits every key once
    loss.backward()
    assert widths and max(widths) <= 16
    assert sum(widths) == (1 if keep else 2) * (8 + 100)


def test_chunked_key_gradient_work_only_where_needed(monkeypatch):
    """A detached part never goes through the key-normalisation backward, and a key part that *is* the queries
    shares the queries' one; a separate batch part that requires grad gets its own."""
    import sbert_align.kernels.chunked as ch

    rows = []
    real = ch.normalize_backward

    def spy(x, d_n, dtype):
        rows.append(x.shape[0])
        return real(x, d_n, dtype)

    monkeypatch.setattr(ch, "normalize_backward", spy)
    q, mem, y, ym = _case(8, 100, 4, dtype=torch.float32)
    pairwise_loss(q, [q, mem], y, [y, ym], backend="chunked", tile_size=16).backward()
    assert rows == [8]  # the queries only
    rows.clear()
    q.grad = None
    other = q.detach().clone().requires_grad_(True)
    pairwise_loss(q, [other, mem], y, [y, ym], backend="chunked", tile_size=16).backward()
    assert sorted(rows) == [8, 8]  # the batch part's keys (one tile), then the queries
    folded = _run("chunked", q, [q, mem], y, [y, ym], "supcon", {}, False, 16)[1][0]
    assert torch.allclose(q.grad + other.grad, folded, rtol=1e-5, atol=1e-6)


def test_default_tile_size():
    assert default_tile_size(1) == 16384
    assert default_tile_size(1024) == 1024
    assert default_tile_size(1 << 20) == 128
    t = default_tile_size(3000)
    assert t & (t - 1) == 0


def test_dispatch_and_override(monkeypatch):
    import sbert_align.kernels as kernels

    monkeypatch.delenv("SBERT_ALIGN_KERNEL", raising=False)
    assert resolve_backend("auto", "cpu", 100) == "reference"
    assert resolve_backend("auto", "cpu", 1 << 15) == "reference"
    assert resolve_backend("auto", "cpu", (1 << 15) + 1) == "chunked"
    assert resolve_backend("auto", "cpu", 1 << 30) == "chunked"
    if not kernels.triton_available():
        assert resolve_backend("auto", "cuda", 1 << 22) == "reference"
        assert resolve_backend("auto", "cuda", 1 << 30) == "chunked"
    assert resolve_backend("chunked", "cpu", 10) == "chunked"
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "chunked")
    assert resolve_backend("auto", "cpu", 10) == "chunked"
    assert resolve_backend("reference", "cpu", 10) == "reference"
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "nope")
    with pytest.raises(ValueError, match="SBERT_ALIGN_KERNEL"):
        resolve_backend("auto", "cpu", 10)
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("fast", "cpu", 10)


def test_triton_request_that_cannot_run(monkeypatch):
    """Explicit backend='triton' without CUDA raises; the environment variable only warns and falls back."""
    import sbert_align.kernels as kernels

    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    monkeypatch.delenv("SBERT_ALIGN_KERNEL", raising=False)
    with pytest.raises(ValueError, match="backend='triton'.*CUDA"):
        resolve_backend("triton", "cpu", 10)
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "triton")
    with pytest.warns(UserWarning, match="SBERT_ALIGN_KERNEL=triton"):
        assert resolve_backend("auto", "cpu", 10) == "reference"
    with pytest.warns(UserWarning):
        assert resolve_backend("auto", "cuda", 1 << 30) == "chunked"


def test_env_override_reaches_chunked(monkeypatch):
    import sbert_align.kernels.chunked as ch

    calls = []
    real = ch.chunked_pairwise_loss

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ch, "chunked_pairwise_loss", spy)
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "chunked")
    q, mem, y, ym = _case(4, 5, 3)
    pairwise_loss(q, [q, mem], y, [y, ym])
    assert calls == [1]


def test_chunked_bad_tile_size():
    q, mem, y, ym = _case(4, 5, 3)
    with pytest.raises(ValueError, match="tile_size"):
        pairwise_loss(q, [q, mem], y, [y, ym], backend="chunked", tile_size=0)


def test_chunked_refuses_keys_changed_in_place_before_backward():
    """The backward recomputes tiles from the key parts: a memory written in place in between must not pass
    silently (ClassAlignmentLoss stages its memory update until after the backward for this reason)."""
    q, mem, y, ym = _case(6, 50, 4, dtype=torch.float32)
    loss = pairwise_loss(q, [q, mem], y, [y, ym], backend="chunked", exclude_self=True, tile_size=8)
    mem[:3] = 0.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


# ---------------------------------------------------------------- degenerate rows: the one normalisation rule
DTYPE_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 2**-8}


def _degenerate_case(dtype, seed=0):
    """A batch and a memory (which requires grad) with a zero row, a row of norm 1e-30 and a row of norm 1e4 each,
    among ordinary rows; labels give every kind of row positives and negatives."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(8, 6, generator=g, dtype=torch.float64)
    mem = torch.randn(7, 6, generator=g, dtype=torch.float64)
    for x, (zero, tiny, huge) in ((q, (1, 4, 6)), (mem, (0, 3, 5))):
        x[zero] = 0.0
        x[tiny] = x[tiny] / x[tiny].norm() * 1e-30  # 0 in fp16; below NORMALIZE_EPS everywhere
        x[huge] = x[huge] / x[huge].norm() * 1e4
    y = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1])
    ym = torch.tensor([1, 0, 2, 0, 1, 2, 0])
    return q.to(dtype).requires_grad_(True), mem.to(dtype).requires_grad_(True), y, ym


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name,params", OBJECTIVES + [("supcon", {"temperature": 0.01})], ids=OBJ_IDS + ["t=0.01"])
def test_degenerate_rows_finite_and_backends_agree(name, params, dtype):
    """Zero rows and rows of norm 1e-30 are zero vectors (cosine 0, zero gradient), norms of 1e4 are ordinary: the
    loss and every gradient are finite in every dtype, and chunked agrees with the reference."""
    q, mem, y, ym = _degenerate_case(dtype)
    results = {}
    for backend in ("reference", "chunked"):
        loss, grads = _run(backend, q, [q, mem], y, [y, ym], name, params, True, tile_size=3)
        assert torch.isfinite(loss).all(), (backend, loss)
        for g in grads:
            assert torch.isfinite(g).all(), (backend, g)
            assert g.dtype == dtype
        for g, rows in zip(grads, ((1, 4), (0, 3))):
            assert torch.equal(g[list(rows)], torch.zeros_like(g[list(rows)])), (backend, g[list(rows)])
        results[backend] = (loss, grads)
    (loss, grads), (ref_loss, ref_grads) = results["chunked"], results["reference"]
    tol = DTYPE_TOL[dtype]
    assert abs(float(loss.detach()) - float(ref_loss.detach())) <= tol * max(1.0, abs(float(ref_loss.detach())))
    for g, rg in zip(grads, ref_grads):
        assert _rel(g, rg) <= (tol if dtype in (torch.float64, torch.float32) else 10 * tol)


def _truth_without_degenerate_rows(name, params):
    """The float64 loss where the zero-like rows are replaced by exact zeros (what the rule says they are)."""
    q, mem, y, ym = _degenerate_case(torch.float64)
    q, mem = q.detach().clone(), mem.detach().clone()
    q[[1, 4]] = 0.0
    mem[[0, 3]] = 0.0
    return pairwise_loss(q, [q, mem], y, [y, ym], objective=name, backend="reference", exclude_self=True, **params)


@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name,params", OBJECTIVES + [("supcon", {"temperature": 0.01})], ids=OBJ_IDS + ["t=0.01"])
def test_degenerate_rows_under_autocast(name, params, autocast_dtype):
    """fp32 embeddings under CPU autocast (fp16 or bf16): the backends turn autocast off and compute in fp32, so the
    loss equals the float64 truth to fp32 precision, with finite gradients and none on zero rows."""
    truth = float(_truth_without_degenerate_rows(name, params))
    q, mem, y, ym = _degenerate_case(torch.float32)
    for backend in ("reference", "chunked"):
        try:
            with torch.autocast("cpu", dtype=autocast_dtype):
                loss, grads = _run(backend, q, [q, mem], y, [y, ym], name, params, True, tile_size=3)
        except RuntimeError as exc:  # pragma: no cover - depends on the torch build
            pytest.skip(f"CPU autocast with {autocast_dtype} is not supported by this torch: {exc}")
        assert loss.dtype == torch.float32
        assert abs(float(loss.detach()) - truth) <= 1e-5 * max(1.0, abs(truth))
        assert all(torch.isfinite(g).all() for g in grads)
        assert not grads[0][[1, 4]].any() and not grads[1][[0, 3]].any()


def test_normalize_rule():
    """One rule: ``x / ||x||`` (bit for bit ``F.normalize``) at and above ``NORMALIZE_EPS``, exact zeros below; the
    written-out backward equals autograd through it, which equals the analytic derivative (zero below)."""
    import torch.nn.functional as F

    from sbert_align.kernels import NORMALIZE_EPS, normalize_rows
    from sbert_align.kernels._normalize import inverse_row_norms, normalize_backward

    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 4, generator=g, dtype=torch.float64)
    direction = x[0] / x[0].norm()
    x[1] = 0.0
    x[2] = direction * 1e-30
    x[3] = direction * NORMALIZE_EPS * 0.5
    x[4] = direction * NORMALIZE_EPS * 2.0
    x[5] = direction * 1e4
    below = [1, 2, 3]
    for dtype in (torch.float64, torch.float32):
        xd = x.to(dtype).requires_grad_(True)
        n = normalize_rows(xd)
        assert torch.equal(n[below], torch.zeros_like(n[below]))
        above = [i for i in range(9) if i not in below]
        assert torch.equal(n[above], F.normalize(xd[above], dim=-1))
        inv = inverse_row_norms(xd.detach())
        assert torch.equal(inv[below], torch.zeros(3, dtype=dtype))
        assert torch.allclose(inv[above], 1.0 / x[above].norm(dim=-1).to(dtype), rtol=1e-6, atol=0)
        d_n = torch.randn(9, 4, generator=g, dtype=torch.float64).to(dtype)
        (auto,) = torch.autograd.grad(n, xd, d_n)
        written = normalize_backward(xd, d_n, dtype)
        assert torch.isfinite(auto).all() and torch.isfinite(written).all()
        assert torch.allclose(written, auto, rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=0)
        assert torch.equal(written[below], torch.zeros_like(written[below]))
    # the analytic derivative of x / ||x|| (float64): (I - n n^T) d_n / ||x||
    d_n = torch.randn(9, 4, generator=g, dtype=torch.float64)
    written = normalize_backward(x, d_n, torch.float64)
    for i in range(4, 9):
        r = x[i].norm()
        nn = x[i] / r
        expected = (d_n[i] - nn * (nn @ d_n[i])) / r
        assert torch.allclose(written[i], expected, rtol=1e-10, atol=0)
    # half inputs: computed in the dtype given, returned in the input's dtype, zero rows exactly zero. (Row 4, of
    # norm 2e-6, is left out: its true gradient, ~|d_n| / 2e-6, is beyond fp16's range; only zero rows are exempt.)
    for half in (torch.float16, torch.bfloat16):
        written = normalize_backward(x.to(half), d_n, torch.float32)
        assert written.dtype == half and torch.isfinite(written[[0, 1, 2, 3, 5, 6, 7, 8]]).all()
        assert not written[below].any()


def test_zero_rows_in_topk_have_similarity_zero():
    q = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1e-30, 0.0]])
    keys = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    for backend in ("chunked", "reference"):
        values, indices = similarity_topk(q, keys, 4, chunk_size=3, backend=backend)
        assert torch.isfinite(values).all()
        # zero (and 1e-30) queries: cosine 0 with every key, so the order is the tie rule's: 0, 1, 2, 3
        assert indices[0].tolist() == [0, 1, 2, 3] and indices[2].tolist() == [0, 1, 2, 3]
        assert torch.equal(values[0], torch.zeros(4)) and torch.equal(values[2], torch.zeros(4))
        assert indices[1].tolist() == [2, 0, 3, 1]
        assert torch.allclose(values[1], torch.tensor([0.6, 0.0, 0.0, -1.0]))

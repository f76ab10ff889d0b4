"""The fused Triton kernels, held to the materialised reference (values and gradients dQ, dK).

On a machine with CUDA these tests run natively. Without one, they run under Triton's interpreter
(``TRITON_INTERPRET=1``) in a *subprocess* (:func:`test_triton_interpreter_subprocess`): the variable must be set
before Triton is imported, and setting it in the main test process would change Triton for the rest of the suite.
In that child process the same module runs its tests directly.

Tolerances, relative to the reference's norm: float64 1e-9, float32 1e-5 (``input_precision="ieee"``), fp16 1e-3,
bf16 1e-2. Half-precision comparisons are against the reference on the same half inputs (it upcasts to fp32), so
what remains is the rounding of the backward's dsim block to the input dtype.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ON_GPU = torch.cuda.is_available()
CHILD = os.environ.get("SBERT_ALIGN_TRITON_CHILD") == "1" and os.environ.get("TRITON_INTERPRET") == "1"
RUN_HERE = ON_GPU or CHILD
DEVICE = "cuda" if ON_GPU else "cpu"

pytestmark = pytest.mark.triton
here = pytest.mark.skipif(
    not RUN_HERE, reason="runs under TRITON_INTERPRET=1 in test_triton_interpreter_subprocess (or natively on CUDA)"
)

if RUN_HERE:
    import torch.nn.functional as F

    from sbert_align.kernels import pairwise_loss, similarity_topk
    from sbert_align.kernels._inputs import check_pair_inputs
    from sbert_align.kernels.triton_pairwise import triton_pairwise_loss
    from sbert_align.objectives import get_objective

OBJECTIVES = [
    ("supcon", {"temperature": 0.1}),
    ("supcon", {"temperature": 0.5, "reduction": "sum"}),
    ("supcon", {"temperature": 0.02}),  # scale 50 > 40: the running-maximum log-sum-exp path
    ("cosine_target", {"t_neg": 0.0}),
    ("cosine_target", {"t_neg": -0.3, "balance": True}),
    ("margin", {"margin": 0.2}),
    ("margin", {"margin": 0.5, "reduction": "sum"}),
]
OBJ_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items())}" for n, p in OBJECTIVES]
TOL = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def test_triton_interpreter_subprocess(request):
    """Without CUDA: run this module's tests in a child process with TRITON_INTERPRET=1 set before Triton loads."""
    if RUN_HERE:
        pytest.skip("the kernel tests run directly in this process")
    pytest.importorskip("triton")
    markexpr = request.config.getoption("markexpr") or ""
    child_expr = f"({markexpr}) and not gpu" if markexpr else "not gpu"
    env = dict(os.environ, TRITON_INTERPRET="1", SBERT_ALIGN_TRITON_CHILD="1", PYTHONWARNINGS="ignore")
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__).resolve()), "-q", "-p", "no:cacheprovider"]
    cmd += ["-m", child_expr, "-x", "-W", "ignore"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and " failed" not in proc.stdout, tail


def _rel(a, b) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    assert torch.isfinite(a).all(), "NaN/inf in the backend's output"
    return float((a - b).norm() / b.norm().clamp_min(1e-3))


def _case(b, m, d, n_classes=3, dtype=torch.float64, seed=0, mem_grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, d, generator=g, dtype=torch.float64).to(device=DEVICE, dtype=dtype).requires_grad_(True)
    mem = torch.randn(m, d, generator=g, dtype=torch.float64).to(device=DEVICE, dtype=dtype).requires_grad_(mem_grad)
    y = torch.randint(0, n_classes, (b,), generator=g).to(DEVICE)
    ym = torch.randint(0, n_classes, (m,), generator=g).to(DEVICE)
    return q, mem, y, ym


def _run(backend, q, keys, y, key_labels, name, params, exclude_self, **kw):
    obj = get_objective(name, **params)
    inputs = check_pair_inputs(q, keys, y, key_labels, exclude_self)
    if backend == "triton":
        loss = triton_pairwise_loss(inputs, obj, **kw)
    else:
        loss = pairwise_loss(q, keys, y, key_labels, objective=obj, backend=backend, exclude_self=exclude_self)
    wrt = [q] + [k for k in keys if k.requires_grad and k is not q]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return loss, [torch.zeros_like(w) if g is None else g for w, g in zip(wrt, grads)]


def _compare(q, keys, y, key_labels, name, params, exclude_self, tol, grad_tol=None, **kw):
    ref_loss, ref_grads = _run("reference", q, keys, y, key_labels, name, params, exclude_self)
    loss, grads = _run("triton", q, keys, y, key_labels, name, params, exclude_self, **kw)
    assert loss.dtype == ref_loss.dtype
    lv, rv = float(loss.detach()), float(ref_loss.detach())
    assert abs(lv - rv) <= tol * max(1.0, abs(rv)), (lv, rv)
    for g, rg in zip(grads, ref_grads):
        assert g.dtype == rg.dtype and g.shape == rg.shape
        assert _rel(g, rg) <= (grad_tol or tol), _rel(g, rg)
    return loss, grads


# Small tiles under the interpreter (16 = the smallest tl.dot block) so that B, M and D are not multiples of them,
# several key splits and several backward chunks are exercised.
SMALL = {"tile_size": 16, "chunk_size": 16, "splits": 2}
SHAPES = [(7, 13, 5), (1, 3, 4), (17, 1, 6), (5, 40, 1), (18, 35, 20)]


@here
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("exclude_self", [True, False])
def test_triton_float64_odd_shapes(name, params, shape, exclude_self):
    b, m, d = shape
    q, mem, y, ym = _case(b, m, d, seed=b * 1000 + m * 10 + d, mem_grad=True)
    _compare(q, [q, mem], y, [y, ym], name, params, exclude_self, TOL[torch.float64], **SMALL)


@here
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_triton_label_edge_cases(name, params):
    q, mem, _, _ = _case(7, 10, 5)
    cases = [
        ([3, 100, 7, 3, 3, 7, 100], [7, 3, 100, 100, 3, 7, 7, 3, 100, 3]),  # labels with gaps
        ([4] * 7, [4] * 10),  # all one class
        ([0, 10, 20, 30, 40, 50, 60], [1000 + i for i in range(10)]),  # no positives
    ]
    for y, ym in cases:
        y, ym = torch.tensor(y, device=DEVICE), torch.tensor(ym, device=DEVICE)
        _compare(q, [q, mem], y, [y, ym], name, params, True, TOL[torch.float64], **SMALL)


@here
def test_triton_several_parts_and_separate_keys():
    g = torch.Generator().manual_seed(3)

    def t(*shape, grad=False):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_(grad)

    q, extra, mem1, mem2 = t(6, 4, grad=True), t(5, 4, grad=True), t(7, 4), t(3, 4, grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 5], device=DEVICE)
    ys = [y] + [torch.randint(0, 3, (n,), generator=g).to(DEVICE) for n in (5, 7, 3)]
    for name, params in OBJECTIVES:
        _compare(q, [q, extra, mem1, mem2], y, ys, name, params, True, TOL[torch.float64], **SMALL)
        _compare(q, [mem2, extra], y, ys[3:] + ys[1:2], name, params, False, TOL[torch.float64], **SMALL)


@here
def test_triton_key_parts_too_large_for_int32_offsets_are_split(monkeypatch):
    """Kernels address rows in int32: a part with more than 2**31 elements is launched in row ranges (here the limit
    is lowered to 9 rows so that the batch part and the memory are each cut, across the self-exclusion diagonal)."""
    import sbert_align.kernels.triton_pairwise as tp

    q, mem, y, ym = _case(13, 40, 5, n_classes=3, seed=21)
    monkeypatch.setattr(tp, "INT32_ADDRESSABLE", 9 * 5)
    for name, params in OBJECTIVES[::3]:
        _compare(q, [q, mem], y, [y, ym], name, params, True, TOL[torch.float64], **SMALL)


@here
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_triton_no_valid_key_is_finite_with_zero_gradient(name, params):
    q = torch.randn(1, 4, dtype=torch.float64, device=DEVICE, requires_grad=True)
    y = torch.tensor([2], device=DEVICE)
    mem = torch.zeros(0, 4, dtype=torch.float64, device=DEVICE)
    for keys, labels in (([q], [y]), ([q, mem], [y, y[:0]])):
        loss, (grad,) = _run("triton", q, keys, y, labels, name, params, True, **SMALL)
        assert float(loss.detach()) == 0.0
        assert torch.equal(grad, torch.zeros_like(grad))


@here
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,params", OBJECTIVES[::2], ids=OBJ_IDS[::2])
def test_triton_lower_precision(name, params, dtype):
    q, mem, y, ym = _case(19, 37, 24, dtype=dtype, seed=21, mem_grad=False)
    loss, grads = _compare(q, [q, mem], y, [y, ym], name, params, True, TOL[dtype], **SMALL)
    assert loss.dtype == torch.float32 and grads[0].dtype == dtype


def _degenerate_case(dtype):
    """Batch and memory (with grad) each holding a zero row, a row of norm 1e-30 and a row of norm 1e4."""
    g = torch.Generator().manual_seed(5)
    q = torch.randn(7, 5, generator=g, dtype=torch.float64)
    mem = torch.randn(6, 5, generator=g, dtype=torch.float64)
    for x, (zero, tiny, huge) in ((q, (1, 4, 5)), (mem, (0, 3, 2))):
        x[zero] = 0.0
        x[tiny] = x[tiny] / x[tiny].norm() * 1e-30
        x[huge] = x[huge] / x[huge].norm() * 1e4
    y = torch.tensor([0, 1, 0, 1, 2, 2, 0], device=DEVICE)
    ym = torch.tensor([1, 0, 2, 0, 1, 2], device=DEVICE)
    return (
        q.to(device=DEVICE, dtype=dtype).requires_grad_(True),
        mem.to(device=DEVICE, dtype=dtype).requires_grad_(True),
        y,
        ym,
    )


@here
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_triton_degenerate_rows(name, params, dtype):
    """Zero rows and rows of norm 1e-30 are zero vectors in the fused kernels too (inverse norm 0: cosine 0, zero
    gradient), norms of 1e4 are ordinary; finite in every dtype and equal to the reference."""
    q, mem, y, ym = _degenerate_case(dtype)
    loss, grads = _compare(q, [q, mem], y, [y, ym], name, params, True, TOL[dtype], **SMALL)
    assert torch.isfinite(loss).all() and all(torch.isfinite(g).all() for g in grads)
    assert not grads[0][[1, 4]].any() and not grads[1][[0, 3]].any()


@here
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_triton_memory_without_grad(name, params, dtype):
    """A key part without grad (a memory bank) folds its inverse norms into dsim in the backward pass and multiplies
    by the raw keys (fp16 keeps the normalised copy): the query gradient equals the reference's, on odd shapes and
    with a zero row, a row of norm 1e-30 and a row of norm 1e4 in the memory."""
    # Half precision: supcon at temperature <= 0.1 reaches 1.3e-3 (fp16) and 1.26e-2 (bf16) relative gradient error
    # on the second case with the normalised copy too (measured); the folded path is no worse.
    grad_tol = 2 * TOL[dtype] if dtype in (torch.float16, torch.bfloat16) else None
    q, mem, y, ym = _degenerate_case(dtype)
    _compare(q, [q, mem.detach()], y, [y, ym], name, params, True, TOL[dtype], grad_tol, **SMALL)
    q, mem, y, ym = _case(18, 35, 20, dtype=dtype, seed=7, mem_grad=False)
    _compare(q, [mem, q], y, [ym, y], name, params, False, TOL[dtype], grad_tol, **SMALL)


@here
def test_triton_topk_zero_rows_have_similarity_zero():
    from sbert_align.kernels.triton_topk import triton_similarity_topk

    q = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1e-30, 0.0]], device=DEVICE)
    keys = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [3.0, 4.0], [0.0, 0.0]], device=DEVICE)
    values, indices = triton_similarity_topk(q, keys, 4, config=SMALL_TOPK)
    assert indices.cpu().tolist() == [[0, 1, 2, 3], [2, 0, 3, 1], [0, 1, 2, 3]]
    expected = torch.tensor([[0.0] * 4, [0.6, 0.0, 0.0, -1.0], [0.0] * 4])
    assert torch.allclose(values.cpu(), expected, atol=1e-7, rtol=0)


@here
def test_triton_refuses_keys_changed_in_place_before_backward():
    q, mem, y, ym = _case(6, 50, 4)
    loss = triton_pairwise_loss(check_pair_inputs(q, [q, mem], y, [y, ym], True), get_objective("supcon"), **SMALL)
    mem[:3] = 0.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@here
def test_triton_rejects_custom_objective():
    from sbert_align.objectives import PairObjective

    inner = get_objective("supcon")

    class Custom(PairObjective):  # the same formula, but not one the Triton kernels know
        name = "custom"
        n_stats = inner.n_stats
        lse_scale = inner.lse_scale
        pair_stats, pair_grad, finalize = inner.pair_stats, inner.pair_grad, inner.finalize

        def get_config_dict(self):
            return {"objective": self.name}

    q, mem, y, ym = _case(3, 4, 4)
    inputs = check_pair_inputs(q, [q, mem], y, [y, ym], True)
    with pytest.raises(ValueError, match="chunked"):
        triton_pairwise_loss(inputs, Custom())


@here
@pytest.mark.slow
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_triton_larger_shapes(name, params):
    q, mem, y, ym = _case(67, 300, 40, n_classes=5, seed=8)
    _compare(q, [q, mem], y, [y, ym], name, params, True, TOL[torch.float64], tile_size=32, chunk_size=64)


# ---------------------------------------------------------------- fused top-k (similarity_topk backend="triton")
SMALL_TOPK = {"BLOCK_B": 16, "BLOCK_N": 16, "BLOCK_D": 16, "num_warps": 4, "num_stages": 1}


def _assert_valid_topk(values, indices, q, keys, k, tol, normalize=True):
    """``indices`` are a top-k of the float64 truth (up to ``tol``), in order, and ``values`` are their similarities."""
    qd, kd = q.detach().double().cpu(), keys.detach().double().cpu()
    truth = (F.normalize(qd, dim=-1) @ F.normalize(kd, dim=-1).T) if normalize else qd @ kd.T
    values, indices = values.double().cpu(), indices.cpu()
    assert indices.shape == values.shape == (q.shape[0], k)
    assert all(len(set(row)) == k for row in indices.tolist())
    kth = torch.topk(truth, k, dim=1).values[:, -1:]
    at_ours = torch.gather(truth, 1, indices)
    assert (at_ours >= kth - tol).all()
    assert torch.allclose(values, at_ours, atol=tol, rtol=0)
    assert (values[:, :-1] >= values[:, 1:]).all()


@here
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("b,n,d,k", [(37, 203, 20, 5), (1, 1, 1, 1), (5, 7, 3, 7), (20, 150, 9, 64), (17, 40, 33, 1)])
def test_triton_topk_against_float64_truth(dtype, b, n, d, k):
    from sbert_align.kernels.triton_topk import triton_similarity_topk

    g = torch.Generator().manual_seed(b * 1000 + n)
    q = torch.randn(b, d, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    keys = torch.randn(n, d, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    values, indices = triton_similarity_topk(q, keys, k, config=SMALL_TOPK, splits=3)
    assert values.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    _assert_valid_topk(values, indices, q, keys, k, tol={torch.float64: 1e-12, torch.float32: 1e-6}.get(dtype, 1e-5))
    if dtype in (torch.float64, torch.float32):  # no near-ties at this precision: the same answer as chunked
        ref_v, ref_i = similarity_topk(q, keys, k, chunk_size=16, backend="chunked")
        assert torch.equal(indices, ref_i) and torch.allclose(values, ref_v, atol=1e-6, rtol=0)


@here
@pytest.mark.parametrize("splits,chunk_size", [(1, None), (2, None), (3, 5), (1, 16), (4, 33)])
def test_triton_topk_ties_go_to_the_smaller_index(splits, chunk_size):
    """Exact ties (duplicated keys, integer dot products): the smaller key index first, across tiles, programs
    and launches, also at the k-th place."""
    from sbert_align.kernels.triton_topk import triton_similarity_topk

    g = torch.Generator().manual_seed(0)
    base = torch.randint(-3, 4, (9, 4), generator=g).double()
    keys = base.repeat(5, 1).to(DEVICE)  # key j ties with j + 9, j + 18, ...: ties straddle tiles of 16
    q = torch.randint(-3, 4, (7, 4), generator=g).double().to(DEVICE)
    sim = (q @ keys.T).cpu()
    for k in (1, 4, 10, 23, 45):
        _, indices = triton_similarity_topk(
            q, keys, k, normalize=False, config=SMALL_TOPK, splits=splits, chunk_size=chunk_size
        )
        expected = [sorted(range(45), key=lambda j, r=r: (-sim[r, j].item(), j))[:k] for r in range(7)]
        assert indices.cpu().tolist() == expected


@here
def test_triton_topk_splits_queries_and_keys_beyond_int32_offsets(monkeypatch):
    import sbert_align.kernels.triton_pairwise as tp
    from sbert_align.kernels.triton_topk import triton_similarity_topk

    g = torch.Generator().manual_seed(4)
    q = torch.randn(23, 6, generator=g, dtype=torch.float64).to(DEVICE)
    keys = torch.randn(70, 6, generator=g, dtype=torch.float64).to(DEVICE)
    expected = triton_similarity_topk(q, keys, 5, config=SMALL_TOPK)
    monkeypatch.setattr(tp, "INT32_ADDRESSABLE", 10 * 6)  # 10 rows per launch: 3 query blocks, 7 key launches
    values, indices = triton_similarity_topk(q, keys, 5, config=SMALL_TOPK)
    assert torch.equal(indices, expected[1]) and torch.equal(values, expected[0])
    _assert_valid_topk(values, indices, q, keys, 5, tol=1e-12)


@here
def test_triton_topk_through_similarity_topk(monkeypatch):
    monkeypatch.delenv("SBERT_ALIGN_KERNEL", raising=False)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(9, 12, generator=g).to(DEVICE)
    keys = torch.randn(300, 12, generator=g).to(DEVICE)
    values, indices = similarity_topk(q, keys, 6, backend="triton")
    _assert_valid_topk(values, indices, q, keys, 6, tol=1e-6)
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "triton")
    assert torch.equal(similarity_topk(q, keys, 6)[1], indices)
    values, indices = similarity_topk(q, keys * 3.0, 6, normalize=False, backend="triton")
    _assert_valid_topk(values, indices, q, keys * 3.0, 6, tol=1e-5, normalize=False)


# ---------------------------------------------------------------- native CUDA only
gpu = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA device")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
def test_gpu_default_blocks(name, params, dtype):
    """Default GPU block sizes, several splits and chunks, D = 384.

    fp16 gradients get 2e-3: the backward's dsim block is stored in fp16 (rel. 2^-11 per element) and the reference's
    own fp16 gradient is rounded once more; seen at 1.1e-3 and 1.8e-3 on an H100 with D = 384 (the loss keeps 1e-3).
    """
    q, mem, y, ym = _case(300, 5003, 384, n_classes=20, dtype=dtype, seed=4)
    grad_tol = 2e-3 if dtype == torch.float16 else None
    _compare(q, [q, mem], y, [y, ym], name, params, True, TOL[dtype], grad_tol=grad_tol, chunk_size=2048)


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("name,params", OBJECTIVES[::2], ids=OBJ_IDS[::2])
def test_gpu_float64(name, params):
    q, mem, y, ym = _case(70, 333, 33, seed=9, mem_grad=True)
    _compare(q, [q, mem], y, [y, ym], name, params, True, TOL[torch.float64])


def _count_calls(monkeypatch, module, name: str) -> list:
    """Wrap ``module.name`` so that each call appends to the returned list (``auto`` dispatch tests); also clears
    ``$SBERT_ALIGN_KERNEL``."""
    monkeypatch.delenv("SBERT_ALIGN_KERNEL", raising=False)
    calls: list = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


@gpu
@pytest.mark.gpu
def test_gpu_auto_dispatch_picks_triton(monkeypatch):
    import sbert_align.kernels.triton_pairwise as tp

    calls = _count_calls(monkeypatch, tp, "triton_pairwise_loss")
    q, mem, y, ym = _case(256, 20000, 64, dtype=torch.bfloat16)
    pairwise_loss(q, [q, mem], y, [y, ym], exclude_self=True).backward()
    assert calls == [1] and torch.isfinite(q.grad.float()).all()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_gpu_topk_default_blocks(dtype):
    """Default GPU blocks, several programs along the keys, D = 384; keys given on the CPU are moved in chunks."""
    from sbert_align.kernels.triton_topk import triton_similarity_topk

    g = torch.Generator().manual_seed(6)
    q = torch.randn(300, 384, generator=g).to("cuda", dtype)
    keys = torch.randn(20011, 384, generator=g).to(dtype)
    for k in (1, 10, 64):
        values, indices = triton_similarity_topk(q, keys.cuda(), k)
        _assert_valid_topk(values, indices, q, keys, k, tol=1e-6 if dtype == torch.float32 else 1e-5)
        from_cpu = triton_similarity_topk(q, keys, k, chunk_size=4096)
        assert torch.equal(from_cpu[1], indices) or dtype != torch.float32
        _assert_valid_topk(*from_cpu, q, keys, k, tol=1e-6 if dtype == torch.float32 else 1e-5)


@gpu
@pytest.mark.gpu
def test_gpu_topk_auto_dispatch_picks_triton_for_half_inputs(monkeypatch):
    """``auto`` runs the fused top-k for bf16 / fp16 inputs on CUDA (measured faster there) and chunked for fp32."""
    import sbert_align.kernels.triton_topk as tt

    calls = _count_calls(monkeypatch, tt, "triton_similarity_topk")
    g = torch.Generator().manual_seed(8)
    q, keys = torch.randn(129, 384, generator=g).cuda(), torch.randn(7001, 384, generator=g).cuda()
    for dtype in (torch.bfloat16, torch.float16):
        values, indices = similarity_topk(q.to(dtype), keys.to(dtype), 10)
        _assert_valid_topk(values, indices, q.to(dtype), keys.to(dtype), 10, tol=1e-5)
    assert len(calls) == 2
    similarity_topk(q, keys, 10)  # fp32: chunked
    similarity_topk(q.bfloat16(), keys.bfloat16(), 65)  # beyond the kernel's k: chunked
    assert len(calls) == 2

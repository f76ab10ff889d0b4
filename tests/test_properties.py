"""Property tests (hypothesis): the objectives, their reference and chunked backends, and the neighbour search.

Every property is checked against something written independently of the code under test:

* the losses against a brute-force restatement of the formulas in DESIGN.md section 3 (a Python loop over pairs,
  normalisation by the documented rule: ``x / ||x||``, a zero vector below ``NORMALIZE_EPS``), values and
  gradients (autograd through the loop), in float64;
* invariances (permuting the batch, renaming labels, rescaling each embedding by a positive factor) against the
  untransformed run, with the gradients transformed as the maths says they must be;
* ``similarity_topk`` and ``knn_classify`` against exact brute force: embeddings whose entries are 0 or +-1 with one
  or four non-zero entries have norms 1 or 2, so every cosine is a multiple of 1/4, exact in floating point and in
  :class:`fractions.Fraction`; exact ties (duplicated keys, equal cosines) then test the documented tie rule
  (smaller index first) deterministically. Gaussian embeddings (no ties) test the general case to rounding.

Examples are few (``max_examples``) and tiny so that the whole file runs in well under a minute on a CPU; no example
database is written (``database=None``).
"""

from __future__ import annotations

import contextlib
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_kernels import OBJ_IDS, OBJECTIVES  # the same objective settings as the kernel tests

from sbert_align.evaluation import knn_classify
from sbert_align.kernels import NORMALIZE_EPS, pairwise_loss, similarity_topk

D64 = torch.float64
FAST = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

BACKENDS = ("reference", "chunked")


# ---------------------------------------------------------------- problems
@st.composite
def problems(draw, special_rows: bool = True):
    """A batch (B x D) used as keys too, an optional memory (M x D, with grad), labels and the flags.

    With ``special_rows``, some rows are zeroed, duplicated (within the batch and into the memory) or scaled to a
    norm of 1e4."""
    b = draw(st.integers(1, 6))
    m = draw(st.integers(0, 5))
    d = draw(st.integers(2, 5))
    n_classes = draw(st.integers(1, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn(b, d, generator=g, dtype=D64)
    mem = torch.randn(m, d, generator=g, dtype=D64)
    if special_rows:
        for x in (q, mem):
            for i in range(x.shape[0]):
                kind = draw(st.sampled_from(["plain"] * 5 + ["zero", "huge", "copy"]))
                if kind == "zero":
                    x[i] = 0.0
                elif kind == "huge":
                    x[i] = x[i] / x[i].norm() * 1e4
                elif kind == "copy":
                    x[i] = q[draw(st.integers(0, b - 1))]
    y = torch.tensor(draw(st.lists(st.integers(0, n_classes - 1), min_size=b, max_size=b)), dtype=torch.long)
    ym = torch.tensor(draw(st.lists(st.integers(0, n_classes - 1), min_size=m, max_size=m)), dtype=torch.long)
    return {
        "q": q,
        "mem": mem,
        "y": y,
        "ym": ym,
        "exclude_self": draw(st.booleans()),
        "batch_as_keys": m == 0 or draw(st.booleans()),
        "tile": draw(st.integers(1, b + m + 1)),
    }


def _keys(p, q, mem):
    if p["batch_as_keys"]:
        return [q, mem], [p["y"], p["ym"]], p["exclude_self"]
    return [mem], [p["ym"]], False


def _loss_and_grads(p, name, params, backend, q=None, mem=None, y=None, ym=None):
    """Loss and (dq, dmem) for problem ``p`` (optionally with replaced tensors), float64 leaves."""
    q = (p["q"] if q is None else q).detach().clone().requires_grad_(True)
    mem = (p["mem"] if mem is None else mem).detach().clone().requires_grad_(True)
    y = p["y"] if y is None else y
    ym = p["ym"] if ym is None else ym
    pp = dict(p, y=y, ym=ym)
    keys, key_labels, exclude_self = _keys(pp, q, mem)
    loss = pairwise_loss(
        q, keys, y, key_labels, objective=name, backend=backend, exclude_self=exclude_self, tile_size=p["tile"],
        **params,
    )  # fmt: skip
    dq, dmem = torch.autograd.grad(loss, [q, mem], allow_unused=True)
    dq = torch.zeros_like(q) if dq is None else dq
    dmem = torch.zeros_like(mem) if dmem is None else dmem
    return loss.detach(), dq, dmem


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-9) -> bool:
    """Equal up to ``rtol`` of the larger of the two norms (and 1e-12 absolute, for gradients that are ~0)."""
    scale = max(float(a.norm()), float(b.norm()), 1e-3)
    return float((a - b).norm()) <= rtol * scale + 1e-12


# ---------------------------------------------------------------- the brute-force formulas (DESIGN.md section 3)
def _unit(v: torch.Tensor) -> torch.Tensor:
    r = torch.sqrt((v * v).sum())
    return v / r if float(r.detach()) >= NORMALIZE_EPS else v * 0.0


def brute_force_loss(q, keys, y, key_labels, exclude_self, name, params):
    """The objective written out pair by pair, independently of ``sbert_align.objectives`` and the kernels."""
    k_all = torch.cat(keys) if keys else q[:0]
    yk = torch.cat(key_labels).tolist()
    yq = y.tolist()
    qs = [_unit(q[i]) for i in range(q.shape[0])]
    ks = [_unit(k_all[j]) for j in range(k_all.shape[0])]
    per_anchor, pos_terms, neg_terms = [], [], []
    for i, qi in enumerate(qs):
        sims, positive = [], []
        for j, kj in enumerate(ks):
            if exclude_self and i == j:
                continue
            sims.append((qi * kj).sum())
            positive.append(yq[i] == yk[j])
        if name == "supcon":
            tau = params["temperature"]
            pos = [s for s, p in zip(sims, positive) if p]
            if not pos:
                continue
            lse = torch.logsumexp(torch.stack(sims) / tau, dim=0)
            per_anchor.append(-sum(s / tau - lse for s in pos) / len(pos))
        else:
            for s, p in zip(sims, positive):
                if p:
                    pos_terms.append((1.0 - s) ** 2)
                elif name == "cosine_target":
                    neg_terms.append((s - params.get("t_neg", 0.0)) ** 2)
                else:
                    neg_terms.append(torch.clamp(s - params["margin"], min=0.0) ** 2)
    zero = q.sum() * 0.0
    reduction = params.get("reduction", "mean")
    if name == "supcon":
        if not per_anchor:
            return zero
        total = sum(per_anchor)
        return total if reduction == "sum" else total / len(per_anchor)
    if reduction == "sum":
        return sum(pos_terms + neg_terms, zero)
    if params.get("balance"):
        groups = [sum(t, zero) / len(t) for t in (pos_terms, neg_terms) if t]
        return sum(groups, zero) / len(groups) if groups else zero
    terms = pos_terms + neg_terms
    return sum(terms, zero) / len(terms) if terms else zero


@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
@FAST
@given(p=problems())
def test_backends_match_brute_force(name, params, p):
    """reference and chunked equal the pair-by-pair formula (values and gradients), and each other (float64)."""
    q = p["q"].clone().requires_grad_(True)
    mem = p["mem"].clone().requires_grad_(True)
    keys, key_labels, exclude_self = _keys(p, q, mem)
    truth = brute_force_loss(q, keys, p["y"], key_labels, exclude_self, name, params)
    t_dq, t_dmem = torch.autograd.grad(truth, [q, mem], allow_unused=True)
    t_dq = torch.zeros_like(q) if t_dq is None else t_dq
    t_dmem = torch.zeros_like(mem) if t_dmem is None else t_dmem
    truth = truth.detach()
    results = {b: _loss_and_grads(p, name, params, b) for b in BACKENDS}
    for loss, dq, dmem in results.values():
        assert abs(float(loss) - float(truth)) <= 1e-10 * max(1.0, abs(float(truth))), (float(loss), float(truth))
        assert _close(dq, t_dq) and _close(dmem, t_dmem)
    (l_ref, dq_ref, dm_ref), (l_ch, dq_ch, dm_ch) = results["reference"], results["chunked"]
    assert abs(float(l_ref) - float(l_ch)) <= 1e-10 * max(1.0, abs(float(l_ref)))
    assert _close(dq_ch, dq_ref, 1e-10) and _close(dm_ch, dm_ref, 1e-10)


# ---------------------------------------------------------------- invariances
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
@FAST
@given(p=problems(), data=st.data())
def test_permutation_invariance(name, params, backend, p, data):
    """Permuting the batch (queries, their labels and the batch keys together) and the memory changes nothing but
    the order of the gradient rows."""
    b, m = p["q"].shape[0], p["mem"].shape[0]
    perm = torch.tensor(data.draw(st.permutations(range(b))), dtype=torch.long)
    perm_m = torch.tensor(data.draw(st.permutations(range(m))), dtype=torch.long)
    loss, dq, dmem = _loss_and_grads(p, name, params, backend)
    loss2, dq2, dmem2 = _loss_and_grads(
        p, name, params, backend, q=p["q"][perm], mem=p["mem"][perm_m], y=p["y"][perm], ym=p["ym"][perm_m]
    )
    assert abs(float(loss2) - float(loss)) <= 1e-11 * max(1.0, abs(float(loss)))
    assert _close(dq2, dq[perm], 1e-10) and _close(dmem2, dmem[perm_m], 1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
@FAST
@given(p=problems(), data=st.data())
def test_relabelling_invariance(name, params, backend, p, data):
    """Any injective renaming of the class ids (negative and huge ids included) gives the same loss and gradients."""
    used = sorted(set(p["y"].tolist()) | set(p["ym"].tolist()))
    new = data.draw(st.lists(st.integers(-(2**40), 2**40), min_size=len(used), max_size=len(used), unique=True))
    mapping = dict(zip(used, new))
    y2 = torch.tensor([mapping[v] for v in p["y"].tolist()], dtype=torch.long)
    ym2 = torch.tensor([mapping[v] for v in p["ym"].tolist()], dtype=torch.long)
    loss, dq, dmem = _loss_and_grads(p, name, params, backend)
    loss2, dq2, dmem2 = _loss_and_grads(p, name, params, backend, y=y2, ym=ym2)
    assert float(loss2) == float(loss)
    assert torch.equal(dq2, dq) and torch.equal(dmem2, dmem)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,params", OBJECTIVES, ids=OBJ_IDS)
@FAST
@given(p=problems(), data=st.data())
def test_positive_rescaling_invariance(name, params, backend, p, data):
    """Scaling row i by c_i > 0 keeps every cosine, hence the loss; the gradient of a function that is constant
    along rays scales by 1 / c_i. (Rows stay far above NORMALIZE_EPS; zero rows stay zero.)"""
    b, m = p["q"].shape[0], p["mem"].shape[0]
    exps = st.floats(-3.0, 3.0, allow_nan=False)
    c_q = 10.0 ** torch.tensor(data.draw(st.lists(exps, min_size=b, max_size=b)), dtype=D64)
    c_m = 10.0 ** torch.tensor(data.draw(st.lists(exps, min_size=m, max_size=m)), dtype=D64)
    for x, c in ((p["q"], c_q), (p["mem"], c_m)):
        norms = x.norm(dim=1) * c
        assume(bool(((norms == 0) | (norms > 1e3 * NORMALIZE_EPS)).all()))
    loss, dq, dmem = _loss_and_grads(p, name, params, backend)
    loss2, dq2, dmem2 = _loss_and_grads(p, name, params, backend, q=p["q"] * c_q[:, None], mem=p["mem"] * c_m[:, None])
    assert abs(float(loss2) - float(loss)) <= 1e-10 * max(1.0, abs(float(loss)))
    assert _close(dq2 * c_q[:, None], dq, 1e-8) and _close(dmem2 * c_m[:, None], dmem, 1e-8)


# ---------------------------------------------------------------- finite everywhere
def _autocast_available(dtype: torch.dtype) -> str | None:
    """None when CPU autocast with ``dtype`` runs here, else why not."""
    try:
        with torch.autocast("cpu", dtype=dtype):
            out = torch.ones(2, 2) @ torch.ones(2, 2)
    except (RuntimeError, TypeError) as exc:
        return f"CPU autocast with {dtype} is not supported by torch {torch.__version__}: {exc}"
    if out.dtype != dtype:
        return f"CPU autocast with {dtype} leaves matmul in {out.dtype} in torch {torch.__version__}"
    return None


PRECISIONS = {
    # name: (input dtype, autocast dtype or None)
    "float64": (D64, None),
    "float32": (torch.float32, None),
    "bfloat16": (torch.bfloat16, None),
    "float16": (torch.float16, None),
    "autocast-bfloat16": (torch.float32, torch.bfloat16),
    "autocast-float16": (torch.float32, torch.float16),
}
SCENARIOS = ["one_class", "all_distinct", "duplicates", "zero_rows", "huge_norms", "everything"]
FINITE_OBJECTIVES = OBJECTIVES + [
    ("supcon", {"temperature": 0.01}),
    ("supcon", {"temperature": 0.01, "reduction": "sum"}),
]


@st.composite
def scenarios(draw):
    """A batch and a memory shaped by one of the hard cases of the brief."""
    scenario = draw(st.sampled_from(SCENARIOS))
    b, m, d = draw(st.integers(2, 6)), draw(st.integers(0, 5)), draw(st.integers(2, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q, mem = torch.randn(b, d, generator=g, dtype=D64), torch.randn(m, d, generator=g, dtype=D64)
    y, ym = torch.randint(0, 3, (b,), generator=g), torch.randint(0, 3, (m,), generator=g)
    zero_q, zero_m = [], []
    if scenario == "one_class":
        y, ym = torch.full((b,), 7), torch.full((m,), 7)
    if scenario == "all_distinct":
        y, ym = torch.arange(b), torch.arange(b, b + m)
    if scenario in ("duplicates", "everything"):
        q[1:] = q[0]  # every query the same vector
        mem[: m // 2] = q[0]
    if scenario in ("zero_rows", "everything"):
        zero_q = sorted(set(draw(st.lists(st.integers(0, b - 1), min_size=1, max_size=b))))
        zero_m = sorted(set(draw(st.lists(st.integers(0, m - 1), max_size=m)))) if m else []
        q[zero_q], mem[zero_m] = 0.0, 0.0
    if scenario in ("huge_norms", "everything"):
        q[-1] = q[-1] / q[-1].norm().clamp_min(1e-300) * 1e4
        if m:
            mem[-1] = mem[-1] / mem[-1].norm().clamp_min(1e-300) * 1e4
    return scenario, q, mem, y, ym, zero_q, zero_m, draw(st.integers(1, b + m))


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("name,params", FINITE_OBJECTIVES, ids=[f"{i}" for i in range(len(FINITE_OBJECTIVES))])
@settings(max_examples=6, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scenarios())
def test_finite_in_hard_cases(name, params, precision, case):
    """One class, all classes distinct, duplicated rows, zero rows, norms of 1e4, every dtype and CPU autocast
    (temperature down to 0.01): finite loss and gradients from both backends; zero rows get no gradient; with no
    positive pair supcon is exactly 0; and the loss is the float64 brute force on the same (rounded) inputs."""
    scenario, q64, mem64, y, ym, zero_q, zero_m, tile = case
    dtype, autocast = PRECISIONS[precision]
    if autocast is not None and (reason := _autocast_available(autocast)):
        pytest.skip(reason)
    rounded_q, rounded_m = q64.to(dtype).double(), mem64.to(dtype).double()
    truth = float(brute_force_loss(rounded_q, [rounded_q, rounded_m], y, [y, ym], True, name, params))
    for backend in BACKENDS:
        q = q64.to(dtype).requires_grad_(True)
        mem = mem64.to(dtype).requires_grad_(True)
        ctx = torch.autocast("cpu", dtype=autocast) if autocast is not None else contextlib.nullcontext()
        with ctx:
            loss = pairwise_loss(
                q, [q, mem], y, [y, ym], objective=name, backend=backend, exclude_self=True, tile_size=tile, **params
            )
        dq, dmem = torch.autograd.grad(loss, [q, mem])
        loss = loss.detach()
        assert torch.isfinite(loss), (backend, scenario, loss)
        assert torch.isfinite(dq).all() and torch.isfinite(dmem).all(), (backend, scenario, dq, dmem)
        assert dq.dtype == dtype and dmem.dtype == dtype
        assert not dq[zero_q].any() and not dmem[zero_m].any()
        if scenario == "all_distinct" and name == "supcon":
            assert float(loss) == 0.0 and not dq.any() and not dmem.any()
        # fp32 arithmetic on the rounded inputs: ~1e-7 relative in each cosine, times 1 / temperature in supcon
        tol = 1e-10 if dtype == D64 else 1e-5 / params.get("temperature", 1.0)
        assert abs(float(loss) - truth) <= tol * max(1.0, abs(truth)), (backend, scenario, float(loss), truth)


# ---------------------------------------------------------------- neighbour search against brute force
@st.composite
def dyadic_rows(draw, n: int, d: int):
    """``n`` rows in {0, +-1}^d with 0, 1 or 4 non-zero entries: norms 0, 1 or 2, cosines multiples of 1/4."""
    rows = []
    for _ in range(n):
        nnz = draw(st.sampled_from([1, 1, 4, 4, 4, 0]))
        support = draw(st.permutations(range(d)))[:nnz]
        row = [0] * d
        for j in support:
            row[j] = draw(st.sampled_from([-1, 1]))
        rows.append(row)
    return rows


def _exact_cosines(queries: list[list[int]], keys: list[list[int]]) -> list[list[Fraction]]:
    """Cosines as exact fractions; a zero row has cosine 0 with everything (the documented rule)."""
    norm = {0: 0, 1: 1, 4: 2}

    def nz(v):
        return norm[sum(x * x for x in v)]

    return [
        [
            Fraction(sum(a * b for a, b in zip(qr, kr)), nz(qr) * nz(kr)) if nz(qr) and nz(kr) else Fraction(0)
            for kr in keys
        ]
        for qr in queries
    ]


def _brute_topk(sims: list[list[Fraction]], k: int, exclude: list[int] | None = None) -> list[list[int]]:
    """Full sort by (similarity descending, index ascending), the documented tie rule; ``exclude[r]`` is left out."""
    out = []
    for r, row in enumerate(sims):
        order = sorted((j for j in range(len(row)) if exclude is None or j != exclude[r]), key=lambda j: (-row[j], j))
        out.append(order[:k])
    return out


@st.composite
def exact_search_problems(draw):
    d = draw(st.integers(4, 6))
    n_keys = draw(st.integers(1, 12))
    keys = draw(dyadic_rows(n_keys, d))
    # duplicated keys: copy some keys over others
    for i in range(n_keys):
        if draw(st.booleans()):
            keys[i] = list(keys[draw(st.integers(0, n_keys - 1))])
    queries = draw(dyadic_rows(draw(st.integers(1, 5)), d))
    k = draw(st.sampled_from([1, n_keys, draw(st.integers(1, n_keys))]))
    return queries, keys, k, draw(st.integers(1, n_keys + 1))


@FAST
@given(
    case=exact_search_problems(),
    backend=st.sampled_from(["chunked", "reference"]),
    dtype=st.sampled_from([D64, torch.float32, torch.bfloat16]),
)
def test_similarity_topk_exact_against_brute_force(case, backend, dtype):
    """Exact ties everywhere (cosines are multiples of 1/4, keys duplicated): the very indices of a full sort by
    (cosine desc, index asc), and the exact cosines, whatever the chunking; k = 1 and k = N included."""
    queries, keys, k, chunk_size = case
    sims = _exact_cosines(queries, keys)
    values, indices = similarity_topk(
        torch.tensor(queries, dtype=dtype), torch.tensor(keys, dtype=dtype), k, chunk_size=chunk_size, backend=backend
    )
    expected = _brute_topk(sims, k)
    assert indices.tolist() == expected
    assert values.tolist() == [[float(sims[r][j]) for j in row] for r, row in enumerate(expected)]


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    n_q=st.integers(1, 6),
    n_keys=st.integers(1, 30),
    d=st.integers(1, 8),
    data=st.data(),
)
def test_similarity_topk_gaussian_against_brute_force(seed, n_q, n_keys, d, data):
    """Gaussian embeddings (float64 and float32): a top-k of the float64 cosine matrix, in order, with its values."""
    g = torch.Generator().manual_seed(seed)
    q, keys = torch.randn(n_q, d, generator=g, dtype=D64), torch.randn(n_keys, d, generator=g, dtype=D64)
    k = data.draw(st.integers(1, n_keys))
    truth = (q / q.norm(dim=1, keepdim=True)) @ (keys / keys.norm(dim=1, keepdim=True)).T
    order = [sorted(range(n_keys), key=lambda j, r=r: (-float(truth[r, j]), j))[:k] for r in range(n_q)]
    for dtype, tol in ((D64, 1e-12), (torch.float32, 1e-6)):
        values, indices = similarity_topk(q.to(dtype), keys.to(dtype), k, chunk_size=data.draw(st.integers(1, 31)))
        got = torch.gather(truth, 1, indices)
        assert torch.allclose(values.double(), got, atol=tol, rtol=0)
        kth = torch.tensor([[truth[r, row[-1]]] for r, row in enumerate(order)], dtype=D64)
        assert (got >= kth - 2 * tol).all()  # every neighbour is at least as similar as the true k-th (to rounding)
        # where no two cosines are within the tolerance, the order is the brute force's exactly
        gaps = (truth[:, :, None] - truth[:, None, :]).abs() + torch.eye(n_keys, dtype=D64) * 10
        if bool((gaps > 4 * tol).all()):
            assert indices.tolist() == order


def _brute_knn(sims, ref_labels: list[int], k: int, weights: str, exclude=None) -> list[int]:
    """The vote of knn_classify's docstring, written out: k nearest by (cos desc, index asc); most votes (1 each, or
    1 / (1 - cos) with neighbours at distance 0 counting 1 and the others 0); ties to the highest summed cosine, then
    to the class of the nearest neighbour among the tied classes."""
    out = []
    for r, neighbours in enumerate(_brute_topk(sims, k, exclude)):
        cos = [sims[r][j] for j in neighbours]
        if weights == "uniform":
            w = [1] * k
        elif any(c == 1 for c in cos):
            w = [1 if c == 1 else 0 for c in cos]
        else:
            w = [1 / (1 - c) for c in cos]
        votes, summed = {}, {}
        for j, c, wj in zip(neighbours, cos, w):
            votes[ref_labels[j]] = votes.get(ref_labels[j], 0) + wj
            summed[ref_labels[j]] = summed.get(ref_labels[j], 0) + c
        best = max(votes.values())
        tied = [c for c in votes if votes[c] == best]
        best_sum = max(summed[c] for c in tied)
        tied = [c for c in tied if summed[c] == best_sum]
        out.append(next(ref_labels[j] for j in neighbours if ref_labels[j] in tied))
    return out


@st.composite
def exact_knn_problems(draw):
    d = draw(st.integers(4, 6))
    n_refs = draw(st.integers(3, 12))
    refs = draw(dyadic_rows(n_refs, d))
    for i in range(n_refs):
        if draw(st.booleans()):
            refs[i] = list(refs[draw(st.integers(0, n_refs - 1))])
    labels = draw(st.lists(st.integers(0, 3), min_size=n_refs, max_size=n_refs))
    queries = draw(dyadic_rows(draw(st.integers(1, 5)), d))
    return refs, labels, queries, draw(st.integers(1, n_refs + 1))


@FAST
@given(case=exact_knn_problems(), data=st.data())
def test_knn_classify_exact_against_brute_force(case, data):
    """Uniform votes with exact ties (equal cosines, duplicated references, tied votes and tied sums): the tie
    rules of the docstring, for k = 1, k = N - 1 and in between, plain and leave-one-out."""
    refs, labels, queries, chunk_size = case
    n = len(refs)
    for k in sorted({1, n - 1, data.draw(st.integers(1, n - 1))}):
        expected = _brute_knn(_exact_cosines(queries, refs), labels, k, "uniform")
        got = knn_classify(
            torch.tensor(refs, dtype=D64), labels, torch.tensor(queries, dtype=D64), k=k, chunk_size=chunk_size
        )
        assert got.tolist() == expected, (k, got, expected)
        if k <= n - 2:
            expected = _brute_knn(_exact_cosines(refs, refs), labels, k, "uniform", exclude=list(range(n)))
            got = knn_classify(torch.tensor(refs, dtype=D64), labels, k=k, leave_one_out=True, chunk_size=chunk_size)
            assert got.tolist() == expected, ("leave_one_out", k, got, expected)


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    n_refs=st.integers(2, 25),
    n_q=st.integers(1, 6),
    d=st.integers(2, 6),
    data=st.data(),
)
def test_knn_classify_distance_weights_against_brute_force(seed, n_refs, n_q, d, data):
    """Distance-weighted votes on Gaussian embeddings (no ties): the class with the largest sum of 1 / (1 - cos)."""
    g = torch.Generator().manual_seed(seed)
    refs, queries = torch.randn(n_refs, d, generator=g, dtype=D64), torch.randn(n_q, d, generator=g, dtype=D64)
    labels = data.draw(st.lists(st.integers(0, 3), min_size=n_refs, max_size=n_refs))
    k = data.draw(st.integers(1, n_refs - 1))
    truth = (queries / queries.norm(dim=1, keepdim=True)) @ (refs / refs.norm(dim=1, keepdim=True)).T
    sims = truth.tolist()
    # no near-ties in the neighbour order or in the votes, so float rounding cannot change the answer
    for row in sims:
        s = sorted(row, reverse=True)
        assume(all(a - b > 1e-9 for a, b in zip(s, s[1:])))
        top = s[:k]
        votes = {}
        for c in top:
            lab = labels[row.index(c)]
            votes[lab] = votes.get(lab, 0.0) + 1 / (1 - c)
        v = sorted(votes.values(), reverse=True)
        assume(len(v) == 1 or v[0] - v[1] > 1e-6 * v[0])
    expected = _brute_knn(sims, labels, k, "distance")
    got = knn_classify(refs, np.asarray(labels), queries, k=k, weights="distance")
    assert got.tolist() == expected

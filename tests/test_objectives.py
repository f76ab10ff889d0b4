"""Objective formulas against hand-computed cases, analytic tile gradients against autograd, gradcheck in float64."""

from __future__ import annotations

import math

import pytest
import torch

from sbert_align import pairwise_loss
from sbert_align.objectives import CosineTargetObjective, MarginObjective, SupConObjective, get_objective

D64 = torch.float64


def _masks(pos, valid):
    return torch.tensor(pos, dtype=torch.bool), torch.tensor(valid, dtype=torch.bool)


def test_cosine_target_hand_computed():
    sim = torch.tensor([[0.5, -0.2, 0.9], [0.1, 0.4, 0.0]], dtype=D64)
    pos, valid = _masks([[1, 0, 1], [0, 1, 0]], [[1, 1, 0], [1, 1, 1]])
    # valid positives: (0,0)=0.5, (1,1)=0.4 ; valid negatives: (0,1)=-0.2, (1,0)=0.1, (1,2)=0.0 ; t_neg = 0.1
    pos_terms = [(1 - 0.5) ** 2, (1 - 0.4) ** 2]
    neg_terms = [(-0.2 - 0.1) ** 2, (0.1 - 0.1) ** 2, (0.0 - 0.1) ** 2]
    obj = CosineTargetObjective(t_neg=0.1)
    assert obj.loss(sim, pos, valid).item() == pytest.approx((sum(pos_terms) + sum(neg_terms)) / 5)
    obj_sum = CosineTargetObjective(t_neg=0.1, reduction="sum")
    assert obj_sum.loss(sim, pos, valid).item() == pytest.approx(sum(pos_terms) + sum(neg_terms))
    obj_bal = CosineTargetObjective(t_neg=0.1, balance=True)
    expected = (sum(pos_terms) / 2 + sum(neg_terms) / 3) / 2
    assert obj_bal.loss(sim, pos, valid).item() == pytest.approx(expected)


def test_margin_hand_computed():
    sim = torch.tensor([[0.9, 0.7, 0.2]], dtype=D64)
    pos, valid = _masks([[1, 0, 0]], [[1, 1, 1]])
    obj = MarginObjective(margin=0.5)
    expected = ((1 - 0.9) ** 2 + (0.7 - 0.5) ** 2 + 0.0) / 3
    assert obj.loss(sim, pos, valid).item() == pytest.approx(expected)


def test_supcon_hand_computed():
    tau = 0.5
    sim = torch.tensor([[0.8, 0.3, -0.1, 0.5], [0.2, 0.9, 0.4, 0.0]], dtype=D64)
    pos, valid = _masks([[1, 1, 0, 0], [0, 0, 0, 0]], [[0, 1, 1, 1], [1, 1, 1, 1]])
    # anchor 0: valid keys 1,2,3; positives {1}. anchor 1: no positive -> contributes nothing.
    lse = math.log(math.exp(0.3 / tau) + math.exp(-0.1 / tau) + math.exp(0.5 / tau))
    expected = lse - 0.3 / tau
    obj = SupConObjective(temperature=tau)
    assert obj.loss(sim, pos, valid).item() == pytest.approx(expected)


def test_supcon_two_positives_mean():
    tau = 1.0
    sim = torch.tensor([[0.1, 0.2, 0.3]], dtype=D64)
    pos, valid = _masks([[1, 1, 0]], [[1, 1, 1]])
    lse = math.log(sum(math.exp(s) for s in (0.1, 0.2, 0.3)))
    expected = -0.5 * ((0.1 - lse) + (0.2 - lse))
    assert SupConObjective(temperature=tau).loss(sim, pos, valid).item() == pytest.approx(expected)


def test_pairwise_loss_with_known_angles():
    # 2-D unit vectors at known angles give exact cosines.
    angles = torch.tensor([0.0, math.pi / 3, math.pi / 2], dtype=D64)
    emb = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * torch.tensor([[2.0], [0.5], [3.0]], dtype=D64)
    labels = torch.tensor([0, 0, 1])
    loss = pairwise_loss(emb, emb, labels, labels, objective="cosine_target", exclude_self=True, backend="reference")
    # pairs (ordered, i != j): (0,1) pos cos=1/2, (0,2) neg cos=0, (1,0) pos 1/2, (1,2) neg cos=sqrt(3)/2,
    # (2,0) neg 0, (2,1) neg sqrt(3)/2
    terms = [0.25, 0.0, 0.25, 0.75, 0.0, 0.75]
    assert loss.item() == pytest.approx(sum(terms) / 6)


OBJECTIVES = [
    CosineTargetObjective(t_neg=-0.2),
    CosineTargetObjective(balance=True),
    MarginObjective(margin=0.3),
    SupConObjective(temperature=0.2),
]


@pytest.mark.parametrize("obj", OBJECTIVES, ids=repr)
def test_pair_grad_matches_autograd(obj):
    torch.manual_seed(0)
    sim = (torch.rand(5, 7, dtype=D64) * 2 - 1).requires_grad_(True)
    pos = torch.rand(5, 7) < 0.4
    valid = torch.rand(5, 7) < 0.8
    g = torch.randn(5, obj.n_stats, dtype=D64)
    stats = obj.pair_stats(sim, pos, valid)
    (expected,) = torch.autograd.grad((stats * g).sum(), sim)
    assert torch.allclose(obj.pair_grad(sim.detach(), pos, valid, g), expected)


@pytest.mark.parametrize("objective", ["cosine_target", "margin", "supcon"])
def test_reference_gradcheck_with_memory(objective):
    torch.manual_seed(1)
    q = torch.randn(6, 4, dtype=D64, requires_grad=True)
    mem = torch.randn(9, 4, dtype=D64)
    y, ym = torch.tensor([0, 1, 0, 2, 2, 1]), torch.randint(0, 3, (9,))
    params = {"margin": 0.1} if objective == "margin" else {}

    def f(q):
        return pairwise_loss(q, [q, mem], y, [y, ym], objective=objective, exclude_self=True, **params)

    assert torch.autograd.gradcheck(f, (q,))


@pytest.mark.parametrize("objective", ["cosine_target", "margin", "supcon"])
def test_single_example_is_finite_zero(objective):
    q = torch.randn(1, 8, requires_grad=True)
    y = torch.tensor([3])
    loss = pairwise_loss(q, q, y, y, objective=objective, exclude_self=True)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(q.grad).all() and (q.grad == 0).all()


def test_supcon_without_positives_is_zero_not_nan():
    q = torch.randn(4, 8, requires_grad=True)
    y = torch.arange(4)
    loss = pairwise_loss(q, q, y, y, objective="supcon", exclude_self=True)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(q.grad).all()


def test_cosine_target_without_positives_still_pushes_negatives():
    q = torch.randn(4, 8, requires_grad=True)
    y = torch.arange(4)
    loss = pairwise_loss(q, q, y, y, objective="cosine_target", exclude_self=True)
    loss.backward()
    assert loss.item() > 0 and q.grad.abs().sum() > 0


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="temperature"):
        SupConObjective(temperature=0)
    with pytest.raises(ValueError, match="t_neg"):
        CosineTargetObjective(t_neg=2)
    with pytest.raises(ValueError, match="reduction"):
        MarginObjective(reduction="max")
    with pytest.raises(ValueError, match="balance"):
        CosineTargetObjective(balance=True, reduction="sum")
    with pytest.raises(ValueError, match="objective must be one of"):
        get_objective("triplet")
    with pytest.raises(ValueError, match="Invalid parameters"):
        get_objective("supcon", margin=0.2)


def test_pairwise_loss_input_errors():
    q = torch.randn(4, 8)
    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="integer class ids"):
        pairwise_loss(q, q, y.float(), y)
    with pytest.raises(ValueError, match="expected 4, got 3"):
        pairwise_loss(q, q, y[:3], y)
    with pytest.raises(ValueError, match="dimension 6"):
        pairwise_loss(q, [q, torch.randn(5, 6)], y, [y, torch.zeros(5, dtype=torch.long)])
    with pytest.raises(ValueError, match="backend"):
        pairwise_loss(q, q, y, y, backend="cuda-magic")


def test_env_override_selects_backend(monkeypatch):
    from sbert_align.kernels import resolve_backend

    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "chunked")
    assert resolve_backend("auto", "cpu", 10) == "chunked"
    assert resolve_backend("reference", "cpu", 10) == "reference"
    monkeypatch.setenv("SBERT_ALIGN_KERNEL", "nonsense")
    with pytest.raises(ValueError, match="SBERT_ALIGN_KERNEL"):
        resolve_backend("auto", "cpu", 10)
    monkeypatch.delenv("SBERT_ALIGN_KERNEL")
    assert resolve_backend("auto", "cpu", 10) == "reference"
    assert resolve_backend("auto", "cpu", 1 << 30) == "chunked"

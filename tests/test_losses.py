"""The losses' maths through compute_loss_from_embeddings, their memory semantics and their input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sbert_align import pairwise_loss
from sbert_align.losses import AllNegativesLoss, AnnealedPairLoss, ClassAlignmentLoss


class _Dummy(torch.nn.Module):
    """Stands in for the SentenceTransformer where only compute_loss_from_embeddings is exercised."""


def test_class_alignment_equals_pairwise_formula_and_fills_memory():
    torch.manual_seed(0)
    loss_fn = ClassAlignmentLoss(_Dummy(), objective="supcon", memory_size=6, temperature=0.2)
    e1, y1 = torch.randn(4, 8, requires_grad=True), torch.tensor([0, 1, 0, 2])
    l1 = loss_fn.compute_loss_from_embeddings([e1], y1)
    assert torch.allclose(l1, pairwise_loss(e1, e1, y1, y1, objective="supcon", temperature=0.2, exclude_self=True))
    assert len(loss_fn.memory) == 4 and loss_fn.steps == 1
    e2, y2 = torch.randn(4, 8, requires_grad=True), torch.tensor([2, 1, 1, 0])
    l2 = loss_fn.compute_loss_from_embeddings([e2], y2)
    expected = pairwise_loss(
        e2, [e2, e1.detach()], y2, [y2, y1], objective="supcon", temperature=0.2, exclude_self=True
    )
    assert torch.allclose(l2, expected)
    l2.backward()
    assert e2.grad is not None and e1.grad is None  # nothing flows into the memory
    assert len(loss_fn.memory) == 6 and loss_fn.memory.get()[1].tolist() == [0, 2, 2, 1, 1, 0]


def test_memory_warmup_and_no_update_under_no_grad():
    loss_fn = ClassAlignmentLoss(_Dummy(), memory_size=100, memory_warmup_steps=2)
    y = torch.tensor([0, 1, 0, 1])
    for _ in range(2):
        loss_fn.compute_loss_from_embeddings([torch.randn(4, 8)], y)
    assert len(loss_fn.memory) == 0 and loss_fn.steps == 2
    loss_fn.compute_loss_from_embeddings([torch.randn(4, 8)], y)
    assert len(loss_fn.memory) == 4
    with torch.no_grad():  # evaluation: reads the memory, never writes it
        loss_fn.compute_loss_from_embeddings([torch.randn(4, 8)], y)
    assert len(loss_fn.memory) == 4 and loss_fn.steps == 3


def test_memory_gives_positives_the_batch_lacks():
    # every class appears once in the batch: without memory, supcon has no positive (loss 0)
    torch.manual_seed(0)
    loss_fn = ClassAlignmentLoss(_Dummy(), objective="supcon", memory_size=50)
    y = torch.arange(4)
    first = loss_fn.compute_loss_from_embeddings([torch.randn(4, 8)], y)
    assert first.item() == 0.0
    second = loss_fn.compute_loss_from_embeddings([torch.randn(4, 8, requires_grad=True)], y)
    assert second.item() > 0.0


def test_sampled_pairs_picks_one_positive_and_one_negative():
    torch.manual_seed(0)
    loss_fn = ClassAlignmentLoss(_Dummy(), objective="cosine_target", pairs="sampled", memory_size=0, seed=3)
    # two classes, two texts each; the sampled positive of each anchor is its only classmate
    e = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    loss = loss_fn.compute_loss_from_embeddings([e], y)
    n = F.normalize(e.detach(), dim=-1)
    sim = n @ n.T
    partner = torch.tensor([1, 0, 3, 2])
    pos_terms = (1 - sim[torch.arange(4), partner]) ** 2
    # the negative is one of the two texts of the other class; the loss lies between the two extremes
    neg_lo = torch.stack([(sim[i, [j for j in range(4) if y[j] != y[i]]] ** 2).min() for i in range(4)])
    neg_hi = torch.stack([(sim[i, [j for j in range(4) if y[j] != y[i]]] ** 2).max() for i in range(4)])
    assert (pos_terms + neg_lo).sum() / 8 - 1e-12 <= loss.item() <= (pos_terms + neg_hi).sum() / 8 + 1e-12
    loss.backward()
    assert torch.isfinite(e.grad).all()
    # seeded: same seed, same sample
    again = ClassAlignmentLoss(_Dummy(), objective="cosine_target", pairs="sampled", memory_size=0, seed=3)
    assert again.compute_loss_from_embeddings([e], y).item() == loss.item()


@pytest.mark.parametrize("pairs", ["all", "sampled"])
def test_single_example_batch_is_finite(pairs):
    loss_fn = ClassAlignmentLoss(_Dummy(), pairs=pairs, memory_size=0)
    e = torch.randn(1, 8, requires_grad=True)
    loss = loss_fn.compute_loss_from_embeddings([e], torch.tensor([2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(e.grad).all()


def test_class_alignment_input_errors():
    with pytest.raises(ValueError, match="memory_size"):
        ClassAlignmentLoss(_Dummy(), memory_size=-1)
    with pytest.raises(ValueError, match="pairs"):
        ClassAlignmentLoss(_Dummy(), pairs="hard")
    with pytest.raises(ValueError, match="balance"):
        ClassAlignmentLoss(_Dummy(), objective="supcon", balance=True)
    loss_fn = ClassAlignmentLoss(_Dummy(), memory_size=10)
    e = torch.randn(3, 8)
    with pytest.raises(ValueError, match="integer class ids"):
        loss_fn.compute_loss_from_embeddings([e], torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="expected 3, got 2"):
        loss_fn.compute_loss_from_embeddings([e], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs integer class labels"):
        loss_fn.compute_loss_from_embeddings([e], None)
    loss_fn.compute_loss_from_embeddings([e], torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="dimension"):
        loss_fn.compute_loss_from_embeddings([torch.randn(3, 5)], torch.tensor([0, 1, 1]))


def test_all_negatives_row_as_class():
    torch.manual_seed(0)
    a, p, n = (torch.randn(3, 8, dtype=torch.float64) for _ in range(3))
    loss_fn = AllNegativesLoss(_Dummy(), objective="supcon")
    got = loss_fn.compute_loss_from_embeddings([a, p, n], None)
    emb = torch.cat([a, p, n])
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 10, 11, 12])  # negatives: classes of their own
    expected = pairwise_loss(emb, emb, labels, labels, objective="supcon", exclude_self=True)
    assert torch.allclose(got, expected)
    with pytest.raises(ValueError, match="label column"):
        loss_fn.compute_loss_from_embeddings([a, p], torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="needs integer class labels"):
        loss_fn.compute_loss_from_embeddings([a], None)


def test_annealed_pair_loss_maths_and_errors():
    torch.manual_seed(0)
    a, b = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    y = torch.tensor([1, 0, 1, 0])
    loss_fn = AnnealedPairLoss(_Dummy(), objective="cosine_target")
    s = F.cosine_similarity(a, b)
    expected = torch.where(y == 1, (1 - s) ** 2, s**2).mean()
    assert torch.allclose(loss_fn.compute_loss_from_embeddings([a, b], y), expected)
    # the default objective: margin (Hadsell contrastive on cosine), non-duplicates above 0.5 pushed down
    default = AnnealedPairLoss(_Dummy())
    assert default.get_config_dict()["objective"] == "margin" and "Hadsell" in default.citation
    b_close = a + 0.3 * b  # some non-duplicates above the margin, so both branches count
    s = F.cosine_similarity(a, b_close)
    assert (s[y == 0] > 0.5).any()
    expected = torch.where(y == 1, (1 - s) ** 2, torch.clamp(s - 0.5, min=0) ** 2).mean()
    assert torch.allclose(default.compute_loss_from_embeddings([a, b_close], y), expected)
    # in-batch negatives with supcon: query i's positive is key i for duplicates only
    ib = AnnealedPairLoss(_Dummy(), objective="supcon", in_batch_negatives=True, temperature=0.1)
    sim = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.1
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    expected_ib = -(logp[0, 0] + logp[2, 2]) / 2
    assert torch.allclose(ib.compute_loss_from_embeddings([a, b], y), expected_ib)
    with pytest.raises(ValueError, match="0 \\(not duplicate\\) or 1"):
        loss_fn.compute_loss_from_embeddings([a, b], torch.tensor([1, 2, 0, 0]))
    with pytest.raises(ValueError, match="0 \\(not duplicate\\) or 1"):
        loss_fn.compute_loss_from_embeddings([a, b], torch.tensor([0.5, 1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="in_batch_negatives"):
        AnnealedPairLoss(_Dummy(), objective="supcon")
    with pytest.raises(ValueError, match="start_length"):
        AnnealedPairLoss(_Dummy(), start_length=1)


def test_annealed_schedule_both_directions():
    down = AnnealedPairLoss(_Dummy(), start_length=70, end_length=20, anneal_steps=10)
    up = AnnealedPairLoss(_Dummy(), start_length=16, end_length=64, anneal_steps=10, schedule="cosine")
    assert (down.current_length, up.current_length) == (70, 16)
    down.steps = up.steps = 10
    assert (down.current_length, up.current_length) == (20, 64)


def test_config_and_citation():
    loss_fn = ClassAlignmentLoss(_Dummy(), objective="supcon", memory_size=128, temperature=0.05)
    config = loss_fn.get_config_dict()
    assert config["objective"] == "supcon" and config["temperature"] == 0.05 and config["memory_size"] == 128
    assert "Khosla" in loss_fn.citation and "Cross-Batch Memory" in loss_fn.citation
    assert "Hadsell" in AllNegativesLoss(_Dummy(), objective="margin").citation
    assert AnnealedPairLoss(_Dummy()).get_config_dict()["schedule"] == "linear"


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_memory_is_written_after_the_backward_not_before(backend):
    """The tiled backends keep the memory's rows (a view) for their backward; the loss must not write the ring
    buffer in place before that backward (it stages the batch and writes it at the next access). The gradient of
    each step is the one of the memory as it was in that step's forward."""
    torch.manual_seed(1)
    loss_fn = ClassAlignmentLoss(_Dummy(), memory_size=10, temperature=0.2, backend=backend)
    for step in range(5):  # the memory wraps around at step 3
        emb = torch.randn(4, 8, requires_grad=True)
        y = torch.randint(0, 3, (4,))
        mem = loss_fn.memory.get_unordered() if len(loss_fn.memory) else None
        snapshot = None if mem is None else (mem[0].clone(), mem[1].clone())
        loss = loss_fn.compute_loss_from_embeddings([emb], y)
        loss.backward()
        ref_emb = emb.detach().clone().requires_grad_(True)
        keys, labels = ([ref_emb], [y]) if snapshot is None else ([ref_emb, snapshot[0]], [y, snapshot[1]])
        pairwise_loss(ref_emb, keys, y, labels, temperature=0.2, exclude_self=True, backend="reference").backward()
        assert torch.allclose(emb.grad, ref_emb.grad, atol=1e-6), step
        assert len(loss_fn.memory) == min(10, 4 * (step + 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "make",
    [
        lambda: ClassAlignmentLoss(torch.nn.Module(), pairs="sampled", memory_size=8, objective="cosine_target"),
        lambda: ClassAlignmentLoss(torch.nn.Module(), memory_size=8),
        lambda: AnnealedPairLoss(torch.nn.Module()),
        lambda: AnnealedPairLoss(torch.nn.Module(), objective="supcon", in_batch_negatives=True),
    ],
)
def test_zero_embedding_rows_give_finite_loss_and_zero_gradient(make, dtype):
    """The kernels' eps rule (a row below NORMALIZE_EPS is a zero vector) holds in the losses' own paths too."""
    loss_fn = make()
    torch.manual_seed(0)
    columns = [torch.randn(6, 8).to(dtype) for _ in range(2 if isinstance(loss_fn, AnnealedPairLoss) else 1)]
    for c in columns:
        c[2] = 0
    leaves = [c.requires_grad_(True) for c in columns]
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    for _ in range(2):  # the second step also reads the memory, which now holds the zero row
        loss = loss_fn.compute_loss_from_embeddings(leaves, labels)
        loss.backward()
        assert torch.isfinite(loss)
        for leaf in leaves:
            assert torch.isfinite(leaf.grad).all() and leaf.grad[2].abs().max() == 0
            leaf.grad = None

"""SimSiamLoss: the loss and gradients against a plain float64 reference, the stop-gradient, the heads training with
the encoder, the collapse watch, the heads as modules and as checkpoint state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_sentence_transformer
from datasets import Dataset
from sentence_transformers import InputExample, SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from torch import nn
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from sbert_align.checkpoints import STATE_FILE_NAME, load_loss_states, save_loss_states
from sbert_align.losses.simsiam import SimSiamLoss, simsiam_objective

EPS = 1e-5  # BatchNorm1d's default


class Stub(nn.Module):
    """A stand-in model for the loss's maths alone (the loss only needs its parameters' device and mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


def make_loss(dim: int = 6, proj: int = 10, pred: int = 4, layers: int = 3, seed: int = 0) -> SimSiamLoss:
    torch.manual_seed(seed)
    loss = SimSiamLoss(Stub(), projector_dim=proj, predictor_dim=pred, projector_layers=layers, embedding_dim=dim)
    with torch.no_grad():  # non-trivial BatchNorm affine parameters, so that the reference checks them
        for module in loss.modules():
            if isinstance(module, nn.BatchNorm1d) and module.affine:
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return loss.double()


# ---------------------------------------------------------------------------------------------------- the reference


def ref_batchnorm(x, gamma=None, beta=None):
    mean = x.mean(0)
    var = ((x - mean) ** 2).mean(0)  # biased, as BatchNorm normalises with in training
    y = (x - mean) / torch.sqrt(var + EPS)
    return y if gamma is None else y * gamma + beta


def ref_heads(x, weights):
    """Projector and predictor written out: weights = (projector [(W, gamma, beta)], predictor (W1, g, b, W2, b2))."""
    projector, (w1, g, b, w2, b2) = weights
    for i, (w, gamma, beta) in enumerate(projector):
        x = ref_batchnorm(x @ w.T, gamma, beta)
        if i < len(projector) - 1:
            x = torch.clamp(x, min=0)
    z = x
    h = torch.clamp(ref_batchnorm(z @ w1.T, g, b), min=0)
    return z, h @ w2.T + b2


def ref_cos(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def ref_loss(e1, e2, weights, stop_gradient=True):
    z1, p1 = ref_heads(e1, weights)
    z2, p2 = ref_heads(e2, weights)
    if stop_gradient:
        z1, z2 = z1.detach(), z2.detach()
    return -(ref_cos(p1, z2).mean() + ref_cos(p2, z1).mean()) / 2


def ref_weights(loss: SimSiamLoss):
    """Fresh float64 leaf copies of the loss's head parameters, in the reference's layout."""
    mods = list(loss.projector)
    linears = [m for m in mods if isinstance(m, nn.Linear)]
    norms = [m for m in mods if isinstance(m, nn.BatchNorm1d)]
    projector = []
    for lin, bn in zip(linears, norms):
        w = lin.weight.detach().clone().requires_grad_()
        if bn.affine:
            projector.append(
                (w, bn.weight.detach().clone().requires_grad_(), bn.bias.detach().clone().requires_grad_())
            )
        else:
            projector.append((w, None, None))
    pl1, pbn, _, pl2 = loss.predictor
    predictor = tuple(
        t.detach().clone().requires_grad_() for t in (pl1.weight, pbn.weight, pbn.bias, pl2.weight, pl2.bias)
    )
    return projector, predictor


def flat(weights) -> list[torch.Tensor]:
    projector, predictor = weights
    return [t for layer in projector for t in layer if t is not None] + list(predictor)


def loss_params(loss: SimSiamLoss) -> list[torch.Tensor]:
    """The loss's head parameters in :func:`flat`'s order."""
    out = []
    for m in loss.projector:
        if isinstance(m, nn.Linear):
            out.append(m.weight)
        elif isinstance(m, nn.BatchNorm1d) and m.affine:
            out += [m.weight, m.bias]
    pl1, pbn, _, pl2 = loss.predictor
    return out + [pl1.weight, pbn.weight, pbn.bias, pl2.weight, pl2.bias]


# ---------------------------------------------------------------------------------------------------- maths


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_loss_and_gradients_match_float64_reference(layers):
    loss = make_loss(layers=layers, seed=layers)
    gen = torch.Generator().manual_seed(10 + layers)
    e1 = torch.randn(7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    e2 = torch.randn(7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    value = loss.compute_loss_from_embeddings([e1, e2])
    value.backward()

    weights = ref_weights(loss)
    r1, r2 = e1.detach().clone().requires_grad_(), e2.detach().clone().requires_grad_()
    expected = ref_loss(r1, r2, weights)
    expected.backward()
    assert value.dtype == torch.float64
    assert torch.allclose(value, expected, rtol=1e-12, atol=1e-12)
    assert torch.allclose(e1.grad, r1.grad, rtol=1e-9, atol=1e-12)
    assert torch.allclose(e2.grad, r2.grad, rtol=1e-9, atol=1e-12)
    for got, ref in zip(loss_params(loss), flat(weights), strict=True):
        assert torch.allclose(got.grad, ref.grad, rtol=1e-9, atol=1e-12)

    # the stop-gradient matters: without it the reference's gradient is different
    n1, n2 = e1.detach().clone().requires_grad_(), e2.detach().clone().requires_grad_()
    ref_loss(n1, n2, ref_weights(loss), stop_gradient=False).backward()
    assert not torch.allclose(e1.grad, n1.grad, rtol=1e-3, atol=1e-6)


def test_objective_sends_no_gradient_to_the_targets():
    gen = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(5, 8, generator=gen, requires_grad=True) for _ in range(4))
    value = simsiam_objective(p1, p2, z1, z2)
    g = torch.autograd.grad(value, [p1, p2, z1, z2], allow_unused=True)
    assert g[2] is None and g[3] is None  # the target branch gets no gradient
    assert g[0].abs().sum() > 0 and g[1].abs().sum() > 0
    # value: minus the mean cosine, each direction (numpy, float64)
    c = [
        np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        for a, b in (
            (p1.detach().double().numpy(), z2.detach().double().numpy()),
            (p2.detach().double().numpy(), z1.detach().double().numpy()),
        )
    ]
    assert math.isclose(value.item(), -(c[0].mean() + c[1].mean()) / 2, rel_tol=1e-6)
    # perfectly predicted targets give the minimum, -1
    assert math.isclose(simsiam_objective(z2, z1, z1, z2).item(), -1.0, rel_tol=1e-6)


def test_collapse_watch():
    loss = make_loss(dim=16, proj=64, pred=16)
    gen = torch.Generator().manual_seed(0)
    e1 = torch.randn(256, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    e2 = e1 + 0.1 * torch.randn(256, 16, generator=gen, dtype=torch.float64)
    assert math.isnan(loss.output_std) and loss.steps == 0
    loss.compute_loss_from_embeddings([e1, e2])
    assert loss.steps == 1
    # independent: numpy std (n - 1) per dimension of the L2-normalised rows, averaged
    e = np.concatenate([e1.detach().numpy(), e2.detach().numpy()])
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    assert math.isclose(loss.embedding_std, e.std(axis=0, ddof=1).mean(), rel_tol=1e-5)
    # spread-out outputs sit near 1/sqrt(D)
    assert loss.healthy_output_std == pytest.approx(1 / 8)
    assert 0.7 / 8 < loss.output_std < 1.2 / 8
    first = {"output_std": loss.output_std, "embedding_std": loss.embedding_std}
    # collapsed: every input the same -> BatchNorm centres the outputs to zero -> std 0
    same = torch.ones(8, 16, dtype=torch.float64, requires_grad=True)
    value = loss.compute_loss_from_embeddings([same, same])
    assert torch.isfinite(value) and loss.output_std == 0.0 and loss.embedding_std == 0.0
    # what the Trainer logs: the mean over the steps since the last log, then nothing until the next step
    assert loss.pop_log_values() == pytest.approx({k: v / 2 for k, v in first.items()})
    assert loss.pop_log_values() is None


def test_heads_follow_the_model_mode_and_evaluation_records_nothing():
    loss = make_loss()
    gen = torch.Generator().manual_seed(0)
    e1, e2 = (
        torch.randn(6, 6, generator=gen, dtype=torch.float64),
        torch.randn(6, 6, generator=gen, dtype=torch.float64),
    )
    bn = loss.projector[1]
    loss.model.eval()
    before = bn.running_mean.clone()
    with torch.no_grad():
        loss.compute_loss_from_embeddings([e1, e2])
    assert not bn.training and torch.equal(bn.running_mean, before) and loss.steps == 0
    # a single pair is fine in evaluation (running statistics)
    with torch.no_grad():
        assert torch.isfinite(loss.compute_loss_from_embeddings([e1[:1], e2[:1]]))
    loss.model.train()
    loss.compute_loss_from_embeddings([e1, e2])
    assert bn.training and not torch.equal(bn.running_mean, before) and loss.steps == 1


def test_single_pair_training_batch_is_skipped_with_a_warning():
    loss = make_loss()
    e1 = torch.randn(1, 6, dtype=torch.float64, requires_grad=True)
    e2 = torch.randn(1, 6, dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="single pair"):
        value = loss.compute_loss_from_embeddings([e1, e2])
    value.backward()
    assert value.item() == 0.0 and e1.grad.abs().sum() == 0
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in loss.heads_parameters())
    assert loss.skipped_batches == 1 and loss.steps == 0


def test_input_errors():
    loss = make_loss()
    e = torch.randn(4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match="two text columns"):
        loss([{}, {}, {}], None)
    with pytest.raises(ValueError, match="takes no labels"):
        loss.compute_loss_from_embeddings([e, e], torch.zeros(4))
    with pytest.raises(ValueError, match="dimension 6, got 5"):
        loss.compute_loss_from_embeddings([e[:, :5], e[:, :5]])
    with pytest.raises(ValueError, match="must both be"):
        loss.compute_loss_from_embeddings([e, e[:3]])
    with pytest.raises(ValueError, match="projector_dim must be an integer >= 1"):
        SimSiamLoss(Stub(), projector_dim=0, embedding_dim=4)
    with pytest.raises(ValueError, match="embedding dimension"):
        SimSiamLoss(Stub())
    with pytest.raises(ValueError, match="column 'label'"):
        loss.check_train_dataset(Dataset.from_dict({"anchor": ["a"], "positive": ["b"], "label": [0]}))
    with pytest.raises(ValueError, match="has 3"):
        loss.check_train_dataset(Dataset.from_dict({"anchor": ["a"], "positive": ["b"], "negative": ["c"]}))
    loss.check_train_dataset(Dataset.from_dict({"anchor": ["a"], "positive": ["b"]}))


def test_config_and_citation():
    loss = make_loss(proj=12, pred=3, layers=2)
    assert loss.get_config_dict() == {"projector_dim": 12, "predictor_dim": 3, "projector_layers": 2}
    assert "chen2021exploring" in loss.citation


# ---------------------------------------------------------------------------------------------------- with a model


def nearby_like_pairs(n: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    words = ["city", "river", "money", "card", "sport", "team", "book", "movie", "food", "animal"]
    anchors, positives = [], []
    for _ in range(n):
        topic = rng.choice(len(words), 3, replace=False)
        anchors.append("the " + " ".join(words[t] for t in topic))
        positives.append("a " + " ".join(words[t] for t in rng.permutation(topic)))
    return Dataset.from_dict({"anchor": anchors, "positive": positives})


def test_trainer_optimises_the_heads_and_logs_the_collapse_watch(tiny_model, tmp_path):
    loss = SimSiamLoss(tiny_model, projector_dim=64, predictor_dim=16)
    before = [p.detach().clone() for p in loss.heads_parameters()]
    args = Args(
        str(tmp_path),
        num_train_epochs=2,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=5,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(model=tiny_model, args=args, train_dataset=nearby_like_pairs(), loss=loss)
    trainer.train()
    in_optimizer = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in loss.heads_parameters())
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, loss.heads_parameters())]
    assert all(changed)  # every head parameter trained
    assert loss.steps == 10 and loss.skipped_batches == 0
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2
    for h in logged:
        assert 0 < h["simsiam_output_std"] <= 1 and 0 < h["simsiam_embedding_std"] <= 1
    assert logged[-1]["simsiam_output_std"] == pytest.approx(loss.output_std, rel=0.5)


def test_fit_trains_the_heads_too(tiny_model):
    data = nearby_like_pairs(16)
    loader = DataLoader(
        [InputExample(texts=[a, p]) for a, p in zip(data["anchor"], data["positive"])], batch_size=8, shuffle=True
    )
    loss = SimSiamLoss(tiny_model, projector_dim=32, predictor_dim=8)
    before = loss.predictor[0].weight.detach().clone()
    tiny_model.fit(train_objectives=[(loader, loss)], epochs=1, warmup_steps=0, show_progress_bar=False)
    assert loss.steps == 2 and not torch.equal(before, loss.predictor[0].weight)


def test_append_heads_gives_the_eval_projection_and_survives_saving(tiny_model, tmp_path):
    loss = SimSiamLoss(tiny_model, projector_dim=24, predictor_dim=8)
    data = nearby_like_pairs(16)
    for _ in range(3):  # a few training forward passes, so that the BatchNorm statistics are not the initial ones
        features = [tiny_model.tokenize(data["anchor"][:8]), tiny_model.tokenize(data["positive"][:8])]
        loss(features, None).backward()
    texts = data["anchor"][:5]
    tiny_model.eval()
    loss.eval()
    with torch.no_grad():
        emb = tiny_model.encode(texts, convert_to_tensor=True)
        z = loss.projector(emb)
        p = loss.predictor(z)
    n_before = len(tiny_model)
    loss.append_heads()
    assert len(tiny_model) == n_before + 3 and tiny_model.get_embedding_dimension() == 24
    assert torch.allclose(tiny_model.encode(texts, convert_to_tensor=True), z, atol=1e-5)
    tiny_model.save(str(tmp_path / "with-heads"))
    reloaded = SentenceTransformer(str(tmp_path / "with-heads"), device="cpu")
    assert torch.allclose(reloaded.encode(texts, convert_to_tensor=True), z, atol=1e-5)
    for _ in range(3):
        del tiny_model[len(tiny_model) - 1]
    loss.append_heads(include_predictor=True)
    assert torch.allclose(tiny_model.encode(texts, convert_to_tensor=True), p, atol=1e-5)


def test_heads_are_checkpoint_state(tiny_model, tmp_path):
    loss = SimSiamLoss(tiny_model, projector_dim=16, predictor_dim=4)
    data = nearby_like_pairs(8)
    features = [tiny_model.tokenize(data["anchor"]), tiny_model.tokenize(data["positive"])]
    loss(features, None).backward()
    save_loss_states(tmp_path, {"SimSiamLoss": loss.get_extra_state()})  # what every Trainer checkpoint writes
    torch.manual_seed(123)
    fresh = SimSiamLoss(tiny_model, projector_dim=16, predictor_dim=4)
    weight = fresh.projector[0].weight
    assert not torch.equal(weight, loss.projector[0].weight)
    fresh.set_extra_state(load_loss_states(tmp_path)["SimSiamLoss"])
    assert fresh.projector[0].weight is weight  # restored in place: an optimiser keeps its parameters
    for a, b in zip(loss.state_dict().items(), fresh.state_dict().items()):
        if a[0] != "_extra_state":
            assert a[0] == b[0] and torch.equal(a[1], b[1]), a[0]
    assert fresh.steps == 1
    assert "_extra_state" in loss.state_dict()


class _StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def _resume_run(tiny_model_dir, out, *, stop=None, resume=False, head_seed=0):
    """6 steps (or ``stop``), the loss of every step recorded; the heads are initialised from ``head_seed``."""
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    torch.manual_seed(head_seed)
    loss = SimSiamLoss(model, projector_dim=16, predictor_dim=4)
    values: list[float] = []
    loss.register_forward_hook(lambda module, inputs, output: values.append(output.item()))
    args = Args(
        output_dir=str(out),
        max_steps=6,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        save_strategy="steps",
        save_steps=3,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=nearby_like_pairs(48),
        loss=loss,
        callbacks=[_StopAt(stop)] if stop else None,
    )
    trainer.train(resume_from_checkpoint=resume or None)
    return values, loss


def test_resumed_run_continues_with_the_heads(tiny_model_dir, tmp_path):
    full, full_loss = _resume_run(tiny_model_dir, tmp_path / "full")
    first, _ = _resume_run(tiny_model_dir, tmp_path / "cut", stop=3)
    # the resumed run builds its heads from another seed: only the checkpoint can make it continue the same run
    rest, resumed_loss = _resume_run(tiny_model_dir, tmp_path / "cut", resume=True, head_seed=1)
    assert len(full) == 6 and len(first) == len(rest) == 3
    torch.testing.assert_close(torch.tensor(first + rest), torch.tensor(full), rtol=0, atol=1e-6)
    for p, q in zip(full_loss.heads_parameters(), resumed_loss.heads_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert resumed_loss.steps == full_loss.steps == 6
    # without the loss state file the resumed run starts from other heads (the check above can fail)
    (tmp_path / "cut" / "checkpoint-3" / STATE_FILE_NAME).unlink()
    with pytest.warns(UserWarning, match="start afresh"):
        other, _ = _resume_run(
            tiny_model_dir, tmp_path / "cut", resume=str(tmp_path / "cut" / "checkpoint-3"), head_seed=1
        )
    assert abs(other[0] - full[3]) > 1e-4

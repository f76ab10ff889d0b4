"""AuxiliaryLoss (main + w(t) * aux, t = optimiser steps) and AnchorLoss (stay close to a frozen copy of the start).

Each check compares with an independent computation: the plain formula on separately computed parts, the schedule's
closed form, or an uninterrupted run for resume.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import build_tiny_model_dir, make_tiny_sentence_transformer
from datasets import Dataset
from sentence_transformers import InputExample, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from test_resume import _StopAt
from test_training import toy_classes
from torch.utils.data import DataLoader

from sbert_align.checkpoints import STATE_FILE_NAME, load_loss_states
from sbert_align.losses import AllNegativesLoss, ClassAlignmentLoss
from sbert_align.losses.anchor import AnchorLoss
from sbert_align.losses.auxiliary import AuxiliaryLoss
from sbert_align.schedules import Schedule


def _features(model, texts):
    return model.tokenize(texts)


def _nudge(model, scale: float = 0.05, seed: int = 1) -> None:
    """Move the student away from its starting point (so the anchor is not zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def _expected_exponential(step: int, total: int, start: float = 1.0, end: float = 0.01) -> float:
    return start * (end / start) ** min(step / total, 1.0)


# ---------------------------------------------------------------------------------------------------- the maths


def test_total_is_main_plus_weighted_aux_and_one_forward_pass(tiny_model):
    model = tiny_model
    model.eval()  # no dropout: separately computed parts must match exactly
    teacher = copy.deepcopy(model)  # the reference's own copy of the starting point
    texts, labels = toy_classes(3)
    labels = torch.tensor(labels)
    loss = AuxiliaryLoss(model, AllNegativesLoss(model), AnchorLoss(model), weight=0.7)
    _nudge(model)

    calls = []
    hook = model[0].register_forward_hook(lambda *a: calls.append(1))
    got = loss([_features(model, texts)], labels)
    assert len(calls) == 1  # the student's forward pass is shared by the two losses
    hook.remove()

    student = model(_features(model, texts))["sentence_embedding"]
    with torch.no_grad():
        target = teacher(_features(teacher, texts))["sentence_embedding"]
    anchor = (1 - F.cosine_similarity(student, target, dim=-1)).mean()
    main = AllNegativesLoss(model)([_features(model, texts)], labels)
    torch.testing.assert_close(got, main + 0.7 * anchor, rtol=1e-6, atol=1e-6)
    assert anchor.item() > 1e-4  # the anchor part is really there
    torch.testing.assert_close(loss.last_main_loss, main.detach())
    torch.testing.assert_close(loss.last_aux_loss, anchor.detach())

    # the gradient of the shared pass equals the gradient of two separate passes
    model.zero_grad()
    loss([_features(model, texts)], labels).backward()
    shared = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    separate = AuxiliaryLoss(model, AllNegativesLoss(model), loss.aux, weight=0.7, share_forward=False)
    separate([_features(model, texts)], labels).backward()
    for a, b in zip(shared, [p.grad for p in model.parameters() if p.grad is not None]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_zero_weight_skips_aux(tiny_model):
    class Boom(torch.nn.Module):
        def forward(self, features, labels):
            raise AssertionError("aux must not run at weight 0")

    texts, labels = toy_classes(2)
    loss = AuxiliaryLoss(tiny_model, AllNegativesLoss(tiny_model), Boom(), weight=0.0)
    value = loss([_features(tiny_model, texts)], torch.tensor(labels))
    assert torch.isfinite(value) and loss.last_aux_loss is None


def test_anchor_matches_the_formula_for_a_given_teacher(tiny_model, tmp_path):
    teacher = make_tiny_sentence_transformer(build_tiny_model_dir(tmp_path / "other", seed=3))
    texts = ["the city river", "what is the capital", "money card bank"]
    tiny_model.eval()
    student = tiny_model(_features(tiny_model, texts))["sentence_embedding"]
    target = teacher(_features(teacher, texts))["sentence_embedding"].detach()
    for metric, want in (
        ("cosine", (1 - F.cosine_similarity(student, target, dim=-1)).mean()),
        ("mse", ((student - target) ** 2).mean()),
        ("l2", (student - target).norm(dim=-1).mean()),
    ):
        got = AnchorLoss(tiny_model, teacher=teacher, distance_metric=metric)([_features(tiny_model, texts)], None)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=metric)
    # two columns: the mean of the two columns' distances
    other = ["the sport team", "a movie book"] + ["the game"]
    two = AnchorLoss(tiny_model, teacher=teacher)([_features(tiny_model, texts), _features(tiny_model, other)], None)
    one_a = AnchorLoss(tiny_model, teacher=teacher)([_features(tiny_model, texts)], None)
    one_b = AnchorLoss(tiny_model, teacher=teacher)([_features(tiny_model, other)], None)
    torch.testing.assert_close(two, (one_a + one_b) / 2)


def test_anchor_distance_in_float32_under_half_precision():
    torch.manual_seed(0)
    target = F.normalize(torch.randn(6, 32), dim=-1)
    student = (target + 1e-3 * torch.randn(6, 32)).bfloat16()  # close to the teacher, as early in training
    loss = AnchorLoss(torch.nn.Linear(2, 2))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss.compute_loss_from_embeddings([student], [target.bfloat16()])
    s, t = student.double(), target.bfloat16().double()
    want = (1 - (s * t).sum(-1) / (s.norm(dim=-1) * t.norm(dim=-1))).mean()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-7)


def test_anchor_starts_at_zero_and_errors(tiny_model):
    tiny_model.eval()
    loss = AnchorLoss(tiny_model)
    value = loss([_features(tiny_model, ["the city", "a bank card"])], None)
    assert value.abs().item() < 1e-6
    with pytest.raises(ValueError, match="must not be the model"):
        AnchorLoss(tiny_model, teacher=tiny_model)
    with pytest.raises(ValueError, match="teacher must be"):
        AnchorLoss(tiny_model, teacher="all-MiniLM-L6-v2")
    with pytest.raises(ValueError, match="distance_metric"):
        AnchorLoss(tiny_model, distance_metric="dot")
    with pytest.raises(ValueError, match="at least as wide"):
        loss.compute_loss_from_embeddings([torch.randn(2, 8)], [torch.randn(2, 4)])


def test_teacher_is_out_of_parameters_state_dict_and_optimizer(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    anchor = AnchorLoss(model)
    loss = AuxiliaryLoss(model, ClassAlignmentLoss(model, memory_size=16), anchor, weight=1.0)
    teacher_ids = {id(p) for p in anchor.teacher.parameters()}
    assert teacher_ids.isdisjoint(id(p) for p in loss.parameters())
    assert not any(key.startswith("_teacher") for key in loss.state_dict())
    teacher_before = {k: v.clone() for k, v in anchor.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in model.state_dict().items()}
    texts, labels = toy_classes(8)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=Args(str(tmp_path), max_steps=3, per_device_train_batch_size=8, report_to="none", use_cpu=True),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=loss,
    )
    trainer.train()
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised and optimised.isdisjoint(teacher_ids)
    assert optimised <= {id(p) for p in model.parameters()}
    for key, value in anchor.teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert any(not torch.equal(v, student_before[k]) for k, v in model.state_dict().items())
    assert all(not p.requires_grad for p in anchor.teacher.parameters()) and not anchor.teacher.training


# ---------------------------------------------------------------------------------------------------- steps


def test_weight_follows_optimizer_steps_under_gradient_accumulation(tiny_model, tmp_path):
    model = tiny_model
    loss = AuxiliaryLoss(model, ClassAlignmentLoss(model, memory_size=0), AnchorLoss(model))  # default schedule
    weights: list[float] = []
    loss.register_forward_hook(lambda module, inputs, output: weights.append(module.last_weight))
    texts, labels = toy_classes(8)
    total = 6
    trainer = SentenceTransformerTrainer(
        model=model,
        args=Args(
            str(tmp_path),
            max_steps=total,
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            report_to="none",
            use_cpu=True,
            logging_steps=1,
        ),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=loss,
    )
    trainer.train()
    want = [_expected_exponential(step, total) for step in range(total) for _ in range(2)]
    torch.testing.assert_close(torch.tensor(weights), torch.tensor(want), rtol=1e-9, atol=0)
    assert loss.total_steps == total and loss.steps == total
    # every training log line carries the weight of the step just taken and the two parts
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in logged] == list(range(1, total + 1))
    for entry in logged:
        assert entry["aux_weight"] == pytest.approx(_expected_exponential(entry["step"] - 1, total))
        assert entry["main_loss"] > 0 and entry["aux_loss"] >= 0
        # the Trainer's loss is the weighted sum of the parts (both averaged over the step's two micro-batches)
        assert entry["loss"] == pytest.approx(entry["main_loss"] + entry["aux_weight"] * entry["aux_loss"], abs=2e-3)


def test_manual_loop_counts_optimizer_steps_not_forward_passes(tiny_model):
    model = tiny_model
    schedule = Schedule("linear", start=1.0, end=0.0, total_steps=4)
    loss = AuxiliaryLoss(model, AllNegativesLoss(model), AnchorLoss(model), weight=schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    texts, labels = toy_classes(4)
    seen = []
    for _ in range(3):  # three optimiser steps of two micro-batches each
        for half in (slice(0, 6), slice(6, 12)):
            value = loss([_features(model, texts[half])], torch.tensor(labels[half]))
            seen.append(loss.last_weight)
            value.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert seen == [1.0, 1.0, 0.75, 0.75, 0.5, 0.5]
    assert loss.steps == 3 and loss.current_weight == 0.25
    # the count travels in state_dict (key "_extra_state"); the restored loss continues at step 3
    restored = AuxiliaryLoss(model, AllNegativesLoss(model), AnchorLoss(model), weight=schedule)
    restored.load_state_dict(loss.state_dict())
    assert restored.steps == 3
    restored([_features(model, texts[:6])], torch.tensor(labels[:6]))
    assert restored.last_weight == 0.25
    # evaluation passes read the weight but take no step
    with torch.no_grad():
        restored([_features(model, texts[:6])], torch.tensor(labels[:6]))
    assert restored.steps == 3


def test_default_schedule_needs_total_steps_outside_a_trainer(tiny_model):
    loss = AuxiliaryLoss(tiny_model, AllNegativesLoss(tiny_model), AnchorLoss(tiny_model))
    assert loss.weight_at(0) == 1.0
    with pytest.raises(ValueError, match="total_steps"):
        loss.weight_at(1)
    given = AuxiliaryLoss(tiny_model, AllNegativesLoss(tiny_model), AnchorLoss(tiny_model), total_steps=10)
    assert given.weight_at(5) == pytest.approx(_expected_exponential(5, 10))
    assert given.weight_at(50) == pytest.approx(0.01)


def test_argument_errors(tiny_model):
    main, aux = AllNegativesLoss(tiny_model), AnchorLoss(tiny_model)
    for kwargs, match in (
        ({"weight": -1.0}, "weight must be a finite number"),
        ({"weight": True}, "weight must be a number"),
        ({"weight": "exp"}, "weight must be a number"),
        ({"weight_end": 0.0}, "exponential"),
        ({"weight_start": "1"}, "weight_start must be a finite number"),
        ({"schedule": "sqrt"}, "schedule must be one of"),
        ({"total_steps": -2}, "total_steps"),
    ):
        with pytest.raises(ValueError, match=match):
            AuxiliaryLoss(tiny_model, main, aux, **kwargs)
    with pytest.raises(ValueError, match="main must be a loss"):
        AuxiliaryLoss(tiny_model, lambda f, y: 0, aux)
    with pytest.raises(ValueError, match="two different"):
        AuxiliaryLoss(tiny_model, main, main)
    with pytest.raises(ValueError, match="steps must be"):
        AuxiliaryLoss(tiny_model, main, aux).steps = -1


def test_config_and_citation(tiny_model):
    loss = AuxiliaryLoss(tiny_model, ClassAlignmentLoss(tiny_model), AnchorLoss(tiny_model), total_steps=100)
    config = loss.get_config_dict()
    assert config["main"] is loss.main and config["aux"] is loss.aux
    assert config["weight"] == "exponential 1 -> 0.01 over 100 steps"
    assert "khosla2020supervised" in loss.citation and "li2017learning" in loss.citation
    assert AuxiliaryLoss(tiny_model, loss.main, loss.aux, weight=0.5).get_config_dict()["weight"] == 0.5


# ---------------------------------------------------------------------------------------------------- wrappers


def test_inside_matryoshka_each_dimension_gets_its_own_parts(tiny_model):
    model = tiny_model
    model.eval()
    teacher = copy.deepcopy(model)
    texts, labels = toy_classes(3)
    labels = torch.tensor(labels)
    inner = AuxiliaryLoss(model, AllNegativesLoss(model), AnchorLoss(model), weight=0.5)
    _nudge(model)
    dims = [32, 12]
    got = MatryoshkaLoss(model, inner, matryoshka_dims=dims)([_features(model, texts)], labels)

    student = model(_features(model, texts))["sentence_embedding"]
    with torch.no_grad():
        target = teacher(_features(teacher, texts))["sentence_embedding"]
    plain = AllNegativesLoss(model)
    want = 0.0
    for d in dims:
        cut = student[:, :d]
        anchor = (1 - F.cosine_similarity(cut, target[:, :d], dim=-1)).mean()
        want = want + plain.compute_loss_from_embeddings([cut], labels) + 0.5 * anchor
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_matryoshka_main_leaves_the_full_embedding_to_aux(tiny_model):
    """MatryoshkaLoss as ``main`` overwrites the features' embedding with narrower ones; ``aux`` must still get the
    full one from the shared pass."""
    model = tiny_model
    model.eval()
    teacher = copy.deepcopy(model)
    texts, labels = toy_classes(3)
    labels = torch.tensor(labels)
    dims = [32, 8]
    main = MatryoshkaLoss(model, AllNegativesLoss(model), matryoshka_dims=dims)
    loss = AuxiliaryLoss(model, main, AnchorLoss(model), weight=0.5)
    _nudge(model)
    calls = []
    hook = model[0].register_forward_hook(lambda *a: calls.append(1))
    got = loss([_features(model, texts)], labels)
    hook.remove()
    assert len(calls) == 1

    student = model(_features(model, texts))["sentence_embedding"]
    with torch.no_grad():
        target = teacher(_features(teacher, texts))["sentence_embedding"]
    plain = AllNegativesLoss(model)
    want = sum(plain.compute_loss_from_embeddings([student[:, :d]], labels) for d in dims)
    want = want + 0.5 * (1 - F.cosine_similarity(student, target, dim=-1)).mean()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_fit_trains_with_the_anchor(tiny_model_dir):
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    texts, labels = toy_classes(8)
    data = DataLoader([InputExample(texts=[t], label=y) for t, y in zip(texts, labels)], shuffle=True, batch_size=8)
    anchor = AnchorLoss(model)
    loss = AuxiliaryLoss(model, ClassAlignmentLoss(model, memory_size=32), anchor)
    teacher_before = [p.clone() for p in anchor.teacher.parameters()]
    model.fit(train_objectives=[(data, loss)], epochs=2, warmup_steps=0, show_progress_bar=False)
    assert loss.steps == 6 and loss.total_steps == 6  # 24 texts, batch 8, 2 epochs
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, anchor.teacher.parameters()))
    assert loss.last_aux_loss is not None and loss.last_aux_loss.item() > 0


# ---------------------------------------------------------------------------------------------------- resume

TOTAL, STOP = 8, 4


def _run(tiny_model_dir, out, *, stop=None, resume=False):
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    # the memory (40 rows, 8 per step) is mid-fill at the stop; the weight decays over the whole run
    loss = AuxiliaryLoss(
        model, ClassAlignmentLoss(model, memory_size=40, memory_warmup_steps=1), AnchorLoss(model), weight_start=2.0
    )
    values: list[float] = []
    loss.register_forward_hook(lambda module, inputs, output: values.append(output.item()))
    texts, labels = toy_classes(27)
    args = Args(
        output_dir=str(out),
        max_steps=TOTAL,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        warmup_steps=2,
        report_to="none",
        use_cpu=True,
        save_strategy="steps",
        save_steps=STOP,
        logging_steps=1,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=loss,
        callbacks=[_StopAt(stop)] if stop else None,
    )
    trainer.train(resume_from_checkpoint=resume or None)
    return values, model, loss


def test_resumed_run_equals_uninterrupted_run(tiny_model_dir, tmp_path):
    full, full_model, full_loss = _run(tiny_model_dir, tmp_path / "full")
    first, _, _ = _run(tiny_model_dir, tmp_path / "cut", stop=STOP)
    checkpoint = tmp_path / "cut" / f"checkpoint-{STOP}"
    states = load_loss_states(checkpoint)
    assert set(states) == {"AuxiliaryLoss", "main"}  # the wrapper's step and the nested memory, by place
    assert states["AuxiliaryLoss"]["steps"] == STOP and states["main"]["memory"]["bank"]["filled"] > 0
    rest, resumed_model, resumed_loss = _run(tiny_model_dir, tmp_path / "cut", resume=True)
    assert len(first) == STOP and len(rest) == TOTAL - STOP
    torch.testing.assert_close(torch.tensor(first + rest), torch.tensor(full), rtol=0, atol=1e-6)
    for (key, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=key)
    assert resumed_loss.steps == full_loss.steps == TOTAL
    (e1, y1), (e2, y2) = full_loss.main.memory.get(), resumed_loss.main.memory.get()
    assert torch.equal(y1, y2) and torch.allclose(e1, e2, atol=1e-6)


def test_resume_without_the_nested_state_differs(tiny_model_dir, tmp_path):
    """The check above can fail: drop the nested memory from the checkpoint and the resumed run is another run."""
    from sbert_align.checkpoints import save_loss_states

    full, _, _ = _run(tiny_model_dir, tmp_path / "full")
    _run(tiny_model_dir, tmp_path / "cut", stop=STOP)
    checkpoint = tmp_path / "cut" / f"checkpoint-{STOP}"
    states = load_loss_states(checkpoint)
    fresh = ClassAlignmentLoss(torch.nn.Linear(1, 1), memory_size=40, memory_warmup_steps=1).get_extra_state()
    save_loss_states(checkpoint, {"AuxiliaryLoss": states["AuxiliaryLoss"], "main": fresh})
    rest, _, _ = _run(tiny_model_dir, tmp_path / "cut", resume=True)
    assert abs(rest[0] - full[STOP]) > 1e-4
    meta = json.loads(json.dumps(states["AuxiliaryLoss"]))  # JSON only: no pickle in the state
    assert meta == {"steps": STOP, "total_steps": TOTAL}
    assert (checkpoint / STATE_FILE_NAME).is_file()

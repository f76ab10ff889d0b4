"""Resume: a run stopped at step N and resumed from its checkpoint equals an uninterrupted run, step by step.

The loss state (memory bank, warm-up counter, sampling generator, annealing step) travels in the checkpoint through
:class:`sbert_align.checkpoints.LossStateCallback`, which every Trainer gets without the user doing anything.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_sentence_transformer
from datasets import Dataset
from sentence_transformers import InputExample, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from test_training import toy_classes, toy_pairs
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from sbert_align.checkpoints import STATE_FILE_NAME, load_loss_states, save_loss_states
from sbert_align.losses import AllNegativesLoss, AnnealedPairLoss, ClassAlignmentLoss

TOTAL, STOP = 10, 5

LOSSES = {
    # the memory (64 rows, 8 per step) is read from step 2 on: its ring is mid-fill at the stop
    "memory": lambda m: ClassAlignmentLoss(m, memory_size=64, memory_warmup_steps=1),
    # the warm-up spans the stop: steps 6 and 7 of the resumed run must still be warming up
    "warmup_spans_stop": lambda m: ClassAlignmentLoss(m, memory_size=24, memory_warmup_steps=7),
    # the sampling generator is part of the state
    "sampled": lambda m: ClassAlignmentLoss(m, pairs="sampled", memory_size=16, objective="cosine_target"),
    "no_memory": lambda m: ClassAlignmentLoss(m, memory_size=0),
    "annealed": lambda m: AnnealedPairLoss(m, start_length=12, end_length=4, anneal_steps=TOTAL),
}


class _StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def _dataset(name: str) -> Dataset:
    if name == "annealed":
        a, b, y = toy_pairs(80)
        return Dataset.from_dict({"text1": a, "text2": b, "label": y})
    texts, labels = toy_classes(27)
    return Dataset.from_dict({"text": texts, "label": labels})


def _run(tiny_model_dir, tmp_path, name: str, *, stop: int | None = None, resume: bool | str = False, decoy=False):
    """Train to TOTAL steps (or stop at ``stop``), recording the loss of every training step. ``decoy``: another
    loss of the same class and model exists (built first) but is not the Trainer's: it must get no state."""
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    decoy_loss = LOSSES[name](model) if decoy else None  # noqa: F841 - kept alive on purpose
    loss = LOSSES[name](model)
    values: list[float] = []
    loss.register_forward_hook(lambda module, inputs, output: values.append(output.item()))
    args = Args(
        output_dir=str(tmp_path),
        max_steps=TOTAL,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        warmup_steps=3,
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
        train_dataset=_dataset(name),
        loss=loss,
        callbacks=[_StopAt(stop)] if stop else None,
    )
    trainer.train(resume_from_checkpoint=resume or None)
    return values, model, loss


@pytest.mark.parametrize("name", list(LOSSES))
def test_resumed_run_equals_uninterrupted_run(tiny_model_dir, tmp_path, name):
    full, full_model, full_loss = _run(tiny_model_dir, tmp_path / "full", name)
    first, _, stopped_loss = _run(tiny_model_dir, tmp_path / "cut", name, stop=STOP)
    assert len(full) == TOTAL and len(first) == STOP
    checkpoint = tmp_path / "cut" / f"checkpoint-{STOP}"
    assert (checkpoint / STATE_FILE_NAME).is_file()
    rest, resumed_model, resumed_loss = _run(tiny_model_dir, tmp_path / "cut", name, resume=True, decoy=True)
    assert len(rest) == TOTAL - STOP
    torch.testing.assert_close(torch.tensor(first + rest), torch.tensor(full), rtol=0, atol=1e-6)
    for (key, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=key)
    assert resumed_loss.steps == full_loss.steps == TOTAL
    if isinstance(full_loss, ClassAlignmentLoss) and full_loss.memory is not None:
        (e1, y1), (e2, y2) = full_loss.memory.get(), resumed_loss.memory.get()
        assert torch.equal(y1, y2) and torch.allclose(e1, e2, atol=1e-6)
    if name == "annealed":
        assert resumed_loss.current_length == full_loss.current_length == 4
    if name == "memory":  # the stopped run did fill its memory (that it matters is the next test's point)
        assert stopped_loss.steps == STOP and len(stopped_loss.memory) > 0


def test_resume_without_the_state_file_warns_and_differs(tiny_model_dir, tmp_path):
    """The check above can fail: remove the loss state and the resumed memory run is no longer the same run."""
    full, _, _ = _run(tiny_model_dir, tmp_path / "full", "memory")
    first, _, _ = _run(tiny_model_dir, tmp_path / "cut", "memory", stop=STOP)
    (tmp_path / "cut" / f"checkpoint-{STOP}" / STATE_FILE_NAME).unlink()
    with pytest.warns(UserWarning, match="empty memory"):
        rest, _, _ = _run(tiny_model_dir, tmp_path / "cut", "memory", resume=True)
    assert abs(rest[0] - full[STOP]) > 1e-3


def test_fit_checkpoints_carry_the_memory(tiny_model_dir, tmp_path):
    """SentenceTransformer.fit passes checkpoint_path / resume_from_checkpoint to the Trainer: the state follows."""
    texts, labels = toy_classes(16)
    data = DataLoader([InputExample(texts=[t], label=y) for t, y in zip(texts, labels)], shuffle=True, batch_size=8)

    def fit(stop_after_epochs: int, resume: bool) -> ClassAlignmentLoss:
        torch.manual_seed(0)
        model = make_tiny_sentence_transformer(tiny_model_dir)
        loss = ClassAlignmentLoss(model, memory_size=40, memory_warmup_steps=2)
        model.fit(
            train_objectives=[(data, loss)],
            epochs=stop_after_epochs,
            warmup_steps=0,
            checkpoint_path=str(tmp_path / "ckpt"),
            checkpoint_save_steps=3,
            resume_from_checkpoint=resume,
            show_progress_bar=False,
        )
        return loss

    first = fit(1, resume=False)  # 6 steps, checkpoints at 3 and 6
    saved = load_loss_states(tmp_path / "ckpt" / "checkpoint-6")["_dataset_1"]  # fit names its objectives so
    # steps 3-5 are in the ring, step 6's batch is staged (it enters at the next step), all of it in the file
    assert saved["memory"]["steps"] == 6 and saved["memory"]["bank"]["filled"] == 24
    written = first.memory.state_dict()["labels"]  # .memory writes the staged batch
    assert torch.equal(saved["memory"]["bank"]["labels"][:24], written[:24])
    assert torch.equal(saved["memory"]["pending"]["labels"], written[24:32])
    second = fit(2, resume=True)  # continues at step 7 with the memory of step 6
    assert second.steps == 12 and len(second.memory) == 40


def test_state_file_holds_no_pickle_and_round_trips(tmp_path):
    from safetensors import safe_open

    loss = ClassAlignmentLoss(torch.nn.Linear(2, 2), memory_size=5, pairs="sampled")
    emb = torch.randn(4, 3, requires_grad=True)
    loss.train()
    loss.compute_loss_from_embeddings([emb], torch.tensor([0, 1, 0, 1])).backward()
    loss.compute_loss_from_embeddings([emb], torch.tensor([0, 1, 0, 1]))  # staged, not yet written: saved staged
    before = loss.get_extra_state()
    assert before["memory"]["pending"] is not None and before["memory"]["bank"]["filled"] == 4
    path = save_loss_states(tmp_path, {"ClassAlignmentLoss": before})
    with safe_open(str(path), framework="pt") as f:  # plain safetensors: tensors and a JSON string, no pickle
        meta = json.loads(f.metadata()["sbert_align_loss_state"])
    assert meta["losses"]["ClassAlignmentLoss"]["memory"]["steps"] == 2
    other = ClassAlignmentLoss(torch.nn.Linear(2, 2), memory_size=5, pairs="sampled")
    other.set_extra_state(load_loss_states(tmp_path)["ClassAlignmentLoss"])
    assert other.steps == 2 and torch.equal(other.memory.get()[0], loss.memory.get()[0])
    assert torch.equal(torch.rand(3, generator=other._generator), torch.rand(3, generator=loss._generator))
    # through nn.Module.state_dict as PyTorch defines it (key "_extra_state")
    third = ClassAlignmentLoss(torch.nn.Linear(2, 2), memory_size=5, pairs="sampled")
    third.load_state_dict(loss.state_dict())
    assert third.steps == 2 and len(third.memory) == 5
    with pytest.raises(ValueError, match="size"):
        ClassAlignmentLoss(torch.nn.Linear(2, 2), memory_size=6).set_extra_state(loss.get_extra_state())
    with pytest.raises(ValueError, match="no such file"):
        load_loss_states(tmp_path / "elsewhere")


def test_resume_from_a_checkpoint_outside_output_dir(tiny_model_dir, tmp_path):
    """trainer.train(resume_from_checkpoint=<path>) reads the state from that path, not from output_dir."""
    full, _, _ = _run(tiny_model_dir, tmp_path / "full", "memory")
    first, _, _ = _run(tiny_model_dir, tmp_path / "cut", "memory", stop=STOP)
    moved = tmp_path / "moved" / f"checkpoint-{STOP}"
    moved.parent.mkdir()
    (tmp_path / "cut" / f"checkpoint-{STOP}").rename(moved)
    rest, _, _ = _run(tiny_model_dir, tmp_path / "other_out", "memory", resume=str(moved))
    torch.testing.assert_close(torch.tensor(first + rest), torch.tensor(full), rtol=0, atol=1e-6)


def test_losses_are_keyed_by_their_place_in_trainer_loss(tiny_model_dir, tmp_path):
    from sbert_align.trainer_hooks import LossStateCallback

    model = make_tiny_sentence_transformer(tiny_model_dir)
    texts, labels = toy_classes(4)
    data = Dataset.from_dict({"text": texts, "label": labels})
    b, a = ClassAlignmentLoss(model, memory_size=4), ClassAlignmentLoss(model, memory_size=8)  # built "b" first
    trainer = SentenceTransformerTrainer(
        model=model,
        args=Args(str(tmp_path), max_steps=1, report_to="none", use_cpu=True),
        train_dataset={"a": data, "b": data},
        loss={"a": a, "b": b},
    )
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, LossStateCallback))
    assert callback.losses(model) == {"a": a, "b": b}


def test_stateless_losses_write_no_state(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    texts, labels = toy_classes(8)
    args = Args(
        str(tmp_path), max_steps=2, save_steps=2, report_to="none", use_cpu=True, per_device_train_batch_size=8
    )
    SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=AllNegativesLoss(model),
    ).train()
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "checkpoint-2" / STATE_FILE_NAME).exists()

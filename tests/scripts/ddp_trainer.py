"""Run by tests/test_distributed_trainer.py under ``torchrun --nproc_per_node 2``: a few Trainer steps with
ClassAlignmentLoss + memory + KNNEvaluator; each process writes its memory and the evaluator's metrics."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest and test_training helpers

from conftest import make_tiny_sentence_transformer  # noqa: E402
from datasets import Dataset  # noqa: E402
from sentence_transformers import SentenceTransformerTrainer  # noqa: E402
from sentence_transformers import SentenceTransformerTrainingArguments as Args  # noqa: E402
from test_training import toy_classes  # noqa: E402

from sbert_align.evaluation import KNNEvaluator  # noqa: E402
from sbert_align.losses import ClassAlignmentLoss  # noqa: E402


def evaluator() -> KNNEvaluator:
    texts, labels = toy_classes(12, seed=0)
    test_texts, test_labels = toy_classes(5, seed=1)
    test_labels = [(y + (i % 4 == 0)) % 3 for i, y in enumerate(test_labels)]  # some wrong labels: not saturated
    return KNNEvaluator(texts, labels, test_texts, test_labels, k=3, name="toy", show_progress_bar=False)


def main(model_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(Path(model_dir))
    texts, labels = toy_classes(16)
    loss = ClassAlignmentLoss(model, memory_size=40, memory_warmup_steps=1, gather_across_devices=True)
    args = Args(
        output_dir=out_dir,
        max_steps=4,
        per_device_train_batch_size=6,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        ddp_backend="gloo",
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": texts, "label": labels}),
        loss=loss,
        evaluator=evaluator(),
    )
    trainer.train()
    rank = int(os.environ.get("RANK", 0))
    emb, mem_labels = loss.memory.get()
    torch.save({"emb": emb, "labels": mem_labels, "steps": loss.steps}, os.path.join(out_dir, f"memory_{rank}.pt"))
    metrics = [h for h in trainer.state.log_history if "eval_toy_knn_accuracy" in h or "eval_toy_accuracy" in h]
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    Path(out_dir, f"metrics_{rank}.json").write_text(json.dumps({"eval": metrics, "world": world}))
    if rank == 0:
        model.save(os.path.join(out_dir, "model"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

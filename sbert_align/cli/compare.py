"""``sbert-align compare``: kNN accuracy of frozen encoders under several poolings, on several data sets; optionally
the concatenation of the encoders (``--concat``) and each cell after a brief alignment (``--finetune EPOCHS``).

Every model gets a unique label (:func:`~sbert_align.cli.models.model_labels`), so two folders both named ``model``
are two rows, never one. Outputs (``<name>.md``, ``.csv``, ``.png``, ``.json``, and with ``--finetune``
``<name>.aligned.png``) are written only once the run is complete, the JSON last as the marker of a complete set
(:func:`~sbert_align.cli.reports.write_compare_report`); after each model, and after each fine-tuned cell,
``<name>.partial.json`` records the finished ones (``"complete": false``) with a fingerprint of each local model folder
(:func:`~sbert_align.cli.models.model_fingerprint`), and rerunning the same command after an interruption reuses them,
except for folders that changed since (``--no-resume`` starts over). With ``--concat`` each finished model's frozen
embeddings are also kept beside it, in ``<name>.partial.<hash>.safetensors`` (float32, a few hundred MB at most for the
named data sets; deleted with the partial record once the run is complete), so that a resumed run computes the
concatenation rows without encoding the reused models again (:func:`~sbert_align.cli.reports.write_compare_embeddings`).

Choosing an encoder: does the frozen kNN accuracy tell which (encoder, pooling) is best *after* fine-tuning?
``--finetune EPOCHS`` aligns a fresh copy of each model, pooled each way, with
:class:`~sbert_align.losses.ClassAlignmentLoss` (defaults) on each data set's train split, scores it by the same kNN
(``aligned_accuracy``), and reports the Spearman rank correlation between frozen and aligned accuracy over the cells.
``--concat`` adds one row per (pooling, data set): the concatenation of the models' L2-normalised embeddings,
normalised again.

Example::

    sbert-align compare --models minilm-l6 mpnet-base --data trec6 trec50 --pooling cls mean layer-mean --threads 1
    sbert-align compare --models minilm-l6 mpnet-base --data trec6 --pooling mean --concat --finetune 1
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..data import SplitSet
from .common import CLIError, DataOptions, Log, load_data
from .models import load_model, model_fingerprint, model_labels
from .pooling import POOLINGS, frozen_embeddings, pooled_model
from .reports import (
    compare_paths,
    frozen_aligned_correlation,
    read_compare_embeddings,
    read_compare_partial,
    write_compare_embeddings,
    write_compare_partial,
    write_compare_report,
)

__all__ = [
    "FinetuneOptions",
    "compare_frozen",
    "compare_settings",
    "concat_label",
    "concat_embeddings",
    "finetune_cell",
    "finetune_options",
    "run_compare",
]


@dataclass(frozen=True)
class FinetuneOptions:
    """How ``compare --finetune`` aligns each (model, pooling, data set) cell before scoring it again.

    Each cell trains a fresh copy of the frozen encoder (:func:`~sbert_align.cli.pooling.pooled_model`) with
    :class:`~sbert_align.losses.ClassAlignmentLoss` at its defaults, through ``SentenceTransformerTrainer``, for
    ``ceil(epochs * steps per epoch)`` steps (at least 1; a step per full batch, a single step when the train split is
    no larger than a batch), linear warm-up over the first ``warmup_ratio`` of them, then linear decay.

    Args:
        epochs: epochs of the train split (a fraction is fine: ``0.5`` is half an epoch); > 0.
        max_train: train on at most this many train texts (seeded subsample; ``None``: all). The kNN references stay
            the whole train split.
        batch_size: texts per step.
        lr: peak learning rate.
        warmup_ratio: share of the steps spent warming up, in [0, 1).
        seed: seed of the subsample, the data order and dropout.

    Example::

        from sbert_align.cli.compare import FinetuneOptions, compare_frozen

        rows = compare_frozen(["minilm-l6"], ["trec6"], ["mean"], finetune=FinetuneOptions(epochs=0.5, max_train=500))
        rows[0]["accuracy"], rows[0]["aligned_accuracy"]
    """

    epochs: float
    max_train: int | None = None
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise ValueError(f"{name}: expected a positive number, got {v!r}.")
        for name in ("max_train", "batch_size"):
            v = getattr(self, name)
            if v is None and name == "max_train":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}.")
        w = self.warmup_ratio
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < 1:
            raise ValueError(f"warmup_ratio: expected a number in [0, 1), got {w!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an integer, got {self.seed!r}.")

    def steps(self, n_train: int) -> int:
        """Optimizer steps for ``n_train`` training texts."""
        per_epoch = n_train // self.batch_size if n_train > self.batch_size else 1
        return max(1, math.ceil(self.epochs * per_epoch))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in the settings; a rerun reuses fine-tuned cells only when it is equal)."""
        return asdict(self)


def concat_label(labels: Sequence[str]) -> str:
    """The row label of the concatenation of models: ``concat(minilm-l6+mpnet-base)``.

    Example::

        from sbert_align.cli.compare import concat_label

        concat_label(["minilm-l6", "mpnet-base"])                  # 'concat(minilm-l6+mpnet-base)'
    """
    return "concat(" + "+".join(labels) + ")"


def concat_embeddings(parts: Sequence[Any]) -> Any:
    """The concatenation of several encoders' embeddings of the same texts: each ``(n, d_i)`` part L2-normalised by
    row, concatenated to ``(n, sum d_i)``, and normalised again (so every encoder weighs the same in the cosine, and the
    cosine of two concatenations is the mean of the encoders' cosines).

    Example::

        import torch
        from sbert_align.cli.compare import concat_embeddings

        concat_embeddings([torch.randn(4, 384), torch.randn(4, 768)]).shape   # torch.Size([4, 1152])
    """
    import torch
    import torch.nn.functional as F

    if not parts:
        raise ValueError("parts: expected at least one (n, d) embedding matrix, got none.")
    parts = [torch.as_tensor(p, dtype=torch.float32) for p in parts]
    if len({p.shape[0] for p in parts}) != 1 or any(p.ndim != 2 for p in parts):
        raise ValueError(
            f"parts: expected (n, d) matrices of the same n, got shapes {[tuple(p.shape) for p in parts]}."
        )
    return F.normalize(torch.cat([F.normalize(p, dim=1) for p in parts], dim=1), dim=1)


def finetune_cell(
    model: Any,
    pooling: str,
    data: SplitSet,
    options: FinetuneOptions,
    *,
    device: str = "cpu",
    show_progress_bar: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Align a fresh copy of ``model``, pooled as ``pooling``, on ``data``'s train split; ``model`` is not changed.

    The copy (:func:`~sbert_align.cli.pooling.pooled_model`) is trained with
    :class:`~sbert_align.losses.ClassAlignmentLoss` (its defaults: SupCon over the batch and a memory of 4096) through
    ``SentenceTransformerTrainer`` for :meth:`FinetuneOptions.steps` steps; nothing is saved.

    Args:
        model: the frozen ``SentenceTransformer`` (its first module a Hugging Face transformer).
        pooling: one of :data:`~sbert_align.cli.pooling.POOLINGS`.
        data: (text, label) data with a train split.
        options: epochs, batch size, learning rate, ...
        device: ``"cpu"``, or ``"auto"`` (a GPU when there is one).
        show_progress_bar: the trainer's progress bar.

    Returns:
        The trained copy (in eval mode) and ``{"train_seconds", "train_steps", "train_loss", "n_finetune_train"}``.

    Example::

        from sbert_align.cli import load_model, load_data
        from sbert_align.cli.compare import FinetuneOptions, finetune_cell

        student, info = finetune_cell(load_model("minilm-l6", device="cpu"), "mean", load_data("trec6"),
                                      FinetuneOptions(epochs=0.2, max_train=500))
    """
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from ..losses import ClassAlignmentLoss

    train_data = data.subsample("train", options.max_train, seed=options.seed)
    n_train = len(train_data.labels("train"))
    steps = options.steps(n_train)
    torch.manual_seed(options.seed)
    student = pooled_model(model, pooling)
    loss = ClassAlignmentLoss(student)
    use_cpu = device == "cpu"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sbert-align-compare-") as scratch:  # save_strategy="no": nothing kept
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            max_steps=steps,
            per_device_train_batch_size=options.batch_size,
            learning_rate=options.lr,
            warmup_steps=int(options.warmup_ratio * steps),
            lr_scheduler_type="linear",
            eval_strategy="no",
            save_strategy="no",
            logging_steps=max(1, steps // 10),
            report_to="none",
            seed=options.seed,
            disable_tqdm=not show_progress_bar,
            use_cpu=use_cpu,
            dataloader_drop_last=n_train > options.batch_size,
            dataloader_pin_memory=not use_cpu and torch.cuda.is_available(),
        )
        trainer = SentenceTransformerTrainer(
            model=student, args=args, train_dataset=train_data.dataset("train"), loss=loss
        )
        if not show_progress_bar:  # without a bar the trainer prints every log dict instead
            trainer.remove_callback(PrinterCallback)
        result = trainer.train()
    seconds = time.perf_counter() - t0
    student.eval()
    return student, {
        "train_seconds": round(seconds, 1),
        "train_steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "n_finetune_train": n_train,
    }


def _knn(emb: Any, data: SplitSet, tr: Sequence[int], te: Sequence[int], k: int) -> dict[str, float]:
    from ..evaluation.knn import knn_metrics

    return knn_metrics(emb[list(tr)], data.labels("train"), emb[list(te)], data.labels("test"), k=k)


def compare_frozen(
    models: Sequence[str],
    datasets: Sequence[str],
    poolings: Sequence[str] = POOLINGS,
    k: int = 5,
    batch_size: int = 64,
    max_train: int | None = None,
    show_progress_bar: bool = True,
    log: Log = print,
    on_model_done: Callable[[list[dict[str, Any]]], None] | None = None,
    *,
    data_options: DataOptions | None = None,
    reuse: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    concat: bool = False,
    finetune: FinetuneOptions | None = None,
    device: str = "cpu",
    load_embeddings: Callable[[str, Sequence[str]], Mapping[str, Any] | None] | None = None,
    save_embeddings: Callable[[str, Sequence[str], Mapping[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """kNN accuracy (train as references, test as queries) of frozen encoders under each pooling, per dataset; with
    ``concat`` also of the models' concatenation, with ``finetune`` also of each cell after a brief alignment.

    Every distinct text of all datasets is encoded once per model (TREC-6 and TREC-50 share their texts).

    With ``concat``, each model's frozen embeddings (pooling -> texts x dim, all data sets' texts) are kept in memory
    until every model is done (a few hundred MB at most for the named data sets), then
    :func:`concat_embeddings` of all models, per pooling, is scored like a model: one more row per (pooling, dataset),
    labelled :func:`concat_label`, with ``concat_of`` listing the model arguments. A reused model's embeddings come
    from ``load_embeddings``; when it has none they are encoded again (its rows stay the reused ones).

    With ``finetune``, each (model, pooling, dataset) cell is trained from a fresh copy of the frozen model
    (:func:`finetune_cell`), then its embeddings under that pooling are scored by the same kNN: the row gains
    ``aligned_accuracy``, ``aligned_macro_f1``, ``train_seconds``, ``train_steps``, ``train_loss`` and
    ``n_finetune_train``. Cells are done model by model, and ``on_model_done`` is called after each one (they are
    expensive); a reused row that already has ``aligned_accuracy`` is not trained again.

    Args:
        models: model arguments (aliases, folders, hub names); each gets a unique label.
        datasets: data names / files / folders of (text, label) data.
        poolings: a subset of :data:`~sbert_align.cli.pooling.POOLINGS`.
        k: neighbours of the kNN.
        batch_size: encoding batch size.
        max_train: keep at most this many train texts per dataset (seeded).
        show_progress_bar: a progress bar while encoding (and training).
        log: progress lines.
        on_model_done: called with the rows so far after each model's frozen rows and after each fine-tuned cell (the
            command line records them there, so an interrupted run keeps what is finished).
        data_options: column options for files and folders.
        reuse: model argument -> its rows from an earlier, interrupted run with the same settings; those models
            are not encoded again, and their rows with ``aligned_accuracy`` are not trained again.
        concat: add the concatenation rows (needs at least two models).
        finetune: align each cell briefly and score it again (``None``: frozen only).
        device: ``"cpu"``, or ``"auto"`` (a GPU when there is one) for encoding and training.
        load_embeddings: ``(model, texts) -> {pooling: tensor} | None``, a reused model's frozen embeddings of
            ``texts`` (with ``concat``).
        save_embeddings: ``(model, texts, {pooling: tensor})``, called with each newly encoded model's frozen
            embeddings before ``on_model_done`` (with ``concat``).

    Returns:
        One row per (model, pooling, dataset): ``model`` (label), ``model_path`` (the argument), ``pooling``,
        ``data``, ``k``, ``accuracy``, ``macro_f1``, ``n_train``, ``n_test``, ``encode_seconds_all_data`` (and the
        fine-tuning fields); then the concatenation rows.

    Raises:
        CLIError: no model, ``concat`` with fewer than two models, a device other than ``cpu`` / ``auto``, data that is
            not (text, label) data, a model that cannot be loaded.

    Example::

        from sbert_align.cli import compare_frozen

        rows = compare_frozen(["minilm-l6"], ["trec6"], ["mean"], max_train=300)
        rows[0]["accuracy"]
    """
    if not models:
        raise CLIError("models: give at least one model.")
    if concat and len(models) < 2:
        raise CLIError(f"--concat: needs at least two --models to concatenate, got {len(models)}.")
    if device not in ("cpu", "auto"):
        raise CLIError(f"device: expected 'cpu' or 'auto', got {device!r}.")
    labels = model_labels(models)
    loaded = {}
    for d in dict.fromkeys(datasets):
        data = load_data(d, data_options, max_train=max_train)
        if data.is_pairs or data.label_names is None:
            raise CLIError(f"data: {d} is a pair/score set; compare needs (text, label) data.")
        loaded[d] = data
    all_texts = list(dict.fromkeys(t for data in loaded.values() for s in ("train", "test") for t in data.texts(s)))
    pos = {t: i for i, t in enumerate(all_texts)}
    index = {
        d: ([pos[t] for t in data.texts("train")], [pos[t] for t in data.texts("test")]) for d, data in loaded.items()
    }
    cells = [(d, p) for d in loaded for p in poolings]
    kept: dict[str, Mapping[str, Any]] = {}  # model argument -> frozen embeddings, for the concatenation
    rows: list[dict[str, Any]] = []
    for m, label in zip(models, labels):
        reused = [dict(r, model=label) for r in (reuse or {}).get(m, ())]
        if {(r["data"], r["pooling"]) for r in reused} != set(cells) or len(reused) != len(cells):
            reused = []  # not a complete set of this run's cells: encode again
        model = None
        if reused:
            rows += reused
            n_aligned = sum(r.get("aligned_accuracy") is not None for r in reused)
            aligned_note = f" and {n_aligned} of {len(cells)} fine-tuned cells" if finetune is not None else ""
            log(f"{label}: reusing its frozen results{aligned_note} from the interrupted run")
            emb = load_embeddings(m, all_texts) if concat and load_embeddings is not None else None
            if concat and emb is None:
                model = load_model(m, device="cpu" if device == "cpu" else None)
                log(f"{label}: encoding again for the concatenation (its embeddings were not kept)")
                emb = frozen_embeddings(
                    model, all_texts, poolings, batch_size=batch_size, show_progress_bar=show_progress_bar
                )
            if concat:
                kept[m] = emb
            own = {(r["data"], r["pooling"]): r for r in reused}
        else:
            model = load_model(m, device="cpu" if device == "cpu" else None)
            t0 = time.perf_counter()
            log(f"{label}: encoding {len(all_texts)} distinct texts ...")
            emb = frozen_embeddings(
                model, all_texts, poolings, batch_size=batch_size, show_progress_bar=show_progress_bar
            )
            seconds = time.perf_counter() - t0
            log(f"{label}: encoded in {seconds:.0f} s")
            own = {}
            for d, data in loaded.items():
                tr, te = index[d]
                for p in poolings:
                    res = _knn(emb[p], data, tr, te, k)
                    row = {
                        "model": label,
                        "model_path": m,
                        "pooling": p,
                        "data": d,
                        "k": k,
                        "accuracy": res["accuracy"],
                        "macro_f1": res["macro_f1"],
                        "n_train": len(tr),
                        "n_test": len(te),
                        "encode_seconds_all_data": round(seconds, 1),
                    }
                    rows.append(row)
                    own[(d, p)] = row
                    log(f"  {d:>10} {p:>10}: kNN@{k} accuracy {res['accuracy']:.4f}")
            if concat:
                kept[m] = emb
                if save_embeddings is not None:
                    save_embeddings(m, all_texts, emb)
            del emb
        if on_model_done is not None:
            on_model_done(rows)
        if finetune is not None:
            todo = [c for c in cells if own[c].get("aligned_accuracy") is None]
            if todo and model is None:
                model = load_model(m, device="cpu" if device == "cpu" else None)
            for i, (d, p) in enumerate(todo, 1):
                data = loaded[d]
                log(f"{label}: aligning for {d} / {p} (cell {i} of {len(todo)}) ...")
                student, info = finetune_cell(
                    model, p, data, finetune, device=device, show_progress_bar=show_progress_bar
                )
                texts = list(dict.fromkeys([*data.texts("train"), *data.texts("test")]))
                local = {t: j for j, t in enumerate(texts)}
                aligned = frozen_embeddings(
                    student, texts, [p], batch_size=batch_size, show_progress_bar=show_progress_bar
                )[p]
                tr = [local[t] for t in data.texts("train")]
                te = [local[t] for t in data.texts("test")]
                res = _knn(aligned, data, tr, te, k)
                own[(d, p)].update(aligned_accuracy=res["accuracy"], aligned_macro_f1=res["macro_f1"], **info)
                log(
                    f"  {d:>10} {p:>10}: kNN@{k} accuracy {own[(d, p)]['accuracy']:.4f} -> {res['accuracy']:.4f} "
                    f"after {info['train_steps']} steps ({info['train_seconds']:.0f} s)"
                )
                del student, aligned
                _free_accelerator()
                if on_model_done is not None:
                    on_model_done(rows)
        del model
        _free_accelerator()
    if concat:
        label = concat_label(labels)
        for d, data in loaded.items():
            tr, te = index[d]
            for p in poolings:
                res = _knn(concat_embeddings([kept[m][p] for m in models]), data, tr, te, k)
                rows.append(
                    {
                        "model": label,
                        "model_path": label,
                        "concat_of": list(models),
                        "pooling": p,
                        "data": d,
                        "k": k,
                        "accuracy": res["accuracy"],
                        "macro_f1": res["macro_f1"],
                        "n_train": len(tr),
                        "n_test": len(te),
                    }
                )
                log(f"  {label}: {d:>10} {p:>10}: kNN@{k} accuracy {res['accuracy']:.4f}")
    return rows


def _free_accelerator() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def finetune_options(args: Any) -> FinetuneOptions | None:
    """The :class:`FinetuneOptions` of a parsed ``compare`` command line (``None`` without ``--finetune``).

    Raises:
        CLIError: a ``--finetune-*`` option without ``--finetune``, or a value :class:`FinetuneOptions` refuses.
    """
    names = {"max_train": "finetune_max_train", "batch_size": "finetune_batch_size", "lr": "finetune_lr"}
    names["seed"] = "finetune_seed"
    given = {field: getattr(args, attr, None) for field, attr in names.items()}
    given = {field: v for field, v in given.items() if v is not None}
    epochs = getattr(args, "finetune", None)
    if epochs is None:
        if given:
            stray = ", ".join("--" + names[f].replace("_", "-") for f in given)
            raise CLIError(f"{stray}: applies only with --finetune EPOCHS.")
        return None
    try:
        return FinetuneOptions(epochs=epochs, **given)
    except ValueError as e:
        raise CLIError(f"--finetune: {e}") from None


def compare_settings(args: Any) -> dict[str, Any]:
    """What the rows of a ``compare`` run depend on (a rerun reuses partial rows only when these are equal): the
    data, poolings, k, train subsample and column options, and the fine-tuning options (``None`` without
    ``--finetune``). ``--concat`` and ``--device`` are not among them: the concatenation rows are computed at the end
    of every run, and the device does not change what is computed."""
    ft = finetune_options(args)
    return {
        "data": list(args.data),
        "poolings": list(args.pooling),
        "k": args.k,
        "max_train_samples": args.max_train_samples,
        **DataOptions.from_args(args).as_dict(),
        "finetune": None if ft is None else ft.as_dict(),
    }


def run_compare(args: Any, log: Log = print) -> list[dict[str, Any]]:
    """``sbert-align compare``: kNN accuracy of frozen encoders under several poolings; writes a Markdown table,
    CSV, JSON and a bar chart under ``--out`` once every model is done (earlier outputs stay until then), and
    ``<name>.partial.json`` after each model, which a rerun of the same command reuses (for each local model
    folder, only while its fingerprint is unchanged). ``--concat`` adds the concatenation of the models (one row per
    pooling and data set). ``--finetune EPOCHS`` also aligns each (model, pooling, data set) cell briefly with
    ClassAlignmentLoss from a fresh copy of the model and scores it again; each finished cell is recorded in the
    partial file at once and reused by a rerun; the report adds the Spearman rank correlation between frozen and
    aligned accuracy and a scatter of the two (<name>.aligned.png)."""
    t0 = time.perf_counter()
    out, stem = Path(args.out), args.name
    if getattr(args, "concat", False) and len(args.models) < 2:
        raise CLIError(f"--concat: needs at least two --models to concatenate, got {len(args.models)}.")
    finetune = finetune_options(args)
    settings = compare_settings(args)
    paths = compare_paths(out, stem)
    fingerprints = {m: model_fingerprint(m) for m in args.models}  # before any model is loaded
    reuse = {} if args.no_resume else read_compare_partial(out, stem, settings, fingerprints)
    reuse = {m: rows for m, rows in reuse.items() if m in args.models}
    if reuse:
        log(f"found {paths['partial']}: reusing {len(reuse)} finished model(s) (--no-resume starts over)")

    def record(rows: list[dict[str, Any]]) -> None:
        rows = [r for r in rows if not r.get("concat_of")]
        done = list(dict.fromkeys(r["model_path"] for r in rows))
        write_compare_partial(
            rows, out, stem, models=args.models, models_done=done, settings=settings, fingerprints=fingerprints
        )

    def load_emb(m: str, texts: Sequence[str]) -> Mapping[str, Any] | None:
        return read_compare_embeddings(out, stem, m, texts, args.pooling, fingerprints.get(m))

    def save_emb(m: str, texts: Sequence[str], emb: Mapping[str, Any]) -> None:
        write_compare_embeddings(out, stem, m, texts, emb, fingerprints.get(m))

    try:
        rows = compare_frozen(
            args.models,
            args.data,
            args.pooling,
            k=args.k,
            batch_size=args.batch_size,
            max_train=args.max_train_samples,
            show_progress_bar=not args.quiet,
            log=log,
            on_model_done=record,
            data_options=DataOptions.from_args(args),
            reuse=reuse,
            concat=getattr(args, "concat", False),
            finetune=finetune,
            device=getattr(args, "device", "cpu"),
            load_embeddings=load_emb,
            save_embeddings=save_emb,
        )
    except KeyboardInterrupt:
        if paths["partial"].is_file():
            log(
                f"interrupted: finished models and fine-tuned cells are kept in {paths['partial']} (complete: "
                "false); rerun the same "
                "command to finish. Earlier complete outputs are untouched."
            )
        raise
    written = write_compare_report(rows, out, stem, k=args.k, seconds=time.perf_counter() - t0, settings=settings)
    print(written["md"].read_text(encoding="utf-8"))
    corr = frozen_aligned_correlation(rows)
    if corr is not None and corr["all"]["spearman"] is not None:
        log(
            f"Spearman rank correlation, frozen vs aligned accuracy: {corr['all']['spearman']:.4f} ({corr['all']['n']} cells)"
        )
    log("wrote " + ", ".join(str(p) for p in written.values()))
    return rows

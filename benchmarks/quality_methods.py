"""The methods of ``bench_quality.py``: every way to train all-MiniLM-L6-v2 on (text, label) data, under one budget.

A method is a :class:`Method` in :data:`REGISTRY`: a name, one line saying what it is, and a ``train(ctx)`` function
that gets a :class:`Context` (the data, the :class:`Budget`, the encoder's path, a scratch folder) and returns a
:class:`Trained` (the encoder to embed with, the optimiser steps taken, the training seconds, the settings used, and,
where the method has one, a classification head). ``bench_quality.py`` embeds, scores and caches; nothing here
touches the results files.

Adding a configuration is one call, e.g. a tuned ``ClassAlignmentLoss`` chosen on validation data::

    loss_method(
        "ca-tuned",
        "ClassAlignmentLoss(memory 8192, warm-up 50, temperature 0.05), chosen on validation",
        lambda model, ctx: ClassAlignmentLoss(model, memory_size=8192, memory_warmup_steps=50, temperature=0.05),
        group="ours",
    )

Shared budget (:class:`Budget`): AdamW (``adamw_torch``, no weight decay), linear schedule with 10 % warm-up,
learning rate 5e-5, batch 32, 3 epochs, seed 0, through ``SentenceTransformerTrainer`` (SetFit through its own
trainer, which runs the same one underneath), ``report_to="none"``, no checkpoints.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: learning rate of the fresh softmax head of ``ce`` (the encoder keeps the budget's rate)
CE_HEAD_LR = 1e-3


@dataclass(frozen=True)
class Budget:
    """What every method gets: epochs, batch size, learning rate, warm-up share, seed, device."""

    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    seed: int = 0
    device: str = "cpu"


@dataclass
class Context:
    """What a method's ``train`` gets.

    Args:
        data: A :class:`sbert_align.data.SplitSet` with ``train`` (already cut by ``--max-train``) and the eval split.
        eval_split: ``"test"`` or ``"validation"``; methods train on ``train`` only and never look at it.
        budget: The shared :class:`Budget`.
        model_path: Folder of all-MiniLM-L6-v2.
        work_dir: A scratch folder (the trainers' ``output_dir``), deleted after the row.
        log: Prints one progress line.
    """

    data: Any
    eval_split: str
    budget: Budget
    model_path: str
    work_dir: Path
    log: Callable[[str], None] = print

    @property
    def n_train(self) -> int:
        return len(self.data.labels("train"))

    @property
    def steps_per_epoch(self) -> int:
        """Optimiser steps of one epoch of ``train`` at the budget's batch size (the last, partial batch counts)."""
        return math.ceil(self.n_train / self.budget.batch_size)


@dataclass
class Trained:
    """What a method's ``train`` returns.

    Args:
        model: The ``SentenceTransformer`` whose ``encode`` gives the embeddings that kNN and KMeans score.
        steps: Optimiser steps taken (0 for the frozen encoder).
        train_seconds: Wall time of training (what the method's trainer runs: SetFit's includes its pair generation
            and its head fit).
        settings: Everything that defines the row beyond the budget (loss, its config, sampler, head learning rate).
        head_predict: ``texts -> class ids`` for methods with a classification head, else None.
    """

    model: Any
    steps: int
    train_seconds: float
    settings: dict[str, Any]
    head_predict: Callable[[list[str]], Sequence[int]] | None = None


@dataclass(frozen=True)
class Method:
    """A row of the benchmark: ``name`` (the ``--methods`` key), one line of ``summary``, and ``train``."""

    name: str
    summary: str
    train: Callable[[Context], Trained]
    group: str = "other"


#: name -> method, in the order of the tables
REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to :data:`REGISTRY` (a name may be registered once)."""
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered.")
    if not method.name or any(c.isspace() for c in method.name):
        raise ValueError(f"method name {method.name!r}: expected a non-empty name without spaces.")
    REGISTRY[method.name] = method
    return method


# --------------------------------------------------------------------------------------------------------------------
# shared helpers


def load_encoder(ctx: Context):
    """A fresh all-MiniLM-L6-v2 (Transformer, mean pooling, Normalize), seeded first so heads start alike."""
    from sentence_transformers import SentenceTransformer
    from transformers import set_seed

    set_seed(ctx.budget.seed)
    return SentenceTransformer(ctx.model_path, device=ctx.budget.device)


def training_args(ctx: Context, batch_sampler: str = "batch_sampler", lr_mapping: dict[str, float] | None = None):
    """``SentenceTransformerTrainingArguments`` of the shared budget."""
    from sentence_transformers import SentenceTransformerTrainingArguments

    b = ctx.budget
    return SentenceTransformerTrainingArguments(
        output_dir=str(ctx.work_dir / "trainer"),
        num_train_epochs=b.epochs,
        per_device_train_batch_size=b.batch_size,
        learning_rate=b.lr,
        warmup_steps=b.warmup_ratio,  # transformers 5: a float below 1 is a share of the steps
        lr_scheduler_type="linear",
        optim="adamw_torch",
        weight_decay=0.0,
        seed=b.seed,
        batch_sampler=batch_sampler,
        learning_rate_mapping=lr_mapping or {},
        report_to="none",
        save_strategy="no",
        use_cpu=b.device == "cpu",
        logging_steps=50,
        dataloader_drop_last=False,
    )


def trainer_fit(ctx: Context, model, loss, dataset, batch_sampler: str, lr_mapping=None) -> tuple[int, float]:
    """Train ``model`` with ``loss`` through ``SentenceTransformerTrainer``; returns (optimiser steps, seconds)."""
    from sentence_transformers import SentenceTransformerTrainer

    args = training_args(ctx, batch_sampler, lr_mapping)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    ctx.log(f"training: {len(dataset)} rows, batch sampler {batch_sampler}, {ctx.budget.epochs} epoch(s)")
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return int(trainer.state.global_step), seconds


def loss_config(loss) -> dict[str, Any]:
    """The loss's ``get_config_dict()`` made JSON-safe (functions by name)."""
    get = getattr(loss, "get_config_dict", None)
    config = get() if callable(get) else {}
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else _describe(v)) for k, v in config.items()}


def _describe(value: Any) -> str:
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
    return name if name else str(value)


def grouped_texts_per_epoch(dataset, budget: Budget) -> int:
    """How many texts one epoch of ``GroupByLabelBatchSampler`` visits: it leaves out classes with a single text, odd
    remainders, and the largest class's excess over the second largest (TREC-50: 4928 of 5452)."""
    from sentence_transformers.base.sampler import GroupByLabelBatchSampler

    sampler = GroupByLabelBatchSampler(
        dataset,
        batch_size=budget.batch_size,
        drop_last=False,
        valid_label_columns=["label"],
        generator=torch.Generator(),
        seed=budget.seed,
    )
    return sum(len(batch) for batch in sampler)


def same_class_pairs(texts: Sequence[str], labels: Sequence[int], seed: int) -> tuple[dict[str, list[str]], int]:
    """One (anchor, positive) pair per text: the text and a random *other* text of its class (seeded).

    Texts alone in their class have no positive and are left out; returns the columns and how many were left out.
    """
    rng = random.Random(seed)
    members: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        members[y].append(i)
    anchors, positives, alone = [], [], 0
    for i, y in enumerate(labels):
        group = members[y]
        if len(group) < 2:
            alone += 1
            continue
        j = group[rng.randrange(len(group) - 1)]
        if j == i:  # draw among the others: the last member stands in for the anchor itself
            j = group[-1]
        anchors.append(texts[i])
        positives.append(texts[j])
    return {"anchor": anchors, "positive": positives}, alone


# --------------------------------------------------------------------------------------------------------------------
# methods built from a sentence-transformers style loss


def loss_method(
    name: str,
    summary: str,
    make_loss: Callable[[Any, Context], nn.Module],
    *,
    batch_sampler: str = "batch_sampler",
    group: str = "other",
    data: str = "labelled",
    lr_mapping: Callable[[Context], dict[str, float]] | None = None,
    extra_settings: dict[str, Any] | None = None,
    encoder: Callable[[Context], Any] | None = None,
) -> Method:
    """Register a method that trains the encoder with ``make_loss(model, ctx)`` through the Trainer.

    Args:
        name: The ``--methods`` key.
        summary: One line for ``--list``.
        make_loss: ``(model, ctx) -> loss module``.
        batch_sampler: ``BatchSamplers`` value: ``batch_sampler`` (plain shuffling), ``group_by_label``,
            ``no_duplicates``.
        group: ``baseline``, ``sentence-transformers``, ``peer`` or ``ours`` (for the reader).
        data: ``labelled`` (columns text, label) or ``pairs`` (one same-class (anchor, positive) pair per text).
        lr_mapping: ``ctx -> {parameter regex: learning rate}`` for parameter groups with their own rate.
        extra_settings: Recorded in the row's settings.
        encoder: ``ctx -> model`` to train (default :func:`load_encoder`: all-MiniLM-L6-v2 as it comes).
    """

    def train(ctx: Context) -> Trained:
        model = (encoder or load_encoder)(ctx)
        loss = make_loss(model, ctx)
        settings: dict[str, Any] = {
            "loss": type(loss).__name__,
            "loss_config": loss_config(loss),
            "batch_sampler": batch_sampler,
            "optimizer": "adamw_torch, weight decay 0, linear schedule",
        }
        if data == "pairs":
            columns, alone = same_class_pairs(ctx.data.texts("train"), ctx.data.labels("train"), ctx.budget.seed)
            from datasets import Dataset

            dataset = Dataset.from_dict(columns)
            settings["data"] = (
                f"{len(dataset)} (anchor, positive) pairs, one per text: a random other text of its class (seed "
                f"{ctx.budget.seed}); {alone} texts alone in their class left out"
            )
        else:
            dataset = ctx.data.dataset("train")
            settings["data"] = "(text, label) rows"
        mapping = lr_mapping(ctx) if lr_mapping else None
        if mapping:
            settings["learning_rate_mapping"] = mapping
        settings.update(extra_settings or {})
        if batch_sampler == "group_by_label":
            settings["texts_per_epoch"] = grouped_texts_per_epoch(dataset, ctx.budget)
        steps, seconds = trainer_fit(ctx, model, loss, dataset, batch_sampler, mapping)
        head = getattr(loss, "predict", None)
        return Trained(model, steps, seconds, settings, head if callable(head) else None)

    return register(Method(name, summary, train, group))


# --------------------------------------------------------------------------------------------------------------------
# cross-entropy: the encoder + a fresh linear softmax head, end to end


def _pooled(model, features: dict[str, Tensor]) -> dict[str, Tensor]:
    """The model's forward without its ``Normalize`` module: the mean-pooled embedding, unscaled."""
    from sentence_transformers.sentence_transformer.modules import Normalize

    for module in model:
        if not isinstance(module, Normalize):
            features = module(features)
    return features


class SoftmaxClassificationLoss(nn.Module):
    """Cross-entropy of a linear softmax head on the encoder's mean-pooled embedding, for single (text, label) rows.

    Like sentence-transformers' ``SoftmaxLoss`` but for one text per row: ``logits = W e + b`` with ``e`` the
    mean-pooled token embedding *before* the model's ``Normalize`` (the classic "encoder + pooling + linear" set-up;
    the cosine kNN on ``model.encode`` does not depend on that scale). The head is part of the loss, so the Trainer
    optimises it with the encoder; give it its own learning rate with ``learning_rate_mapping={"^classifier\\.": lr}``.

    Args:
        model: SentenceTransformer model.
        num_labels: Number of classes.
    """

    def __init__(self, model, num_labels: int) -> None:
        super().__init__()
        self.model = model
        self.num_labels = num_labels
        self.classifier = nn.Linear(model.get_embedding_dimension(), num_labels, device=model.device)
        self.loss_fct = nn.CrossEntropyLoss()

    def forward(self, sentence_features, labels: Tensor) -> Tensor:
        embeddings = _pooled(self.model, dict(sentence_features[0]))["sentence_embedding"]
        logits = self.classifier(embeddings.to(self.classifier.weight.dtype))
        return self.loss_fct(logits, labels.view(-1).long())

    @torch.no_grad()
    def predict(self, texts: list[str], batch_size: int = 128) -> list[int]:
        """Class ids from the head (eval mode, no dropout)."""
        was_training = self.model.training
        self.model.eval()
        out: list[int] = []
        try:
            for start in range(0, len(texts), batch_size):
                features = self.model.preprocess(texts[start : start + batch_size])
                features = {k: (v.to(self.model.device) if isinstance(v, Tensor) else v) for k, v in features.items()}
                logits = self.classifier(_pooled(self.model, features)["sentence_embedding"])
                out += logits.argmax(dim=1).tolist()
        finally:
            self.model.train(was_training)
        return out

    def get_config_dict(self) -> dict[str, Any]:
        return {"num_labels": self.num_labels, "head_input": "mean pooling before Normalize"}


# --------------------------------------------------------------------------------------------------------------------
# pytorch-metric-learning behind a thin adapter


class PMLLossAdapter(nn.Module):
    """A pytorch-metric-learning loss as a sentence-transformers loss: embed the text column, call ``loss(emb, y)``."""

    def __init__(self, model, pml_loss: nn.Module, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.pml_loss = pml_loss
        self.config = dict(config or {})

    def forward(self, sentence_features, labels: Tensor) -> Tensor:
        embeddings = self.model(sentence_features[0])["sentence_embedding"]
        return self.pml_loss(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"pml_loss": type(self.pml_loss).__name__, **self.config}


def _pml_xbm(model, ctx: Context) -> nn.Module:
    from pytorch_metric_learning import losses as pml

    dim, memory, temperature = model.get_embedding_dimension(), 4096, 0.1
    xbm = pml.CrossBatchMemory(pml.SupConLoss(temperature=temperature), embedding_size=dim, memory_size=memory)
    config = {"inner": "SupConLoss", "temperature": temperature, "embedding_size": dim, "memory_size": memory}
    return PMLLossAdapter(model, xbm, config)


# --------------------------------------------------------------------------------------------------------------------
# frozen and SetFit


def _frozen(ctx: Context) -> Trained:
    return Trained(load_encoder(ctx), 0, 0.0, {"training": "none"})


def _accuracy_metric(y_pred, y_test) -> dict[str, float]:
    """SetFit's ``metric`` as a callable: its default ``"accuracy"`` loads ``evaluate``'s metric from the hub."""
    import numpy as np

    return {"accuracy": float(np.mean(np.asarray(y_pred) == np.asarray(y_test)))}


def _setfit(ctx: Context) -> Trained:
    import numpy as np
    from setfit import SetFitModel, TrainingArguments
    from setfit import Trainer as SetFitTrainer
    from transformers import set_seed
    from transformers.trainer_utils import SaveStrategy

    b = ctx.budget
    set_seed(b.seed)
    model = SetFitModel.from_pretrained(ctx.model_path, device=b.device)
    steps = b.epochs * ctx.steps_per_epoch
    args = TrainingArguments(
        output_dir=str(ctx.work_dir / "setfit"),
        batch_size=b.batch_size,
        max_steps=steps,  # the same number of optimiser steps as every other row
        body_learning_rate=b.lr,
        warmup_proportion=b.warmup_ratio,
        l2_weight=0.0,  # SetFit's default 0.01 would be weight decay no other row gets
        seed=b.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=50,
        show_progress_bar=True,
    )
    dataset = ctx.data.dataset("train")
    trainer = SetFitTrainer(model=model, args=args, train_dataset=dataset, metric=_accuracy_metric)
    # SetFit passes neither the save strategy nor the device on to the sentence-transformers trainer it runs
    trainer.st_trainer.args.save_strategy = SaveStrategy.NO
    trainer.st_trainer.args.use_cpu = b.device == "cpu"
    ctx.log(f"training SetFit: {len(dataset)} texts -> up to {steps * b.batch_size} pairs, {steps} steps")
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    settings = {
        "setfit_args": {
            "loss": _describe(args.loss),
            "sampling_strategy": args.sampling_strategy,
            "max_steps": steps,
            "batch_size": b.batch_size,
            "body_learning_rate": b.lr,
            "warmup_proportion": b.warmup_ratio,
            "seed": b.seed,
            "head": type(model.model_head).__name__,
            "end_to_end": args.end_to_end,
        },
        "note": "SetFit's defaults (CosineSimilarityLoss on oversampled pairs, then a LogisticRegression head on "
        "the fine-tuned body); max_steps = epochs x ceil(n_train / batch); body learning rate = the shared budget",
    }

    def head_predict(texts: list[str]) -> list[int]:
        return np.asarray(model.predict(texts, as_numpy=True)).astype(int).tolist()

    return Trained(model.model_body, int(trainer.st_trainer.state.global_step), seconds, settings, head_predict)


# --------------------------------------------------------------------------------------------------------------------
# the registry


def _ours():
    from sbert_align.losses import AllNegativesLoss, ClassAlignmentLoss

    return AllNegativesLoss, ClassAlignmentLoss


register(Method("frozen", "all-MiniLM-L6-v2 as it comes: no training", _frozen, "baseline"))

loss_method(
    "ce",
    f"cross-entropy: encoder (mean pooling) + fresh linear softmax head end to end; head lr {CE_HEAD_LR:g}",
    lambda model, ctx: SoftmaxClassificationLoss(model, ctx.data.num_classes),
    group="baseline",
    lr_mapping=lambda ctx: {r"^classifier\.": CE_HEAD_LR},
    extra_settings={"head_learning_rate": CE_HEAD_LR, "head": "linear on mean pooling (before Normalize)"},
)

_ST_TRIPLET = {
    "batch-all": "BatchAllTripletLoss",
    "batch-hard": "BatchHardTripletLoss",
    "batch-hard-soft": "BatchHardSoftMarginTripletLoss",
}


def _st_loss(class_name: str, **kwargs: Any) -> Callable[[Any, Context], nn.Module]:
    def make(model, ctx: Context) -> nn.Module:
        from sentence_transformers.sentence_transformer import losses

        # the documented defaults (Euclidean distance; margin 5 where any) unless a diagnostic row says otherwise
        return getattr(losses, class_name)(model, **kwargs)

    return make


for _key, _cls in _ST_TRIPLET.items():
    loss_method(
        f"{_key}-grouped",
        f"sentence-transformers {_cls} (defaults), BatchSamplers.GROUP_BY_LABEL as its docs recommend",
        _st_loss(_cls),
        batch_sampler="group_by_label",
        group="sentence-transformers",
    )
    loss_method(
        f"{_key}-shuffled",
        f"sentence-transformers {_cls} (defaults), plain shuffling",
        _st_loss(_cls),
        group="sentence-transformers",
    )

loss_method(
    "mnrl",
    "sentence-transformers MultipleNegativesRankingLoss (defaults) on same-class (anchor, positive) pairs, "
    "BatchSamplers.NO_DUPLICATES",
    _st_loss("MultipleNegativesRankingLoss"),
    batch_sampler="no_duplicates",
    group="sentence-transformers",
    data="pairs",
)

register(
    Method(
        "setfit",
        "SetFit 1.2 (its defaults: CosineSimilarityLoss pairs + LogisticRegression head), same optimiser steps, no weight decay",
        _setfit,
        "peer",
    )
)

loss_method(
    "pml-xbm",
    "pytorch-metric-learning CrossBatchMemory(SupConLoss(temperature=0.1), memory 4096) behind an adapter",
    _pml_xbm,
    group="peer",
)

loss_method(
    "allneg-supcon",
    "AllNegativesLoss(model): SupCon over every pair of the batch",
    lambda model, ctx: _ours()[0](model),
    group="ours",
)
loss_method(
    "allneg-cosine",
    'AllNegativesLoss(model, objective="cosine_target"): the original alignment objective, all pairs',
    lambda model, ctx: _ours()[0](model, objective="cosine_target"),
    group="ours",
)


def ca_method(name: str, summary: str, **options: Any) -> Method:
    """Register ``ClassAlignmentLoss(model, seed=<the budget's seed>, **options)`` (group ``ours``); an option given as
    a callable is ``ctx -> value``, for settings that depend on the data or the budget."""

    def make_loss(model, ctx: Context):
        values = {key: value(ctx) if callable(value) else value for key, value in options.items()}
        return _ours()[1](model, seed=ctx.budget.seed, **values)

    return loss_method(name, summary, make_loss, group="ours")


ca_method(
    "ca-sampled",
    'ClassAlignmentLoss(model, pairs="sampled"): one sampled positive and negative per anchor (the original)',
    pairs="sampled",
)
ca_method("ca-default", "ClassAlignmentLoss(model): its defaults (supcon, memory 4096)")
ca_method(
    "ca-fullmem",
    "ClassAlignmentLoss(model, memory_size=len(train)): a memory of the whole train set",
    memory_size=lambda ctx: ctx.n_train,
)

# candidates for the recommended configuration, compared on validation carved from train (``--validation``)
ca_method("ca-t05", "ClassAlignmentLoss(model, temperature=0.05): a sharper SupCon (default 0.1)", temperature=0.05)
ca_method("ca-t20", "ClassAlignmentLoss(model, temperature=0.2): a softer SupCon (default 0.1)", temperature=0.2)
ca_method(
    "ca-memwarmup",
    "ClassAlignmentLoss(model, memory_warmup_steps=10 % of the run's steps): no stale keys while the learning rate "
    "warms up",
    memory_warmup_steps=lambda ctx: math.ceil(ctx.budget.warmup_ratio * ctx.steps_per_epoch * ctx.budget.epochs),
)
ca_method(
    "ca-prototypes",
    'ClassAlignmentLoss(model, memory_mode="prototypes"): the memory holds one moving-average vector per class',
    memory_mode="prototypes",
)
ca_method(
    "ca-cosine",
    'ClassAlignmentLoss(model, objective="cosine_target"): the original alignment objective, with the memory',
    objective="cosine_target",
)


def _layer_mean_encoder(ctx: Context):
    """all-MiniLM-L6-v2's transformer pooled by the mean over its layers' outputs, then over tokens (the ``layer-mean``
    pooling of ``sbert-align compare``, layer weights fixed at 1), in place of its last-layer token mean."""
    from sbert_align.cli.pooling import pooled_model

    return pooled_model(load_encoder(ctx), "layer-mean", device=ctx.budget.device)


loss_method(
    "ca-layermean",
    "ClassAlignmentLoss(model) on all-MiniLM-L6-v2 pooled by layer-mean (the mean of all layers' token outputs, then "
    "over tokens) instead of the last layer's token mean",
    lambda model, ctx: _ours()[1](model, seed=ctx.budget.seed),
    group="ours",
    encoder=_layer_mean_encoder,
    extra_settings={"pooling": "layer-mean (WeightedLayerPooling, weights fixed at 1, layers 1..6) + token mean"},
)


def _ca_plus_ce(model, ctx: Context) -> nn.Module:
    from sbert_align.losses import AuxiliaryLoss

    main = _ours()[1](model, seed=ctx.budget.seed)
    head = SoftmaxClassificationLoss(model, ctx.data.num_classes)
    loss = AuxiliaryLoss(model, main=main, aux=head, weight=1.0)
    loss.predict = head.predict  # the head's accuracy is reported beside kNN, as for ``ce``
    return loss


loss_method(
    "ca-plus-ce",
    "AuxiliaryLoss(model, ClassAlignmentLoss(model), SoftmaxClassificationLoss(model, classes), weight=1.0): the "
    f"defaults plus the cross-entropy of a fresh linear head (head lr {CE_HEAD_LR:g}; SupCon + CE as in Gunel et al., "
    "2021)",
    _ca_plus_ce,
    group="ours",
    lr_mapping=lambda ctx: {r"(^|\.)classifier\.": CE_HEAD_LR},
    extra_settings={"head_learning_rate": CE_HEAD_LR, "aux_weight": 1.0},
)


# A diagnostic, not a peer setting: all-MiniLM-L6-v2 normalises its embeddings, so their Euclidean distances are at
# most 2 and the default margin of 5 is never met (every triplet stays in the loss). This row asks whether a margin
# that unit vectors can meet changes the Banking77 result; the peer rows above keep the documented default.
loss_method(
    "batch-all-grouped-margin05",
    "DIAGNOSTIC: sentence-transformers BatchAllTripletLoss(margin=0.5) grouped by label; the default margin 5 exceeds"
    " the largest distance (2) between the normalised embeddings",
    _st_loss("BatchAllTripletLoss", margin=0.5),
    batch_sampler="group_by_label",
    group="sentence-transformers",
    extra_settings={"margin": 0.5, "purpose": "diagnostic: a margin unit vectors can meet"},
)

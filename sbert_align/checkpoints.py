"""Loss state in Trainer checkpoints: written with every checkpoint, restored on resume, nothing for the user to do.

A loss with training state (:class:`~sbert_align.losses.ClassAlignmentLoss`: its memory bank, step counter and
sampling generator; :class:`~sbert_align.losses.AnnealedPairLoss`: its schedule step) keeps that state in
``get_extra_state()`` / ``set_extra_state()``, so it is part of ``loss.state_dict()`` as PyTorch defines it. On
construction such a loss registers itself, and :class:`LossStateCallback` joins every ``transformers.Trainer`` (and
so ``SentenceTransformerTrainer`` and ``SentenceTransformer.fit``) through ``transformers.trainer.DEFAULT_CALLBACKS``
(see :mod:`sbert_align._trainer_hooks` for how it finds the Trainer's losses). The callback

* on every checkpoint (``on_save``) writes the state of the losses that train the trainer's model into the
  checkpoint folder: tensors in ``sbert_align_loss_state.safetensors``, everything else in
  ``sbert_align_loss_state.json`` (no pickle: nothing loaded can run code), each written to a temporary name and
  renamed into place;
* on ``trainer.train(resume_from_checkpoint=...)`` (``on_train_begin`` with a step above 0) reads it back from
  ``args.resume_from_checkpoint`` when that names the checkpoint, else from ``<output_dir>/checkpoint-<step>``,
  where the Trainer writes its checkpoints. A resumed run without that file warns that the losses start afresh.

The losses of one Trainer are told apart by class and order of construction (``ClassAlignmentLoss_0``, ...), so a
resumed script must build them in the same order, as it builds the same model and data.

Example:
    ::

        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sbert_align.losses import ClassAlignmentLoss

        loss = ClassAlignmentLoss(model, memory_size=4096)
        args = SentenceTransformerTrainingArguments("runs/x", save_steps=100, max_steps=1000)
        SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss).train()
        # ... interrupted; later, in a new process, the same script with:
        SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=loss).train(
            resume_from_checkpoint=True
        )  # the memory, warm-up counter and schedule continue where the checkpoint left them
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ._trainer_hooks import LossCallback, install_callback, register_loss
from .files import atomic_path, atomic_write_json

__all__ = [
    "LossStateCallback",
    "register_stateful_loss",
    "save_loss_states",
    "load_loss_states",
    "STATE_TENSORS_NAME",
    "STATE_JSON_NAME",
]

STATE_TENSORS_NAME = "sbert_align_loss_state.safetensors"
STATE_JSON_NAME = "sbert_align_loss_state.json"
_FORMAT_VERSION = 1


def register_stateful_loss(loss: nn.Module) -> None:
    """Make ``loss``'s ``get_extra_state()`` part of every Trainer checkpoint (called by the losses themselves)."""
    register_loss(loss)
    install_callback(LossStateCallback)


def keyed_stateful(losses: list[nn.Module]) -> dict[str, nn.Module]:
    """The losses with training state among ``losses``, keyed ``<ClassName>_<i>`` in their order."""
    keyed: dict[str, nn.Module] = {}
    for loss in losses:
        if type(loss).get_extra_state is nn.Module.get_extra_state:
            continue
        name = type(loss).__name__
        keyed[f"{name}_{sum(k.rsplit('_', 1)[0] == name for k in keyed)}"] = loss
    return keyed


# ----------------------------------------------------------------------------------------------- files
def _flatten(value: Any, path: str, tensors: dict[str, Tensor]) -> Any:
    """JSON-able structure with each tensor replaced by ``{"__tensor__": key}`` (the tensor goes to ``tensors``)."""
    if isinstance(value, Tensor):
        tensors[path] = value.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(value, dict):
        return {str(k): _flatten(v, f"{path}.{k}", tensors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"Loss state at {path!r} holds a {type(value).__name__}; only tensors and JSON values are saved.")


def _unflatten(value: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def save_loss_states(folder: str | os.PathLike, states: dict[str, dict[str, Any]]) -> None:
    """Write ``{loss key: state}`` into ``folder``: tensors as safetensors, the rest as JSON, each atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    meta = {"format": _FORMAT_VERSION, "losses": {k: _flatten(v, k, tensors) for k, v in states.items()}}
    with atomic_path(folder / STATE_TENSORS_NAME) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_json(folder / STATE_JSON_NAME, meta, indent=1)


def load_loss_states(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read what :func:`save_loss_states` wrote (tensors on the CPU)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / STATE_JSON_NAME).read_text())
    if meta.get("format") != _FORMAT_VERSION:
        raise ValueError(f"{folder / STATE_JSON_NAME}: unknown loss state format {meta.get('format')!r}.")
    tensors = load_file(folder / STATE_TENSORS_NAME) if (folder / STATE_TENSORS_NAME).is_file() else {}
    return {k: _unflatten(v, tensors) for k, v in meta["losses"].items()}


# ----------------------------------------------------------------------------------------------- callback
class LossStateCallback(LossCallback):
    """Writes the training state of sbert-align's losses with every Trainer checkpoint and restores it on resume.

    Every Trainer gets one automatically once such a loss exists (see the module docstring); add it yourself
    only to a Trainer built from a ``callbacks`` list that replaces the defaults.
    """

    def on_save(self, args, state, control, model=None, **kwargs):
        if model is None or getattr(args, "save_only_model", False) or not state.is_world_process_zero:
            return
        losses = keyed_stateful(self.losses(model))
        if losses:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_loss_states(folder, {key: loss.get_extra_state() for key, loss in losses.items()})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None or state.global_step == 0:
            return
        losses = keyed_stateful(self.losses(model))
        if not losses:
            return
        folder = _resume_folder(args, state.global_step)
        if folder is None:
            warnings.warn(
                f"Resuming at step {state.global_step}, but no {STATE_JSON_NAME} was found (looked in "
                f"args.resume_from_checkpoint and {args.output_dir}/checkpoint-{state.global_step}): "
                f"{', '.join(losses)} start with an empty memory and a schedule at step 0.",
                stacklevel=2,
            )
            return
        states = load_loss_states(folder)
        missing = [key for key in losses if key not in states]
        if missing:
            raise ValueError(
                f"{folder / STATE_JSON_NAME} holds the state of {sorted(states)} but this run trains with "
                f"{sorted(losses)}: build the same losses, in the same order, as the run that saved it."
            )
        for key, loss in losses.items():
            loss.set_extra_state(states[key])


def _resume_folder(args, step: int) -> Path | None:
    candidates = []
    resume = getattr(args, "resume_from_checkpoint", None)
    if isinstance(resume, (str, os.PathLike)):
        candidates.append(Path(resume))
    candidates.append(Path(args.output_dir) / f"checkpoint-{step}")
    for folder in candidates:
        trainer_state = folder / "trainer_state.json"
        if (folder / STATE_JSON_NAME).is_file() and (
            not trainer_state.is_file() or json.loads(trainer_state.read_text()).get("global_step") == step
        ):
            return folder
    return None

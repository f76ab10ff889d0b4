"""The file that holds the training state of sbert-align's losses inside a checkpoint folder.

One file, ``sbert_align_loss_state.safetensors``: every tensor of every loss's state (memory rows and labels, a
sampling generator's state, a staged batch) as a safetensors tensor, and the rest of the state (counters, settings)
as JSON in the file's metadata, with each tensor replaced by a reference to it. Nothing loaded can run code (no
pickle), and one file is written atomically as a whole (temporary name, then rename), so tensors and counters
always belong together.

:class:`sbert_align.trainer_hooks.LossStateCallback` writes it with every Trainer checkpoint and reads it on
resume; :func:`save_loss_states` / :func:`load_loss_states` are the file format alone.

Example:
    ::

        import torch
        from sbert_align.checkpoints import load_loss_states, save_loss_states

        save_loss_states("ckpt", {"ClassAlignmentLoss": {"steps": 3, "rows": torch.zeros(2, 4)}})
        state = load_loss_states("ckpt")["ClassAlignmentLoss"]  # {"steps": 3, "rows": tensor of shape (2, 4)}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor

from .files import atomic_path

__all__ = ["save_loss_states", "load_loss_states", "STATE_FILE_NAME"]

STATE_FILE_NAME = "sbert_align_loss_state.safetensors"
_FORMAT_VERSION = 2
_META_KEY = "sbert_align_loss_state"


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


def _unflatten(value: Any, tensors: dict[str, Tensor], where: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            if value["__tensor__"] not in tensors:
                raise ValueError(f"{where}: the tensor {value['__tensor__']!r} is missing; the file is damaged.")
            return tensors[value["__tensor__"]]
        return {k: _unflatten(v, tensors, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors, where) for v in value]
    return value


def save_loss_states(folder: str | os.PathLike, states: dict[str, dict[str, Any]]) -> Path:
    """Write ``{loss key: state}`` into ``folder`` as :data:`STATE_FILE_NAME` (atomically); returns its path.

    Args:
        folder: The checkpoint folder (created if missing).
        states: Per loss, a nested dict / list of tensors and JSON values (``loss.get_extra_state()``).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Tensor] = {}
    meta = {"format": _FORMAT_VERSION, "losses": {k: _flatten(v, k, tensors) for k, v in states.items()}}
    path = folder / STATE_FILE_NAME
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    return path


def load_loss_states(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read what :func:`save_loss_states` wrote into ``folder`` (tensors on the CPU).

    Raises:
        ValueError: the file is missing, is not sbert-align's loss state, or is of an unknown format version.
    """
    from safetensors import safe_open

    path = Path(folder) / STATE_FILE_NAME
    if not path.is_file():
        raise ValueError(f"{path}: no such file.")
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(_META_KEY)
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    if raw is None:
        raise ValueError(f"{path}: not an sbert-align loss state file (no {_META_KEY!r} metadata).")
    meta = json.loads(raw)
    if meta.get("format") != _FORMAT_VERSION:
        raise ValueError(f"{path}: unknown loss state format {meta.get('format')!r} (expected {_FORMAT_VERSION}).")
    return {k: _unflatten(v, tensors, path) for k, v in meta["losses"].items()}

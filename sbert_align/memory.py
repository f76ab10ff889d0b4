"""The memory of past embeddings: the storage (:class:`MemoryBank`) and the policy of a training run
(:class:`TrainingMemory`: warm-up, staging a step's batch until after its backward pass, the cross-process gather,
and the state a checkpoint needs).

The memory lets every class find positives and negatives beyond the current batch. It lives on the embeddings'
device, in the dtype you choose, and never keeps a graph: what goes in is detached. Besides its class label, each row
may carry a *confound* label (a source, publisher or template id; see :mod:`sbert_align.kernels.confound`), so that a
loss can also find the pairs that share the confound but not the class beyond the batch. A row written without one has
the confound :data:`~sbert_align.kernels.confound.CONFOUND_NONE` (-1, unknown).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import Tensor

from .kernels._inputs import check_labels
from .kernels.confound import CONFOUND_NONE, check_confounds

__all__ = ["MemoryBank", "TrainingMemory"]

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            raise ValueError(f"dtype must be a floating point dtype, got {dtype}.")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    return _DTYPES[dtype]


class MemoryBank:
    """A memory of past embeddings with their integer labels (and, optionally, integer confound labels).

    Two modes:

    * ``"queue"`` (default): a ring of the last ``size`` embeddings; when full, the oldest are overwritten.
      With ``size = len(train_dataset)`` it holds (about) every example's latest embedding.
    * ``"prototypes"``: one vector per class, an exponential moving average of the class's batch means,
      ``p <- momentum * p + (1 - momentum) * mean``; ``size`` caps the number of classes. A class mean mixes
      confounds, so prototypes carry none (their confound is ``CONFOUND_NONE``).

    Confounds: :meth:`enqueue` takes an optional ``confounds`` tensor (one id >= 0 per row) and keeps each with its
    row; ``get(with_confounds=True)`` returns them; rows written without one read as ``CONFOUND_NONE`` (-1). They are
    part of :meth:`state_dict`; a state saved before confounds existed loads with every row's confound unknown.

    Args:
        size: Capacity (rows for the queue, classes for prototypes); must be > 0.
        dim: Embedding dimension, or None to take it from the first :meth:`enqueue`.
        dtype: Storage dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (half the memory).
        device: Storage device, or None to follow the first embeddings enqueued.
        mode: ``"queue"`` or ``"prototypes"``.
        momentum: EMA momentum of the prototypes.

    Example:
        ::

            import torch
            from sbert_align import MemoryBank

            bank = MemoryBank(size=4, dim=3)
            bank.enqueue(torch.randn(3, 3), torch.tensor([0, 1, 2]))
            bank.enqueue(torch.randn(3, 3), torch.tensor([3, 4, 5]))  # wraps around: keeps the last 4
            emb, labels = bank.get()  # (4, 3), labels tensor([2, 3, 4, 5]) oldest first
            bank.enqueue(torch.randn(1, 3), torch.tensor([0]), confounds=torch.tensor([7]))
            emb, labels, confounds = bank.get(with_confounds=True)  # confounds tensor([-1, -1, -1, 7])
    """

    def __init__(
        self,
        size: int,
        dim: int | None = None,
        dtype: str | torch.dtype = "float32",
        device: str | torch.device | None = None,
        mode: str = "queue",
        momentum: float = 0.9,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"size must be a positive integer, got {size!r}.")
        if dim is not None and (not isinstance(dim, int) or dim <= 0):
            raise ValueError(f"dim must be a positive integer or None, got {dim!r}.")
        if mode not in ("queue", "prototypes"):
            raise ValueError(f"mode must be 'queue' or 'prototypes', got {mode!r}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}.")
        self.size = size
        self.dim = dim
        self._dim_given = dim is not None
        self.dtype = _as_dtype(dtype)
        self.mode = mode
        self.momentum = float(momentum)
        self.device = torch.device(device) if device is not None else None
        self._embeddings: Tensor | None = None
        self._labels: Tensor | None = None
        self._confounds: Tensor | None = None
        self.ptr = 0  # next row to write (queue)
        self.filled = 0  # rows (queue) or classes (prototypes) holding data
        self.num_enqueued = 0  # embeddings seen since the last reset

    # ------------------------------------------------------------------ storage
    def _allocate(self, dim: int, device: torch.device) -> None:
        self.dim = dim
        self.device = device
        self._embeddings = torch.zeros(self.size, dim, dtype=self.dtype, device=device)
        self._labels = torch.full((self.size,), -1, dtype=torch.long, device=device)
        self._confounds = torch.full((self.size,), CONFOUND_NONE, dtype=torch.long, device=device)

    def __len__(self) -> int:
        return self.filled

    @property
    def is_full(self) -> bool:
        return self.filled == self.size

    def to(self, device: str | torch.device) -> MemoryBank:
        """Move the storage to ``device`` (in place; returns the bank)."""
        self.device = torch.device(device)
        if self._embeddings is not None:
            self._embeddings = self._embeddings.to(self.device)
            self._labels = self._labels.to(self.device)
            self._confounds = self._confounds.to(self.device)
        return self

    def reset(self) -> None:
        """Forget everything. Keeps the capacity, dtype and device, and the dimension when it was given; a dimension
        taken from the first :meth:`enqueue` is forgotten too, so the bank then accepts another model's embeddings."""
        if self._dim_given:
            if self._embeddings is not None:
                self._embeddings.zero_()
                self._labels.fill_(-1)
                self._confounds.fill_(CONFOUND_NONE)
        else:
            self.dim = None
            self._embeddings = self._labels = self._confounds = None
        self.ptr = 0
        self.filled = 0
        self.num_enqueued = 0

    # ------------------------------------------------------------------ write
    @torch.no_grad()
    def enqueue(self, embeddings: Tensor, labels: Tensor, confounds: Tensor | None = None) -> None:
        """Add a batch of embeddings ``(n, dim)`` with integer labels ``(n,)`` and, optionally, integer confound ids
        ``(n,)`` (>= 0; None: unknown, ``CONFOUND_NONE``); stored detached. Prototypes ignore confounds."""
        if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
            raise ValueError(f"embeddings must be a 2-D tensor (n, dim), got {getattr(embeddings, 'shape', None)}.")
        labels = check_labels(labels, embeddings.shape[0], "labels")
        if confounds is not None:
            confounds = check_confounds(confounds, embeddings.shape[0], "confounds", allow_unknown=True)
        if self.dim is not None and embeddings.shape[1] != self.dim:
            raise ValueError(
                f"MemoryBank holds embeddings of dimension {self.dim}, got {embeddings.shape[1]}. "
                "Use one bank per model, or reset() it after changing the embedding dimension."
            )
        if self._embeddings is None:
            self._allocate(embeddings.shape[1], self.device or embeddings.device)
        emb = embeddings.detach().to(device=self.device, dtype=self.dtype)
        labels = labels.to(self.device)
        self.num_enqueued += emb.shape[0]
        if self.mode == "prototypes":
            self._update_prototypes(emb, labels)
            return
        n = emb.shape[0]
        if confounds is None:
            confounds = torch.full((n,), CONFOUND_NONE, dtype=torch.long, device=self.device)
        confounds = confounds.to(self.device)
        if n >= self.size:  # only the newest `size` rows survive
            emb, labels, confounds, n = emb[-self.size :], labels[-self.size :], confounds[-self.size :], self.size
        idx = (torch.arange(n, device=self.device) + self.ptr) % self.size
        self._embeddings[idx] = emb
        self._labels[idx] = labels
        self._confounds[idx] = confounds
        self.ptr = (self.ptr + n) % self.size
        self.filled = min(self.filled + n, self.size)

    def _update_prototypes(self, emb: Tensor, labels: Tensor) -> None:
        for label in labels.unique().tolist():
            mean = emb[labels == label].float().mean(0)
            slot = (self._labels[: self.filled] == label).nonzero()
            if slot.numel():
                i = int(slot[0])
                self._embeddings[i] = (self.momentum * self._embeddings[i].float() + (1 - self.momentum) * mean).to(
                    self.dtype
                )
            else:
                if self.filled == self.size:
                    raise ValueError(
                        f"MemoryBank(mode='prototypes', size={self.size}) is full: label {label} is class "
                        f"number {self.size + 1}. Give a size of at least the number of classes."
                    )
                self._embeddings[self.filled] = mean.to(self.dtype)
                self._labels[self.filled] = label
                self.filled += 1

    # ------------------------------------------------------------------ read
    def get(self, with_confounds: bool = False) -> tuple[Tensor, ...]:
        """The stored embeddings ``(filled, dim)`` and labels ``(filled,)`` (and, ``with_confounds``, the confound ids
        ``(filled,)``, ``CONFOUND_NONE`` where unknown); oldest first for the queue.

        Returns views of the storage (no copy) unless the ring has wrapped, in which case it is reordered.
        """
        if self._embeddings is None or self.filled == 0:
            dim = self.dim or 0
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            out = (torch.zeros(0, dim, dtype=self.dtype, device=self.device), empty)
            return (*out, empty.clone()) if with_confounds else out
        if self.mode == "prototypes" or self.filled < self.size or self.ptr == 0:
            return self.get_unordered(with_confounds)
        order = torch.cat([torch.arange(self.ptr, self.size), torch.arange(0, self.ptr)]).to(self.device)
        out = (self._embeddings[order], self._labels[order])
        return (*out, self._confounds[order]) if with_confounds else out

    def get_unordered(self, with_confounds: bool = False) -> tuple[Tensor, ...]:
        """Like :meth:`get` but without reordering a wrapped ring (no copy); order does not matter to the losses."""
        if self._embeddings is None or self.filled == 0:
            return self.get(with_confounds)
        out = (self._embeddings[: self.filled], self._labels[: self.filled])
        return (*out, self._confounds[: self.filled]) if with_confounds else out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the bank: tensors, counters and settings (JSON-able except the tensors)."""
        return {
            "size": self.size,
            "dim": self.dim,
            "dtype": str(self.dtype).replace("torch.", ""),
            "mode": self.mode,
            "momentum": self.momentum,
            "ptr": self.ptr,
            "filled": self.filled,
            "num_enqueued": self.num_enqueued,
            "embeddings": None if self._embeddings is None else self._embeddings.clone(),
            "labels": None if self._labels is None else self._labels.clone(),
            "confounds": None if self._confounds is None else self._confounds.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the capacity, mode and dimension must match. A state without confounds
        (saved before they existed) gives every row an unknown confound (``CONFOUND_NONE``)."""
        for key in ("size", "mode"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"Cannot load a MemoryBank with {key}={state[key]!r} into one with {getattr(self, key)!r}."
                )
        if self.dim is not None and state["dim"] is not None and state["dim"] != self.dim:
            raise ValueError(f"Cannot load a MemoryBank of dimension {state['dim']} into one of dimension {self.dim}.")
        self.momentum = state["momentum"]
        self.ptr, self.filled, self.num_enqueued = state["ptr"], state["filled"], state["num_enqueued"]
        if state["embeddings"] is None:
            self._embeddings = self._labels = self._confounds = None
            return
        device = self.device or state["embeddings"].device
        self.dim = state["dim"]
        self.device = device
        self._embeddings = state["embeddings"].to(device=device, dtype=self.dtype).clone()
        self._labels = state["labels"].to(device).clone()
        confounds = state.get("confounds")
        if confounds is None:
            self._confounds = torch.full_like(self._labels, CONFOUND_NONE)
        else:
            self._confounds = check_confounds(confounds, self._labels.shape[0], "confounds", allow_unknown=True)
            self._confounds = self._confounds.to(device).clone()

    def __repr__(self) -> str:
        return (
            f"MemoryBank(size={self.size}, dim={self.dim}, dtype={str(self.dtype).replace('torch.', '')}, "
            f"mode={self.mode!r}, filled={self.filled})"
        )


class TrainingMemory:
    """When a loss reads its :class:`MemoryBank` and when a training step's batch goes in: the memory policy.

    * **Warm-up**: the first ``warmup_steps`` training steps neither read nor write the memory (early embeddings
      change fast and make stale keys).
    * **Staging**: :meth:`record_step` does not write the batch at once. The loss just computed still has to run
      its backward pass, and the tiled kernels keep the memory's rows (a view, not a copy) to recompute their
      tiles there; writing the ring in place before that would change the keys under them. The batch is staged
      and written by :meth:`flush`, which every read (:attr:`bank`, :meth:`keys`) calls first.
    * **Several processes**: under DDP the staged batch is every process's batch in rank order (gathered in
      :meth:`record_step`, in step on every process), so the memory stays identical on all processes.
    * **State**: :meth:`state_dict` / :meth:`load_state_dict` hold the bank, the step counter and the staged batch
      (read without writing it, so it is safe at any time), so that a resumed run continues exactly where the
      interrupted one stopped.
    * **Confounds**: :meth:`record_step` takes the batch's confound ids too (optional); they travel with the rows
      (staged, gathered across processes, stored, saved) and :meth:`keys` returns them with ``with_confounds=True``.

    Args:
        bank: The storage, or None for no memory (steps are still counted).
        warmup_steps: Training steps before the memory is read and written.

    Example:
        ::

            import torch
            from sbert_align.memory import MemoryBank, TrainingMemory

            memory = TrainingMemory(MemoryBank(size=8, dim=4), warmup_steps=1)
            for _ in range(3):
                emb, labels = torch.randn(2, 4), torch.tensor([0, 1])
                keys = memory.keys()  # None during warm-up, then (rows, labels) of the earlier batches
                memory.record_step(emb, labels)
            print(memory.steps, len(memory.bank))  # 3 steps, 4 rows (steps 2 and 3)
    """

    def __init__(self, bank: MemoryBank | None, warmup_steps: int = 0) -> None:
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}.")
        self._bank = bank
        self.warmup_steps = warmup_steps
        self.steps = 0  # training steps (forward passes) recorded so far
        self._pending: tuple[Tensor, Tensor, Tensor | None] | None = None
        self._last_width: int | None = None  # of the last training call (see begins_step)
        self._last_labels: weakref.ref[Tensor] | None = None

    @property
    def bank(self) -> MemoryBank | None:
        """The storage, with every finished training step's batch in it (None without a memory)."""
        self.flush()
        return self._bank

    @property
    def active(self) -> bool:
        """True once the warm-up is over (and there is a memory)."""
        return self._bank is not None and self.steps >= self.warmup_steps

    def begins_step(self, width: int, labels: Tensor) -> bool:
        """Whether a training call with embeddings of ``width`` dimensions and these ``labels`` is a new step.

        A call with the very same ``labels`` tensor as the training call before it and *narrower* embeddings is the
        same batch at a smaller Matryoshka dimension (``MatryoshkaLoss`` calls its inner loss once per dimension,
        widest first, with one labels tensor): it neither counts as a step nor adds to the memory, and it reads the
        memory as the step's first call found it, cut to its width. A call of the same width is a new step, even
        with the same labels tensor (a loop may reuse one); so wrappers that call the loss several times at one
        width (``AdaptiveLayerLoss``, ``Matryoshka2dLoss``) count each call as a step.
        """
        last = self._last_labels() if self._last_labels is not None else None
        repeat = last is labels and self._last_width is not None and width < self._last_width
        self._last_width = width
        self._last_labels = weakref.ref(labels) if isinstance(labels, Tensor) else None
        return not repeat

    def keys(
        self, width: int | None = None, *, within_step: bool = False, cut: bool = False, with_confounds: bool = False
    ) -> tuple[Tensor, ...] | None:
        """The memory's rows and labels (and, ``with_confounds``, confound ids) to compare a batch with, or None (no
        memory, warming up, or empty).

        Args:
            width: The batch's dimension. The rows must have it, unless ``cut`` or ``within_step``: then wider rows
                are cut to their first ``width`` dimensions (a Matryoshka dimension compares like with like; the
                kernels normalise after the cut). Anything else is a ``ValueError``.
            within_step: A later call of the same step (:meth:`begins_step` was False): the staged batch of this
                step is not written first, so that every call of a step reads the same memory, and the earlier
                calls' backward still finds the rows it saw.
            cut: Allow cutting wider rows outside a step too (evaluation passes, which write nothing).
            with_confounds: Also return the rows' confound ids (``CONFOUND_NONE`` where unknown).
        """
        if not self.active:
            return None
        if not within_step:
            self.flush()
        if len(self._bank) == 0:
            return None
        rows, labels, confounds = self._bank.get_unordered(with_confounds=True)
        if width is not None and rows.shape[1] != width:
            if rows.shape[1] < width or not (within_step or cut):
                raise ValueError(
                    f"The memory bank holds embeddings of dimension {rows.shape[1]} but the model now gives {width}; "
                    "call loss.memory.reset(). (Under MatryoshkaLoss, every step must include the full dimension: "
                    "n_dims_per_step with a memory is not supported.)"
                )
            rows = rows[:, :width]
        return (rows, labels, confounds) if with_confounds else (rows, labels)

    def record_step(self, embeddings: Tensor, labels: Tensor, confounds: Tensor | None = None) -> None:
        """Count a training step and, once warm, stage its batch (all processes' under DDP) for the memory, with its
        confound ids when given."""
        self.steps += 1
        if self._bank is None or self.steps <= self.warmup_steps:
            return
        from .distributed import gather_detached

        self.flush()
        if confounds is None:
            self._pending = (*gather_detached(embeddings, labels), None)
            return
        # one gather for both label columns: every process's [class, confound] rows, in rank order
        rows, both = gather_detached(embeddings, torch.stack([labels.reshape(-1), confounds.reshape(-1)], dim=1))
        self._pending = (rows, both[:, 0], both[:, 1])

    def flush(self) -> None:
        """Write the staged batch of the last training step into the bank (a no-op when nothing is staged)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._bank.enqueue(*pending)

    def reset(self) -> None:
        """Forget the memory's contents, the staged batch and the step counter."""
        self._pending = None
        self.steps = 0
        if self._bank is not None:
            self._bank.reset()

    def state_dict(self) -> dict[str, Any]:
        """The step counter, the bank's state and the staged batch (nothing is written: safe between a forward pass
        and its backward)."""
        pending = None
        if self._pending is not None:
            emb, labels, confounds = self._pending
            pending = {"embeddings": emb, "labels": labels, "confounds": confounds}
        return {
            "steps": self.steps,
            "bank": None if self._bank is None else self._bank.state_dict(),
            "pending": pending,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; a memory can only be loaded into a memory of the same size and mode."""
        if (state["bank"] is None) != (self._bank is None):
            have = "no memory" if self._bank is None else "a memory"
            saved = "no memory" if state["bank"] is None else "a memory"
            raise ValueError(f"Cannot load the state of a loss with {saved} into a loss with {have}.")
        self.steps = int(state["steps"])
        if self._bank is not None:
            self._bank.load_state_dict(state["bank"])
        pending = state.get("pending")
        self._pending = (
            None if pending is None else (pending["embeddings"], pending["labels"], pending.get("confounds"))
        )

    def to(self, device: str | torch.device) -> TrainingMemory:
        """Move the bank and the staged batch to ``device`` (in place; returns self)."""
        if self._bank is not None:
            self._bank.to(device)
        if self._pending is not None:
            self._pending = tuple(None if t is None else t.to(device) for t in self._pending)
        return self

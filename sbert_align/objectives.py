"""The pairwise objectives shared by every loss and every kernel backend.

Each objective is *the formula alone*, written once. It sees a similarity matrix ``sim`` (queries x keys, cosine
similarities), a boolean ``pos`` mask (same label) and a boolean ``valid`` mask (the pair takes part: not an item
with itself, not a padding key) and nothing else: no embeddings, no models, no sentence-transformers types.

So that the same formula serves the materialised reference and the tiled kernels, an objective is split into
three pieces:

* :meth:`PairObjective.pair_stats` -- per-query sums over keys of per-pair terms, shape ``(B, n_stats)``. Sums are
  additive over key tiles, so a backend may walk the keys tile by tile and add up the statistics.
* an optional per-query log-sum-exp ``lse_i = logsumexp_{j valid}(lse_scale * s_ij)`` (``lse_scale`` is not None
  for softmax objectives), which a tiled backend computes online (the FlashAttention trick).
* :meth:`PairObjective.finalize` -- the scalar loss from the statistics and the log-sum-exp (cheap, O(B)).

:meth:`PairObjective.pair_grad` gives ``d(sum_k g_k * stats_k)/d sim`` for given ``g = d loss / d stats``, which is
what a tiled backward needs to rebuild the gradient of each tile without storing it; the log-sum-exp part of the
gradient, ``g_lse_i * lse_scale * softmax_ij``, is added by the backend. :meth:`PairObjective.loss` chains the
pieces on a whole matrix: it is the ground truth that every backend is tested against.

Definitions (``s_ij`` cosine similarity; sums over valid pairs only). ``s_ij = n_i . n_j`` with ``n = x / ||x||``,
and a zero vector (every backend counts a row with a norm below ``sbert_align.kernels.NORMALIZE_EPS`` as one) has
``s = 0`` with everything and gets no gradient: it is an ordinary pair member with similarity 0, so every formula
below stays finite.

* ``cosine_target`` (the original class-alignment loss, SetFit's ``CosineSimilarityLoss`` on pairs):
  ``(s_ij - t_ij)^2`` with ``t_ij = 1`` for positives and ``t_neg`` for negatives.
* ``margin`` (contrastive loss, Hadsell et al. 2006, on cosine similarity): positives ``(1 - s_ij)^2``, negatives
  ``max(0, s_ij - margin)^2``.
* ``supcon`` (supervised contrastive loss, Khosla et al. 2020):
  ``L_i = -1/|P(i)| sum_{p in P(i)} log softmax_j(s_ij / tau)_p`` with the softmax over all valid keys of ``i``.

Reductions:

* ``cosine_target`` / ``margin``: ``reduction="mean"`` (default) divides the summed pair terms by the number of
  valid pairs; ``reduction="sum"`` returns the plain sum (what the original implementation did); ``balance=True``
  (with ``mean``) returns ``(mean over positive pairs + mean over negative pairs) / 2``, so the ~C-to-1 excess of
  negatives with all negatives does not drown the positives. An empty group is left out of the average.
* ``supcon``: ``reduction="mean"`` averages ``L_i`` over anchors that have at least one positive (anchors without
  positives contribute nothing); ``reduction="sum"`` sums them.

A batch with no valid pair (a single example), or, for ``supcon``, with no anchor that has a positive, gives a loss
of exactly ``0.0`` that is still attached to the graph (its gradient is zero), never NaN.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = [
    "PairObjective",
    "CosineTargetObjective",
    "MarginObjective",
    "SupConObjective",
    "OBJECTIVES",
    "get_objective",
    "masked_logsumexp",
]


def masked_logsumexp(x: Tensor, valid: Tensor) -> Tensor:
    """Row-wise ``logsumexp`` over the entries where ``valid`` is True.

    Rows without any valid entry give ``-inf`` in the forward pass but a zero (not NaN) gradient.
    """
    has_any = valid.any(dim=1, keepdim=True)
    filled = torch.where(valid, x, torch.full_like(x, float("-inf")))
    # Rows with nothing valid: compute on zeros (finite, gradient-safe), then put -inf back.
    filled = torch.where(has_any, filled, torch.zeros_like(x))
    out = torch.logsumexp(filled, dim=1)
    return torch.where(has_any.squeeze(1), out, torch.full_like(out, float("-inf")))


class PairObjective(ABC):
    """A label-dependent objective over a (queries x keys) similarity matrix; see the module docstring."""

    name: ClassVar[str]
    #: Number of additive per-query statistics :meth:`pair_stats` returns.
    n_stats: ClassVar[int]
    #: Scale of the logits inside the per-query log-sum-exp, or None when the objective needs none.
    lse_scale: float | None = None

    @abstractmethod
    def pair_stats(self, sim: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
        """Per-query sums of per-pair terms over the keys given, shape ``(B, n_stats)``; additive over key tiles."""

    @abstractmethod
    def pair_grad(self, sim: Tensor, pos: Tensor, valid: Tensor, grad_stats: Tensor) -> Tensor:
        """``d(sum_k grad_stats[:, k] * pair_stats(sim)[:, k]) / d sim``, shape of ``sim`` (zero where not valid)."""

    @abstractmethod
    def finalize(self, stats: Tensor, lse: Tensor | None) -> Tensor:
        """The scalar loss from the summed statistics ``(B, n_stats)`` and the log-sum-exp ``(B,)`` (or None)."""

    def finalize_grads(self, stats: Tensor, lse: Tensor | None, grad_out: Tensor) -> tuple[Tensor, Tensor | None]:
        """``grad_out * d loss / d stats`` and ``grad_out * d loss / d lse``, by autograd through :meth:`finalize`.

        This is what a tiled backward needs before it walks the tiles again; it costs O(B).
        """
        with torch.enable_grad():
            s_leaf = stats.detach().requires_grad_(True)
            l_leaf = lse.detach().requires_grad_(True) if lse is not None else None
            loss = self.finalize(s_leaf, l_leaf)
            leaves = [s_leaf] + ([l_leaf] if l_leaf is not None else [])
            grads = torch.autograd.grad(loss, leaves, grad_out.to(loss.dtype), allow_unused=True)
        g_stats = grads[0] if grads[0] is not None else torch.zeros_like(stats)
        if lse is None:
            return g_stats, None
        return g_stats, grads[1] if grads[1] is not None else torch.zeros_like(lse)

    def loss(self, sim: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
        """The loss on a whole similarity matrix (the plain PyTorch ground truth)."""
        stats = self.pair_stats(sim, pos, valid)
        lse = masked_logsumexp(sim * self.lse_scale, valid) if self.lse_scale is not None else None
        return self.finalize(stats, lse)

    @abstractmethod
    def get_config_dict(self) -> dict[str, Any]:
        """The objective's parameters, for the model card."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_config_dict().items() if k != "objective")
        return f"{type(self).__name__}({params})"


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")
    return reduction


class _SquaredPairObjective(PairObjective):
    """Shared machinery of objectives that sum one term over positive and another over negative pairs.

    Statistics: ``[sum of positive terms, number of positives, sum of negative terms, number of negatives]``.
    """

    n_stats = 4

    def __init__(self, reduction: str = "mean", balance: bool = False) -> None:
        self.reduction = _check_reduction(reduction)
        if balance and reduction != "mean":
            raise ValueError("balance=True averages the positive and negative groups; it needs reduction='mean'.")
        self.balance = bool(balance)

    @abstractmethod
    def pos_term(self, sim: Tensor) -> Tensor: ...

    @abstractmethod
    def pos_term_grad(self, sim: Tensor) -> Tensor: ...

    @abstractmethod
    def neg_term(self, sim: Tensor) -> Tensor: ...

    @abstractmethod
    def neg_term_grad(self, sim: Tensor) -> Tensor: ...

    def pair_stats(self, sim: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
        p = (pos & valid).to(sim.dtype)
        n = (~pos & valid).to(sim.dtype)
        return torch.stack(
            [
                (self.pos_term(sim) * p).sum(1),
                p.sum(1),
                (self.neg_term(sim) * n).sum(1),
                n.sum(1),
            ],
            dim=1,
        )

    def pair_grad(self, sim: Tensor, pos: Tensor, valid: Tensor, grad_stats: Tensor) -> Tensor:
        g_pos = grad_stats[:, 0:1] * self.pos_term_grad(sim)
        g_neg = grad_stats[:, 2:3] * self.neg_term_grad(sim)
        return torch.where(valid, torch.where(pos, g_pos, g_neg), torch.zeros_like(sim))

    def finalize(self, stats: Tensor, lse: Tensor | None) -> Tensor:
        total = stats.sum(0)
        pos_sum, n_pos, neg_sum, n_neg = total[0], total[1], total[2], total[3]
        if self.reduction == "sum":
            return pos_sum + neg_sum
        if not self.balance:
            return (pos_sum + neg_sum) / (n_pos + n_neg).clamp(min=1)
        groups = (n_pos > 0).to(stats.dtype) + (n_neg > 0).to(stats.dtype)
        return (pos_sum / n_pos.clamp(min=1) + neg_sum / n_neg.clamp(min=1)) / groups.clamp(min=1)


class CosineTargetObjective(_SquaredPairObjective):
    """``(s - 1)^2`` on positive pairs, ``(s - t_neg)^2`` on negative pairs (the original alignment loss).

    Args:
        t_neg: Target cosine similarity of negative pairs (0 = orthogonal; -1 pushes them opposite).
        reduction: ``"mean"`` over valid pairs or ``"sum"``.
        balance: Weight positive and negative pairs as two equal groups (needs ``reduction="mean"``).
    """

    name = "cosine_target"

    def __init__(self, t_neg: float = 0.0, reduction: str = "mean", balance: bool = False) -> None:
        super().__init__(reduction=reduction, balance=balance)
        if not -1.0 <= float(t_neg) <= 1.0:
            raise ValueError(f"t_neg is a cosine similarity and must lie in [-1, 1], got {t_neg}.")
        self.t_neg = float(t_neg)

    def pos_term(self, sim: Tensor) -> Tensor:
        return (1.0 - sim) ** 2

    def pos_term_grad(self, sim: Tensor) -> Tensor:
        return 2.0 * (sim - 1.0)

    def neg_term(self, sim: Tensor) -> Tensor:
        return (sim - self.t_neg) ** 2

    def neg_term_grad(self, sim: Tensor) -> Tensor:
        return 2.0 * (sim - self.t_neg)

    def get_config_dict(self) -> dict[str, Any]:
        return {"objective": self.name, "t_neg": self.t_neg, "reduction": self.reduction, "balance": self.balance}


class MarginObjective(_SquaredPairObjective):
    """``(1 - s)^2`` on positive pairs, ``max(0, s - margin)^2`` on negative pairs (Hadsell et al. 2006).

    Args:
        margin: Negative pairs with a cosine similarity below ``margin`` cost nothing.
        reduction: ``"mean"`` over valid pairs or ``"sum"``.
        balance: Weight positive and negative pairs as two equal groups (needs ``reduction="mean"``).
    """

    name = "margin"

    def __init__(self, margin: float = 0.5, reduction: str = "mean", balance: bool = False) -> None:
        super().__init__(reduction=reduction, balance=balance)
        if not -1.0 <= float(margin) <= 1.0:
            raise ValueError(f"margin is a cosine similarity and must lie in [-1, 1], got {margin}.")
        self.margin = float(margin)

    def pos_term(self, sim: Tensor) -> Tensor:
        return (1.0 - sim) ** 2

    def pos_term_grad(self, sim: Tensor) -> Tensor:
        return 2.0 * (sim - 1.0)

    def neg_term(self, sim: Tensor) -> Tensor:
        return torch.clamp(sim - self.margin, min=0.0) ** 2

    def neg_term_grad(self, sim: Tensor) -> Tensor:
        return 2.0 * torch.clamp(sim - self.margin, min=0.0)

    def get_config_dict(self) -> dict[str, Any]:
        return {"objective": self.name, "margin": self.margin, "reduction": self.reduction, "balance": self.balance}


class SupConObjective(PairObjective):
    """Supervised contrastive loss (Khosla et al. 2020) over cosine similarities.

    ``L_i = lse_i - (1/|P(i)|) sum_{p in P(i)} s_ip / tau`` with ``lse_i = log sum_{j valid} exp(s_ij / tau)``.

    Statistics: ``[number of positives, sum of positive similarities]``.

    Args:
        temperature: ``tau``; smaller is sharper. Must be > 0.
        reduction: ``"mean"`` over anchors with at least one positive, or ``"sum"``.
    """

    name = "supcon"
    n_stats = 2

    def __init__(self, temperature: float = 0.1, reduction: str = "mean") -> None:
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)
        self.lse_scale = 1.0 / self.temperature
        self.reduction = _check_reduction(reduction)

    def pair_stats(self, sim: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
        p = (pos & valid).to(sim.dtype)
        return torch.stack([p.sum(1), (sim * p).sum(1)], dim=1)

    def pair_grad(self, sim: Tensor, pos: Tensor, valid: Tensor, grad_stats: Tensor) -> Tensor:
        return (pos & valid).to(sim.dtype) * grad_stats[:, 1:2]

    def finalize(self, stats: Tensor, lse: Tensor | None) -> Tensor:
        assert lse is not None
        n_pos, pos_sum = stats[:, 0], stats[:, 1]
        has_pos = n_pos > 0
        safe_lse = torch.where(has_pos, lse, torch.zeros_like(lse))
        per_anchor = safe_lse - self.lse_scale * pos_sum / n_pos.clamp(min=1)
        per_anchor = torch.where(has_pos, per_anchor, torch.zeros_like(per_anchor))
        if self.reduction == "sum":
            return per_anchor.sum()
        return per_anchor.sum() / has_pos.sum().clamp(min=1).to(per_anchor.dtype)

    def get_config_dict(self) -> dict[str, Any]:
        return {"objective": self.name, "temperature": self.temperature, "reduction": self.reduction}


OBJECTIVES: dict[str, type[PairObjective]] = {
    CosineTargetObjective.name: CosineTargetObjective,
    MarginObjective.name: MarginObjective,
    SupConObjective.name: SupConObjective,
}


def get_objective(objective: str | PairObjective, **params: Any) -> PairObjective:
    """Return an objective instance from a name and its parameters (or pass an instance through).

    Example:
        ::

            from sbert_align.objectives import get_objective

            obj = get_objective("supcon", temperature=0.05)
    """
    if isinstance(objective, PairObjective):
        if params:
            raise ValueError(
                f"Parameters {sorted(params)} were given together with an objective instance; "
                "set them on the instance instead."
            )
        return objective
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}.")
    cls = OBJECTIVES[objective]
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"Invalid parameters for objective {objective!r}: {exc}") from None

"""Row normalisation for cosine similarity: the one eps rule of every backend, and its backward written out.

The rule (:data:`NORMALIZE_EPS`): a row whose Euclidean norm, computed in the compute dtype (float32, or float64
for float64 inputs; fp16/bf16 rows are upcast first), is below ``NORMALIZE_EPS`` is a *zero vector*: it is scaled
by 0, so its cosine similarity with every row is exactly 0, and it receives exactly zero gradient. Every other row
is divided by its norm, exactly as ``F.normalize`` does (bit for bit), and gets the exact gradient of
``x / ||x||``. In formulas, with ``r = ||x||``: ``n = x / r`` and ``dx = (dn - n (n . dn)) / r`` where
``r >= NORMALIZE_EPS``; ``n = 0`` and ``dx = 0`` below. The Triton kernels scale raw dot products by the same
inverse norms (:func:`inverse_row_norms`: ``1 / r``, or 0 below the threshold).

Why not ``F.normalize``'s ``x / max(||x||, eps)``: below ``eps`` its gradient is ``dn / eps``, which for its
``eps = 1e-12`` made a zero row's gradient ~1e12 times that of the others (inf, then NaN, in fp16), and any ``eps``
small enough to leave real embeddings alone keeps that factor huge. A row without a direction has no cosine to
improve; here it is a constant, whatever the dtype, the temperature or a gradient scaler's factor.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["NORMALIZE_EPS", "inverse_row_norms", "normalize_rows", "normalize_backward"]

#: Rows with a Euclidean norm below this (in the compute dtype) count as zero vectors: cosine 0 with everything, zero
#: gradient. Far below the norm of any real embedding (~1 to ~100; 1 once normalised), far above the range where
#: float32 squares underflow (1e-19) so every backend takes the same decision, and it bounds the gradient of the
#: smallest rows that are still normalised to ``|dn| / NORMALIZE_EPS``.
NORMALIZE_EPS = 1e-6


def inverse_row_norms(x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """``1 / ||x_i||`` per row, or 0 where ``||x_i|| < NORMALIZE_EPS``; shape ``(N,)``, in ``dtype`` (default
    ``x.dtype``): the scale :func:`normalize_rows` applies (which divides instead, for ``F.normalize``'s rounding).

    With ``dtype``, the norm is computed in ``dtype`` (``vector_norm(..., dtype=)``): the rows are read as they are,
    without a copy of ``x`` in ``dtype``."""
    norm = torch.linalg.vector_norm(x, dim=-1, dtype=dtype)
    return torch.where(norm >= NORMALIZE_EPS, 1.0 / norm.clamp_min(NORMALIZE_EPS), torch.zeros_like(norm))


def normalize_rows(x: Tensor) -> Tensor:
    """``x_i / ||x_i||`` per row, and zero rows where ``||x_i|| < NORMALIZE_EPS`` (differentiable by autograd).

    Above the threshold this is ``F.normalize(x, dim=-1)``, bit for bit; autograd gives 0 (never NaN) below it.
    """
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return torch.where(norm >= NORMALIZE_EPS, x / norm.clamp_min(NORMALIZE_EPS), torch.zeros_like(x))


def normalize_backward(x: Tensor, d_n: Tensor, dtype: torch.dtype) -> Tensor:
    """Gradient w.r.t. raw ``x`` of ``normalize_rows(x.to(dtype))``, given ``d_n``, the gradient of its output.

    ``dx = (d_n - n * (n . d_n)) / ||x||``, and 0 for rows with a norm below ``NORMALIZE_EPS``. Returned in
    ``x.dtype``: what autograd through :func:`normalize_rows` gives, in a few row-wise passes.
    """
    xd = x.detach().to(dtype)
    d_n = d_n.to(dtype)
    norm = torch.linalg.vector_norm(xd, dim=-1, keepdim=True)
    keep = norm >= NORMALIZE_EPS
    r = norm.clamp_min(NORMALIZE_EPS)
    n = torch.where(keep, xd / r, torch.zeros_like(xd))
    proj = (n * d_n).sum(-1, keepdim=True)
    return torch.where(keep, (d_n - n * proj) / r, torch.zeros_like(xd)).to(x.dtype)

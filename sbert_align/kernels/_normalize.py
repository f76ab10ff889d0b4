"""The backward of ``F.normalize`` written out, for the tiled backends (autograd through it costs ~4x more)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["normalize_backward", "NORMALIZE_EPS"]

#: The ``eps`` of ``F.normalize``'s default: rows are divided by ``max(||x||, eps)``.
NORMALIZE_EPS = 1e-12


def normalize_backward(x: Tensor, d_n: Tensor, dtype: torch.dtype) -> Tensor:
    """Gradient w.r.t. raw ``x`` of ``F.normalize(x.to(dtype), dim=-1)``, given ``d_n``, the gradient of its output.

    With ``r = max(||x||, eps)`` and ``n = x / r``: ``dx = (d_n - n * (n . d_n)) / r`` where ``||x|| >= eps`` (the
    norm's own gradient flows, as ``clamp_min`` lets it at equality) and ``dx = d_n / eps`` below. Returned in
    ``x.dtype``, exactly what autograd through ``F.normalize`` gives, in four row-wise passes.
    """
    xd = x.detach().to(dtype)
    d_n = d_n.to(dtype)
    norm = torch.linalg.vector_norm(xd, dim=-1, keepdim=True)
    r = norm.clamp_min(NORMALIZE_EPS)
    n = xd / r
    proj = (n * d_n).sum(-1, keepdim=True).masked_fill_(norm < NORMALIZE_EPS, 0.0)
    return ((d_n - n * proj) / r).to(x.dtype)

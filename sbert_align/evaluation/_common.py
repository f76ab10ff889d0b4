"""What the three evaluators share: input validation, encoding with a model, CSV rows, the call flow.

Written once here; :mod:`.knn`, :mod:`.clustering` and :mod:`.query_key` only add their metric. Labels are encoded by
the project's one label encoder, :func:`sbert_align.data.labels.encode_label_lists`; empty texts are found by the
data's one rule, :func:`sbert_align.data.find_empty_texts`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator
from torch import Tensor
from tqdm.autonotebook import tqdm

from ..data import find_empty_texts

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

__all__ = ["AlignmentEvaluator", "check_inputs", "check_embeddings", "check_same_length"]


def check_inputs(inputs: Any, name: str, allow_empty_texts: bool = False) -> list:
    """Return ``inputs`` (texts, or any input the model encodes) as a non-empty list, or raise a ``ValueError``.

    Args:
        inputs: The texts (or other model inputs).
        name: The argument's name, for the message.
        allow_empty_texts: Keep empty and whitespace-only texts (the model embeds them like any other input).

    Returns:
        ``inputs`` as a list.

    Raises:
        ValueError: None, a single string, something that is not a sequence, an empty list, or empty or
            whitespace-only texts (:func:`sbert_align.data.find_empty_texts`; the message names the argument, how many
            there are and the first one's index); with ``allow_empty_texts``, a ``None`` item (naming its index).

    Example:
        ::

            from sbert_align.evaluation._common import check_inputs

            assert check_inputs(("a", "b"), "texts") == ["a", "b"]
    """
    if inputs is None:
        raise ValueError(f"{name} must be a non-empty list of texts, got None.")
    if isinstance(inputs, (str, bytes)):
        raise ValueError(f"{name} must be a list of texts, got a single string; wrap it in a list.")
    try:
        items = list(inputs)
    except TypeError:
        raise ValueError(f"{name} must be a list of texts, got {type(inputs).__name__}.") from None
    if len(items) == 0:
        raise ValueError(f"{name} is empty: it must hold at least one text.")
    empty = find_empty_texts(items)
    none = next((i for i in empty if items[i] is None), None)
    if none is not None:
        raise ValueError(f"{name} holds None at index {none}; None is not a text.")
    if empty and not allow_empty_texts:
        raise ValueError(
            f"{name} holds {len(empty)} empty or whitespace-only text{'s' if len(empty) != 1 else ''} (the first at "
            f"index {empty[0]}); an empty text has no meaning to embed. Remove them (with their labels), or pass "
            "allow_empty_texts=True to embed them anyway."
        )
    return items


def check_same_length(a: Sequence, b: Sequence, name_a: str, name_b: str) -> None:
    """Raise a ``ValueError`` naming both arguments when their lengths differ."""
    if len(a) != len(b):
        raise ValueError(f"{name_a} and {name_b} must have the same length, got {len(a)} and {len(b)}.")


def check_embeddings(embeddings: Any, name: str) -> Tensor:
    """Return ``embeddings`` (tensor, array or nested list) as a non-empty 2-D floating-point tensor."""
    if embeddings is None:
        raise ValueError(f"{name} must be a 2-D array of embeddings (n, dim), got None.")
    tensor = embeddings if isinstance(embeddings, Tensor) else torch.as_tensor(np.asarray(embeddings))
    if tensor.dim() != 2:
        raise ValueError(f"{name} must be 2-D (n, dim), got shape {tuple(tensor.shape)}.")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is empty: it must hold at least one embedding.")
    if not tensor.dtype.is_floating_point:
        tensor = tensor.float()
    return tensor.detach()


class AlignmentEvaluator(BaseEvaluator):
    """Base of the sbert-align evaluators: encoding, logging, CSV rows, name prefix and the model card.

    A subclass sets ``self.primary_metric`` and ``self.metric_names`` (the CSV columns, in order), and implements
    :meth:`compute_metrics` (model -> unprefixed metrics). ``__call__`` does the rest, as sentence-transformers' own
    evaluators do.
    """

    csv_stem: str = "alignment_evaluation"

    def __init__(
        self,
        name: str = "",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        truncate_dim: int | None = None,
    ):
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.name = name
        self.batch_size = int(batch_size)
        self.show_progress_bar = bool(show_progress_bar)
        self.write_csv = write_csv
        self.truncate_dim = truncate_dim
        self.csv_file = self.csv_stem + ("_" + name if name else "") + "_results.csv"
        self.metric_names: list[str] = []

    @property
    def csv_headers(self) -> list[str]:
        return ["epoch", "steps", *self.metric_names]

    def compute_metrics(self, model: SentenceTransformer) -> dict[str, float]:
        raise NotImplementedError

    def __call__(
        self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        if epoch != -1:
            out_txt = f" after epoch {epoch}" if steps == -1 else f" in epoch {epoch} after {steps} steps"
        else:
            out_txt = ""
        if self.truncate_dim is not None:
            out_txt += f" (truncated to {self.truncate_dim})"
        logger.info(f"{self.__class__.__name__}: Evaluating the model on the {self.name} dataset{out_txt}:")

        metrics = self.compute_metrics(model)
        for key in self.metric_names:
            logger.info(f"{key + ':':<26}{metrics[key]:.4f}")

        if output_path is not None and self.write_csv:
            self.write_csv_row(output_path, epoch, steps, metrics)

        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def write_csv_row(self, output_path: str, epoch: float, steps: int, metrics: dict[str, float]) -> None:
        """Append one row to ``output_path/self.csv_file``, writing the header first when the file is new."""
        os.makedirs(output_path, exist_ok=True)
        csv_path = os.path.join(output_path, self.csv_file)
        exists = os.path.isfile(csv_path)
        with open(csv_path, newline="", mode="a" if exists else "w", encoding="utf-8") as f:
            writer = csv.writer(f)
            if not exists:
                writer.writerow(self.csv_headers)
            writer.writerow([epoch, steps, *(metrics[key] for key in self.metric_names)])

    def embed(self, model: SentenceTransformer, inputs: list) -> Tensor:
        """Encode ``inputs`` once, L2-normalised, as a tensor on the model's device."""
        return model.encode(
            inputs,
            batch_size=self.batch_size,
            show_progress_bar=self.show_progress_bar,
            convert_to_tensor=True,
            normalize_embeddings=True,
            truncate_dim=self.truncate_dim,
        )

    def embed_many(self, model: SentenceTransformer, *groups: list) -> list[Tensor]:
        """Encode several input lists in one ``encode`` call (one progress bar) and split the result back."""
        embeddings = self.embed(model, [item for group in groups for item in group])
        return list(torch.split(embeddings, [len(group) for group in groups]))

    def embed_chunks(self, model: SentenceTransformer, inputs: list, chunk_size: int, desc: str) -> Iterator[Tensor]:
        """Encode ``inputs`` ``chunk_size`` at a time, yielding each chunk's embeddings (as :meth:`embed`).

        What streams a large reference set through a search: only one chunk of embeddings exists at a time. With
        ``show_progress_bar``, one bar counts the inputs of all chunks.
        """
        bar = tqdm(total=len(inputs), desc=desc, unit="text", disable=not self.show_progress_bar)
        try:
            for start in range(0, len(inputs), chunk_size):
                chunk = inputs[start : start + chunk_size]
                yield model.encode(
                    chunk,
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    convert_to_tensor=True,
                    normalize_embeddings=True,
                    truncate_dim=self.truncate_dim,
                )
                bar.update(len(chunk))
        finally:
            bar.close()

    def get_config_dict(self) -> dict[str, Any]:
        config = {}
        if self.truncate_dim is not None:
            config["truncate_dim"] = self.truncate_dim
        return config

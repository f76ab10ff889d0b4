"""Frozen-encoder pooling: several sentence embeddings from one forward pass of a transformer, and the same poolings
as trainable sentence-transformers modules (:func:`pooled_model`), so a fine-tuned encoder is pooled as it was scored.

Example::

    from sbert_align.cli import frozen_embeddings, load_model

    model = load_model("minilm-l6", device="cpu")
    emb = frozen_embeddings(model, ["what is a river?", "who wrote it?"], poolings=("cls", "mean", "layer-mean"))
    emb["layer-mean"].shape                                   # torch.Size([2, 384])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .common import CLIError

__all__ = ["POOLINGS", "frozen_embeddings", "pooled_model"]

#: ``cls``: first token of the last layer; ``mean``: masked token mean of the last layer; ``layer-mean``: mean over
#: the transformer layers' outputs (embedding layer excluded), then the masked token mean
POOLINGS = ("cls", "mean", "layer-mean")


def frozen_embeddings(
    model: Any,
    texts: Sequence[str],
    poolings: Sequence[str] = POOLINGS,
    batch_size: int = 64,
    max_length: int | None = None,
    show_progress_bar: bool = True,
) -> dict[str, Any]:
    """Embeddings of ``texts`` from a frozen encoder under several poolings, from one forward pass per batch.

    ``model`` is a ``SentenceTransformer`` whose first module is a ``Transformer``; its ``auto_model`` runs with
    ``output_hidden_states=True``. Texts are sorted by length for batching; the result keeps the input order.

    Args:
        model: the encoder (not modified; run in eval mode without gradients).
        texts: the texts.
        poolings: a subset of :data:`POOLINGS`.
        batch_size: texts per forward pass.
        max_length: token limit (default: the model's ``max_seq_length``, else 512).
        show_progress_bar: a tqdm bar over the texts.

    Returns:
        pooling -> ``(len(texts), hidden)`` float32 CPU tensor.

    Raises:
        CLIError: an unknown pooling, or a first module that is not a Hugging Face transformer.

    Example::

        from sbert_align.cli import frozen_embeddings, load_model

        emb = frozen_embeddings(load_model("minilm-l6", device="cpu"), ["a text"], poolings=["mean"])
    """
    import torch
    from tqdm.auto import tqdm

    bad = [p for p in poolings if p not in POOLINGS]
    if bad:
        raise CLIError(f"pooling: {bad} not among {list(POOLINGS)}.")
    first = model[0]
    hf_model = getattr(first, "auto_model", None)
    tokenizer = getattr(first, "tokenizer", None)
    if hf_model is None or tokenizer is None:
        raise CLIError(f"model: its first module ({type(first).__name__}) is not a Hugging Face Transformer module.")
    if max_length is None:
        max_length = getattr(first, "max_seq_length", None) or 512
    device = next(hf_model.parameters()).device
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = {p: torch.empty(len(texts), hf_model.config.hidden_size) for p in poolings}
    hf_model.eval()
    bar = tqdm(total=len(texts), desc="encode", unit="text", disable=not show_progress_bar, leave=False)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            ).to(device)
            res = hf_model(**enc, output_hidden_states=True, return_dict=True)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            counts = mask.sum(1).clamp(min=1.0)
            last = res.hidden_states[-1]
            rows = torch.tensor(idx)
            if "cls" in out:
                out["cls"][rows] = last[:, 0].float().cpu()
            if "mean" in out:
                out["mean"][rows] = ((last * mask).sum(1) / counts).float().cpu()
            if "layer-mean" in out:
                layers = torch.stack(res.hidden_states[1:], 0).mean(0)
                out["layer-mean"][rows] = ((layers * mask).sum(1) / counts).float().cpu()
            bar.update(len(idx))
    bar.close()
    return out


def pooled_model(model: Any, pooling: str, device: str | None = None) -> Any:
    """A fresh, trainable ``SentenceTransformer``: a deep copy of ``model``'s transformer, pooled as ``pooling``.

    The modules compute exactly what :func:`frozen_embeddings` computes for that pooling (the tests hold them equal),
    with sentence-transformers' own modules, so that the copy trains with any sentence-transformers loss and its
    embeddings are the frozen pooling's:

    * ``cls``: ``Pooling(dim, "cls")``, the first token of the last layer (texts are right-padded);
    * ``mean``: ``Pooling(dim, "mean")``, the masked token mean of the last layer;
    * ``layer-mean``: ``WeightedLayerPooling(dim, num_hidden_layers=L, layer_start=1)`` with its layer weights fixed at
      1 (``requires_grad=False``), which makes the token embeddings the plain mean over the L transformer layers'
      outputs (the embedding layer left out), then ``Pooling(dim, "mean")``; the transformer runs with
      ``output_hidden_states=True`` in its config so that its layers' outputs reach the pooling. The weights stay
      fixed on purpose: learning them would train another pooling than the one the frozen row scored.

    Any module of ``model`` after the transformer (its own pooling, a ``Normalize``, a ``Dense``) is left out: the
    copy is the transformer plus the pooling. ``model`` itself is not modified.

    Args:
        model: a ``SentenceTransformer`` whose first module is a Hugging Face ``Transformer``.
        pooling: one of :data:`POOLINGS`.
        device: where the copy lives (``None``: where ``model``'s transformer is).

    Returns:
        A new ``SentenceTransformer`` (transformer copy + pooling modules).

    Raises:
        CLIError: an unknown pooling, or a first module that is not a Hugging Face transformer.

    Example::

        from sbert_align.cli import load_model
        from sbert_align.cli.pooling import frozen_embeddings, pooled_model

        frozen = load_model("minilm-l6", device="cpu")
        student = pooled_model(frozen, "layer-mean")   # train it with any loss; frozen is untouched
        student.encode(["a text"])                      # == frozen_embeddings(frozen, ["a text"], ["layer-mean"])
    """
    import copy

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, WeightedLayerPooling

    if pooling not in POOLINGS:
        raise CLIError(f"pooling: {pooling!r} not among {list(POOLINGS)}.")
    first = model[0]
    hf_model = getattr(first, "auto_model", None)
    if hf_model is None or getattr(first, "tokenizer", None) is None:
        raise CLIError(f"model: its first module ({type(first).__name__}) is not a Hugging Face Transformer module.")
    transformer = copy.deepcopy(first)
    dim = transformer.auto_model.config.hidden_size
    modules: list[Any] = [transformer]
    if pooling == "layer-mean":
        transformer.auto_model.config.output_hidden_states = True
        layers = transformer.auto_model.config.num_hidden_layers
        weighted = WeightedLayerPooling(dim, num_hidden_layers=layers, layer_start=1)
        weighted.layer_weights.requires_grad_(False)
        modules.append(weighted)
    modules.append(Pooling(dim, "cls" if pooling == "cls" else "mean"))
    if device is None:
        device = str(next(hf_model.parameters()).device)
    return SentenceTransformer(modules=modules, device=device)

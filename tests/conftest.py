"""Shared fixtures: a tiny random BERT sentence encoder built from a config (no download)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WORDS = [
    "the",
    "a",
    "an",
    "is",
    "are",
    "was",
    "what",
    "who",
    "where",
    "when",
    "why",
    "how",
    "which",
    "city",
    "country",
    "river",
    "mountain",
    "person",
    "name",
    "year",
    "number",
    "many",
    "much",
    "long",
    "big",
    "small",
    "first",
    "last",
    "capital",
    "color",
    "animal",
    "food",
    "sport",
    "team",
    "game",
    "movie",
    "book",
    "good",
    "bad",
    "great",
    "terrible",
    "love",
    "hate",
    "happy",
    "sad",
    "money",
    "card",
    "bank",
    "account",
    "transfer",
    "payment",
    "refund",
    "question",
    "answer",
    "duplicate",
    "same",
    "different",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
]


def build_tiny_model_dir(path: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a random 2-layer BERT with a word-level vocabulary to ``path`` (config, weights, tokenizer)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + [f"w{i}" for i in range(100)]
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    backend = Tokenizer(WordPiece({tok: i for i, tok in enumerate(vocab)}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = BertTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(path))
    return path


def make_tiny_sentence_transformer(path: Path, max_seq_length: int = 64):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(str(path), max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture
def tiny_model(tiny_model_dir):
    """A fresh tiny SentenceTransformer (random 2-layer BERT, hidden 32, mean pooling) for each test."""
    torch.manual_seed(0)
    return make_tiny_sentence_transformer(tiny_model_dir)

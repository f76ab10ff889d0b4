"""Pair data the safe way: carve validation from train first, then add swapped copies to train only.

python examples/pairs_after_split.py              # MRPC from the shared data folder
"""

from __future__ import annotations

import sys

from sbert_align.data import load_splits, symmetrize_pairs, train_validation_split

name = sys.argv[1] if len(sys.argv) > 1 else "mrpc"
data = load_splits(name)  # (text1, text2, label) pairs
data = train_validation_split(data, validation_fraction=0.1, seed=0)  # validation comes from train, never test
data = symmetrize_pairs(data)  # warns (PairLeakWarning) if a validation/test pair also appears in train
print(data.summary())
train = data.dataset("train")  # datasets.Dataset: text1, text2, label -> AnnealedPairLoss
print(train)

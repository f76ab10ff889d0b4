"""Rebuild all-MiniLM-L6-v2 from the carried copy: word-embedding rows of unused tokens were dropped (zeros here).

Rows of tokens that TREC / Banking77 never produce are never read in the forward pass, get zero gradient, and so
never move (AdamW without weight decay on a zero gradient leaves them); every computation on those data is the same.
"""

import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
with safe_open(str(src / "pruned.safetensors"), "pt") as f:  # one read: the metadata and the tensors
    key = f.metadata()["key"]
    w = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
full = torch.zeros(tuple(w.pop("__shape__").tolist()), dtype=w["__rows__"].dtype)
full[w.pop("__idx__")] = w.pop("__rows__")
w[key] = full
save_file(w, str(dst / "model.safetensors"), metadata={"format": "pt"})
for p in src.iterdir():
    if p.name != "pruned.safetensors":
        (shutil.copytree if p.is_dir() else shutil.copy)(
            p, dst / p.name, **({"dirs_exist_ok": True} if p.is_dir() else {})
        )
print("rebuilt", dst)

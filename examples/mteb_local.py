"""Run MTEB (a classification and a clustering task) on your own (text, label) data, offline.

    python examples/mteb_local.py                      # all-MiniLM-L6-v2 on the bundled TREC-6
    python examples/mteb_local.py --data my.csv        # any CSV/TSV/JSONL with text,label columns

Needs the [mteb] extra: pip install "sbert-align[mteb]".
"""

from __future__ import annotations

import argparse

from sentence_transformers import SentenceTransformer

from sbert_align.cli import resolve_model
from sbert_align.data import load_splits
from sbert_align.mteb import local_tasks, run_mteb

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--model", default="minilm-l6", help="path, hub name, or alias (minilm-l6, mpnet-base)")
parser.add_argument("--data", default="trec6")
args = parser.parse_args()

model = SentenceTransformer(resolve_model(args.model), device="cpu")
data = load_splits(args.data)
print(data.summary())
rows = run_mteb(model, local_tasks(data, classification={"n_experiments": 5}), batch_size=64)
for r in rows:
    if r["main"]:
        print(f"{r['task']:<32} {r['metric']:<10} {r['score']:.4f}")

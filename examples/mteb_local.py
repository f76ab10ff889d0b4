"""Run MTEB on your own data, offline, keep the results in MTEB's own result cache and compare models task by task.

    python examples/mteb_local.py                                   # all-MiniLM-L6-v2 on TREC-6 and STS-B
    python examples/mteb_local.py --models minilm-l6 runs/t6/model  # frozen vs trained, one column each
    python examples/mteb_local.py --data my.csv pairs.csv           # (text, label) CSVs and (text1, text2, score) CSVs

(text, label) data give a classification and a clustering task, (text1, text2, score) pairs an STS task. The results
land in --results (default mteb-results/) as results/<model>/<revision>/<Task>.json, where mteb.ResultCache reads
them; the revision of a local model is a content hash of its weights. Tasks already there are reused.

Needs the [mteb] extra: pip install "sbert-align[mteb]".
"""

from __future__ import annotations

import argparse

import mteb
from sentence_transformers import SentenceTransformer

from sbert_align.cli import resolve_model
from sbert_align.cli.evaluate import mteb_model_name
from sbert_align.mteb import local_tasks, results_table, run_mteb

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--models", nargs="+", default=["minilm-l6"], help="paths, hub names or aliases (minilm-l6)")
parser.add_argument("--data", nargs="+", default=["trec6", "stsb"])
parser.add_argument("--results", default="mteb-results", help="MTEB result cache folder")
args = parser.parse_args()

tasks = [t for d in args.data for t in local_tasks(d, classification={"n_experiments": 5})]
for name in args.models:
    model = SentenceTransformer(resolve_model(name), device="cpu")
    run_mteb(model, tasks, batch_size=64, output_folder=args.results, model_name=mteb_model_name(name), log=print)

print(results_table(args.results, tasks).markdown())
# the same files through MTEB's own API
print(mteb.ResultCache(args.results).load_results(include_remote=False).to_dataframe(include_model_revision=True))

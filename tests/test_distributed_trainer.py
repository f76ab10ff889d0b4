"""SentenceTransformerTrainer under ``torchrun --nproc_per_node 2`` (CPU, gloo): ClassAlignmentLoss with a memory
and gather_across_devices, and a KNNEvaluator, end to end (the README's launch command)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

SCRIPT = Path(__file__).parent / "scripts" / "ddp_trainer.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_trainer_under_torchrun_two_processes(tiny_model_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(_free_port()), str(SCRIPT), str(tiny_model_dir), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-4000:]
    mem = [torch.load(tmp_path / f"memory_{r}.pt") for r in (0, 1)]
    assert mem[0]["steps"] == mem[1]["steps"] == 4
    assert mem[0]["emb"].shape[0] == 36  # 3 steps after the 1-step warm-up, 2 processes x 6 texts each
    assert torch.equal(mem[0]["emb"], mem[1]["emb"]) and torch.equal(mem[0]["labels"], mem[1]["labels"])
    metrics = [json.loads((tmp_path / f"metrics_{r}.json").read_text()) for r in (0, 1)]
    assert metrics[0]["world"] == metrics[1]["world"] == 2
    during = [m["eval"][-1] for m in metrics]
    assert during[0]["eval_toy_accuracy"] == during[1]["eval_toy_accuracy"]

    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from ddp_trainer import evaluator
    finally:
        sys.path.remove(str(SCRIPT.parent))
    single = evaluator()(SentenceTransformer(str(tmp_path / "model"), device="cpu"))
    assert single["toy_accuracy"] == pytest.approx(during[0]["eval_toy_accuracy"], abs=1e-12)
    assert single["toy_macro_f1"] == pytest.approx(during[0]["eval_toy_macro_f1"], abs=1e-12)
    assert 0.2 < single["toy_accuracy"] < 1.0  # the labels are partly wrong on purpose: not a saturated metric

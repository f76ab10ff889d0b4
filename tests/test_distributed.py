"""Under DDP (2 CPU processes, gloo, loopback) the memory bank stays identical on every process."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sbert_align.losses import ClassAlignmentLoss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)
        loss_fn = ClassAlignmentLoss(torch.nn.Module(), objective="supcon", memory_size=10, gather_across_devices=True)
        grads = []
        for _ in range(3):
            n = 3 + rank  # uneven batches across processes
            e = torch.randn(n, 4, requires_grad=True)
            y = torch.randint(0, 3, (n,))
            loss = loss_fn.compute_loss_from_embeddings([e], y)
            loss.backward()
            grads.append(bool(torch.isfinite(e.grad).all()))
        emb, labels = loss_fn.memory.get()
        torch.save({"emb": emb, "labels": labels, "grads_finite": all(grads)}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_memory_identical_across_processes(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert r0["emb"].shape == (10, 4)  # 3 steps x (3 + 4) rows, capacity 10
    assert torch.equal(r0["emb"], r1["emb"]) and torch.equal(r0["labels"], r1["labels"])
    assert r0["grads_finite"] and r1["grads_finite"]

"""Two processes (CPU, gloo, loopback) equal one process on the concatenated batch.

With ``gather_across_devices=True`` every loss, with and without a memory, gives on each process the loss of one
process on the whole (concatenated) batch, and each process's embedding gradient is ``world_size`` times the
single-process gradient of its own rows (DDP then averages the parameter gradients over the processes, which
gives back the single-process gradient). Batches are uneven across processes, float64, 1e-6.
"""

from __future__ import annotations

import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sbert_align import kernels
from sbert_align.losses import AllNegativesLoss, AnnealedPairLoss, ClassAlignmentLoss

WORLD = 2
SIZES = (3, 5)  # rows per process: uneven on purpose
STEPS = 3
DIM = 6

CONFIGS = {
    "class_alignment_no_memory": lambda be: ClassAlignmentLoss(
        torch.nn.Module(), memory_size=0, gather_across_devices=True, backend=be
    ),
    "class_alignment_memory": lambda be: ClassAlignmentLoss(
        torch.nn.Module(), memory_size=12, memory_warmup_steps=1, gather_across_devices=True, backend=be
    ),
    "class_alignment_memory_cosine_balance": lambda be: ClassAlignmentLoss(
        torch.nn.Module(),
        objective="cosine_target",
        balance=True,
        memory_size=7,
        gather_across_devices=True,
        backend=be,
    ),
    "all_negatives_supcon": lambda be: AllNegativesLoss(torch.nn.Module(), gather_across_devices=True, backend=be),
    "all_negatives_margin": lambda be: AllNegativesLoss(
        torch.nn.Module(), objective="margin", gather_across_devices=True, backend=be
    ),
    "all_negatives_three_columns": lambda be: AllNegativesLoss(
        torch.nn.Module(), gather_across_devices=True, backend=be
    ),
    "annealed_in_batch_negatives": lambda be: AnnealedPairLoss(
        torch.nn.Module(), objective="supcon", in_batch_negatives=True, gather_across_devices=True, backend=be
    ),
    "annealed_pairs": lambda be: AnnealedPairLoss(torch.nn.Module(), gather_across_devices=True, backend=be),
}
# "auto" with the CPU threshold between the two processes' problem sizes (3 x 8 and 5 x 8 pairs without memory), so
# that each process alone would pick another backend: the losses must agree on one (else different collectives run)
BACKENDS = ("reference", "chunked", "auto")
AUTO_THRESHOLD = 30


def _columns(name: str) -> int:
    if name == "all_negatives_three_columns":
        return 3
    return 2 if name.startswith("annealed") else 1


def _data(name: str, step: int) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The global batch of one step: columns of (sum(SIZES), DIM) float64 embeddings and its labels."""
    g = torch.Generator().manual_seed(1000 * step + len(name))
    n = sum(SIZES)
    columns = [torch.randn(n, DIM, generator=g, dtype=torch.float64) for _ in range(_columns(name))]
    if name == "all_negatives_three_columns":
        return columns, None
    if name.startswith("annealed"):
        return columns, torch.randint(0, 2, (n,), generator=g)
    return columns, torch.randint(0, 3, (n,), generator=g)


def _run(name: str, backend: str, rows: slice) -> list[tuple[float, list[torch.Tensor]]]:
    """Loss value and embedding gradients of each step, for the given rows of each global batch."""
    loss_fn = CONFIGS[name](backend)
    out = []
    for step in range(STEPS):
        columns, labels = _data(name, step)
        leaves = [c[rows].clone().requires_grad_(True) for c in columns]
        loss = loss_fn.compute_loss_from_embeddings(leaves, None if labels is None else labels[rows])
        loss.backward()
        out.append((loss.item(), [leaf.grad for leaf in leaves]))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    kernels.CPU_REFERENCE_MAX_PAIRS = AUTO_THRESHOLD
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        start = sum(SIZES[:rank])
        rows = slice(start, start + SIZES[rank])
        results = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for name in CONFIGS:
                for backend in BACKENDS:
                    results[(name, backend)] = _run(name, backend, rows)
            memory = ClassAlignmentLoss(torch.nn.Module(), memory_size=12, gather_across_devices=True)
            _run_memory_only(memory, rows)
        results["memory"] = memory.memory.get()
        results["warnings"] = [str(w.message) for w in caught]
        torch.save(results, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _run_memory_only(loss_fn: ClassAlignmentLoss, rows: slice) -> None:
    for step in range(STEPS):
        (emb,), labels = _data("class_alignment_memory", step)
        leaf = emb[rows].clone().requires_grad_(True)
        loss_fn.compute_loss_from_embeddings([leaf], labels[rows]).backward()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_processes_equal_one_process_on_the_concatenated_batch(two_process_results, name, backend):
    single = _run(name, backend, slice(None))
    for rank, results in enumerate(two_process_results):
        start = sum(SIZES[:rank])
        rows = slice(start, start + SIZES[rank])
        for step, ((loss, grads), (loss_1, grads_1)) in enumerate(zip(results[(name, backend)], single)):
            assert abs(loss - loss_1) <= 1e-6 * max(1.0, abs(loss_1)), (rank, step, loss, loss_1)
            for g, g_1 in zip(grads, grads_1):
                torch.testing.assert_close(g / WORLD, g_1[rows], rtol=1e-6, atol=1e-9)


def test_memory_identical_across_processes_and_equal_to_one_process(two_process_results):
    (e0, y0), (e1, y1) = (r["memory"] for r in two_process_results)
    assert torch.equal(e0, e1) and torch.equal(y0, y1) and e0.shape == (12, DIM)
    single = ClassAlignmentLoss(torch.nn.Module(), memory_size=12)
    _run_memory_only(single, slice(None))
    e, y = single.memory.get()
    assert torch.equal(y, y0) and torch.allclose(e, e0.to(e.dtype))


def test_no_deprecation_warning_from_the_gathers(two_process_results):
    for results in two_process_results:
        assert not [w for w in results["warnings"] if "deprecat" in w.lower()], results["warnings"]

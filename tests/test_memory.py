"""MemoryBank semantics: FIFO wrap-around, labels kept with their rows, dtype, state round-trip, errors."""

from __future__ import annotations

import pytest
import torch

from sbert_align import MemoryBank


def test_fill_and_wrap_around_keep_labels_with_rows():
    bank = MemoryBank(size=5, dim=2)
    assert len(bank) == 0 and bank.get()[0].shape == (0, 2)
    rows = torch.arange(16, dtype=torch.float32).reshape(8, 2)  # row i = [2i, 2i+1]
    labels = torch.arange(8) * 10
    bank.enqueue(rows[:3], labels[:3])
    assert len(bank) == 3 and not bank.is_full
    bank.enqueue(rows[3:7], labels[3:7])  # 7 rows into 5: rows 0 and 1 dropped, ring wraps
    emb, lab = bank.get()
    assert bank.is_full and len(bank) == 5
    assert lab.tolist() == [20, 30, 40, 50, 60]  # oldest first
    assert torch.equal(emb, rows[2:7])
    emb_u, lab_u = bank.get_unordered()
    for e, y in zip(emb_u, lab_u):  # whatever the order, each label stays with its row
        assert int(e[0].item()) // 2 * 10 == int(y)
    assert bank.num_enqueued == 7


def test_batch_larger_than_memory_keeps_newest():
    bank = MemoryBank(size=3, dim=1)
    bank.enqueue(torch.arange(7.0)[:, None], torch.arange(7))
    assert bank.get()[1].tolist() == [4, 5, 6]


def test_enqueue_detaches_and_casts():
    bank = MemoryBank(size=4, dtype="bfloat16")
    x = torch.randn(2, 3, requires_grad=True)
    bank.enqueue(x * 2, torch.tensor([1, 2]))
    emb, _ = bank.get()
    assert emb.dtype == torch.bfloat16 and not emb.requires_grad and bank.dim == 3


def test_dimension_mismatch_and_bad_arguments():
    bank = MemoryBank(size=4, dim=3)
    with pytest.raises(ValueError, match="dimension 3, got 5"):
        bank.enqueue(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer class ids"):
        bank.enqueue(torch.randn(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="expected 2, got 3"):
        bank.enqueue(torch.randn(2, 3), torch.tensor([0, 1, 2]))
    for size in (0, -1, 2.5):
        with pytest.raises(ValueError, match="size"):
            MemoryBank(size=size)
    with pytest.raises(ValueError, match="dtype"):
        MemoryBank(size=2, dtype="int8")
    with pytest.raises(ValueError, match="mode"):
        MemoryBank(size=2, mode="lifo")


def test_state_round_trip_and_reset():
    bank = MemoryBank(size=4, dim=2)
    bank.enqueue(torch.randn(6, 2), torch.arange(6))
    state = bank.state_dict()
    other = MemoryBank(size=4, dim=2)
    other.load_state_dict(state)
    for a, b in zip(bank.get(), other.get()):
        assert torch.equal(a, b)
    assert (other.ptr, other.filled, other.num_enqueued) == (bank.ptr, bank.filled, bank.num_enqueued)
    # the loaded state is a copy: writing to one bank leaves the other alone
    other.enqueue(torch.ones(1, 2), torch.tensor([99]))
    assert 99 not in bank.get()[1].tolist()
    with pytest.raises(ValueError, match="size"):
        MemoryBank(size=5, dim=2).load_state_dict(state)
    bank.reset()
    assert len(bank) == 0 and bank.get()[0].shape[0] == 0


def test_prototypes_are_class_moving_averages():
    bank = MemoryBank(size=3, dim=2, mode="prototypes", momentum=0.5)
    bank.enqueue(torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 4.0]]), torch.tensor([7, 7, 2]))
    emb, lab = bank.get()
    got = dict(zip(lab.tolist(), emb.tolist()))
    assert got == {7: [2.0, 0.0], 2: [0.0, 4.0]}
    bank.enqueue(torch.tensor([[0.0, 2.0]]), torch.tensor([7]))
    got = dict(zip(*[t.tolist() for t in reversed(bank.get())]))
    assert got[7] == [1.0, 1.0]  # 0.5 * [2, 0] + 0.5 * [0, 2]
    bank.enqueue(torch.zeros(1, 2), torch.tensor([5]))
    with pytest.raises(ValueError, match="prototypes"):
        bank.enqueue(torch.zeros(1, 2), torch.tensor([6]))


def test_reset_forgets_an_inferred_dimension_and_keeps_a_given_one():
    bank = MemoryBank(size=4)
    bank.enqueue(torch.randn(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="dimension 3"):
        bank.enqueue(torch.randn(2, 5), torch.tensor([0, 1]))
    bank.reset()  # what the loss's error message advises after the model's dimension changed
    bank.enqueue(torch.randn(2, 5), torch.tensor([0, 1]))
    assert bank.dim == 5 and len(bank) == 2
    fixed = MemoryBank(size=4, dim=3)
    fixed.reset()
    with pytest.raises(ValueError, match="dimension 3"):
        fixed.enqueue(torch.randn(2, 5), torch.tensor([0, 1]))

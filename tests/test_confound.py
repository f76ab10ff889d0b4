"""The confound term (align by the class, repel by the confound): the kernels and the losses against a plain formula
(float64, values and gradients, odd shapes, with and without memory), the memory's confound labels and their
checkpoint state, the (batch, 2) labels a real SentenceTransformerTrainer run delivers, resume, and input errors."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import make_tiny_sentence_transformer
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from test_training import toy_classes
from transformers import TrainerCallback

from sbert_align import pairwise_loss
from sbert_align.kernels.confound import CONFOUND_NONE, confound_penalty
from sbert_align.losses import AllNegativesLoss, CachedClassAlignmentLoss, ClassAlignmentLoss
from sbert_align.memory import MemoryBank, TrainingMemory

BACKENDS = ["reference", "chunked"]


class _Dummy(torch.nn.Module):
    """Stands in for the SentenceTransformer where only compute_loss_from_embeddings is exercised."""


def plain_penalty(queries, keys, labels, key_labels, confounds, key_confounds) -> torch.Tensor:
    """The formula written out, independently of the package: the mean of max(0, cos)^2 over the pairs (i, j) with
    c_i == c_j and y_i != y_j (keys with confound -1 are unknown), 0 without such a pair. float64."""

    def unit(x):
        x = x.to(torch.float64)
        norm = x.norm(dim=1, keepdim=True)
        return torch.where(norm >= 1e-6, x / norm.clamp_min(1e-6), torch.zeros_like(x))

    q, k = unit(queries), unit(torch.cat(list(keys)))
    y, c = labels.tolist(), confounds.tolist()
    ky, kc = torch.cat(list(key_labels)).tolist(), torch.cat(list(key_confounds)).tolist()
    mask = torch.tensor(
        [[kc[j] != -1 and c[i] == kc[j] and y[i] != ky[j] for j in range(len(ky))] for i in range(len(y))],
        dtype=torch.bool,
    )
    sim = q @ k.T
    terms = torch.where(mask, torch.clamp(sim, min=0.0) ** 2, torch.zeros_like(sim))
    return terms.sum() / max(1, int(mask.sum()))


def _grads(fn, *leaves):
    for leaf in leaves:
        leaf.grad = None
    value = fn()
    value.backward()
    return value.detach(), [leaf.grad.clone() for leaf in leaves]


# --------------------------------------------------------------------------------------------------------------------
# the kernels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("batch", "memory", "dim", "tile"), [(7, 13, 5, 3), (37, 101, 19, 16), (1, 9, 4, 1)])
def test_penalty_equals_plain_formula_with_memory(backend, batch, memory, dim, tile):
    torch.manual_seed(batch)
    q = torch.randn(batch, dim, dtype=torch.float64, requires_grad=True)
    mem = torch.randn(memory, dim, dtype=torch.float64)
    y, ym = torch.randint(0, 3, (batch,)), torch.randint(0, 3, (memory,))
    c, cm = torch.randint(0, 2, (batch,)), torch.randint(-1, 2, (memory,))  # some memory rows unknown
    got, (g_got,) = _grads(
        lambda: confound_penalty(q, [q, mem], y, [y, ym], c, [c, cm], backend=backend, tile_size=tile), q
    )
    want, (g_want,) = _grads(lambda: plain_penalty(q, [q, mem], y, [y, ym], c, [c, cm]), q)
    assert want.item() > 0 or batch == 1
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_penalty_gradient_reaches_a_separate_key_part(backend):
    """A key part that is not the queries but requires grad (another process's batch) gets its own gradient."""
    torch.manual_seed(1)
    q = torch.randn(6, 7, dtype=torch.float64, requires_grad=True)
    other = torch.randn(11, 7, dtype=torch.float64, requires_grad=True)
    mem = torch.randn(5, 7, dtype=torch.float64)
    y, yo, ym = torch.randint(0, 2, (6,)), torch.randint(0, 2, (11,)), torch.randint(0, 2, (5,))
    c, co, cm = torch.randint(0, 3, (6,)), torch.randint(0, 3, (11,)), torch.randint(0, 3, (5,))
    args = ([q, other, mem], y, [y, yo, ym], c, [c, co, cm])
    got, g_got = _grads(lambda: confound_penalty(q, *args, backend=backend, tile_size=4), q, other)
    want, g_want = _grads(lambda: plain_penalty(q, *args), q, other)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "case",
    ["one_class", "distinct_confounds", "unknown_memory", "single_text"],
)
def test_no_shortcut_pair_gives_exact_zero_and_zero_gradient(backend, case):
    torch.manual_seed(0)
    n = 1 if case == "single_text" else 6
    q = torch.randn(n, 4, requires_grad=True)
    mem = torch.randn(3, 4)
    y = torch.zeros(n, dtype=torch.long) if case == "one_class" else torch.arange(n)
    c = torch.arange(n) if case == "distinct_confounds" else torch.zeros(n, dtype=torch.long)
    if case == "unknown_memory":  # one text per class and confound, the memory's confounds unknown
        c = torch.arange(n)
    ym, cm = torch.tensor([5, 6, 7]), torch.full((3,), CONFOUND_NONE)
    loss = confound_penalty(q, [q, mem], y, [y, ym], c, [c, cm], backend=backend, tile_size=2)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(q.grad, torch.zeros_like(q))


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_rows_and_low_precision_stay_finite(backend):
    torch.manual_seed(0)
    q = torch.randn(9, 8)
    q[3] = 0
    q = q.to(torch.bfloat16).requires_grad_(True)
    mem = torch.randn(17, 8, dtype=torch.float16)
    mem[0] = 0
    y, ym = torch.randint(0, 3, (9,)), torch.randint(0, 3, (17,))
    c, cm = torch.randint(0, 2, (9,)), torch.randint(0, 2, (17,))
    loss = confound_penalty(q, [q, mem], y, [y, ym], c, [c, cm], backend=backend, tile_size=5)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(q.grad).all() and q.grad[3].abs().max() == 0
    want = plain_penalty(q.detach(), [q.detach(), mem], y, [y, ym], c, [c, cm])
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-6)


def test_penalty_input_errors():
    q, y = torch.randn(3, 4), torch.tensor([0, 1, 1])
    with pytest.raises(ValueError, match="query_confounds must be integer confound ids >= 0"):
        confound_penalty(q, q, y, y, torch.tensor([0, -1, 1]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="query_confounds must hold integer"):
        confound_penalty(q, q, y, y, torch.tensor([0.0, 1.0, 1.0]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="keys has 2 parts but key_confounds has 1"):
        confound_penalty(q, [q, q], y, [y, y], y, [y])
    with pytest.raises(ValueError, match=r"key_confounds\[0\] must have one label per embedding"):
        confound_penalty(q, q, y, y, y, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="backend"):
        confound_penalty(q, q, y, y, y, y, backend="fast")


# --------------------------------------------------------------------------------------------------------------------
# the losses


def _steps(n_steps=4, batch=7, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_steps):
        emb = torch.randn(batch, dim, dtype=torch.float64, generator=g)
        y = torch.randint(0, 3, (batch,), generator=g)
        c = torch.randint(0, 2, (batch,), generator=g)
        yield emb, y, c


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("objective", ["supcon", "cosine_target"])
def test_class_alignment_equals_objective_plus_weighted_plain_penalty(backend, objective):
    """Four steps of 7 texts into a memory of 10 rows (it wraps): each step's loss and gradient are the class
    objective (batch + memory) plus 0.7 x the plain penalty over batch and memory, the memory holding the confounds of
    the rows it keeps."""
    weight = 0.7
    loss_fn = ClassAlignmentLoss(
        _Dummy(), objective=objective, memory_size=10, memory_dtype=torch.float64, backend=backend, confound_weight=0.7
    )
    kept: list[tuple[torch.Tensor, int, int]] = []  # (row, class, confound), oldest first
    for step, (emb, y, c) in enumerate(_steps()):
        emb.requires_grad_(True)
        if kept:
            mem = torch.stack([r for r, _, _ in kept])
            ym, cm = torch.tensor([k for _, k, _ in kept]), torch.tensor([k for _, _, k in kept])
            keys, key_y, key_c = [emb, mem], [y, ym], [c, cm]
        else:
            keys, key_y, key_c = [emb], [y], [c]

        def expected(keys=keys, key_y=key_y, key_c=key_c, y=y, c=c, emb=emb):
            objective_part = pairwise_loss(
                emb, keys, y, key_y, objective=objective, exclude_self=True, backend="reference"
            )
            return objective_part + weight * plain_penalty(emb, keys, y, key_y, c, key_c)

        want, (g_want,) = _grads(expected, emb)
        labels = torch.stack([y, c], 1)
        got, (g_got,) = _grads(lambda emb=emb, labels=labels: loss_fn.compute_loss_from_embeddings([emb], labels), emb)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13, msg=f"step {step}")
        torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-12, msg=f"step {step}")
        kept = (kept + [(emb.detach()[i], int(y[i]), int(c[i])) for i in range(len(y))])[-10:]
        rows, labels, confounds = loss_fn.memory.get(with_confounds=True)
        assert labels.tolist() == [k for _, k, _ in kept] and confounds.tolist() == [k for _, _, k in kept]
        assert torch.equal(rows, torch.stack([r for r, _, _ in kept]))


def test_the_penalty_changes_the_loss_and_the_check_can_fail():
    """The term is not a no-op: with shortcut pairs present, weight 0.7 differs from weight 0 by 0.7 x a positive
    penalty (so the test above would catch a loss that dropped it)."""
    (emb, y, c), *_ = _steps(1)
    labels = torch.stack([y, c], 1)
    off = ClassAlignmentLoss(_Dummy(), memory_size=0).compute_loss_from_embeddings([emb], labels)
    on = ClassAlignmentLoss(_Dummy(), memory_size=0, confound_weight=0.7).compute_loss_from_embeddings([emb], labels)
    penalty = plain_penalty(emb, [emb], y, [y], c, [c])
    assert penalty.item() > 1e-3
    torch.testing.assert_close(on - off, 0.7 * penalty, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["reference", "chunked"])
@pytest.mark.parametrize("pairs", ["all", "sampled"])
def test_weight_zero_is_the_old_loss_bit_for_bit(backend, pairs):
    """confound_weight=0 (the default), with 1-D labels or with [class, confound] rows, gives exactly the loss and
    gradients of the loss without the term, step by step with a memory."""
    old = ClassAlignmentLoss(_Dummy(), memory_size=10, pairs=pairs, backend=backend)
    new = ClassAlignmentLoss(_Dummy(), memory_size=10, pairs=pairs, backend=backend, confound_weight=0.0)
    for step, (emb, y, c) in enumerate(_steps(batch=6)):
        mem = old.memory.get_unordered() if len(old.memory) else None
        a, b = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
        got_old = old.compute_loss_from_embeddings([a], y)
        got_new = new.compute_loss_from_embeddings([b], torch.stack([y, c], 1))
        got_old.backward()
        got_new.backward()
        assert torch.equal(got_old, got_new) and torch.equal(a.grad, b.grad), step
        if pairs == "all":  # and that is the plain pairwise loss on the same keys, bit for bit
            keys, key_y = ([a], [y]) if mem is None else ([a, mem[0]], [y, mem[1]])
            again = pairwise_loss(a, keys, y, key_y, objective="supcon", exclude_self=True, backend=backend)
            assert torch.equal(again, got_old)
    assert torch.equal(new.memory.get()[0], old.memory.get()[0])
    assert new.memory.get(with_confounds=True)[2].min() >= 0  # the confounds went in anyway
    assert (old.memory.get(with_confounds=True)[2] == CONFOUND_NONE).all()


def test_all_negatives_with_confound_and_its_errors():
    (emb, y, c), *_ = _steps(1, batch=9)
    emb.requires_grad_(True)
    loss_fn = AllNegativesLoss(_Dummy(), objective="margin", confound_weight=2.0)
    got, (g_got,) = _grads(lambda: loss_fn.compute_loss_from_embeddings([emb], torch.stack([y, c], 1)), emb)

    def expected():
        base = pairwise_loss(emb, emb, y, y, objective="margin", exclude_self=True)
        return base + 2.0 * plain_penalty(emb, [emb], y, [y], c, [c])

    want, (g_want,) = _grads(expected, emb)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-12)
    assert loss_fn.get_config_dict()["confound_weight"] == 2.0
    with pytest.raises(ValueError, match="needs \\(text, \\[class, confound\\]\\) data"):
        loss_fn.compute_loss_from_embeddings([emb, emb], None)
    with pytest.raises(ValueError, match="confound_weight=2 needs a confound per text"):
        loss_fn.compute_loss_from_embeddings([emb], y)
    plain = AllNegativesLoss(_Dummy(), objective="margin")
    assert torch.equal(
        plain.compute_loss_from_embeddings([emb], y), plain.compute_loss_from_embeddings([emb], torch.stack([y, c], 1))
    )


@pytest.mark.parametrize("make", [ClassAlignmentLoss, AllNegativesLoss])
def test_bad_confound_input_is_a_clear_value_error(make):
    for bad in (-0.5, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="confound_weight"):
            make(_Dummy(), confound_weight=bad)
    loss_fn = make(_Dummy(), confound_weight=1.0)
    e = torch.randn(4, 8)
    y = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="needs a confound per text.*\\(batch, 2\\)"):
        loss_fn.compute_loss_from_embeddings([e], y)
    with pytest.raises(ValueError, match=r"\(batch, 2\) \[class, confound\] rows; got shape \(4, 3\)"):
        loss_fn.compute_loss_from_embeddings([e], torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got shape \(3, 2\) for a batch of 4"):
        loss_fn.compute_loss_from_embeddings([e], torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got shape \(4, 2, 1\)"):
        loss_fn.compute_loss_from_embeddings([e], torch.zeros(4, 2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class ids"):
        loss_fn.compute_loss_from_embeddings([e], torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"confound labels \(labels\[:, 1\]\) must be integer confound ids >= 0"):
        loss_fn.compute_loss_from_embeddings([e], torch.tensor([[0, 0], [1, -1], [0, 1], [1, 1]]))
    with pytest.raises(ValueError, match="needs integer class labels"):
        loss_fn.compute_loss_from_embeddings([e], None)
    off = make(_Dummy())  # weight 0: 1-D labels as always, the same shape checks for 2-D ones
    off.compute_loss_from_embeddings([e], y)
    with pytest.raises(ValueError, match=r"got shape \(4, 3\)"):
        off.compute_loss_from_embeddings([e], torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="holds strings"):
        off.check_train_dataset(Dataset.from_dict({"text": ["a", "b"], "label": [["x", "y"], ["z", "w"]]}))
    off.check_train_dataset(Dataset.from_dict({"text": ["a", "b"], "label": [[0, 1], [1, 0]]}))


def test_evaluation_reads_memory_confounds_and_writes_nothing():
    loss_fn = ClassAlignmentLoss(_Dummy(), memory_size=20, confound_weight=1.0, memory_dtype=torch.float64)
    (e1, y1, c1), (e2, y2, c2) = _steps(2)
    loss_fn.compute_loss_from_embeddings([e1], torch.stack([y1, c1], 1))
    with torch.no_grad():
        got = loss_fn.compute_loss_from_embeddings([e2], torch.stack([y2, c2], 1))
    want = pairwise_loss(e2, [e2, e1], y2, [y2, y1], exclude_self=True) + plain_penalty(
        e2, [e2, e1], y2, [y2, y1], c2, [c2, c1]
    )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
    assert len(loss_fn.memory) == 7 and loss_fn.steps == 1


# --------------------------------------------------------------------------------------------------------------------
# the memory's confound labels and their state


def test_memory_bank_keeps_confounds_with_rows_through_wrap_and_state():
    bank = MemoryBank(size=5, dim=2)
    rows = torch.arange(16, dtype=torch.float32).reshape(8, 2)
    bank.enqueue(rows[:3], torch.arange(3), confounds=torch.tensor([7, 8, 9]))
    bank.enqueue(rows[3:5], torch.arange(3, 5))  # no confounds: unknown
    bank.enqueue(rows[5:8], torch.arange(5, 8), confounds=torch.tensor([4, 5, 6]))  # wraps
    emb, labels, confounds = bank.get(with_confounds=True)
    assert labels.tolist() == [3, 4, 5, 6, 7] and confounds.tolist() == [-1, -1, 4, 5, 6]
    assert torch.equal(emb, rows[3:8])
    _, lab_u, conf_u = bank.get_unordered(with_confounds=True)
    assert dict(zip(lab_u.tolist(), conf_u.tolist())) == {3: -1, 4: -1, 5: 4, 6: 5, 7: 6}
    assert len(bank.get()) == 2  # the old two-tensor form is unchanged

    state = bank.state_dict()
    other = MemoryBank(size=5, dim=2)
    other.load_state_dict(state)
    assert torch.equal(other.get(with_confounds=True)[2], confounds)
    old_state = {k: v for k, v in state.items() if k != "confounds"}  # saved before confounds existed
    old = MemoryBank(size=5, dim=2)
    old.load_state_dict(old_state)
    assert torch.equal(old.get()[1], labels) and (old.get(with_confounds=True)[2] == CONFOUND_NONE).all()
    bank.reset()
    assert bank.get(with_confounds=True)[2].numel() == 0
    with pytest.raises(ValueError, match="confounds must be integer confound ids >= 0"):
        other.enqueue(rows[:1], torch.tensor([0]), confounds=torch.tensor([-3]))
    with pytest.raises(ValueError, match="confounds must have one label per embedding"):
        other.enqueue(rows[:2], torch.tensor([0, 1]), confounds=torch.tensor([1]))


def test_prototypes_carry_no_confound():
    bank = MemoryBank(size=3, dim=2, mode="prototypes")
    bank.enqueue(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), confounds=torch.tensor([0, 1, 0, 1]))
    assert bank.get(with_confounds=True)[2].tolist() == [CONFOUND_NONE, CONFOUND_NONE]


def test_training_memory_stages_and_saves_confounds():
    memory = TrainingMemory(MemoryBank(size=8, dim=3), warmup_steps=0)
    memory.record_step(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([5, 6]))
    state = memory.state_dict()  # the batch is staged, not written
    assert state["pending"]["confounds"].tolist() == [5, 6]
    restored = TrainingMemory(MemoryBank(size=8, dim=3))
    restored.load_state_dict(state)
    assert restored.keys(3, with_confounds=True)[2].tolist() == [5, 6]
    del state["pending"]["confounds"], state["bank"]["confounds"]  # a checkpoint from before confounds
    legacy = TrainingMemory(MemoryBank(size=8, dim=3))
    legacy.load_state_dict(state)
    rows, labels, confounds = legacy.keys(3, with_confounds=True)
    assert labels.tolist() == [0, 1] and confounds.tolist() == [CONFOUND_NONE] * 2
    assert len(legacy.keys(3)) == 2


# --------------------------------------------------------------------------------------------------------------------
# through sentence-transformers: the collator, the Trainer, resume, the cached loss


def _confound_dataset(n_per_class: int = 8, seed: int = 0) -> tuple[Dataset, set[tuple[int, int]]]:
    texts, labels = toy_classes(n_per_class, seed)
    rng = random.Random(seed)
    confounds = [rng.randrange(2) for _ in texts]
    pairs = [[y, c] for y, c in zip(labels, confounds)]
    return Dataset.from_dict({"text": texts, "label": pairs}), {(y, c) for y, c in pairs}


def test_collator_makes_a_batch_by_2_label_tensor_and_one_text_column(tiny_model):
    """sentence-transformers' collator takes the label column out (a pair per row -> a (batch, 2) tensor) and
    tokenizes every other column as text."""
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    dataset, _ = _confound_dataset(2)
    batch = SentenceTransformerDataCollator(preprocess_fn=tiny_model.preprocess)([dataset[i] for i in range(4)])
    assert batch["label"].shape == (4, 2) and batch["label"].dtype == torch.long
    assert batch["label"].tolist() == [dataset[i]["label"] for i in range(4)]
    assert {k.split("_", 1)[0] for k in batch if k != "label"} == {"text"}


def test_trainer_delivers_class_and_confound_to_the_loss_and_memory(tiny_model_dir, tmp_path):
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    dataset, pairs = _confound_dataset()
    loss = ClassAlignmentLoss(model, memory_size=64, confound_weight=1.0)
    seen: list[tuple[int, tuple[int, ...]]] = []
    loss.register_forward_hook(lambda module, inputs, output: seen.append((len(inputs[0]), tuple(inputs[1].shape))))
    checks: list[tuple[float, float, float]] = []
    original = loss.compute_loss_from_embeddings

    def spy(embeddings, labels):
        """The loss the Trainer's batch gets, against the class objective + the plain penalty on the same keys."""
        emb = embeddings[0].detach()
        y, c = labels[:, 0], labels[:, 1]
        memory = loss.training_memory.keys(emb.shape[1], with_confounds=True)
        keys, ky, kc = [emb], [y], [c]
        if memory is not None:
            keys, ky, kc = keys + [memory[0]], ky + [memory[1]], kc + [memory[2]]
        value = original(embeddings, labels)
        penalty = plain_penalty(emb, keys, y, ky, c, kc)
        expected = pairwise_loss(emb, keys, y, ky, exclude_self=True) + penalty
        checks.append((value.item(), expected.item(), penalty.item()))
        return value

    loss.compute_loss_from_embeddings = spy
    args = Args(
        str(tmp_path), max_steps=4, per_device_train_batch_size=8, report_to="none", use_cpu=True, save_strategy="no"
    )
    SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()
    assert seen == [(1, (8, 2))] * 4  # one text column; labels (batch, 2)
    assert len(checks) == 4 and max(p for _, _, p in checks) > 0
    for value, expected, _ in checks:
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)
    rows, labels, confounds = loss.memory.get(with_confounds=True)
    assert len(rows) == 32 and (confounds >= 0).all()  # .memory writes the staged 4th step too
    assert set(zip(labels.tolist(), confounds.tolist())) <= pairs


def test_fit_takes_input_examples_with_class_and_confound(tiny_model):
    """SentenceTransformer.fit: ``InputExample(texts=[t], label=[class, confound])`` arrives as (batch, 2) too."""
    from sentence_transformers import InputExample
    from torch.utils.data import DataLoader

    dataset, pairs = _confound_dataset(4)
    examples = [InputExample(texts=[row["text"]], label=row["label"]) for row in dataset]
    loss = ClassAlignmentLoss(tiny_model, memory_size=32, confound_weight=1.0)
    shapes: list[tuple[int, ...]] = []
    loss.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(inputs[1].shape)))
    loader = DataLoader(examples, batch_size=6, shuffle=True)
    tiny_model.fit(train_objectives=[(loader, loss)], epochs=1, warmup_steps=0, show_progress_bar=False)
    assert shapes == [(6, 2)] * 2
    _, labels, confounds = loss.memory.get(with_confounds=True)
    assert len(labels) == 12 and set(zip(labels.tolist(), confounds.tolist())) <= pairs


class _StopAt(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def _train(tiny_model_dir, out, *, stop=None, resume=False):
    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(tiny_model_dir)
    loss = ClassAlignmentLoss(model, memory_size=40, memory_warmup_steps=1, confound_weight=0.5)
    values: list[float] = []
    loss.register_forward_hook(lambda module, inputs, output: values.append(output.item()))
    args = Args(
        str(out),
        max_steps=8,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        save_strategy="steps",
        save_steps=4,
        seed=0,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=_confound_dataset(9)[0],
        loss=loss,
        callbacks=[_StopAt(stop)] if stop else None,
    )
    trainer.train(resume_from_checkpoint=resume or None)
    return values, loss


def test_resume_keeps_the_memory_confounds(tiny_model_dir, tmp_path):
    from sbert_align.checkpoints import STATE_FILE_NAME, load_loss_states, save_loss_states

    full, full_loss = _train(tiny_model_dir, tmp_path / "full")
    first, _ = _train(tiny_model_dir, tmp_path / "cut", stop=4)
    checkpoint = tmp_path / "cut" / "checkpoint-4"
    saved = load_loss_states(checkpoint)["ClassAlignmentLoss"]["memory"]
    assert (saved["bank"]["confounds"][: saved["bank"]["filled"]] >= 0).all()
    assert saved["pending"]["confounds"] is not None
    rest, resumed = _train(tiny_model_dir, tmp_path / "cut", resume=str(checkpoint))
    torch.testing.assert_close(torch.tensor(first + rest), torch.tensor(full), rtol=0, atol=1e-6)
    (e1, y1, c1), (e2, y2, c2) = full_loss.memory.get(True), resumed.memory.get(True)
    assert torch.equal(y1, y2) and torch.equal(c1, c2) and torch.allclose(e1, e2, atol=1e-6)

    # a checkpoint written before confounds existed still loads (confounds unknown), and the run then differs: the
    # memory's confounds are what made the resumed run equal the full one
    states = load_loss_states(checkpoint)
    memory = states["ClassAlignmentLoss"]["memory"]
    del memory["bank"]["confounds"], memory["pending"]["confounds"]
    save_loss_states(checkpoint, states)
    assert (checkpoint / STATE_FILE_NAME).is_file()
    legacy_rest, legacy = _train(tiny_model_dir, tmp_path / "cut", resume=str(checkpoint))
    assert legacy.steps == 8 and abs(legacy_rest[0] - full[4]) > 1e-6


def test_cached_loss_takes_confound_labels(tiny_model):
    """CachedClassAlignmentLoss accepts [class, confound] labels (weight 0: the same loss as 1-D labels), and with
    confound_weight it computes the uncached loss's confound term, gradients included."""
    model = tiny_model.to(torch.float64)
    model.eval()  # no dropout: the cached and the plain forward agree
    dataset, _ = _confound_dataset(4)
    texts, labels = dataset["text"][:11], torch.tensor(dataset["label"][:11])
    cached = CachedClassAlignmentLoss(model, memory_size=32, memory_dtype=torch.float64, mini_batch_size=3)
    plain_1d = CachedClassAlignmentLoss(model, memory_size=32, memory_dtype=torch.float64, mini_batch_size=3)
    assert torch.equal(cached([model.preprocess(texts)], labels), plain_1d([model.preprocess(texts)], labels[:, 0]))
    cached = CachedClassAlignmentLoss(
        model, memory_size=32, memory_dtype=torch.float64, mini_batch_size=3, confound_weight=0.5
    )
    cached([model.preprocess(texts)], labels)  # the same memory as the reference below
    reference = ClassAlignmentLoss(model, memory_size=32, memory_dtype=torch.float64, confound_weight=0.5)
    reference([model.preprocess(texts)], labels)  # the same memory as the cached loss
    results = []
    for loss in (cached, reference):
        model.zero_grad(set_to_none=True)
        value = loss([model.preprocess(texts)], labels)
        value.backward()
        results.append((value.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (got_value, got), (want_value, want) = results
    assert got_value == pytest.approx(want_value, rel=1e-10) and got.keys() == want.keys() and want
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-8, atol=1e-11, msg=name)


# --------------------------------------------------------------------------------------------------------------------
# two processes (CPU, gloo, loopback) equal one process on the concatenated batch

WORLD, SIZES, DDP_STEPS, DDP_DIM = 2, (3, 5), 3, 6
DDP_CONFIGS = {
    "class_alignment_memory": lambda be: ClassAlignmentLoss(
        torch.nn.Module(),
        memory_size=12,
        memory_warmup_steps=1,
        gather_across_devices=True,
        backend=be,
        confound_weight=0.8,
    ),
    "all_negatives": lambda be: AllNegativesLoss(
        torch.nn.Module(), objective="margin", gather_across_devices=True, backend=be, confound_weight=0.8
    ),
}
DDP_BACKENDS = ("reference", "chunked", "auto")


def _ddp_run(name: str, backend: str, rows: slice) -> tuple[list[tuple[float, torch.Tensor]], tuple | None]:
    """Loss and embedding gradient of each step for the given rows of each global batch, and the memory after."""
    loss_fn = DDP_CONFIGS[name](backend)
    out = []
    for step in range(DDP_STEPS):
        g = torch.Generator().manual_seed(100 * step)
        n = sum(SIZES)
        emb = torch.randn(n, DDP_DIM, generator=g, dtype=torch.float64)
        labels = torch.stack([torch.randint(0, 3, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)], 1)
        leaf = emb[rows].clone().requires_grad_(True)
        loss = loss_fn.compute_loss_from_embeddings([leaf], labels[rows])
        loss.backward()
        out.append((loss.item(), leaf.grad))
    memory = getattr(loss_fn, "memory", None)
    return out, None if memory is None else memory.get(with_confounds=True)


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    import os

    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        start = sum(SIZES[:rank])
        rows = slice(start, start + SIZES[rank])
        results = {(name, be): _ddp_run(name, be, rows) for name in DDP_CONFIGS for be in DDP_BACKENDS}
        torch.save(results, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_processes_equal_one_process_with_confounds(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in range(WORLD)]
    for name in DDP_CONFIGS:
        for backend in DDP_BACKENDS:
            single, single_memory = _ddp_run(name, backend, slice(None))
            for rank, result in enumerate(results):
                start = sum(SIZES[:rank])
                rows = slice(start, start + SIZES[rank])
                steps, memory = result[(name, backend)]
                for (loss, grad), (loss_1, grad_1) in zip(steps, single):
                    assert loss == pytest.approx(loss_1, rel=1e-9), (name, backend, rank)
                    torch.testing.assert_close(grad / WORLD, grad_1[rows], rtol=1e-7, atol=1e-10)
                if single_memory is not None:  # identical on both processes, confounds included
                    for a, b in zip(memory, single_memory):
                        assert torch.equal(a, b.to(a.dtype))


# --------------------------------------------------------------------------------------------------------------------
# the benchmark's planted confound and its choice of the weight (benchmarks/bench_confound.py)


def _bench():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_confound

    return bench_confound


def test_bench_plants_the_tag_as_specified():
    bc = _bench()
    labels = [y for y in range(6) for _ in range(50 + 7 * y)]
    tags = bc.train_tags(labels, 6, 0.9, seed=0)
    for y in range(6):  # exactly 90 % of every class carries its own tag, the rest another one
        own = [t == y for t, label in zip(tags, labels) if label == y]
        assert sum(own) == len(own) - round(0.1 * len(own))
    assert set(tags) == set(range(6)) and tags == bc.train_tags(labels, 6, 0.9, seed=0)
    free = bc.independent_tags(6000, 6, seed=1)
    assert abs(sum(t == y for t, y in zip(free, labels * 20)) / 6000 - 1 / 6) < 0.02
    assert bc.tagged(["Who is it ?"], [3]) == ["[src3] Who is it ?"]


def test_bench_chooses_the_weight_on_validation_only():
    bc = _bench()
    budget = (3, 0, 32, 5e-5, 0.1, None, "cpu")

    def row(method, weight, acc, epochs=3):
        keys = ("epochs", "seed", "batch_size", "lr", "warmup_ratio", "max_train", "device")
        return {
            "method": method,
            "confound_weight": weight,
            "status": "ok",
            "metrics": {"class_knn_accuracy": acc},
            **dict(zip(keys, (epochs, *budget[1:]))),
        }

    rows = [row("ca", 0.0, 0.90), row("ca-confound", 1.0, 0.93), row("ca-confound", 3.0, 0.93), row("frozen", None, 1)]
    rows.append(row("ca-confound", 10.0, 0.99, epochs=1))  # another budget: not a candidate
    assert bc.best_weight(rows, budget) == (1.0, {0.0: 0.90, 1.0: 0.93, 3.0: 0.93})
    assert bc.best_weight([row("ca", 0.0, 0.95), row("ca-confound", 1.0, 0.93)], budget)[0] == 0.0
    with pytest.raises(ValueError, match="--validation"):
        bc.best_weight([], budget)
    with pytest.raises(SystemExit):
        bc.parse_args(["--methods", "ca-confound", "--confound-weights", "best", "--validation"])
    with pytest.raises(SystemExit):
        bc.parse_args(["--methods", "ca-confound", "--confound-weights", "0"])

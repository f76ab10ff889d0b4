"""The cached (GradCache) losses: the uncached loss's gradients (float64, dropout on, memory on and off), the memory
written once per step, peak memory bounded by the mini-batch on a batch of 4096 texts, and training with the Trainer.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import WORDS
from datasets import Dataset
from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers import SentenceTransformerTrainingArguments as Args
from sentence_transformers.base.losses.gradcache import _create_minibatch, _minibatch_ranges
from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
from test_training import toy_classes

from sbert_align.losses import (
    AllNegativesLoss,
    CachedAllNegativesLoss,
    CachedClassAlignmentLoss,
    ClassAlignmentLoss,
)

TESTS = Path(__file__).parent


class MiniBatchedEncoder(torch.nn.Module):
    """The model run over the cached losses' own mini-batches (sentence-transformers' slicing), all with a graph.

    An uncached loss on top of it is the plain uncached loss, except that its encoder pass draws its random numbers
    in the same order and shapes as the cached form's first pass, so with dropout on both see the same masks.
    """

    def __init__(self, model: torch.nn.Module, mini_batch_size: int) -> None:
        super().__init__()
        self.model = model
        self.mini_batch_size = mini_batch_size

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ranges = _minibatch_ranges(features, self.mini_batch_size)
        parts = [self.model(_create_minibatch(features, b, e))["sentence_embedding"] for b, e in ranges]
        return {"sentence_embedding": torch.cat(parts)}


def _batches(n: int = 13, steps: int = 2, seed: int = 0) -> list[tuple[list[str], torch.Tensor]]:
    """``steps`` batches of ``n`` texts of three classes, of different lengths (so mini-batches trim padding)."""
    texts, labels = toy_classes(16, seed)
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [
        ([texts[i] for i in order[s * n : (s + 1) * n]], torch.tensor([labels[i] for i in order[s * n : (s + 1) * n]]))
        for s in range(steps)
    ]


def _column_batches(rows: int = 7, steps: int = 2) -> list[tuple[list[list[str]], None]]:
    """(anchor, positive, negative) rows: each step's texts in three columns and no labels."""
    texts = [t for batch, _ in _batches(3 * rows, steps) for t in batch]
    return [([texts[(3 * s + c) * rows : (3 * s + c + 1) * rows] for c in range(3)], None) for s in range(steps)]


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def _step(loss: torch.nn.Module, model, columns: list[list[str]], labels, seed: int) -> tuple[float, dict]:
    """One training step's loss and parameter gradients, from a fixed random state."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    value = loss([model.preprocess(texts) for texts in columns], labels)
    value.backward()
    return value.item(), _grads(model)


def _assert_same_grads(got: dict, want: dict) -> None:
    assert got.keys() == want.keys() and len(got) > 0
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-8, atol=1e-11, msg=name)


LOSSES = {
    # name: (cached, uncached, data); the uncached loss is built on the encoder it is given
    "class_alignment_memory": (
        lambda m, mbs: CachedClassAlignmentLoss(m, memory_size=64, memory_dtype=torch.float64, mini_batch_size=mbs),
        lambda m: ClassAlignmentLoss(m, memory_size=64, memory_dtype=torch.float64),
        "labels",
    ),
    "class_alignment_memory_chunked_cosine": (
        lambda m, mbs: CachedClassAlignmentLoss(
            m, "cosine_target", memory_size=64, memory_dtype=torch.float64, backend="chunked", mini_batch_size=mbs
        ),
        lambda m: ClassAlignmentLoss(
            m, "cosine_target", memory_size=64, memory_dtype=torch.float64, backend="chunked"
        ),
        "labels",
    ),
    "class_alignment_no_memory": (
        lambda m, mbs: CachedClassAlignmentLoss(m, memory_size=0, mini_batch_size=mbs),
        lambda m: ClassAlignmentLoss(m, memory_size=0),
        "labels",
    ),
    "all_negatives": (
        lambda m, mbs: CachedAllNegativesLoss(m, mini_batch_size=mbs),
        lambda m: AllNegativesLoss(m),
        "labels",
    ),
    "all_negatives_columns_margin": (
        lambda m, mbs: CachedAllNegativesLoss(m, objective="margin", balance=True, mini_batch_size=mbs),
        lambda m: AllNegativesLoss(m, objective="margin", balance=True),
        "columns",
    ),
}


def _data(kind: str):
    if kind == "labels":
        return [([texts], labels) for texts, labels in _batches()]
    return _column_batches()


@pytest.mark.parametrize("mini_batch_size", [4, 5])
@pytest.mark.parametrize("name", list(LOSSES))
def test_cached_gradients_equal_uncached_with_dropout(tiny_model, name, mini_batch_size):
    """Train mode (dropout on), float64, two steps: the second reads the memory the first wrote. 13 texts (or 7 rows
    x 3 columns) in mini-batches of 4 or 5: the last mini-batch is shorter."""
    model = tiny_model.to(torch.float64).train()
    make_cached, make_uncached, kind = LOSSES[name]
    cached = make_cached(model, mini_batch_size)
    reference = make_uncached(MiniBatchedEncoder(model, mini_batch_size))
    for step, (columns, labels) in enumerate(_data(kind)):
        got_loss, got = _step(cached, model, columns, labels, seed=100 + step)
        want_loss, want = _step(reference, model, columns, labels, seed=100 + step)
        assert got_loss == pytest.approx(want_loss, rel=1e-10, abs=1e-12)
        _assert_same_grads(got, want)
        if isinstance(cached, ClassAlignmentLoss) and cached.memory is not None:
            assert len(cached.memory) == 13 * (step + 1) == len(reference.memory)
            torch.testing.assert_close(cached.memory.get(), reference.memory.get(), rtol=1e-12, atol=1e-12)
    # the equality above is not trivial: other dropout masks give other gradients
    _, other = _step(reference, model, columns, labels, seed=999)
    assert any(not torch.allclose(other[k], want[k], rtol=1e-4, atol=1e-8) for k in want)


@pytest.mark.parametrize("name", ["class_alignment_memory", "all_negatives", "all_negatives_columns_margin"])
def test_cached_gradients_equal_plain_uncached_loss_without_dropout(tiny_model, name):
    """Dropout off (the model in eval mode, the loss in training mode): the reference is the plain uncached loss on
    the whole batch in one forward pass (full padding), and the cached form trims padding per mini-batch."""
    model = tiny_model.to(torch.float64)
    make_cached, make_uncached, kind = LOSSES[name]
    cached, reference = make_cached(model, 3), make_uncached(model)
    model.eval()
    assert cached.training and reference.training  # so the steps count and the memory is used
    for step, (columns, labels) in enumerate(_data(kind)):
        got_loss, got = _step(cached, model, columns, labels, seed=step)
        want_loss, want = _step(reference, model, columns, labels, seed=step)
        assert got_loss == pytest.approx(want_loss, rel=1e-10, abs=1e-12)
        _assert_same_grads(got, want)
    if isinstance(cached, ClassAlignmentLoss):
        torch.testing.assert_close(cached.memory.get(), reference.memory.get(), rtol=1e-10, atol=1e-12)


def test_memory_holds_the_full_batch_written_once_per_step(tiny_model, monkeypatch):
    model = tiny_model.eval()  # no dropout, so the memory's rows can be compared with a plain encode
    loss = CachedClassAlignmentLoss(model, memory_size=100, memory_warmup_steps=1, mini_batch_size=4)
    calls = {"keys": 0, "record_step": 0}
    for method in calls:
        original = getattr(loss.training_memory, method)

        def counted(*args, _original=original, _method=method, **kwargs):
            calls[_method] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(loss.training_memory, method, counted)

    (t1, y1), (t2, y2), (t3, y3) = _batches(steps=3)
    loss([model.preprocess(t1)], y1).backward()  # warm-up step: neither read nor written
    assert loss.steps == 1 and len(loss.memory) == 0
    loss([model.preprocess(t2)], y2).backward()
    assert loss.steps == 2 and len(loss.memory) == 13 and loss.memory.num_enqueued == 13
    rows, labels = loss.memory.get()
    torch.testing.assert_close(rows, model.encode(t2, convert_to_tensor=True), rtol=1e-5, atol=1e-6)
    assert torch.equal(labels, y2)
    loss([model.preprocess(t3)], y3).backward()
    assert loss.steps == 3 and len(loss.memory) == 26 and loss.memory.num_enqueued == 26
    assert torch.equal(loss.memory.get()[1], torch.cat([y2, y3]))
    # 13 texts in 4 mini-batches per step, but one read and one write per step
    assert calls == {"keys": 3, "record_step": 3}

    with torch.no_grad():  # evaluation: the same loss value as the uncached loss; no step, no write
        before = loss.memory.get()[0].clone()
        value = loss([model.preprocess(t1)], y1)
    assert loss.steps == 3 and len(loss.memory) == 26 and torch.equal(loss.memory.get()[0], before)
    plain = ClassAlignmentLoss(model, memory_size=100)
    plain.load_state_dict(loss.state_dict())  # the same checkpoint state as the uncached loss
    with torch.no_grad():
        assert value.item() == pytest.approx(plain([model.preprocess(t1)], y1).item(), rel=1e-5)


def test_matryoshka_calls_the_cached_loss_once_per_dimension_and_step(tiny_model):
    """``MatryoshkaLoss`` decorates ``calculate_loss`` of a cached loss: the memory still holds full-dimension rows,
    written once per step, and the gradients equal those of MatryoshkaLoss over the uncached loss."""
    model = tiny_model.to(torch.float64).eval()
    dims = [32, 16, 8]
    cached_inner = CachedClassAlignmentLoss(model, memory_size=64, memory_dtype=torch.float64, mini_batch_size=5)
    plain_inner = ClassAlignmentLoss(model, memory_size=64, memory_dtype=torch.float64)
    cached, plain = MatryoshkaLoss(model, cached_inner, dims), MatryoshkaLoss(model, plain_inner, dims)
    for step, (texts, labels) in enumerate(_batches(steps=3)):
        got_loss, got = _step(cached, model, [texts], labels, seed=step)
        want_loss, want = _step(plain, model, [texts], labels, seed=step)
        assert got_loss == pytest.approx(want_loss, rel=1e-10)
        _assert_same_grads(got, want)
        assert cached_inner.steps == step + 1 and cached_inner.memory.get()[0].shape == (13 * (step + 1), 32)
    torch.testing.assert_close(cached_inner.memory.get(), plain_inner.memory.get(), rtol=1e-10, atol=1e-12)


def test_config_citation_and_errors(tiny_model):
    loss = CachedClassAlignmentLoss(tiny_model, memory_size=16, mini_batch_size=8)
    config = loss.get_config_dict()
    assert config["mini_batch_size"] == 8 and config["mini_batch_num_tokens"] is None
    assert config["memory_size"] == 16 and config["objective"] == "supcon"
    assert "gao2021scaling" in loss.citation and "khosla2020supervised" in loss.citation
    assert loss.uses_gradient_cache and isinstance(loss, ClassAlignmentLoss)
    negatives = CachedAllNegativesLoss(tiny_model, objective="margin", mini_batch_size=2)
    assert negatives.get_config_dict()["mini_batch_size"] == 2 and negatives.get_config_dict()["objective"] == "margin"
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="mini_batch_size"):
            CachedAllNegativesLoss(tiny_model, mini_batch_size=bad)
    with pytest.raises(ValueError, match="mini_batch_num_tokens"):
        CachedClassAlignmentLoss(tiny_model, mini_batch_num_tokens=0)
    features = tiny_model.preprocess(["a city", "a river"])
    with pytest.raises(ValueError, match="one text column"):
        loss([features, features], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        loss([features], None)
    single = CachedAllNegativesLoss(tiny_model, mini_batch_size=2)(
        [tiny_model.preprocess(["a city"])], torch.tensor([0])
    )
    single.backward()  # a batch without any positive pair: finite, and backward runs
    assert torch.isfinite(single)


def _texts(n: int, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """``n`` texts of 8 to 16 words (18 tokens with [CLS] and [SEP] once padded) and labels of 50 classes."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))) for _ in range(n)]
    return texts, torch.tensor([rng.randrange(50) for _ in range(n)])


def _step_with_full_memory(model, variant: str, batch: int, mini_batch_size: int):
    """A ``ClassAlignmentLoss`` (or its cached form) with a full memory of 4096 rows, and the batch to train on."""
    if variant == "cached":
        loss = CachedClassAlignmentLoss(model, memory_size=4096, mini_batch_size=mini_batch_size)
    else:
        loss = ClassAlignmentLoss(model, memory_size=4096)
    loss.memory.enqueue(torch.randn(4096, 32), torch.randint(0, 50, (4096,)))
    texts, labels = _texts(batch)
    return loss, model.preprocess(texts), labels


def _proc_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def _train_step(loss: torch.nn.Module, features: dict, labels: torch.Tensor) -> None:
    loss([features], labels).backward()


def _peak_rss_growth_mib(fn, *args) -> float:
    """How far the process's peak RSS rises above its current RSS while ``fn(*args)`` runs (Linux: the peak is reset
    through ``/proc/self/clear_refs``, after returning freed memory to the system)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _proc_kib("VmRSS")
    fn(*args)
    return (_proc_kib("VmHWM") - base) / 1024


def _can_reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _proc_kib("VmHWM") > 0
    except (OSError, StopIteration):
        return False


@pytest.mark.skipif(not _can_reset_peak_rss(), reason="needs Linux's /proc/self/clear_refs to reset the peak RSS")
def test_peak_memory_of_a_4096_batch_is_bounded_by_the_mini_batch(tiny_model):
    """One training step (forward and backward, dropout on) on 4096 texts against a full memory of 4096 rows, in this
    process: the peak RSS growth of the cached form (mini-batches of 64) against the uncached loss. torch's CPU
    allocations do not go through Python's allocator, so ``tracemalloc`` does not see them; the RSS does. The cached
    form runs first, so memory the allocator keeps from it can only make the uncached loss look smaller."""
    growth = {}
    for variant in ("cached", "uncached"):
        loss, features, labels = _step_with_full_memory(tiny_model, variant, 4096, 64)
        growth[variant] = _peak_rss_growth_mib(_train_step, loss, features, labels)
        assert loss.steps == 1 and len(loss.memory) == 4096
        tiny_model.zero_grad(set_to_none=True)
        del loss
    print(f"peak RSS growth of one step (MiB), input_ids {tuple(features['input_ids'].shape)}: {growth}")
    # measured: uncached ~320-380 MiB (the encoder's activations of 4096 texts); cached ~45-85 MiB, mostly the
    # tiled loss stage over 4096 x (4096 + 4096) pairs, which is the same for both
    assert growth["uncached"] > 150
    assert growth["cached"] < growth["uncached"] / 3


_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import torch
    torch.set_num_threads(1)
    from conftest import make_tiny_sentence_transformer
    from test_cached_losses import _proc_kib, _step_with_full_memory

    torch.manual_seed(0)
    model = make_tiny_sentence_transformer(sys.argv[2])  # training mode: dropout on
    loss, features, labels = _step_with_full_memory(model, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    before = _proc_kib("VmHWM")
    loss([features], labels).backward()  # one training step: forward and backward
    after = _proc_kib("VmHWM")
    print(json.dumps({"growth_mib": (after - before) / 1024, "shape": list(features["input_ids"].shape),
                      "steps": loss.steps, "memory": len(loss.memory)}))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not _can_reset_peak_rss(), reason="needs Linux's /proc/self/status")
def test_peak_memory_of_a_4096_batch_in_fresh_processes(tiny_model_dir):
    """The same step, each variant in a fresh process (about 20 s of imports each): the growth of the process's
    peak RSS over its peak before the step. The peak is ``VmHWM``, not ``ru_maxrss``: a child's ``ru_maxrss``
    starts at the RSS of the (pytest) process it was forked from, which can hide the whole step."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    growth = {}
    for variant in ("cached", "uncached"):
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, str(TESTS), str(tiny_model_dir), variant, "4096", "64"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["shape"][0] == 4096 and result["steps"] == 1 and result["memory"] == 4096
        growth[variant] = result["growth_mib"]
    print(f"peak RSS growth of one step in a fresh process (MiB): {growth}")
    assert growth["uncached"] > 150
    assert growth["cached"] < growth["uncached"] / 3


def test_cached_losses_train_with_the_trainer(tiny_model, tmp_path):
    texts, labels = toy_classes(16)
    loss = CachedClassAlignmentLoss(tiny_model, memory_size=32, memory_warmup_steps=1, mini_batch_size=3)
    before = {k: v.detach().clone() for k, v in tiny_model.state_dict().items()}
    args = Args(
        str(tmp_path / "a"),
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        logging_steps=1,
        save_strategy="no",
    )
    trainer = SentenceTransformerTrainer(
        model=tiny_model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}), loss=loss
    )
    trainer.train()
    history = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(history) == 4 and all(torch.isfinite(torch.tensor(history)))
    assert loss.steps == 4 and len(loss.memory) == 24  # 3 steps after the warm-up, 8 texts each
    assert any(not torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())

    anchors, positives = texts[:24], texts[24:]
    columns = CachedAllNegativesLoss(tiny_model, mini_batch_size=5)
    args = Args(
        str(tmp_path / "b"),
        max_steps=2,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
    )
    SentenceTransformerTrainer(
        model=tiny_model,
        args=args,
        train_dataset=Dataset.from_dict({"anchor": anchors, "positive": positives}),
        loss=columns,
    ).train()

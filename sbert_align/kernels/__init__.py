"""Similarity maths of the losses and of kNN, with interchangeable backends.

* ``reference``: plain PyTorch on the materialised (B x M) matrix; the ground truth (:mod:`.reference`).
* ``chunked``: a tiled ``torch.autograd.Function`` that never holds more than one tile (:mod:`.chunked`);
  the CPU path for large shapes.
* ``triton``: fused Triton kernels on CUDA (``triton_*`` modules).

:func:`pairwise_loss` and :func:`similarity_topk` pick a backend by device, size and an override: the ``backend``
argument, else the environment variable ``SBERT_ALIGN_KERNEL``, else ``"auto"``. Kernels take tensors only; they
know nothing of sentence-transformers.

Normalisation, one rule in every backend (and in :func:`similarity_topk`): rows are upcast to the compute dtype
(float32, or float64 for float64 inputs) and divided by their Euclidean norm; a row whose norm is below
:data:`NORMALIZE_EPS` (``1e-6``) is a *zero vector* instead: its cosine similarity with every row is exactly 0 and it
gets exactly zero gradient, in every dtype. :func:`normalize_rows` applies the rule (``x / ||x||``, bit for bit
``F.normalize`` above the threshold, 0 below it) and is what other packages should use for cosine similarities that
must agree with the kernels'; the Triton kernels scale raw dot products by the same inverse norms. ``F.normalize``'s ``x / max(||x||, 1e-12)`` instead gave a zero row a gradient of
``dn / 1e-12`` (~1e12 in fp32 and bf16, inf and NaN in fp16).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..objectives import PairObjective, get_objective
from ._env import env_choice
from ._inputs import PairInputs, check_pair_inputs
from ._normalize import NORMALIZE_EPS, normalize_rows
from .confound import CONFOUND_NONE, ConfoundPenalty, confound_penalty
from .reference import reference_pairwise_loss
from .topk import FUSED_TOPK_MAX_K, StreamingTopK, chunked_similarity_topk

__all__ = [
    "pairwise_loss",
    "similarity_topk",
    "StreamingTopK",
    "confound_penalty",
    "ConfoundPenalty",
    "CONFOUND_NONE",
    "resolve_backend",
    "resolve_topk_backend",
    "BACKENDS",
    "triton_available",
    "normalize_rows",
    "NORMALIZE_EPS",
]

BACKENDS = ("auto", "reference", "chunked", "triton")
ENV_VAR = "SBERT_ALIGN_KERNEL"
#: Up to this many (query, key) pairs, ``auto`` materialises the matrix on CUDA: there a handful of cuBLAS calls
#: beat the tiled kernels' fixed launch costs (H100, session 1: the reference took ~4 ms where Triton took 5-7 ms
#: at B <= 1024 without memory), and 4M pairs are small enough not to matter.
REFERENCE_MAX_PAIRS = 1 << 22
#: The same on the CPU, where chunked is about as fast as the reference around 16K pairs and faster beyond
#: (``benchmarks/results/small_shapes_cpu.md``: reference/chunked 0.80 at 1K pairs, 0.95 at 4K, 1.06 at 16K, 0.93
#: at 17K, 1.11 at 69K, 1.11-1.55 from 65K to 1.1M pairs), while holding far less memory.
CPU_REFERENCE_MAX_PAIRS = 1 << 15


def triton_available() -> bool:
    """True when Triton imports and can run here (a CUDA device, or ``TRITON_INTERPRET=1``)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    import torch

    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


def _requested(backend: str | None) -> tuple[str, bool]:
    """The backend asked for (argument, else ``$SBERT_ALIGN_KERNEL``, else ``auto``) and whether it was explicit."""
    explicit = backend not in (None, "auto")
    if not explicit:
        return env_choice(ENV_VAR, BACKENDS), False
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    return backend, True


def _triton_problem(device_type: str) -> str | None:
    if triton_available() and (device_type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"):
        return None
    return "Triton needs a CUDA device (or TRITON_INTERPRET=1) and the triton package"


def _refuse_or_fall_back(what: str, problem: str, explicit: bool) -> None:
    """An explicit ``backend="triton"`` that cannot run raises; ``$SBERT_ALIGN_KERNEL=triton``, a process-wide
    preference, only warns (the caller then runs its portable path), so a long job does not die on one call."""
    if explicit:
        raise ValueError(f"backend='triton': {problem}; use backend='chunked'.")
    warnings.warn(f"${ENV_VAR}=triton: {problem}; {what} runs without it.", stacklevel=4)


def reference_fits(num_pairs: int, device_type: str) -> bool:
    """Whether ``auto`` materialises the matrix: up to :data:`REFERENCE_MAX_PAIRS` (query, key) pairs on CUDA,
    :data:`CPU_REFERENCE_MAX_PAIRS` elsewhere."""
    return num_pairs <= (REFERENCE_MAX_PAIRS if device_type == "cuda" else CPU_REFERENCE_MAX_PAIRS)


def resolve_backend(backend: str | None, device_type: str, num_pairs: int) -> str:
    """The backend that will run: explicit argument, else ``$SBERT_ALIGN_KERNEL``, else the automatic choice."""
    chosen, explicit = _requested(backend)
    if chosen == "triton":
        problem = _triton_problem(device_type)
        if problem is None:
            return "triton"
        _refuse_or_fall_back("pairwise_loss", problem, explicit)
        chosen = "auto"
    if chosen != "auto":
        return chosen
    if reference_fits(num_pairs, device_type):
        return "reference"
    if device_type == "cuda" and _triton_problem(device_type) is None:
        return "triton"
    return "chunked"


def pairwise_loss(
    queries: Tensor,
    keys: Tensor | Sequence[Tensor],
    query_labels: Tensor,
    key_labels: Tensor | Sequence[Tensor],
    *,
    objective: str | PairObjective = "supcon",
    backend: str | None = "auto",
    exclude_self: bool = False,
    tile_size: int | None = None,
    **objective_params: Any,
) -> Tensor:
    """Label-driven loss over all (query, key) cosine similarities, without materialising them when large.

    Args:
        queries: ``(B, D)`` embeddings (normalised inside by :func:`normalize_rows`: a row with a norm below
            :data:`NORMALIZE_EPS` is a zero vector, with cosine 0 to every key and zero gradient).
        keys: ``(M, D)`` embeddings, or a sequence of parts (e.g. ``[batch, memory]``) that are concatenated
            logically; each part keeps its own ``requires_grad``, so a detached memory costs no key-gradient work.
        query_labels: ``(B,)`` integer class ids.
        key_labels: ``(M,)`` integer class ids, or a sequence matching the parts of ``keys``.
        objective: ``"cosine_target"``, ``"margin"``, ``"supcon"`` or a :class:`~sbert_align.objectives.PairObjective`.
        backend: ``"auto"``, ``"reference"``, ``"chunked"`` or ``"triton"``; ``$SBERT_ALIGN_KERNEL`` overrides
            ``"auto"``.
        exclude_self: Query ``i`` *is* key ``i`` (the batch comes first among the keys): skip that pair.
        tile_size: Keys per tile for the tiled backends (None: the backend's default).
        **objective_params: Parameters of the objective, e.g. ``temperature=0.1`` for ``supcon``.

    Returns:
        A scalar tensor (float32, or float64 for float64 inputs).

    Example:
        ::

            import torch
            from sbert_align.kernels import pairwise_loss

            q = torch.randn(8, 16, requires_grad=True)
            memory = torch.randn(100, 16)
            y, y_mem = torch.randint(0, 3, (8,)), torch.randint(0, 3, (100,))
            loss = pairwise_loss(q, [q, memory], y, [y, y_mem], objective="supcon", exclude_self=True)
            loss.backward()
    """
    obj = get_objective(objective, **objective_params)
    inputs = check_pair_inputs(queries, keys, query_labels, key_labels, exclude_self)
    chosen = resolve_backend(backend, queries.device.type, queries.shape[0] * inputs.num_keys)
    return _run(chosen, inputs, obj, tile_size)


def _run(backend: str, inputs: PairInputs, objective: PairObjective, tile_size: int | None) -> Tensor:
    if backend == "reference":
        return reference_pairwise_loss(inputs, objective)
    if backend == "chunked":
        from .chunked import chunked_pairwise_loss

        return chunked_pairwise_loss(inputs, objective, tile_size=tile_size)
    if backend == "triton":
        from .triton_pairwise import triton_pairwise_loss

        return triton_pairwise_loss(inputs, objective, tile_size=tile_size)
    raise AssertionError(backend)


def resolve_topk_backend(backend: str | None, device_type: str, k: int, dtype: torch.dtype | None = None) -> str:
    """The backend :func:`similarity_topk` runs: explicit argument, else ``$SBERT_ALIGN_KERNEL``, else ``auto``.

    ``auto`` runs the fused Triton top-k on CUDA for half-precision inputs (``dtype`` float16 or bfloat16, the common
    dtype of queries and keys) with ``k <= 64`` when Triton is importable, and the chunked path everywhere else.
    Measured on an H100 (``benchmarks/results/topk_cuda.md``): with bf16 inputs the fused kernel takes 0.09x-0.20x
    of chunked's time (it keeps the tensor cores, chunked upcasts to fp32); with fp32 inputs it is not reliably
    faster (0.86x, 1.09x and 2.36x at three shapes), so fp32 stays chunked. An explicit ``backend="triton"``
    that cannot run (``k > 64``, no CUDA) raises; ``$SBERT_ALIGN_KERNEL=triton`` falls back to chunked there (with
    a warning), so an evaluation with a large ``k`` still completes.
    """
    chosen, explicit = _requested(backend)
    if chosen == "auto":
        half = dtype in (torch.float16, torch.bfloat16)
        fused = half and device_type == "cuda" and k <= FUSED_TOPK_MAX_K and triton_available()
        return "triton" if fused else "chunked"
    if chosen == "triton":
        problem = _triton_problem(device_type)
        if k > FUSED_TOPK_MAX_K:
            problem = f"the Triton top-k takes k <= {FUSED_TOPK_MAX_K}, got k={k}"
        if problem is None:
            return "triton"
        _refuse_or_fall_back("similarity_topk", problem, explicit)
        return "chunked"
    return chosen


def similarity_topk(
    queries: Tensor,
    keys: Tensor,
    k: int,
    *,
    chunk_size: int = 16384,
    normalize: bool = True,
    backend: str | None = "auto",
) -> tuple[Tensor, Tensor]:
    """Top-``k`` cosine similarities of each query among ``keys``, streamed over chunks of keys.

    Args:
        queries: ``(B, D)``.
        keys: ``(N, D)``; may live on another device than ``queries`` (chunks are moved as they are used).
        k: How many neighbours; ``1 <= k <= N``.
        chunk_size: Keys per chunk of the chunked path; peak memory is ``O(B * (chunk_size + k))``.
        normalize: Cosine similarity (True; rows normalised by :func:`normalize_rows`, so a zero row has similarity
            0 with everything) or plain dot product (False).
        backend: ``"auto"`` (the fused kernel for float16 / bfloat16 inputs on CUDA with ``k <= 64``, chunked
            otherwise; see :func:`resolve_topk_backend`), ``"chunked"``, ``"reference"`` (one chunk holding every
            key) or ``"triton"`` (the fused kernel of :mod:`.triton_topk`, CUDA, ``k <= 64``);
            ``$SBERT_ALIGN_KERNEL`` overrides ``"auto"``. On the CPU the chunked path multiplies with torch's or
            numpy's BLAS, whichever is faster here (:mod:`.cpu_matmul`, ``$SBERT_ALIGN_CPU_MATMUL``).

    Returns:
        ``(values, indices)``, each ``(B, k)``, most similar first; ties go to the smaller key index. Values are
        float32 (float64 for float64 inputs).

    Example:
        ::

            import torch
            from sbert_align.kernels import similarity_topk

            values, indices = similarity_topk(torch.randn(4, 8), torch.randn(1000, 8), k=5)
    """
    if queries.dim() != 2 or keys.dim() != 2:
        raise ValueError(f"queries and keys must be 2-D, got {tuple(queries.shape)} and {tuple(keys.shape)}.")
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries have dimension {queries.shape[1]} but keys have {keys.shape[1]}.")
    if keys.shape[0] == 0:
        raise ValueError("keys is empty: there is nothing to search.")
    if not 1 <= int(k) <= keys.shape[0]:
        raise ValueError(f"k must be between 1 and the number of keys ({keys.shape[0]}), got {k}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    dtype = queries.dtype if queries.dtype == keys.dtype else None
    chosen = resolve_topk_backend(backend, queries.device.type, int(k), dtype)
    if chosen == "triton":
        from .triton_topk import triton_similarity_topk

        return triton_similarity_topk(queries, keys, int(k), normalize=normalize)
    if chosen == "reference":
        chunk_size = keys.shape[0]
    return chunked_similarity_topk(queries, keys, int(k), chunk_size=chunk_size, normalize=normalize)

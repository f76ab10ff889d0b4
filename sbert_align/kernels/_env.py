"""Choices that environment variables make for the kernels (``$SBERT_ALIGN_KERNEL``, ``$SBERT_ALIGN_CPU_MATMUL``,
``$SBERT_ALIGN_CPU_SELECT``): one reading and one error for all of them."""

from __future__ import annotations

import os
from collections.abc import Sequence


def env_choice(name: str, choices: Sequence[str], default: str = "auto") -> str:
    """``$name`` (``default`` when unset or empty), which must be one of ``choices``."""
    chosen = os.environ.get(name, default) or default
    if chosen not in choices:
        raise ValueError(f"${name} must be one of {tuple(choices)}, got {chosen!r}.")
    return chosen

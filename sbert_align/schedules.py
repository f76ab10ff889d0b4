"""Annealing schedules: a value that moves from ``start`` to ``end`` over a number of steps.

Used for sequence lengths (:class:`~sbert_align.losses.AnnealedPairLoss`) and for anything else that anneals.
Both directions work: ``start > end`` anneals down, ``start < end`` anneals up.

* ``linear``: ``start + (end - start) * p``
* ``cosine``: ``end + (start - end) * (1 + cos(pi * p)) / 2`` (slow at both ends)
* ``exponential``: ``start * (end / start) ** p`` (geometric; both must be > 0)
* ``step``: ``num_stages`` constant stages, the first at ``start``, the last at ``end``

with ``p = min(step / total_steps, 1)``: after ``total_steps`` the value stays at ``end``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SCHEDULES", "schedule_value", "Schedule"]

SCHEDULES = ("linear", "cosine", "exponential", "step")


def schedule_value(kind: str, start: float, end: float, step: int, total_steps: int, num_stages: int = 4) -> float:
    """The value of schedule ``kind`` at ``step`` (0-based) out of ``total_steps``.

    Example:
        >>> schedule_value("linear", 70, 20, step=50, total_steps=100)
        45.0
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}.")
    if total_steps < 0:
        raise ValueError(f"total_steps must be >= 0, got {total_steps}.")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")
    p = 1.0 if total_steps == 0 else min(step / total_steps, 1.0)
    if kind == "linear":
        return start + (end - start) * p
    if kind == "cosine":
        return end + (start - end) * (1.0 + math.cos(math.pi * p)) / 2.0
    if kind == "exponential":
        if start <= 0 or end <= 0:
            raise ValueError(f"the exponential schedule needs start > 0 and end > 0, got {start} and {end}.")
        return start * (end / start) ** p
    if num_stages < 2:
        raise ValueError(f"num_stages must be >= 2, got {num_stages}.")
    stage = min(int(p * num_stages), num_stages - 1)
    return start + (end - start) * stage / (num_stages - 1)


@dataclass
class Schedule:
    """A schedule bound to its parameters; call it with the step.

    Args:
        kind: ``"linear"``, ``"cosine"``, ``"exponential"`` or ``"step"``.
        start: Value at step 0.
        end: Value from ``total_steps`` on.
        total_steps: Steps from ``start`` to ``end``.
        num_stages: Stages of the ``step`` schedule.

    Example:
        >>> length = Schedule("cosine", start=70, end=20, total_steps=1000)
        >>> round(length(0)), round(length(500)), round(length(5000))
        (70, 45, 20)
    """

    kind: str
    start: float
    end: float
    total_steps: int
    num_stages: int = 4

    def __post_init__(self) -> None:
        # Validate eagerly: a bad schedule fails at construction, not mid-training.
        schedule_value(self.kind, self.start, self.end, 0, self.total_steps, self.num_stages)

    def __call__(self, step: int) -> float:
        return schedule_value(self.kind, self.start, self.end, step, self.total_steps, self.num_stages)

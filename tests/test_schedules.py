from __future__ import annotations

import pytest

from sbert_align.schedules import SCHEDULES, Schedule, schedule_value


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("start,end", [(70, 20), (16, 64)])
def test_endpoints_both_directions(kind, start, end):
    assert schedule_value(kind, start, end, 0, 100) == pytest.approx(start)
    assert schedule_value(kind, start, end, 100, 100) == pytest.approx(end)
    assert schedule_value(kind, start, end, 10_000, 100) == pytest.approx(end)  # stays at the end
    values = [schedule_value(kind, start, end, s, 100) for s in range(0, 101, 5)]
    monotone = (
        all(a >= b for a, b in zip(values, values[1:]))
        if start > end
        else all(a <= b for a, b in zip(values, values[1:]))
    )
    assert monotone


def test_midpoints():
    assert schedule_value("linear", 70, 20, 50, 100) == 45
    assert schedule_value("cosine", 70, 20, 50, 100) == pytest.approx(45)
    assert schedule_value("exponential", 80, 20, 50, 100) == pytest.approx(40)
    assert [schedule_value("step", 40, 10, s, 100, num_stages=4) for s in (0, 24, 25, 50, 75, 99)] == [
        40,
        40,
        30,
        20,
        10,
        10,
    ]


def test_errors():
    with pytest.raises(ValueError, match="schedule must be one of"):
        Schedule("sigmoid", 1, 2, 10)
    with pytest.raises(ValueError, match="exponential"):
        Schedule("exponential", 0, 2, 10)
    with pytest.raises(ValueError, match="total_steps"):
        Schedule("linear", 1, 2, -1)
    assert Schedule("linear", 5, 1, 0)(0) == 1  # zero steps: already at the end

"""The run clock: how long each task ran, from what the scheduler shows."""

from __future__ import annotations

from pexen.cli import _timing
from pexen.cli._console import duration


def test_clock_charges_queued_tasks_only_from_when_a_worker_took_them(clock_time):
    a, b, c = object(), object(), object()
    clock = _timing.RunClock(lambda: 1)
    clock.resumed()  # at 100: a and b handed over (one worker, one spare)
    clock_time.now = 103.0
    # a came back; b is still queued behind it, so it starts now
    assert clock.finished(a, {b: 100.0}) == 3.0
    assert clock.started(b) == 103.0
    clock.resumed()
    clock_time.now = 104.5
    assert clock.finished(b, {c: 103.0}) == 1.5
    clock_time.now = 105.0
    assert clock.finished(c, {}) == 0.5


def test_clock_with_two_workers_and_unseen_tasks(clock_time):
    a, b = object(), object()
    clock = _timing.RunClock(lambda: 2)
    clock.resumed()
    clock_time.now = 101.0
    assert clock.finished(a, {}) == 1.0  # never seen in flight: from the resume
    clock_time.now = 101.5
    clock.resumed()
    clock_time.now = 102.0
    assert clock.finished(b, {}) == 0.5


def test_duration_format():
    assert [duration(s) for s in (None, 0.123, 12.34, 125)] == [
        "-",
        "0.12s",
        "12.3s",
        "2m05s",
    ]

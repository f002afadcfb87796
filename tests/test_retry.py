"""Retries (SPEC §11): which failures are retried, when, and the timer."""

from __future__ import annotations

import threading
import time

import pytest

from pexen.sched import TaskFailError, TaskTimeoutError, WorkerCrashError
from pexen.sched._retry import RetryTimer, retry_delay, retryable
from pexen.sched.meta import MAX_TIMEOUT


class Flaky(TaskFailError):
    """A controlled failure worth retrying, when retry_on names it."""


class Cancelled(Exception):
    """Stands for an exception that is never retried."""


@pytest.mark.parametrize(
    ("exc", "retry_on", "expected"),
    [
        (ValueError("x"), (Exception,), True),
        (WorkerCrashError("died"), (Exception,), True),
        (TaskTimeoutError("late"), (Exception,), True),
        (ValueError("x"), (OSError,), False),
        (ConnectionError("x"), (OSError,), True),
        (KeyboardInterrupt(), (Exception,), False),
        (TaskFailError("no"), (Exception,), False),  # a decision, not an accident
        (TaskFailError("no"), (TaskFailError,), True),
        (Flaky("again"), (Flaky,), True),
        (TaskFailError("no"), (Flaky,), False),
        (Cancelled(), (Exception,), False),  # never
        (None, (Exception,), False),
    ],
    ids=repr,
)
def test_what_is_retried(exc, retry_on, expected):
    assert retryable(exc, retry_on, never=(Cancelled,)) is expected


def test_delays_grow_by_the_backoff_up_to_a_year():
    assert [retry_delay(0.5, 2, n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(0, 10, 5) == 0
    assert retry_delay(3, 1, 7) == 3
    assert retry_delay(1, 10, 100) == MAX_TIMEOUT
    assert retry_delay(1, 10.0, 10_000) == MAX_TIMEOUT  # overflows a float


class Rec:
    def __init__(self, seq):
        self.seq = seq


def test_the_timer_wakes_the_loop_once_a_task_is_due_and_hands_them_out_in_order():
    woken = threading.Event()
    timer = RetryTimer(woken.set)
    try:
        start = time.monotonic()
        later, sooner = Rec(0), Rec(1)
        timer.add(later, start + 3600)
        timer.add(sooner, start + 0.01)
        assert timer.next_due() == start + 0.01
        assert timer.due(start) == []
        assert woken.wait(timeout=30)  # only to catch a timer that never fires
        assert timer.due(time.monotonic()) == [sooner]
        assert len(timer) == 1
        assert timer.remove(later) and not timer.remove(later)
        now = time.monotonic()
        timer.add(later, now)
        timer.add(sooner, now - 1)
        assert timer.due(now) == [sooner, later]
    finally:
        assert timer.close() == []


def test_close_returns_what_still_waits_and_stops_the_thread():
    timer = RetryTimer(lambda: None)
    waiting = Rec(7)
    timer.add(waiting, time.monotonic() + 3600)
    assert [t.name for t in threading.enumerate()].count("pexen-retry-timer") == 1
    assert timer.close() == [waiting]
    assert "pexen-retry-timer" not in [t.name for t in threading.enumerate()]


def test_a_timer_never_used_starts_no_thread():
    timer = RetryTimer(lambda: None)
    assert timer.due(time.monotonic()) == [] and timer.next_due() is None
    assert timer.close() == []

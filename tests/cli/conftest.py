"""Fixtures of the command-line tests."""

from __future__ import annotations

import pytest

from pexen.cli import _progress


class FakeTime:
    """A ``time.monotonic`` that says what the test sets ``now`` to."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock_time(monkeypatch):
    """Make ``time.monotonic`` a ``FakeTime`` for the test."""
    fake = FakeTime()
    monkeypatch.setattr(_progress.time, "monotonic", fake)
    return fake

"""Shared fixtures: the pool matrix and leak checks after every test."""

from __future__ import annotations

import threading

import pytest

from tests._leaks import LeakCheck
from tests._pools import POOL_KINDS, START_METHODS


@pytest.fixture(params=[factory for _, factory in POOL_KINDS],
                ids=[name for name, _ in POOL_KINDS])
def make_pool(request):
    """A factory ``make_pool(workers=1, spare=1)`` for each pool kind."""
    return request.param


@pytest.fixture(params=START_METHODS)
def method(request):
    """Each multiprocessing start method of this platform, in turn."""
    return request.param


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves a thread, child process or zombie behind."""
    check = LeakCheck()
    yield
    if problems := check.problems():
        pytest.fail("; ".join(problems))


@pytest.fixture
def refuse_thread(monkeypatch):
    """``refuse_thread(n)``: starting pexen's *n*-th thread fails as CPython's does."""
    real_start = threading.Thread.start
    counted = []

    def refuse(n):
        def start(self):
            if self.name.startswith("pexen-worker-"):
                counted.append(self.name)
                if len(counted) >= n:
                    # what CPython raises when the system will not make a thread
                    raise RuntimeError("can't start new thread")
            real_start(self)

        monkeypatch.setattr(threading.Thread, "start", start)

    return refuse

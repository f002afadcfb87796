"""Shared fixtures: the pool matrix and leak checks after every test."""

from __future__ import annotations

import signal
import threading

import pytest

from tests._leaks import LeakCheck
from tests._pools import POOL_KINDS, START_METHODS


def pytest_configure(config):
    """Take SIGINT back if it was ignored: a shell ignores it in the commands
    it starts in the background (`bash .ci/run &`), and a process inherits
    that, while the Ctrl-C tests send it on purpose, to this process and to
    the ones it starts (a handled signal is reset to its default by exec)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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

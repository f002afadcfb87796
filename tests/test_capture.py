"""The worker side of ``pexen run``'s output capture (``pexen._capture``)."""

from __future__ import annotations

import pickle
import sys
import threading

import pytest

from pexen import _capture
from pexen.sched import Sched
from pexen.sched._calling import passes_shared
from pexen.sched.meta import func_meta, retrieve_meta
from pexen.sched.pool import ProcessWorkerPool
from tests._pools import START_METHODS


@func_meta(provides=["greeting"], claims=["port"], timeout=5)
def _printing_task(shared, *, who="world"):
    print(f"hello {who}")
    print("to stderr", file=sys.stderr)
    shared["greeted"] = who
    return len(who)


def test_capturing_task_is_called_like_the_task_and_pickles():
    wrapped = _capture.CapturingTask(_printing_task)
    assert retrieve_meta(wrapped) is retrieve_meta(_printing_task)
    # the scheduler decides from the task's own signature how to call it
    assert passes_shared(wrapped, {"who": "x"}) is True
    copy = pickle.loads(pickle.dumps(wrapped))
    assert copy.__wrapped__ is _printing_task
    assert retrieve_meta(copy) is retrieve_meta(_printing_task)
    shared: dict = {}
    result = copy(shared, who="pexen")
    assert (result.ret, result.output) == (5, "hello pexen\nto stderr\n")
    assert shared == {"greeted": "pexen"}
    assert isinstance(sys.stdout, _capture._ThreadRouter)  # until the run ends
    _capture.uninstall()
    assert not isinstance(sys.stdout, _capture._ThreadRouter)


def test_capture_keeps_threads_apart_and_rides_on_exceptions():
    barrier = threading.Barrier(2, timeout=30)

    def talk(word):
        barrier.wait()  # both print while the other one does
        for _ in range(50):
            print(word)
        if word == "bad":
            raise ValueError(word)

    results: dict = {}

    def run(word):
        try:
            results[word] = _capture.CapturingTask(talk)(word).output
        except ValueError as exc:
            results[word] = getattr(exc, _capture.OUTPUT_ATTR)

    threads = [threading.Thread(target=run, args=(w,)) for w in ("good", "bad")]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        _capture.uninstall()
    assert results == {"good": "good\n" * 50, "bad": "bad\n" * 50}


@pytest.mark.parametrize(
    "method", [m for m in ("spawn", "forkserver") if m in START_METHODS]
)
def test_a_worker_running_a_capturing_task_imports_neither_the_cli_nor_rich(method):
    """Unpickling the wrapper in a fresh worker loads only what it needs: a
    worker of ``pexen run`` must not pay for the command line's imports."""

    def probe():  # travels by value: its module is not imported in the worker
        print("probing")
        return sorted(
            name
            for name in sys.modules
            if name == "rich" or name.startswith(("rich.", "pexen.cli"))
        )

    pool = ProcessWorkerPool(1, 0, mp_context=method)
    [res] = list(Sched([_capture.CapturingTask(probe)]).run(pool))
    assert res.excinfo is None, res.excinfo
    assert (res.ret.ret, res.ret.output) == ([], "probing\n")

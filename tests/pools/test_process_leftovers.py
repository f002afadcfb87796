"""What a process-pool task leaves running: nothing once the pool stopped it
(a timeout, a forced cancel or abort) or it crashed its worker, even what
left the worker's process group; what it left on purpose at a normal end.

Each task starts three ``sleep`` (``_proc_tasks.start_escapees``): one in its
worker's process group, one in a session of its own, one re-parented to
init; only the first is reached by killing the worker's process group. They
are not below the test once their worker is gone, so the autouse leak check
cannot see them: each test checks them itself, and kills what is left.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import sys
import threading

import pytest

from pexen.sched import Sched, TaskCancelledError, TaskTimeoutError, WorkerCrashError
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests._leaks import alive
from tests.pools._process import fresh, poll_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the pool finds them in Linux's /proc"
)


@contextlib.contextmanager
def escapees(path: pathlib.Path):
    """The pids the task wrote to *path* (once it has); killed at the end."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        if not pids and path.exists():
            pids += map(int, path.read_text().split())
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def read_pids(path: pathlib.Path, into: list[int]) -> list[int]:
    assert poll_for(path.exists)
    into += map(int, path.read_text().split())
    return into


def test_a_task_past_its_timeout_leaves_none_of_its_processes(method, tmp_path):
    pidfile = tmp_path / "pids"
    task = fresh(tasks.start_escapees, timeout=0.5,
                 kwargs={"path": str(pidfile), "then": "hang"})
    with escapees(pidfile) as pids:
        (res,) = Sched([task]).run(pool=ProcessWorkerPool(mp_context=method))
        assert res.excinfo.type is TaskTimeoutError
        read_pids(pidfile, pids)
        assert poll_for(lambda: not any(alive(pid) for pid in pids)), pids


def test_a_task_cancelled_while_it_runs_leaves_none_of_its_processes(tmp_path):
    # its worker is killed alive, so even a fork that never exec'd (it carries
    # no id in /proc) is found, below it
    pidfile = tmp_path / "pids"
    task = fresh(tasks.start_escapees,
                 kwargs={"path": str(pidfile), "then": "hang", "fork": True})
    s = Sched([task])
    with escapees(pidfile) as pids:

        def cancel() -> None:
            read_pids(pidfile, pids)
            s.cancel(task)  # running: its worker is killed

        thread = threading.Thread(target=cancel)
        thread.start()
        (res,) = s.run(pool=ProcessWorkerPool())
        thread.join()
        assert res.excinfo.type is TaskCancelledError
        assert len(pids) == 4
        assert poll_for(lambda: not any(alive(pid) for pid in pids)), pids


def test_a_task_that_crashes_its_worker_leaves_none_of_its_processes(tmp_path):
    # it did not end normally, and no one is left to wait for what it started
    pidfile = tmp_path / "pids"
    task = fresh(tasks.start_escapees, kwargs={"path": str(pidfile), "then": "crash"})
    with escapees(pidfile) as pids:
        (res,) = Sched([task]).run(pool=ProcessWorkerPool())
        assert res.excinfo.type is WorkerCrashError
        read_pids(pidfile, pids)
        assert poll_for(lambda: not any(alive(pid) for pid in pids)), pids


def test_a_normal_end_leaves_what_a_task_left_running_on_purpose(tmp_path):
    pidfile = tmp_path / "pids"
    task = fresh(tasks.start_escapees, kwargs={"path": str(pidfile), "then": "return"})
    with escapees(pidfile) as pids:
        (res,) = Sched([task]).run(pool=ProcessWorkerPool())
        pids += res.ret
        assert all(alive(pid) for pid in pids)


def test_a_retired_worker_leaves_what_its_task_left_running_on_purpose(tmp_path):
    pidfile, started = tmp_path / "pids", tmp_path / "busy"
    leaves = fresh(tasks.start_escapees,
                   kwargs={"path": str(pidfile), "then": "return"})
    busy = fresh(tasks.write_pid_and_wait, kwargs={"path": str(started)})
    pool = ProcessWorkerPool(2, spare=0)
    s = Sched([leaves, busy])
    with escapees(pidfile) as pids:
        seen = []

        def retire() -> None:
            try:
                read_pids(pidfile, pids)
                assert poll_for(started.exists)
                # white box, a precondition: the worker that ran it is idle
                assert poll_for(lambda: any(not w.outstanding
                                            for w in pool._run.workers))
                s.resize(1)  # the idle worker retires, the busy one stays
                assert poll_for(lambda: len(pool._run.workers) == 1)
                seen.append([alive(pid) for pid in pids])
            finally:
                (tmp_path / "busy.go").touch()  # the busy task may end

        thread = threading.Thread(target=retire)
        thread.start()
        results = list(s.run(pool=pool))
        thread.join()
        assert not any(res.excinfo for res in results)
        assert seen == [[True, True, True]]

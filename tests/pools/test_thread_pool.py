"""ThreadWorkerPool: threads that start as work needs them, and what exit waits for.

Timeouts and abandoned threads: ``test_timeouts.py``. Tests that need the
interpreter's exit run a small script in a child interpreter.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
import threading

import pytest

from pexen.sched import PoolError, PoolWarning, Sched
from pexen.sched.pool import ThreadWorkerPool
from tests.pools._process import REPO

DEADLINE = 30.0  # seconds: only to turn a hang into a failure


def pexen_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pexen-worker-")]


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run *script* in a child interpreter (from the repository); it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


# -- threads start as work needs them ----------------------------------------------


def test_threads_start_as_work_needs_them():
    # two tasks on 10,000 workers used to start all 10,000 threads
    both_running = threading.Barrier(2, timeout=DEADLINE)
    seen = []

    def count_threads():
        both_running.wait()  # both run at once: each has a thread
        seen.append(len(pexen_threads()))
        return threading.current_thread().name

    tasks = [functools.partial(count_threads) for _ in range(2)]
    names = [res.ret for res in Sched(tasks).run(pool=ThreadWorkerPool(10_000))]
    assert seen == [2, 2]
    assert len(set(names)) == 2


def test_spares_queued_behind_busy_threads_start_no_thread():
    # with spares queued behind busy threads, no extra thread starts
    pool = ThreadWorkerPool(2, spare=3)
    names = {res.ret for res in Sched(
        [functools.partial(lambda: threading.current_thread().name) for _ in range(20)]
    ).run(pool=pool)}
    assert names <= {f"pexen-worker-{pool._pool_id}.{n}" for n in (1, 2)}


def test_a_thread_the_system_refuses_leaves_the_run_to_the_others(refuse_thread):
    refuse_thread(3)
    all_out = threading.Barrier(2, timeout=DEADLINE)  # two threads, both busy

    def where():
        all_out.wait()
        return threading.current_thread().name

    tasks = [functools.partial(where) for _ in range(6)]
    pool = ThreadWorkerPool(5, spare=0)
    with pytest.warns(PoolWarning) as caught:
        results = list(Sched(tasks).run(pool=pool))
    assert [str(w.message) for w in caught] == [
        "ThreadWorkerPool(workers=5, spare=0) could start only 2 of the 5 threads "
        "it was asked for (can't start new thread); the run goes on with 2"
    ]
    assert all(res.excinfo is None for res in results)
    assert len({res.ret for res in results}) == 2
    assert pexen_threads() == []


def test_no_thread_at_all_is_a_clear_error(refuse_thread):
    refuse_thread(1)
    s = Sched([functools.partial(str, n) for n in range(3)])
    with pytest.raises(
        PoolError,
        match=r"^ThreadWorkerPool\(workers=50000, spare='auto'\) could not start "
        r"any of the 50000 threads it was asked for: can't start new thread; ask "
        r"for fewer workers",
    ) as caught:
        list(s.run(pool=ThreadWorkerPool(50_000)))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert pexen_threads() == []
    assert len(s.skipped) == 3


# -- what the interpreter's exit waits for -----------------------------------------


def test_threads_a_task_starts_are_not_daemon_threads():
    # they used to inherit daemon=True from pexen's threads
    def start_one():
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join()
        return thread.daemon, threading.current_thread().daemon

    (res,) = Sched([start_one]).run(pool=ThreadWorkerPool())
    assert res.ret == (False, False)


# A thread that does its work only once the main thread has ended: the
# interpreter's exit waits for it if it is not a daemon thread; otherwise
# the file never appears.
LATE_WRITER = """
    import pathlib, sys, threading

    def write_late(path):
        threading.main_thread().join()
        pathlib.Path(path).write_text("written after the main thread ended")

    def start_writer(*, path):
        threading.Thread(target=write_late, args=(path,)).start()
        return "started"
"""


def test_the_interpreter_waits_for_threads_a_task_started(tmp_path):
    path = tmp_path / "late.txt"
    run_script(LATE_WRITER + """
    from pexen.sched import Sched
    from pexen.sched.meta import assign_val
    from pexen.sched.pool import ThreadWorkerPool

    assign_val(start_writer, kwargs={"path": sys.argv[1]})
    (res,) = Sched([start_writer]).run(pool=ThreadWorkerPool())
    assert res.ret == "started", res
    """, str(path))
    assert path.read_text() == "written after the main thread ended"


def test_a_run_left_unfinished_at_exit_lets_its_running_task_end(tmp_path):
    # the run's generator is never finished: the pool's exit hook stops it,
    # waiting for the task that runs (which ends once the main thread has)
    path = tmp_path / "late.txt"
    run_script(LATE_WRITER + """
    from pexen.sched import Sched
    from pexen.sched.meta import assign_val
    from pexen.sched.pool import ThreadWorkerPool

    def first():
        return "first"

    def write_late_here(*, path):
        write_late(path)

    assign_val(first, priority=-1)
    assign_val(write_late_here, kwargs={"path": sys.argv[1]})
    results = Sched([first, write_late_here]).run(pool=ThreadWorkerPool(2, 0))
    assert next(results).ret == "first"
    """, str(path))
    assert path.read_text() == "written after the main thread ended"

"""ProcessWorkerPool: shutdown.

Split from the pool's test file along its section banners; shared helpers
in ``tests/pools/_process.py``, the start-method fixture in tests/conftest.py.
"""


from __future__ import annotations

import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from pexen.sched import (
    Sched,
    TaskRes,
)
from pexen.sched._pools.process import default_start_method
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests._leaks import alive, below, kill_all, still_running
from tests._pools import START_METHODS
from tests.pools._process import (
    REPO,
    exists,
    fresh,
    poll_for,
    with_kwargs,
)

# -- shutdown ----------------------------------------------------------------


def _worker_pids(tmp_path, n):
    flags = [str(tmp_path / f"w{i}") for i in range(n)]
    work = [with_kwargs(tasks.write_pid_and_wait, path=flag) for flag in flags]
    return flags, work


@pytest.mark.parametrize("how", ["break", "close", "throw", "raise"])
def test_leaving_early_leaves_no_process(tmp_path, method, how):
    flags, blockers = _worker_pids(tmp_path, 2)
    quick = fresh(tasks.getpid)
    queued = [fresh(tasks.getpid) for _ in range(3)]
    s = Sched([quick, *blockers, *queued])
    pool = ProcessWorkerPool(3, 2, mp_context=method)
    pids = []

    def note_pids(res):
        assert res.task is quick
        assert poll_for(lambda: all(os.path.exists(f) for f in flags))
        pids.extend([res.ret] + [int(pathlib.Path(f).read_text()) for f in flags])

    if how == "break":
        for res in s.run(pool=pool):
            note_pids(res)
            break
    elif how == "raise":  # the loop's frame drops the generator, which closes
        with pytest.raises(ZeroDivisionError):
            for res in s.run(pool=pool):
                note_pids(res)
                raise ZeroDivisionError("in the caller's loop")
    else:
        gen = s.run(pool=pool)
        note_pids(next(gen))
        if how == "close":
            gen.close()
        else:
            with pytest.raises(ZeroDivisionError):
                gen.throw(ZeroDivisionError("in the caller's loop"))
    # the blockers were running: they were killed, not waited for
    assert not [pid for pid in pids if exists(pid)]
    assert not [t for t in threading.enumerate() if t.name.startswith("pexen-")]
    assert set(s.skipped) >= set(blockers)


CTRL_C_SCRIPT = """
import functools, os, pathlib, sys
from pexen.sched import Sched
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks

def main():
    here = pathlib.Path(sys.argv[2])
    work = []
    for n in range(4):
        task = functools.partial(tasks.write_pid_and_wait)
        assign_val(task, kwargs={"path": str(here / f"w{n}")})
        work.append(task)
    pool = ProcessWorkerPool(2, 1, mp_context=sys.argv[1])
    try:
        for res in Sched(work).run(pool=pool):
            print("unexpected result", res, flush=True)
    except KeyboardInterrupt:
        from tests._leaks import cpython_helpers, descendants
        left = list(descendants().items())  # grandchildren too
        helpers = cpython_helpers()
        (here / "report").write_text(repr({"left": left, "helpers": helpers}))
        raise

if __name__ == "__main__":
    main()
"""


# ORPHANS_END: once the script has exited, its workers and CPython's helpers
# are orphans, reparented to init; that they end is what pexen promises, and
# their zombies are init's to reap, when it gets round to it (a container's
# init may take seconds). So these checks wait until they are not alive, not
# until /proc forgets them.


def assert_no_shared_memory_left(pid: int, stderr: str) -> None:
    """Nothing of process *pid* is left in /dev/shm, and nothing leaked.

    /dev/shm is the whole machine's, so only names that are *pid*'s count:
    multiprocessing's heap arenas (``pym-<pid>-...``). Its semaphores have
    random names; the resource tracker, whose stderr is *stderr*, warns of
    any left behind when the process ends.
    """
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        names = []
    assert not [name for name in names if name.startswith(f"pym-{pid}-")]
    assert "leaked" not in stderr, stderr


def test_ctrl_c_on_a_real_process_leaves_nothing(tmp_path, method):
    script = tmp_path / "suite.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), method, str(tmp_path)],
        cwd=REPO,
        start_new_session=True,  # its own process group, like a terminal's
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        flags = [tmp_path / f"w{n}" for n in range(2)]  # both workers are busy
        assert poll_for(lambda: all(f.exists() for f in flags))
        pids = [int(f.read_text()) for f in flags]
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGINT, err  # died of the KeyboardInterrupt
    assert b"KeyboardInterrupt" in err
    assert b"unexpected result" not in out
    report = eval((tmp_path / "report").read_text())
    assert report["left"] == []  # no worker, no zombie, once the pool stopped
    # the workers are gone, and so are CPython's helpers once their user exits
    # (ended: orphans now, whose zombies are init's to reap, ORPHANS_END)
    assert poll_for(lambda: not any(alive(p) for p in pids + report["helpers"]))
    assert_no_shared_memory_left(proc.pid, err.decode(errors="replace"))


NORMAL_END_SCRIPT = """
import functools, os, pathlib, sys
from pexen.sched import Sched
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests._leaks import cpython_helpers, descendants

if __name__ == "__main__":
    pool = ProcessWorkerPool(2, 1, mp_context=sys.argv[1])
    pids = set()
    for _ in range(2):  # one pool, two runs
        work = [functools.partial(tasks.getpid) for _ in range(6)]
        pids |= {res.ret for res in Sched(work).run(pool=pool)}
    report = {"workers": sorted(pids), "left": list(descendants().items()),
              "helpers": cpython_helpers(), "pid": os.getpid()}
    pathlib.Path(sys.argv[2]).write_text(repr(report))
"""


def test_a_normal_end_in_a_real_process_leaves_nothing(tmp_path, method):
    script = tmp_path / "normal.py"
    script.write_text(NORMAL_END_SCRIPT)
    report_path = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, str(script), method, str(report_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = eval(report_path.read_text())
    assert report["workers"] and os.getpid() not in report["workers"]
    assert report["left"] == []  # after the runs: no worker, no zombie
    assert not any(alive(pid) for pid in report["workers"])
    # CPython's helpers (the forkserver, the resource tracker) end with it
    # (ended: orphans now, whose zombies are init's to reap, ORPHANS_END)
    assert poll_for(lambda: not any(alive(p) for p in report["helpers"]))
    assert_no_shared_memory_left(report["pid"], proc.stderr)


SUSPENDED_SCRIPT = """
import functools, sys
from pexen.sched import Sched
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks

if __name__ == "__main__":
    work = [functools.partial(tasks.getpid) for _ in range(10)]
    gen = Sched(work).run(pool=ProcessWorkerPool(2, mp_context=sys.argv[1]))
    print(next(gen).ret, flush=True)
    # the interpreter exits with the run suspended in a global
"""


def test_exiting_with_a_run_suspended_does_not_hang(tmp_path, method):
    # multiprocessing's exit hook joins worker processes, which would wait for
    # jobs for ever: the pool's own hook stops them first
    script = tmp_path / "suspended.py"
    script.write_text(SUSPENDED_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), method],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout)
    assert poll_for(lambda: not alive(pid))


KILLED_PARENT_SCRIPT = """
import functools, pathlib, sys
from pexen.sched import Sched
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks

if __name__ == "__main__":
    here = pathlib.Path(sys.argv[2])
    work = []
    for n in range(2):
        task = functools.partial(tasks.write_pid_and_wait)
        assign_val(task, kwargs={"path": str(here / f"w{n}")})
        work.append(task)
    list(Sched(work).run(pool=ProcessWorkerPool(2, 0, mp_context=sys.argv[1])))
"""


def test_workers_die_with_a_killed_parent(tmp_path, method):
    if not sys.platform.startswith("linux"):
        pytest.skip("workers follow their parent through SIGIO on Linux")
    script = tmp_path / "parent.py"
    script.write_text(KILLED_PARENT_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), method, str(tmp_path)],
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        flags = [tmp_path / f"w{n}" for n in range(2)]
        assert poll_for(lambda: all(f.exists() for f in flags))
        pids = [int(f.read_text()) for f in flags]
        proc.kill()  # SIGKILL: no finally, no atexit
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert poll_for(lambda: not any(alive(pid) for pid in pids)), "orphaned workers"


KILLED_PARENT_WITH_SLEEPS = """
import functools, pathlib, sys
from pexen.sched import Sched
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks

here = pathlib.Path(sys.argv[2])
work = []
for n in range(2):
    task = functools.partial(tasks.start_sleep_and_wait)
    assign_val(task, kwargs={"path": str(here / f"w{n}")})
    work.append(task)
list(Sched(work).run(pool=ProcessWorkerPool(2, 0, mp_context=sys.argv[1])))
"""


# SIGKILL under every start method; SIGTERM, which ends a program without a
# handler for it just as well, under the default one
_KILLS = [(method, signal.SIGKILL) for method in START_METHODS] + [
    (default_start_method(), signal.SIGTERM)
]


@pytest.mark.parametrize(("method", "sig"), _KILLS,
                         ids=[f"{m}-{s.name}" for m, s in _KILLS])
def test_a_killed_parent_takes_its_tasks_subprocesses_along(tmp_path, method, sig):
    # each worker's process group dies with the parent: the worker, and the
    # ``sleep`` its task started, which would run on under init otherwise
    if not sys.platform.startswith("linux"):
        pytest.skip("workers follow their parent through SIGIO on Linux")
    script = tmp_path / "parent.py"
    script.write_text(KILLED_PARENT_WITH_SLEEPS)
    proc = subprocess.Popen(
        [sys.executable, str(script), method, str(tmp_path)],
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    started: dict[int, int] = {}
    try:
        flags = [tmp_path / f"w{n}" for n in range(2)]
        assert poll_for(lambda: all(f.exists() for f in flags))
        started = below(proc.pid)  # workers, sleeps, CPython's helpers
        sleeps = [int(f.read_text().split()[1]) for f in flags]
        assert set(sleeps) <= set(started)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == -sig
        assert poll_for(lambda: not still_running(started)), still_running(started)
    finally:
        kill_all(started)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_normal_end_leaves_a_tasks_background_process_alone(method):
    (res,) = Sched([tasks.start_background_sleep]).run(
        pool=ProcessWorkerPool(mp_context=method)
    )
    sleep = res.ret
    try:
        assert sleep not in below(os.getpid())  # its worker is gone
        assert alive(sleep)
    finally:
        os.kill(sleep, signal.SIGKILL)


def test_results_pickle_like_task_res(method):
    (res,) = Sched([tasks.raise_value_error]).run(
        pool=ProcessWorkerPool(mp_context=method)
    )
    again = pickle.loads(pickle.dumps(TaskRes(None, res.shared, res.ret, None)))
    assert again == TaskRes(None, {}, None, None)
    assert isinstance(res.excinfo.val, ValueError)


def test_script_example_with_processes_prints_in_order(tmp_path, method):
    # a hello-world script: what the worker prints comes before the result line
    script = tmp_path / "hello.py"
    script.write_text(
        textwrap.dedent(f"""
        from pexen.sched import Sched
        from pexen.sched.pool import ProcessWorkerPool

        def greet():
            print("hello from the worker")
            return "done"

        if __name__ == "__main__":
            pool = ProcessWorkerPool(mp_context={method!r})
            for res in Sched([greet]).run(pool=pool):
                print("result:", res.ret)
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from the worker\nresult: done\n"

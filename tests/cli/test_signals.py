"""``pexen run`` as a real process stopped by signals: SIGTERM (how CI systems
cancel a job) as Ctrl-C, what abandoned tasks started, tasks that overran
their timeout in threads, and ``kill -9``, after which the watchdog kills what
the run started, and nothing else."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import JUnitXml, Skipped
from rich.console import Console

from pexen.cli._signals import announced_interrupts, woken_by_signals
from tests._leaks import alive, below, kill_all, of_run, start_time, still_running
from tests.cli._cli import pexen_env, poll_for, write_package, write_script

# The child each script starts: it waits for the release file, which a test
# makes only to let the run end (the deadline only keeps a broken test from
# leaving it behind for ever).
BLOCKER = """
    import os, sys, time
    deadline = time.monotonic() + 60
    while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
        time.sleep(0.01)
"""


class Run:
    """A ``pexen run`` in its own session, its output in ``out.txt``."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.dir = tmp_path
        self.log = tmp_path / "out.txt"
        self.junit = tmp_path / "junit.xml"
        self._out = open(self.log, "w")  # noqa: SIM115 - closed by wait()
        junit = ("--junit-xml", str(self.junit))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pexen", "run", *args, *junit],
            cwd=tmp_path,
            env=pexen_env(PEXEN_TEST_DIR=str(tmp_path)),
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a CI job has
        )

    def text(self) -> str:
        return self.log.read_text()

    def shows(self, line: str) -> bool:
        """Wait until the output holds *line*; whether it does."""
        return poll_for(lambda: line in self.text())

    def wait(self) -> tuple[int, str]:
        try:
            status = self.proc.wait(timeout=60)
        finally:
            self._out.close()
        return status, self.text()

    def end(self) -> None:
        """Let everything go (a failed test's cleanup): release, kill, reap."""
        (self.dir / "release").touch()
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


def _script_suite(tmp_path: Path, names: tuple[str, ...] = ("a", "b")) -> Path:
    """Executables that start a child waiting for ``release``, and say so."""
    blocker = tmp_path / "blocker.py"
    blocker.write_text(textwrap.dedent(BLOCKER))
    here, release = str(tmp_path), str(tmp_path / "release")
    for name in names:
        write_script(
            tmp_path / "jobs" / f"{name}.sh",
            f'"{sys.executable}" "{blocker}" "{release}" &\n'
            f'echo "$$ $!" > "{here}/{name}.tmp"\n'
            f'mv "{here}/{name}.tmp" "{here}/{name}.started"\n'
            "wait",
        )
    return tmp_path / "jobs"


def _started_pids(tmp_path: Path, names: tuple[str, ...] = ("a", "b")) -> list[int]:
    """Wait for every script to start; the pids of the scripts and their children."""
    markers = [tmp_path / f"{name}.started" for name in names]
    assert poll_for(lambda: all(m.exists() for m in markers)), "the scripts never ran"
    return [int(pid) for m in markers for pid in m.read_text().split()]


@contextlib.contextmanager
def _reaped(run: Run, pids: list[int] | None = None):
    """Whatever the test finds, leave no run, script or child behind."""
    try:
        yield
    finally:
        for pid in pids or ():
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if run.proc.returncode is None:
            run.end()


def _check_all_stopped(run: Run, text: str, reason: str) -> None:
    """Both scripts were stopped while they ran, and reported as skipped."""
    flat = " ".join(text.split())
    stopped = f"the run was aborted: {reason}; task "
    for name in ("a", "b"):
        assert f"SKIPPED jobs/{name}.sh: {stopped}'jobs/{name}.sh' was cancelled " \
            "while it ran" in flat, text
    assert "=== interrupted: 0 passed, 2 skipped in " in text
    assert f"JUnit XML report written to {run.junit}" in text
    (suite,) = list(JUnitXml.fromfile(str(run.junit)))
    assert (suite.tests, suite.failures, suite.skipped) == (2, 0, 2)
    for case in suite:
        (result,) = case.result
        assert isinstance(result, Skipped) and result.message.startswith(stopped)


def test_sigterm_aborts_the_run_like_ctrl_c(tmp_path):
    names = ("a", "b", "c")
    run = Run(tmp_path, str(_script_suite(tmp_path, names)), "-j", "2")
    pids: list[int] = []
    with _reaped(run, pids):
        pids += _started_pids(tmp_path)  # a and b run; c waits its turn
        run.proc.send_signal(signal.SIGTERM)
        assert run.shows(
            "interrupted by SIGTERM: no new task starts; waiting for the running "
            "ones (Ctrl-C or SIGTERM again to stop them)"
        ), run.text()
        assert run.proc.poll() is None  # waiting for the running scripts
        assert all(alive(pid) for pid in pids)
        (tmp_path / "release").touch()
        status, text = run.wait()
        assert status == 128 + signal.SIGTERM == 143, text
        # the running ones finished and count; c never started
        assert "=== interrupted: 2 passed, 1 skipped in " in text
        flat = " ".join(text.split())
        assert "SKIPPED jobs/c.sh: " in flat
        assert "the run was aborted: interrupted by SIGTERM" in flat
        assert not (tmp_path / "c.started").exists()
        (suite,) = list(JUnitXml.fromfile(str(run.junit)))
        assert (suite.tests, suite.failures, suite.skipped) == (3, 0, 1)
        assert poll_for(lambda: not any(alive(pid) for pid in pids), timeout=10)


@pytest.mark.parametrize(
    ("sig", "announced", "expected_status", "reason"),
    [
        (signal.SIGTERM, "interrupted by SIGTERM: no new task starts", 143,
         "interrupted by SIGTERM"),
        (signal.SIGINT, "interrupted: no new task starts", 130, "interrupted"),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_second_signal_kills_what_the_abandoned_scripts_started(
    tmp_path, sig, announced, expected_status, reason
):
    run = Run(tmp_path, str(_script_suite(tmp_path)), "-j", "2")
    pids: list[int] = []
    with _reaped(run, pids):
        pids += _started_pids(tmp_path)
        run.proc.send_signal(sig)
        assert run.shows(announced), run.text()
        run.proc.send_signal(sig)
        status, text = run.wait()
        assert status == expected_status, text
        assert "interrupted again: stopping the running tasks" in text
        _check_all_stopped(run, text, reason)
        # the scripts and the children they started are gone, not orphaned
        assert poll_for(lambda: not any(alive(pid) for pid in pids), timeout=10), [
            pid for pid in pids if alive(pid)
        ]
    assert not (tmp_path / "release").exists()


OVERRUN = """
    import os
    import time

    from pexen.sched.meta import func_meta

    @func_meta(timeout=0.1)
    def test_overruns():
        # runs on, past its timeout, until the test releases it
        release = os.path.join(os.environ["PEXEN_TEST_DIR"], "release")
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)

    @func_meta
    def test_quick():
        pass
"""

def test_a_timed_out_thread_is_abandoned_and_named(tmp_path):
    # the run used to wait, at its end, for the thread to return
    write_package(tmp_path, "overrun", {"test_overrun": OVERRUN})
    run = Run(tmp_path, "overrun", "-j", "2")
    with _reaped(run):
        status, text = run.wait()
    assert status == 1, text
    assert "=== 1 passed, 1 failed in " in text
    assert "abandons a thread still running a task that overran its timeout: " \
        "task 'overrun/test_overrun/test_overruns'" in text.replace("\n", " ")
    assert not (tmp_path / "release").exists()  # it never waited for it


def _started(tmp_path: Path) -> dict[int, int]:
    """Wait for ``py.started``; the processes it names that run, with their
    start times."""
    marker = tmp_path / "py.started"
    assert poll_for(marker.exists), "the task never ran"
    pids = map(int, marker.read_text().split())
    return {pid: start for pid in pids if (start := start_time(pid)) is not None}


def _none_of_the_run_left(run: Run, procs: dict[int, int]) -> None:
    """Nothing that carries the run's id in its environment is left running,
    nor any of *procs* (pid -> start time)."""
    assert poll_for(lambda: not of_run(run.proc.pid), timeout=10), (
        of_run(run.proc.pid)
    )
    assert not still_running(procs)


@contextlib.contextmanager
def _cleaned_up(run: Run) -> Iterator[dict[int, int]]:
    """Yield a dict for the run's processes (pid -> start time); whatever the
    test finds, leave none of them, and no run, behind."""
    procs: dict[int, int] = {}
    try:
        yield procs
    finally:
        kill_all(procs)
        if run.proc.returncode is None:
            run.end()


# Past its timeout while it waits for two sleeps it started, one of them in a
# session of its own (out of its process group's reach).
OVERRUN_IN_SLEEPS = """
    import os
    import subprocess

    from pexen.sched.meta import func_meta

    @func_meta(timeout=0.5)
    def test_overruns():
        here = os.environ["PEXEN_TEST_DIR"]
        plain = subprocess.Popen(["sleep", "300"])
        detached = subprocess.Popen(["sleep", "300"], start_new_session=True)
        with open(os.path.join(here, "py.tmp"), "w") as f:
            f.write(f"{plain.pid} {detached.pid}")
        os.replace(os.path.join(here, "py.tmp"), os.path.join(here, "py.started"))
        plain.wait()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_what_an_abandoned_thread_started_does_not_outlive_the_run(tmp_path):
    # the thread is abandoned at the end of the run; its sleeps were left running
    write_package(tmp_path, "overrun", {"test_overrun": OVERRUN_IN_SLEEPS})
    run = Run(tmp_path, "overrun", "-j", "2")
    with _cleaned_up(run) as procs:
        status, text = run.wait()
        assert status == 1, text
        assert "abandons a thread still running a task that overran its timeout" \
            in " ".join(text.split())
        procs.update(_started(tmp_path))  # they started well before the timeout
        _none_of_the_run_left(run, procs)


# Starts a sleep in a session of its own, then waits for the test's release.
DETACHES_A_SLEEP = """
    import os
    import subprocess
    import time

    from pexen.sched.meta import func_meta

    @func_meta
    def test_detaches_a_sleep():
        here = os.environ["PEXEN_TEST_DIR"]
        child = subprocess.Popen(["sleep", "300"], start_new_session=True)
        with open(os.path.join(here, "py.tmp"), "w") as f:
            f.write(str(child.pid))
        os.replace(os.path.join(here, "py.tmp"), os.path.join(here, "py.started"))
        release = os.path.join(here, "release")
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
@pytest.mark.parametrize(
    ("pool", "n_signals"), [("thread", 1), ("process", 1), ("process", 2)]
)
def test_an_interrupted_run_kills_what_its_tasks_left_running(
    tmp_path, pool, n_signals
):
    # the sleep left the task's process group and session: on the process
    # pool, the worker's end does not take it along either
    write_package(tmp_path, "detach", {"test_detach": DETACHES_A_SLEEP})
    run = Run(tmp_path, "detach", "--pool", pool, "-j", "1")
    with _cleaned_up(run) as procs:
        procs.update(_started(tmp_path))
        run.proc.send_signal(signal.SIGINT)
        assert run.shows("interrupted: no new task starts"), run.text()
        if n_signals == 2:
            run.proc.send_signal(signal.SIGINT)  # stops the task
        else:
            (tmp_path / "release").touch()  # the task ends, and so does the run
        status, text = run.wait()
        assert status == 130, text
        assert "=== interrupted: " in text
        _none_of_the_run_left(run, procs)


# The kernel hands a signal sent to a process to any thread of it that does
# not block it: this task makes it land on its own thread (a worker's).
SIGNAL_LANDS_HERE = """
    import os
    import signal
    import sys
    import threading
    import time

    from pexen.sched.meta import func_meta

    def _main_waits_for_the_pool():
        frame = sys._current_frames()[threading.main_thread().ident]
        return frame.f_code.co_filename.endswith(os.path.join("_pools", "thread.py")) \\
            and frame.f_code.co_name in ("wait", "_next")

    @func_meta
    def test_takes_the_signal():
        deadline = time.monotonic() + 60
        while not _main_waits_for_the_pool() and time.monotonic() < deadline:
            time.sleep(0.001)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        release = os.path.join(os.environ["PEXEN_TEST_DIR"], "release")
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
"""


def test_a_signal_taken_by_a_worker_thread_reaches_the_run(tmp_path):
    # CPython runs the handler in the main thread, but a main thread waiting
    # for the pool is woken only by a signal it takes itself: the run went on
    # as if the signal had never come (or took it in at a random later point)
    write_package(tmp_path, "lands", {"test_lands": SIGNAL_LANDS_HERE})
    run = Run(tmp_path, "lands", "-j", "1")
    with _cleaned_up(run):
        assert run.shows("interrupted by SIGTERM: no new task starts"), run.text()
        (tmp_path / "release").touch()
        status, text = run.wait()
        assert status == 143, text
        assert "=== interrupted: 1 passed in " in text


@pytest.mark.skipif(
    signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL,
    reason="SIGTERM is handled here already",
)
def test_announced_interrupts_handles_sigterm_and_gives_the_handlers_back():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    console = Console(record=True, width=200)
    with announced_interrupts(console) as interrupts:  # no run: it interrupts
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # else we die
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        assert (interrupts.signum, interrupts.abandoned) == (signal.SIGTERM, False)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert (interrupts.signum, interrupts.abandoned) == (signal.SIGTERM, True)
        signal.raise_signal(signal.SIGTERM)  # ignored: the run is ending already
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert console.export_text().splitlines() == [
        "interrupted by SIGTERM: no new task starts; waiting for the running ones "
        "(Ctrl-C or SIGTERM again to stop them)",
        "interrupted again: stopping the running tasks",
    ]


# A Python test that starts ``sleep 300`` and waits for it: only a killer ends it.
STARTS_A_SLEEP = """
    import os
    import subprocess

    from pexen.sched.meta import func_meta

    @func_meta
    def test_starts_a_sleep():
        here = os.environ["PEXEN_TEST_DIR"]
        child = subprocess.Popen(["sleep", "300"])
        with open(os.path.join(here, "py.tmp"), "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        os.replace(os.path.join(here, "py.tmp"), os.path.join(here, "py.started"))
        child.wait()
"""


def _sleeps_suite(tmp_path: Path, kind: str) -> tuple[str, tuple[str, ...]]:
    """A suite whose tasks start ``sleep 300``: its path and its markers' names.

    Executables: one starts two in the background (``&``), one of them in a
    session of its own, and waits; one becomes it (``exec``). Python: a
    test that starts it as a subprocess.
    """
    if kind == "python":
        write_package(tmp_path, "sleeps", {"test_sleeps": STARTS_A_SLEEP})
        return "sleeps", ("py",)
    here = str(tmp_path)
    write_script(
        tmp_path / "jobs" / "background.sh",
        # the second sleep leaves the process group and the session
        "sleep 300 &\none=$!\nsetsid sleep 300 &\n"
        f'echo "$$ $one $!" > "{here}/bg.tmp"\n'
        f'mv "{here}/bg.tmp" "{here}/bg.started"\nwait',
    )
    write_script(
        tmp_path / "jobs" / "plain.sh",
        f'echo "$$" > "{here}/plain.tmp"\n'
        f'mv "{here}/plain.tmp" "{here}/plain.started"\nexec sleep 300',
    )
    return "jobs", ("bg", "plain")


def _sleeping(tmp_path: Path, names: tuple[str, ...]) -> list[int]:
    """Wait until every task runs its ``sleep``; the pids the tasks told."""
    pids = _started_pids(tmp_path, names)
    if "plain" in names:  # its shell is to become the sleep
        plain = int((tmp_path / "plain.started").read_text())
        assert poll_for(lambda: _name(plain) == "sleep"), _name(plain)
    return pids


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "(gone)"


def test_a_second_ctrl_c_kills_what_an_abandoned_python_task_started(tmp_path):
    # the thread pool: a Python task's sleep is ours to kill, as a script's is
    path, names = _sleeps_suite(tmp_path, "python")
    run = Run(tmp_path, path, "-j", "2")
    started: dict[int, int] = {}
    try:
        told = _sleeping(tmp_path, names)
        started = below(run.proc.pid)  # the tasks' processes, the watchdog
        assert set(told) - {run.proc.pid} <= set(started)
        run.proc.send_signal(signal.SIGINT)
        assert run.shows("interrupted: no new task starts"), run.text()
        run.proc.send_signal(signal.SIGINT)
        status, text = run.wait()
        assert status == 130, text
        assert "interrupted again: stopping the running tasks" in text
        assert poll_for(lambda: not still_running(started), timeout=10), (
            still_running(started)
        )
    finally:
        kill_all(started)
        if run.proc.returncode is None:
            run.end()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
@pytest.mark.parametrize("pool", ["thread", "process"])
@pytest.mark.parametrize("kind", ["executables", "python"])
def test_kill_9_of_pexen_run_leaves_nothing_it_started(tmp_path, kind, pool):
    path, names = _sleeps_suite(tmp_path, kind)
    run = Run(tmp_path, path, "-j", "2", "--pool", pool)
    started: dict[int, int] = {}
    try:
        told = _sleeping(tmp_path, names)
        # the tasks' processes; workers, CPython's helpers and the watchdog too
        started = below(run.proc.pid)
        assert set(told) - {run.proc.pid} <= set(started)
        run.proc.kill()
        status, _ = run.wait()
        assert status == -signal.SIGKILL
        assert poll_for(lambda: not still_running(started), timeout=10), (
            still_running(started)
        )
        if pool == "thread":  # the watchdog alone could do it, and says so
            assert "died mid-run; its watchdog killed the" in run.text()
    finally:
        kill_all(started)
        if run.proc.returncode is None:
            run.end()


NEXT_COMMAND = "import pathlib; pathlib.Path('next.ran').touch()"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_kill_9_of_pexen_run_spares_its_shell_and_pipeline(tmp_path):
    # pexen, tee and the shell share a process group, and tee started after
    # pexen: none of that makes tee, the shell or its next command the run's
    path, names = _sleeps_suite(tmp_path, "executables")
    (tmp_path / "next.py").write_text(NEXT_COMMAND)
    py = sys.executable
    line = (
        f'"{py}" -m pexen run {path} -j 2 | tee log.txt; echo "$?" > tee.status; '
        f'"{py}" next.py'
    )
    with open(tmp_path / "err.txt", "w") as err:
        shell = subprocess.Popen(
            ["sh", "-c", line],
            cwd=tmp_path,
            env=pexen_env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # the shell leads the group, as a CI job's
        )
    started: dict[int, int] = {}
    neighbours: dict[int, int] = {}
    try:
        _sleeping(tmp_path, names)
        script = int((tmp_path / "bg.started").read_text().split()[0])
        runner = _parent(script)  # the thread pool runs scripts as its children
        started = below(runner)
        neighbours = {pid: start for pid, start in below(shell.pid).items()
                      if pid != runner and pid not in started}
        assert [_name(pid) for pid in neighbours] == ["tee"]
        os.kill(runner, signal.SIGKILL)
        assert poll_for(lambda: not still_running(started), timeout=10), (
            still_running(started)
        )
        assert shell.wait(timeout=30) == 0
        assert (tmp_path / "tee.status").read_text() == "0\n"  # not killed
        assert (tmp_path / "next.ran").exists()
        assert "collected 2 tasks" in (tmp_path / "log.txt").read_text()
        assert "its watchdog killed the" in (tmp_path / "err.txt").read_text()
    finally:
        kill_all(started)
        kill_all(neighbours)
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def test_a_signal_in_any_thread_wakes_and_the_wakeup_fd_is_given_back():
    woken = threading.Event()
    previous_handler = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        with woken_by_signals(woken.set):
            ours = signal.set_wakeup_fd(-1)
            signal.set_wakeup_fd(ours)
            def take_it():  # the kernel's choice, made here: not the main thread
                signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

            other = threading.Thread(target=take_it)
            other.start()
            other.join()
            assert woken.wait(30)
        assert ours != -1
        assert signal.set_wakeup_fd(-1) == -1  # the one before: none
    finally:
        signal.signal(signal.SIGUSR1, previous_handler)

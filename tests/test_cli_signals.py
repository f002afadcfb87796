"""``pexen run`` as a real process stopped by signals: SIGTERM (how CI systems
cancel a job) as Ctrl-C, what abandoned executables started, and tasks that
overran their timeout in threads."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from junitparser import JUnitXml, Skipped
from rich.console import Console

from pexen.cli._run import announced_interrupts
from tests._cli import pexen_env, poll_for, write_package, write_script
from tests._leaks import alive

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


def _check_all_skipped(run: Run, text: str) -> None:
    stopped = "handed to the pool, but the run was stopped before its result came"
    assert f"SKIPPED jobs/a.sh: {stopped}" in text
    assert f"SKIPPED jobs/b.sh: {stopped}" in text
    assert "=== interrupted: 0 passed, 2 skipped in " in text
    assert f"JUnit XML report written to {run.junit}" in text
    (suite,) = list(JUnitXml.fromfile(str(run.junit)))
    assert (suite.tests, suite.failures, suite.skipped) == (2, 0, 2)
    for case in suite:
        (result,) = case.result
        assert isinstance(result, Skipped) and result.message.startswith(stopped)


def test_sigterm_stops_the_run_like_ctrl_c(tmp_path):
    run = Run(tmp_path, str(_script_suite(tmp_path)), "-j", "2")
    pids: list[int] = []
    with _reaped(run, pids):
        pids += _started_pids(tmp_path)
        run.proc.send_signal(signal.SIGTERM)
        assert run.shows(
            "interrupted by SIGTERM: stopping the workers (Ctrl-C or SIGTERM again "
            "to abandon the running tasks)"
        ), run.text()
        assert run.proc.poll() is None  # waiting for the running scripts
        assert all(alive(pid) for pid in pids)
        (tmp_path / "release").touch()
        status, text = run.wait()
        assert status == 128 + signal.SIGTERM == 143, text
        _check_all_skipped(run, text)
        assert poll_for(lambda: not any(alive(pid) for pid in pids), timeout=10)


@pytest.mark.parametrize(
    ("sig", "announced", "expected_status"),
    [
        (signal.SIGTERM, "interrupted by SIGTERM: stopping the workers", 143),
        (signal.SIGINT, "interrupted: stopping the workers", 130),
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_second_signal_kills_what_the_abandoned_scripts_started(
    tmp_path, sig, announced, expected_status
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
        assert "interrupted again: abandoning the running tasks" in text
        _check_all_skipped(run, text)
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


@pytest.mark.skipif(
    signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL,
    reason="SIGTERM is handled here already",
)
def test_announced_interrupts_handles_sigterm_and_gives_the_handlers_back():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    console = Console(record=True, width=200)
    with announced_interrupts(console) as interrupts:
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
        "interrupted by SIGTERM: stopping the workers (Ctrl-C or SIGTERM again to "
        "abandon the running tasks)",
        "interrupted again: abandoning the running tasks",
    ]

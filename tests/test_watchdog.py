"""The watchdog (``pexen._watchdog``) and the process table (``pexen._proctree``),
with real processes: what marks a process as a run's, what a scan keeps,
what is never killed, and a program using ``guard()`` killed by SIGKILL.
``pexen run`` killed by a signal: tests/cli/test_signals.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pexen import PexenWarning
from pexen._proctree import read_proc
from pexen._watchdog import ENV, carries, guard, leftovers, scan
from tests._leaks import alive, below, cpython_helpers, kill_all, still_running
from tests.cli._cli import REPO, poll_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the watchdog reads Linux's /proc"
)


def _sleep(**kwargs) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "300"], **kwargs)


def _end(*procs: subprocess.Popen) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_process_carries_the_ids_of_the_runs_it_belongs_to():
    nested = _sleep(env={**os.environ, ENV: "1-outer 2-inner"})
    plain = _sleep(env={k: v for k, v in os.environ.items() if k != ENV})
    try:
        assert poll_for(lambda: carries(nested.pid, "2-inner"))  # once it has exec'd
        assert carries(nested.pid, "1-outer")
        assert not carries(nested.pid, "2-in")  # whole ids only
        assert not carries(plain.pid, "1-outer")
        assert not carries(999_999_999, "1-outer")  # no such process
    finally:
        _end(nested, plain)


def test_a_scan_keeps_what_it_saw_below_the_runner_until_it_ends(tmp_path):
    # a shell's background child outlives the shell and leaves our tree: the
    # watchdog still knows it, without any id in its environment
    pid_file = tmp_path / "child.pid"
    shell = subprocess.Popen(
        ["sh", "-c", f'sleep 300 & echo $! > "{pid_file}"; read line'],
        stdin=subprocess.PIPE,
        env={"PATH": os.environ["PATH"]},
    )
    child = None
    try:
        assert poll_for(lambda: pid_file.exists() and pid_file.read_text())
        child = int(pid_file.read_text())
        seen: dict[int, int] = {}
        scan(os.getpid(), seen)
        assert {shell.pid, child} <= set(seen)
        shell.communicate(b"\n")  # the shell ends; its child goes to init
        assert child not in below(os.getpid())
        scan(os.getpid(), seen)
        assert child in seen and shell.pid not in seen
        victims, helpers = leftovers("no-such-run", seen)
        assert child in victims
        assert set(cpython_helpers()) <= helpers and not helpers & victims
    finally:
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)
        if shell.poll() is None:
            _end(shell)


def test_leftovers_spare_cpython_helpers_and_reused_pids():
    import multiprocessing.forkserver

    multiprocessing.forkserver.ensure_running()
    (helper, *_) = cpython_helpers()
    sleeper = _sleep()
    try:
        helper_start = read_proc(helper).start
        seen = {helper: helper_start, sleeper.pid: read_proc(sleeper.pid).start + 1}
        victims, helpers = leftovers("no-such-run", seen)
        assert helpers == {helper}  # its descendants die, not it
        assert sleeper.pid not in victims  # the pid names another process now
    finally:
        _end(sleeper)


def test_leftovers_do_not_spare_a_worker_the_forkserver_forked():
    """A process the forkserver forked has the forkserver's command line:
    it is no helper of CPython's, and is killed like any other."""
    import multiprocessing
    import multiprocessing.forkserver

    worker = multiprocessing.get_context("forkserver").Process(
        target=time.sleep, args=(300,))
    worker.start()
    try:
        server = multiprocessing.forkserver._forkserver._forkserver_pid
        assert read_proc(worker.pid).ppid == server
        victims, helpers = leftovers("no-such-run", {}, below=os.getpid())
        assert worker.pid in victims
        assert server in helpers and server not in victims
    finally:
        worker.kill()
        worker.join()


SWEPT = """
    import json, multiprocessing.forkserver, os, pathlib, subprocess, sys
    from pexen._watchdog import guard

    here = pathlib.Path(sys.argv[1])
    with guard() as run:
        multiprocessing.forkserver.ensure_running()  # one of CPython's helpers
        child = subprocess.Popen(["sleep", "300"])
        # a shell's background child outlives the shell and leaves our tree
        subprocess.run(["sh", "-c", f'sleep 300 & echo $! > "{here}/orphan.pid"'])
        orphan = int((here / "orphan.pid").read_text())
        killed = run.sweep()
        alive = run.watchdog.proc.poll() is None
        print(json.dumps({"killed": sorted(killed), "child": child.pid,
                          "orphan": orphan, "watchdog_alive": alive}))
        child.wait()
"""


def test_a_sweep_kills_what_the_run_left_and_nothing_else(tmp_path):
    # what pexen run does when it did not wait for its tasks
    script = tmp_path / "swept.py"
    script.write_text(textwrap.dedent(SWEPT))
    bystander = _sleep()  # neither below the run nor carrying its id
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        told = json.loads(out)
        assert set(told["killed"]) == {told["child"], told["orphan"]}
        assert told["watchdog_alive"]  # dismissed at the end, as ever
        assert poll_for(lambda: not alive(told["orphan"]))
        assert bystander.poll() is None
    finally:
        if proc.poll() is None:
            _end(proc)
        _end(bystander)


def test_a_dismissed_watchdog_kills_nothing():
    # a normal end: a task's deliberate background process is left alone
    before = os.environ.get(ENV)
    with guard() as run:
        watchdog = run.watchdog
        assert watchdog is not None
        assert run.run_id == os.environ[ENV].split()[-1]
        background = _sleep()
        assert poll_for(lambda: carries(background.pid, run.run_id))
        with guard() as inner:  # a run inside a run: its id is appended
            assert os.environ[ENV].split() == [
                *(before or "").split(), run.run_id, inner.run_id
            ]
        assert inner.watchdog is not None
        assert inner.watchdog.proc.returncode == -signal.SIGKILL
    try:
        assert watchdog.proc.returncode == -signal.SIGKILL  # dismissed
        assert background.poll() is None
        assert os.environ.get(ENV) == before
    finally:
        _end(background)


def test_guard_warns_when_it_cannot_start_the_watchdog(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    warned = pytest.warns(PexenWarning, match="cannot start the watchdog of this run")
    with warned, guard() as run:
        assert run.watchdog is None
        assert os.environ[ENV] == run.run_id  # what it starts is still marked
    assert ENV not in os.environ


def test_guard_starts_nothing_where_there_is_no_proc(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    before = os.environ.get(ENV)
    with guard() as run:  # and no warning: filterwarnings = error
        assert (run.run_id, run.watchdog) == (None, None)
        assert run.sweep() == set()
        assert os.environ.get(ENV) == before


GUARDED = """
    import os, pathlib, subprocess, sys
    from pexen._watchdog import guard

    here = pathlib.Path(sys.argv[1])
    with guard():
        # in our process group; in a session of its own; a shell's child
        children = [
            subprocess.Popen(["sleep", "300"]),
            subprocess.Popen(["setsid", "sleep", "300"]),
            subprocess.Popen(["sh", "-c", "sleep 300 & wait"]),
        ]
        (here / "pids.tmp").write_text(" ".join(str(c.pid) for c in children))
        os.replace(here / "pids.tmp", here / "pids")
        children[0].wait()
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM],
                         ids=["SIGKILL", "SIGTERM"])
def test_a_program_under_guard_killed_leaves_nothing(tmp_path, sig):
    script = tmp_path / "guarded.py"
    script.write_text(textwrap.dedent(GUARDED))
    err = open(tmp_path / "err.txt", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=err,
        start_new_session=True,
    )
    started: dict[int, int] = {}
    try:
        pids = tmp_path / "pids"
        assert poll_for(pids.exists)
        told = [int(pid) for pid in pids.read_text().split()]
        # the three children, the shell's child and the watchdog
        assert poll_for(lambda: len(below(proc.pid)) >= 5), below(proc.pid)
        started = below(proc.pid)
        assert set(told) <= set(started)
        proc.send_signal(sig)
        assert proc.wait(30) == -sig
        assert poll_for(lambda: not still_running(started)), still_running(started)
        text = (tmp_path / "err.txt").read_text()
        said = f"pexen: pexen (pid {proc.pid}) died mid-run; its watchdog killed "
        assert said in text
    finally:
        err.close()
        kill_all(started)
        if proc.poll() is None:
            _end(proc)

"""``pexen`` as a real process: on a terminal, in a pipe, and stopped with Ctrl-C."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pexen.sched import pool as pools
from tests.cli._cli import (
    CONTROL_CHARS,
    REPO,
    pexen_env,
    poll_for,
    run_pexen,
    write_package,
    write_script,
)


def test_python_m_pexen_in_a_pipe_prints_plain_lines():
    proc = run_pexen("run", "examples/suite", "examples/scripts", "-j", "2")
    assert proc.returncode == 1, proc.stderr
    assert not CONTROL_CHARS.search(proc.stdout), "control characters in a pipe"
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("collected 15 tasks from examples/suite")
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) >= 10  # one per finished task
    assert all(
        re.match(r"\[[ \d]\d/15\] (PASSED|FAILED)  \S", line) for line in progress
    )
    assert "FAILED scripts/50-deploy.sh (" in proc.stdout
    assert "  | 50-deploy.sh: error: port 8080 is already in use" in proc.stdout
    assert proc.stderr == ""


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_on_a_terminal_shows_a_live_display():
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pexen", "run", "examples/suite", "-j", "2"],
            cwd=REPO,
            env=pexen_env(TERM="xterm-256color"),
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        slave = -1
        output = _read_all(master).decode("utf-8", "replace")
        assert proc.wait(timeout=60) == 1
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert "\x1b[?25l" in output and "\x1b[?25h" in output  # cursor hidden, shown
    assert "\x1b[" in output  # colours and cursor movement
    assert "9/9" in output and "6 passed" in output
    assert "FAILED" in output and "suite/test_report/test_export_report" in output
    assert "6 passed, 1 failed, 2 skipped in" in output


BLOCKING = """
    import os
    import time

    from pexen.sched.meta import func_meta

    def _block(name):
        # tell the test we run, then wait for a release file that never comes
        # (the deadline only keeps a broken test from hanging for ever)
        here = os.environ["PEXEN_TEST_DIR"]
        marker = os.path.join(here, name)
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        # whole or not at all: the test reads it as soon as it is there
        os.replace(marker + ".tmp", marker + ".started")
        release = os.path.join(here, "release")
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)

    @func_meta
    def test_one():
        _block("one")

    @func_meta
    def test_two():
        _block("two")

    @func_meta(requires=["never"])
    def test_after():
        pass

    @func_meta(provides=["never"], priority=1)
    def test_last():
        _block("last")
"""


def _start_blocking_run(tmp_path: Path, name: str, *args: str):
    write_package(tmp_path, name, {"test_block": BLOCKING})
    out = open(tmp_path / "out.txt", "w")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen(
        [sys.executable, "-m", "pexen", "run", str(tmp_path / name), "-j", "2", *args],
        cwd=tmp_path,
        env=pexen_env(PEXEN_TEST_DIR=str(tmp_path)),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a shell job has
    )
    # two of the three blocking tasks run, one per worker (which two is the
    # pool's choice: a process pool may queue test_two behind test_one)
    markers = [tmp_path / f"{n}.started" for n in ("one", "two", "last")]
    ok = poll_for(lambda: sum(p.exists() for p in markers) == 2, timeout=30)
    if not ok:
        proc.kill()
        proc.wait()
        out.close()
        pytest.fail(f"the tasks never started:\n{(tmp_path / 'out.txt').read_text()}")
    return proc, out


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[2]) == pgid and rest[0] != "Z":
            members.append(int(entry))
    return members


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _finish(proc, out, tmp_path: Path) -> str:
    try:
        status = proc.wait(timeout=30)
    finally:
        out.close()
    text = (tmp_path / "out.txt").read_text()
    assert status == 130, text
    return text


FIRST_SIGINT = (
    "interrupted: no new task starts; waiting for the running ones (Ctrl-C "
    "again to stop them)"
)


def test_ctrl_c_lets_the_running_tasks_finish_and_reports_them(tmp_path):
    proc, out = _start_blocking_run(tmp_path, "blockthreads")
    os.killpg(proc.pid, signal.SIGINT)
    assert poll_for(lambda: FIRST_SIGINT in (tmp_path / "out.txt").read_text())
    assert proc.poll() is None  # still waiting for the two running tasks
    (tmp_path / "release").touch()
    text = _finish(proc, out, tmp_path)
    # the two that ran passed; the third blocking one and test_after did not start
    assert "=== interrupted: 2 passed, 2 skipped in " in text
    assert text.count("the run was aborted: interrupted") == 2, text
    assert "SKIPPED blockthreads/test_block/test_after: " in text


def test_second_ctrl_c_stops_running_threads(tmp_path):
    proc, out = _start_blocking_run(tmp_path, "blockabandon")
    os.killpg(proc.pid, signal.SIGINT)
    log = tmp_path / "out.txt"
    assert poll_for(lambda: FIRST_SIGINT in log.read_text())
    os.killpg(proc.pid, signal.SIGINT)
    text = _finish(proc, out, tmp_path)
    assert "interrupted again: stopping the running tasks" in text
    assert "=== interrupted: 0 passed, 4 skipped in " in text
    # the threads cannot be stopped: they are abandoned, and named
    flat = " ".join(text.split())
    assert flat.count("was cancelled while it ran; its thread 'pexen-worker-") == 2
    assert "cannot be stopped, so it was abandoned" in flat
    assert not (tmp_path / "release").exists()


@pytest.mark.skipif(
    "ProcessWorkerPool" not in pools.__all__, reason="no ProcessWorkerPool yet"
)
def test_ctrl_c_with_processes_exits_130_and_leaves_no_process(tmp_path):
    proc, out = _start_blocking_run(tmp_path, "blockprocs", "--pool", "process")
    worker_pids = [int(marker.read_text()) for marker in tmp_path.glob("*.started")]
    assert len(worker_pids) == 2 and proc.pid not in worker_pids
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a shell does
    log = tmp_path / "out.txt"
    assert poll_for(lambda: FIRST_SIGINT in log.read_text())
    os.killpg(proc.pid, signal.SIGINT)  # stop them: their workers are killed
    text = _finish(proc, out, tmp_path)
    assert "interrupted again: stopping the running tasks" in text
    assert "=== interrupted: 0 passed, 4 skipped in " in text
    assert "(process pool, 2 workers)" in text
    flat = " ".join(text.split())
    assert flat.count("was cancelled while it ran; its worker process (pid") == 2
    # neither the workers (each in a process group of its own) nor anything in
    # pexen's group is left
    assert poll_for(lambda: not _group_members(proc.pid), timeout=10), (
        f"left behind: {_group_members(proc.pid)}"
    )
    assert poll_for(lambda: not any(_alive(pid) for pid in worker_pids), timeout=10)
    assert not (tmp_path / "release").exists()


def test_output_its_encoding_cannot_hold_is_escaped(tmp_path):
    script = tmp_path / "jobs" / "accents.sh"
    script.parent.mkdir()
    script.write_bytes(
        b'#!/bin/sh\necho "caf\xc3\xa9 \xe2\x9c\x93"\necho "\xc3\xa9tape" >&2\nexit 1\n'
    )
    script.chmod(0o755)
    proc = run_pexen("run", str(script.parent), "-j", "1", PYTHONIOENCODING="ascii")
    assert proc.returncode == 1, proc.stderr
    assert "  | caf\\xe9 \\u2713" in proc.stdout
    assert "  | \\xe9tape" in proc.stdout
    assert "=== 0 passed, 1 failed in " in proc.stdout
    assert proc.stderr == ""


def _into_a_closed_pipe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m pexen ARGS`` with its stdout a pipe whose reader is gone
    (``| head -1`` after its line): every write to it fails with EPIPE.

    Its stdout is block-buffered, as in a shell (not ``PYTHONUNBUFFERED``), so
    what a failed flush left in the buffer is flushed again at exit.
    """
    env = pexen_env()
    env.pop("PYTHONUNBUFFERED", None)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "pexen", *args],
            cwd=cwd,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("fail", [False, True], ids=["quiet", "much-output"])
def test_a_closed_stdout_changes_nothing_about_the_run(tmp_path, fail):
    # failing, each script's 8 kB of output is shown in the summary: far more
    # than a pipe holds, so writes fail long before the end, not only at exit
    jobs = tmp_path / "jobs"
    end = "exit 1" if fail else "true"
    for n in range(20):
        write_script(jobs / f"{n:02d}.sh", 'touch "$0.ran"; head -c 8192 /dev/zero'
                     f" | tr '\\0' o; echo; {end}")
    junit = tmp_path / "junit.xml"
    proc = _into_a_closed_pipe("run", str(jobs), "-j", "2", "--junit-xml", str(junit),
                               cwd=tmp_path)
    assert proc.stderr == ""  # no "Exception ignored ... BrokenPipeError" either
    assert len(list(jobs.glob("*.ran"))) == 20, "every task ran"
    assert proc.returncode == (1 if fail else 0), "the suite's status"
    assert junit.read_text().count("<testcase ") == 20


@pytest.mark.parametrize("command", ["list", "graph", "--help"])
def test_list_graph_and_help_into_a_closed_stdout_exit_quietly(tmp_path, command):
    write_script(tmp_path / "jobs" / "a.sh", "true")
    args = [command] if command.startswith("-") else [command, "jobs"]
    proc = _into_a_closed_pipe(*args, cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")


SLOW_IMPORT_SUITE = '''
import multiprocessing
import os
import time

from pexen.sched.meta import func_meta

_began = time.monotonic()
while time.monotonic() - _began < 1.0:  # a module that is slow to import
    pass
if multiprocessing.parent_process() is not None:  # in the worker, not the runner
    with open(os.environ["IMPORT_TIME_FILE"], "w") as f:
        f.write(str(time.monotonic() - _began))


@func_meta
def test_quick():
    pass
'''


def test_a_duration_is_the_tasks_own_not_its_workers_start_up(tmp_path):
    """The first task of a process worker is not charged for the worker's
    start-up: here, importing the test module in the worker takes a second,
    the test itself nothing; the reported duration is the test's alone."""
    write_package(tmp_path, "slowimport", {"test_slow": SLOW_IMPORT_SUITE})
    junit, took = tmp_path / "junit.xml", tmp_path / "import-time"
    done = run_pexen(
        "run", str(tmp_path / "slowimport"), "--pool", "process", "-j", "1",
        "--junit-xml", str(junit),
        IMPORT_TIME_FILE=str(took),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    import_seconds = float(took.read_text())  # the worker's import, measured
    (case,) = ET.parse(junit).getroot().iter("testcase")
    assert float(case.get("time")) < import_seconds


@pytest.mark.parametrize("first", ["a long write", "a short write then a flush"])
def test_a_stream_whose_reader_is_gone_drops_what_it_is_given(first):
    """Both ways a closed pipe shows: a write longer than the stream's buffer
    fails in write(); a short one only when flushed."""
    from pexen.cli._streams import ReaderTolerant

    read_end, write_end = os.pipe()
    os.close(read_end)
    raw = os.fdopen(write_end, "w")
    stream = ReaderTolerant(raw)
    try:
        text = "x" * 100_000 if first == "a long write" else "x"
        assert stream.write(text) == len(text)
        stream.flush()
        assert stream.reader_gone
        assert stream.write("more") == 4  # dropped, quietly
    finally:
        raw.close()  # its fd points at os.devnull now: the close flushes there

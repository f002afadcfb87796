"""A real ``pexen run --journal`` killed with SIGKILL midway, then
``--resume`` (issue 16): every task passes exactly once across the two runs,
and the dependents that run in the second see the shared state their
providers made in the first."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys

from tests.cli._cli import REPO, pexen_env, poll_for, write_package

SUITE = {
    "test_steps": """
    import os, threading
    from pexen.sched.meta import func_meta

    LOG = os.environ["E2E_LOG"]

    def note(line):
        with open(LOG, "a") as f:
            f.write(line + "\\n")
            f.flush()
            os.fsync(f.fileno())

    @func_meta(provides=["a"], priority=0)
    def test_a(shared):
        shared["a"] = f"a@{os.getpid()}"
        note(f"passed test_a {shared['a']}")

    @func_meta(requires=["a"], provides=["b"], priority=1)
    def test_b(shared):
        shared["b"] = f"b@{os.getpid()}+{shared['a']}"
        note(f"passed test_b {shared['b']}")

    @func_meta(priority=1)
    def test_independent_1():
        note("passed test_independent_1")

    @func_meta(priority=1)
    def test_independent_2():
        note("passed test_independent_2")

    @func_meta(priority=2)
    def test_gate():
        if os.environ["E2E_PHASE"] == "1":
            note("gate reached")
            threading.Event().wait(600)  # until the run is killed
        note("passed test_gate")

    @func_meta(requires=["b"], priority=3)
    def test_c(shared):
        note(f"passed test_c saw {shared['a']} {shared['b']}")

    @func_meta(priority=3)
    def test_after_gate():
        note("passed test_after_gate")
    """,
}


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def committed(journal):
    """The outcomes the journal has committed, by identity ({} before it exists)."""
    if not journal.exists():
        return {}
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT identity, outcome FROM attempts"))
    except sqlite3.OperationalError:  # its tables are not made yet
        return {}
    finally:
        conn.close()


def test_a_killed_run_resumed_runs_each_task_once(tmp_path):
    package = write_package(tmp_path, "killsuite", SUITE)
    log, journal = tmp_path / "log.txt", tmp_path / "j.db"
    command = [sys.executable, "-m", "pexen", "run", str(package), "-j", "1"]
    first = subprocess.Popen(
        [*command, "--journal", str(journal)], cwd=REPO,
        env=pexen_env(E2E_LOG=str(log), E2E_PHASE="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # killed once the four results before the gate are committed, and the
        # gate's hand-over (a result the runner had not committed yet is lost
        # by design, and runs again)
        def ready():
            got = committed(journal)
            return (list(got.values()).count("passed") == 4
                    and got.get("killsuite/test_steps/test_gate") == "dispatched")

        assert poll_for(lambda: "gate reached" in lines(log) and ready(), timeout=60)
    finally:
        first.kill()  # SIGKILL: no cleanup, no end of run in the journal
        output = first.communicate(timeout=30)[0]
    assert first.returncode == -signal.SIGKILL, output
    run1 = lines(log)
    assert "passed test_c" not in "\n".join(run1)

    second = subprocess.run(
        [*command, "--resume", str(journal), "-v"], cwd=REPO,
        env=pexen_env(E2E_LOG=str(log), E2E_PHASE="2"),
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming run 1 of" in second.stdout
    assert "carried  killsuite/test_steps/test_a: passed in run 1" in second.stdout
    assert ("runs     killsuite/test_steps/test_gate: never finished in run 1: "
            "handed to the pool, no result recorded") in second.stdout

    passed = collections.Counter(
        line.split()[1] for line in lines(log) if line.startswith("passed ")
    )
    assert passed == dict.fromkeys(
        ["test_a", "test_b", "test_independent_1", "test_independent_2",
         "test_gate", "test_c", "test_after_gate"], 1
    )
    # test_c ran in the second run, with the state test_a and test_b made in
    # the first (their values name the first run's process)
    made_a = next(line.split()[2] for line in run1 if line.startswith("passed test_a"))
    made_b = next(line.split()[2] for line in run1 if line.startswith("passed test_b"))
    assert made_a == f"a@{first.pid}"
    saw = next(line for line in lines(log) if line.startswith("passed test_c"))
    assert saw == f"passed test_c saw {made_a} {made_b}"
    assert str(os.getpid()) not in saw

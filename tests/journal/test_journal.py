"""``Journal``: a run recorded in SQLite as it happens (SPEC §10).

The journal is fed the events of a real run (``tests._events.observed_run``)
or events made by hand; it is read back with plain ``sqlite3``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from pexen.journal import Journal, JournalError
from pexen.journal._store import FORMAT_VERSION
from pexen.sched import Sched, TaskFailError, TaskRes, UnrunTasksWarning
from pexen.sched.pool import ThreadWorkerPool
from tests._events import Clock, observed_run
from tests._leaks import poll
from tests.journal._tasks import named, rows

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_each_commit_is_synced_to_disk(tmp_path):
    """``synchronous = FULL``: in WAL mode, NORMAL keeps the file sound after
    a power cut but may lose the last commits, which the journal promises
    to keep."""
    with Journal(tmp_path / "j.db") as journal:
        assert journal.connection.execute("PRAGMA synchronous").fetchone() == (2,)


def test_a_run_is_recorded_task_by_task(tmp_path):
    path = tmp_path / "j.db"

    def make(shared):
        shared["url"] = "db://x"

    def fail():
        raise ValueError("no schema\nsecond line")

    tasks = [
        named("make", make, provides=["db"]),
        named("use", requires=["db"]),
        named("fail", fail, provides=["schema"]),
        named("after", requires=["schema"]),
    ]
    with (
        Journal(path, command="pexen run suite", pool="thread pool") as journal,
        pytest.warns(UnrunTasksWarning),
    ):
        results = list(observed_run(Sched(tasks), [journal], ThreadWorkerPool()))
    assert len(results) == 3
    [run] = rows(path, "SELECT id, started, ended, command, pool, pexen_version, "
                 "resumed_from FROM runs")
    assert run[0] == 1 and run[1] <= run[2]
    assert run[3:] == ("pexen run suite", "thread pool", "0.1.0", None)
    got = {
        row[0]: row[1:]
        for row in rows(path, "SELECT identity, outcome, worker, exc_type, "
                        "exc_message, reason, requires, provides FROM attempts "
                        "WHERE run = 1")
    }
    worker = got["make"][1]  # the thread pool's one worker
    assert worker and got["use"][1] == got["fail"][1] == worker
    assert got["make"] == ("passed", worker, None, None, None, None, '["db"]')
    assert got["use"] == ("passed", worker, None, None, None, '["db"]', None)
    assert got["fail"][:4] == ("failed", worker, "ValueError",
                               "no schema\nsecond line")
    assert got["after"][:4] == ("skipped", None, None, None)
    assert "'fail' failed" in got["after"][4]
    [(blob,)] = rows(path, "SELECT shared FROM attempts WHERE identity = 'make'")
    assert pickle.loads(blob) == {"url": "db://x"}
    [(trace,)] = rows(path, "SELECT traceback FROM attempts WHERE identity = 'fail'")
    assert "in fail" in trace and "ValueError: no schema" in trace


def test_each_result_is_committed_as_it_comes(tmp_path):
    """The journal's thread commits each result without being asked: another
    reader sees it while the run waits in its loop body."""
    path = tmp_path / "j.db"
    tasks = [named(f"t{i}", priority=i) for i in range(5)]

    def passed():
        return rows(path, "SELECT identity FROM attempts WHERE outcome = 'passed'")

    with Journal(path) as journal:
        for n, _res in enumerate(observed_run(Sched(tasks), [journal]), 1):
            assert poll(lambda n=n: len(passed()) == n)
            assert sorted(passed()) == [(f"t{i}",) for i in range(n)]


def test_shared_state_that_does_not_pickle_is_noted(tmp_path):
    path = tmp_path / "j.db"

    def lock(shared):
        shared["first"] = lambda x: x  # plain pickle fails here first
        shared["lock"] = sqlite3.connect(":memory:")  # no pickler takes it

    def fn(shared):
        shared["double"] = lambda x: 2 * x  # cloudpickle takes it

    def no_provides(shared):
        shared["x"] = 1

    tasks = [named("lock", lock, provides=["a"]), named("fn", fn, provides=["b"]),
             named("no-provides", no_provides), named("user", requires=["a", "b"])]
    with Journal(path) as journal:
        for res in observed_run(Sched(tasks), [journal]):
            conn = res.shared.pop("lock", None)
            if conn is not None:
                conn.close()
    got = dict(((i, (s is not None, n)) for i, s, n in
                rows(path, "SELECT identity, shared, shared_note FROM attempts")))
    assert got["lock"][0] is False
    assert got["lock"][1] == ("not picklable: TypeError: cannot pickle "
                              "'sqlite3.Connection' object (at shared['lock'])")
    assert got["fn"] == (True, None)
    assert got["no-provides"] == (False, None)  # its state reaches no task


def test_a_deps_ok_failure_is_a_failure(tmp_path):
    def soft():
        raise TaskFailError("tolerated")

    path = tmp_path / "j.db"
    with Journal(path) as journal:
        list(observed_run(Sched([named("soft", soft)]), [journal]))
    assert rows(path, "SELECT outcome, exc_type FROM attempts") == [
        ("failed", "TaskFailError")
    ]


def test_two_tasks_with_one_identity_are_refused_and_not_recorded(tmp_path, caplog):
    """``check`` raises before a run; met during a run, the second one is
    not recorded, and the log (logger ``pexen.journal``) says why."""
    first, second = named("same"), named("same")
    clock = Clock()
    with Journal(tmp_path / "j.db") as journal:
        with pytest.raises(JournalError, match="two tasks have the identity 'same'"):
            journal.check([first, second])
        journal(clock.event("run-started"))
        journal(clock.event("dispatched", task=first))
        journal(clock.event("dispatched", task=second))
        journal(clock.event("run-ended"))
    assert rows(tmp_path / "j.db", "SELECT count(*) FROM attempts") == [(1,)]
    [record] = [r for r in caplog.records if r.name == "pexen.journal"]
    assert "two tasks have the identity 'same'" in record.getMessage()
    assert record.getMessage().endswith("(not recorded)")


def test_events_by_hand_times_and_workers(tmp_path):
    """What the events say is what the rows hold: times are the events'
    wall times, the duration the pool's, and the start the end less that
    (a pool that does not time its tasks leaves both unknown)."""
    a, b = named("a"), named("b")
    clock = Clock()
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        journal(clock.event("run-started", workers=2))
        for task in (a, b):
            journal(clock.event("dispatched", 0.5, task=task))
        journal(clock.event("started", 1, task=a, worker="pexen-worker-1"))
        journal(clock.event("started", 1, task=b, worker="pexen-worker-2"))
        journal(clock.event("finished", 2, task=a, worker="pexen-worker-1",
                            res=TaskRes(a), duration=1.5))
        journal(clock.event("finished", 1, task=b, worker="pexen-worker-2",
                            res=TaskRes(b)))
        journal(clock.event("run-ended", 1))
    wall0 = Clock().tick()[1]
    assert rows(path, "SELECT identity, dispatched - ?, started - ?, ended - ?, "
                "duration, worker FROM attempts ORDER BY id", wall0, wall0, wall0) == [
        ("a", 0.5, 3.5, 5.0, 1.5, "pexen-worker-1"),
        ("b", 1.0, None, 6.0, None, "pexen-worker-2"),
    ]
    assert rows(path, "SELECT workers, ended - started FROM runs") == [(2, 7.0)]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _journal_with_a_run(path):
    with Journal(path) as journal:
        list(observed_run(Sched([named(f"t{i}") for i in range(50)]), [journal]))


def test_a_corrupt_journal_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "j.db"
    _journal_with_a_run(path)
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 2 * page
    data[page:2 * page] = os.urandom(page)  # garble the second page
    path.write_bytes(bytes(data))
    before = _digest(path)
    with pytest.raises(JournalError, match=(
        r"journal '.*j\.db': is corrupt \(.*\); pexen will not change it and will "
        r"not start over on its own"
    )) as refused:
        Journal(path)
    assert "\n" not in str(refused.value)  # SQLite's report on one line
    assert _digest(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["j.db"]  # no -wal, no -shm


def test_a_journal_of_a_newer_format_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "j.db"
    _journal_with_a_run(path)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    conn.close()
    before = _digest(path)
    with pytest.raises(JournalError, match=(
        rf"written in journal format {FORMAT_VERSION + 1}, newer than this pexen "
        rf"reads \(up to {FORMAT_VERSION}\); use a newer pexen"
    )):
        Journal(path)
    assert _digest(path) == before
    assert [p.name for p in tmp_path.iterdir()] == ["j.db"]  # no -wal, no -shm


@pytest.mark.parametrize(("content", "message"), [
    (b"just some text\n" * 20, "is not a pexen journal (not an SQLite database)"),
    (None, "is an SQLite database, but not a pexen journal"),
])
def test_a_file_that_is_not_a_journal_is_refused_and_left_as_it_was(
    tmp_path, content, message
):
    path = tmp_path / "j.db"
    if content is None:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("CREATE TABLE results (name TEXT)")
        conn.close()
    else:
        path.write_bytes(content)
    before = _digest(path)
    with pytest.raises(JournalError, match=rf"'.*j\.db': {re.escape(message)}"):
        Journal(path)
    assert _digest(path) == before


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(JournalError, match=r"is a directory; give a file name"):
        Journal(tmp_path)


def test_an_empty_file_becomes_a_journal(tmp_path):
    path = tmp_path / "j.db"
    path.touch()
    with Journal(path):
        pass
    with Journal(path):  # and opens again as one
        pass


KILLED_RUNNER = """
import os, signal, sys
from pexen.journal import Journal
from pexen.sched import Sched
from pexen.sched.meta import assign_val
from pexen.sched.pool import ThreadWorkerPool
from tests._events import observed_run

def make(i):
    def fn():
        return i
    assign_val(fn, name=f"t{i}", priority=i)
    return fn

journal = Journal(sys.argv[1])
for res in observed_run(Sched([make(i) for i in range(20)]), [journal]):
    if res.ret == 9:
        journal.flush()  # the ten results are committed...
        os.kill(os.getpid(), signal.SIGKILL)  # ...and the runner dies
"""


def test_a_runner_killed_midway_loses_no_result_it_had(tmp_path):
    """SIGKILL right after the 10th result is committed: the journal holds all
    ten, is sound, and opens again (the unfinished run has no end)."""
    path = tmp_path / "j.db"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_RUNNER), str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with Journal(path) as journal:
        conn = journal.connection
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        passed = conn.execute(
            "SELECT identity FROM attempts WHERE outcome = 'passed' ORDER BY id"
        ).fetchall()
        assert passed == [(f"t{i}",) for i in range(10)]
        assert conn.execute("SELECT ended FROM runs").fetchall() == [(None,)]

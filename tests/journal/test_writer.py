"""How a ``Journal`` writes a run: which rows, in which lots, with which
statements, and what it does with what it cannot record.

Some tests feed the journal's ``Writer`` lots by hand (``_write``), in the
form ``Journal.__call__`` keeps and queues events (``pexen.journal._writer``
says how), so that what falls in which lot is decided by the test, not by
the writer thread's timing; the others feed the ``Journal`` events.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing

import pytest

from pexen.journal import Journal
from pexen.journal._writer import _STOP, HANDED_AGE, Result, RunStarted, _Flush
from pexen.sched import Event, TaskRes
from pexen.sched._naming import CALLPATH_ATTR
from tests._events import Clock
from tests._leaks import poll
from tests.journal._tasks import failure, named, rows


def made(*callpath):
    """A task a factory made: known by its call path, no metadata."""
    def fn():
        pass
    setattr(fn, CALLPATH_ATTR, callpath)
    return fn


def plain(qualname):
    """A task with neither call path nor metadata: known by its code's name."""
    def fn():
        pass
    fn.__qualname__ = qualname
    return fn


def started(tasks, handed):
    """A "run-started" item for a run of *tasks*, now, with *handed*."""
    return RunStarted(Event("run-started", time.monotonic(), time.time()),
                      {id(task): task for task in tasks}, handed)


def passed(handed, task, ended, duration, worker="w"):
    """The item of *task*'s result, taking its entry from *handed* as the
    run's thread does (a ``Result`` if the writer took it first)."""
    taken = handed.pop(id(task), None)
    if taken is None:
        event = Event("finished", time.monotonic(), ended, task, worker,
                      TaskRes(task), duration=duration)
        return Result(event, None, None)
    return (id(task), taken[1], ended, duration, worker)


def test_a_task_passed_within_a_moment_has_one_row_a_later_one_two_writes(tmp_path):
    """A task still in the pool ``HANDED_AGE`` after it was handed out gets
    a "dispatched" row at the end of the lot, which its result updates; one
    whose result comes before gets its row then, and no "dispatched" one."""
    path = tmp_path / "j.db"
    quick, slow = named("quick"), named("slow")
    now, wall = time.monotonic(), time.time()
    with Journal(path) as journal:
        writer = journal._writer
        changes = writer.conn.total_changes
        handed = {id(slow): (now - 2 * HANDED_AGE, wall - 1.0),  # a while ago
                  id(quick): (now, wall)}
        writer._write([started([quick, slow], handed)])
        assert rows(path, "SELECT identity, outcome FROM attempts") == [
            ("slow", "dispatched")
        ]
        assert list(handed) == [id(quick)]  # the writer took slow's entry
        writer._write([passed(handed, quick, wall + 0.5, 0.25, "w1"),
                       passed(handed, slow, wall + 0.5, 1.25, "w2")])
        # the run's row, slow's row and its update, quick's row
        assert writer.conn.total_changes - changes == 4
    assert rows(
        path, "SELECT identity, outcome, dispatched - ?, started - ?, duration, "
        "worker FROM attempts ORDER BY id", wall, wall,
    ) == [("slow", "passed", -1.0, -0.75, 1.25, "w2"),
          ("quick", "passed", 0.0, 0.25, 0.25, "w1")]


def test_a_retried_task_whose_next_attempt_is_due_before_the_end_is_written(
        tmp_path):
    """A task's attempt with a "dispatched" row ends ("retrying") and the
    next one is due its own row before the writer has written that end: the
    end updates the first attempt's row, not the second's."""
    path = tmp_path / "j.db"
    task = named("flaky", retries=1)
    now, wall = time.monotonic(), time.time()
    with Journal(path) as journal:
        writer = journal._writer
        handed = {id(task): (now - 2 * HANDED_AGE, wall - 1.0)}
        writer._write([started([task], handed)])  # the first attempt's row
        handed[id(task)] = (now - 2 * HANDED_AGE, wall - 0.5)  # the second's
        writer._write([])  # due its row: the first one's end not yet written
        retrying = Event("retrying", now, wall - 0.6, task, "w", TaskRes(
            task, excinfo=failure("no")), reason="attempt 1 of 2 failed",
            duration=0.3)
        writer._write([Result(retrying, None, None),
                       passed(handed, task, wall, 0.25)])
    assert rows(path, "SELECT outcome, reason, dispatched - ? FROM attempts "
                "ORDER BY id", wall) == [
        ("retried", "attempt 1 of 2 failed", -1.0), ("passed", None, -0.5)]


def test_a_task_in_the_pool_a_while_gets_its_row_with_no_other_event(tmp_path):
    """Nothing else happening (one worker, busy with a long task), the
    writer still writes the "dispatched" row of the task in the pool."""
    path = tmp_path / "j.db"
    long = named("long")
    with Journal(path) as journal:
        journal(Event("run-started", time.monotonic(), time.time()))
        journal.flush()  # the writer has nothing to do: it waits
        journal(Event("dispatched", time.monotonic(), time.time(), long))
        assert poll(lambda: rows(path, "SELECT identity, outcome FROM attempts")
                    == [("long", "dispatched")])


def test_rows_of_every_kind_of_task_in_one_lot_in_order(tmp_path):
    """Rows are inserted with their non-NULL columns only, many at a time:
    a lot of tasks of three kinds (call path, metadata, neither), in runs
    of different lengths, makes the rows the tasks say, in the order their
    results came."""
    path = tmp_path / "j.db"
    tasks = (
        [made("suite", f"t{i}") for i in range(130)]
        + [named("tagged", priority=2, requires=["db"], provides=["x", "y"])]
        + [plain(f"job{i}") for i in range(5)]
        + [made("suite", f"u{i}") for i in range(70)]
        + [named("untagged")]
    )
    now, wall = time.monotonic(), time.time()
    handed = {id(task): (now, wall + i) for i, task in enumerate(tasks)}
    with Journal(path) as journal:
        journal._writer._write([
            started(tasks, handed),
            *(passed(handed, task, wall + i + 0.5, 0.25)
              for i, task in enumerate(tasks)),
        ])
    got = rows(path, "SELECT identity, name, callpath, priority, requires, "
               "provides, claims, dispatched - ?, started - ?, ended - ?, "
               "duration, worker, outcome, exc_type, shared FROM attempts "
               "ORDER BY id", wall, wall, wall)
    assert len(got) == len(tasks)
    tail = (0.25, "w", "passed", None, None)
    for i, row in enumerate(got):
        assert row[7:] == (i, i + 0.25, i + 0.5, *tail)
    assert got[0][:7] == ("suite/t0", "suite/t0", "suite/t0", "0", None, None, None)
    assert got[130][:7] == ("tagged", "tagged", None, "2", '["db"]', '["x", "y"]',
                            None)
    assert got[131][:7] == (f"{__name__}:job0", "job0", None, "0", None, None, None)
    assert got[-2][:3] == ("suite/u69",) * 3
    assert got[-1][:7] == ("untagged", "untagged", None, "0", None, None, None)


def test_two_tasks_with_one_identity_that_both_finish(tmp_path, caplog):
    """The second is not recorded (logged once), and the journal goes on."""
    first, second, after = named("same"), named("same"), named("after")
    clock = Clock()
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        journal(clock.event("run-started"))
        for task in (first, second):
            journal(clock.event("dispatched", task=task))
        for task in (first, second):
            journal(clock.event("finished", task=task, worker="w", res=TaskRes(task),
                                duration=0.5))
        journal(clock.event("run-ended"))
        journal(clock.event("run-started"))
        journal(clock.event("dispatched", task=after))
        journal(clock.event("finished", task=after, worker="w", res=TaskRes(after),
                            duration=0.5))
        journal(clock.event("run-ended"))
    assert rows(path, "SELECT run, identity, outcome FROM attempts ORDER BY id") == [
        (1, "same", "passed"), (2, "after", "passed"),
    ]
    [record] = [r for r in caplog.records if r.name == "pexen.journal"]
    assert "two tasks have the identity 'same'" in record.getMessage()


class Nameless:
    """A task whose attributes cannot be read: no name can be worked out."""

    def __call__(self):
        pass

    def __getattr__(self, name):
        raise RuntimeError(f"no {name}")


def test_an_event_that_cannot_be_recorded_is_logged_and_the_rest_is(tmp_path,
                                                                      caplog):
    nameless, other = Nameless(), named("other")
    clock = Clock()
    path = tmp_path / "j.db"
    with caplog.at_level(logging.ERROR, "pexen.journal"), Journal(path) as journal:
        journal(clock.event("run-started"))
        for task in (nameless, other):
            journal(clock.event("dispatched", task=task))
        for task in (nameless, other):
            journal(clock.event("finished", task=task, worker="w", res=TaskRes(task),
                                duration=0.5))
        journal(clock.event("run-ended"))
    assert rows(path, "SELECT identity, outcome FROM attempts") == [
        ("other", "passed")
    ]
    [record] = [r for r in caplog.records if r.name == "pexen.journal"]
    assert record.getMessage().startswith(f"journal {journal!r}: could not ")
    assert "Nameless" in record.getMessage()
    assert "RuntimeError: no pexen_callpath" in caplog.text


def test_attempts_are_indexed_by_run(tmp_path):
    path = tmp_path / "j.db"
    with Journal(path):
        pass
    assert rows(path, "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = 'attempts'") == [
        ("attempts_by_run", "CREATE INDEX attempts_by_run ON attempts(run)")
    ]


def test_a_journal_with_the_earlier_indexes_is_written_alike(tmp_path):
    """A journal made before attempts were indexed by run only (by run and
    identity, and by identity) keeps its indexes and is written the same."""
    path = tmp_path / "j.db"
    with Journal(path):
        pass
    earlier = ("CREATE INDEX attempts_by_run ON attempts(run, identity)",
               "CREATE INDEX attempts_by_identity ON attempts(identity)")
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DROP INDEX attempts_by_run")
        for sql in earlier:
            conn.execute(sql)
    a, b = named("a"), named("b")
    clock = Clock()  # its times are long past: b gets a "dispatched" row at once
    with Journal(path) as journal:
        journal(clock.event("run-started"))
        journal(clock.event("dispatched", task=b))
        journal.flush()
        journal(clock.event("dispatched", task=a))
        for task in (a, b):
            journal(clock.event("finished", task=task, worker="w", res=TaskRes(task),
                                duration=0.5))
        journal(clock.event("run-ended"))
        assert journal.forget(["a"]) == (1, 0)
    assert rows(path, "SELECT identity, outcome FROM attempts") == [("b", "passed")]
    indexes = rows(path, "SELECT sql FROM sqlite_master WHERE type = 'index' "
                   "AND tbl_name = 'attempts'")
    assert sorted(indexes) == sorted((sql,) for sql in earlier)


def test_forget_takes_more_identities_than_a_statement_takes(tmp_path):
    path = tmp_path / "j.db"
    tasks = [made("suite", f"t{i}") for i in range(1200)]
    now, wall = time.monotonic(), time.time()
    handed = {id(task): (now, wall) for task in tasks}
    with Journal(path) as journal:
        journal._writer._write([
            started(tasks, handed),
            *(passed(handed, task, wall, 0.25) for task in tasks),
        ])
        forgotten = [f"suite/t{i}" for i in range(1, 1200, 2)] + ["suite/nothing"]
        assert journal.forget(forgotten) == (600, 0)
    assert rows(path, "SELECT identity FROM attempts ORDER BY id") == [
        (f"suite/t{i}",) for i in range(0, 1200, 2)
    ]


def test_a_closed_journal_refuses_events(tmp_path):
    journal = Journal(tmp_path / "j.db")
    journal.close()
    with pytest.raises(ValueError, match=r"<Journal '.*j\.db'> is closed"):
        journal(Clock().event("run-started"))


def test_a_lot_that_cannot_be_written_still_ends_a_flush_and_a_close(tmp_path,
                                                                      caplog):
    """The lot is lost (logged), but what it asked of the writer holds: a
    flush or a close waiting for it is let go (they waited for ever)."""
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        writer = journal._writer
        writer.conn.execute("PRAGMA query_only = ON")  # every write fails
        marker = _Flush()
        stop = writer._write([started([named("a")], {}), marker, _STOP])
        writer.conn.execute("PRAGMA query_only = OFF")
    assert marker.done.is_set() and stop
    assert "could not write 3 events" in caplog.text

"""``Sched.run(resume=journal)`` (SPEC §10): what passed in the journal's last
run is not run again, and its shared state reaches its dependents."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from pexen.journal import Journal, JournalError
from pexen.sched import Sched, SchedulerError, UnrunTasksWarning
from pexen.sched.meta import assign_val
from tests._events import observed_run


def suite(calls, fail=()):
    """Fresh tasks of one suite; each call is noted in *calls*; those named in
    *fail* raise."""

    def make(name, body=None, **fields):
        def fn(shared):
            calls.append(name)
            if name in fail:
                raise RuntimeError(f"{name} failed")
            if body is not None:
                body(shared)

        fn.__name__ = fn.__qualname__ = name
        assign_val(fn, name=name, **fields)
        return fn

    return [
        make("db", lambda shared: shared.update(url="db://1"), provides=["db"]),
        make("schema", lambda shared: shared.update(tables=3), requires=["db"],
             provides=["schema"]),
        make("report", requires=["schema"]),
        make("lonely"),
    ]


def test_what_passed_is_not_run_again_and_its_state_reaches_dependents(tmp_path):
    path = tmp_path / "j.db"
    calls: list[str] = []
    with Journal(path) as journal:
        list(observed_run(Sched(suite(calls, fail={"report"})), [journal]))
    assert calls == ["db", "schema", "report", "lonely"]
    calls.clear()
    tasks = suite(calls)
    sched = Sched(tasks)
    results = list(sched.run(resume=path))
    assert calls == ["report"]
    [res] = results
    assert res.shared == {"url": "db://1", "tables": 3}
    assert sched.skipped == {}
    assert [len(sched.attempts(task)) for task in tasks] == [0, 0, 1, 0]


def test_arun_resumes_as_run_does(tmp_path):
    path = tmp_path / "j.db"
    calls: list[str] = []
    with Journal(path) as journal:
        list(observed_run(Sched(suite(calls, fail={"report"})), [journal]))
    calls.clear()
    sched = Sched(suite(calls))

    async def main():
        return [res async for res in sched.arun(resume=path)]

    [res] = asyncio.run(main())
    assert calls == ["report"]
    assert res.shared == {"url": "db://1", "tables": 3}
    assert sched.skipped == {}


def test_resume_takes_a_journal_object_and_its_plan_is_recorded(tmp_path):
    """With the journal observing the resumed run, the carried tasks are
    recorded in it, so a run resumed from that one carries them too."""
    path = tmp_path / "j.db"
    calls: list[str] = []
    with Journal(path) as journal:
        with pytest.warns(UnrunTasksWarning):
            list(observed_run(Sched(suite(calls, fail={"schema"})), [journal]))
        calls.clear()
        list(observed_run(Sched(suite(calls)), [journal], resume=journal))
        assert calls == ["schema", "report"]
        calls.clear()
        assert list(Sched(suite(calls)).run(resume=journal)) == []
    assert calls == []


def test_a_missing_journal_cannot_be_resumed_from(tmp_path):
    with pytest.raises(JournalError, match="no such journal"):
        Sched(suite([])).run(resume=tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()


def test_resume_takes_a_journal_or_a_path_only():
    with pytest.raises(SchedulerError, match=r"resume=3: expected a journal's path"):
        Sched(suite([])).run(resume=3)


def test_a_run_resumed_from_a_path_is_recorded_there(tmp_path):
    """The journal opened for resume= records the run (carried tasks too),
    once, and is closed at its end."""
    import sqlite3

    path = tmp_path / "j.db"
    calls: list[str] = []
    with Journal(path) as journal:
        list(observed_run(Sched(suite(calls, fail={"report"})), [journal]))
    list(Sched(suite(calls)).run(resume=path))
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        got = conn.execute(
            "SELECT run, outcome, count(*) FROM attempts GROUP BY run, outcome "
            "ORDER BY run, outcome"
        ).fetchall()
        resumed = conn.execute("SELECT resumed_from FROM runs WHERE id = 2").fetchone()
    conn.close()
    assert got == [(1, "failed", 1), (1, "passed", 3), (2, "carried", 3),
                   (2, "passed", 1)]
    assert resumed == (1,)


def test_a_journal_observing_already_is_not_told_twice(tmp_path):
    path = tmp_path / "j.db"
    calls: list[str] = []
    with Journal(path) as journal:
        list(observed_run(Sched(suite(calls, fail={"lonely"})), [journal]))
        sched = Sched(suite(calls))
        sched.observe(journal)
        list(sched.run(resume=journal))
        assert journal.connection.execute(
            "SELECT count(*) FROM attempts WHERE run = 2 AND outcome = 'passed'"
        ).fetchone() == (1,)


def test_status_counts_carried_tasks_as_done(tmp_path):
    path = tmp_path / "j.db"
    calls: list[str] = []
    with Journal(path) as journal:
        list(observed_run(Sched(suite(calls, fail={"report"})), [journal]))
    sched = Sched(suite(calls))
    events = []
    sched.observe(events.append)
    list(sched.run(resume=path))
    started = events[0].status
    assert (started.total, started.done, started.ready + started.waiting) == (4, 3, 1)
    final = sched.status()
    assert (final.total, final.done, final.failed, final.skipped) == (4, 4, 0, 0)


def test_a_run_of_some_of_the_tasks_carries_the_others_that_passed(tmp_path):
    """A resumed run of a selection (``--rerun-failed``, ``-k``) carries what
    passed before and is not among its tasks: a run resumed from it later
    runs none of them again (each was "not in the last run")."""
    path = tmp_path / "j.db"
    calls: list[str] = []
    with Journal(path) as journal:
        list(observed_run(Sched(suite(calls, fail={"report"})), [journal]))
    calls.clear()
    db, schema, report, _lonely = suite(calls)
    list(Sched([db, schema, report]).run(resume=path))  # the failure, its providers
    assert calls == ["report"]
    calls.clear()
    with Journal(path) as journal:
        plan = journal.plan(suite(calls))
    assert plan.run_id == 2
    assert {d.identity: (d.carry, d.reason) for d in plan.decisions} == {
        "db": (True, "passed in run 1, carried into run 2"),
        "schema": (True, "passed in run 1, carried into run 2"),
        "report": (True, "passed in run 2"),
        "lonely": (True, "passed in run 1, carried into run 2"),
    }
    tasks = suite(calls)
    assert list(Sched(tasks).run(resume=path)) == [] and calls == []

"""``Journal.plan``: which tasks a resumed run carries over, and why each
other one runs again (issue 16: failed, never finished, new, changed call
path...)."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from pexen.journal import Journal, JournalError
from pexen.sched import Sched, TaskRes, UnrunTasksWarning
from pexen.sched._naming import CALLPATH_ATTR
from tests._events import Clock, observed_run
from tests.journal._tasks import named


def decisions(plan):
    return {d.identity: (d.carry, d.reason) for d in plan.decisions}


def suite():
    """Fresh task objects for one suite, as each run of a program makes them."""

    def make(shared):
        shared["url"] = "db://1"

    def broken():
        raise RuntimeError("disk full\nmore")

    return [
        named("make", make, provides=["db"]),
        named("use", requires=["db"]),
        named("broken", broken, provides=["x"]),
        named("after", requires=["x"]),
    ]


def test_what_passed_is_carried_with_its_shared_state(tmp_path):
    path = tmp_path / "j.db"
    with Journal(path) as journal, pytest.warns(UnrunTasksWarning):
        list(observed_run(Sched(suite()), [journal]))
    with Journal(path) as journal:
        plan = journal.plan([*suite(), named("new")])
    assert plan.run_id == 1
    assert decisions(plan) == {
        "make": (True, "passed in run 1"),
        "use": (True, "passed in run 1"),
        "broken": (False, "failed in run 1: RuntimeError: disk full"),
        "after": (False, "skipped in run 1: requires tag 'x', never provided "
                  "because 'broken' failed"),
        "new": (False, "new: not in the journal"),
    }
    shared = {d.identity: d.shared for d in plan.carried}
    assert shared == {"make": {"url": "db://1"}, "use": {}}


def test_a_journal_without_runs_carries_nothing(tmp_path):
    with Journal(tmp_path / "j.db") as journal:
        plan = journal.plan(suite())
    assert plan.run_id is None
    assert {reason for _, reason in decisions(plan).values()} == {
        "new: not in the journal"
    }


def test_never_finished_and_not_run(tmp_path):
    """A run killed with one task in the pool: it never finished; nor did
    a task of earlier runs it had not reached (or had handed out a moment
    before: such a task has no row yet), nor a new one."""
    a, b, c, old = named("a"), named("b"), named("c"), named("old")
    clock = Clock()
    with Journal(tmp_path / "j.db") as journal:
        journal(clock.event("run-started"))
        journal(clock.event("dispatched", task=old))
        journal(clock.event("finished", task=old, res=TaskRes(old)))
        journal(clock.event("run-ended"))
        journal(clock.event("run-started"))
        journal(clock.event("dispatched", task=a))
        journal(clock.event("finished", task=a, res=TaskRes(a)))
        journal(clock.event("dispatched", task=b))
        journal(clock.event("dispatched", task=c))
        journal(clock.event("finished", task=c, res=TaskRes(c)))
        # killed here: b never came back, no run-ended
        plan = journal.plan([named("a"), named("b"), named("old"), named("d")])
    assert decisions(plan) == {
        "a": (True, "passed in run 2"),
        "b": (False, "never finished in run 2: handed to the pool, no result "
              "recorded"),
        "old": (False, "never finished in run 2, which stopped before recording "
                "a result for it"),
        "d": (False, "never finished in run 2, which stopped before recording "
              "a result for it (new: not in the journal)"),
    }


def test_a_task_not_in_a_run_that_ended(tmp_path):
    old, a = named("old"), named("a")
    clock = Clock()
    with Journal(tmp_path / "j.db") as journal:
        for task in (old, a):
            journal(clock.event("run-started"))
            journal(clock.event("dispatched", task=task))
            journal(clock.event("finished", task=task, res=TaskRes(task)))
            journal(clock.event("run-ended"))
        plan = journal.plan([named("a"), named("old"), named("d")])
    assert decisions(plan) == {
        "a": (True, "passed in run 2"),
        "old": (False, "not in run 2, the journal's last run"),
        "d": (False, "new: not in the journal"),
    }


def test_a_changed_call_path_runs_again(tmp_path):
    def at(path):
        fn = named("t")
        setattr(fn, CALLPATH_ATTR, path)
        return fn

    with Journal(tmp_path / "j.db") as journal:
        list(observed_run(Sched([at(("suite", "t"))]), [journal]))
        plan = journal.plan([at(("suite", "moved", "t"))])
    assert decisions(plan) == {
        "t": (False, "its call path changed since run 1: was 'suite/t', now "
              "'suite/moved/t'"),
    }


def test_carried_tasks_are_carried_again(tmp_path):
    """A run resumed from run 1 records what it carried, so a run resumed from
    it carries those too, with the state recorded in run 1."""
    path = tmp_path / "j.db"
    with Journal(path) as journal, pytest.warns(UnrunTasksWarning):
        list(observed_run(Sched(suite()), [journal]))
    with Journal(path) as journal:
        tasks = suite()
        plan = journal.plan(tasks)
        journal.carry(plan)
        with pytest.warns(UnrunTasksWarning):
            list(observed_run(Sched([d.task for d in plan.to_run]), [journal]))
        again = journal.plan(suite())
    assert decisions(again)["make"] == (True, "passed in run 1, carried into run 2")
    assert decisions(again)["broken"][0] is False
    assert decisions(again)["after"][1].startswith("skipped in run 2: ")
    assert {d.identity: d.shared for d in again.carried} == {
        "make": {"url": "db://1"}, "use": {}
    }
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        assert conn.execute("SELECT resumed_from FROM runs").fetchall() == [
            (None,), (1,)
        ]
    conn.close()


def test_shared_state_not_recorded_or_not_loadable_runs_again(tmp_path):
    path = tmp_path / "j.db"

    def unpicklable(shared):
        shared["conn"] = sqlite3.connect(":memory:")

    def fine(shared):
        shared["n"] = 1

    tasks = [named("unpicklable", unpicklable, provides=["a"]),
             named("fine", fine, provides=["b"]), named("user", requires=["a", "b"])]
    with Journal(path) as journal:
        for res in observed_run(Sched(tasks), [journal]):
            conn = res.shared.pop("conn", None)
            if conn is not None:
                conn.close()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE attempts SET shared = x'00ff' WHERE identity = 'fine'")
    conn.close()
    with Journal(path) as journal:
        got = decisions(journal.plan(tasks))
    assert got["unpicklable"][0] is False
    assert got["unpicklable"][1].startswith(
        "passed in run 1, but its shared state was not recorded (not picklable: "
        "TypeError: cannot pickle 'sqlite3.Connection' object (at "
        "shared['conn']))"
    )
    assert got["fine"][0] is False
    assert got["fine"][1].startswith(
        "passed in run 1, but its recorded shared state cannot be loaded ("
    )


def test_two_tasks_with_one_identity_cannot_be_planned(tmp_path):
    with Journal(tmp_path / "j.db") as journal, pytest.raises(
        JournalError, match="two tasks have the identity 'a'"
    ):
        journal.plan([named("a"), named("a")])

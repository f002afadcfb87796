"""Retried tasks (SPEC §11) as the observers built on ``Sched.observe`` see
them: each failed attempt that runs again is a ``"retrying"`` event, a row of
its own in the journal (outcome ``"retried"``), a slice of its own in the
trace; the task's last attempt decides what a resumed run does."""

from __future__ import annotations

from pexen.journal import Journal
from pexen.journal._analysis import critical_path
from pexen.journal._read import attempts, runs
from pexen.journal._store import connect
from pexen.sched import Sched, TaskRes
from pexen.trace import ChromeTrace
from tests import _traceformat
from tests._events import Clock, observed_run
from tests.journal._tasks import failure, named, rows


def failing(name, failures, **fields):
    """A task failing its first *failures* attempts with ValueError."""
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise ValueError(f"{name} attempt {len(calls)}")
        return name

    return named(name, fn, **fields)


def test_each_attempt_is_a_row_and_the_last_one_decides(tmp_path):
    path = tmp_path / "j.db"
    flaky = failing("flaky", 1, retries=2)
    doomed = failing("doomed", 5, retries=1)
    patient = failing("patient", 1, retries=1, retry_delay=3600)
    s = Sched([flaky, doomed, patient])
    # the patient task waits an hour for its retry: the run is aborted
    s.observe(lambda e: e.kind == "retrying" and e.name == "patient" and s.abort())
    with Journal(path) as journal:  # aborted: no UnrunTasksWarning
        list(observed_run(s, [journal]))
    got = rows(path, "SELECT identity, outcome, exc_message, reason FROM attempts "
               "ORDER BY id")
    assert got == [
        ("flaky", "retried", "flaky attempt 1",
         "attempt 1 of 3 failed (ValueError); it runs again at once"),
        ("flaky", "passed", None, None),
        ("doomed", "retried", "doomed attempt 1",
         "attempt 1 of 2 failed (ValueError); it runs again at once"),
        ("doomed", "failed", "doomed attempt 2", None),
        ("patient", "retried", "patient attempt 1",
         "attempt 1 of 2 failed (ValueError); it runs again in 3600 s"),
        ("patient", "skipped", None, "an attempt failed and it waited to be "
         "retried: the run was aborted"),
    ]
    conn = connect(path, readonly=True)
    [run] = runs(conn)
    conn.close()
    assert (run.passed, run.failed, run.skipped, run.retried) == (1, 1, 1, 3)


def test_a_retry_across_lots_updates_only_its_own_row(tmp_path):
    """The writer commits a lot at a time: an attempt handed out in one lot
    and retried in the next has its row updated, not the row of the attempt
    handed out after it in that lot."""
    path = tmp_path / "j.db"
    a = named("a")
    clock = Clock()
    with Journal(path) as journal:
        journal(clock.event("run-started"))
        journal(clock.event("dispatched", task=a))
        journal.flush()  # the first attempt's row is written
        journal(clock.event("retrying", 1, task=a, worker="w1",
                            res=TaskRes(a, excinfo=failure("once")), duration=1.0,
                            reason="attempt 1 of 2 failed (ValueError); it runs "
                            "again at once"))
        journal(clock.event("dispatched", task=a))
        journal.flush()  # so is the second's, beside it
        journal(clock.event("finished", 1, task=a, worker="w1", res=TaskRes(a),
                            duration=1.0))
        journal(clock.event("run-ended"))
    assert rows(path, "SELECT outcome, exc_message, worker FROM attempts "
                "ORDER BY id") == [("retried", "once", "w1"), ("passed", None, "w1")]


def test_a_resumed_run_goes_by_the_last_attempt(tmp_path):
    """Retried then passed: carried. Killed while it waited for its retry:
    it runs again, and the reason says so."""
    path = tmp_path / "j.db"
    a, b = named("a"), named("b")
    clock = Clock()
    retrying = "attempt 1 of 2 failed (ValueError); it runs again in 60 s"
    with Journal(path) as journal:
        journal(clock.event("run-started"))
        for task in (a, b):
            journal(clock.event("dispatched", task=task))
            journal(clock.event("retrying", 1, task=task,
                                res=TaskRes(task, excinfo=failure("x")),
                                reason=retrying))
        journal(clock.event("dispatched", task=a))
        journal(clock.event("finished", 1, task=a, res=TaskRes(a)))
        # killed here, while b waited for its retry
        plan = journal.plan([named("a"), named("b")])
    assert {d.identity: (d.carry, d.kind, d.reason) for d in plan.decisions} == {
        "a": (True, "passed", "passed in run 1"),
        "b": (False, "unfinished", f"never finished in run 1: {retrying}, but the "
              "run ended first"),
    }


def test_the_critical_path_goes_back_through_a_retry(tmp_path):
    path = tmp_path / "j.db"
    a = named("a")
    b = named("b")
    clock = Clock()
    with Journal(path) as journal:
        journal(clock.event("run-started", workers=2))
        journal(clock.event("dispatched", task=a))
        journal(clock.event("dispatched", task=b))
        # w1: a's first attempt 0-2; w2: b 0-1, then a's retry 2-3.5
        journal(clock.event("finished", 1, task=b, worker="w2", res=TaskRes(b),
                            duration=1.0))
        journal(clock.event("retrying", 1, task=a, worker="w1",
                            res=TaskRes(a, excinfo=failure("x")), duration=2.0,
                            reason="attempt 1 of 2 failed"))
        journal(clock.event("dispatched", task=a))
        journal(clock.event("finished", 1.5, task=a, worker="w2", res=TaskRes(a),
                            duration=1.5))
        journal(clock.event("run-ended"))
    conn = connect(path, readonly=True)
    steps = critical_path(attempts(conn))
    conn.close()
    # a's retry waited for its first attempt, which ended after b on its worker
    assert [(s.attempt.outcome, s.cause) for s in steps] == [
        ("retried", ""), ("passed", "retry"),
    ]


def test_a_retried_attempt_is_a_slice_and_the_counters_count_it_once(tmp_path):
    path = tmp_path / "t.json"
    a, b = named("a"), named("b")
    clock = Clock()
    with ChromeTrace(path) as trace:
        trace(clock.event("run-started", workers=1,
                          status=Sched([a, b]).status()._replace(total=2)))
        trace(clock.event("dispatched", task=a))
        trace(clock.event("started", task=a, worker="w1"))
        trace(clock.event("retrying", 1, task=a, worker="w1",
                          res=TaskRes(a, excinfo=failure("once")), duration=1.0,
                          reason="attempt 1 of 2 failed"))
        trace(clock.event("dispatched", task=a))
        trace(clock.event("started", task=a, worker="w1"))
        trace(clock.event("finished", 1, task=a, worker="w1", res=TaskRes(a),
                          duration=1.0))
        trace(clock.event("dispatched", task=b))
        trace(clock.event("finished", 1, task=b, worker="w1", res=TaskRes(b)))
        trace(clock.event("run-ended"))
    events, closed = _traceformat.load(path)
    assert closed
    _traceformat.check(events)
    slices = [(e["name"], e["args"]["outcome"]) for e in events if e["ph"] == "X"]
    assert slices == [("a", "retried"), ("a", "passed"), ("b", "passed")]
    # b waits until it is handed out: a's second attempt is not counted as it
    waiting = [e["args"]["waiting"] for e in events
               if e["ph"] == "C" and "waiting" in e["args"]]
    assert waiting == [2, 1, 1, 1, 1, 1, 1, 0, 0]

"""Where a recorded run's time went (``pexen.journal._analysis``), on a run
whose schedule the test sets (``_schedule.SCHEDULE``)."""

from __future__ import annotations

import pytest

from pexen.journal._analysis import (
    LockWait,
    critical_path,
    lock_waits,
    slowest,
    span,
    worker_use,
)
from pexen.journal._read import attempts, runs
from pexen.journal._store import connect
from tests.journal._schedule import record


@pytest.fixture
def recorded(tmp_path):
    path = tmp_path / "j.db"
    record(path)
    conn = connect(path, readonly=True)
    [run] = runs(conn)
    yield run, attempts(conn, [run.id])
    conn.close()


def test_the_run_and_its_counts(recorded):
    run, tried = recorded
    assert (run.id, run.passed, run.failed, run.skipped, run.carried,
            run.unfinished) == (1, 5, 1, 1, 0, 0)
    assert run.ended - run.started == 6.0
    assert (run.pool, run.workers, run.command) == (
        "thread pool, 2 workers", 2, "pexen run suite"
    )
    assert sorted(a.identity for a in tried) == [
        "api", "bad", "db", "final", "migrate", "report", "web"
    ]


def test_the_critical_path_follows_what_each_task_waited_for(recorded):
    _, tried = recorded
    steps = critical_path(tried)
    assert [(s.attempt.identity, s.cause) for s in steps] == [
        ("db", ""), ("migrate", "requires 'db'"), ("final", "requires 'm'"),
    ]


def test_the_critical_path_goes_through_locks_and_workers(tmp_path):
    """b waits for a's lock; c, with no requirement, waited for its worker."""
    path = tmp_path / "j.db"
    record(path, [
        ("a", "w1", 0, 2, False, {"claims": ["port"]}),
        ("b", "w2", 2, 3, False, {"claims": ["port"]}),
        ("c", "w2", 3, 7, False, {}),
    ], skipped=(), end=7)
    conn = connect(path, readonly=True)
    steps = critical_path(attempts(conn))
    conn.close()
    assert [(s.attempt.identity, s.cause) for s in steps] == [
        ("a", ""), ("b", "lock 'port'"), ("c", "worker"),
    ]


def test_worker_utilisation(recorded):
    run, tried = recorded
    run_span = span(tried, run.started, run.ended)
    assert run_span == 6.0
    got = [(u.worker, u.busy, u.n_tasks, round(u.utilisation, 3))
           for u in worker_use(tried, run_span)]
    assert got == [("w1", 6.0, 3, 1.0), ("w2", 4.0, 3, 0.667)]


def test_time_waiting_for_locks(recorded):
    """api was ready at once, but web held the port for its first second."""
    run, tried = recorded
    assert lock_waits(tried, run.started) == [LockWait("port", 1.0, 1)]


def test_slowest(recorded):
    _, tried = recorded
    assert [a.identity for a in slowest(tried, 3)] == ["migrate", "db", "api"]


def test_a_killed_run_spans_to_its_last_result(tmp_path):
    path = tmp_path / "j.db"
    record(path, skipped=())
    with connect(path) as conn:
        conn.execute("UPDATE runs SET ended = NULL")
    conn.close()
    conn = connect(path, readonly=True)
    [run] = runs(conn)
    assert run.ended is None
    assert span(attempts(conn), run.started, run.ended) == 6.0
    conn.close()

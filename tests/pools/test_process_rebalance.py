"""Work stealing in the process pool: no job waits behind a long task while
another worker is idle, and every job runs exactly once.

A long task here waits for a gate file that the test creates only once all
the short tasks have finished: if a short task were stuck behind it, the
gate would never come, and the long task reports that it gave up (after a
deadline that only a broken pool reaches). Where each task ran, and when,
comes back in its result (pid, monotonic start and end), and the checks are
on those intervals, never on how long anything took.
"""

from __future__ import annotations

import collections
import functools
import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pexen.sched import Sched
from pexen.sched._pools.base import Job
from pexen.sched._pools.process import run as process_run
from pexen.sched._pools.process import wire
from pexen.sched.meta import assign_val
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests.pools._process import held_by_one_worker, poll_for, with_kwargs


def _short(name: str):
    return with_kwargs(tasks.stamped, name=name)


def _long(gate, priority: int = 0):
    task = with_kwargs(tasks.gated, name="long", gate=str(gate))
    assign_val(task, priority=priority)
    return task


def _check_nothing_waited(rets: dict, n_short: int) -> None:
    """The long task's gate came, so every short task finished while it ran;
    none ran on its worker after it, and each ran once."""
    _name, long_pid, long_start, long_end, came = rets.pop("long")
    assert came, "short tasks waited behind the long task: its gate never came"
    assert sorted(rets) == sorted(f"short{i}" for i in range(n_short))
    for _name, pid, _start, end, _came in rets.values():
        assert pid != long_pid or end <= long_start
        assert end <= long_end


def test_jobs_held_behind_a_long_task_go_to_an_idle_worker(method, tmp_path):
    gate = tmp_path / "gate"
    pool = ProcessWorkerPool(1, spare=8, mp_context=method)
    first = _short("first")
    assign_val(first, priority=-2)
    shorts = [_short(f"short{i}") for i in range(12)]
    s = Sched([first, _long(gate, priority=-1), *shorts])
    gen = s.run(pool=pool)
    assert next(gen).ret[0] == "first"
    # white box, a precondition: the one worker holds the long task (running
    # or about to) and short tasks behind it, which only moving them can save
    assert len(held_by_one_worker(pool)) >= 2
    s.resize(2)  # the new worker is idle once it has run what is left
    rets = {}
    for res in gen:
        assert res.excinfo is None, res.excinfo
        rets[res.ret[0]] = res.ret
        if len(rets) == len(shorts):
            gate.touch()
    _check_nothing_waited(rets, len(shorts))


def test_a_worker_busy_with_a_long_task_is_planned_last(tmp_path):
    gate = tmp_path / "gate"
    pool = ProcessWorkerPool(2, spare=8, mp_context="fork")
    s = Sched([_long(gate, priority=-1), _short("warm")])
    gen = s.run(pool=pool)
    try:
        assert next(gen).ret[0] == "warm"
        run = pool._run
        # white box, preconditions: one worker runs the long task, and has for
        # STEAL_AFTER; the other is idle
        (busy,) = [w for w in run.workers if w.outstanding]
        (idle,) = [w for w in run.workers if not w.outstanding]
        assert poll_for(lambda: busy.slot[2] == wire.RUNNING and idle.ready
                        and time.monotonic() - busy.slot[1] >= process_run.STEAL_AFTER)
        plan = run._balance(run.workers, collections.deque([101, 102, 103]))
        assert plan == {idle: [101, 102, 103]}
    finally:
        gate.touch()
        rest = [res.ret[0] for res in gen]
    assert rest == ["long"]


def test_taking_jobs_back_as_the_worker_starts_them_runs_each_once(tmp_path):
    """After each batch is handed out, the parent takes back at once what the
    worker has not started, while the worker goes on starting jobs: the two
    race for every ticket, and every job still runs exactly once."""
    n = 300
    pool = ProcessWorkerPool(1, spare=n, mp_context="fork")
    pool.start()
    try:
        for key in range(n):
            kwargs = {"path": str(tmp_path / str(key))}
            pool.submit(Job(key, functools.partial(tasks.once), False, kwargs, {},
                            None))
        done, n_taken = [], 0
        while len(done) < n:
            done += pool.wait()  # then the worker holds what is left
            run = pool._run
            for worker in run.workers:
                taken = run._take_back(worker)
                n_taken += len(taken)
                run.backlog.extendleft(reversed(taken))  # out again at the next wait
    finally:
        pool.stop()
    assert n_taken  # a precondition: jobs were taken back
    assert [outcome.excinfo for outcome in done] == [None] * n
    assert sorted(outcome.key for outcome in done) == list(range(n))
    assert len(os.listdir(tmp_path)) == n


def test_more_jobs_than_the_tickets_pipe_holds():
    # one worker given 9,000 jobs at once: the tickets pipe (64 KiB on Linux,
    # 8 bytes a ticket) cannot take them all; the rest wait in the parent
    n = 9_000
    pool = ProcessWorkerPool(1, spare=n, mp_context="fork")
    results = list(Sched([functools.partial(int, i) for i in range(n)]).run(pool))
    assert sorted(res.ret for res in results) == list(range(n))


_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(
    data=st.data(),
    workers=st.integers(2, 3),
    spare=st.sampled_from([0, 1, 4, 16, "auto"]),
    n_free=st.integers(1, 30),
    steal_at_once=st.booleans(),
)
def test_every_job_runs_exactly_once(tmp_path_factory, data, workers, spare, n_free,
                                     steal_at_once):
    """Free tasks, and gated ones each let through once a number of free
    tasks have finished; fewer gated tasks than workers, so a worker is
    always free to take what waits behind them. With ``steal_at_once``,
    jobs move whenever a worker is idle, racing the workers for them."""
    tmp = tmp_path_factory.mktemp("once")
    n_gated = data.draw(st.integers(0, workers - 1))
    thresholds = data.draw(st.lists(st.integers(0, n_free), min_size=n_gated,
                                    max_size=n_gated))
    order = data.draw(st.permutations(range(n_free + n_gated)))
    gated = []
    for i, threshold in enumerate(thresholds):
        task = with_kwargs(tasks.gated, name=f"gated{i}", gate=str(tmp / f"gate{i}"))
        gated.append((threshold, tmp / f"gate{i}", task))
    free = [with_kwargs(tasks.once, path=str(tmp / f"free{i}")) for i in range(n_free)]
    all_tasks = [task for _t, _g, task in gated] + free
    s = Sched([all_tasks[i] for i in order])

    def open_gates(n_done: int) -> None:
        for threshold, gate, _task in gated:
            if threshold <= n_done:
                gate.touch()

    open_gates(0)
    n_done = 0
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        if steal_at_once:
            mp.setattr(process_run, "STEAL_AFTER", 0.0)
        for res in s.run(pool=ProcessWorkerPool(workers, spare)):
            assert res.excinfo is None, res.excinfo  # a free task run twice fails
            seen.append(res.task)
            if isinstance(res.ret, int):
                n_done += 1
                open_gates(n_done)
            else:
                assert res.ret[4], f"{res.ret[0]} gave up: free tasks never finished"
    assert sorted(map(id, seen)) == sorted(map(id, all_tasks))
    assert sorted(os.listdir(tmp)) == sorted(
        [f"free{i}" for i in range(n_free)] + [f"gate{i}" for i in range(n_gated)]
    )

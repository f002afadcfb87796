"""``Sched.attempts(task)`` (SPEC §11): how each task went, timed by its pool."""

from __future__ import annotations

import time

import pytest

from pexen.sched import ExceptionInfo, Sched, UnrunTasksWarning
from pexen.sched.meta import func_meta
from pexen.sched.pool import ProcessWorkerPool, WorkerPool
from tests import _proc_tasks as tasks
from tests._pools import START_METHODS


def passes() -> int:
    return 1


def test_each_task_that_ran_has_one_attempt(make_pool):
    @func_meta(provides=["x"])
    def provider():
        raise ValueError("no")

    @func_meta(requires=["x"])
    def dependent():
        pass

    sched = Sched([passes, provider, dependent])
    with pytest.warns(UnrunTasksWarning):
        list(sched.run(make_pool(workers=1, spare=1)))
    ((excinfo, duration),) = sched.attempts(passes)
    assert excinfo is None and duration is not None and duration >= 0
    ((excinfo, duration),) = sched.attempts(provider)
    assert isinstance(excinfo, ExceptionInfo) and excinfo.type is ValueError
    assert sched.attempts(dependent) == ()  # skipped: it never ran


def test_a_task_not_in_the_sched_is_a_key_error():
    sched = Sched([passes])
    with pytest.raises(KeyError):
        sched.attempts(tasks.getpid)
    assert sched.attempts(passes) == ()  # not run yet


def test_a_pool_that_does_not_time_gives_no_duration():
    class Untimed(WorkerPool):
        def __init__(self):
            super().__init__(workers=1, spare=0)
            self.jobs = []

        def _start(self):
            self.jobs = []

        def _stop(self, cancel):
            self.jobs = []

        def submit(self, job):
            self.jobs.append(job)

        def wait(self):
            key, task, _pass_shared, kwargs, shared, _timeout = self.jobs.pop()
            return [(key, shared, task(**kwargs), None)]

    sched = Sched([passes])
    assert [res.ret for res in sched.run(Untimed())] == [1]
    assert sched.attempts(passes) == ((None, None),)


@pytest.mark.parametrize("method", START_METHODS)
def test_the_process_pool_times_the_task_not_the_worker_start(method):
    """The duration brackets the task's own run and not its worker's start-up:
    it is shorter than the time from dispatch to result (which includes
    starting the worker process), and at least as long as the task says it
    ran. One clock: CLOCK_MONOTONIC is the same in every process here."""
    sched = Sched([tasks.timed_busy])
    pool = ProcessWorkerPool(workers=1, mp_context=method)
    dispatched = time.monotonic()
    (res,) = sched.run(pool)
    received = time.monotonic()
    task_start, task_end = res.ret
    ((excinfo, duration),) = sched.attempts(tasks.timed_busy)
    assert excinfo is None
    assert duration >= task_end - task_start
    assert dispatched < task_start  # the worker started in between
    assert duration < received - dispatched

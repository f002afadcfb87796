"""A pool that learns only later that a job it was asked to drop had not
started (as a worker process holding it would) reports it with an outcome
whose excinfo is ``DROPPED`` (pexen.sched._pools.base): the scheduler skips
that task, with the reason of the cancel or abort that asked, and yields no
result for it. The process pool no longer answers so (its tickets tell at
once), so a pool of the test's own does: in its ``wait()``, one job at a
time, in the order handed out."""

from __future__ import annotations

from pexen.sched import Sched
from pexen.sched._pools.base import DROPPED, WorkerPool


class LateDroppingPool(WorkerPool):
    """Runs the jobs one a ``wait()``; a job it is asked to drop (by
    ``cancel`` or ``drop_queued``) it cannot drop at once, and reports
    ``DROPPED`` at its turn."""

    def __init__(self, spare: int) -> None:
        super().__init__(workers=1, spare=spare)
        self.jobs: list = []
        self.to_drop: set[int] = set()

    def _start(self) -> None:
        self.jobs, self.to_drop = [], set()

    def _stop(self, cancel: bool) -> None:
        self.jobs = []

    def submit(self, job) -> None:
        self.jobs.append(job)

    def cancel(self, key: int, force: bool = False) -> bool:
        self.to_drop.add(key)
        return False  # an outcome comes, later

    def drop_queued(self) -> list[int]:
        self.to_drop.update(job.key for job in self.jobs)
        return []  # outcomes come, later

    def wait(self):
        key, task, _pass_shared, kwargs, shared, _timeout = self.jobs.pop(0)
        if key in self.to_drop:
            return [(key, shared, None, DROPPED)]
        return [(key, shared, task(**kwargs), None)]


def named(name):
    def fn():
        return name
    fn.__name__ = fn.__qualname__ = name
    return fn


def test_a_task_cancelled_and_reported_dropped_later_is_skipped():
    a, b, c = named("a"), named("b"), named("c")
    s = Sched([a, b, c])
    got = []
    for res in s.run(LateDroppingPool(spare=2)):  # all three handed out at once
        got.append(res.ret)
        if res.task is a:
            s.cancel(b)
    assert got == ["a", "c"]
    assert s.skipped == {
        b: "cancelled while queued in the pool: dropped before it started"
    }


def test_tasks_reported_dropped_after_an_abort_are_skipped_with_its_reason():
    a, b, c = named("a"), named("b"), named("c")
    s = Sched([a, b, c])
    events = []
    s.observe(lambda e: e.kind == "skipped" and events.append((e.name, e.reason)))
    got = []
    for res in s.run(LateDroppingPool(spare=2)):
        got.append(res.ret)
        s.abort("enough")
    assert got == ["a"]
    reason = "dropped from the pool's queue: the run was aborted: enough"
    assert s.skipped == {b: reason, c: reason}
    assert sorted(events) == [("b", reason), ("c", reason)]

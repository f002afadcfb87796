"""A journal of a run that went as a test says: who ran where, and when."""

from __future__ import annotations

from pexen.journal import Journal
from pexen.sched import TaskRes
from tests._events import Clock
from tests.journal._tasks import failure, named

# The run of the report tests: two workers, six seconds.
#  w1: db 0-2, migrate 2-5 (requires db), final 5-6 (requires m)
#  w2: web 0-1 (claims port), api 1-3 (claims port), bad 3-4 (fails)
SCHEDULE = [
    # name, worker, start, end, fails, metadata
    ("db", "w1", 0, 2, False, {"provides": ["db"]}),
    ("web", "w2", 0, 1, False, {"claims": ["port"]}),
    ("api", "w2", 1, 3, False, {"claims": ["port"]}),
    ("migrate", "w1", 2, 5, False, {"requires": ["db"], "provides": ["m"]}),
    ("bad", "w2", 3, 4, True, {"provides": ["r"]}),
    ("final", "w1", 5, 6, False, {"requires": ["m"]}),
]


def record(path, schedule=SCHEDULE, *, skipped=("report",), end=6.0, runs=1):
    """Record *runs* runs of *schedule* in the journal at *path*."""
    with Journal(path, command="pexen run suite", pool="thread pool, 2 workers") as j:
        for _ in range(runs):
            clock = Clock()
            t0 = clock.now
            tasks = {name: named(name, **fields)
                     for name, _, _, _, _, fields in schedule}
            j(clock.event("run-started", workers=2))
            events = []
            for name, worker, start, stop, fails, _ in schedule:
                task = tasks[name]
                excinfo = failure(f"{name} broke", RuntimeError) if fails else None
                res = TaskRes(task, excinfo=excinfo)
                events.append((start, 0, "dispatched", dict(task=task)))
                events.append((start, 1, "started", dict(task=task, worker=worker)))
                events.append((stop, 2, "finished", dict(
                    task=task, worker=worker, res=res, duration=stop - start)))
            for when, _, kind, fields in sorted(events, key=lambda e: e[:2]):
                clock.now = t0 + when
                j(clock.event(kind, **fields))
            clock.now = t0 + end
            for name in skipped:
                j(clock.event("skipped", task=named(name),
                              reason="requires tag 'r', never provided because "
                              "'bad' failed"))
            j(clock.event("run-ended"))

"""Where the time of a recorded run went: its critical path, its workers'
utilisation, its waits for locks.

Plain functions over the ``Attempt`` records of one run (``_read``), for
``pexen report``. Only attempts that ran (passed or failed, with a start and
an end) take part.

* The **critical path** ends at the attempt that ended last. Each step goes
  back to what kept the attempt from starting earlier: of the attempts that
  ended before it started, the latest to end among those that provided a tag
  it requires, held a lock it waited for, ran before it on its worker, or
  were its task's attempt before (a retry).
* A worker's **utilisation** is the time it ran tasks over the run's span.
* A task's **wait for a lock** is the time, between the moment its required
  tags were all provided and its start, during which another attempt held a
  resource it claims or uses in a conflicting way.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import NamedTuple

from pexen.journal._read import Attempt
from pexen.journal._store import FAILED, PASSED, RETRIED

_EPSILON = 1e-6  # seconds: times recorded by separate clocks reads


class Step(NamedTuple):
    """One attempt on the critical path and why it waited for the one before
    (``cause``: ``"requires 'db'"``, ``"lock 'port'"``, ``"worker"``; empty
    for the first)."""

    attempt: Attempt
    cause: str


class WorkerUse(NamedTuple):
    worker: str
    busy: float
    n_tasks: int
    utilisation: float  # busy over the run's span, 0..1


class LockWait(NamedTuple):
    resource: str
    waited: float  # seconds, added over the tasks that waited
    n_tasks: int


def ran(attempts: list[Attempt]) -> list[Attempt]:
    """The attempts that ran, with a start and an end, by start."""
    return sorted(
        (a for a in attempts if a.outcome in (PASSED, FAILED, RETRIED)
         and a.start is not None and a.end is not None),
        key=lambda a: (a.start, a.id),
    )


def span(attempts: list[Attempt], started: float, ended: float | None) -> float:
    """The run's length: to its end, or to the last attempt's end if it has none."""
    ends = [a.end for a in ran(attempts) if a.end is not None]
    last = ended if ended is not None else max(ends, default=started)
    return max(last - started, 0.0)


def _conflicts(a: Attempt, b: Attempt) -> list[str]:
    """The resources *a* and *b* cannot hold at once."""
    return sorted(
        {res for res in a.claims if res in b.claims or res in b.uses}
        | {res for res in a.uses if res in b.claims}
    )


def _by_resource(done: list[Attempt]) -> dict[str, list[Attempt]]:
    found: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in done:
        for res in {*attempt.claims, *attempt.uses}:
            found[res].append(attempt)
    return found


def critical_path(attempts: list[Attempt]) -> list[Step]:
    """The chain of attempts that set the run's length, first one first."""
    done = ran(attempts)
    if not done:
        return []
    providers: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in done:
        if attempt.outcome == PASSED:
            for tag in attempt.provides:
                providers[tag].append(attempt)
    holders = _by_resource(done)
    previous: dict[int, Attempt] = {}  # the attempt before, on the same worker
    on_worker: dict[str, list[Attempt]] = defaultdict(list)
    for attempt in done:
        if attempt.worker is not None:
            on_worker[attempt.worker].append(attempt)
    for line in on_worker.values():
        for before, after in itertools.pairwise(line):
            previous[after.id] = before
    retry_of: dict[int, Attempt] = {}  # the task's attempt before, if retried
    last_of: dict[str, Attempt] = {}
    for attempt in sorted(done, key=lambda a: a.id):
        earlier = last_of.get(attempt.identity)
        if earlier is not None and earlier.outcome == RETRIED:
            retry_of[attempt.id] = earlier
        last_of[attempt.identity] = attempt
    current = max(done, key=lambda a: (a.end, a.id))
    path = [current]
    cause_of: dict[int, str] = {}  # why an attempt waited for the one before it
    while True:
        start = current.start
        assert start is not None
        candidates = [
            (f"requires {tag!r}", provider)
            for tag in sorted(current.requires)
            for provider in providers.get(tag, ())
        ]
        for res in sorted({*current.claims, *current.uses}):
            candidates += [
                (f"lock {res!r}", other)
                for other in holders[res]
                if other is not current and res in _conflicts(current, other)
            ]
        if current.id in previous:
            candidates.append(("worker", previous[current.id]))
        if current.id in retry_of:
            candidates.append(("retry", retry_of[current.id]))
        best: tuple[float, str, Attempt] | None = None
        for cause, other in candidates:
            other_end = other.end
            assert other_end is not None
            if other_end <= start + _EPSILON and (best is None or other_end > best[0]):
                best = (other_end, cause, other)
        if best is None:
            break
        _, cause_of[current.id], current = best
        path.append(current)
    return [Step(attempt, cause_of.get(attempt.id, "")) for attempt in reversed(path)]


def worker_use(attempts: list[Attempt], run_span: float) -> list[WorkerUse]:
    """Each named worker's busy time and utilisation, busiest first."""
    busy: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for attempt in ran(attempts):
        if attempt.worker is not None:
            assert attempt.end is not None and attempt.start is not None
            busy[attempt.worker] += attempt.end - attempt.start
            counts[attempt.worker] += 1
    return sorted(
        (WorkerUse(worker, seconds, counts[worker],
                   seconds / run_span if run_span > 0 else 0.0)
         for worker, seconds in busy.items()),
        key=lambda use: (-use.busy, use.worker),
    )


def _covered(start: float, end: float, intervals: list[tuple[float, float]]) -> float:
    """How much of [start, end] the union of *intervals* covers."""
    total, reach = 0.0, start
    for low, high in sorted(intervals):
        low, high = max(low, reach), min(high, end)
        if high > low:
            total += high - low
            reach = high
    return total


def lock_waits(attempts: list[Attempt], run_start: float) -> list[LockWait]:
    """Time spent waiting for each resource, longest first."""
    done = ran(attempts)
    provided: dict[str, float] = {}
    for attempt in done:
        if attempt.outcome == PASSED:
            assert attempt.end is not None
            for tag in attempt.provides:
                provided[tag] = min(provided.get(tag, attempt.end), attempt.end)
    holders = _by_resource(done)
    waited: dict[str, float] = defaultdict(float)
    waiters: dict[str, int] = defaultdict(int)
    for attempt in done:
        if not (attempt.claims or attempt.uses):
            continue
        assert attempt.start is not None
        ready = max([run_start, *(provided.get(tag, run_start) for tag in
                                  attempt.requires)])
        intervals_of: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for res in {*attempt.claims, *attempt.uses}:
            for other in holders[res]:
                if other is not attempt and res in _conflicts(attempt, other):
                    assert other.start is not None and other.end is not None
                    intervals_of[res].append((other.start, other.end))
        for res, intervals in intervals_of.items():
            seconds = _covered(ready, attempt.start, intervals)
            if seconds > _EPSILON:
                waited[res] += seconds
                waiters[res] += 1
    return sorted(
        (LockWait(res, seconds, waiters[res]) for res, seconds in waited.items()),
        key=lambda wait: (-wait.waited, wait.resource),
    )


def slowest(attempts: list[Attempt], n: int) -> list[Attempt]:
    """The *n* attempts that ran longest."""
    done = ran(attempts)
    return sorted(done, key=lambda a: (-(a.end - a.start), a.id))[:n]  # type: ignore[operator]

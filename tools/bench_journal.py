"""The journal's cost: a run observed by a ``Journal``, against the same run
unobserved (issue 16: at most 2x on no-op tasks, at most 5% on 1 ms tasks).

    python tools/bench.py --suite journal [--quick]

The runs use ``ThreadWorkerPool(workers=2)``; the journal's time counts
until every result is committed (``flush()``). Tasks carry call paths, as a
factory's do, so each has an identity of its own. A third run, observed by
an observer that does nothing (and hears every kind of event, where the
journal hears no "started"), shows what observing costs the scheduler
before any observer does any work: the part of the journal's cost that is
not the journal's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from bench import interleaved, us_per_task

from pexen.journal import Journal
from pexen.sched import Sched
from pexen.sched._naming import CALLPATH_ATTR
from pexen.sched.pool import ThreadWorkerPool


def tasks(n: int, seconds: float) -> list:
    """*n* tasks named bench/t<i>, each sleeping *seconds* (0: a no-op)."""
    def make(i: int) -> Any:
        if seconds:
            def task() -> None:
                time.sleep(seconds)
        else:
            def task() -> None:
                pass
        setattr(task, CALLPATH_ATTR, ("bench", f"t{i}"))
        return task

    return [make(i) for i in range(n)]


def timed_run(made: list, observer: Any = None) -> float:
    sched = Sched(made)
    if observer is not None:
        sched.observe(observer)
    start = time.perf_counter()
    for res in sched.run(ThreadWorkerPool(workers=2)):
        assert res.excinfo is None, res
    if isinstance(observer, Journal):
        observer.flush()  # done once every result is committed
    return time.perf_counter() - start


def _nothing(event: Any) -> None:
    """An observer that does nothing."""


def compare(n: int, seconds: float, rounds: int, directory: str) -> list[list[float]]:
    """Times of *rounds* runs unobserved, observed by an observer doing
    nothing, and with a journal, taking turns."""
    journals: list[Any] = []

    def observed() -> float:
        journal = Journal(os.path.join(directory, f"j{len(journals)}.db"))
        journals.append(journal)
        try:
            return timed_run(tasks(n, seconds), journal)
        finally:
            journal.close()

    return interleaved(
        lambda: timed_run(tasks(n, seconds)),
        lambda: timed_run(tasks(n, seconds), _nothing),
        observed,
        rounds=rounds,
    )


def report(label: str, n: int, times: list[list[float]]) -> None:
    plain, nothing, journal = (min(runs) for runs in times)
    print(f"  {label:22} without {us_per_task(plain, n):8.2f} us/task   "
          f"with a journal {us_per_task(journal, n):8.2f} us/task   "
          f"x{journal / plain:.2f}   (observed, doing nothing: x{nothing / plain:.2f})")


def run(args: argparse.Namespace) -> None:
    quick = args.quick
    print("\njournal: ThreadWorkerPool(2), best of the rounds, taking turns")
    with tempfile.TemporaryDirectory() as directory:
        n = 1_000 if quick else 10_000
        report(f"{n:,} no-op tasks", n, compare(n, 0.0, 3 if quick else 5, directory))
        n = 200 if quick else 1_000
        report(f"{n:,} tasks of 1 ms", n, compare(n, 0.001, 3, directory))

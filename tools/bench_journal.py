"""The journal's cost: a run observed by a ``Journal``, against the same run
unobserved (issue 16: at most 2x on no-op tasks, at most 5% on 1 ms tasks).

    python tools/bench.py --suite journal [--quick]

Both runs use ``ThreadWorkerPool(workers=2)``; the journal's time counts
until every result is committed (``flush()``). Tasks carry call paths, as a
factory's do, so each has an identity of its own.
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


def timed_run(made: list, journal: Journal | None) -> float:
    sched = Sched(made)
    if journal is not None:
        sched.observe(journal)
    start = time.perf_counter()
    for res in sched.run(ThreadWorkerPool(workers=2)):
        assert res.excinfo is None, res
    if journal is not None:
        journal.flush()  # done once every result is committed
    return time.perf_counter() - start


def compare(n: int, seconds: float, rounds: int, directory: str) -> tuple[list, list]:
    """Times of *rounds* runs without and with a journal, taking turns."""
    journals: list[Any] = []

    def observed() -> float:
        journal = Journal(os.path.join(directory, f"j{len(journals)}.db"))
        journals.append(journal)
        try:
            return timed_run(tasks(n, seconds), journal)
        finally:
            journal.close()

    return interleaved(
        lambda: timed_run(tasks(n, seconds), None), observed, rounds=rounds
    )


def report(label: str, n: int, plain: list[float], journal: list[float]) -> None:
    best_plain, best_journal = min(plain), min(journal)
    print(f"  {label:22} without {us_per_task(best_plain, n):8.2f} us/task   "
          f"with a journal {us_per_task(best_journal, n):8.2f} us/task   "
          f"x{best_journal / best_plain:.2f}")


def run(args: argparse.Namespace) -> None:
    quick = args.quick
    print("\njournal: ThreadWorkerPool(2), best of the rounds, taking turns")
    with tempfile.TemporaryDirectory() as directory:
        n = 1_000 if quick else 10_000
        plain, journal = compare(n, 0.0, 3 if quick else 5, directory)
        report(f"{n:,} no-op tasks", n, plain, journal)
        n = 200 if quick else 1_000
        plain, journal = compare(n, 0.001, 3, directory)
        report(f"{n:,} tasks of 1 ms", n, plain, journal)

"""Benchmarks of driving a run live (issue 13): what watching a run costs.

    python tools/bench_live.py           # on its own
    python tools/bench.py --suite live   # as a suite of tools/bench.py

- ``Sched.observe`` with a no-op callback, and ``Sched.status()`` called
  after every result, on 100,000 no-op tasks (thread and inline pools),
  against the same run unwatched; the target is at most 20% each. Rounds
  take turns, so a noisy spell on a shared machine hits each alike.
- The time from ``Sched.abort()`` to the generator's end with 1,000 tasks
  queued in the pool behind a running one (thread and process pools).
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench import interleaved, noop_tasks, us_per_task

from pexen import PexenWarning
from pexen.sched import Sched
from pexen.sched.pool import (
    InlineWorkerPool,
    ProcessWorkerPool,
    ThreadWorkerPool,
    WorkerPool,
)

warnings.simplefilter("ignore", PexenWarning)


def run_watched(tasks: list, pool: WorkerPool, *, observe: bool = False,
                status: bool = False) -> float:
    """One run: observed by a no-op callback, or asked status() per result."""
    s = Sched(tasks)
    if observe:
        s.observe(lambda event: None)
    count = 0
    start = time.perf_counter()
    if status:
        for _ in s.run(pool=pool):
            s.status()
            count += 1
    else:
        for _ in s.run(pool=pool):
            count += 1
    elapsed = time.perf_counter() - start
    assert count == len(tasks), (count, len(tasks))
    return elapsed


def blocker(path: str) -> None:
    """Say it started, then wait until *path* exists (files: a process pool's
    tasks see them too)."""
    pathlib.Path(path + ".started").touch()
    while not os.path.exists(path):
        time.sleep(0.0002)


def abort_latency(pool: WorkerPool, n_queued: int, flag: str) -> tuple[float, int]:
    """Seconds from ``abort()`` to the generator's end, with *n_queued* tasks
    queued in the pool behind a running one; and how many were skipped. The
    running task is let go as soon as the loop has taken the abort in."""
    tasks = [functools.partial(blocker, flag), *noop_tasks(n_queued)]
    s = Sched(tasks)
    taken_in = threading.Event()
    s.observe(lambda event: event.kind == "aborting" and taken_in.set())
    aborted: list[float] = []

    def abort_when_all_out() -> None:
        while not (os.path.exists(flag + ".started")
                   and s.status().queued == n_queued):
            time.sleep(0.001)
        aborted.append(time.perf_counter())
        s.abort("bench")
        taken_in.wait()
        pathlib.Path(flag).touch()  # the running task may end now

    thread = threading.Thread(target=abort_when_all_out)
    thread.start()
    list(s.run(pool=pool))
    ended = time.perf_counter()
    thread.join()
    os.unlink(flag)
    os.unlink(flag + ".started")
    return ended - aborted[0], len(s.skipped)


def run(args: argparse.Namespace) -> None:
    n = 100_000 // (10 if args.quick else 1)
    pools = (("ThreadWorkerPool(2)", lambda: ThreadWorkerPool(2)),
             ("InlineWorkerPool()", InlineWorkerPool))
    for label, make_pool in pools:
        print(f"\nwatching a run: {n:,} no-op tasks, {label}, best of 5 rounds "
              f"taking turns")
        plain, observed, status = interleaved(
            lambda make_pool=make_pool: run_watched(noop_tasks(n), make_pool()),
            lambda make_pool=make_pool: run_watched(noop_tasks(n), make_pool(),
                                                    observe=True),
            lambda make_pool=make_pool: run_watched(noop_tasks(n), make_pool(),
                                                    status=True),
        )
        base = min(plain)
        print(f"  {'unwatched':30} {us_per_task(base, n):6.2f} us/task")
        for what, times in (("observe(no-op callback)", observed),
                            ("status() after every result", status)):
            ratios = sorted(t / p for t, p in zip(times, plain, strict=True))
            print(f"  {what:30} {us_per_task(min(times), n):6.2f} us/task  "
                  f"{(min(times) / base - 1) * 100:+6.1f}% (best of each; per "
                  f"round, median {(statistics.median(ratios) - 1) * 100:+.1f}%)")

    n_queued = 1_000
    print(f"\nabort(): from the call to the generator's end, {n_queued:,} tasks "
          f"queued in the pool behind a running one (median of 5)")
    makers = (
        (f"ThreadWorkerPool(1, spare={n_queued})",
         lambda: ThreadWorkerPool(1, spare=n_queued)),
        (f"ProcessWorkerPool(1, spare={n_queued}), fork",
         lambda: ProcessWorkerPool(1, spare=n_queued, mp_context="fork")),
    )
    with tempfile.TemporaryDirectory() as tmp:
        flag = os.path.join(tmp, "release")
        for label, make_pool in makers:
            runs = [abort_latency(make_pool(), n_queued, flag) for _ in range(5)]
            seconds = statistics.median(t for t, _ in runs)
            skipped = sorted({k for _, k in runs})
            print(f"  {label:42} {seconds * 1e3:7.2f} ms  (tasks skipped: "
                  f"{', '.join(map(str, skipped))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    run(parser.parse_args())


if __name__ == "__main__":
    # run as a script: import this file as a module, so blocker is found by name
    import bench_live

    bench_live.main()

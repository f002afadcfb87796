"""Benchmarks of ProcessWorkerPool against the standard library, side by side.

    python tools/bench_process.py            # on its own
    python tools/bench_process.py --quick    # smaller sizes, for a smoke test
    python tools/bench.py --suite process    # as a suite of tools/bench.py

flat: 20,000 no-op tasks through Sched+ProcessWorkerPool(2) (default
settings, spare=1, spare=64; partials of a module function, which travel by
reference, then callables of ``__main__``, which travel by value) against
ProcessPoolExecutor(2) (submit + as_completed) and
multiprocessing.Pool(2).imap_unordered with chunksize 1 and 64, every one on
the same start method. Each figure is a whole run,
start-up and shutdown of the workers included, best of three, after one
untimed warm-up run of each (which starts the shared forkserver).

burst: 200 tasks of 1 ms (sleeps) with long ones among them (one of 2 s,
or two of 1 s, in the middle of the list), on two workers, default settings
and spare=64: the makespan (from the first task's start to the last one's
end, as the tasks measure them) against the ideal: the tasks in list order,
each on the first worker free, at no cost (about max(longest task, total
work / workers)). A job handed to the worker that picks up a long task must
not wait behind it while the other worker is idle.

cpu: 16 tasks of ~0.1 s pure-Python work each, serial in this process, then
on two worker processes: the speedup. The same rules for both pools: each
run starts its two workers and stops them inside the timed region (a pool
made per run, as a user's script would), and an empty run of each shows
what that start-up and shutdown cost.

The runners take turns, round after round, and each keeps its best time, so
a noisy spell on a shared machine hits every runner alike. Figures are
wall-clock and depend on the machine; compare the ratios of one run, not
numbers from different runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import heapq
import multiprocessing
import os
import sys
import time
import warnings

if __name__ == "__main__":
    # run as a script: import this file as a module, so the tasks below are
    # found by name in the workers of every runner, as they would be there
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_process

    bench_process.main()
    raise SystemExit

from pexen import PexenWarning
from pexen.sched import Sched
from pexen.sched._pools.process import default_start_method
from pexen.sched.pool import ProcessWorkerPool

WORKERS = 2


def noop() -> None:
    """The no-op task."""


def noop_item(_item: object) -> None:
    """The no-op task, for map-style APIs that pass an item."""


def nap(seconds: float) -> tuple[float, float]:
    """Take *seconds* without using a CPU; return when it started and ended."""
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


def spin(n: int) -> int:
    """Pure-Python work: about n loop iterations."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(seconds: float) -> int:
    """The ``spin`` argument that takes about *seconds* here."""
    n = 100_000
    while True:
        start = time.perf_counter()
        spin(n)
        took = time.perf_counter() - start
        if took > 0.02:
            return max(1, int(n * seconds / took))
        n *= 4


def best_interleaved(rounds: int, *runners) -> list[float]:
    """Best time of each runner over *rounds*, taking turns."""
    return [min(times) for times in interleaved(rounds, *runners)]


def interleaved(rounds: int, *runners) -> list[list[float]]:
    """Every time of each runner over *rounds*, taking turns."""
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(rounds):
        for i, runner in enumerate(runners):
            times[i].append(runner())
    return times


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- the runners ---------------------------------------------------------------


# Tasks that must travel by value: a class and closures of ``__main__``, which
# a worker cannot import (as in a user's script run with ``python script.py``).
MAIN_CODE = """
class Task:
    def __call__(self):
        return None


def make_closure(i):
    def task():
        return i
    return task
"""


def main_namespace() -> dict:
    namespace = {"__name__": "__main__"}
    exec(MAIN_CODE, namespace)
    return namespace


def run_pexen(tasks: list, method: str, spare: int | str | None = None) -> float:
    def go():
        kwargs = {} if spare is None else {"spare": spare}
        pool = ProcessWorkerPool(WORKERS, mp_context=method, **kwargs)
        count = 0
        for res in Sched(tasks).run(pool=pool):
            if res.excinfo is not None:
                raise RuntimeError(f"a task failed: {res.excinfo.val!r}")
            count += 1
        assert count == len(tasks), (count, len(tasks))

    return timed(go)


def run_ppe(fn, n: int, method: str, arg=None) -> float:
    def go():
        ctx = multiprocessing.get_context(method)
        with cf.ProcessPoolExecutor(WORKERS, mp_context=ctx) as ex:
            args = () if arg is None else (arg,)
            futures = [ex.submit(fn, *args) for _ in range(n)]
            for future in cf.as_completed(futures):
                future.result()

    return timed(go)


def run_mp_pool(n: int, method: str, chunksize: int) -> float:
    def go():
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(WORKERS) as pool:
            for _ in pool.imap_unordered(noop_item, range(n), chunksize=chunksize):
                pass
            pool.close()
            pool.join()

    return timed(go)


# -- the suites ----------------------------------------------------------------


def warm_up(method: str) -> None:
    """One small untimed run of each runner: the forkserver (shared by all)
    starts here, not in whichever runner comes first, and imports are done."""
    run_pexen([functools.partial(noop) for _ in range(10)], method)
    run_ppe(noop, 10, method)
    run_mp_pool(10, method, 1)


def flat(n: int, method: str, runs: int) -> None:
    def partials():
        return [functools.partial(noop) for _ in range(n)]

    main = main_namespace()

    def instances():
        return [main["Task"]() for _ in range(n)]

    def closures():
        return [main["make_closure"](i) for i in range(n)]

    runners = [
        ("ProcessPoolExecutor(2), submit + as_completed",
         lambda: run_ppe(noop, n, method)),
        ("multiprocessing.Pool(2).imap_unordered, chunksize=1",
         lambda: run_mp_pool(n, method, 1)),
        ("multiprocessing.Pool(2).imap_unordered, chunksize=64",
         lambda: run_mp_pool(n, method, 64)),
        ("pexen Sched+ProcessWorkerPool(2), defaults",
         lambda: run_pexen(partials(), method)),
        ("pexen ..., spare=1",
         lambda: run_pexen(partials(), method, spare=1)),
        ("pexen ..., spare=64",
         lambda: run_pexen(partials(), method, spare=64)),
        ("pexen defaults, by value: instances of a __main__ class",
         lambda: run_pexen(instances(), method)),
        ("pexen defaults, by value: closures of __main__",
         lambda: run_pexen(closures(), method)),
    ]
    best = best_interleaved(runs, *(runner for _name, runner in runners))
    rows = [
        (name, seconds) for (name, _runner), seconds in zip(runners, best, strict=True)
    ]
    ppe = rows[0][1]
    print(f"\nflat: {n:,} no-op tasks, {WORKERS} worker processes ({method}), "
          f"best of {runs}, taking turns")
    print(f"  {'runner':54} {'total':>8} {'per task':>10} {'throughput':>11}")
    for name, seconds in rows:
        print(f"  {name:54} {seconds:7.3f}s {seconds / n * 1e6:7.1f} us "
              f"{ppe / seconds:8.2f}x PPE")
    chunked = rows[2][1]
    for name, seconds in rows[3:6]:
        print(f"  {name}: {chunked / seconds:.0%} of the chunksize=64 throughput")
    by_reference = rows[3][1]
    for name, seconds in rows[6:]:
        print(f"  {name}: {seconds / by_reference:.2f}x the time of partials "
              f"(by reference)")


def run_span(durations: list[float], method: str, spare: int | None) -> float:
    """Seconds from the first task's start to the last one's end, in a run of
    ``nap`` tasks (workers start before, and stop after, that span)."""
    kwargs = {} if spare is None else {"spare": spare}
    pool = ProcessWorkerPool(WORKERS, mp_context=method, **kwargs)
    spans = [res.ret for res in Sched([functools.partial(nap, d) for d in durations])
             .run(pool=pool)]
    assert len(spans) == len(durations), (len(spans), len(durations))
    return max(end for _start, end in spans) - min(start for start, _end in spans)


def list_schedule(durations: list[float], workers: int) -> float:
    """The makespan of *durations* in list order, each task on the first
    worker free, at no cost: what a pool that never lets a job wait behind
    another while a worker is free would reach."""
    free_at = [0.0] * workers
    for duration in durations:
        heapq.heappush(free_at, heapq.heappop(free_at) + duration)
    return max(free_at)


def burst(n_short: int, long: float, method: str, runs: int) -> None:
    short = [0.001] * n_short
    half = n_short // 2
    cases = [
        (f"{n_short} x 1 ms, one of {long:g} s among them",
         [*short[:half], long, *short[half:]]),
        (f"{n_short} x 1 ms, two of {long / 2:g} s among them",
         [*short[:half], long / 2, long / 2, *short[half:]]),
    ]
    runners = []
    for name, durations in cases:
        for spare in (None, 64):
            label = f"{name}, {'defaults' if spare is None else f'spare={spare}'}"
            ideal = list_schedule(durations, WORKERS)
            runners.append((label, ideal, functools.partial(
                run_span, durations, method, spare)))
    times = interleaved(runs, *(go for _label, _ideal, go in runners))
    print(f"\nburst: short tasks with long ones among them, {WORKERS} worker "
          f"processes ({method}), {runs} runs each, taking turns")
    print(f"  {'case':50} {'ideal':>7} {'makespan best':>14} {'worst':>8} "
          f"{'excess worst':>13}")
    for (label, ideal, _go), took in zip(runners, times, strict=True):
        print(f"  {label:50} {ideal:6.3f}s {min(took):13.3f}s {max(took):7.3f}s "
              f"{max(took) - ideal:+12.3f}s")
    print("  (makespan: from the first task's start to the last one's end; "
          "ideal: the tasks in list order, each on the first worker free, at no "
          "cost; where the long tasks land varies from run to run, so the worst "
          "run counts)")


def cpu(n_tasks: int, seconds: float, method: str, runs: int) -> None:
    work = calibrate(seconds)
    tasks = [functools.partial(spin, work) for _ in range(n_tasks)]
    idle = [functools.partial(noop) for _ in range(WORKERS)]
    serial, pexen, ppe, pexen_idle, ppe_idle = best_interleaved(
        runs,
        lambda: timed(lambda: [task() for task in tasks]),
        lambda: run_pexen(tasks, method),
        lambda: run_ppe(spin, n_tasks, method, arg=work),
        lambda: run_pexen(idle, method),  # start-up and shutdown alone
        lambda: run_ppe(noop, WORKERS, method),
    )
    print(f"\ncpu: {n_tasks} tasks of ~{seconds:g} s pure-Python work, "
          f"{WORKERS} worker processes ({method}), {os.cpu_count()} CPUs, "
          f"best of {runs}, taking turns")
    print(f"  {'runner':54} {'total':>8} {'speedup':>9} {'start+stop':>11}")
    print(f"  {'serial, in this process':54} {serial:7.3f}s {1:8.2f}x")
    for name, took, overhead in [
        ("ProcessPoolExecutor(2)", ppe, ppe_idle),
        ("pexen Sched+ProcessWorkerPool(2)", pexen, pexen_idle),
    ]:
        print(f"  {name:54} {took:7.3f}s {serial / took:8.2f}x "
              f"{overhead * 1e3:8.1f} ms")
    print(f"  (each pool's total includes starting and stopping its workers; "
          f"start+stop is an empty run of {WORKERS} no-op tasks)")


def run(args: argparse.Namespace) -> None:
    """The process suite; *args* needs ``quick`` (and may have ``method``)."""
    warnings.simplefilter("ignore", PexenWarning)
    method = getattr(args, "method", None) or default_start_method()
    quick = getattr(args, "quick", False)
    runs = 1 if quick else 3
    warm_up(method)
    flat(2_000 if quick else 20_000, method, runs)
    # where the long tasks land varies: more rounds, for the worst case
    burst(100 if quick else 200, 1.0 if quick else 2.0, method, 2 if quick else 5)
    cpu(4 if quick else 16, 0.1, method, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--method", choices=multiprocessing.get_all_start_methods(),
                        help=f"start method (default: {default_start_method()})")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {sys.platform}")
    run(args)

"""Benchmarks: pexen side by side with the standard library, from one run.

    python tools/bench.py                 # the core suite (threads, scheduler)
    python tools/bench.py --suite process # ProcessWorkerPool (tools/bench_process.py)
    python tools/bench.py --suite cluster # Dask and MPI (tools/bench_cluster.py)
    python tools/bench.py --suite live    # observe, status(), abort() (bench_live.py)
    python tools/bench.py --suite map     # pexen.map (tools/bench_map.py)
    python tools/bench.py --suite async   # asyncio (tools/bench_async.py)
    python tools/bench.py --suite order   # Sched(order=...) (tools/bench_order.py)
    python tools/bench.py --suite journal # with a journal (tools/bench_journal.py)
    python tools/bench.py --suite all
    python tools/bench.py --quick         # smaller sizes, for a smoke test

Figures are wall-clock and depend on the machine; compare the ratios printed
in one run, not numbers from different runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import gc
import graphlib
import importlib
import pathlib
import random
import statistics
import sys
import threading
import time
import tracemalloc
import warnings
from queue import SimpleQueue
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from pexen import PexenWarning
from pexen.sched import Sched
from pexen.sched._planner import Planner
from pexen.sched.meta import assign_val
from pexen.sched.pool import ThreadWorkerPool, WorkerPool

warnings.simplefilter("ignore", PexenWarning)


def noop_tasks(n: int) -> list:
    """*n* distinct no-op callables (a task object added twice runs once)."""
    return [lambda: None for _ in range(n)]


def noop() -> None:
    """A module-level no-op, for partials."""


class NoopCallable:
    """A callable object: the call signature is the class's ``__call__``."""

    def __call__(self) -> None:
        pass


def closure_tasks(n: int) -> list:
    """*n* closures, each over its own value."""
    def make(i: int):
        def task() -> int:
            return i
        return task
    return [make(i) for i in range(n)]


# n distinct no-op tasks of each kind of callable the scheduler takes
TASK_KINDS = {
    "functions": noop_tasks,
    "closures": closure_tasks,
    "partials": lambda n: [functools.partial(noop) for _ in range(n)],
    "callable objects": lambda n: [NoopCallable() for _ in range(n)],
}


def run_pexen(
    tasks: list, workers: int = 2, pool: WorkerPool | None = None, **pool_kw: Any
) -> float:
    start = time.perf_counter()
    count = 0
    pool = pool or ThreadWorkerPool(workers=workers, **pool_kw)
    for _ in Sched(tasks).run(pool=pool):
        count += 1
    elapsed = time.perf_counter() - start
    assert count == len(tasks), (count, len(tasks))
    return elapsed


def claiming_tasks(n: int, resource: str = "db") -> list:
    """*n* no-op tasks that all claim one resource (a queue on one lock)."""
    tasks = noop_tasks(n)
    for task in tasks:
        assign_val(task, claims=[resource])
    return tasks


def drive_planner(tasks: list) -> float:
    """Hand out every task that can go, complete one, repeat: the planner's
    own cost when all tasks are ready at once (no threads, no pool)."""
    start = time.perf_counter()
    planner = Planner(tasks, {})
    out = []
    while True:
        while (info := planner.pop_ready()) is not None:
            out.append(info)
        if not out:
            break
        planner.complete(out.pop(), {}, None)
    return time.perf_counter() - start


def run_tpe_locked(n: int, workers: int = 2) -> float:
    """The standard library's way: every task takes one ``threading.Lock``."""
    lock = threading.Lock()

    def task() -> None:
        with lock:
            pass

    return run_tpe([task] * n, workers)


def run_tpe(tasks: list, workers: int = 2) -> float:
    start = time.perf_counter()
    with cf.ThreadPoolExecutor(workers) as ex:
        futures = [ex.submit(task) for task in tasks]
        for future in cf.as_completed(futures):
            future.result()
    return time.perf_counter() - start


def dag_tasks(layers: int, width: int, fan_in: int, seed: int = 1) -> tuple[list, dict]:
    """Tasks in *layers* of *width*, each requiring tags of *fan_in* tasks before."""
    rng = random.Random(seed)
    tasks, preds = [], {}
    previous: list = []
    for layer in range(layers):
        current = []
        for i in range(width):
            def task() -> None:
                pass

            requires = rng.sample(previous, fan_in) if previous else []
            assign_val(task, provides=[(layer, i)],
                       requires=[tag for tag, _ in requires])
            preds[task] = [t for _, t in requires]
            current.append(((layer, i), task))
            tasks.append(task)
        previous = current
    return tasks, preds


def run_graphlib(preds: dict, workers: int = 2) -> float:
    start = time.perf_counter()
    sorter = graphlib.TopologicalSorter(preds)
    sorter.prepare()
    with cf.ThreadPoolExecutor(workers) as ex:
        pending = {}
        while sorter.is_active():
            for node in sorter.get_ready():
                pending[ex.submit(node)] = node
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for future in done:
                future.result()
                sorter.done(pending.pop(future))
    return time.perf_counter() - start


def interleaved(*runners, rounds: int = 5) -> list[list[float]]:
    """Each runner's times over *rounds*, taking turns so that a noisy spell
    on a shared machine hits every runner alike; every other round runs them
    in reverse order, so none always goes first."""
    times: list[list[float]] = [[] for _ in runners]
    order = list(range(len(runners)))
    for _ in range(rounds):
        for i in order:
            times[i].append(runners[i]())
        order.reverse()
    return times


def handoff_round_trip(n: int = 2000) -> float:
    """Microseconds for one thread to wake another and be woken back.

    pexen's thread pool pays about one such round trip per ``workers +
    spare`` tasks (the back-pressure window), ThreadPoolExecutor, which
    queues everything at once, far fewer; so when this figure is high (a VM
    whose idle cores wake slowly) the thread ratios below swing with it.
    """
    ping, pong = SimpleQueue(), SimpleQueue()

    def echo() -> None:
        while (item := ping.get()) is not None:
            pong.put(item)

    thread = threading.Thread(target=echo)
    thread.start()
    start = time.perf_counter()
    for i in range(n):
        ping.put(i)
        pong.get()
    elapsed = time.perf_counter() - start
    ping.put(None)
    thread.join()
    return elapsed / n * 1e6


def us_per_task(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def peak_bytes_per_task(n: int, runner) -> float:
    """Peak traced memory of running *n* fresh tasks, beyond the tasks themselves."""
    tasks = noop_tasks(n)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    runner(tasks)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / n


def core(args: argparse.Namespace) -> None:
    scale = 10 if args.quick else 1
    rows = []

    trips = sorted(handoff_round_trip() for _ in range(5))
    print(f"\nthread hand-off round trip: {trips[2]:.1f} us "
          f"(median of 5; {trips[0]:.1f}-{trips[-1]:.1f})")

    n = 20_000 // scale
    print(f"\nflat: {n:,} no-op tasks, 2 threads, best of 5 rounds taking turns; "
          f"pexen with its default pool settings, then with spare=1")
    for kind, make in TASK_KINDS.items():
        tpe, pex, pex1 = interleaved(lambda make=make: run_tpe(make(n)),
                                     lambda make=make: run_pexen(make(n)),
                                     lambda make=make: run_pexen(make(n), spare=1))
        print(f"  {kind:17} TPE {us_per_task(min(tpe), n):6.2f} us/task   "
              f"pexen {us_per_task(min(pex), n):6.2f} (x{min(tpe) / min(pex):.2f} "
              f"TPE)   spare=1 {us_per_task(min(pex1), n):6.2f} "
              f"(x{min(tpe) / min(pex1):.2f})")

    rows = []
    layers = 100 // (2 if args.quick else 1)
    dag, preds = dag_tasks(layers, 100, 3)
    n = len(dag)
    glib, pex = interleaved(lambda: run_graphlib(preds),
                            lambda: run_pexen(dag))
    rows.append((f"dag {layers}x100, fan-in 3", "graphlib+ThreadPoolExecutor",
                 min(glib), n))
    rows.append(("", "pexen Sched+ThreadWorkerPool", min(pex), n))
    print_rows("dag", rows, baseline=min(glib))
    print_paired(glib, pex)

    rows = []
    n = 10_000 // scale
    tpe, pex = interleaved(lambda: run_tpe_locked(n),
                           lambda: run_pexen(claiming_tasks(n)))
    rows.append((f"{n} claim 1 lock, 2 threads", "TPE + threading.Lock",
                 min(tpe), n))
    rows.append(("", "pexen claims=['db']", min(pex), n))
    print_rows("lock contention", rows, baseline=min(tpe))
    print_paired(tpe, pex)
    print("  the planner alone, all tasks waiting at once for one claimed lock:")
    for size in sorted({1_000, 10_000, 100_000 // scale}):
        seconds = drive_planner(claiming_tasks(size))
        print(f"  {size:>9,} tasks: {us_per_task(seconds, size):7.2f} us/task")

    print("\nscaling (pexen, ThreadWorkerPool(2), flat no-op tasks)")
    sizes = [1_000, 10_000, 100_000] + ([] if args.quick else [1_000_000])
    per = {}
    for size in sizes:
        tasks = noop_tasks(size)
        per[size] = us_per_task(run_pexen(tasks), size)
        del tasks
        print(f"  {size:>9,} tasks: {per[size]:7.2f} us/task")
    if 1_000_000 in per:
        print(f"  1M / 10k time per task: {per[1_000_000] / per[10_000]:.2f}x")

    n = 200_000 // scale
    print(f"\nmemory: peak bytes per task beyond the task objects, {n:,} tasks")
    tpe_mem = peak_bytes_per_task(n, run_tpe)
    pex_mem = peak_bytes_per_task(n, run_pexen)
    print(f"  ThreadPoolExecutor submit-all: {tpe_mem:8.0f} B/task")
    print(f"  pexen Sched:                   {pex_mem:8.0f} B/task")


def print_paired(baseline: list[float], pexen: list[float]) -> None:
    """The throughput ratio of each round (baseline time / pexen time)."""
    ratios = sorted(b / p for b, p in zip(baseline, pexen, strict=True))
    print(f"  {'':28} per round: median x{statistics.median(ratios):.2f}, "
          f"range x{ratios[0]:.2f}-x{ratios[-1]:.2f} over {len(ratios)} rounds")


def print_rows(title: str, rows: list, baseline: float) -> None:
    print(f"\n{title}")
    for label, name, seconds, n in rows:
        print(
            f"  {label:28} {name:30} {seconds:7.3f} s  "
            f"{us_per_task(seconds, n):7.2f} us/task  "
            f"throughput x{baseline / seconds:5.2f}"
        )


SUITES = {"core": core}


def load_suite(name: str):
    if name in SUITES:
        return SUITES[name]
    return importlib.import_module(f"bench_{name}").run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="core",
                        help="core, process, map, async, live, journal, order, "
                             "cluster or all (default: core)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    names = (["core", "process", "map", "async", "live", "journal", "order",
              "cluster"] if args.suite == "all"
             else [args.suite])
    print(f"python {sys.version.split()[0]} on {sys.platform}")
    for name in names:
        print(f"\n=== {name} ===")
        load_suite(name)(args)


if __name__ == "__main__":
    main()

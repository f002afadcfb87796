"""Benchmarks of ``pexen.map`` against the standard library's maps, side by side.

    python tools/bench_map.py            # on its own
    python tools/bench.py --suite map    # as a suite of tools/bench.py

A no-op over many inputs, results consumed in order: on 2 worker processes
against ``multiprocessing.Pool(2).imap`` at several chunk sizes (its best is
what pexen's automatic chunks should approach) and
``ProcessPoolExecutor(2).map`` at its default chunk size (1); on 2 threads
against ``ThreadPoolExecutor(2).map``. Each figure is a whole call, pool
start-up included, best of three, the runners taking turns.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing
import os
import sys
import time

if __name__ == "__main__":
    # run as a script: import this file as a module, so noop is found by name
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_map

    bench_map.main()
    raise SystemExit

import pexen
from pexen.sched._pools.process import default_start_method
from pexen.sched.pool import ProcessWorkerPool, ThreadWorkerPool

WORKERS = 2


def noop(x: object) -> object:
    return x


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(rounds: int, *runners) -> list[float]:
    times = [float("inf")] * len(runners)
    for _ in range(rounds):
        for i, runner in enumerate(runners):
            times[i] = min(times[i], timed(runner))
    return times


def drain(results) -> None:
    for _ in results:
        pass


def run(args: argparse.Namespace) -> None:
    quick = getattr(args, "quick", False)
    method = default_start_method()
    n = 20_000 if quick else 200_000
    rounds = 1 if quick else 3
    ctx = multiprocessing.get_context(method)

    def mp_imap(chunksize: int):
        def go():
            with ctx.Pool(WORKERS) as pool:
                drain(pool.imap(noop, range(n), chunksize=chunksize))
        return go

    def ppe_map():
        with cf.ProcessPoolExecutor(WORKERS, mp_context=ctx) as ex:
            drain(ex.map(noop, range(n)))

    def pexen_processes():
        drain(pexen.map(noop, range(n), pool=ProcessWorkerPool(WORKERS)))

    chunks = [64, 512, 4096]
    names = [f"multiprocessing.Pool(2).imap, chunksize={c}" for c in chunks]
    names += ["ProcessPoolExecutor(2).map (chunksize 1)",
              "pexen.map, ProcessWorkerPool(2), automatic chunks"]
    runners = [mp_imap(c) for c in chunks] + [ppe_map, pexen_processes]
    if quick:  # ProcessPoolExecutor.map takes ~60 us an item: a smaller share
        pass
    times = best(rounds, *runners)
    best_mp = min(times[: len(chunks)])
    print(f"\nmap: a no-op over {n:,} inputs, {WORKERS} worker processes "
          f"({method}), best of {rounds}, taking turns")
    for name, seconds in zip(names, times, strict=True):
        print(f"  {name:52} {seconds:7.3f}s {seconds / n * 1e6:7.2f} us/item")
    pex = times[-1]
    print(f"  pexen.map: {pex / best_mp:.2f}x the time of Pool.imap at its best "
          f"chunk size; {times[-2] / pex:.1f}x faster than ProcessPoolExecutor.map")

    def tpe_map():
        with cf.ThreadPoolExecutor(WORKERS) as ex:
            drain(ex.map(noop, range(n)))

    def pexen_threads():
        drain(pexen.map(noop, range(n), pool=ThreadWorkerPool(WORKERS)))

    tpe, pex = best(rounds, tpe_map, pexen_threads)
    print(f"\nmap: a no-op over {n:,} inputs, {WORKERS} threads")
    print(f"  {'ThreadPoolExecutor(2).map':52} {tpe:7.3f}s "
          f"{tpe / n * 1e6:7.2f} us/item")
    print(f"  {'pexen.map, ThreadWorkerPool(2)':52} {pex:7.3f}s "
          f"{pex / n * 1e6:7.2f} us/item")
    print(f"  pexen.map: x{tpe / pex:.2f} the throughput of ThreadPoolExecutor.map")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {sys.platform}")
    run(args)

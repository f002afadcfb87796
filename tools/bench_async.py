"""Benchmarks of pexen in async programs, side by side with asyncio itself.

    python tools/bench_async.py            # on its own
    python tools/bench.py --suite async    # as a suite of tools/bench.py

* Many coroutines: 10,000 tasks each ``await asyncio.sleep(0.1)`` on an
  ``AsyncWorkerPool(workers=10_000)``, through ``Sched.run()`` (the pool's
  own loop in a thread), ``Sched.arun()`` and ``pexen.amap`` (the caller's
  loop), against ``asyncio.gather`` of the same coroutines (the issue's
  target: within 2x of it).
* Responsiveness: a heartbeat coroutine (``asyncio.sleep(0.001)`` in a loop)
  runs beside ``Sched.arun()`` and ``pexen.amap`` driving a
  ``ProcessWorkerPool(2)`` of CPU-bound tasks; the longest gap between two
  beats is what the loop was held for (the issue's target: under 50 ms).
* The cost of async: ``pexen.amap`` against ``pexen.map`` of a no-op over
  many inputs, on 2 threads and 2 processes.

Each figure is a whole call (pool start-up included), best of the rounds,
the runners taking turns.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time

if __name__ == "__main__":
    # run as a script: import this file as a module, so tasks are found by name
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_async

    bench_async.main()
    raise SystemExit

import pexen
from pexen.sched import Sched
from pexen.sched.pool import AsyncWorkerPool, ProcessWorkerPool, ThreadWorkerPool

NAP = 0.1  # seconds each coroutine sleeps


async def nap() -> None:
    await asyncio.sleep(NAP)


async def nap_item(_: object) -> None:
    await asyncio.sleep(NAP)


def noop(x: object) -> object:
    return x


def burn(n: int) -> int:
    """CPU-bound work in a worker process: about 20 ms of arithmetic."""
    return sum(i * i for i in range(n))


def best(rounds: int, *runners) -> list[float]:
    """Each runner's best wall time over *rounds*, taking turns."""
    times = [float("inf")] * len(runners)
    for _ in range(rounds):
        for i, runner in enumerate(runners):
            start = time.perf_counter()
            runner()
            times[i] = min(times[i], time.perf_counter() - start)
    return times


def many_coroutines(n: int, rounds: int) -> None:
    tasks = [functools.partial(nap) for _ in range(n)]

    def gather() -> None:
        async def main() -> None:
            await asyncio.gather(*(nap() for _ in range(n)))

        asyncio.run(main())

    def sched_run() -> None:
        for _ in Sched(tasks).run(pool=AsyncWorkerPool(workers=n)):
            pass

    def sched_arun() -> None:
        async def main() -> None:
            async for _ in Sched(tasks).arun(pool=AsyncWorkerPool(workers=n)):
                pass

        asyncio.run(main())

    def amap() -> None:
        async def main() -> None:
            async for _ in pexen.amap(nap_item, range(n),
                                      pool=AsyncWorkerPool(workers=n)):
                pass

        asyncio.run(main())

    names = ["asyncio.gather", "Sched.run, AsyncWorkerPool",
             "Sched.arun, AsyncWorkerPool", "pexen.amap, AsyncWorkerPool"]
    runners = [gather, sched_run, sched_arun, amap]
    times = best(rounds, *runners)
    print(f"\nmany coroutines: {n:,} tasks each awaiting asyncio.sleep({NAP}), "
          f"workers={n:,}, best of {rounds}")
    for name, seconds in zip(names, times, strict=True):
        print(f"  {name:32} {seconds:7.3f}s  x{seconds / times[0]:.2f} the time of "
              f"asyncio.gather")


async def heartbeat_gap(work) -> float:
    """The longest gap (seconds) between beats of a heartbeat while *work* runs."""
    gaps = [0.0]

    async def beat() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps[0] = max(gaps[0], now - last)
            last = now

    beater = asyncio.get_running_loop().create_task(beat())
    await asyncio.sleep(0)
    try:
        await work()
    finally:
        beater.cancel()
        await asyncio.gather(beater, return_exceptions=True)
    return gaps[0]


def responsiveness(n: int) -> None:
    size = 400_000  # burn(): about 20 ms a call

    async def via_amap() -> None:
        async for _ in pexen.amap(burn, [size] * n, pool=ProcessWorkerPool(2)):
            pass

    async def via_arun() -> None:
        tasks = [functools.partial(burn, size) for _ in range(n)]
        async for _ in Sched(tasks).arun(pool=ProcessWorkerPool(2)):
            pass

    print(f"\nresponsiveness: a heartbeat every 1 ms beside {n} CPU-bound tasks "
          f"(~20 ms each) on ProcessWorkerPool(2); longest gap between beats")
    runs = [("pexen.amap", via_amap), ("Sched.arun", via_arun)]
    for name, work in runs:
        gap = asyncio.run(heartbeat_gap(work))
        print(f"  {name:32} {gap * 1000:7.1f} ms")


def cost_of_async(n: int, rounds: int) -> None:
    def drain_sync(pool_factory):
        def go() -> None:
            for _ in pexen.map(noop, range(n), pool=pool_factory()):
                pass
        return go

    def drain_async(pool_factory):
        def go() -> None:
            async def main() -> None:
                async for _ in pexen.amap(noop, range(n), pool=pool_factory()):
                    pass

            asyncio.run(main())
        return go

    print(f"\nthe cost of async: a no-op over {n:,} inputs, best of {rounds}")
    for label, factory in (("ThreadWorkerPool(2)", lambda: ThreadWorkerPool(2)),
                           ("ProcessWorkerPool(2)", lambda: ProcessWorkerPool(2))):
        sync, async_ = best(rounds, drain_sync(factory), drain_async(factory))
        print(f"  {label:22} pexen.map {sync:6.3f}s  pexen.amap {async_:6.3f}s  "
              f"(x{async_ / sync:.2f})")


def run(args: argparse.Namespace) -> None:
    quick = getattr(args, "quick", False)
    many_coroutines(1_000 if quick else 10_000, 1 if quick else 3)
    responsiveness(10 if quick else 40)
    cost_of_async(20_000 if quick else 200_000, 1 if quick else 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]} on {sys.platform}; "
          f"load average {os.getloadavg()[0]:.2f}")
    run(args)

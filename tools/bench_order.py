"""Benchmark of ``Sched(order=...)``: makespans against the best and a lower bound.

    python tools/bench_order.py            # on its own
    python tools/bench.py --suite order    # as a suite of tools/bench.py

Two graphs where the order of ready tasks matters, every task sleeping its
``cost`` (in units of ``UNIT`` seconds):

- *chain + short*: a chain of ``CHAIN`` tasks of cost 5, and enough tasks of
  cost 1, independent and added first, to give every worker as much work as
  the chain holds. In the order of adding (``"priority"``) the short tasks
  go first and the chain starts late.
- *layered DAG*: ``LAYERS`` layers of ``WIDTH`` tasks of random cost 1..10,
  each requiring 1 to 3 random tasks of the layer before (seeded).

Each runs on a ``ThreadWorkerPool`` of 2 and of 8 workers, once per order
(best of ``ROUNDS``, the orders taking turns), with ``spare=0``: a task
queued in the pool ahead of its turn would run before a more urgent task
that became ready later, whatever the order (the pool's queue is first in,
first out), and this measures the order, not the queue. For each: the
makespan, its ratio to the best order's, and to the lower bound
``max(critical path, total cost / workers)`` that no order can beat.
Targets (issue 15): ``"critical-path"`` within 10% of the bound on both
graphs, and at least 1.3 times faster than ``"priority"`` on the first.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings
from typing import Any

from pexen.sched import Sched, UnusedTagWarning
from pexen.sched.meta import func_meta
from pexen.sched.pool import ThreadWorkerPool

ORDERS = ("priority", "critical-path", "longest-first")
UNIT = 0.01  # seconds per unit of cost
CHAIN = 10  # links of the chain, each of cost 5
LAYERS, WIDTH = 8, 12  # the random layered DAG
ROUNDS = 3


def sleeper(cost: float, unit: float, provides: list, requires: list) -> Any:
    """A task that sleeps *cost* units, with the metadata to match."""

    def task() -> None:
        time.sleep(cost * unit)

    return func_meta(cost=cost, provides=provides, requires=requires)(task)


def chain_and_short(workers: int, unit: float) -> tuple[list, dict, dict]:
    """The short tasks first, then the chain; with each task's cost and preds."""
    costs: dict[str, float] = {}
    preds: dict[str, list[str]] = {}
    n_short = (workers - 1) * CHAIN * 5  # every worker gets the chain's work
    for i in range(n_short):
        costs[f"s{i}"], preds[f"s{i}"] = 1, []
    for i in range(CHAIN):
        costs[f"c{i}"], preds[f"c{i}"] = 5, [f"c{i - 1}"] if i else []
    return build(costs, preds, unit), costs, preds


def layered_dag(unit: float, seed: int = 15) -> tuple[list, dict, dict]:
    rng = random.Random(seed)
    costs: dict[str, float] = {}
    preds: dict[str, list[str]] = {}
    previous: list[str] = []
    for layer in range(LAYERS):
        current = [f"l{layer}t{i}" for i in range(WIDTH)]
        for name in current:
            costs[name] = rng.randint(1, 10)
            preds[name] = rng.sample(previous, rng.randint(1, 3)) if previous else []
        previous = current
    return build(costs, preds, unit), costs, preds


def build(costs: dict, preds: dict, unit: float) -> list:
    return [sleeper(costs[name], unit, [name], preds[name]) for name in costs]


def lower_bound(costs: dict, preds: dict, workers: int) -> float:
    """``max(critical path, total cost / workers)``, in units of cost."""
    longest: dict[str, float] = {}
    for name in costs:  # added in an order where predecessors come first
        longest[name] = costs[name] + max(
            (longest[p] for p in preds[name]), default=0
        )
    return max(max(longest.values()), sum(costs.values()) / workers)


def makespan(tasks: list, workers: int, order: str) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the graphs' last tasks provide tags no task requires, by design
        warnings.simplefilter("ignore", UnusedTagWarning)
        for res in Sched(tasks, order=order).run(ThreadWorkerPool(workers, spare=0)):
            if res.excinfo is not None:
                raise res.excinfo.val
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> None:
    quick = getattr(args, "quick", False)
    unit = UNIT / 2 if quick else UNIT
    rounds = 1 if quick else ROUNDS
    print(f"\norder: tasks sleep their cost ({unit * 1000:g} ms a unit), "
          f"ThreadWorkerPool(spare=0), best of {rounds}, the orders taking turns")
    targets = []
    for workers in (2, 8):
        graphs = {
            f"chain of {CHAIN} + short": chain_and_short(workers, unit),
            f"layered DAG {LAYERS}x{WIDTH}": layered_dag(unit),
        }
        for title, (tasks, costs, preds) in graphs.items():
            bound = lower_bound(costs, preds, workers) * unit
            best = dict.fromkeys(ORDERS, float("inf"))
            for _ in range(rounds):
                for order in ORDERS:
                    best[order] = min(best[order], makespan(tasks, workers, order))
            fastest = min(best.values())
            print(f"  {title}, {len(tasks)} tasks, {workers} workers: "
                  f"lower bound {bound:.3f} s")
            for order in ORDERS:
                seconds = best[order]
                print(f"    {order:14} {seconds:7.3f} s   x{seconds / fastest:5.2f} "
                      f"the best order   x{seconds / bound:5.2f} the bound")
            cp = best["critical-path"]
            targets.append((f"{title}, {workers} workers: critical-path / bound",
                            cp / bound, 1.10, "at most"))
            if title.startswith("chain"):
                targets.append((f"{title}, {workers} workers: priority / "
                                f"critical-path", best["priority"] / cp, 1.3,
                                "at least"))
    print("  targets:")
    for what, value, target, sense in targets:
        met = value <= target if sense == "at most" else value >= target
        print(f"    {what:58} x{value:5.2f} ({sense} x{target:.2f}: "
              f"{'met' if met else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter tasks")
    run(parser.parse_args())


if __name__ == "__main__":
    main()

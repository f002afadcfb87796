"""Counted resources (``SchedMeta.needs``, ``Sched(capacity=...)``).

Design
======

A resource has a capacity (2 GPUs, 16 GB); a task needs an amount of some
of them, takes it all at once when it is dispatched and gives it back when it
ends, failed or not, or while it waits to be retried. The planner owns one
:class:`Capacity` per run and asks it at the gate where it also takes locks.

Amounts are kept exactly: ints stay ints, other numbers become ``Fraction``
(a float as the decimal it shows), so that ten tasks needing 0.1 GB fit in
1 GB, and taking and giving back 0.1 GB a thousand times leaves nothing
behind (floats would, and a task needing the whole capacity would wait for
ever).

Waiting, and no starvation
--------------------------
A ready task whose needs do not fit now is *parked*: it waits in the planner,
not in the pool, so it holds no worker. It waits in a queue per resource it
needs (a heap of ``(rank, seq, token, info)``, the planner's order), in all of
them at once. The first in line of a resource *reserves* what it needs of
it: a task behind it, or a ready task of a lower rank, may take the resource
only if what is free minus that reservation covers its own need. So a big
task first in line is not starved by a stream of small ones of its priority
or lower: once enough is given back, it is its turn. (Tasks of a higher
priority go first, as everywhere.) The first in line of all parked tasks is
first in every queue it is in, so when nothing runs it fits: there is no
deadlock.

When some of a resource is given back, the first in line is woken if it
fits in all it needs, then the next, and so on; the tasks behind a first in
line that does not fit are woken if they fit beside its reservation (a scan
of that queue in order, only when something is left beside it). A woken
task takes what it needs at once and goes back to the planner's ready heap
holding it, so that what it will use is not counted as free again (else one
give-back would wake a whole queue of tasks needing the same one unit). It
leaves every queue it was in, and the resources of those queues are looked
at again, as their first in line changed. Should it then have to wait for a
lock, the planner makes it give its amounts back.

Parked entries are removed lazily: a woken task's entries stay in the other
heaps until they reach the top, where a ``token`` that does not match the
task's current one marks them stale.
"""

from __future__ import annotations

import heapq
import math
import numbers
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from pexen.sched._errors import MutexError, SchedulerError
from pexen.sched._naming import task_name

# The name under which a task says how many of the pool's workers it takes
# (``needs={"workers": 4}`` for a task that starts 4 processes of its own):
# the pool's worker count, not a capacity of the Sched.
WORKERS = "workers"


def exact(amount: Any) -> Any:
    """*amount* as a number that adds up exactly: an int, or a Fraction.

    A float is read as the decimal it shows (``0.1`` is 1/10, not the binary
    fraction just above it), so that ten tasks needing 0.1 fit in 1.0.
    """
    if type(amount) is int or isinstance(amount, Fraction):
        return amount
    if isinstance(amount, float):
        return Fraction(repr(amount))
    return Fraction(amount)


def check_capacity(capacity: Any) -> dict[Any, Any]:
    """Return ``Sched(capacity=...)`` as a dict of exact amounts, or raise
    SchedulerError naming what is wrong and how to write it."""
    if capacity is None:
        return {}
    if not isinstance(capacity, Mapping):
        raise SchedulerError(
            f"capacity={capacity!r}: expected a mapping of resource -> amount, "
            f"as capacity={{'gpu': 2, 'mem_gb': 16}}; got {type(capacity).__name__}"
        )
    checked = {}
    for res, amount in capacity.items():
        if res == WORKERS:
            raise SchedulerError(
                f"capacity={capacity!r}: {WORKERS!r} is the pool's worker count "
                f"(a task with needs={{{WORKERS!r}: 4}} takes 4 of them); set the "
                f"pool's workers instead, or name the resource otherwise"
            )
        number = not isinstance(amount, bool) and isinstance(amount, numbers.Real)
        # an int is finite however large (math.isfinite would overflow on it)
        finite = number and (isinstance(amount, int) or math.isfinite(amount))
        if not (finite and amount > 0):
            raise SchedulerError(
                f"capacity={capacity!r}: the capacity of {res!r} must be a "
                f"positive, finite number, not {amount!r}"
            )
        checked[res] = exact(amount)
    return checked


def check_needs(infos: Iterable[Any], capacity: Mapping[Any, Any]) -> None:
    """Raise MutexError for a task needing a resource beyond its capacity or
    without one (before the run: such a task could never run)."""
    for info in infos:
        gate = info.gate
        if gate is None:
            continue
        for res, amount in gate.needs.items():  # the pool's workers aside
            total = capacity.get(res)
            name = task_name(info.task)
            if total is None:
                raise MutexError(
                    f"task {name!r} needs {_shown(amount)} of {res!r}, which has no "
                    f"capacity; say how much there is: "
                    f"Sched(capacity={{{res!r}: ...}}), or pexen run "
                    f"--capacity {res}=N"
                )
            if amount > total:
                raise MutexError(
                    f"task {name!r} needs {_shown(amount)} of {res!r}, more than its "
                    f"capacity of {_shown(total)}; give {res!r} more capacity "
                    f"or the task a smaller need"
                )


def plain(amount: Any) -> Any:
    """An exact amount as the user would write it: an int or a float."""
    if isinstance(amount, Fraction):
        return int(amount) if amount.denominator == 1 else float(amount)
    return amount


def _shown(amount: Any) -> str:
    return repr(plain(amount))


class Gate:
    """What a task takes at dispatch beyond its locks: counted resources and
    workers. Made only for a task that needs some (``info.gate``); the
    planner's ``TaskInfo`` of a task without needs carries None."""

    __slots__ = ("held", "info", "needs", "parked", "slot_weight", "token", "weight")

    def __init__(self, info: Any, needs: Mapping[Any, Any]) -> None:
        self.info = info  # the planner's record: rank and seq
        exact_needs = {res: exact(amount) for res, amount in needs.items()}
        weight = exact_needs.pop(WORKERS, 1)
        self.weight = max(1, -(-weight // 1))  # whole workers, rounded up
        self.needs = exact_needs  # the counted resources, workers aside
        self.token = 0  # which of its entries in the queues are current
        self.parked = False  # in the queues
        self.held = False  # holds its needs
        self.slot_weight = 0  # workers it holds

    def __repr__(self) -> str:
        return f"<Gate of {task_name(self.info.task)!r} needs={self.needs!r}>"


class Capacity:
    """What is free of each counted resource, and who waits for it (see above).

    It deals in :class:`Gate` records; their ``info`` gives the planner's
    order (``rank``, ``seq``).
    """

    def __init__(self, capacity: Mapping[Any, Any]) -> None:
        self.total = dict(capacity)
        self.free = dict(capacity)
        self.queues: dict[Any, list[tuple[Any, int, int, Gate]]] = {}
        self.n_parked = 0

    def in_use(self) -> dict[Any, tuple[Any, Any]]:
        """``resource -> (in use, capacity)`` now, as ints or floats."""
        free = self.free
        return {
            res: (plain(total - free[res]), plain(total))
            for res, total in list(self.total.items())
        }

    # -- the gate -------------------------------------------------------------

    def fits(self, gate: Gate) -> bool:
        """Whether *gate*'s task may take what it needs now: what is free,
        less the reservation of a first in line ahead of it (a parked task
        first in line reserves for itself)."""
        return self.lacks(gate) is None

    def lacks(self, gate: Gate) -> Any:
        """The first resource *gate*'s task cannot take now (None if it fits)."""
        free, info = self.free, gate.info
        key = (info.rank, info.seq)
        for res, amount in gate.needs.items():
            left = free[res]
            head = self._head(res)
            if head is not None and (head.info.rank, head.info.seq) < key:
                left -= head.needs[res]
            if left < amount:
                return res
        return None

    def take(self, gate: Gate) -> None:
        free = self.free
        for res, amount in gate.needs.items():
            free[res] -= amount
        gate.held = True

    def give(self, gate: Gate) -> list[Gate]:
        """Give back what *gate* holds (if it does); return the parked ones
        this wakes, which hold what they need now."""
        if not gate.held:
            return []
        gate.held = False
        free = self.free
        for res, amount in gate.needs.items():
            free[res] += amount
        return self._wake(list(gate.needs)) if self.n_parked else []

    def park(self, gate: Gate) -> None:
        """Queue *gate*, which does not fit, for every resource it needs."""
        gate.token += 1
        entry = (gate.info.rank, gate.info.seq, gate.token, gate)
        queues = self.queues
        for res in gate.needs:
            heapq.heappush(queues.setdefault(res, []), entry)
        gate.parked = True
        self.n_parked += 1

    def unpark(self, gate: Gate) -> list[Gate]:
        """Take *gate* out of the queues if it is parked (its task was
        cancelled); return those its leaving wakes."""
        if not gate.parked:
            return []
        self._leave(gate)
        return self._wake(list(gate.needs))

    # -- waking ---------------------------------------------------------------

    def _wake(self, resources: list[Any]) -> list[Gate]:
        woken: list[Gate] = []
        todo = resources
        while todo:
            res = todo.pop()
            while (head := self._head(res)) is not None and self.fits(head):
                self._leave(head)
                self.take(head)
                woken.append(head)
                todo.extend(r for r in head.needs if r != res)
            if head is not None and self.free[res] > head.needs[res]:
                woken.extend(self._backfill(res, head, todo))
        return woken

    def _backfill(self, res: Any, head: Gate, todo: list[Any]) -> list[Gate]:
        """Wake those behind *head* on *res* that fit beside its reservation."""
        woken = []
        for entry in sorted(self.queues[res], key=lambda entry: entry[:3]):
            gate = entry[3]
            if gate is head or entry[2] != gate.token or not gate.parked:
                continue
            if self.fits(gate):
                self._leave(gate)
                self.take(gate)
                woken.append(gate)
                todo.extend(r for r in gate.needs if r != res)
                if self.free[res] <= head.needs[res]:
                    break  # nothing left beside the reservation
        return woken

    def _leave(self, gate: Gate) -> None:
        gate.token += 1  # its entries are stale now
        gate.parked = False
        self.n_parked -= 1

    def _head(self, res: Any) -> Gate | None:
        """The first in line for *res*, stale entries dropped; None if none."""
        queue = self.queues.get(res)
        while queue:
            entry = queue[0]
            gate = entry[3]
            if entry[2] == gate.token and gate.parked:
                return gate
            heapq.heappop(queue)
        return None


class WorkerSlots:
    """The pool's workers as a counted resource (``needs={"workers": n}``).

    Every task takes one worker, one that starts processes of its own says
    how many it takes (at most the pool's ``workers``: more would never
    fit, so such a task runs alone). While a task taking more than one is in
    the pool, no task is queued as a spare: the tasks handed out take at most
    ``workers`` in all, so as many run at once. The next task in line that
    does not fit holds back those behind it (the scheduler hands out nothing
    until it does): the pool drains for a task that needs many workers.
    Tasks without a gate take one worker each, noted nowhere.
    """

    def __init__(self, workers: int, out: int = 0) -> None:
        self.workers = workers  # the pool's, set again before each dispatch
        self.out = out  # workers taken by the tasks handed out
        self.n_heavy = 0  # tasks handed out that take more than one

    def fits(self, info: Any) -> bool:
        gate = info.gate
        weight = 1 if gate is None else min(gate.weight, self.workers)
        if weight > 1 or self.n_heavy:
            return self.out + weight <= self.workers
        return True  # the pool's room (workers + spare) decides

    def take(self, info: Any) -> None:
        gate = info.gate
        if gate is None:
            self.out += 1
            return
        weight = gate.slot_weight = min(gate.weight, self.workers)
        self.out += weight
        if weight > 1:
            self.n_heavy += 1

    def give(self, info: Any) -> None:
        gate = info.gate
        if gate is None:
            self.out -= 1
            return
        weight, gate.slot_weight = gate.slot_weight, 0
        self.out -= weight
        if weight > 1:
            self.n_heavy -= 1

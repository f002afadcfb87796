"""The planner: which task may run next, and what a finished task unblocks.

Design
======

The planner is a plain object with no threads and no I/O; only the scheduler
loop (``Sched.run``) calls it, so it needs no locking. It can be driven by
hand in tests: ``pop_ready()`` hands out the next dispatchable task,
``complete()`` reports how one ended.

State
-----
One ``TaskInfo`` (``__slots__``) per task, indexed by its sequence number
``seq`` (the order tasks were added). It holds a snapshot of the task's
metadata, read once when the run starts: what a task changes in anyone's
metadata while the run goes on is for the next run.

* ``n_unmet`` counts required tags not yet provided; at zero the task is
  *ready* (graphlib's countdown).
* ``state``: PENDING (waiting for tags), READY (in a ready queue), PARKED
  (ready but waiting for a lock or for capacity), RUNNING (handed to the
  pool), RETRY (an attempt failed; it waits to run again), DONE, FAILED,
  CANCELLED (taken out of the run by ``cancel``/``drop`` before it ran),
  CARRIED (passed in an earlier run, not run again: ``carry``).
* ``merged``: the shared dict it will start with, built only once a provider
  hands it something.
* ``rank``: what the ready queues sort it by, ``priority`` itself unless the
  run has another order (``pexen.sched._order``).
* ``gate`` (its counted resources, ``pexen.sched._capacity``) and ``retry``
  (its retries, ``pexen.sched._retry``): None for a task without ``needs``
  or ``retries``, so that such a task costs a test of None each.

Shared tables: ``tag2waiters`` (tag -> tasks requiring it), ``met`` (tags
provided), ``lock2count`` (resource -> -1 when claimed, n > 0 with n users),
``lock2parked`` (resource -> two heaps of ``(rank, seq, info)``: the
tasks waiting to claim it and those waiting to use it), ``lock2keepers``
(resource -> failed tasks that keep it locked, for skip reasons), ``heap``
(tasks that became ready during the run) and ``initial`` (those ready at the
start, sorted once, consumed by the index ``next_initial``). ``gifts`` keeps
the shared dict of each provider that handed one on, in the order they
finished, for tasks added later (``add``). ``n_done``, ``n_failed`` and
``n_cancelled`` count the ends, so that a status is O(1). ``capacity``
(a ``Capacity``, None without ``Sched(capacity=...)``) holds what is free of
each counted resource and the tasks parked for it; ``slots`` (None unless a
task needs several of the pool's ``"workers"``) the workers taken;
``n_retrying`` counts the tasks in RETRY.

Policy
------
* Among ready tasks, the lowest ``(rank, seq)`` goes first: lower priority
  first, then the run's order (``"critical-path"``, ``"longest-first"``),
  then the order of adding. Ready tasks come from two sources: the tasks
  ready at the start, sorted once and consumed by an index (O(1) each), and
  a heap of ``(rank, seq, info)`` for tasks that become ready later
  (O(log n)). The rising ``seq`` keeps ties FIFO and the tasks uncompared.
* A requirement is met when the first task providing the tag finishes
  successfully (or with ``TaskFailError(deps_ok=True)``).
* Locks are taken all-or-nothing when a task is dispatched and held until it
  finishes. A ready task whose locks are taken is *parked* on the first
  conflicting resource. When that resource is released, the first task in
  line for it (by ``(priority, seq)``) returns to the heap: one claimer, or
  every waiting user. A woken task that still cannot run parks again and
  passes the turn to the next in line, so n tasks queued on one resource cost
  O(n log n), not O(n^2). A parked task does not hold back tasks behind it
  that can run.
* Counted resources are taken at the same gate, before the locks: a task
  whose needs do not fit is parked in ``capacity`` (in the planner, so it
  holds no worker), the first in line of each resource reserving what it
  needs against those behind it (no starvation; see ``_capacity``). A task
  woken for capacity holds it from then on; should it then park on a lock,
  it gives it back. A task that needs several workers is handed out only
  when as many are free, and holds back those behind it until then.
* A failed attempt to be retried (``wait_to_retry``, the loop decides)
  completes nothing: its tags stay unmet, its locks, capacity and workers
  are given back, and it waits in RETRY until the loop puts it back among
  the ready tasks (``retry_now``).
* A task that fails keeps its locks and leaves its tags unmet, unless it
  raised ``TaskFailError`` with ``locks_ok``/``deps_ok``.
* A resumed run starts with some tasks *carried*: before anything is
  dispatched, ``carry`` counts them as finished and passed, with the shared
  dicts they produced then, so their tags are met and their dependents get
  that state, exactly as ``complete`` would have done.
* Tasks added while the run goes on (``add``) join as if they had been there
  from the start: tags already met count as met, and the shared dicts of the
  providers that finished reach them in the order those finished.
* A task cancelled before it ran (``cancel``, or ``drop`` once the pool
  dropped it unstarted) leaves the ready queues at once and holds no lock;
  its tags stay unmet, so tasks requiring them are skipped, naming it.

Data flow
---------
``Sched.run`` pops a task, builds a job (task, call convention, kwargs, shared
dict) and submits it to the pool; when the pool reports the outcome,
``complete`` merges the task's shared dict into every not yet dispatched task
requiring a tag it provides, meets its tags (moving tasks whose countdown hits
zero to the heap) and releases its locks and counted resources (waking the
tasks next in line for them). At the end
``skips`` explains every task that did not run, in ``Skip`` records from
which both ``Sched.skipped`` and the end-of-run warning are made.

The planner takes no lock: tasks added or cancelled from another thread
reach it through the scheduler loop (``pexen.sched._live``), which alone
calls it. Only the plain counts and lengths ``counts`` reads may be read from
another thread.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from pexen.sched._calling import passes_shared
from pexen.sched._capacity import WORKERS, Capacity, Gate, WorkerSlots
from pexen.sched._errors import TaskFailError
from pexen.sched._naming import task_name
from pexen.sched._order import bottom_levels, ranks
from pexen.sched._retry import RetryPlan
from pexen.sched.meta import META_ATTR, SchedMeta

PENDING, READY, PARKED, RUNNING, RETRY, DONE, FAILED, CANCELLED, CARRIED = range(9)
CLAIMERS, USERS = 0, 1  # the two queues of tasks parked on a resource

_NO_TAGS: frozenset = frozenset()
_NO_KWARGS: Mapping[str, Any] = {}


class TaskInfo:
    """The planner's record of one task."""

    __slots__ = (
        "claims",
        "duration",
        "excinfo",
        "gate",
        "kwargs",
        "merged",
        "n_unmet",
        "pass_shared",
        "priority",
        "provides",
        "rank",
        "requires",
        "retry",
        "seq",
        "state",
        "task",
        "timeout",
        "uses",
        "woken_by",
    )

    def __init__(self, seq: int, task: Any) -> None:
        self.seq = seq
        self.task = task
        self.merged: dict | None = None
        self.state = PENDING
        self.woken_by: Any = None  # the resource whose release woke it
        self.duration: float | None = None  # seconds it ran, as its pool measured
        self.excinfo: Any = None  # how it failed, if it did
        meta = getattr(task, META_ATTR, None)
        if isinstance(meta, SchedMeta):
            # copies, not the metadata's own sets and dict: a task changing
            # them while it runs must not change this run half-way
            self.requires = frozenset(meta.requires) if meta.requires else _NO_TAGS
            self.provides = frozenset(meta.provides) if meta.provides else _NO_TAGS
            self.claims = frozenset(meta.claims) if meta.claims else _NO_TAGS
            self.uses = frozenset(meta.uses) if meta.uses else _NO_TAGS
            # the rank is the priority itself in the order "priority" (see _order)
            self.priority = self.rank = meta.priority
            self.kwargs = dict(meta.kwargs) if meta.kwargs else _NO_KWARGS
            self.timeout = meta.timeout
            # records made only for the tasks that need them (None: the fast way)
            self.gate: Gate | None = Gate(self, meta.needs) if meta.needs else None
            self.retry: RetryPlan | None = RetryPlan(meta) if meta.retries else None
        else:
            self.requires = self.provides = self.claims = self.uses = _NO_TAGS
            self.priority = self.rank = 0
            self.kwargs = _NO_KWARGS
            self.timeout = None
            self.gate = self.retry = None
        self.n_unmet = len(self.requires)
        self.pass_shared = passes_shared(task, self.kwargs)

    def __repr__(self) -> str:
        return f"<TaskInfo #{self.seq} {task_name(self.task)} state={self.state}>"


def _cost(info: TaskInfo) -> Any:
    """The ``cost`` of *info*'s task (read when the run ranks it)."""
    meta = getattr(info.task, META_ATTR, None)
    return meta.cost if isinstance(meta, SchedMeta) else 1


class Skip(NamedTuple):
    """Why one task did not run.

    ``waits_for`` is ``"tag"``, ``"lock"``, ``"stop"`` (the run was stopped
    early or aborted) or ``"cancel"``, ``culprits`` names the failed or
    cancelled tasks that caused it (none found: empty), and ``reason`` says
    all that in words.
    """

    task: Any
    waits_for: str
    culprits: tuple[str, ...]
    reason: str


class Planner:
    """Scheduling state of one run over *tasks* (see the module docstring)."""

    def __init__(
        self,
        tasks: Iterable[Any],
        presets: Mapping[str, Any],
        capacity: Mapping[Any, Any] | None = None,
        order: str = "priority",
    ) -> None:
        self.infos = [TaskInfo(seq, task) for seq, task in enumerate(tasks)]
        self.presets = dict(presets)
        self.order = order
        self.chains: dict[int, Any] = {}  # seq -> chain of cost ("critical-path")
        # counted resources, and the pool's workers as one: only when asked for
        self.capacity = Capacity(capacity) if capacity else None
        self.slots: WorkerSlots | None = None
        self.gated: list[TaskInfo] = []  # the tasks with needs (check_needs)
        self.n_retrying = 0  # tasks waiting to be retried
        self.tag2waiters: dict[Any, list[TaskInfo]] = {}
        self.met: set = set()
        self.lock2count: dict[Any, int] = {}
        self.lock2parked: dict[Any, tuple[list, list]] = {}
        self.lock2keepers: dict[Any, list[TaskInfo]] = {}
        self.heap: list[tuple[Any, int, TaskInfo]] = []
        self.gifts: dict[int, dict] = {}  # seq -> the shared dict it handed on
        self.cancelled: dict[int, str] = {}  # seq -> why it was taken out
        self.n_done = self.n_failed = 0
        initial, gated = [], self.gated
        heavy = False  # a task needs several workers
        tag2waiters = self.tag2waiters
        for info in self.infos:
            gate = info.gate
            if gate is not None:
                gated.append(info)
                heavy = heavy or gate.weight > 1
            if info.requires:
                for tag in info.requires:
                    waiters = tag2waiters.get(tag)
                    if waiters is None:
                        tag2waiters[tag] = [info]
                    else:
                        waiters.append(info)
            else:
                info.state = READY
                initial.append(info)
        self.initial = initial
        self.next_initial = 0
        self._sort_initial()
        if heavy:
            self.slots = WorkerSlots(1)

    def _sort_initial(self) -> None:
        initial = self.initial
        if any(info.rank != 0 for info in initial):
            # incomparable priorities: check_graph() refuses the run, naming them
            with contextlib.suppress(TypeError):
                initial.sort(key=lambda info: (info.rank, info.seq))

    def apply_order(self) -> None:
        """Rank the tasks by ``order`` (once the graph is known to be sound)."""
        if self.order == "priority":
            return
        infos = self.infos
        costs = {info.seq: _cost(info) for info in infos}
        if self.order == "critical-path":
            self.chains = bottom_levels(infos, costs, self.tag2waiters)
        for info, rank in zip(infos, ranks(infos, self.order, costs, self.chains),
                              strict=True):
            info.rank = rank
        self._sort_initial()

    def carry(self, seq2shared: Mapping[int, dict]) -> None:
        """Count the tasks numbered in *seq2shared* as passed before the run,
        each with the shared dict it produced; call before ``pop_ready``."""
        infos = self.infos
        carried = [infos[seq] for seq in seq2shared]
        self.n_done += len(carried)  # Status counts them with the tasks done
        for info in carried:
            info.state = CARRIED
        for info in carried:
            if info.provides:
                self._provide(info, seq2shared[info.seq])
        self.initial = [info for info in self.initial if info.state == READY]

    # -- dispatch --------------------------------------------------------

    def pop_ready(self, may_lock: bool = True) -> TaskInfo | None:
        """Take the next task that may run now; take its locks and resources.

        With *may_lock* false, stop at a next task that takes locks or
        counted resources (None): the caller will not dispatch one now, and
        order must be kept. So too at a next task that needs more of the
        pool's workers than are free (``slots``): it holds back those behind
        it.
        """
        heap, initial, slots = self.heap, self.initial, self.slots
        # without capacity nor counted workers a task's gate, if any, takes
        # nothing (check_needs made sure): the old way, a test less per task
        counted = self.capacity is not None or slots is not None
        while True:
            i = self.next_initial
            if i < len(initial):
                info = initial[i]
                from_heap = False
                if heap:
                    top_rank, top_seq, top = heap[0]
                    if top_rank < info.rank or (
                        not info.rank < top_rank and top_seq < info.seq
                    ):
                        info, from_heap = top, True
            elif heap:
                info, from_heap = heap[0][2], True
            else:
                return None
            locks = info.claims or info.uses
            if not counted:
                if locks and not may_lock:
                    return None
                if from_heap:
                    heapq.heappop(heap)
                else:
                    self.next_initial = i + 1
                if locks and not self._lock(info):
                    continue
                info.state = RUNNING
                return info
            gate = info.gate
            if not may_lock and (locks or (gate is not None and gate.needs)):
                return None
            if slots is not None and not slots.fits(info):
                return None
            if from_heap:
                heapq.heappop(heap)
            else:
                self.next_initial = i + 1
            if gate is not None and gate.needs and not gate.held:
                capacity = self.capacity
                assert capacity is not None  # check_needs made sure
                if not capacity.fits(gate):
                    info.state = PARKED
                    capacity.park(gate)
                    self._pass_turn(info)
                    continue
            if locks and not self._lock(info):
                if gate is not None and gate.held:  # woken for capacity: it
                    self._give_capacity(gate)  # waits for a lock now
                continue
            if gate is not None and gate.needs and not gate.held:
                self.capacity.take(gate)  # type: ignore[union-attr]
            if slots is not None:
                slots.take(info)
            info.state = RUNNING
            return info

    def shared_for(self, info: TaskInfo) -> dict:
        """The fresh shared dict *info* starts with (each attempt alike)."""
        merged = info.merged
        if merged is not None:
            if info.retry is not None:  # kept for the next attempt
                return dict(merged)
            info.merged = None
            return merged
        return dict(self.presets) if self.presets else {}

    def _lock(self, info: TaskInfo) -> bool:
        count = self.lock2count
        for res in info.claims:
            if count.get(res, 0):
                return self._park(info, res, CLAIMERS)
        for res in info.uses:
            if count.get(res, 0) < 0:
                return self._park(info, res, USERS)
        for res in info.claims:
            count[res] = -1
        for res in info.uses:
            count[res] = count.get(res, 0) + 1
        info.woken_by = None
        return True

    def _park(self, info: TaskInfo, res: Any, side: int) -> bool:
        """Queue *info* on *res*, which it could not take; pass on its wake-up."""
        info.state = PARKED
        queues = self.lock2parked.get(res)
        if queues is None:
            queues = self.lock2parked[res] = ([], [])
        heapq.heappush(queues[side], (info.rank, info.seq, info))
        self._pass_turn(info)
        return False

    def _pass_turn(self, info: TaskInfo) -> None:
        woken_by = info.woken_by
        if woken_by is not None:
            # it was woken for *woken_by* but did not take it: the turn passes
            info.woken_by = None
            self._wake(woken_by)

    def _give_capacity(self, gate: Gate) -> None:
        """Give back the counted resources *gate* holds; requeue those it wakes."""
        self._requeue(self.capacity.give(gate))  # type: ignore[union-attr]

    def _requeue(self, gates: list[Gate]) -> None:
        """Back to the ready heap: tasks woken for capacity (holding it)."""
        heap = self.heap
        for gate in gates:
            woken = gate.info
            woken.state = READY
            heapq.heappush(heap, (woken.rank, woken.seq, woken))

    def _release(self, info: TaskInfo, locks: bool) -> None:
        """Give back what *info* took at dispatch: its counted resources and
        workers, and its locks if *locks*."""
        gate = info.gate
        if gate is not None and gate.held:
            self._give_capacity(gate)
        if self.slots is not None:
            self.slots.give(info)
        if locks and (info.claims or info.uses):
            self._unlock(info)

    def _unlock(self, info: TaskInfo) -> None:
        count = self.lock2count
        freed = list(info.claims)
        for res in info.claims:
            del count[res]
        for res in info.uses:
            left = count[res] - 1
            if left:
                count[res] = left
            else:
                del count[res]
                freed.append(res)
        for res in freed:
            self._wake(res)

    def _wake(self, res: Any) -> None:
        """Move the tasks next in line for *res* to the heap, if it is free to them.

        The first waiter in ``(priority, seq)`` order goes: a claimer alone
        (the others would only park again), or every waiting user, which can
        share. Waking one at a time keeps a queue of n claimers linear, not
        quadratic; ``_park`` passes the turn on when a woken task cannot run.
        """
        queues = self.lock2parked.get(res)
        count = self.lock2count.get(res, 0)
        if queues is None or count < 0:
            return  # nobody waits, or claimed: its release wakes the next
        claimers, users = queues
        if count == 0 and claimers and not (users and users[0][:2] < claimers[0][:2]):
            woken = [heapq.heappop(claimers)]
        elif users:
            woken = users[:]
            users.clear()
        else:
            return  # only claimers, and users hold it: their release wakes
        if not (claimers or users):
            del self.lock2parked[res]
        heap = self.heap
        for entry in woken:
            info = entry[2]
            info.state = READY
            info.woken_by = res
            heapq.heappush(heap, entry)

    # -- completion ------------------------------------------------------

    def complete(self, info: TaskInfo, shared: dict, excinfo: Any) -> None:
        """Record how *info* ended and unblock what it may."""
        if excinfo is None:
            info.state = DONE
            self.n_done += 1
            deps_ok = locks_ok = True
        else:
            info.state = FAILED
            self.n_failed += 1
            exc = excinfo[1]
            if isinstance(exc, TaskFailError):
                deps_ok, locks_ok = exc.deps_ok, exc.locks_ok
            else:
                deps_ok = locks_ok = False
        if deps_ok and info.provides:
            self._provide(info, shared)
        if self.capacity is not None or self.slots is not None:
            self._release(info, locks=False)  # a failure keeps no capacity
        if info.claims or info.uses:
            if locks_ok:
                self._unlock(info)
            else:
                for res in (*info.claims, *info.uses):
                    self.lock2keepers.setdefault(res, []).append(info)

    def wait_to_retry(self, info: TaskInfo) -> None:
        """*info* failed an attempt and will run again: give back its locks,
        capacity and workers while it waits (dependents see nothing)."""
        info.state = RETRY
        self.n_retrying += 1
        self._release(info, locks=True)

    def retry_now(self, info: TaskInfo) -> None:
        """*info*, waiting to be retried, is due: back among the ready tasks."""
        info.state = READY
        self.n_retrying -= 1
        heapq.heappush(self.heap, (info.rank, info.seq, info))

    def _provide(self, info: TaskInfo, shared: dict) -> None:
        tag2waiters, met, heap = self.tag2waiters, self.met, self.heap
        if shared:  # for tasks added later that require one of its tags
            self.gifts[info.seq] = shared
        for tag in info.provides:
            waiters = tag2waiters.get(tag)
            if not waiters:
                met.add(tag)  # for tasks added later
                continue
            if shared:
                for waiter in waiters:
                    if waiter.state < RUNNING:
                        if waiter.merged is None:
                            waiter.merged = dict(self.presets)
                        waiter.merged.update(shared)
            if tag in met:
                continue
            met.add(tag)
            for waiter in waiters:
                waiter.n_unmet -= 1
                if not waiter.n_unmet and waiter.state == PENDING:  # ready
                    waiter.state = READY
                    heapq.heappush(heap, (waiter.rank, waiter.seq, waiter))

    # -- accounting ------------------------------------------------------

    def skips(self, stopped: bool, aborted: str | None = None) -> list[Skip]:
        """Explain, for each task that did not finish, why it did not run.

        *stopped* says the run was ended early by the caller; *aborted*, if
        not None, is how ``Sched.abort()`` ended it, in words.
        """
        unrun = [  # not CARRIED: passed in an earlier run
            info for info in self.infos if info.state < DONE or info.state == CANCELLED
        ]
        if not unrun:
            return []
        cancelled = self.cancelled
        if stopped or aborted is not None:
            skips = []
            for info in unrun:
                reason = cancelled.get(info.seq)
                if reason is not None:
                    skips.append(Skip(info.task, "cancel", (), reason))
                elif info.state == RETRY:
                    how = aborted or "the run was stopped early"
                    skips.append(Skip(info.task, "stop", (), (
                        f"an attempt failed and it waited to be retried: {how}"
                    )))
                elif aborted is not None:
                    skips.append(Skip(info.task, "stop", (), (
                        f"handed to the pool, but {aborted} before it finished"
                        if info.state == RUNNING
                        else f"not started: {aborted}"
                    )))
                else:
                    skips.append(Skip(info.task, "stop", (), (
                        "handed to the pool, but the run was stopped before its "
                        "result came back"
                        if info.state == RUNNING
                        else "not started: the run was stopped early"
                    )))
            return skips
        return _Explainer(self).explain(unrun)

    def counts(self) -> tuple[int, int, int, int, int]:
        """``(total, done, failed, cancelled, ready)`` now, in O(1).

        Plain reads of ints and lengths: another thread may call it while
        the run goes on (each figure is then exact at the moment it is read).
        """
        ready = len(self.initial) - self.next_initial + len(self.heap)
        return (len(self.infos), self.n_done, self.n_failed, len(self.cancelled),
                ready)

    def waits(self) -> dict[int, tuple[Any, ...]]:
        """Each task waiting for tags or a lock: seq -> the tags and resource."""
        parked = {
            entry[2].seq: res
            for res, queues in list(self.lock2parked.items())
            for queue in queues
            for entry in list(queue)
        }
        met = self.met
        waits: dict[int, tuple[Any, ...]] = {}
        for info in list(self.infos):
            state = info.state
            if state == PENDING:
                waits[info.seq] = tuple(
                    sorted((tag for tag in info.requires if tag not in met), key=repr)
                )
            elif state == PARKED and info.seq in parked:
                waits[info.seq] = (parked[info.seq],)
            elif state == PARKED and info.gate is not None and info.gate.parked:
                gate = info.gate
                lacks = self.capacity.lacks(gate)  # type: ignore[union-attr]
                waits[info.seq] = (next(iter(gate.needs)) if lacks is None else lacks,)
            elif state == RETRY:
                waits[info.seq] = ("retry",)
        return waits

    def capacity_in_use(self) -> dict[Any, tuple[Any, Any]]:
        """``resource -> (in use, capacity)``, the pool's workers included when
        a task needs several."""
        in_use = self.capacity.in_use() if self.capacity is not None else {}
        slots = self.slots
        if slots is not None:
            in_use[WORKERS] = (slots.out, slots.workers)
        return in_use

    # -- changes while the run goes on -----------------------------------

    def add(self, infos: list[TaskInfo]) -> None:
        """Take *infos* (checked, numbered from ``len(self.infos)``) into the run.

        Tags already met count as met; the shared dicts that providers of
        their required tags handed on reach them in the order those finished.
        """
        met, tag2waiters, gifts = self.met, self.tag2waiters, self.gifts
        for info in infos:
            assert info.seq == len(self.infos), (info.seq, len(self.infos))
            self.infos.append(info)
            if info.gate is not None:
                self.gated.append(info)
            for tag in info.requires:
                tag2waiters.setdefault(tag, []).append(info)
                if tag in met:
                    info.n_unmet -= 1
        if self.order != "priority":
            # the chains of the tasks already ranked stay as they are
            costs = {info.seq: _cost(info) for info in infos}
            if self.order == "critical-path":
                self.chains.update(
                    bottom_levels(infos, costs, tag2waiters, self.chains)
                )
            for info, rank in zip(infos, ranks(infos, self.order, costs, self.chains),
                                  strict=True):
                info.rank = rank
        if self.slots is None and any(
            info.gate is not None and info.gate.weight > 1 for info in infos
        ):
            # from now on the pool's workers are counted: those out take one
            out = [other for other in self.infos if other.state == RUNNING]
            self.slots = WorkerSlots(1, len(out))
            for other in out:
                if other.gate is not None:
                    other.gate.slot_weight = 1
        for info in infos:
            if info.requires and gifts:
                requires = info.requires
                for seq, shared in gifts.items():
                    if not requires.isdisjoint(self.infos[seq].provides):
                        if info.merged is None:
                            info.merged = dict(self.presets)
                        info.merged.update(shared)
            if not info.n_unmet:
                info.state = READY
                heapq.heappush(self.heap, (info.rank, info.seq, info))

    def cancel(self, info: TaskInfo, reason: str) -> bool:
        """Take *info*, not yet dispatched, out of the run; False if it was.

        It leaves whatever queue holds it: the tasks it held back move on.
        """
        state = info.state
        if state == PENDING:
            for tag in info.requires:
                waiters = self.tag2waiters.get(tag)
                if waiters is not None and info in waiters:
                    waiters.remove(info)
        elif state == READY:
            self._unqueue(info)
            if info.gate is not None and info.gate.held:  # woken for capacity
                self._give_capacity(info.gate)
        elif state == PARKED:
            if info.gate is not None and info.gate.parked:
                self._requeue(self.capacity.unpark(info.gate))  # type: ignore[union-attr]
            else:
                self._unpark(info)
        elif state == RETRY:  # out of the retry timer already (the loop's)
            self.n_retrying -= 1
        else:
            return False
        info.state = CANCELLED
        self.cancelled[info.seq] = reason
        return True

    def drop(self, info: TaskInfo, reason: str, release: bool = True) -> None:
        """Take *info*, dispatched, out of the run: the pool dropped it unstarted
        (its locks, counted resources and workers are given back unless not
        *release*), or stopped it. Its tags stay unmet.
        """
        info.state = CANCELLED
        self.cancelled[info.seq] = reason
        if release:
            self._release(info, locks=True)

    def _unqueue(self, info: TaskInfo) -> None:
        """Remove a READY *info* from the initial list or the heap (O(n): rare)."""
        initial, heap = self.initial, self.heap
        for i in range(self.next_initial, len(initial)):
            if initial[i] is info:
                del initial[i]
                break
        else:
            for i, entry in enumerate(heap):
                if entry[2] is info:
                    heap[i] = heap[-1]
                    heap.pop()
                    heapq.heapify(heap)
                    break
        woken_by = info.woken_by
        if woken_by is not None:  # it had the turn on a resource: pass it on
            info.woken_by = None
            self._wake(woken_by)

    def _unpark(self, info: TaskInfo) -> None:
        """Remove a PARKED *info* from the queue of the resource it waits for."""
        for res in (*info.claims, *info.uses):
            queues = self.lock2parked.get(res)
            if queues is None:
                continue
            for queue in queues:
                for i, entry in enumerate(queue):
                    if entry[2] is info:
                        queue[i] = queue[-1]
                        queue.pop()
                        heapq.heapify(queue)
                        if not (queues[0] or queues[1]):
                            del self.lock2parked[res]
                        return


class _Explainer:
    """Trace each unrun task back to the failed tasks that caused it."""

    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.tag2providers: dict[Any, list[TaskInfo]] = {}
        for info in planner.infos:
            for tag in info.provides:
                self.tag2providers.setdefault(tag, []).append(info)
        self.parked_on = {
            entry[2].seq: res
            for res, queues in planner.lock2parked.items()
            for queue in queues
            for entry in queue
        }
        self.roots: dict[int, list[TaskInfo]] = {}

    def root_failures(self, start: TaskInfo) -> list[TaskInfo]:
        """The failed (or cancelled) tasks that, through unmet tags or locks,
        kept *start* idle.

        Blockers may form a cycle (two providers of a tag each waiting on the
        other, once the way in from outside failed), so this is a depth-first
        walk: a task whose blockers lead back to one still being walked gets a
        partial answer that is not cached; the answer for *start*, the root of
        the walk, is complete.
        """
        if start.seq in self.roots:
            return self.roots[start.seq]
        entered: set[int] = set()
        partial: dict[int, dict[int, TaskInfo]] = {}
        stack = [start]
        while stack:
            info = stack[-1]
            if info.seq in self.roots or info.seq in partial:
                stack.pop()
                continue
            blockers = self.blockers(info)
            if info.seq not in entered:
                entered.add(info.seq)
                todo = [
                    b for b in blockers
                    if b.state < FAILED and b.seq not in self.roots
                    and b.seq not in entered
                ]
                if todo:
                    stack.extend(todo)
                    continue
            stack.pop()
            roots: dict[int, TaskInfo] = {}
            known = True
            for blocker in blockers:
                if blocker.state >= FAILED:  # or CANCELLED
                    roots[blocker.seq] = blocker
                elif blocker.seq in self.roots:
                    roots.update((r.seq, r) for r in self.roots[blocker.seq])
                else:  # still being walked (a cycle), or only partly known
                    known = False
                    roots.update(partial.get(blocker.seq, {}))
            if known or info is start:
                self.roots[info.seq] = sorted(roots.values(), key=lambda r: r.seq)
            else:
                partial[info.seq] = roots
        return self.roots[start.seq]

    def blockers(self, info: TaskInfo) -> list[TaskInfo]:
        res = self.parked_on.get(info.seq)
        if res is not None:
            return self.planner.lock2keepers.get(res, [])
        met = self.planner.met
        return [
            provider
            for tag in info.requires
            if tag not in met
            for provider in self.tag2providers.get(tag, ())
            if provider.state != DONE
        ]

    def explain(self, unrun: list[TaskInfo]) -> list[Skip]:
        skips = []
        cancelled = self.planner.cancelled
        for info in unrun:
            reason = cancelled.get(info.seq)
            if reason is not None:
                skips.append(Skip(info.task, "cancel", (), reason))
                continue
            gate = info.gate
            if gate is not None and gate.parked and self.planner.capacity is not None:
                res = self.planner.capacity.lacks(gate) or next(iter(gate.needs))
                reason = f"waits for {res!r}, never free enough (no failed task found)"
                skips.append(Skip(info.task, "capacity", (), reason))
                continue
            roots = self.root_failures(info)
            culprits = tuple(task_name(r.task) for r in roots)
            cause = _cause(roots) if roots else "(no failed task found)"
            res = self.parked_on.get(info.seq)
            if res is not None:
                reason = f"waits for lock {res!r}, held {cause}"
                skips.append(Skip(info.task, "lock", culprits, reason))
                continue
            tags = sorted(
                (tag for tag in info.requires if tag not in self.planner.met), key=repr
            )
            listed = ", ".join(map(repr, tags))
            noun = "tag" if len(tags) == 1 else "tags"
            reason = f"requires {noun} {listed}, never provided {cause}"
            skips.append(Skip(info.task, "tag", culprits, reason))
        return skips


def _cause(roots: list[TaskInfo]) -> str:
    """``because 'a', 'b' failed and 'c' was cancelled``."""
    failed = [repr(task_name(r.task)) for r in roots if r.state == FAILED]
    cancelled = [repr(task_name(r.task)) for r in roots if r.state == CANCELLED]
    parts = []
    if failed:
        parts.append(f"{', '.join(failed)} failed")
    if cancelled:
        verb = "was" if len(cancelled) == 1 else "were"
        parts.append(f"{', '.join(cancelled)} {verb} cancelled")
    return "because " + " and ".join(parts)

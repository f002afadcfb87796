"""Property tests: random task graphs with random locks and random failures.

Each generated graph is acyclic: a task requires only tags that some earlier
task provides (later tasks may provide them too, so a tag can have several
providers). Tasks claim or use a few resources and end in one of three ways:
success, a plain exception, or ``TaskFailError`` with random ``deps_ok`` and
``locks_ok``. Tasks record when they ran with a shared counter (no clocks).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pexen import PexenWarning, sched
from pexen.sched import TaskFailError
from pexen.sched.meta import assign_val

TAGS = ["t0", "t1", "t2", "t3", "t4"]
RESOURCES = ["r0", "r1", "r2"]


@dataclass
class Spec:
    """One generated task: its metadata and how it ends."""

    index: int
    requires: frozenset
    provides: frozenset
    claims: frozenset
    uses: frozenset
    priority: int
    outcome: str  # "ok", "raise" or "fail" (TaskFailError)
    deps_ok: bool = True
    locks_ok: bool = True

    @property
    def provides_on_end(self) -> bool:
        return self.outcome == "ok" or (self.outcome == "fail" and self.deps_ok)

    @property
    def keeps_locks(self) -> bool:
        return self.outcome == "raise" or (self.outcome == "fail" and not self.locks_ok)


@st.composite
def graphs(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    specs = []
    provided: set = set()
    for index in range(n):
        requires = draw(st.frozensets(st.sampled_from(sorted(provided)), max_size=3)
                        if provided else st.just(frozenset()))
        provides = draw(st.frozensets(st.sampled_from(TAGS), max_size=2))
        claims = draw(st.frozensets(st.sampled_from(RESOURCES), max_size=2))
        uses = draw(st.frozensets(st.sampled_from(RESOURCES), max_size=2)) - claims
        outcome = draw(st.sampled_from(["ok", "ok", "raise", "fail"]))
        spec = Spec(
            index=index, requires=requires, provides=provides, claims=claims,
            uses=uses, priority=draw(st.integers(0, 3)), outcome=outcome,
        )
        if outcome == "fail":
            spec.deps_ok = draw(st.booleans())
            spec.locks_ok = draw(st.booleans())
        specs.append(spec)
        provided |= provides
    return specs


@dataclass
class Recorder:
    """Start and end ticks of every task run, from one shared counter."""

    clock: itertools.count = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    runs: list = field(default_factory=list)  # (index, start, end)

    def tick(self) -> int:
        with self.lock:
            return next(self.clock)


def make_task(spec: Spec, rec: Recorder):
    def fn():
        start = rec.tick()
        for _ in range(50):  # a little work, so that overlaps could show
            pass
        return end(spec, rec, start)

    return with_meta(fn, spec)


def make_coroutine_task(spec: Spec, rec: Recorder):
    async def fn():
        start = rec.tick()
        for _ in range(3):  # others on the loop run meanwhile: overlaps could show
            await asyncio.sleep(0)
        return end(spec, rec, start)

    return with_meta(fn, spec)


def end(spec: Spec, rec: Recorder, start: int):
    """Record the run of *spec*'s task, then end it as *spec* says."""
    stop = rec.tick()
    with rec.lock:
        rec.runs.append((spec.index, start, stop))
    if spec.outcome == "raise":
        raise RuntimeError(f"task {spec.index} fails")
    if spec.outcome == "fail":
        raise TaskFailError("controlled", deps_ok=spec.deps_ok,
                            locks_ok=spec.locks_ok)
    return spec.index


def with_meta(fn, spec: Spec):
    fn.__name__ = fn.__qualname__ = f"task{spec.index}"
    assign_val(fn, requires=spec.requires, provides=spec.provides,
               claims=spec.claims, uses=spec.uses, priority=spec.priority)
    return fn


def conflict(a: Spec, b: Spec) -> bool:
    """Whether *a* and *b* may not hold their locks at the same time."""
    return bool(a.claims & (b.claims | b.uses) or b.claims & a.uses)


def blocked_by_kept_lock(spec: Spec, keeper: Spec) -> bool:
    """Whether *keeper*, holding its locks for good, keeps *spec* from starting."""
    return conflict(spec, keeper)


def serial_order(specs: list[Spec]) -> list[int]:
    """What one task at a time must run: lowest (priority, index) among runnable."""
    met: set = set()
    kept: list[Spec] = []
    order: list[int] = []
    left = list(specs)
    while True:
        runnable = [
            s for s in left
            if s.requires <= met and not any(blocked_by_kept_lock(s, k) for k in kept)
        ]
        if not runnable:
            return order
        spec = min(runnable, key=lambda s: (s.priority, s.index))
        left.remove(spec)
        order.append(spec.index)
        if spec.provides_on_end:
            met |= spec.provides
        if spec.keeps_locks:
            kept.append(spec)


def run_graph(specs: list[Spec], pool, make=make_task, drive="run"):
    """Run the tasks of *specs* on *pool*, by ``Sched.run`` or ``Sched.arun``."""
    rec = Recorder()
    tasks = [make(spec, rec) for spec in specs]
    s = sched.Sched(tasks)

    async def collect():
        return [res async for res in s.arun(pool=pool)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = list(s.run(pool=pool)) if drive == "run" else asyncio.run(collect())
    assert [t.name for t in threading.enumerate() if t.name.startswith("pexen-")] == []
    pexen_warnings = [str(w.message) for w in caught
                      if issubclass(w.category, PexenWarning)]
    assert len(pexen_warnings) == len(caught), [str(w.message) for w in caught]
    index_of = {task: spec.index for task, spec in zip(tasks, specs, strict=True)}
    return s, results, rec, index_of, pexen_warnings


def check_invariants(specs, s, results, rec, index_of, pexen_warnings):
    by_index = {spec.index: spec for spec in specs}

    # each task that runs yields exactly once, and ran exactly once
    yielded = Counter(index_of[res.task] for res in results)
    assert all(n == 1 for n in yielded.values()), yielded
    ran = Counter(index for index, _, _ in rec.runs)
    assert ran == yielded
    intervals = {index: (start, end) for index, start, end in rec.runs}

    # results say how each task ended
    for res in results:
        spec = by_index[index_of[res.task]]
        if spec.outcome == "ok":
            assert res.excinfo is None
            assert res.ret == spec.index
        elif spec.outcome == "raise":
            assert res.excinfo.type is RuntimeError
        else:
            assert res.excinfo.type is TaskFailError

    # every other task is accounted for in skipped, with a reason
    skipped = {index_of[task]: reason for task, reason in s.skipped.items()}
    assert set(skipped) | set(yielded) == set(by_index)
    assert not set(skipped) & set(yielded)
    for reason in skipped.values():
        assert reason.startswith(("requires tag", "waits for lock ")), reason
        assert " because 'task" in reason, reason
    summary = [w for w in pexen_warnings if "did not run" in w]
    if skipped:
        # the warning counts the explanations skipped gives, kind by kind
        n = len(skipped)
        n_lock = sum(why.startswith("waits for lock ") for why in skipped.values())
        counts = ", ".join(f"{k} waiting for a {kind}"
                           for kind, k in (("lock", n_lock), ("tag", n - n_lock)) if k)
        assert summary == [
            f"{n} task{'s' if n != 1 else ''} did not run ({counts} of a failed task); "
            "Sched.skipped says why"
        ]
    else:
        assert summary == []

    # a task never starts before a provider of each required tag has ended
    for index in yielded:
        spec = by_index[index]
        start = intervals[index][0]
        for tag in spec.requires:
            assert any(
                tag in p.provides and p.provides_on_end and p.index in intervals
                and intervals[p.index][1] < start
                for p in specs
            ), (index, tag)

    # conflicting locks are never held at once
    for a, b in itertools.combinations(sorted(yielded), 2):
        if conflict(by_index[a], by_index[b]):
            (sa, ea), (sb, eb) = intervals[a], intervals[b]
            assert ea < sb or eb < sa, (a, b, intervals[a], intervals[b])

    # a skipped task was really blocked: a tag never provided, or a lock kept
    provided = {
        tag for index in yielded for tag in by_index[index].provides
        if by_index[index].provides_on_end
    }
    keepers = [by_index[index] for index in yielded if by_index[index].keeps_locks]
    for index, reason in skipped.items():
        spec = by_index[index]
        unmet = spec.requires - provided
        locked = [k for k in keepers if blocked_by_kept_lock(spec, k)]
        assert unmet or locked, (index, reason)
        if reason.startswith("waits for lock"):
            assert locked
            assert any(f"'task{k.index}'" in reason for k in locked), reason
        else:
            assert unmet
            assert all(repr(tag) in reason for tag in unmet), reason



SETTINGS = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


# The inline pool runs one task at a time whatever its size: its random
# graphs are test_one_at_a_time_runs_in_priority_order's, which checks these
# invariants and the order as well.
@SETTINGS
@given(specs=graphs(), workers=st.integers(1, 4), spare=st.integers(0, 2))
def test_random_graphs_on_threads(specs, workers, spare):
    pool = sched.pool.ThreadWorkerPool(workers, spare)
    outcome = run_graph(specs, pool)
    check_invariants(specs, *outcome)


@pytest.mark.parametrize("drive", ["run", "arun"])
@SETTINGS
@given(specs=graphs(), workers=st.integers(1, 4), spare=st.integers(0, 2))
def test_random_graphs_of_coroutines(drive, specs, workers, spare):
    """AsyncWorkerPool with locks and dependencies: on its own loop (run) and
    on the caller's (arun)."""
    pool = sched.pool.AsyncWorkerPool(workers, spare)
    outcome = run_graph(specs, pool, make=make_coroutine_task, drive=drive)
    check_invariants(specs, *outcome)


@pytest.mark.parametrize("kind", ["inline", "thread-1-0"])
@SETTINGS
@given(specs=graphs())
def test_one_at_a_time_runs_in_priority_order(kind, specs):
    """With one task in flight, the order is fully determined."""
    pool = (sched.pool.InlineWorkerPool() if kind == "inline"
            else sched.pool.ThreadWorkerPool(1, spare=0))
    s, results, rec, index_of, pexen_warnings = run_graph(specs, pool)
    check_invariants(specs, s, results, rec, index_of, pexen_warnings)
    assert [index_of[res.task] for res in results] == serial_order(specs)

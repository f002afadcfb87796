"""Property tests of live runs: random add_tasks, pause, resume and abort
interleaved with the results of random graphs, on the inline and thread pools.

The graphs are those of ``tests/test_properties.py``; tasks added mid-run
require only tags that tasks added before them provide, so each addition is
sound. Pauses are taken back by a helper thread that answers each "paused"
event with ``resume()``: a wake-up lost anywhere would hang the run (and
``faulthandler_timeout`` would dump its stacks). The invariants: every task
of the run is yielded exactly once or listed in ``skipped``; requirements
and locks are honoured; nothing is dispatched while paused nor after an
abort; with one task at a time, each dispatched task was the most urgent of
those that could go.
"""

from __future__ import annotations

import itertools
import threading
import warnings
from collections import Counter
from queue import SimpleQueue

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pexen.sched import Sched, SchedulerError, TaskFailError
from pexen.sched.pool import InlineWorkerPool, ThreadWorkerPool
from tests.test_properties import (
    RESOURCES,
    TAGS,
    Recorder,
    Spec,
    blocked_by_kept_lock,
    conflict,
    graphs,
    make_task,
)


@st.composite
def added_batches(draw, specs: list[Spec]):
    """Batches of tasks to add later, each requiring only tags provided before."""
    provided = set().union(*(s.provides for s in specs))
    index = len(specs)
    batches = []
    for _ in range(draw(st.integers(0, 3))):
        batch = []
        for _ in range(draw(st.integers(1, 3))):
            requires = draw(st.frozensets(st.sampled_from(sorted(provided)), max_size=2)
                            if provided else st.just(frozenset()))
            provides = draw(st.frozensets(st.sampled_from(TAGS), max_size=2))
            claims = draw(st.frozensets(st.sampled_from(RESOURCES), max_size=1))
            uses = draw(st.frozensets(st.sampled_from(RESOURCES), max_size=1)) - claims
            spec = Spec(index=index, requires=requires, provides=provides,
                        claims=claims, uses=uses, priority=draw(st.integers(0, 3)),
                        outcome=draw(st.sampled_from(["ok", "ok", "raise", "fail"])))
            if spec.outcome == "fail":
                spec.deps_ok, spec.locks_ok = draw(st.booleans()), draw(st.booleans())
            batch.append(spec)
            provided |= provides
            index += 1
        batches.append(batch)
    return batches


@st.composite
def live_runs(draw):
    specs = draw(graphs())
    batches = draw(added_batches(specs))
    # what happens after the k-th result: add a batch, pause, or abort, from
    # the loop body or from another thread
    actions = [("add", batch) for batch in batches]
    actions += [("pause", None)] * draw(st.integers(0, 3))
    if draw(st.booleans()):
        actions.append(("abort", None))
    # after the first result at the earliest: before it, no run is in progress
    at = [draw(st.integers(1, len(specs) + 3)) for _ in actions]
    # batches in their order: a batch may require what an earlier one provides
    at[: len(batches)] = sorted(at[: len(batches)])
    plan = sorted(zip(at, range(len(actions)), actions, strict=True))
    from_thread = [draw(st.booleans()) for _ in plan]
    return specs, [(k, action, thread)
                   for (k, _i, action), thread in zip(plan, from_thread, strict=True)]


def _resumer(sched: Sched, kinds: SimpleQueue) -> None:
    """Answer each "paused" with resume(), until the run ends."""
    while (kind := kinds.get()) != "run-ended":
        if kind == "paused":
            sched.resume()


def _call(fn, in_thread: bool):
    """Call *fn* here, or in another thread (joined): return what it raised."""
    raised = []

    def call():
        try:
            fn()
        except SchedulerError as exc:
            raised.append(exc)

    if in_thread:
        thread = threading.Thread(target=call)
        thread.start()
        thread.join()
    else:
        call()
    return raised


def run_live(specs, plan, pool):
    rec = Recorder()
    task_of = {spec.index: make_task(spec, rec) for spec in specs}
    for _k, (what, batch), _thread in plan:
        if what == "add":
            task_of.update((spec.index, make_task(spec, rec)) for spec in batch)
    index_of = {task: index for index, task in task_of.items()}
    s = Sched([task_of[spec.index] for spec in specs])
    events, kinds = [], SimpleQueue()

    def observe(event):
        events.append(event)
        kinds.put(event.kind)

    s.observe(observe)
    joined = [spec.index for spec in specs]  # the tasks of the run, in order
    joined_at: dict[int, int] = dict.fromkeys(joined, 0)  # index -> n dispatched
    resumer = threading.Thread(target=_resumer, args=(s, kinds), name="resumer")
    resumer.start()
    todo = list(plan)
    results = []
    aborted = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = s.run(pool=pool)
        try:
            n = 0
            while True:
                while todo and todo[0][0] <= n:
                    _k, (what, batch), in_thread = todo.pop(0)
                    if what == "add":
                        new = [task_of[spec.index] for spec in batch]
                        refused = _call(lambda new=new: s.add_tasks(new), in_thread)
                        assert bool(refused) == aborted, refused
                        if not refused:
                            n_dispatched = sum(e.kind == "dispatched" for e in events)
                            for spec in batch:
                                joined.append(spec.index)
                                joined_at[spec.index] = n_dispatched
                    elif what == "pause":
                        _call(s.pause, in_thread)
                    else:
                        _call(lambda: s.abort("the property test"), in_thread)
                        aborted = True
                try:
                    results.append(next(gen))
                except StopIteration:
                    break
                n += 1
        finally:
            gen.close()
            resumer.join()
    return s, results, rec, index_of, events, joined, joined_at, aborted


def check_live(specs, plan, s, results, rec, index_of, events, joined, joined_at,
               aborted, serial):
    by_index = {spec.index: spec for spec in specs}
    for _k, (what, batch), _thread in plan:
        if what == "add":
            by_index.update((spec.index, spec) for spec in batch)

    # every task of the run: yielded exactly once, or skipped
    yielded = Counter(index_of[res.task] for res in results)
    assert all(n == 1 for n in yielded.values()), yielded
    ran = Counter(index for index, _, _ in rec.runs)
    assert ran == yielded
    skipped = {index_of[task]: why for task, why in s.skipped.items()}
    assert set(skipped) | set(yielded) == set(joined)
    assert not set(skipped) & set(yielded)
    if aborted:
        assert all("the property test" in why for why in skipped.values()), skipped
    status = s.status()
    assert status.total == len(joined)
    assert status.done + status.failed + status.skipped == status.total

    # results say how each task ended
    for res in results:
        spec = by_index[index_of[res.task]]
        if spec.outcome == "ok":
            assert res.excinfo is None and res.ret == spec.index
        elif spec.outcome == "raise":
            assert res.excinfo.type is RuntimeError
        else:
            assert res.excinfo.type is TaskFailError

    # requirements and locks
    intervals = {index: (start, end) for index, start, end in rec.runs}
    for index in yielded:
        spec, start = by_index[index], intervals[index][0]
        for tag in spec.requires:
            assert any(
                tag in p.provides and p.provides_on_end and p.index in intervals
                and intervals[p.index][1] < start
                for p in by_index.values()
            ), (index, tag)
    for a, b in itertools.combinations(sorted(yielded), 2):
        if conflict(by_index[a], by_index[b]):
            (sa, ea), (sb, eb) = intervals[a], intervals[b]
            assert ea < sb or eb < sa, (a, b)

    # nothing dispatched while paused, nor after the abort
    paused = gone = False
    for event in events:
        if event.kind == "paused":
            paused = True
        elif event.kind == "resumed":
            paused = False
        elif event.kind == "aborting":
            gone = True
        elif event.kind == "dispatched":
            assert not paused and not gone, [e.kind for e in events]
    assert events[-1].kind == "run-ended"

    if serial:  # one at a time: each dispatched task was the most urgent ready one
        order = {index: n for n, index in enumerate(joined)}  # seq: order of adding
        dispatched = [index_of[e.task] for e in events if e.kind == "dispatched"]
        met: set = set()
        kept: list[Spec] = []
        for n, index in enumerate(dispatched):
            done = set(dispatched[:n])
            candidates = [
                by_index[i] for i in joined
                if i not in done and joined_at[i] <= n
                and by_index[i].requires <= met
                and not any(blocked_by_kept_lock(by_index[i], k) for k in kept)
                and i not in skipped
            ]
            best = min(candidates, key=lambda sp: (sp.priority, order[sp.index]))
            spec = by_index[index]
            assert (spec.priority, order[index]) == (best.priority, order[best.index])
            if spec.provides_on_end:
                met |= spec.provides
            if spec.keeps_locks:
                kept.append(spec)


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture,
                           HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(run=live_runs())
def test_live_runs_inline(run):
    specs, plan = run
    outcome = run_live(specs, plan, InlineWorkerPool())
    check_live(specs, plan, *outcome, serial=True)


@SETTINGS
@given(run=live_runs(), workers=st.integers(1, 3), spare=st.integers(0, 2))
def test_live_runs_on_threads(run, workers, spare):
    specs, plan = run
    outcome = run_live(specs, plan, ThreadWorkerPool(workers, spare))
    check_live(specs, plan, *outcome, serial=workers == 1 and spare == 0)


@pytest.mark.parametrize("spare", [0, 2])
def test_a_pause_answered_from_another_thread_at_every_result(spare):
    """Many pauses in a row, each resumed from another thread: none is lost."""
    specs = [Spec(index=i, requires=frozenset(), provides=frozenset(),
                  claims=frozenset(), uses=frozenset(), priority=0, outcome="ok")
             for i in range(40)]
    plan = [(k, ("pause", None), bool(k % 2)) for k in range(1, 40)]
    outcome = run_live(specs, plan, ThreadWorkerPool(2, spare))
    check_live(specs, plan, *outcome, serial=False)

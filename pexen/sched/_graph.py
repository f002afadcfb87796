"""Checks of a run's task graph, made before any task starts.

A required tag must have a provider; requirements must not form a cycle (with
"any provider will do" semantics, as the planner runs them); no task may both
claim and use one resource; priorities must be comparable with one another.
A tag that nobody requires is worth a warning.

Tasks added while a run goes on are checked by ``check_added`` against the
tags the run's tasks provide: as the run was sound, each of those can still
be provided (or has been), so they count as met.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from pexen.sched._errors import (
    DepcheckError,
    MutexError,
    SchedulerError,
    UnusedTagWarning,
)
from pexen.sched._naming import task_name
from pexen.sched._planner import TaskInfo

# A long cycle or many missing tags are shown in part (the error carries all):
_CYCLE_HEAD, _CYCLE_TAIL = 4, 2  # tasks shown from the start and the end
_MISSING_SHOWN = 10  # missing tags listed


def _names(infos: Sequence[TaskInfo], limit: int = 5) -> str:
    names = [repr(task_name(info.task)) for info in infos[:limit]]
    if len(infos) > limit:
        names.append(f"and {len(infos) - limit} more")
    return ", ".join(names)


def check_graph(infos: Sequence[TaskInfo]) -> set:
    """Raise MutexError/DepcheckError/SchedulerError for an unsound graph;
    warn on unused tags. Return the tags the tasks provide."""
    _check_priorities(infos)
    tag2providers, tag2waiters = _tag_maps(infos)
    _check_missing(tag2waiters, tag2providers)
    cycle = _find_cycle(infos, tag2providers, tag2waiters)
    if cycle:
        raise DepcheckError(
            _cycle_message(cycle), cycle=[info.task for info, _ in cycle]
        )

    unused = [tag for tag in tag2providers if tag not in tag2waiters]
    if unused:
        listed = "; ".join(
            f"{tag!r} by {_names(tag2providers[tag])}"
            for tag in sorted(unused, key=repr)[:10]
        )
        more = f" and {len(unused) - 10} more" if len(unused) > 10 else ""
        warnings.warn(
            f"tags provided but required by no task: {listed}{more}",
            UnusedTagWarning,
            stacklevel=4,  # the caller of Sched.run() or Sched.check(), past _plan()
        )
    return set(tag2providers)


def check_added(
    new: Sequence[TaskInfo], provided: set, others: Sequence[TaskInfo]
) -> None:
    """Check tasks *new* that join a running run whose tasks provide *provided*.

    Raise as ``check_graph`` does for a tag that neither the run nor *new*
    provides, a cycle among *new*, a resource both claimed and used, or a
    priority that cannot be compared with those of the run (*others*: one
    task of the run per type of priority). No warning for a tag nobody
    requires: a later addition may require it.
    """
    _check_priorities([*new, *others])
    tag2providers, tag2waiters = _tag_maps(new)
    for tag in provided:
        tag2providers.setdefault(tag, [])
    _check_missing(tag2waiters, tag2providers)
    cycle = _find_cycle(new, tag2providers, tag2waiters, met=provided)
    if cycle:
        raise DepcheckError(
            _cycle_message(cycle), cycle=[info.task for info, _ in cycle]
        )


def _tag_maps(
    infos: Sequence[TaskInfo],
) -> tuple[dict[Any, list[TaskInfo]], dict[Any, list[TaskInfo]]]:
    """``tag2providers`` and ``tag2waiters`` of *infos*; MutexError on the way."""
    tag2providers: dict[Any, list[TaskInfo]] = {}
    tag2waiters: dict[Any, list[TaskInfo]] = {}
    for info in infos:
        if info.claims and info.uses:
            both = info.claims & info.uses
            if both:
                raise MutexError(
                    f"task {task_name(info.task)!r} both claims and uses "
                    f"{', '.join(map(repr, sorted(both, key=repr)))}; "
                    "a resource is either claimed (exclusive) or used (shared)"
                )
        for tag in info.provides:
            tag2providers.setdefault(tag, []).append(info)
        for tag in info.requires:
            tag2waiters.setdefault(tag, []).append(info)
    return tag2providers, tag2waiters


def _check_missing(
    tag2waiters: dict[Any, list[TaskInfo]], tag2providers: dict[Any, list[TaskInfo]]
) -> None:
    """Raise DepcheckError naming the required tags that nobody provides."""
    missing = {
        tag: [info.task for info in waiters]
        for tag, waiters in tag2waiters.items()
        if tag not in tag2providers
    }
    if missing:
        tags = sorted(missing, key=repr)
        lines = [
            f"tag {tag!r}, required by {_names(tag2waiters[tag])}"
            for tag in tags[:_MISSING_SHOWN]
        ]
        if len(tags) > _MISSING_SHOWN:
            lines.append(
                f"and {len(tags) - _MISSING_SHOWN:,} more tags "
                f"({len(tags):,} in all, in DepcheckError.missing)"
            )
        raise DepcheckError("no task provides " + "; ".join(lines), missing=missing)


def _cycle_message(cycle: list[tuple[TaskInfo, Any]]) -> str:
    """Describe *cycle* (its first task repeated at the end), the middle of a
    long one left out."""
    n = len(cycle) - 1

    def name(i: int) -> str:
        return task_name(cycle[i][0].task)

    def step(i: int) -> str:
        return f"{name(i)!r} requires {cycle[i][1]!r}"

    if n <= _CYCLE_HEAD + _CYCLE_TAIL:
        path = " -> ".join(name(i) for i in range(n + 1))
        steps = "; ".join(step(i) for i in range(n))
        size = ""
    else:
        head, tail = range(_CYCLE_HEAD), range(n - _CYCLE_TAIL, n)
        path = " -> ".join([*map(name, head), "...", *map(name, tail), name(n)])
        steps = "; ".join([*map(step, head), "...", *map(step, tail)])
        size = f"{n:,} tasks in the cycle, all in DepcheckError.cycle; "
    return (
        f"requirement cycle: {path} ({size}{steps}, provided only by the next "
        "task or by tasks waiting on the cycle)"
    )


def _check_priorities(infos: Sequence[TaskInfo]) -> None:
    """Refuse priorities the planner could not order, before any task starts.

    The planner orders ready tasks by ``(priority, seq)``; sorting every task
    by that key makes the comparisons it could make later (any two tasks that
    would meet in its heap end up adjacent here, and adjacent items of a
    sorted list have been compared).
    """
    try:
        sorted(infos, key=_order_key)
    except TypeError as err:
        first, second = _incomparable_pair(infos)
        pair = (
            f"task {task_name(first.task)!r} has priority {first.priority!r} and "
            f"task {task_name(second.task)!r} has priority {second.priority!r}"
            if first is not None and second is not None else "tasks"
        )
        raise SchedulerError(
            f"priorities must be comparable with one another: {pair} ({err})"
        ) from None


def _order_key(info: TaskInfo) -> tuple[Any, int]:
    return (info.priority, info.seq)


def _incomparable_pair(
    infos: Sequence[TaskInfo],
) -> tuple[TaskInfo | None, TaskInfo | None]:
    """Two tasks whose priorities cannot be compared (an error path only)."""
    firsts: dict[type, TaskInfo] = {}
    for info in infos:
        firsts.setdefault(type(info.priority), info)
    candidates = list(firsts.values())
    if len(candidates) == 1:  # one type, yet incomparable: e.g. mixed tuples
        candidates = list(infos[:2000])
    for i, first in enumerate(candidates):
        for second in (*candidates[i + 1:], *infos):
            try:
                sorted((first, second), key=_order_key)
                sorted((second, first), key=_order_key)
            except TypeError:
                return first, second
    return None, None


def _find_cycle(
    infos: Sequence[TaskInfo],
    tag2providers: dict[Any, list[TaskInfo]],
    tag2waiters: dict[Any, list[TaskInfo]],
    met: set | None = None,
) -> list[tuple[TaskInfo, Any]]:
    """Return ``[(task, tag it waits for), ...]`` around a cycle, or ``[]``.

    Runs the planner's countdown without locks or failures, from the tags in
    *met*: tasks it never reaches are stuck, and from any stuck task a walk
    along unmet tags to a (necessarily stuck) provider must come back on
    itself.
    """
    if met:
        met = set(met)
        n_unmet = {
            info.seq: sum(tag not in met for tag in info.requires) for info in infos
        }
        ready = [info for info in infos if not n_unmet[info.seq]]
    else:
        met = set()
        n_unmet = {info.seq: len(info.requires) for info in infos}
        ready = [info for info in infos if not info.requires]
    while ready:
        info = ready.pop()
        for tag in info.provides:
            if tag in met:
                continue
            met.add(tag)
            for waiter in tag2waiters.get(tag, ()):
                n_unmet[waiter.seq] -= 1
                if not n_unmet[waiter.seq]:
                    ready.append(waiter)
    stuck = [info for info in infos if n_unmet[info.seq]]
    if not stuck:
        return []
    walk: list[tuple[TaskInfo, Any]] = []
    seen: dict[int, int] = {}
    info = stuck[0]
    while info.seq not in seen:
        seen[info.seq] = len(walk)
        tag = min((t for t in info.requires if t not in met), key=repr)
        walk.append((info, tag))
        info = tag2providers[tag][0]
    cycle = walk[seen[info.seq]:]
    return [*cycle, (info, None)]

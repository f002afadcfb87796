"""The orders of ready tasks (``Sched(order=...)``): the key each task sorts by.

The planner's queues hold ``(rank, seq, info)``: the lowest rank goes first,
ties in the order of adding (``seq``). A task's rank starts with its
``priority``, so priority always wins over the order:

- ``"priority"``: the rank is the priority itself (no tuple: the common case
  costs nothing);
- ``"critical-path"``: ``(priority, -chain)``, where ``chain`` is the longest
  sum of ``cost`` from the task to the end of the graph through the tasks
  that require what it provides, its own cost included (its *bottom level*);
- ``"longest-first"``: ``(priority, -cost)``.

A tag may have several providers (the first to finish meets it); for the
chains every provider counts as leading to every task requiring the tag.
Ranks are computed once, when the run starts (O(tasks + tags)), and for tasks
added to a run that goes on, when they join it; the chains of the tasks
already there are not computed again, even where a task added leads to one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pexen.sched._errors import SchedulerError

ORDERS = ("priority", "critical-path", "longest-first")


def check_order(order: Any) -> str:
    """Return *order* if it is one of ``ORDERS``; else raise SchedulerError."""
    if order not in ORDERS:
        raise SchedulerError(
            f"order={order!r}: expected one of {', '.join(map(repr, ORDERS))}"
        )
    return order


def ranks(
    infos: Sequence[Any],
    order: str,
    costs: Mapping[int, Any],
    chains: Mapping[int, Any] | None = None,
) -> list[Any]:
    """The rank of each of *infos* (records with ``seq`` and ``priority``)
    under *order*; *costs* maps each one's ``seq`` to its cost and, for
    ``"critical-path"``, *chains* to its chain of cost
    (:func:`bottom_levels`)."""
    if order == "priority":
        return [info.priority for info in infos]
    if order == "longest-first":
        return [(info.priority, -costs[info.seq]) for info in infos]
    assert chains is not None
    return [(info.priority, -chains[info.seq]) for info in infos]


def bottom_levels(
    infos: Sequence[Any],
    costs: Mapping[int, Any],
    waiters: Mapping[Any, Sequence[Any]] | None = None,
    known: Mapping[int, Any] | None = None,
) -> dict[int, Any]:
    """``seq -> the longest sum of cost from the task to the end of the graph``
    for each of *infos* (records with ``seq``, ``provides`` and ``requires``;
    *costs* maps each ``seq`` to its cost).

    The graph must be acyclic (``check_graph`` made sure). A walk in
    post-order, without recursion: a chain of a million tasks is fine.
    *waiters* maps each tag to the tasks requiring it (made from *infos* when
    not given); *known* maps the ``seq`` of tasks ranked before (in a run
    that goes on) to their chain, taken as it is and not returned.
    """
    if waiters is None:
        table: dict[Any, list[Any]] = {}
        for info in infos:
            for tag in info.requires:
                table.setdefault(tag, []).append(info)
        waiters = table
    known = known or {}
    chain: dict[int, Any] = {}

    def level(seq: int) -> Any:
        return chain[seq] if seq in chain else known[seq]

    for root in infos:
        if root.seq in chain or root.seq in known:
            continue
        # (task, the iterator over the tasks after it) on the walk's stack
        stack = [(root, _after(root, waiters))]
        while stack:
            info, following = stack[-1]
            for nxt in following:
                if nxt.seq not in chain and nxt.seq not in known:
                    stack.append((nxt, _after(nxt, waiters)))
                    break
            else:
                stack.pop()
                longest = max(
                    (level(nxt.seq) for nxt in _after(info, waiters)), default=0
                )
                chain[info.seq] = costs[info.seq] + longest
    return chain


def _after(info: Any, waiters: Mapping[Any, Sequence[Any]]) -> Any:
    """The tasks that require a tag *info* provides (repeats possible)."""
    return (nxt for tag in info.provides for nxt in waiters.get(tag, ()))

"""``pexen list``: the collected tasks and their metadata, in run order.

The order is the one a run with one task out at a time (``-j 1 --spare 0``)
would use, worked out by driving the
scheduler's planner by hand (every task assumed to pass) without running
anything. Tasks the planner never reaches (a cycle, a missing provider) come
last, without a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pexen.cli._graph import tag_label
from pexen.sched._capacity import WORKERS, check_capacity
from pexen.sched._planner import Planner
from pexen.sched.meta import retrieve_meta

TAG_COLUMNS = ("requires", "provides", "claims", "uses")
META_COLUMNS = (*TAG_COLUMNS, "needs", "priority", "cost", "retries", "timeout",
                "kwargs")


def one_worker_order(tasks: Sequence[Any]) -> list[int | None]:
    """For each task, its place (1, 2, ...) in a one-worker run, or None if never."""
    # one task at a time: enough of each counted resource for the neediest
    capacity: dict[Any, Any] = {}
    for task in tasks:
        meta = retrieve_meta(task)
        for res, amount in meta.needs.items() if meta is not None else ():
            capacity[res] = max(capacity.get(res, amount), amount)
    capacity.pop(WORKERS, None)
    planner = Planner(tasks, {}, check_capacity(capacity))
    seq2place: dict[int, int] = {}
    while (info := planner.pop_ready()) is not None:
        seq2place[info.seq] = len(seq2place) + 1
        planner.complete(info, {}, None)
    return [seq2place.get(seq) for seq in range(len(tasks))]


def _tags(tags: Any) -> str:
    return ", ".join(sorted((tag_label(tag) for tag in tags), key=str))


def _row(task: Any) -> dict[str, str]:
    meta = retrieve_meta(task)
    if meta is None:
        return {}
    row = {column: _tags(getattr(meta, column)) for column in TAG_COLUMNS}
    row["needs"] = ", ".join(f"{res}={amount!r}" for res, amount in meta.needs.items())
    row["priority"] = repr(meta.priority) if meta.priority != 0 else ""
    row["cost"] = repr(meta.cost) if meta.cost != 1 else ""
    row["retries"] = str(meta.retries) if meta.retries else ""
    row["timeout"] = f"{meta.timeout}s" if meta.timeout is not None else ""
    row["kwargs"] = ", ".join(f"{k}={v!r}" for k, v in meta.kwargs.items())
    return row


def build_table(
    tasks: Sequence[Any], names: Sequence[str], places: Sequence[int | None]
) -> Table:
    """The table of *tasks* in one-worker order (*places*); empty columns left out."""
    order = sorted(
        range(len(tasks)), key=lambda i: (places[i] is None, places[i] or 0, i)
    )
    rows = [_row(task) for task in tasks]
    columns = [c for c in META_COLUMNS if any(row.get(c) for row in rows)]
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("task")
    for column in columns:
        table.add_column(column)
    for i in order:
        place = places[i]
        table.add_row(
            "-" if place is None else str(place),
            Text(names[i]),
            *(Text(rows[i].get(column, "")) for column in columns),
        )
    return table


def print_listing(console: Console, tasks: Sequence[Any], names: Sequence[str]) -> int:
    """Print the table; return how many tasks a run would never reach."""
    places = one_worker_order(tasks)
    table = build_table(tasks, names, places)
    if console.is_terminal:
        console.print(table)
    else:  # no padding at the ends of lines in a log or a file
        with console.capture() as captured:
            console.print(table)
        for line in captured.get().splitlines():
            console.out(line.rstrip(), highlight=False)
    return places.count(None)

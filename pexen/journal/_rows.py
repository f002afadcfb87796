"""The journal's attempt rows: which columns a row fills, and its statement.

A row is inserted with its non-NULL columns only, the others left to their
NULL default: ``sqlite3`` binds a number or a string at once, but a None or
bytes parameter only after a search for an adapter that costs several times
as much, so the 21 columns of a row, most of them NULL, cost more to bind
than the rest of its writing. Each set of columns has its statement, made
once (``insert_sql``).

What says which task an attempt is (identity, names, metadata) is worked out
once per task and run (``describe``); the most common row, a task that
passed with no state to keep, is that description and six numbers and
strings (``PASSED_COLUMNS``).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from itertools import chain
from types import FunctionType
from typing import Any, NamedTuple

from pexen.journal._identity import task_identity
from pexen.journal._store import DISPATCHED, PASSED
from pexen.sched._naming import CALLPATH_ATTR, task_name
from pexen.sched.meta import META_ATTR, TAG_FIELDS, SchedMeta

# A passed row: these, in this order, then the columns of its description
PASSED_COLUMNS = ("run", "dispatched", "started", "ended", "duration", "worker")
# A row handed to the pool whose result has not come: its id (for the update
# that gives it its result), then these, then its description
DISPATCHED_COLUMNS = ("id", "run", "dispatched")
# Parameters of one statement, at most, where sqlite3 cannot tell the limit
# (Python 3.10): SQLite before 3.32 takes no more
MAX_PARAMETERS = 999
MAX_ROWS = 64  # rows inserted by one statement, at most (a power of two)
_NO_META_PRIORITY = "0"  # what the priority column holds for a task without one


class Insert(NamedTuple):
    """The ``INSERT`` of attempt rows that fill one set of columns: its
    ``head`` (up to ``VALUES``), then a ``row`` of ``width`` parameters per
    row inserted."""

    head: str
    row: str
    width: int


class Described(NamedTuple):
    """Which task an attempt is: its identity, and the columns that say so
    (``columns`` and ``values``, NULL ones left out), with the statements of
    its passed and its dispatched rows."""

    identity: str
    columns: tuple[str, ...]
    values: tuple[Any, ...]
    passed: Insert
    dispatched: Insert


def _tags(tags: Any) -> str | None:
    """Tags as the report shows them: a JSON list of their reprs (strings as is)."""
    if not tags:
        return None
    shown = sorted(tag if isinstance(tag, str) else repr(tag) for tag in tags)
    return json.dumps(shown)


@functools.lru_cache(maxsize=256)
def insert_statement(columns: tuple[str, ...],
                     literals: tuple[tuple[str, str], ...] = ()) -> Insert:
    """The ``INSERT`` of attempt rows filling *columns* with parameters, and
    each ``(column, SQL literal)`` of *literals*."""
    names = ", ".join([*(column for column, _ in literals), *columns])
    row = f"({', '.join([*(literal for _, literal in literals), *'?' * len(columns)])})"
    return Insert(f"INSERT INTO attempts ({names}) VALUES ", row, len(columns))


@functools.lru_cache(maxsize=1024)
def sql(statement: Insert, n_rows: int = 1) -> str:
    """*statement*'s text inserting *n_rows* rows."""
    return statement.head + ", ".join([statement.row] * n_rows)


def most_parameters(conn: sqlite3.Connection) -> int:
    """How many parameters one statement of *conn* takes."""
    limit = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)  # Python 3.11+
    if limit is None:
        return MAX_PARAMETERS
    return int(conn.getlimit(limit))  # type: ignore[attr-defined]  # 3.11+


def insert_rows(conn: sqlite3.Connection, statement: Insert,
                rows: list[tuple[Any, ...]], most_parameters: int) -> None:
    """Insert *rows* (each the parameters of *statement*), many a statement.

    ``sqlite3`` lets go of the GIL for each statement it runs, and takes it
    back from a busy run's thread (a switch of threads, and of the core that
    runs Python) after it: so rows go in a few statements, of a power of two
    rows each (a few texts, each prepared once), taking at most
    *most_parameters* parameters.
    """
    most = min(MAX_ROWS, most_parameters // statement.width)
    most = 1 << (max(1, most).bit_length() - 1)  # a power of two
    start, n_rows = 0, len(rows)
    while start < n_rows:
        size = min(most, 1 << ((n_rows - start).bit_length() - 1))
        conn.execute(sql(statement, size),
                     tuple(chain.from_iterable(rows[start:start + size])))
        start += size


@functools.lru_cache(maxsize=256)
def _statements(columns: tuple[str, ...]) -> tuple[Insert, Insert]:
    """The passed and the dispatched row's statements for a description that
    fills *columns*."""
    return (
        insert_statement((*PASSED_COLUMNS, *columns), (("outcome", f"'{PASSED}'"),)),
        insert_statement((*DISPATCHED_COLUMNS, *columns),
                         (("outcome", f"'{DISPATCHED}'"),)),
    )


# The description of a task without metadata, with and without a call path
_PLAIN_CALLPATH = ("identity", "name", "callpath", "priority")
_PLAIN_CALLPATH_SQL = _statements(_PLAIN_CALLPATH)
_PLAIN = ("identity", "name", "priority")
_PLAIN_SQL = _statements(_PLAIN)
_new_tuple = tuple.__new__  # a record from a plain tuple, without a Python call


def describe(task: Any) -> Described:
    """The columns of *task*'s rows that say which task it is."""
    if type(task) is FunctionType:  # the common task: its attributes, no search
        attrs = task.__dict__
        callpath, meta = attrs.get(CALLPATH_ATTR), attrs.get(META_ATTR)
    else:
        callpath = getattr(task, CALLPATH_ATTR, None)
        meta = getattr(task, META_ATTR, None)
    joined = "/".join(callpath) if callpath else None
    if meta is None or not isinstance(meta, SchedMeta):
        if joined is not None:
            return _new_tuple(Described, (
                joined, _PLAIN_CALLPATH, (joined, joined, joined, _NO_META_PRIORITY),
                *_PLAIN_CALLPATH_SQL))
        identity = task_identity(task)
        return _new_tuple(Described, (
            identity, _PLAIN, (identity, task_name(task), _NO_META_PRIORITY),
            *_PLAIN_SQL))
    identity = meta.name or joined or task_identity(task)
    filled = [("identity", identity), ("name", joined or task_name(task)),
              ("callpath", joined), ("priority", repr(meta.priority))]
    filled += ((field, _tags(getattr(meta, field))) for field in TAG_FIELDS)
    columns = tuple(column for column, value in filled if value is not None)
    values = tuple(value for _, value in filled if value is not None)
    return _new_tuple(Described, (identity, columns, values, *_statements(columns)))


def insert(row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters inserting *row* (column -> value), its
    NULL columns left out."""
    columns = tuple(column for column, value in row.items() if value is not None)
    return sql(insert_statement(columns)), tuple(row[column] for column in columns)


@functools.lru_cache(maxsize=256)
def _update_sql(columns: tuple[str, ...]) -> str:
    return (f"UPDATE attempts SET {', '.join(f'{column} = ?' for column in columns)} "
            "WHERE id = ?")


def update(row_id: int, row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters setting the non-NULL columns of *row* in
    the attempt *row_id* (a dispatched row, whose other columns are NULL)."""
    columns = tuple(column for column, value in row.items() if value is not None)
    return _update_sql(columns), (*(row[column] for column in columns), row_id)

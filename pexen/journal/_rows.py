"""The journal's attempt rows: which columns a row fills, and its statement.

Binding a row's parameters is Python work, which holds the GIL while the
run's thread waits for it (SQLite's own work lets it go), so a row binds as
few as it can:

- only its non-NULL columns: ``sqlite3`` binds a number or a string at once,
  but a None or bytes parameter only after a search for an adapter that
  costs several times as much (the others are left to their NULL default);
- each value once: rows are selected from a table of ``VALUES``, whose
  columns a value may fill more than one of (a task made by a factory is
  known by its call path, which is its identity, name and call path alike)
  or be worked out from (its start is its end less its duration);
- many rows a statement (``insert_rows``), their parameters gathered in one
  flat list as they come.

Each way of filling the columns (``Insert``) has its statement text, made
once per number of rows. What says which task an attempt is (identity,
names, metadata) is worked out once per task and run (``describe``); the
most common row, a task that passed with no state to keep, is that
description and five numbers and strings (``PASSED_FIELDS``).
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from types import FunctionType
from typing import Any, NamedTuple

from pexen.journal._identity import task_identity
from pexen.journal._store import DISPATCHED, PASSED
from pexen.sched._naming import CALLPATH_ATTR, task_name
from pexen.sched.meta import META_ATTR, TAG_FIELDS, SchedMeta

# Parameters of one statement, at most, where sqlite3 cannot tell the limit
# (Python 3.10): SQLite before 3.32 takes no more
MAX_PARAMETERS = 999
# Rows inserted by one statement, at most (a power of two): sqlite3 prepares
# a statement of 64 rows in a tenth of a millisecond, one of 1024 in three
MAX_ROWS = 64
_NO_META_PRIORITY = "0"  # what the priority column holds for a task without one


class Insert(NamedTuple):
    """The ``INSERT`` of attempt rows that fill one set of columns from a
    table of ``VALUES`` of ``width`` columns, a row each: its ``head`` (up
    to the table) and a ``row`` of the table (``width`` plain ``?``: a
    numbered ``?N``, which could bind a value twice, is a named parameter to
    sqlite3, and binding those from a sequence is deprecated since Python
    3.12)."""

    head: str
    row: str
    width: int


class Shape(NamedTuple):
    """How a description fills the columns that say which task an attempt is:
    ``fields``, each ``(column, i)`` (the column takes the i-th of the
    description's ``width`` values) or ``(column, text)`` (it holds that
    text); with the statements of the passed and the dispatched rows of a
    task so described."""

    fields: tuple[tuple[str, int | str], ...]
    width: int
    passed: Insert
    dispatched: Insert

    def row(self, values: tuple[Any, ...]) -> dict[str, Any]:
        """The columns *values* fill, by name."""
        return {column: values[field] if isinstance(field, int) else field
                for column, field in self.fields}


def insert_statement(fields: tuple[tuple[str, str], ...], width: int) -> Insert:
    """The ``INSERT`` of attempt rows of *width* parameters that give each
    ``(column, SQL)`` of *fields* the value of its SQL (``{0}`` and on: the
    row's parameters)."""
    columns = ", ".join(column for column, _ in fields)
    values = ", ".join(_PARAMETER.sub(_table_column, value) for _, value in fields)
    return Insert(f"INSERT INTO attempts ({columns}) SELECT {values} FROM (VALUES ",
                  f"({', '.join('?' * width)})", width)


_PARAMETER = re.compile(r"\{(\d+)\}")  # in a field's SQL: the row's parameter


def _table_column(match: re.Match[str]) -> str:
    """The column of the ``VALUES`` table holding parameter ``{n}``."""
    return f"column{int(match.group(1)) + 1}"


@functools.lru_cache(maxsize=1024)
def sql(statement: Insert, n_rows: int = 1) -> str:
    """*statement*'s text inserting *n_rows* rows."""
    return f"{statement.head}{', '.join([statement.row] * n_rows)})"


def most_parameters(conn: sqlite3.Connection) -> int:
    """How many parameters one statement of *conn* takes."""
    limit = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)  # Python 3.11+
    if limit is None:
        return MAX_PARAMETERS
    return int(conn.getlimit(limit))  # type: ignore[attr-defined]  # 3.11+


def insert_rows(conn: sqlite3.Connection, statement: Insert, params: list[Any],
                most_parameters: int) -> None:
    """Insert the rows whose parameters *params* holds (*statement*'s
    ``width`` a row, one row's after the other), many a statement.

    ``sqlite3`` lets go of the GIL for each statement it runs, and takes it
    back from a busy run's thread (a switch of threads, and of the core that
    runs Python) after it: so rows go in a few statements, of a power of two
    rows each (a few texts, each prepared once), taking at most
    *most_parameters* parameters.
    """
    width = statement.width
    most = min(MAX_ROWS, most_parameters // width)
    most = 1 << (max(1, most).bit_length() - 1)  # a power of two
    start, n_rows = 0, len(params) // width
    while start < n_rows:
        size = min(most, 1 << ((n_rows - start).bit_length() - 1))
        conn.execute(sql(statement, size),
                     params[start * width:(start + size) * width])
        start += size


def _tags(tags: Any) -> str | None:
    """Tags as the report shows them: a JSON list of their reprs (strings as is)."""
    if not tags:
        return None
    shown = sorted(tag if isinstance(tag, str) else repr(tag) for tag in tags)
    return json.dumps(shown)


# A passed row's parameters: these, then its description's values
PASSED_FIELDS = (
    ("outcome", f"'{PASSED}'"), ("run", "{0}"), ("dispatched", "{1}"),
    ("started", "{2} - {3}"), ("ended", "{2}"), ("duration", "{3}"),
    ("worker", "{4}"),
)
# A row handed to the pool whose result has not come: its id (for the update
# that gives it its result), its run and when it was handed out, then its
# description's values
DISPATCHED_FIELDS = (
    ("outcome", f"'{DISPATCHED}'"), ("id", "{0}"), ("run", "{1}"),
    ("dispatched", "{2}"),
)


def _shifted(fields: tuple[tuple[str, int | str], ...], first: int
             ) -> tuple[tuple[str, str], ...]:
    """Description *fields* as SQL, their values from parameter *first* on."""
    return tuple(
        (column, f"{{{first + field}}}" if isinstance(field, int)
         else "'{}'".format(field.replace("'", "''")))
        for column, field in fields
    )


@functools.lru_cache(maxsize=256)
def _shape(fields: tuple[tuple[str, int | str], ...]) -> Shape:
    width = 1 + max((field for _, field in fields if isinstance(field, int)),
                    default=-1)
    return Shape(
        fields, width,
        insert_statement((*PASSED_FIELDS, *_shifted(fields, 5)), 5 + width),
        insert_statement((*DISPATCHED_FIELDS, *_shifted(fields, 3)), 3 + width),
    )


# Tasks without metadata: one a factory made (its call path is its identity,
# name and call path), and any other
_MADE = _shape((("identity", 0), ("name", 0), ("callpath", 0),
                ("priority", _NO_META_PRIORITY)))
_PLAIN = _shape((("identity", 0), ("name", 1), ("priority", _NO_META_PRIORITY)))


def describe(task: Any) -> tuple[Shape, tuple[Any, ...]]:
    """The columns of *task*'s rows that say which task it is: their shape
    and their values, its identity first. (Two values, not a record: a
    record would cost the most common row a third more.)"""
    if type(task) is FunctionType:  # the common task: its attributes, no search
        attrs = task.__dict__
        callpath, meta = attrs.get(CALLPATH_ATTR), attrs.get(META_ATTR)
    else:
        callpath = getattr(task, CALLPATH_ATTR, None)
        meta = getattr(task, META_ATTR, None)
    joined = "/".join(callpath) if callpath else None
    if meta is None or not isinstance(meta, SchedMeta):
        if joined is not None:
            return _MADE, (joined,)
        return _PLAIN, (task_identity(task), task_name(task))
    given = [("identity", meta.name or joined or task_identity(task)),
             ("name", joined or task_name(task)),
             ("callpath", joined), ("priority", repr(meta.priority))]
    given += ((field, _tags(getattr(meta, field))) for field in TAG_FIELDS)
    values = tuple(value for _, value in given if value is not None)
    fields = tuple((column, n) for n, column in
                   enumerate(column for column, value in given if value is not None))
    return _shape(fields), values


def insert(row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters inserting *row* (column -> value), its
    NULL columns left out."""
    columns = tuple(column for column, value in row.items() if value is not None)
    return (_insert_sql(columns), tuple(row[column] for column in columns))


@functools.lru_cache(maxsize=256)
def _insert_sql(columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO attempts ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})")


@functools.lru_cache(maxsize=256)
def _update_sql(columns: tuple[str, ...]) -> str:
    return (f"UPDATE attempts SET {', '.join(f'{column} = ?' for column in columns)} "
            "WHERE id = ?")


def update(row_id: int, row: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters setting the non-NULL columns of *row* in
    the attempt *row_id* (a dispatched row, whose other columns are NULL)."""
    columns = tuple(column for column, value in row.items() if value is not None)
    return _update_sql(columns), (*(row[column] for column in columns), row_id)

"""Tasks, failures and rows the journal's tests make and read."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from pexen.sched import ExceptionInfo
from pexen.sched.meta import assign_val


def named(name, fn=None, **fields):
    """*fn* (default: a task returning *name*) named *name*
    (``SchedMeta.name``), with metadata *fields*."""
    if fn is None:
        def fn():
            return name
    fn.__name__ = fn.__qualname__ = name
    assign_val(fn, name=name, **fields)
    return fn


def failure(message, exc_type=ValueError):
    """The ``ExceptionInfo`` of an *exc_type* raised with *message*."""
    try:
        raise exc_type(message)
    except exc_type as exc:
        return ExceptionInfo(exc_type, exc, exc.__traceback__)


def rows(path, sql, *params):
    """The rows *sql* selects from the journal at *path* (read-only)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, params).fetchall()

"""Reading a journal back: its runs and their attempts as named records.

``pexen history`` and ``pexen report`` read through these, on a read-only
connection, so looking at a journal never changes it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import NamedTuple

from pexen.journal._errors import JournalError
from pexen.journal._store import CARRIED, DISPATCHED, FAILED, PASSED, RETRIED, SKIPPED


class RunRecord(NamedTuple):
    """One run of a journal, with the counts of its attempts by outcome."""

    id: int
    started: float
    ended: float | None  # None: no end recorded (running, or killed)
    host: str | None
    pexen_version: str | None
    command: str | None
    pool: str | None
    workers: int | None
    resumed_from: int | None
    end_reason: str | None
    passed: int
    failed: int
    skipped: int
    carried: int
    unfinished: int  # handed to the pool, no result recorded
    retried: int  # attempts that failed, their task run again


class Attempt(NamedTuple):
    """One task's attempt in a run (a task retried has several, its last one
    deciding); times are ``time.time()`` seconds."""

    id: int
    run: int
    identity: str
    name: str
    outcome: str
    dispatched: float | None
    started: float | None
    ended: float | None
    duration: float | None
    worker: str | None
    exc_type: str | None
    exc_message: str | None
    traceback: str | None
    reason: str | None
    priority: str | None
    requires: tuple[str, ...]
    provides: tuple[str, ...]
    claims: tuple[str, ...]
    uses: tuple[str, ...]

    @property
    def start(self) -> float | None:
        """When it started running (else when it was handed to the pool)."""
        return self.started if self.started is not None else self.dispatched

    @property
    def end(self) -> float | None:
        """When it stopped running: its start plus the pool's duration, else
        when its result came."""
        start = self.start
        if start is not None and self.duration is not None:
            return start + self.duration
        return self.ended


_RUN_COLUMNS = (
    "r.id, r.started, r.ended, r.host, r.pexen_version, r.command, r.pool, "
    "r.workers, r.resumed_from, r.end_reason, "
    + ", ".join(
        f"sum(a.outcome = '{outcome}')"
        for outcome in (PASSED, FAILED, SKIPPED, CARRIED, DISPATCHED, RETRIED)
    )
)

_ATTEMPT_COLUMNS = (
    "id, run, identity, name, outcome, dispatched, started, ended, duration, worker, "
    "exc_type, exc_message, traceback, reason, priority, requires, provides, claims, "
    "uses"
)


def _tags(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def _read(conn: sqlite3.Connection, sql: str, params: Iterable[object] = ()) -> list:
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"the journal cannot be read ({exc})") from None


def runs(conn: sqlite3.Connection, last: int | None = None) -> list[RunRecord]:
    """The journal's runs, oldest first (only the *last* ones if given)."""
    limit = "" if last is None else f" LIMIT {int(last)}"
    rows = _read(
        conn,
        f"SELECT {_RUN_COLUMNS} FROM runs r LEFT JOIN attempts a ON a.run = r.id "
        f"GROUP BY r.id ORDER BY r.id DESC{limit}",
    )
    return [
        RunRecord(*row[:10], *(count or 0 for count in row[10:])) for row in rows
    ][::-1]


def attempts(
    conn: sqlite3.Connection, run_ids: Iterable[int] | None = None
) -> list[Attempt]:
    """The attempts of the runs *run_ids* (default: all), in recorded order."""
    sql = f"SELECT {_ATTEMPT_COLUMNS} FROM attempts"
    params: list[int] = []
    if run_ids is not None:
        params = list(run_ids)
        if not params:
            return []
        sql += f" WHERE run IN ({','.join('?' * len(params))})"
    return [
        Attempt(*row[:15], *(_tags(text) for text in row[15:]))
        for row in _read(conn, sql + " ORDER BY id", params)
    ]

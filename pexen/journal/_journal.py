"""``Journal``: an observer of a run that records it in SQLite as it happens.

Each ``Sched.observe`` event is queued, in the thread that drives the run,
for the journal's ``Writer`` (``_writer``), which turns the events into rows
of the journal's tables (``_store``) and commits them as they come: a run
row at "run-started", an attempt row when a task is handed to the pool,
filled in when its result comes. A task handed to the pool and never heard
from again stays "dispatched", which a resumed run reads as "never
finished". Reading the journal (``plan``, ``forget``) first waits for what
is queued to be written.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import sys
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pexen.journal._identity import identities
from pexen.journal._resume import ResumePlan, plan_resume
from pexen.journal._store import connect
from pexen.journal._writer import RECORDED, Writer

_open: weakref.WeakSet[Journal] = weakref.WeakSet()


@atexit.register
def _flush_open_journals() -> None:
    """At exit, write what open journals still hold (their thread is a daemon)."""
    for journal in list(_open):
        journal.flush()


class Journal:
    """Record runs in the SQLite journal at *path*: an observer for
    ``Sched.observe``, and what ``Sched.run(resume=...)`` reads.

    The file is made if it does not exist. One that is not a pexen journal,
    is corrupt, or was written by a newer pexen raises ``JournalError`` and
    is left unchanged. *command* and *pool* describe the run in ``pexen
    history`` (default: this process's command line, no pool). Events are
    written by a thread of the journal's (``flush()`` waits for them);
    ``close()``, or the end of a ``with`` block, writes the rest.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        command: str | None = None,
        pool: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.command = " ".join(sys.argv) if command is None else command
        self.pool = pool
        self._conn: sqlite3.Connection | None = connect(self.path)
        self._carry: ResumePlan | None = None
        self._writer = Writer(self, self._conn)
        _open.add(self)

    @classmethod
    def existing(cls, path: str | os.PathLike[str], **kwargs: Any) -> Journal:
        """``Journal(path)``, but a missing file raises ``JournalError``."""
        connect(path, readonly=True).close()
        return cls(path, **kwargs)

    def __repr__(self) -> str:
        return f"<Journal {str(self.path)!r}>"

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self) -> None:
        """Return once every event observed so far is committed."""
        if self._conn is not None:
            self._writer.flush()

    def close(self) -> None:
        """Write what is queued and close the file (idempotent)."""
        conn = self._conn
        if conn is None:
            return
        self._writer.stop()
        with self._writer.lock:
            conn.close()
            self._conn = None
        _open.discard(self)

    @property
    def connection(self) -> sqlite3.Connection:
        """The open SQLite connection (for pexen's own readers), all written."""
        if self._conn is None:
            raise ValueError(f"{self!r} is closed")
        self._writer.flush()
        return self._conn

    # -- resume --------------------------------------------------------------

    def check(self, tasks: Iterable[Any]) -> None:
        """Raise ``JournalError`` if two of *tasks* have one identity."""
        identities(tasks)

    def plan(self, tasks: Iterable[Any]) -> ResumePlan:
        """Decide which of *tasks* a run resumed from this journal carries
        over from its last run, and why each other one runs."""
        conn = self.connection
        with self._writer.lock:
            return plan_resume(conn, tasks)

    def carry(self, plan: ResumePlan) -> None:
        """Record *plan*'s carried tasks as passed in the next run recorded
        (so that a run resumed from that one carries them too)."""
        self._carry = plan

    def forget(self, forgotten: Iterable[str] | None = None) -> tuple[int, int]:
        """Drop the recorded attempts of the tasks with the identities
        *forgotten*, in every run (default: every run and attempt), so that a
        resumed run runs them again; return how many attempts and runs went."""
        conn = self.connection
        with self._writer.lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if forgotten is None:
                    n_attempts = conn.execute("DELETE FROM attempts").rowcount
                    n_runs = conn.execute("DELETE FROM runs").rowcount
                else:
                    n_attempts, n_runs = 0, 0
                    for identity in forgotten:
                        n_attempts += conn.execute(
                            "DELETE FROM attempts WHERE identity = ?", (identity,)
                        ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return n_attempts, n_runs

    # -- the observer ----------------------------------------------------------

    def __call__(self, event: Any) -> None:
        """Queue one ``Sched.observe`` event to be recorded."""
        if event.kind not in RECORDED:
            return
        if self._conn is None:
            raise ValueError(f"{self!r} is closed")
        res = event.res
        # the shared dict as it is now: the loop body may change it later
        shared = dict(res.shared) if res is not None and res.shared else None
        self._writer.put((event, shared))

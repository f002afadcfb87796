"""``Journal``: an observer of a run that records it in SQLite as it happens.

Each ``Sched.observe`` event is queued, in the thread that drives the run,
for the journal's ``Writer`` (``_writer``), which turns the events into rows
of the journal's tables (``_store``) and commits them as they come: a run
row at "run-started", an attempt row when a task's result comes (or a
moment after it was handed to the pool, if it is still there: filled in
when its result comes). A task handed to the pool and never heard from
again stays "dispatched", which a resumed run reads as "never finished".
Reading the journal (``plan``, ``forget``) first waits for what is queued
to be written.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import sys
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import MethodType
from typing import Any

from pexen.journal._identity import identities
from pexen.journal._resume import ResumePlan, plan_resume
from pexen.journal._rows import MAX_PARAMETERS
from pexen.journal._store import connect
from pexen.journal._writer import Result, RunStarted, Writer
from pexen.sched._result import task_key

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
        # the maps of the run being observed (``_writer`` says what they hold)
        self._tasks: dict[Any, Any] = {}
        self._handed: dict[Any, tuple[float, float]] = {}
        self._writer = Writer(self, self._conn)
        self._put = self._writer.queue.put
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
                    # a pass over the attempts per statement: as many
                    # identities a statement as it takes
                    chosen = list(forgotten)
                    for start in range(0, len(chosen), MAX_PARAMETERS):
                        some = chosen[start:start + MAX_PARAMETERS]
                        n_attempts += conn.execute(
                            "DELETE FROM attempts WHERE identity IN "
                            f"({', '.join('?' * len(some))})", some
                        ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return n_attempts, n_runs

    # -- the observer ----------------------------------------------------------

    # the events that make or change rows: ``Sched.observe`` tells no other
    # (a "started" is worked out from the task's end and duration; a pause
    # or a resize changes no row)
    event_kinds = frozenset({
        "run-started", "dispatched", "finished", "retrying", "skipped", "aborting",
        "run-ended",
    })

    def __call__(self, event: Any) -> None:
        """Record one ``Sched.observe`` event (in the thread that drives the
        run, for every event: it keeps or queues what the writer needs of
        the event, as ``_writer`` says, and the writer does the rest)."""
        kind = event.kind
        if kind == "dispatched":
            task = event.task
            key = id(task) if type(task) is not MethodType else task_key(task)
            self._tasks[key] = task
            self._handed[key] = (event.time, event.wall)
            return
        if kind == "started":  # worked out from the task's end and duration
            return
        if kind == "finished":
            task, res, duration, worker = event.task, event.res, event.duration, \
                event.worker
            key = id(task) if type(task) is not MethodType else task_key(task)
            handed = self._handed.pop(key, None)
            if (handed is not None and res is not None and res.excinfo is None
                    and not res.shared and duration is not None
                    and worker is not None):
                item: Any = (key, handed[1], event.wall, duration, worker)
            else:
                # the shared dict as it is now: the loop body may change it later
                shared = dict(res.shared) if res is not None and res.shared else None
                item = Result(event, shared, None if handed is None else handed[1])
        elif kind == "retrying":  # an attempt's end: a row of its own
            task, res = event.task, event.res
            handed = self._handed.pop(task_key(task), None)
            shared = dict(res.shared) if res is not None and res.shared else None
            item = Result(event, shared, None if handed is None else handed[1])
        elif kind == "skipped":
            task = event.task
            handed = self._handed.pop(task_key(task), None)
            item = Result(event, None, None if handed is None else handed[1])
        elif kind == "run-started":
            self._tasks, self._handed = {}, {}
            item = RunStarted(event, self._tasks, self._handed)
        elif kind == "run-ended":
            self._tasks, self._handed = {}, {}  # the writer has the run's own
            item = event
        elif kind == "aborting":
            item = event
        else:  # a pause or a resize changes no row
            return
        self._put(item)
        if self._writer.thread is None:  # not running: between runs, or closed
            if self._conn is None:
                raise ValueError(f"{self!r} is closed")
            self._writer.start()

"""``Journal``: an observer of a run that records it in SQLite as it happens.

Each ``Sched.observe`` event lands in the journal's tables (``_store``): a
run row at "run-started", an attempt row when a task is handed to the pool,
filled in when its result comes, and committed then, one transaction per
result, so that a runner killed at any point leaves every result it had
received except the one being written. A task handed to the pool and never
heard from again stays "dispatched", which a resumed run reads as "never
finished".
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import sqlite3
import sys
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pexen
from pexen.journal._identity import DuplicateIdentityError, identities, task_identity
from pexen.journal._resume import ResumePlan, plan_resume
from pexen.journal._store import CARRIED, DISPATCHED, FAILED, PASSED, SKIPPED, connect
from pexen.sched._naming import CALLPATH_ATTR, task_name
from pexen.sched._result import task_key
from pexen.sched.meta import META_ATTR, SchedMeta

MAX_TEXT = 100_000  # characters of a message or traceback kept per attempt


class _Recording:
    """The changing state of the one run a journal is recording."""

    __slots__ = ("identity2task", "key2identity", "key2row", "key2start", "run_id")

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.key2row: dict[Any, int] = {}  # task_key -> its attempt row
        self.key2start: dict[Any, tuple[float, str | None]] = {}  # wall, worker
        self.key2identity: dict[Any, str] = {}
        self.identity2task: dict[str, Any] = {}


def _tags(tags: Any) -> str | None:
    """Tags as the report shows them: a JSON list of their reprs (strings as is)."""
    if not tags:
        return None
    shown = sorted(tag if isinstance(tag, str) else repr(tag) for tag in tags)
    return json.dumps(shown)


def _bounded(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return f"[... {len(text) - MAX_TEXT} characters cut ...]" + text[-MAX_TEXT:]


def _pickled_shared(shared: dict) -> tuple[bytes | None, str | None]:
    """The shared dict pickled, or why it cannot be."""
    try:
        return pickle.dumps(dict(shared), pickle.HIGHEST_PROTOCOL), None
    except Exception as exc:
        plain_error = exc
    try:  # what a process pool can carry, a journal can keep (lambdas, closures)
        import cloudpickle

        return cloudpickle.dumps(dict(shared), pickle.HIGHEST_PROTOCOL), None
    except Exception:
        return None, f"not picklable: {type(plain_error).__name__}: {plain_error}"


class Journal:
    """Record runs in the SQLite journal at *path*: an observer for
    ``Sched.observe``, and what ``Sched.run(resume=...)`` reads.

    The file is made if it does not exist. One that is not a pexen journal,
    is corrupt, or was written by a newer pexen raises ``JournalError`` and
    is left unchanged. *command* and *pool* describe the run in ``pexen
    history`` (default: this process's command line, no pool).
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
        self._lock = threading.Lock()  # one writer: observers may move threads
        self._recording: _Recording | None = None
        self._carry: ResumePlan | None = None
        self._handlers = {
            "run-started": self._run_started,
            "dispatched": self._dispatched,
            "started": self._started,
            "finished": self._finished,
            "skipped": self._skipped,
            "aborting": self._aborting,
            "run-ended": self._run_ended,
        }

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

    def close(self) -> None:
        """Commit what is pending and close the file (idempotent)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            if conn.in_transaction:
                conn.execute("COMMIT")
            conn.close()
            self._conn = None

    @property
    def connection(self) -> sqlite3.Connection:
        """The open SQLite connection (for pexen's own readers)."""
        if self._conn is None:
            raise ValueError(f"{self!r} is closed")
        return self._conn

    # -- resume --------------------------------------------------------------

    def check(self, tasks: Iterable[Any]) -> None:
        """Raise ``JournalError`` if two of *tasks* have one identity."""
        identities(tasks)

    def plan(self, tasks: Iterable[Any]) -> ResumePlan:
        """Decide which of *tasks* a run resumed from this journal carries
        over from its last run, and why each other one runs."""
        with self._lock:
            return plan_resume(self.connection, tasks)

    def carry(self, plan: ResumePlan) -> None:
        """Record *plan*'s carried tasks as passed in the next run recorded
        (so that a run resumed from that one carries them too)."""
        self._carry = plan

    def forget(self, forgotten: Iterable[str] | None = None) -> tuple[int, int]:
        """Drop the recorded attempts of the tasks with the identities
        *forgotten*, in every run (default: every run and attempt), so that a
        resumed run runs them again; return how many attempts and runs went."""
        with self._lock:
            conn = self._begin()
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
        """Record one ``Sched.observe`` event."""
        handler = self._handlers.get(event.kind)
        if handler is not None:
            with self._lock:
                handler(event)

    def _begin(self) -> sqlite3.Connection:
        """The connection, in a transaction (the one open, or a new one)."""
        conn = self.connection
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        return conn

    def _run_started(self, event: Any) -> None:
        conn = self.connection
        if conn.in_transaction:
            conn.execute("COMMIT")
        plan, self._carry = self._carry, None
        conn.execute("BEGIN IMMEDIATE")
        run_id = conn.execute(
            "INSERT INTO runs (started, host, pexen_version, python, command, pool, "
            "workers, resumed_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event.wall, platform.node(), pexen.__version__, platform.python_version(),
             self.command, self.pool, getattr(event, "workers", None),
             None if plan is None else plan.run_id),
        ).lastrowid
        assert run_id is not None
        recording = self._recording = _Recording(run_id)
        if plan is not None:
            for decision in plan.carried:
                task = decision.task
                key = task_key(task)
                recording.key2identity[key] = decision.identity
                recording.identity2task[decision.identity] = task
                conn.execute(
                    "INSERT INTO attempts (run, identity, name, callpath, outcome, "
                    "reason, carried_from) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, decision.identity, task_name(task), _callpath(task),
                     CARRIED, decision.reason, decision.source),
                )
        conn.execute("COMMIT")

    def _identify(self, recording: _Recording, task: Any) -> str:
        key = task_key(task)
        identity = recording.key2identity.get(key)
        if identity is None:
            identity = task_identity(task)
            other = recording.identity2task.setdefault(identity, task)
            if task_key(other) != key:
                # not recorded: the journal could not tell the two apart later
                raise DuplicateIdentityError(identity, (other, task))
            recording.key2identity[key] = identity
        return identity

    def _new_row(self, recording: _Recording, task: Any, outcome: str,
                 dispatched: float | None, reason: str | None = None) -> int:
        identity = self._identify(recording, task)
        meta = getattr(task, META_ATTR, None)
        if isinstance(meta, SchedMeta):
            described = (repr(meta.priority), _tags(meta.requires),
                         _tags(meta.provides), _tags(meta.claims), _tags(meta.uses))
        else:
            described = ("0", None, None, None, None)
        conn = self._begin()
        row = conn.execute(
            "INSERT INTO attempts (run, identity, name, callpath, outcome, "
            "dispatched, reason, priority, requires, provides, claims, uses) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (recording.run_id, identity, task_name(task), _callpath(task), outcome,
             dispatched, reason, *described),
        ).lastrowid
        assert row is not None
        recording.key2row[task_key(task)] = row
        return row

    def _dispatched(self, event: Any) -> None:
        recording = self._recording
        if recording is not None:
            self._new_row(recording, event.task, DISPATCHED, event.wall)

    def _started(self, event: Any) -> None:
        recording = self._recording
        if recording is not None:
            recording.key2start[task_key(event.task)] = (event.wall, event.worker)

    def _finished(self, event: Any) -> None:
        recording = self._recording
        if recording is None:
            return
        key = task_key(event.task)
        row = recording.key2row.pop(key, None)
        if row is None:  # dispatched before the journal was observing
            row = self._new_row(recording, event.task, DISPATCHED, None)
            recording.key2row.pop(key)
        started, worker = recording.key2start.pop(key, (None, event.worker))
        if event.worker is not None:
            worker = event.worker
        duration = getattr(event, "duration", None)
        if duration is None and started is not None:
            duration = event.wall - started
        res = event.res
        excinfo = res.excinfo
        blob = note = exc_type = message = text = None
        if excinfo is None:
            outcome = PASSED
            meta = getattr(event.task, META_ATTR, None)
            if res.shared and isinstance(meta, SchedMeta) and meta.provides:
                blob, note = _pickled_shared(res.shared)
        else:
            outcome = FAILED
            exc_type = excinfo.type.__qualname__
            message = _bounded(str(excinfo.val))
            text = _bounded("".join(traceback.format_exception(*excinfo)))
        conn = self._begin()
        conn.execute(
            "UPDATE attempts SET outcome = ?, started = ?, ended = ?, duration = ?, "
            "worker = ?, exc_type = ?, exc_message = ?, traceback = ?, shared = ?, "
            "shared_note = ? WHERE id = ?",
            (outcome, started, event.wall, duration, worker, exc_type, message, text,
             blob, note, row),
        )
        conn.execute("COMMIT")  # one transaction per result

    def _skipped(self, event: Any) -> None:
        recording = self._recording
        if recording is None:
            return
        row = recording.key2row.pop(task_key(event.task), None)
        if row is None:
            self._new_row(recording, event.task, SKIPPED, None, event.reason)
        else:
            self._begin().execute(
                "UPDATE attempts SET outcome = ?, reason = ? WHERE id = ?",
                (SKIPPED, event.reason, row),
            )

    def _aborting(self, event: Any) -> None:
        recording = self._recording
        if recording is not None:
            self._begin().execute(
                "UPDATE runs SET end_reason = ? WHERE id = ?",
                (f"aborted: {event.reason}" if event.reason else "aborted",
                 recording.run_id),
            )

    def _run_ended(self, event: Any) -> None:
        recording, self._recording = self._recording, None
        if recording is None:
            return
        conn = self._begin()
        conn.execute(
            "UPDATE runs SET ended = ? WHERE id = ?", (event.wall, recording.run_id)
        )
        conn.execute("COMMIT")


def _callpath(task: Any) -> str | None:
    callpath = getattr(task, CALLPATH_ATTR, None)
    return "/".join(callpath) if callpath else None


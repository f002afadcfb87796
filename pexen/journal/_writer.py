"""The journal's writer: the rows each event of a run makes, and their commits.

A ``Journal`` hands the events it observes to a ``Writer`` thread through a
queue, so the run waits for no disk: the writer takes every event waiting,
writes their rows and commits them in one transaction, then the next lot.
While results come slower than the disk takes them (tasks of a millisecond
and more), that is one transaction per result; when they come faster (no-op
tasks), a commit holds the results that arrived while the last one was being
written. Either way a result is in the file whole or not at all, and a
runner killed at any point loses only the results not committed yet.
"""

from __future__ import annotations

import json
import logging
import pickle
import platform
import sqlite3
import threading
import traceback
from queue import SimpleQueue
from typing import Any

import pexen
from pexen.journal._identity import DuplicateIdentityError, task_identity
from pexen.journal._store import CARRIED, DISPATCHED, FAILED, PASSED, RETRIED, SKIPPED
from pexen.sched._naming import CALLPATH_ATTR, task_name
from pexen.sched._result import task_key
from pexen.sched.meta import META_ATTR, SchedMeta

MAX_TEXT = 100_000  # characters of a message or traceback kept per attempt

# An attempt row as the writer builds it, in this order
_COLUMNS = (
    "run", "identity", "name", "callpath", "outcome", "dispatched", "started",
    "ended", "duration", "worker", "exc_type", "exc_message", "traceback", "reason",
    "shared", "shared_note", "priority", "requires", "provides", "claims", "uses",
)
# The events a journal records: a task's start is worked out from its end and
# duration, and a pause or a resize changes no row. A "retrying" event ends an
# attempt that runs again: its row is kept (outcome "retried") beside the next.
RECORDED = frozenset({
    "run-started", "dispatched", "finished", "retrying", "skipped", "aborting",
    "run-ended",
})
_NO_META = ("0", None, None, None, None)  # priority, requires ... uses
_INSERT = (
    f"INSERT INTO attempts ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_COLUMNS))})"
)
# a row written in an earlier lot, found by its run and identity: the one
# still "dispatched" (the attempts before it of a task retried have ended)
_FINISH = (
    "UPDATE attempts SET outcome = ?, started = ?, ended = ?, duration = ?, "
    "worker = ?, exc_type = ?, exc_message = ?, traceback = ?, reason = ?, "
    f"shared = ?, shared_note = ? WHERE run = ? AND identity = ? "
    f"AND outcome = '{DISPATCHED}'"
)
_SKIP = (
    "UPDATE attempts SET outcome = ?, reason = ? WHERE run = ? AND identity = ? "
    f"AND outcome = '{DISPATCHED}'"
)


log = logging.getLogger("pexen.journal")


class _Recording:
    """The changing state of the one run a journal is recording.

    Rows are written once per lot of events: ``dispatched`` holds the tasks
    handed out in this lot whose result has not come (inserted at its end as
    "dispatched"), ``rows`` the complete rows of the attempts that ended in
    it, ``written`` the tasks whose row an earlier lot inserted and whose
    result has not come, ``finished`` and ``skipped`` the updates of those.
    """

    __slots__ = ("dispatched", "finished", "identity2key", "key2identity",
                 "key2row", "key2task", "rows", "run_id", "skipped", "written")

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.dispatched: dict[Any, tuple[Any, float]] = {}  # key -> task, when
        self.rows: list[tuple[Any, ...]] = []
        self.written: set[Any] = set()
        self.finished: list[tuple[Any, ...]] = []
        self.skipped: list[tuple[Any, ...]] = []
        self.key2identity: dict[Any, str] = {}
        self.key2task: dict[Any, Any] = {}
        self.key2row: dict[Any, tuple] = {}  # key -> the columns naming its task
        self.identity2key: dict[str, Any] = {}


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




class _Flush:
    """A marker in the queue: set once everything before it is committed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()  # a marker in the queue: the writer ends


class Writer:
    """Write the events a journal queues, on a thread of its own.

    The thread runs while there is something to write: it starts with the
    first event queued and ends once a run has ended and the queue is empty
    (or on ``stop``), so a journal between runs holds no thread.
    """

    def __init__(self, journal: Any, conn: sqlite3.Connection) -> None:
        self.journal = journal
        self.conn = conn
        self.lock = threading.Lock()  # the connection: the writer, or a reader
        self.queue: SimpleQueue[Any] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._recording: _Recording | None = None
        self._handlers = {
            "run-started": self._run_started,
            "dispatched": self._dispatched,
            "finished": self._finished,
            "retrying": self._retrying,
            "skipped": self._skipped,
            "aborting": self._aborting,
            "run-ended": self._run_ended,
        }

    def put(self, item: Any) -> None:
        """Queue *item*, starting the thread if it is not running."""
        self.queue.put(item)
        if self._thread is None:
            with self._thread_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="pexen-journal", daemon=True
                    )
                    self._thread.start()

    def flush(self) -> None:
        """Return once every event queued so far is committed."""
        if self._thread is None and self.queue.empty():
            return
        marker = _Flush()
        self.put(marker)
        marker.done.wait()

    def stop(self) -> None:
        """Commit what is queued and end the thread."""
        with self._thread_lock:
            thread = self._thread
            if thread is not None:
                self.queue.put(_STOP)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        queue = self.queue
        while True:
            batch = [queue.get()]
            while not queue.empty():
                batch.append(queue.get())
            stop = self._write(batch)
            with self._thread_lock:
                if stop or (self._recording is None and queue.empty()):
                    self._thread = None
                    return

    def _write(self, batch: list[Any]) -> bool:
        """Write *batch* in one transaction; say whether it asked to stop."""
        stop = False
        flushes = []
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                for item in batch:
                    if type(item) is tuple:
                        self._record(*item)
                    elif item is _STOP:
                        stop = True
                    else:
                        flushes.append(item)
                self._write_rows()
                self.conn.execute("COMMIT")
            except sqlite3.Error:
                log.exception("journal %r: could not write %d events", self.journal,
                              len(batch))
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
        for marker in flushes:
            marker.done.set()
        return stop

    def _record(self, event: Any, shared: dict | None) -> None:
        """Make or change the rows *event* says; a task that passed with no
        state to keep (the most common event by far) takes the short way."""
        recording = self._recording
        if (
            event.kind == "finished"
            and shared is None
            and recording is not None
            and event.res.excinfo is None
        ):
            key = task_key(event.task)
            described = recording.key2row.get(key)
            if described is not None and key not in recording.written:
                handed = recording.dispatched.pop(key, None)
                ended, duration = event.wall, getattr(event, "duration", None)
                recording.rows.append((
                    *described[0], PASSED, None if handed is None else handed[1],
                    None if duration is None else ended - duration, ended, duration,
                    event.worker, None, None, None, None, None, None, *described[1],
                ))
                return
        try:
            self._handlers[event.kind](event, shared)
        except DuplicateIdentityError as exc:
            log.error("journal %r: %s (not recorded)", self.journal, exc)

    def _write_rows(self) -> None:
        """Write the rows the events of this lot made or changed."""
        recording = self._recording
        if recording is None:
            return
        rows = recording.rows
        for key, (task, wall) in recording.dispatched.items():
            try:
                run, identity, name, callpath, described = self._describe(
                    recording, task, key
                )
            except DuplicateIdentityError as exc:
                log.error("journal %r: %s (not recorded)", self.journal, exc)
                continue
            rows.append((run, identity, name, callpath, DISPATCHED, wall, None, None,
                         None, None, None, None, None, None, None, None, *described))
            recording.written.add(key)
        recording.dispatched.clear()
        # the rows of earlier lots first: a task retried in this lot may have a
        # new row "dispatched" here, which those updates must not reach
        if recording.finished:
            self.conn.executemany(_FINISH, recording.finished)
            recording.finished.clear()
        if recording.skipped:
            self.conn.executemany(_SKIP, recording.skipped)
            recording.skipped.clear()
        if rows:
            self.conn.executemany(_INSERT, rows)
            rows.clear()

    def _run_started(self, event: Any, shared: dict | None) -> None:
        self._write_rows()  # of a run that never told its end
        conn = self.conn
        plan, self.journal._carry = self.journal._carry, None
        run_id = conn.execute(
            "INSERT INTO runs (started, host, pexen_version, python, command, pool, "
            "workers, resumed_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (event.wall, platform.node(), pexen.__version__, platform.python_version(),
             self.journal.command, self.journal.pool, getattr(event, "workers", None),
             None if plan is None else plan.run_id),
        ).lastrowid
        assert run_id is not None
        recording = self._recording = _Recording(run_id)
        if plan is not None:
            for decision in plan.carried:
                task = decision.task
                key = task_key(task)
                recording.key2identity[key] = decision.identity
                recording.key2task[key] = task
                recording.identity2key[decision.identity] = key
                conn.execute(
                    "INSERT INTO attempts (run, identity, name, callpath, outcome, "
                    "reason, carried_from) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, decision.identity, task_name(task), _callpath(task),
                     CARRIED, decision.reason, decision.source),
                )

    def _describe(self, recording: _Recording, task: Any, key: Any) -> tuple:
        """The columns of an attempt row that say which task it is."""
        cached = recording.key2row.get(key)
        if cached is not None:
            return (*cached[0], cached[1])
        callpath = getattr(task, CALLPATH_ATTR, None)
        joined = "/".join(callpath) if callpath else None
        meta = getattr(task, META_ATTR, None)
        if isinstance(meta, SchedMeta):
            identity = meta.name or joined or task_identity(task)
            described = (repr(meta.priority), _tags(meta.requires),
                         _tags(meta.provides), _tags(meta.claims), _tags(meta.uses))
        else:
            identity = joined or task_identity(task)
            described = _NO_META
        other = recording.identity2key.setdefault(identity, key)
        if other != key:
            # not recorded: the journal could not tell the two apart later
            raise DuplicateIdentityError(identity, (recording.key2task[other], task))
        recording.key2task[key] = task
        recording.key2identity[key] = identity
        head = (recording.run_id, identity, joined or task_name(task), joined)
        recording.key2row[key] = (head, described)
        return (*head, described)

    def _dispatched(self, event: Any, shared: dict | None) -> None:
        recording = self._recording
        if recording is not None:
            task = event.task
            key = task_key(task)
            if key not in recording.key2row:
                try:
                    self._describe(recording, task, key)
                except DuplicateIdentityError as exc:
                    log.error("journal %r: %s (not recorded)", self.journal, exc)
                    return
            recording.dispatched[key] = (task, event.wall)

    def _retrying(self, event: Any, shared: dict | None) -> None:
        """An attempt that failed and runs again: a row of its own."""
        self._finished(event, shared, retried=True)

    def _finished(self, event: Any, shared: dict | None, retried: bool = False) -> None:
        """The row of an attempt that ended (*retried*: it failed and the task
        runs again, as the event's reason says)."""
        recording = self._recording
        if recording is None:
            return
        task = event.task
        key = task_key(task)
        duration = getattr(event, "duration", None)
        ended = event.wall
        started = None if duration is None else ended - duration
        excinfo = event.res.excinfo
        blob = note = exc_type = message = text = None
        reason = event.reason if retried else None
        if excinfo is None:
            outcome = PASSED
            if shared:
                meta = getattr(task, META_ATTR, None)
                if isinstance(meta, SchedMeta) and meta.provides:
                    blob, note = _pickled_shared(shared)
        else:
            outcome = RETRIED if retried else FAILED
            exc_type = excinfo.type.__qualname__
            message = _bounded(str(excinfo.val))
            text = _bounded("".join(traceback.format_exception(*excinfo)))
        if key in recording.written:  # handed out in an earlier lot
            recording.written.discard(key)
            recording.finished.append(
                (outcome, started, ended, duration, event.worker, exc_type, message,
                 text, reason, blob, note, recording.run_id,
                 recording.key2identity[key])
            )
            return
        handed = recording.dispatched.pop(key, None)
        run, identity, name, callpath, described = self._describe(recording, task, key)
        recording.rows.append((
            run, identity, name, callpath, outcome,
            None if handed is None else handed[1], started, ended, duration,
            event.worker, exc_type, message, text, reason, blob, note, *described,
        ))

    def _skipped(self, event: Any, shared: dict | None) -> None:
        recording = self._recording
        if recording is None:
            return
        task = event.task
        key = task_key(task)
        if key in recording.written:
            recording.written.discard(key)
            recording.skipped.append(
                (SKIPPED, event.reason, recording.run_id, recording.key2identity[key])
            )
            return
        handed = recording.dispatched.pop(key, None)
        run, identity, name, callpath, described = self._describe(recording, task, key)
        recording.rows.append((
            run, identity, name, callpath, SKIPPED,
            None if handed is None else handed[1], None, None, None, None, None,
            None, None, event.reason, None, None, *described,
        ))

    def _aborting(self, event: Any, shared: dict | None) -> None:
        recording = self._recording
        if recording is not None:
            self.conn.execute(
                "UPDATE runs SET end_reason = ? WHERE id = ?",
                (f"aborted: {event.reason}" if event.reason else "aborted",
                 recording.run_id),
            )

    def _run_ended(self, event: Any, shared: dict | None) -> None:
        self._write_rows()
        recording, self._recording = self._recording, None
        if recording is None:
            return
        self.conn.execute(
            "UPDATE runs SET ended = ? WHERE id = ?", (event.wall, recording.run_id)
        )


def _callpath(task: Any) -> str | None:
    callpath = getattr(task, CALLPATH_ATTR, None)
    return "/".join(callpath) if callpath else None


"""The journal's writer: the rows each event of a run makes, and their commits.

A ``Journal`` hands the events it observes to a ``Writer`` thread through a
queue, so the run waits for no disk: the writer takes every event waiting,
writes their rows and commits them in one transaction, then the next lot.
While results come slower than the disk takes them (tasks of a millisecond
and more), that is one transaction per result; when they come faster (no-op
tasks), a commit holds the results that arrived while the last one was being
written. Either way a result is in the file whole or not at all, and a
runner killed at any point loses only the results not committed yet.

A task gets one row, written when its result comes. One still in the pool
``HANDED_AGE`` seconds after it was handed out gets a "dispatched" row
first, which its result updates (by row id): so a task handed to the pool
and never heard of again is in the journal as such. (A pool keeps many short
tasks in its queue; a row each at once, updated a moment later, would double
the journal's work.) ``flush()`` and the end of a run write every task
handed out at once.

What is queued
--------------
The queue holds what the run's thread made of each event, and the writer
takes two of them by a short way: a task handed out is ``(key, time,
wall)`` and one that passed, with nothing to keep but its times, ``(key,
wall, duration, worker)`` (``key`` is ``task_key``, the task itself is in
``tasks``, the run's map from key to task, which ``RunStarted`` brings). Any
other event is queued as it is (``WithShared`` for a result with shared
state). The two are plain tuples, not named records, on purpose: Python's
garbage collector stops tracking a plain tuple of numbers and strings, but
not an event, which holds its task and result; thousands of events waiting
for the writer made its collections of the oldest objects, every object of
the run, run several times as often, and cost the run more than writing.

The thread holds the GIL for each Python step of its work, while the run's
thread waits for it; so the work per task is kept small (``_rows``), and
the common items take a short way through ``_lot``.
"""

from __future__ import annotations

import logging
import pickle
import platform
import sqlite3
import threading
import time
import traceback
from queue import Empty, SimpleQueue
from typing import Any, NamedTuple

import pexen
from pexen.journal._identity import DuplicateIdentityError
from pexen.journal._rows import (
    Described,
    Insert,
    describe,
    insert,
    insert_rows,
    most_parameters,
    update,
)
from pexen.journal._store import CARRIED, FAILED, PASSED, SKIPPED
from pexen.sched._naming import CALLPATH_ATTR, task_name
from pexen.sched._result import task_key
from pexen.sched.meta import META_ATTR, SchedMeta

MAX_TEXT = 100_000  # characters of a message or traceback kept per attempt
HANDED_AGE = 0.1  # seconds in the pool without a result: a "dispatched" row

# The events a journal records: a task's start is worked out from its end and
# duration, and a pause or a resize changes no row.
RECORDED = frozenset(
    {"run-started", "dispatched", "finished", "skipped", "aborting", "run-ended"}
)
# A passed task's result, for a row handed out in an earlier lot
_PASSED_UPDATE = (
    f"UPDATE attempts SET outcome = '{PASSED}', started = ?, ended = ?, "
    "duration = ?, worker = ? WHERE id = ?"
)

log = logging.getLogger("pexen.journal")


class WithShared(NamedTuple):
    """A "finished" event queued with the task's shared dict as it was then
    (the loop body may change the dict later)."""

    event: Any
    shared: dict


class RunStarted(NamedTuple):
    """A "run-started" event queued with the map from key to task that the
    items of its run name their tasks by."""

    event: Any
    tasks: dict[Any, Any]


class _Recording:
    """The changing state of the one run a journal is recording.

    ``tasks`` maps the key of each task handed out to the task.
    ``handed`` holds the tasks handed to the pool whose result has not come
    and that have no row yet (key -> its ``(key, time, wall)`` item, oldest
    first), ``written`` those that have a "dispatched" row (key -> row id),
    ``updates`` the results of passed ones to write at the end of the lot.
    ``identity2task`` is the task recorded under each identity; ``refused``
    the tasks not recorded, as their identity is another one's.
    """

    __slots__ = ("handed", "identity2task", "refused", "run_id", "tasks",
                 "updates", "written")

    def __init__(self, run_id: int, tasks: dict[Any, Any]) -> None:
        self.run_id = run_id
        self.tasks = tasks
        self.handed: dict[Any, tuple[Any, float, float]] = {}
        self.written: dict[Any, int] = {}
        self.updates: list[tuple[Any, ...]] = []
        self.identity2task: dict[str, Any] = {}
        self.refused: set[Any] = set()


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


class _Gathered:
    """Rows of one statement gathered to be inserted together (in order:
    ``start`` the rows of another statement, or ``write``, inserts them)."""

    __slots__ = ("conn", "most_parameters", "rows", "statement")

    def __init__(self, conn: sqlite3.Connection, most_parameters: int) -> None:
        self.conn = conn
        self.most_parameters = most_parameters
        self.statement = _NO_STATEMENT
        self.rows: list[tuple[Any, ...]] = []

    def start(self, statement: Insert) -> None:
        """Insert the rows gathered; gather rows of *statement* next."""
        self.write()
        self.statement = statement

    def write(self) -> None:
        if self.rows:
            insert_rows(self.conn, self.statement, self.rows, self.most_parameters)
            self.rows = []


_NO_STATEMENT = Insert("", "", 1)  # what rows gather for before the first


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
        self.most_parameters = most_parameters(conn)
        self.lock = threading.Lock()  # the connection: the writer, or a reader
        self.queue: SimpleQueue[Any] = SimpleQueue()
        self.thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._recording: _Recording | None = None
        self._handlers = {
            "finished": self._finished,
            "skipped": self._skipped,
            "aborting": self._aborting,
            "run-ended": self._run_ended,
        }

    def put(self, item: Any) -> None:
        """Queue *item*, starting the thread if it is not running."""
        self.queue.put(item)
        if self.thread is None:
            self.start()

    def start(self) -> None:
        """Start the thread if it is not running."""
        with self._thread_lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="pexen-journal", daemon=True
                )
                self.thread.start()

    def flush(self) -> None:
        """Return once every event queued so far is committed."""
        if self.thread is None and self.queue.empty():
            return
        marker = _Flush()
        self.put(marker)
        marker.done.wait()

    def stop(self) -> None:
        """Commit what is queued and end the thread."""
        with self._thread_lock:
            thread = self.thread
            if thread is not None:
                self.queue.put(_STOP)
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        queue = self.queue
        get = queue.get
        while True:
            try:
                batch = [get(timeout=self._handed_wait())]
            except Empty:  # a task has been in the pool a while: its row
                batch = []
            batch += [get() for _ in range(queue.qsize())]
            stop = self._write(batch)
            with self._thread_lock:
                if stop or (self._recording is None and queue.empty()):
                    self.thread = None
                    return

    def _handed_wait(self) -> float | None:
        """Seconds until the oldest task handed out without a row is due one
        (None: there is none)."""
        recording = self._recording
        if recording is None or not recording.handed:
            return None
        _key, handed_at, _wall = next(iter(recording.handed.values()))
        return max(0.0, handed_at + HANDED_AGE - time.monotonic())

    def _write(self, batch: list[Any]) -> bool:
        """Write *batch* in one transaction; say whether it asked to stop."""
        stop = False
        flushes = []
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                for item in self._lot(batch):
                    if item is _STOP:
                        stop = True
                    else:
                        flushes.append(item)
                self._end_lot(every=stop or bool(flushes))
                self.conn.execute("COMMIT")
            except Exception:  # a lot not written: the run and the journal go on
                log.exception("journal %r: could not write %d events", self.journal,
                              len(batch))
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
        for marker in flushes:
            marker.done.set()
        return stop

    def _lot(self, batch: list[Any]) -> list[Any]:
        """Make the rows of the items of *batch*, in order; return the
        markers it holds.

        A task handed out waits in ``handed``; when it passes, its row is
        gathered with the rows of the same statement just before it, to be
        inserted together (or if it has a "dispatched" row already, its
        result is gathered for the end of the lot). Any other event is
        written on its own, after the rows gathered before it.
        """
        markers = []
        gathered = _Gathered(self.conn, self.most_parameters)
        recording = self._recording
        for item in batch:
            try:
                if type(item) is tuple:
                    if recording is None:
                        continue  # a run this journal did not see start
                    key = item[0]
                    if len(item) == 3:  # (key, time, wall): handed out
                        recording.handed[key] = item
                        continue
                    _key, ended, duration, worker = item  # passed
                    handed = recording.handed.pop(key, None)
                    if handed is not None:
                        task = recording.tasks[key]
                        described = describe(task)
                        other = recording.identity2task.setdefault(
                            described.identity, task)
                        if other is task or not self._refused(
                                recording, described, other, task, key):
                            if described.passed is not gathered.statement:
                                gathered.start(described.passed)
                            gathered.rows.append((
                                recording.run_id, handed[2], ended - duration, ended,
                                duration, worker, *described.values,
                            ))
                    elif key in recording.written:
                        recording.updates.append((
                            ended - duration, ended, duration, worker,
                            recording.written.pop(key),
                        ))
                    continue
                if item is _STOP or type(item) is _Flush:
                    markers.append(item)
                    continue
                gathered.write()  # the rows before this event go in before its own
                if type(item) is WithShared:
                    self._finished(item.event, item.shared)
                elif type(item) is RunStarted:
                    self._run_started(item.event, item.tasks)
                else:
                    self._handlers[item.kind](item)
                recording = self._recording  # a run may have started or ended
            except sqlite3.Error:  # the lot cannot be written
                raise
            except Exception:  # this event cannot be: the others are
                log.exception("journal %r: could not record %r", self.journal,
                              self._shown(item))
        gathered.write()
        return markers

    def _shown(self, item: Any) -> Any:
        """*item* as a log shows it: a short one (a plain tuple) by its task."""
        recording = self._recording
        if type(item) is tuple and recording is not None:
            return recording.tasks.get(item[0], item)
        return item

    def _end_lot(self, every: bool = False) -> None:
        """Write a "dispatched" row for each task in the pool ``HANDED_AGE``
        seconds or more without one (*every* one, if asked), and the results
        of those written in earlier lots. (A lot that fails is dropped,
        not tried again.)"""
        recording = self._recording
        if recording is None:
            return
        handed = recording.handed
        due = []
        if handed:
            oldest = time.monotonic() - HANDED_AGE
            for item in handed.values():  # the oldest first
                if not every and item[1] > oldest:
                    break
                due.append(item)
        updates, recording.updates = recording.updates, []
        for key, _handed_at, _wall in due:
            del handed[key]
        if due:
            self._write_handed(recording, due)
        if updates:
            self.conn.executemany(_PASSED_UPDATE, updates)

    def _write_handed(self, recording: _Recording,
                      due: list[tuple[Any, float, float]]) -> None:
        """Insert a "dispatched" row for each of the tasks handed out *due*
        (their ``(key, time, wall)`` items), with ids of our own so that
        their results update them."""
        gathered = _Gathered(self.conn, self.most_parameters)
        row_id = self.conn.execute("SELECT max(id) FROM attempts").fetchone()[0] or 0
        for key, _handed_at, wall in due:
            described = self._described(recording, recording.tasks[key], key)
            if described is None:
                continue
            if described.dispatched is not gathered.statement:
                gathered.start(described.dispatched)
            row_id += 1
            gathered.rows.append((row_id, recording.run_id, wall, *described.values))
            recording.written[key] = row_id
        gathered.write()

    def _described(self, recording: _Recording, task: Any, key: Any
                   ) -> Described | None:
        """*task*'s description, or None if another task of the run has its
        identity (or it cannot be told, which is logged)."""
        try:
            described = describe(task)
        except Exception:
            log.exception("journal %r: could not tell which task %r is",
                          self.journal, task)
            return None
        other = recording.identity2task.setdefault(described.identity, task)
        if other is not task and self._refused(recording, described, other, task, key):
            return None
        return described

    def _refused(self, recording: _Recording, described: Described, other: Any,
                 task: Any, key: Any) -> bool:
        """Whether *task* is not recorded, as *other* was recorded under its
        identity (a bound method made anew is the same task); log it once."""
        if task_key(other) == key:
            return False
        if key not in recording.refused:
            recording.refused.add(key)
            # not recorded: the journal could not tell the two apart later
            log.error("journal %r: %s (not recorded)", self.journal,
                      DuplicateIdentityError(described.identity, (other, task)))
        return True

    def _run_started(self, event: Any, tasks: dict[Any, Any]) -> None:
        self._end_lot(every=True)  # of a run that never told its end
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
        recording = self._recording = _Recording(run_id, tasks)
        if plan is not None:
            for decision in plan.carried:
                task = decision.task
                recording.identity2task[decision.identity] = task
                conn.execute(
                    "INSERT INTO attempts (run, identity, name, callpath, outcome, "
                    "reason, carried_from) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, decision.identity, task_name(task), _callpath(task),
                     CARRIED, decision.reason, decision.source),
                )

    def _finished(self, event: Any, shared: dict | None = None) -> None:
        recording = self._recording
        if recording is None:
            return
        task = event.task
        duration = getattr(event, "duration", None)
        ended = event.wall
        excinfo = event.res.excinfo
        blob = note = exc_type = message = text = None
        if excinfo is None:
            outcome = PASSED
            if shared:
                meta = getattr(task, META_ATTR, None)
                if isinstance(meta, SchedMeta) and meta.provides:
                    blob, note = _pickled_shared(shared)
        else:
            outcome = FAILED
            exc_type = excinfo.type.__qualname__
            message = _bounded(str(excinfo.val))
            text = _bounded("".join(traceback.format_exception(*excinfo)))
        self._result(recording, task, {
            "outcome": outcome,
            "started": None if duration is None else ended - duration,
            "ended": ended, "duration": duration, "worker": event.worker,
            "exc_type": exc_type, "exc_message": message, "traceback": text,
            "shared": blob, "shared_note": note,
        })

    def _skipped(self, event: Any) -> None:
        recording = self._recording
        if recording is not None:
            self._result(recording, event.task,
                         {"outcome": SKIPPED, "reason": event.reason})

    def _result(self, recording: _Recording, task: Any, result: dict[str, Any]
                ) -> None:
        """Write *result* (column -> value) into *task*'s row of this run: an
        update of its dispatched row, or a new row."""
        key = task_key(task)
        written = recording.written.pop(key, None)
        if written is not None:
            self.conn.execute(*update(written, result))
            return
        handed = recording.handed.pop(key, None)
        described = self._described(recording, task, key)
        if described is not None:
            self.conn.execute(*insert({
                "run": recording.run_id,
                "dispatched": None if handed is None else handed[2],
                **dict(zip(described.columns, described.values, strict=True)),
                **result,
            }))

    def _aborting(self, event: Any) -> None:
        recording = self._recording
        if recording is not None:
            self.conn.execute(
                "UPDATE runs SET end_reason = ? WHERE id = ?",
                (f"aborted: {event.reason}" if event.reason else "aborted",
                 recording.run_id),
            )

    def _run_ended(self, event: Any) -> None:
        self._end_lot(every=True)
        recording, self._recording = self._recording, None
        if recording is None:
            return
        self.conn.execute(
            "UPDATE runs SET ended = ? WHERE id = ?", (event.wall, recording.run_id)
        )


def _callpath(task: Any) -> str | None:
    callpath = getattr(task, CALLPATH_ATTR, None)
    return "/".join(callpath) if callpath else None

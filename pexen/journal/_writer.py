"""The journal's writer: the rows each event of a run makes, and their commits.

A ``Journal`` hands what it observes to a ``Writer`` thread through a queue,
so the run waits for no disk: the writer takes everything waiting, writes
the rows and commits them in one transaction, then the next lot. While
results come slower than the disk takes them (tasks of a millisecond and
more), that is one transaction per result; when they come faster (no-op
tasks), a commit holds the results that arrived while the last one was being
written. Either way a result is in the file whole or not at all, and a
runner killed at any point loses only the results not committed yet.

A task gets one row, written when its result comes (a task retried, one
per attempt: a "retrying" event ends an attempt as a result does). One still in the pool
``HANDED_AGE`` seconds after it was handed out gets a "dispatched" row
first, which its result updates (by row id): so a task handed to the pool
and never heard of again is in the journal as such. (A pool keeps many short
tasks in its queue; a row each at once, updated a moment later, would double
the journal's work.) ``flush()`` and the end of a run write every task in
the pool at once.

What the run's thread keeps, and what it queues
-----------------------------------------------
Each run has two maps the run's thread fills, which ``RunStarted`` brings
the writer: ``tasks``, key (``task_key``) -> task, of every task handed out,
and ``handed``, key -> ``(time, wall)`` it was handed out, of those in the
pool with no row yet, oldest first. A task's result takes its entry out of
``handed``; so does the writer, when it writes the task's "dispatched" row:
whichever takes it (``dict.pop``, one step under the GIL) has it.

A task that passed, with nothing to keep but its times, whose entry its
result took, is queued as ``(key, handed_out, ended, duration, worker)``
(``handed_out``: the wall time it was handed out). Any other event is queued
as it is, in a ``Result`` for a task's end. The entries and the common item
are plain tuples, not named records, on purpose: Python's garbage collector
stops tracking a plain tuple of numbers and strings, but not a record, nor
an event, which holds its task and result. A queue of events waiting for
the writer kept thousands of tracked objects alive, and the collector's
passes over them cost the run's thread about 2 us a task, more than the
writing.

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

import cloudpickle

import pexen
from pexen.journal._identity import DuplicateIdentityError
from pexen.journal._rows import (
    Insert,
    Shape,
    describe,
    insert,
    insert_rows,
    most_parameters,
    update,
)
from pexen.journal._store import CARRIED, FAILED, PASSED, RETRIED, SKIPPED
from pexen.sched._naming import CALLPATH_ATTR, task_name
from pexen.sched._pools.transport import pickling_reason
from pexen.sched._result import task_key
from pexen.sched.meta import META_ATTR, SchedMeta

MAX_TEXT = 100_000  # characters of a message or traceback kept per attempt
HANDED_AGE = 0.1  # seconds in the pool without a result: a "dispatched" row

log = logging.getLogger("pexen.journal")


class RunStarted(NamedTuple):
    """A "run-started" event, queued with the maps the run's thread fills
    for the run (see the module docstring)."""

    event: Any
    tasks: dict[Any, Any]
    handed: dict[Any, tuple[float, float]]


class Result(NamedTuple):
    """A task's "finished", "retrying" or "skipped" event, queued with its
    ``shared`` dict as it was then (the loop body may change it later; None
    if it is empty or there is none) and the wall time it was ``handed_out``
    (None if it was not, or the writer took it: it has a row)."""

    event: Any
    shared: dict | None
    handed_out: float | None


class _Recording:
    """The changing state of the one run a journal is recording.

    ``tasks`` and ``handed`` are the run's maps (module docstring);
    ``written`` maps the key of each task with a "dispatched" row whose
    result has not come to its row id. ``identity2task`` is the task
    recorded under each identity; ``refused`` the tasks not recorded, as
    their identity is another one's.
    """

    __slots__ = ("handed", "identity2task", "refused", "run_id", "tasks", "written")

    def __init__(self, run_id: int, tasks: dict[Any, Any],
                 handed: dict[Any, tuple[float, float]]) -> None:
        self.run_id = run_id
        self.tasks = tasks
        self.handed = handed
        self.written: dict[Any, int] = {}
        self.identity2task: dict[str, Any] = {}
        self.refused: set[Any] = set()

    def oldest_handed(self) -> float | None:
        """When the task longest in the pool without a row was handed out
        (``time.monotonic()``), if there is one."""
        try:
            return next(iter(self.handed.values()))[0]
        except (StopIteration, RuntimeError):  # none; or it changed meanwhile
            return None


def _bounded(text: str) -> str:
    if len(text) <= MAX_TEXT:
        return text
    return f"[... {len(text) - MAX_TEXT} characters cut ...]" + text[-MAX_TEXT:]


def _pickled_shared(shared: dict) -> tuple[bytes | None, str | None]:
    """The shared dict pickled, or why it cannot be (cloudpickle's error,
    and which value, as a process pool says it)."""
    state = dict(shared)
    try:
        return pickle.dumps(state, pickle.HIGHEST_PROTOCOL), None
    except Exception:
        pass
    try:  # what a process pool can carry, a journal can keep (lambdas, closures)
        return cloudpickle.dumps(state, pickle.HIGHEST_PROTOCOL), None
    except Exception as exc:
        return None, (f"not picklable: {type(exc).__name__}: "
                      f"{pickling_reason(state, exc, 'shared')}")


class _Gathered:
    """Rows of one statement gathered to be inserted together, their
    parameters one flat list (in order: ``start`` the rows of another
    statement, or ``write``, inserts them)."""

    __slots__ = ("conn", "most_parameters", "params", "statement")

    def __init__(self, conn: sqlite3.Connection, most_parameters: int) -> None:
        self.conn = conn
        self.most_parameters = most_parameters
        self.statement = _NO_STATEMENT
        self.params: list[Any] = []

    def start(self, statement: Insert) -> None:
        """Insert the rows gathered; gather rows of *statement* next."""
        self.write()
        self.statement = statement

    def write(self) -> None:
        if self.params:
            insert_rows(self.conn, self.statement, self.params, self.most_parameters)
            self.params = []


_NO_STATEMENT = Insert("", "", 1)  # what rows gather for before the first


class _Flush:
    """A marker in the queue: set once everything before it is committed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()  # a marker in the queue: the writer ends


class Writer:
    """Write what a journal queues, on a thread of its own.

    The thread runs while there is something to write: it starts with the
    first event queued and ends once a run has ended and the queue is empty
    (or on ``stop``), so a journal between runs holds no thread. While a run
    is recorded, it wakes at least every ``HANDED_AGE`` seconds, for the
    tasks in the pool due a "dispatched" row.
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
        """Return once everything queued so far is committed."""
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
                batch = [get(timeout=self._wait())]
            except Empty:  # nothing came: a task in the pool may be due its row
                if not self._due():
                    continue
                batch = []
            batch += [get() for _ in range(queue.qsize())]
            stop = self._write(batch)
            with self._thread_lock:
                if stop or (self._recording is None and queue.empty()):
                    self.thread = None
                    return

    def _wait(self) -> float | None:
        """Seconds to wait for the next item: until the task longest in the
        pool is due its row (None: no run is recorded)."""
        recording = self._recording
        if recording is None:
            return None
        oldest = recording.oldest_handed()
        if oldest is None:  # none; one handed out now is due a moment after
            return HANDED_AGE
        return max(0.0, oldest + HANDED_AGE - time.monotonic())

    def _due(self, every: bool = False) -> bool:
        """Whether a task in the pool is due its "dispatched" row (with
        *every*: whether there is one)."""
        recording = self._recording
        oldest = None if recording is None else recording.oldest_handed()
        return oldest is not None and (
            every or oldest + HANDED_AGE <= time.monotonic())

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
                # what the lot asked of the writer holds all the same: a flush
                # or close waiting on it must not wait for ever
                stop = any(item is _STOP for item in batch)
                flushes = [item for item in batch if type(item) is _Flush]
                if any(getattr(item, "kind", None) == "run-ended" for item in batch):
                    self._recording = None
        for marker in flushes:
            marker.done.set()
        return stop

    def _lot(self, batch: list[Any]) -> list[Any]:
        """Make the rows of the items of *batch*, in order; return the
        markers it holds.

        A task that passed takes the short way: its row is gathered with the
        rows of the same statement just before it, to be inserted together.
        Any other event is written on its own, after the rows gathered
        before it.
        """
        markers = []
        gathered = _Gathered(self.conn, self.most_parameters)
        recording = self._recording
        for item in batch:
            try:
                if type(item) is tuple:  # a task that passed
                    if recording is None:
                        continue  # of a run this journal did not see start
                    key, handed_out, ended, duration, worker = item
                    task = recording.tasks[key]
                    shape, values = describe(task)
                    other = recording.identity2task.setdefault(values[0], task)
                    if other is task or not self._refused(
                            recording, values[0], other, task, key):
                        if shape.passed is not gathered.statement:
                            gathered.start(shape.passed)
                        params = gathered.params
                        params.extend((recording.run_id, handed_out, ended, duration,
                                       worker))
                        params.extend(values)
                    continue
                if item is _STOP or type(item) is _Flush:
                    markers.append(item)
                    continue
                gathered.write()  # the rows before this event go in before its own
                if type(item) is Result:
                    self._result(item)
                elif type(item) is RunStarted:
                    self._run_started(item)
                elif item.kind == "aborting":
                    self._aborting(item)
                elif item.kind == "run-ended":
                    self._run_ended(item)
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
        seconds or more without one (*every* one, if asked)."""
        recording = self._recording
        if recording is not None and self._due(every):
            self._write_handed(recording, every)

    def _write_handed(self, recording: _Recording, every: bool) -> None:
        """Insert a "dispatched" row for each task in the pool due one, with
        an id of our own for its result to update."""
        handed = recording.handed
        due_before = time.monotonic() - HANDED_AGE
        gathered = _Gathered(self.conn, self.most_parameters)
        row_id = self.conn.execute("SELECT max(id) FROM attempts").fetchone()[0] or 0
        # a copy to look through (the run's thread changes the map as we do),
        # in one step under the GIL; the oldest first
        for key, (handed_at, _wall) in handed.copy().items():
            if not every and handed_at > due_before:
                break
            if key in recording.written:
                # a retried task's attempt before this one has a row its end,
                # queued but not yet written, is to update: this one waits
                continue
            taken = handed.pop(key, None)  # or the task's result took it
            if taken is None:
                continue
            described = self._described(recording, recording.tasks[key], key)
            if described is None:
                continue
            shape, values = described
            if shape.dispatched is not gathered.statement:
                gathered.start(shape.dispatched)
            row_id += 1
            gathered.params.extend((row_id, recording.run_id, taken[1]))
            gathered.params.extend(values)
            recording.written[key] = row_id
        gathered.write()

    def _described(self, recording: _Recording, task: Any, key: Any
                   ) -> tuple[Shape, tuple[Any, ...]] | None:
        """*task*'s description (``describe``), or None if another task of
        the run has its identity (or it cannot be told, which is logged)."""
        try:
            shape, values = describe(task)
        except Exception:
            log.exception("journal %r: could not tell which task %r is",
                          self.journal, task)
            return None
        other = recording.identity2task.setdefault(values[0], task)
        if other is not task and self._refused(recording, values[0], other, task, key):
            return None
        return shape, values

    def _refused(self, recording: _Recording, identity: str, other: Any,
                 task: Any, key: Any) -> bool:
        """Whether *task* is not recorded, as *other* was recorded under its
        *identity* (a bound method made anew is the same task); log it once."""
        if task_key(other) == key:
            return False
        if key not in recording.refused:
            recording.refused.add(key)
            # not recorded: the journal could not tell the two apart later
            log.error("journal %r: %s (not recorded)", self.journal,
                      DuplicateIdentityError(identity, (other, task)))
        return True

    def _run_started(self, item: RunStarted) -> None:
        self._end_lot(every=True)  # of a run that never told its end
        event = item.event
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
        recording = self._recording = _Recording(run_id, item.tasks, item.handed)
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
            if plan.run_id is not None:
                self._carry_the_rest(run_id, plan)

    def _carry_the_rest(self, run_id: int, plan: Any) -> None:
        """Carry into run *run_id* what passed in the run it resumes from
        and is not among its tasks (``--rerun-failed``, a ``-k`` selection):
        a run resumed from it then carries those too, where they would run
        again as "not in the last run"."""
        in_run = {decision.identity for decision in plan.decisions}
        rest = [
            (run_id, identity, name, callpath, CARRIED,
             f"passed in run {passed_in}, carried into run {plan.run_id}; not "
             f"among the tasks of run {run_id}" if outcome == CARRIED else
             f"passed in run {passed_in}; not among the tasks of run {run_id}",
             source)
            for identity, name, callpath, outcome, source, passed_in
            in self.conn.execute(
                "SELECT a.identity, a.name, a.callpath, a.outcome, s.id, s.run "
                "FROM attempts a JOIN attempts s ON s.id = coalesce(a.carried_from, "
                "a.id) WHERE a.run = ? AND a.outcome IN (?, ?) ORDER BY a.id",
                (plan.run_id, PASSED, CARRIED))
            if identity not in in_run
        ]
        self.conn.executemany(
            "INSERT INTO attempts (run, identity, name, callpath, outcome, reason, "
            "carried_from) VALUES (?, ?, ?, ?, ?, ?, ?)", rest)

    def _result(self, item: Result) -> None:
        """Write a task's end: an update of its "dispatched" row, or a row."""
        recording = self._recording
        if recording is None:
            return
        event = item.event
        task = event.task
        if event.kind == "skipped":
            result: dict[str, Any] = {"outcome": SKIPPED, "reason": event.reason}
        else:
            result = _finished(event, item.shared)
            if event.kind == "retrying":  # it failed, and runs again
                result["outcome"], result["reason"] = RETRIED, event.reason
        key = task_key(task)
        row_id = recording.written.pop(key, None)
        if row_id is not None:
            self.conn.execute(*update(row_id, result))
            return
        described = self._described(recording, task, key)
        if described is not None:
            shape, values = described
            self.conn.execute(*insert({
                "run": recording.run_id, "dispatched": item.handed_out,
                **shape.row(values), **result,
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


def _finished(event: Any, shared: dict | None) -> dict[str, Any]:
    """The columns a "finished" event fills: outcome, times, worker, the
    exception, and the shared state of a task that passed and provides tags."""
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
    return {
        "outcome": outcome,
        "started": None if duration is None else ended - duration,
        "ended": ended, "duration": duration, "worker": event.worker,
        "exc_type": exc_type, "exc_message": message, "traceback": text,
        "shared": blob, "shared_note": note,
    }


def _callpath(task: Any) -> str | None:
    callpath = getattr(task, CALLPATH_ATTR, None)
    return "/".join(callpath) if callpath else None

"""The worker process of ``ProcessWorkerPool``: its set-up and main loop.

What it sends and receives, and how: :mod:`.wire`.

Signals
-------
A worker ignores SIGINT (the parent decides what Ctrl-C means), leads its own
process group (so a timeout or a cancel can kill what the task started too),
and enforces a job's timeout itself with ``setitimer``: the default action of
SIGALRM ends the process even if the task is stuck in C code. ``-SIGALRM`` as
exit status thus means "timed out".

When the parent process dies, the worker's whole process group dies with it
(Linux): the parent sentinel pipe is in O_ASYNC mode, owned by the group, so
its EOF makes the kernel send SIGIO, whose default action is to terminate,
to every process in the group: the worker, and what its task started there
(a Python task's subprocesses, an executable and its ``&`` children). Dying
alone would not do: those would run on under init. The kernel does it all,
so a task stuck in C code cannot delay it. What left the group (``setsid``,
a shell with job control) or handles SIGIO is not reached: under ``pexen
run``, its watchdog takes care of those (``pexen._watchdog``).

What its tasks start carries the worker's id in ``PEXEN_RUN_ID`` (set before
the initializer runs), so the parent can kill it all should it kill this
worker to stop a task, or should this worker crash (``spawn.kill_worker``).

Initializer and finalizer
-------------------------
The pool's ``initializer(*initargs)`` runs once the worker is set up (its
output and logging already reach the parent) and before it says READY; if it
raises, the worker prints the traceback, sends INIT_FAILED and exits. The
``finalizer()`` runs when the parent says STOP, never when the worker is
killed (a cancelled run, a timeout, a crash); what it raises is printed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from pexen._watchdog import mark
from pexen.sched._calling import execute
from pexen.sched._errors import TransportError
from pexen.sched._pools.base import Job
from pexen.sched._pools.process.wire import (
    INIT_FAILED,
    LOADING,
    NO_KEY,
    READY,
    RESULT,
    RUNNING,
    STOP,
    TICKET,
    FrameReader,
    WireJob,
    WireOutcome,
    frame,
    write_all,
)
from pexen.sched._pools.transport import (
    PROTOCOL,
    dumps_excinfo,
    dumps_value,
    loads,
    loads_task,
)
from pexen.sched._result import ExceptionInfo

_new_tuple = tuple.__new__  # a record from a plain tuple, without a Python call

# streams replaced by ours are kept alive here: closing one would close fd 1/2
_replaced_streams: list[Any] = []


# -- setting the process up ---------------------------------------------------


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # fork copies the parent's
    if hasattr(signal, "pthread_sigmask"):
        # the parent blocks SIGINT while it starts us: a Ctrl-C then stays
        # pending until now, and is ignored
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _die_with_parent() -> None:
    """Have the kernel end our process group (SIGIO) when the parent process ends."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if not isinstance(sentinel, int) or not sys.platform.startswith("linux"):
        return
    import fcntl
    import select

    # a negative owner is a process group; only ours if we lead it, as a group
    # we merely belong to may hold our parent and its neighbours
    pid = os.getpid()
    owner = -pid if os.getpgrp() == pid else pid
    try:
        fcntl.fcntl(sentinel, fcntl.F_SETOWN, owner)
        flags = fcntl.fcntl(sentinel, fcntl.F_GETFL)
        fcntl.fcntl(sentinel, fcntl.F_SETFL, flags | os.O_ASYNC)
    except OSError:
        return
    poller = select.poll()
    poller.register(sentinel, select.POLLIN)
    if poller.poll(0):  # the parent went before that (we have started nothing)
        os._exit(1)


def _text_stream(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        io.FileIO(fd, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )


def _redirect_output(out_fd: int, err_fd: int) -> None:
    """Make fds 1 and 2 our pipes, and sys.stdout/stderr fresh writers on them.

    Under fork the old stream objects are the parent's (maybe pytest's
    capture buffers); they are kept referenced, so none closes fd 1 or 2.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    _replaced_streams.extend([sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__])
    # typeshed marks sys.__stdout__ Final; it is rebound on purpose, so that
    # what writes to the original streams reaches the parent's pipes too
    sys.stdout = sys.__stdout__ = _text_stream(1)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = _text_stream(2)  # type: ignore[misc]


class ForwardHandler(logging.Handler):
    """Send each record to the parent, which hands it to its own handlers."""

    def __init__(self, fd: int, slot: Any) -> None:
        super().__init__(logging.NOTSET)
        self.fd = fd
        self.slot = slot

    def emit(self, record: logging.LogRecord) -> None:
        try:
            state = dict(record.__dict__)
            state["msg"] = record.getMessage()
            state["args"] = None
            if record.exc_info:
                if not record.exc_text:
                    state["exc_text"] = logging.Formatter().formatException(
                        record.exc_info
                    )
                state["exc_info"] = None
            key = self.slot[0]
            state["pexen_key"] = None if key == NO_KEY else int(key)
            try:
                payload = pickle.dumps(state, PROTOCOL)
            except Exception:  # an unpicklable value given as ``extra``
                for name, value in state.items():
                    try:
                        pickle.dumps(value, PROTOCOL)
                    except Exception:
                        state[name] = repr(value)
                payload = pickle.dumps(state, PROTOCOL)
            write_all(self.fd, frame(payload))  # handle() holds self.lock
        except Exception:
            self.handleError(record)


def _setup_logging(fd: int, slot: Any, levels: dict[str, int]) -> None:
    """Forward every record the parent's levels let through, and only that.

    Handlers copied by fork would write to the parent's files behind its
    back, so every logger loses its handlers and propagates to the root,
    whose only handler forwards; the parent routes each record to the logger
    of its name, which applies the parent's configuration.
    """
    manager = logging.Logger.manager
    root = logging.getLogger()
    for logger in [root, *manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
    root.setLevel(levels.get("", logging.WARNING))
    for name, level in levels.items():
        if name:
            logging.getLogger(name).setLevel(level)
    root.addHandler(ForwardHandler(fd, slot))


# -- running jobs -------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_definitions(
    into: dict[int, Any], definitions: list[tuple[int, bytes]]
) -> None:
    """Unpickle the definitions a batch of jobs brought (once per worker).

    One that fails fails the tasks that need it (``_Unloadable``), not the
    worker.
    """
    for number, blob in definitions:
        try:
            into[number] = loads(blob)
        except BaseException as exc:
            into[number] = _Unloadable(exc)


class _Unloadable:
    """Stands for a definition that could not be unpickled here."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Definitions(dict):
    """The definitions this worker has, by number, for ``loads_task``."""

    def __getitem__(self, number: int) -> Any:
        value = super().__getitem__(number)
        if isinstance(value, _Unloadable):
            raise value.exc
        return value


_definitions = _Definitions()


def _run(job: WireJob, slot: Any) -> WireOutcome:
    """Run one job; return its outcome. Never raises.

    Loading the task (which may import its module) is not the task's time:
    its start is noted in the slot, and its alarm armed, only once it is
    loaded.
    """
    key = job.key
    try:
        task = loads_task(job.task_blob, job.form, _definitions)
    except BaseException as exc:
        return WireOutcome(key, False, None, None, ("task", _reason(exc)))
    try:
        data_blob = job.data_blob
        kwargs, shared = loads(data_blob) if data_blob is not None else ({}, {})
    except BaseException as exc:
        return WireOutcome(key, False, None, None, ("arguments", _reason(exc)))
    slot[1] = time.monotonic()
    slot[2] = RUNNING
    if job.alarm is not None:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)  # a task may have changed it
        signal.setitimer(signal.ITIMER_REAL, job.alarm)
    try:
        _key, shared, ret, excinfo, started, duration, _worker = execute(
            _new_tuple(Job, (key, task, job.pass_shared, kwargs, shared, None))
        )
    except KeyboardInterrupt:  # raised by the task itself: SIGINT is ignored here
        excinfo, ret = ExceptionInfo(*sys.exc_info()), None
        started = duration = None
    shared_blob: bytes | bool | None  # False: the shared dict could not be pickled
    if excinfo is not None:
        try:
            shared_blob = dumps_value(shared, "shared state") if shared else None
        except TransportError:
            shared_blob = False
        exc_blob = dumps_excinfo(excinfo)
        return WireOutcome(key, shared_blob, None, exc_blob, None, started, duration)
    try:
        shared_blob = dumps_value(shared, "shared state", "shared") if shared else None
    except TransportError as exc:
        problem = ("shared state", exc.reason)
        return WireOutcome(key, False, None, None, problem, started, duration)
    try:
        ret_blob = None if ret is None else dumps_value(ret, "return value", "ret")
    except TransportError as exc:
        problem = ("return value", exc.reason)
        return WireOutcome(key, shared_blob, None, None, problem, started, duration)
    return _new_tuple(
        WireOutcome, (key, shared_blob, ret_blob, None, None, started, duration)
    )


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _initialize(hooks: bytes | None, result_fd: int) -> Callable[[], Any] | None:
    """Run the pool's initializer; return its finalizer.

    If the hooks cannot be unpickled or the initializer raises, print the
    traceback, tell the parent (INIT_FAILED) and end the process.
    """
    if hooks is None:
        return None
    try:
        initializer, initargs, finalizer = loads(hooks)
        if initializer is not None:
            initializer(*initargs)
    except BaseException as exc:
        traceback.print_exc()
        _flush_output()
        message = frame(pickle.dumps((INIT_FAILED, _reason(exc)), PROTOCOL))
        write_all(result_fd, message)
        os._exit(1)
    return finalizer


def _finalize(finalizer: Callable[[], Any] | None) -> None:
    """Run the pool's finalizer, if any; print what it raises."""
    if finalizer is None:
        return
    try:
        finalizer()
    except BaseException:
        traceback.print_exc()


def main(
    job_conn: Any,
    result_conn: Any,
    out_conn: Any,
    err_conn: Any,
    log_conn: Any,
    ticket_conn: Any,
    slot: Any,
    config: dict[str, Any],
) -> None:
    """The worker process: set up, say READY, then run jobs until STOP or EOF."""
    _ignore_sigint()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent()
    if config.get("scope") is not None:
        mark(config["scope"])  # before the initializer, which may start processes
    _redirect_output(out_conn.fileno(), err_conn.fileno())
    out_conn.close()
    err_conn.close()
    log_fd, result_fd = log_conn.fileno(), result_conn.fileno()
    _setup_logging(log_fd, slot, config["log_levels"])
    finalizer = _initialize(config.get("hooks"), result_fd)

    setitimer, real = signal.setitimer, signal.ITIMER_REAL
    now, dumps = time.monotonic, pickle.dumps
    write_all(result_fd, frame(dumps((READY, os.getpid()), PROTOCOL)))
    reader = FrameReader(job_conn.fileno())
    ticket_fd = ticket_conn.fileno()
    os.set_blocking(ticket_fd, False)
    read, ticket_size, unpack = os.read, TICKET.size, TICKET.unpack
    pid = os.getpid()
    thread_wait = None  # from STOP: how long to wait for threads tasks left
    pending: deque[Any] = deque()  # jobs received, not started nor taken back
    claimed: int | None = None  # the key of the ticket taken, its job not yet here
    while True:
        if pending and claimed is None:
            try:
                ticket = read(ticket_fd, ticket_size)
            except BlockingIOError:  # no ticket: the parent took back every job
                pending.clear()
            else:
                if not ticket:  # the parent is gone
                    break
                (claimed,) = unpack(ticket)
        if claimed is not None:  # tickets come in the order of the jobs
            while pending and pending[0][0] != claimed:
                pending.popleft()  # the parent took it back
        if not pending:  # wait for jobs (or for the one claimed, on its way)
            payload = reader.read()
            if payload is None:  # the parent is gone
                break
            kind, body = loads(payload)
            if kind == STOP:
                thread_wait = body
                _finalize(finalizer)
                break
            definitions, jobs = body
            if definitions:
                _load_definitions(_definitions, definitions)
            pending.extend(jobs)
            continue
        claimed = None
        job = _new_tuple(WireJob, pending.popleft())
        slot[2] = LOADING
        slot[1] = now()
        slot[0] = job.key
        try:
            outcome = _run(job, slot)
            if os.getpid() != pid:  # a copy a task forked: not the worker
                os._exit(0)
            try:
                message = frame(dumps((RESULT, tuple(outcome)), PROTOCOL))
            except Exception as exc:  # e.g. too large a frame
                problem = ("result", _reason(exc))
                outcome = WireOutcome(job.key, False, None, None, problem)
                message = frame(dumps((RESULT, tuple(outcome)), PROTOCOL))
        finally:
            if job.alarm is not None:
                setitimer(real, 0)
        _flush_output()  # before the result: the parent relays it first
        write_all(result_fd, message)
        slot[0] = NO_KEY
    _flush_output()
    _await_threads(thread_wait)


# -- the end ------------------------------------------------------------------


def _await_threads(limit: float | None) -> None:
    """Wait, as a plain program's exit would, for the threads tasks left running.

    For at most *limit* seconds (STOP says how long: none on cancel, the
    parent kills what runs then; None: the parent is gone). What still runs
    then is killed with this process, and named on stderr when it was
    waited for.
    """
    main_thread = threading.main_thread()

    def running() -> list[threading.Thread]:
        return [t for t in threading.enumerate()
                if t is not main_thread and not t.daemon and t.is_alive()]

    deadline = time.monotonic() + (limit or 0.0)
    while (left := running()) and (wait := deadline - time.monotonic()) > 0:
        left[0].join(wait)
    if not left:
        return  # the interpreter's own exit finds nothing to wait for
    if limit:
        names = ", ".join(repr(thread.name) for thread in left)
        print(
            f"pexen: worker pid {os.getpid()} is killed with {len(left)} thread"
            f"{'s' if len(left) > 1 else ''} its tasks started ({names}), still "
            f"running {limit:g} s after the run ended; have the task join its "
            f"threads, or start them with daemon=True if their work may be lost",
            file=sys.stderr,
        )
        _flush_output()
    os._exit(0)  # an exit without waiting for them

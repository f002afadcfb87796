"""The worker process of ``ProcessWorkerPool``: its set-up and main loop.

What it sends and receives, and how: :mod:`.wire`.

Signals
-------
A worker ignores SIGINT (the parent decides what Ctrl-C means), leads its own
process group (so a timeout or a cancel can kill what the task started too),
dies by SIGIO when the parent process dies (Linux: the parent sentinel pipe is
in O_ASYNC mode), and enforces a job's timeout itself with ``setitimer``: the
default action of SIGALRM ends the process even if the task is stuck in C
code. ``-SIGALRM`` as exit status thus means "timed out".
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
from collections import deque
from typing import Any

from pexen.sched._calling import execute
from pexen.sched._errors import TransportError
from pexen.sched._pools.base import Job
from pexen.sched._pools.process.wire import (
    DROP,
    DROPPED,
    NO_KEY,
    READY,
    RESULT,
    STOP,
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
    """Get SIGIO (default action: terminate) when the parent process ends."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if not isinstance(sentinel, int) or not sys.platform.startswith("linux"):
        return
    import fcntl
    import select

    try:
        fcntl.fcntl(sentinel, fcntl.F_SETOWN, os.getpid())
        flags = fcntl.fcntl(sentinel, fcntl.F_GETFL)
        fcntl.fcntl(sentinel, fcntl.F_SETFL, flags | os.O_ASYNC)
    except OSError:
        return
    poller = select.poll()
    poller.register(sentinel, select.POLLIN)
    if poller.poll(0):  # the parent went before that
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


def _run(job: WireJob) -> WireOutcome:
    """Run one job; return its outcome. Never raises."""
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


def _drop(pending: deque[Any], keys: list[int], result_fd: int) -> None:
    """Drop the jobs *keys* that have not started; tell the parent which."""
    dropped = set(keys)
    kept = [plain for plain in pending if plain[0] not in dropped]
    for plain in pending:
        if plain[0] in dropped:
            write_all(result_fd, frame(pickle.dumps((DROPPED, plain[0]), PROTOCOL)))
    pending.clear()
    pending.extend(kept)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def main(
    job_conn: Any,
    result_conn: Any,
    out_conn: Any,
    err_conn: Any,
    log_conn: Any,
    slot: Any,
    config: dict[str, Any],
) -> None:
    """The worker process: set up, say READY, then run jobs until STOP or EOF."""
    _ignore_sigint()
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent()
    _redirect_output(out_conn.fileno(), err_conn.fileno())
    out_conn.close()
    err_conn.close()
    log_fd, result_fd = log_conn.fileno(), result_conn.fileno()
    _setup_logging(log_fd, slot, config["log_levels"])

    alarm, setitimer, real = signal.SIGALRM, signal.setitimer, signal.ITIMER_REAL
    sig_dfl, set_handler = signal.SIG_DFL, signal.signal
    now, dumps = time.monotonic, pickle.dumps
    write_all(result_fd, frame(dumps((READY, os.getpid()), PROTOCOL)))
    reader = FrameReader(job_conn.fileno())
    pid = os.getpid()
    pending: deque[Any] = deque()  # jobs received, not started
    drops_read = 0
    while True:
        # a DROP frame the parent wrote in full is read before the next job
        if not pending or slot[2] != drops_read:
            payload = reader.read()
            if payload is None:  # the parent is gone
                break
            kind, body = loads(payload)
            if kind == STOP:
                break
            if kind == DROP:
                drops_read += 1
                _drop(pending, body, result_fd)
                continue
            definitions, jobs = body
            if definitions:
                _load_definitions(_definitions, definitions)
            pending.extend(jobs)
            continue
        job = _new_tuple(WireJob, pending.popleft())
        alarm_after = job.alarm
        slot[1] = now()
        slot[0] = job.key
        if alarm_after is not None:
            set_handler(alarm, sig_dfl)  # a task may have changed it
            setitimer(real, alarm_after)
        try:
            outcome = _run(job)
            if os.getpid() != pid:  # a copy a task forked: not the worker
                os._exit(0)
            try:
                message = frame(dumps((RESULT, tuple(outcome)), PROTOCOL))
            except Exception as exc:  # e.g. too large a frame
                problem = ("result", _reason(exc))
                outcome = WireOutcome(job.key, False, None, None, problem)
                message = frame(dumps((RESULT, tuple(outcome)), PROTOCOL))
        finally:
            if alarm_after is not None:
                setitimer(real, 0)
        _flush_output()  # before the result: the parent relays it first
        write_all(result_fd, message)
        slot[0] = NO_KEY
    _flush_output()
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        # a task left a thread running: exiting normally would wait for it
        os._exit(0)

"""Capture what a Python task prints, for the summary and the JUnit report.

This is the worker side of ``pexen run``'s capture: it runs wherever a task
runs (threads of the ``pexen`` process, worker processes, cluster workers),
so it imports neither ``pexen.cli`` nor rich, which a worker would otherwise
load (and pay for) just to unpickle a task.

Executables already run with their output captured (``POPEN_KWARGS``). A
Python task is handed to the scheduler inside a ``CapturingTask``, which
points ``sys.stdout`` and ``sys.stderr`` of the thread running it at a buffer
of its own while it runs, as pytest's ``capsys`` does, so tasks running at
once in threads of one process keep their output apart. What the task wrote
comes back with its result (``TaskOutput``) or on the exception it raised
(``OUTPUT_ATTR``), from threads and worker processes alike.

The wrapper has the task's signature (``__wrapped__``), metadata and call
path, so the scheduler calls it exactly as it would call the task. It pickles
as "wrap this function again", so a process pool ships the task itself.
Logging handlers writing to ``sys.stdout``/``sys.stderr`` are routed
too, so what a task logs (in this process) is part of its output. Output
written to the file descriptors directly (a subprocess the task starts, C
code) or from threads the task starts is not captured.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

from pexen.sched._calling import run_coroutine
from pexen.sched._naming import CALLPATH_ATTR
from pexen.sched.meta import assign_meta, retrieve_meta

# The attribute of a task's exception that carries what the task printed.
OUTPUT_ATTR = "pexen_output"

_local = threading.local()  # .buffer: the list the current thread writes to
_install_lock = threading.Lock()


class _ThreadRouter:
    """A stand-in for ``sys.stdout``/``sys.stderr`` that routes by thread.

    A thread running a ``CapturingTask`` writes to that task's buffer; every
    other thread writes to the stream this one replaced.
    """

    def __init__(self, original: Any) -> None:
        self.original = original

    def write(self, text: str) -> int:
        buffer = getattr(_local, "buffer", None)
        if buffer is None:
            return self.original.write(text)
        buffer.append(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if getattr(_local, "buffer", None) is None:
            self.original.flush()

    def isatty(self) -> bool:
        return getattr(_local, "buffer", None) is None and self.original.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...
        return getattr(self.original, name)


def _install() -> None:
    """Put a router in front of ``sys.stdout`` and ``sys.stderr`` (once), and
    in front of the logging handlers that write to them."""
    with _install_lock:
        routers: dict[int, _ThreadRouter] = {}
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _ThreadRouter):
                router = _ThreadRouter(stream)
                setattr(sys, name, router)
                routers[id(stream)] = router
        # a handler made when a module was imported (logging.basicConfig())
        # holds the stream itself: route it too, so what a task logs is its output
        for handler in stream_handlers():
            found = routers.get(id(handler.stream))
            if found is not None:
                handler.setStream(found)


def uninstall() -> None:
    """Give ``sys.stdout``, ``sys.stderr`` and logging handlers back the
    streams the routers replaced."""
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _ThreadRouter):
                setattr(sys, name, stream.original)
        for handler in stream_handlers():
            if isinstance(handler.stream, _ThreadRouter):
                handler.setStream(handler.stream.original)


def stream_handlers() -> list[logging.StreamHandler]:
    """Every ``logging.StreamHandler`` attached to a logger."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        handler
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
    ]


@contextlib.contextmanager
def _captured(buffer: list[str]) -> Iterator[None]:
    _install()
    outer = getattr(_local, "buffer", None)
    _local.buffer = buffer
    try:
        yield
    finally:
        _local.buffer = outer


class TaskOutput:
    """What a ``CapturingTask`` returns: the task's return value and its output."""

    __slots__ = ("output", "ret")

    def __init__(self, ret: Any, output: str | None) -> None:
        self.ret = ret
        self.output = output

    def __reduce__(self) -> tuple:
        return (TaskOutput, (self.ret, self.output))


class CapturingTask:
    """Run a Python task with its printed output captured."""

    def __init__(self, func: Any) -> None:
        self.__wrapped__ = func
        meta = retrieve_meta(func)
        if meta is not None:
            assign_meta(self, meta)
        callpath = getattr(func, CALLPATH_ATTR, None)
        if callpath is not None:
            setattr(self, CALLPATH_ATTR, callpath)

    def __reduce__(self) -> tuple:
        return (CapturingTask, (self.__wrapped__,))

    def __repr__(self) -> str:
        return f"<CapturingTask {self.__wrapped__!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> TaskOutput:
        buffer: list[str] = []
        try:
            with _captured(buffer):
                ret = self.__wrapped__(*args, **kwargs)
                if type(ret) is types.CoroutineType:  # async: run it, captured
                    ret = run_coroutine(self.__wrapped__, ret)
        except BaseException as exc:
            if buffer:
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(exc, OUTPUT_ATTR, "".join(buffer))
            raise
        return TaskOutput(ret, "".join(buffer) or None)

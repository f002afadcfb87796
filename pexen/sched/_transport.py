"""Moving tasks, values and exceptions between processes or machines.

Tasks are pickled with cloudpickle, so lambdas, closures and functions of
``__main__`` work under every start method and on remote workers (functions of
importable modules still go by reference). Data (kwargs, shared dicts, return
values) goes through plain pickle first, the fast path, and cloudpickle only
when that fails. Exceptions travel with their traceback (tblib); one that
cannot make the trip is replaced by a :class:`RemoteTaskError` carrying its
type name, message and formatted traceback, never by None.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

import cloudpickle
from tblib import Traceback

from pexen.sched._result import ExceptionInfo

PROTOCOL = pickle.HIGHEST_PROTOCOL
loads = pickle.loads


class TransportError(Exception):
    """A value could not be pickled; the message says which and why."""


class RemoteTaskError(Exception):
    """Stands in for an exception that could not be brought back from a worker.

    ``type_name`` is the original exception's qualified type name and
    ``remote_traceback`` its traceback as formatted in the worker.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return (
            f"{self.type_name}: {self.message} (the exception could not be "
            f"pickled; remote traceback follows)\n{self.remote_traceback}"
        )


def _reason(exc: BaseException) -> str:
    return f"{exc}" if str(exc) else type(exc).__name__


def dumps_task(task: Any) -> bytes:
    """Pickle a task by value where needed (cloudpickle); raise TransportError."""
    try:
        return cloudpickle.dumps(task, protocol=PROTOCOL)
    except Exception as exc:
        raise TransportError(f"task cannot be sent to a worker: {_reason(exc)}") from exc


def dumps_value(value: Any, what: str) -> bytes:
    """Pickle data, plain pickle first; raise TransportError naming *what*."""
    try:
        return pickle.dumps(value, PROTOCOL)
    except Exception:
        pass
    try:
        return cloudpickle.dumps(value, protocol=PROTOCOL)
    except Exception as exc:
        raise TransportError(f"{what}: {_reason(exc)}") from exc


def _stand_in(exc: BaseException, tb: Any) -> RemoteTaskError:
    cls = type(exc)
    text = "".join(traceback.format_exception(cls, exc, tb))
    return RemoteTaskError(f"{cls.__module__}.{cls.__qualname__}", str(exc), text)


def dumps_excinfo(excinfo: ExceptionInfo) -> bytes:
    """Pickle an ExceptionInfo with its traceback; never fails.

    The exception is round-tripped here, in the worker, so one that pickles
    but cannot be rebuilt is replaced by a stand-in before it travels.
    """
    _type, exc, tb = excinfo
    tb_dict = Traceback(tb).as_dict() if tb is not None else None
    try:
        data = dumps_value(exc, "exception")
        loads(data)
    except Exception:
        data = pickle.dumps(_stand_in(exc, tb), PROTOCOL)
    return pickle.dumps((data, tb_dict), PROTOCOL)


def loads_excinfo(blob: bytes) -> ExceptionInfo:
    """Rebuild an ExceptionInfo whose ``tb`` is a real traceback object."""
    data, tb_dict = loads(blob)
    exc = loads(data)
    tb = Traceback.from_dict(tb_dict).as_traceback() if tb_dict else None
    exc.__traceback__ = tb
    return ExceptionInfo(type(exc), exc, tb)

"""``task_fail_wrap``: turn any exception of a task into a ``TaskFailError``."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import attrs

from pexen.sched._errors import TaskFailError
from pexen.sched.meta import assign_meta, retrieve_meta


def task_fail_wrap(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    deps_ok: bool = True,
    locks_ok: bool = True,
    reraise: type[TaskFailError] = TaskFailError,
) -> Any:
    """Wrap a task so any exception it raises becomes a controlled failure.

    Use bare (``@task_fail_wrap``) or with options
    (``@task_fail_wrap(deps_ok=False, reraise=MyFail)``). The original
    exception is the new one's ``__cause__``; metadata and signature carry over
    (the wrapper gets an equal copy of the metadata, not the same object).
    An ``async def`` task's exceptions are turned too, as its coroutine runs.
    """
    if not (isinstance(reraise, type) and issubclass(reraise, TaskFailError)):
        raise TypeError(f"reraise={reraise!r}: expected a TaskFailError subclass")

    def controlled(exc: Exception) -> TaskFailError:
        return reraise(
            f"{type(exc).__name__}: {exc}", deps_ok=deps_ok, locks_ok=locks_ok
        )

    async def awaiting(coro: types.CoroutineType) -> Any:
        try:
            return await coro
        except TaskFailError:
            raise
        except Exception as exc:
            raise controlled(exc) from exc

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                ret = fn(*args, **kwargs)
            except TaskFailError:
                raise
            except Exception as exc:
                raise controlled(exc) from exc
            # a coroutine fails only once it runs (whatever kind of callable
            # *fn* is): hand on one that turns its exceptions too
            return awaiting(ret) if type(ret) is types.CoroutineType else ret

        # functools.wraps copied fn's __dict__, metadata object included: give
        # the wrapper its own, so changing one task's metadata leaves the other's
        meta = retrieve_meta(wrapper)
        if meta is not None:
            assign_meta(wrapper, attrs.evolve(meta))
        return wrapper

    return decorate if fn is None else decorate(fn)

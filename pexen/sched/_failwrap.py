"""``task_fail_wrap``: turn any exception of a task into a ``TaskFailError``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pexen.sched._errors import TaskFailError


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
    exception is the new one's ``__cause__``; metadata and signature carry over.
    """
    if not (isinstance(reraise, type) and issubclass(reraise, TaskFailError)):
        raise TypeError(f"reraise={reraise!r}: expected a TaskFailError subclass")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except TaskFailError:
                raise
            except Exception as exc:
                raise reraise(
                    f"{type(exc).__name__}: {exc}", deps_ok=deps_ok, locks_ok=locks_ok
                ) from exc

        return wrapper

    return decorate if fn is None else decorate(fn)

"""Driving a blocking pool from an event loop: its calls in a thread of its own.

``Sched.arun`` and ``pexen.amap`` must never block the event loop, yet a
pool's ``start``, ``wait`` and ``stop`` block: they wait for workers, for
outcomes, for processes to end. A :class:`Bridge` is one thread per run
that makes those calls (``submit`` too) in the order they are asked for and
hands each answer back to the loop as the result of a future. Every call
comes from that one thread, one at a time, so the pool sees what it sees
under ``Sched.run()``: a single caller. (``Sched.arun`` makes its other
calls, ``cancel`` and ``drop_queued``, from the loop's thread, between two
calls of the bridge's, never during one.)

A call cannot be stopped half-way: when the coroutine awaiting one is
cancelled, the call runs on to its end in the thread (its answer is
dropped), and the next call waits for it. That is what keeps a cancelled
``wait()`` and the ``stop()`` that follows from running at the same time;
the pool's ``wake()`` makes such a wait end soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Awaitable, Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

# Seconds an async driver (``Sched.arun``, ``pexen.amap``) may hold the loop
# handing out a batch of results before it lets the rest of the program run:
# a consumer that awaits nothing between results would otherwise hold it for
# the whole batch.
LOOP_SLICE = 0.01

_bridge_ids = itertools.count(1)


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    """Give *future* its answer, unless its awaiter was cancelled meanwhile."""
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Bridge:
    """A thread that makes blocking calls for an event loop, one at a time, in order.

    The thread is named ``pexen-bridge-N``; :meth:`close` ends it and waits
    for it without blocking the loop.
    """

    def __init__(self) -> None:
        self._calls: SimpleQueue = SimpleQueue()
        self._thread = threading.Thread(
            target=self._serve,
            name=f"pexen-bridge-{next(_bridge_ids)}",
            # a daemon, so that a loop abandoned with a run in progress does
            # not keep the interpreter from exiting; pools stop at exit anyway
            daemon=True,
        )
        self._thread.start()

    def _serve(self) -> None:
        while True:
            loop, future, fn, args = self._calls.get()
            result, error = None, None
            if fn is not None:
                try:
                    result = fn(*args)
                except BaseException as exc:
                    error = exc
            # a closed loop raises RuntimeError: nobody waits any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)
            if fn is None:  # told to end
                return
            del future, fn, args, result, error  # hold nothing between calls

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` in the bridge's thread; return (or raise) what it did."""
        return await self._ask(fn, args)

    async def close(self) -> None:
        """End the thread once the calls asked for are made; wait for its end.

        The thread answers as its very last act, so the join that follows
        holds the loop for no time worth naming.
        """
        await self._ask(None, ())
        self._thread.join()

    def _ask(self, fn: Callable[..., Any] | None, args: tuple) -> Awaitable[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return future


async def unstoppable(awaitable: Awaitable[T]) -> T:
    """Await *awaitable* to its end even if the caller is cancelled meanwhile.

    Stopping a pool must not be cut short by a second cancellation (an
    ``asyncio.timeout`` expiring while the first is handled, a task cancelled
    twice): that would leave workers running. A cancellation that came
    meanwhile is raised once it is done.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # cancelled itself, or done as we were cancelled
                raise
            cancelled = True
            continue
        break
    if cancelled:
        raise asyncio.CancelledError
    return result

"""Helpers for tests of pexen in async programs: a checked ``asyncio.run``,
polling to a deadline, and a heartbeat that worker processes can see.

``run`` runs the loop in debug mode (never-awaited coroutines, a loop used
from the wrong thread and unclosed resources all complain) and fails if a
task is left pending when the test's coroutine returns: ``asyncio.run``
would cancel it silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from tests._leaks import DEADLINE


def others() -> set[asyncio.Task]:
    """The tasks of this loop but the current one."""
    return asyncio.all_tasks() - {asyncio.current_task()}


def run(main: Awaitable[Any]) -> Any:
    """``asyncio.run(main)`` in debug mode; fail if a task is left pending."""

    async def checked() -> Any:
        result = await main
        assert not others(), f"tasks left pending: {others()}"
        return result

    return asyncio.run(checked(), debug=True)


async def apoll(pred: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll *pred* on the loop (which goes on) until true or *timeout*."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def pexen_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("pexen-")]


class Heartbeat:
    """A coroutine ticking on the loop; each beat adds a byte to a file.

    Tasks in other processes see the beats (the file's size), so a task can
    wait for the loop to keep beating: if the loop blocked on the pool, it
    would wait in vain. ``beats`` counts them here.
    """

    PERIOD = 0.001  # seconds between beats, at least

    def __init__(self, path: os.PathLike | str) -> None:
        self.path = path
        self.beats = 0
        self._task: asyncio.Task | None = None

    async def _beat(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            while True:
                os.write(fd, b".")
                self.beats += 1
                await asyncio.sleep(self.PERIOD)
        finally:
            os.close(fd)

    async def __aenter__(self) -> Heartbeat:
        open(self.path, "wb").close()
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def spin(seconds: float) -> None:
    """Keep this thread busy for *seconds*, awaiting nothing (a slow consumer)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


class Ticker:
    """Counts the turns the loop gives it (a task that only yields)."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task | None = None

    async def _tick(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def cancelled_while_holding(
    make: Callable[[], AsyncIterator[Any]], aclosing: bool
) -> list[Any]:
    """Take one item of the async generator *make* makes, then cancel its
    consumer as it holds it.

    With *aclosing* the generator is closed by ``contextlib.aclosing`` at
    once; else by the loop once it is collected (only the consumer holds
    it). Either way no pexen thread may be left. Return what was taken.
    """
    got: list[Any] = []

    async def main() -> None:
        holding = asyncio.Event()

        async def consume() -> None:
            agen = make()
            closing = (contextlib.aclosing(agen) if aclosing
                       else contextlib.nullcontext())
            async with closing:
                async for item in agen:
                    got.append(item)
                    holding.set()
                    await asyncio.Event().wait()  # holds the item for ever

        consumer = asyncio.get_running_loop().create_task(consume())
        await holding.wait()
        consumer.cancel()
        try:
            await consumer
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the consumer was not cancelled")
        if not aclosing:  # closed by the loop once the generator is collected
            del consumer
            assert await apoll(lambda: not pexen_threads() and not others())
        assert pexen_threads() == []

    run(main())
    return got


def timed_out_after_the_first(agen: AsyncIterator[Any], release: Path) -> list[Any]:
    """Consume *agen* under ``asyncio.timeout``, made up at the first item.

    Once the timeout is up, touch *release* (a held item a thread pool waits
    for). The timeout must raise ``TimeoutError`` and leave no pexen thread.
    Return what was taken.
    """
    got: list[Any] = []

    async def consume() -> None:
        try:
            async with asyncio.timeout(None) as timeout:
                async for item in agen:
                    got.append(item)
                    timeout.reschedule(asyncio.get_running_loop().time())  # up now
        except TimeoutError:
            pass
        else:
            raise AssertionError("the timeout did not raise TimeoutError")
        assert pexen_threads() == []

    async def main() -> None:
        consumer = asyncio.get_running_loop().create_task(consume())
        # the timeout is up (and, where stopping the pool does not wait for the
        # held item, handled already: the window of cancelling() is short)
        assert await apoll(lambda: consumer.cancelling() > 0 or consumer.done())
        release.touch()
        await consumer

    run(main())
    return got

"""``pexen.map``, ``pexen.starmap`` and their async twins ``amap``, ``astarmap``.

Design
======

A map needs no planner: every item is ready, none requires another. So it
drives a pool directly, through the same four calls ``Sched`` uses (``start``,
``submit``, ``wait``, ``stop``), which is why it works on every pool.

* **Chunks.** A job runs a *chunk*: the function over a list of consecutive
  items (``_Chunk``, a picklable callable returning the list of results). With
  ``chunksize=None`` the size follows the items' duration, measured by the
  pool, as ``spare="auto"`` does for tasks (``_AutoChunk``): it starts at 1 and
  at most doubles per batch of results, up to about ``CHUNK_TARGET`` seconds of
  work per chunk. So tiny items travel thousands to a job and long ones one
  by one. With a ``timeout`` the size stays 1 (unless given): the timeout is
  each item's, and a pool enforces it per job.
* **Laziness.** Inputs are read only as chunks are handed out, and at most
  ``pool.capacity`` chunks are out or waiting to be yielded at a time: an
  endless input works, in bounded memory.
* **Order.** With ``ordered=True`` results come in input order: a chunk that
  finishes early waits (it counts against the capacity) until the ones before
  it are yielded. With ``ordered=False`` they come as chunks finish.
* **Failure.** A chunk stops at its first failing item and raises its
  exception, carrying the results before it (``_DONE_ATTR``), so the pool
  brings it back with its traceback. With ``return_exceptions`` the exception
  is yielded in the item's place and the rest of the chunk is handed out
  again; without, it is raised when its turn comes (after every earlier
  result) and nothing more is started. A worker that dies or a chunk that
  times out fails its items not yet done with the pool's error
  (``WorkerCrashError``, ``TaskTimeoutError``); with automatic chunks the size
  then drops to 1, so a further crash blames one item alone.

* **Coroutine functions.** An ``async def`` *fn* makes async chunks
  (``_AsyncChunk``), which await each item in turn: on an
  ``AsyncWorkerPool`` (the default pool for them) the chunks run on its
  event loop, elsewhere each on a loop of its own in the worker.
* **The async twins.** ``amap`` and ``astarmap`` drive the pool through its
  async calls (``start_async``, ``wait_async``, ``stop_async``), which never
  block the event loop, with the same state (``_Run``); every
  ``LOOP_SLICE`` seconds of handing out results they let the loop run.

Leaving the generator early (or cancelling the task that consumes an async
one) stops the pool, dropping what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from pexen.sched._calling import is_coroutine_task
from pexen.sched._pools.base import Job, Outcome, WorkerPool, check_count
from pexen.sched._pools.bridge import LOOP_SLICE
from pexen.sched._pools.eventloop import AsyncWorkerPool
from pexen.sched._pools.thread import ThreadWorkerPool

CHUNK_TARGET = 0.001  # seconds of work a chunk aims at
CHUNK_LIMIT = 8192  # items in a chunk, at most
ASYNC_WORKERS = 100  # coroutines at once on the default pool of an async fn
_DONE_ATTR = "pexen_done"  # on a chunk's exception: the results before it


class _Chunk:
    """Run *fn* over consecutive argument tuples; return their results.

    The first item that raises stops the chunk: its exception is raised with
    the results so far in ``pexen_done``.
    """

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: list[tuple]) -> None:
        self.fn = fn
        self.args = args

    def __reduce__(self) -> tuple:
        return _Chunk, (self.fn, self.args)

    def __repr__(self) -> str:
        return f"<map chunk of {len(self.args)} items of {self.fn!r}>"

    def __call__(self) -> list[Any]:
        fn = self.fn
        results: list[Any] = []
        append = results.append
        try:
            for args in self.args:
                append(fn(*args))
        except BaseException as exc:
            # an exception that takes no attributes: the chunk's items all fail
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _DONE_ATTR, results)
            raise
        return results


class _AsyncChunk(_Chunk):
    """A chunk of an ``async def`` *fn*: each item's coroutine awaited in turn."""

    __slots__ = ()

    def __reduce__(self) -> tuple:
        return _AsyncChunk, (self.fn, self.args)

    async def __call__(self) -> list[Any]:  # type: ignore[override]
        fn = self.fn
        results: list[Any] = []
        append = results.append
        try:
            for args in self.args:
                append(await fn(*args))
        except BaseException as exc:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _DONE_ATTR, results)
            raise
        return results


class _AutoChunk:
    """``chunksize=None``: as many items a chunk as fit in ``CHUNK_TARGET``."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 1

    def learn(self, n_items: int, duration: float | None) -> None:
        """A chunk of *n_items* ran *duration* seconds: adjust the size."""
        if duration is None or n_items <= 0:
            return
        per_item = duration / n_items
        fits = int(CHUNK_TARGET / per_item) if per_item > 0 else CHUNK_LIMIT
        target = max(1, min(fits, CHUNK_LIMIT))
        self.size = min(target, 2 * self.size) if target > self.size else target


class _Failed:
    """An item's failure, where its result would be: (ExceptionInfo)."""

    __slots__ = ("excinfo",)

    def __init__(self, excinfo: Any) -> None:
        self.excinfo = excinfo


def map(
    fn: Callable[..., Any],
    *iterables: Iterable[Any],
    pool: WorkerPool | None = None,
    ordered: bool = True,
    chunksize: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> Iterator[Any]:
    """Yield ``fn(*args)`` for the items of *iterables* taken in step, on *pool*.

    As the builtin ``map`` (it stops with the shortest iterable), but the
    calls run on *pool* (default: a ``ThreadWorkerPool`` with a worker per CPU
    this process may use; for an ``async def`` *fn*, an
    ``AsyncWorkerPool(100)``), results in input order (*ordered*) or as they
    finish. Inputs are read lazily. The first failure is raised, with its
    traceback from the worker, when its turn comes, and the rest is stopped;
    with *return_exceptions* the exception is yielded instead. *timeout* is
    each item's, in seconds. See the module's design notes for *chunksize*.
    """
    args = zip(*iterables)  # noqa: B905 - stops with the shortest, as map does
    run = _prepare(fn, args, pool, ordered, chunksize, timeout, return_exceptions)
    return run.go()


def starmap(
    fn: Callable[..., Any],
    iterable: Iterable[Iterable[Any]],
    *,
    pool: WorkerPool | None = None,
    ordered: bool = True,
    chunksize: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> Iterator[Any]:
    """As :func:`map`, with each item of *iterable* the arguments of one call."""
    run = _prepare(fn, (tuple(args) for args in iterable), pool, ordered, chunksize,
                   timeout, return_exceptions)
    return run.go()


def amap(
    fn: Callable[..., Any],
    *iterables: Iterable[Any],
    pool: WorkerPool | None = None,
    ordered: bool = True,
    chunksize: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> AsyncIterator[Any]:
    """As :func:`map`, as an async generator: ``async for result in amap(...)``.

    The event loop is never blocked on the pool: an ``AsyncWorkerPool`` runs
    the calls on this very loop, any other pool is driven from a thread of
    its own. Cancelling the task that consumes it, or leaving the
    ``async for`` early, stops the pool (use ``contextlib.aclosing`` to have
    that happen at once, not when the generator is collected).
    """
    args = zip(*iterables)  # noqa: B905 - stops with the shortest, as map does
    run = _prepare(fn, args, pool, ordered, chunksize, timeout, return_exceptions)
    return run.ago()


def astarmap(
    fn: Callable[..., Any],
    iterable: Iterable[Iterable[Any]],
    *,
    pool: WorkerPool | None = None,
    ordered: bool = True,
    chunksize: int | None = None,
    timeout: float | None = None,
    return_exceptions: bool = False,
) -> AsyncIterator[Any]:
    """As :func:`amap`, with each item of *iterable* the arguments of one call."""
    run = _prepare(fn, (tuple(args) for args in iterable), pool, ordered, chunksize,
                   timeout, return_exceptions)
    return run.ago()


def _default_pool(fn: Callable[..., Any]) -> WorkerPool:
    if is_coroutine_task(fn):
        return AsyncWorkerPool(workers=ASYNC_WORKERS)
    try:
        cpus = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        cpus = os.cpu_count() or 1
    return ThreadWorkerPool(workers=cpus)


def _prepare(
    fn: Callable[..., Any],
    args: Iterator[tuple],
    pool: WorkerPool | None,
    ordered: bool,
    chunksize: int | None,
    timeout: float | None,
    return_exceptions: bool,
) -> _Run:
    """Check the arguments at once (not at the first result); make the map's state."""
    if not callable(fn):
        raise TypeError(f"map: fn={fn!r} is not callable")
    if chunksize is not None:
        check_count("chunksize", chunksize, 1)
    if pool is None:
        pool = _default_pool(fn)
    elif not isinstance(pool, WorkerPool):
        raise TypeError(f"map: pool={pool!r}: expected a WorkerPool instance")
    return _Run(fn, args, pool, ordered, chunksize, timeout, return_exceptions)


class _Run:
    """The state of one map: chunks out, results waiting for their turn."""

    def __init__(
        self,
        fn: Callable[..., Any],
        args: Iterator[tuple],
        pool: WorkerPool,
        ordered: bool,
        chunksize: int | None,
        timeout: float | None,
        return_exceptions: bool,
    ) -> None:
        self.fn, self.args, self.pool = fn, args, pool
        self.ordered, self.timeout = ordered, timeout
        self.return_exceptions = return_exceptions
        self.auto = None if chunksize is not None or timeout is not None else (
            _AutoChunk()
        )
        self.fixed = chunksize or 1
        self.keys = itertools.count()
        self.out: dict[int, tuple[int, list[tuple]]] = {}  # key -> (index, args)
        # index -> (results, no failure among them): waiting for their turn
        self.done: dict[int, tuple[list[Any], bool]] = {}
        self.next_index = 0  # of the next item read from the input
        self.next_out = 0  # of the next result to yield (ordered)
        self.exhausted = False
        self.failure: int | None = None  # index of the first failure, raising
        self.chunk = _AsyncChunk if is_coroutine_task(fn) else _Chunk
        self.send: Callable[[Job], None] = pool.submit  # where new jobs go

    def go(self) -> Iterator[Any]:
        pool = self.pool
        pool.start()
        finished = False
        try:
            while True:
                self._hand_out()
                if not self.out:
                    break
                for results, clean in self._take(pool.wait()):
                    if clean:  # the usual case: the list, at C speed
                        yield from results
                    else:
                        yield from self._emit(results)
            finished = True
        finally:
            pool.stop(cancel=not finished)

    async def ago(self) -> AsyncIterator[Any]:
        """:meth:`go` for an event loop: the pool's async calls, jobs handed
        over with each wait, and the loop let run every ``LOOP_SLICE`` seconds."""
        pool = self.pool
        jobs: list[Job] = []
        self.send = jobs.append
        await pool.start_async()
        finished = False
        now = time.monotonic
        try:
            while True:
                self._hand_out()
                if not self.out:
                    break
                handed, jobs[:] = list(jobs), []
                outcomes = await pool.wait_async(handed)
                pause_at = now() + LOOP_SLICE
                for results, clean in self._take(outcomes):
                    for result in results if clean else self._emit(results):
                        yield result
                        if now() >= pause_at:  # others on the loop get a turn
                            await asyncio.sleep(0)
                            pause_at = now() + LOOP_SLICE
            finished = True
        finally:
            await pool.stop_async(cancel=not finished)

    def _take(self, outcomes: list) -> Iterator[tuple[list[Any], bool]]:
        """Learn from a batch of outcomes; yield the result lists whose turn it is."""
        if outcomes and len(outcomes[0]) == 4:  # a pool that does not time
            outcomes = [Outcome(*outcome) for outcome in outcomes]
        self.pool.tune(outcomes)
        for outcome in outcomes:
            yield from self._collect(outcome)

    def _hand_out(self) -> None:
        """Submit chunks while there is room and input (and no failure)."""
        pool = self.pool
        while (
            not self.exhausted
            and self.failure is None
            and len(self.out) + len(self.done) < pool.capacity
        ):
            size = self.auto.size if self.auto is not None else self.fixed
            chunk = list(itertools.islice(self.args, size))
            if not chunk:
                self.exhausted = True
                break
            self._submit(self.next_index, chunk)
            self.next_index += len(chunk)

    def _submit(self, index: int, chunk: list[tuple]) -> None:
        key = next(self.keys)
        timeout = None if self.timeout is None else self.timeout * len(chunk)
        self.out[key] = (index, chunk)
        self.send(Job(key, self.chunk(self.fn, chunk), False, {}, {}, timeout))

    def _collect(self, outcome: Outcome) -> list[tuple[list[Any], bool]]:
        """Take one chunk's outcome; return the result lists whose turn it is,
        each with whether it holds no failure."""
        index, chunk = self.out.pop(outcome.key)
        excinfo = outcome.excinfo
        if excinfo is None:
            results: list[Any] = outcome.ret
            if self.auto is not None:
                self.auto.learn(len(chunk), outcome.duration)
        else:
            done = getattr(excinfo.val, _DONE_ATTR, None)
            if isinstance(done, list) and len(done) < len(chunk):
                results = [*done, _Failed(excinfo)]  # the item that raised
                rest = chunk[len(results):]
            else:  # the pool's own failure (a crash, a timeout): all not done
                results = [_Failed(excinfo)] * len(chunk)
                rest = []
                if self.auto is not None:
                    self.auto.size = 1  # a further crash blames one item alone
            if self.return_exceptions:
                if rest:
                    self._submit(index + len(results), rest)
            elif self.failure is None or index + len(results) - 1 < self.failure:
                self.failure = index + len(results) - 1  # hand out no more
        clean = excinfo is None
        if not self.ordered:
            return [(results, clean)]
        done_lists = self.done
        done_lists[index] = (results, clean)
        ready = []
        while self.next_out in done_lists:
            entry = done_lists.pop(self.next_out)
            self.next_out += len(entry[0])
            ready.append(entry)
        return ready

    def _emit(self, results: list[Any]) -> Iterator[Any]:
        """Yield *results*, raising (or yielding) the failure among them."""
        for result in results:
            if type(result) is _Failed:
                exc = result.excinfo.val
                if self.return_exceptions:
                    yield exc
                    continue
                raise exc.with_traceback(result.excinfo.tb)
            yield result

"""``ProcessWorkerPool``: tasks in worker processes that survive the real world.

Design
======

Topology
--------
Each worker is a process of its own process group with private pipes: jobs
in, results out, and stdout, stderr and log records out (wire format and the
worker's loop: :mod:`pexen.sched._pools.process.worker`). With one pipe per worker the
parent knows exactly which jobs each worker holds, and a dying worker cannot
wedge anything shared. The parent runs no thread for jobs and results: the
scheduler's own thread sends and receives in ``wait()``, with ``poll()`` over
every result pipe, every process sentinel and the output relay's wake-up fd,
so every blocking wait also notices a worker that died. One thread,
:mod:`pexen.sched._pools.process.output`, drains output pipes so tasks never block on
them.

Dispatch and batching
---------------------
``submit`` only queues a job (the *backlog*). ``wait`` hands it out: while
it blocks, an idle worker gets one job at a time, so a spare goes to
whichever worker frees up first instead of queueing behind a long task; just
before ``wait`` returns (the caller may now hold a result for a while), the
rest is committed so that no worker starves meanwhile: to an idle worker
first, then one still starting, then the one with the fewest jobs, and among
equals the one whose task started last (one that has run long is likely to
run longer). All jobs a worker gets at once travel in one message; results
come back one message per job as soon as it is done (a worker that dies
must not take finished results with it), and the parent reads everything a
pipe holds in one system call. Tasks are pickled once per run (by reference
where plain pickle can, by value with cloudpickle otherwise: ``_transport``)
and the pickle is kept until the task finishes, so a job sent again after
its worker died is not pickled again. Workers start as the backlog needs
them, up to ``workers``, and are started with ``__main__`` hidden, so they
do not re-run the main script (what tasks take from it travels by value).

Failures
--------
* A task or value that cannot be pickled fails that task alone, with a
  ``TransportError`` (a ``PoolError``) saying what and why.
* A worker that dies is noticed through its sentinel. What it sent before
  dying is read first; the job it was running (the *slot* it shares with the
  parent says which) fails with ``WorkerCrashError`` naming the task, the pid
  and the exit code or signal; the jobs it held but had not started go back
  to the front of the backlog. A crashed task is never run again, so a task
  that kills its worker cannot loop. Deaths no task can be blamed for (a
  worker that dies while starting, or takes ``START_TIMEOUT`` to start) are
  counted; past ``max_restarts`` in one run the pool gives up and fails the
  remaining tasks with ``PoolError`` instead of restarting workers for ever.
* Timeouts: the worker arms ``setitimer`` for each job with a ``timeout``
  (plus ``timeout_grace``); the default action of SIGALRM ends it even inside
  C code, and the parent then reports ``TaskTimeoutError``. Should the alarm
  not end it (a task that blocks or handles SIGALRM), the parent kills the
  worker's process group a second later. Either way the worker is replaced,
  and what the task started dies with it (its process group).

Shutdown
--------
``stop()`` sends STOP to idle workers; on cancel (``break``, Ctrl-C, an
exception) busy workers get SIGTERM on their process group, then SIGKILL
after a grace period. Every worker is joined (no zombie), every fd closed,
the relay thread joined; SIGINT is blocked meanwhile, so a second Ctrl-C
cannot leave half-stopped workers. An ``atexit`` hook stops pools still
running when the interpreter exits. No ``multiprocessing`` lock, queue or
semaphore is used, so none can leak.

Start method
------------
The default is ``forkserver`` on POSIX systems that have it, except macOS,
and ``spawn`` elsewhere: the choice CPython 3.14 makes. ``fork`` copies the
caller's threads' locks in whatever state they are (a deadlock waiting to
happen; Python 3.12+ warns about it), and hides tasks that would not pickle.
A forkserver child is forked from a small single-threaded server, so it
starts fast and clean, and needs exactly what ``spawn`` needs.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import heapq
import itertools
import logging
import multiprocessing
import multiprocessing.util  # before our atexit hook: see _stop_live_pools
import os
import pickle
import select
import signal
import sys
import time
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

from pexen.sched._errors import PoolError, TaskTimeoutError, WorkerCrashError
from pexen.sched._naming import task_name
from pexen.sched._pools.base import Job, Outcome, WorkerPool, check_count
from pexen.sched._pools.process import worker as wire
from pexen.sched._pools.process.output import (
    ERR,
    LOG,
    OUT,
    Relay,
    Stream,
    sigint_blocked,
)
from pexen.sched._pools.thread import timeout_grace
from pexen.sched._pools.transport import (
    PROTOCOL,
    TransportError,
    dumps_task,
    dumps_value,
    loads,
    loads_excinfo,
    loads_value,
)
from pexen.sched._result import ExceptionInfo

try:
    import fcntl
except ImportError:  # not POSIX: the pool refuses to be built there
    fcntl = None  # type: ignore[assignment]

__all__ = ["ProcessWorkerPool", "default_start_method"]

_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux

_pool_ids = itertools.count(1)
_MAX_POLL_MS = 3_600_000  # an hour: poll() cannot wait for a far deadline
_live_pools: weakref.WeakSet[ProcessWorkerPool] = weakref.WeakSet()

STOP_GRACE = 5.0  # seconds an idle worker gets to exit after STOP
CANCEL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL on cancel
KILL_WAIT = 10.0  # seconds to wait for a SIGKILLed worker to be gone
UNSTARTED_POLL = 0.05  # seconds between looks at a timed job not yet started
START_TIMEOUT = 60.0  # seconds a new worker may take to say READY
RESULT_PIPE_SIZE = 1 << 18
_READ_SIZE = 1 << 16


def default_start_method() -> str:
    """``forkserver`` where CPython 3.14 picks it (POSIX but macOS), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if sys.platform != "darwin" and "forkserver" in methods:
        return "forkserver"
    return "spawn"


def _preload_in_forkserver(ctx: Any) -> None:
    """Have the forkserver import the worker module once, so workers start fast.

    The forkserver forks each worker from itself; with our module (and pexen,
    cloudpickle) already imported there, a worker starts in a few
    milliseconds instead of importing them all again. The server's preload
    list is only read when it starts, so this is done before the first worker.
    """
    from multiprocessing import context, forkserver

    if not isinstance(ctx, context.ForkServerContext):
        return
    server = getattr(forkserver, "_forkserver", None)
    modules = getattr(server, "_preload_modules", None)
    if not isinstance(modules, list) or wire.__name__ in modules:
        return
    if getattr(server, "_forkserver_pid", None) is not None:
        return  # already running: too late, and harmless
    ctx.set_forkserver_preload([*modules, wire.__name__])


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep ``spawn``/``forkserver`` workers from re-importing ``__main__``.

    multiprocessing re-runs the main script (or ``-m`` module) in each such
    worker, so its functions can be found by name. pexen needs no such
    import: whatever a task takes from ``__main__`` travels by value
    (``_transport``). Skipping it means no ``if __name__ == "__main__":``
    guard is needed for pexen's own workers, no side effects of the script
    run twice, faster starts, and ``python - < script.py`` works. What
    multiprocessing reads to find the main module is hidden while a worker
    is started, then put back.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    namespace = main.__dict__
    saved: dict[str, Any] = {name: namespace[name] for name in ("__file__", "__spec__")
                             if name in namespace}
    namespace.pop("__file__", None)
    namespace["__spec__"] = None
    try:
        yield
    finally:
        namespace.pop("__spec__", None)
        namespace.update(saved)


def _context(mp_context: Any) -> Any:
    methods = multiprocessing.get_all_start_methods()
    if mp_context is None:
        return multiprocessing.get_context(default_start_method())
    if isinstance(mp_context, str):
        if mp_context not in methods:
            raise PoolError(
                f"mp_context={mp_context!r}: not a start method of this platform; "
                f"choose one of {', '.join(map(repr, methods))}"
            )
        return multiprocessing.get_context(mp_context)
    if all(
        callable(getattr(mp_context, name, None))
        for name in ("Process", "Pipe", "RawArray", "get_start_method")
    ):
        return mp_context
    raise PoolError(
        f"mp_context={mp_context!r}: expected a start method name "
        f"({', '.join(map(repr, methods))}) or a multiprocessing context, "
        f"such as multiprocessing.get_context('spawn')"
    )


def describe_exit(exitcode: int | None) -> str:
    """``was killed by signal SIGSEGV (segmentation fault)``, ``exited with code 3``."""
    if exitcode is None:
        return "vanished (exit status unknown)"
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        sig = signal.Signals(-exitcode)
    except ValueError:
        return f"was killed by signal {-exitcode}"
    hint = {
        signal.SIGSEGV: " (a segmentation fault: a crash in C code)",
        signal.SIGKILL: " (sent by someone: the kernel's OOM killer, a user...)",
        signal.SIGABRT: " (abort(): a failed assertion in C code)",
        signal.SIGBUS: " (a bus error: a crash in C code)",
    }.get(sig, "")
    return f"was killed by signal {sig.name}{hint}"


def _raised(exc: BaseException) -> ExceptionInfo:
    """Raise *exc* here, so its ExceptionInfo carries a real traceback."""
    try:
        raise exc
    except BaseException:
        return ExceptionInfo(*sys.exc_info())


def _signal_group(pid: int, sig: int) -> None:
    """Send *sig* to a worker's process group (or to it, before it made one)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    except PermissionError:
        pass


def _log_levels() -> dict[str, int]:
    """The parent's logger levels, so workers forward what it would handle."""
    levels = {"": logging.getLogger().level}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def _write_text(target: Any, text: str) -> None:
    if target is None or not text:
        return
    try:
        target.write(text)
    except UnicodeEncodeError:
        encoding = getattr(target, "encoding", None) or "ascii"
        target.write(text.encode(encoding, "backslashreplace").decode(encoding))
    except (OSError, ValueError):  # closed, or gone
        return
    with contextlib.suppress(OSError, ValueError):
        target.flush()


class _Worker:
    """The parent's record of one worker process."""

    __slots__ = (
        "born",
        "conns",
        "dead",
        "inbuf",
        "index",
        "job_fd",
        "killed_for",
        "outbuf",
        "outstanding",
        "pid",
        "process",
        "ready",
        "result_fd",
        "sentinel",
        "slot",
        "stopping",
        "streams",
    )

    def __init__(self, index: int, process: Any, slot: Any) -> None:
        self.index = index
        self.born = time.monotonic()
        self.process = process
        self.pid: int = process.pid
        self.sentinel: int = process.sentinel
        self.slot = slot
        self.conns: list[Any] = []
        self.streams: list[Stream] = []
        self.job_fd = self.result_fd = -1
        self.outstanding: deque[int] = deque()  # keys sent, in order, not done
        self.outbuf = bytearray()  # framed jobs the pipe did not take yet
        self.inbuf = bytearray()  # result bytes short of a whole frame
        self.ready = False
        self.dead = False
        self.stopping = False
        self.killed_for: int | None = None  # key whose timeout we enforced

    def __repr__(self) -> str:
        return f"<worker {self.process.name} pid={self.pid}>"


class ProcessWorkerPool(WorkerPool):
    """Run tasks in worker processes.

    ``workers`` processes run at once, ``spare`` more jobs wait queued in them.
    *mp_context* is a start method name (``"forkserver"``, ``"spawn"``,
    ``"fork"``) or a multiprocessing context object (a drop-in such as the
    ``multiprocess`` package's works too); the default is
    :func:`default_start_method`. Tasks, kwargs, shared dicts and return
    values must be picklable; lambdas, closures and functions of ``__main__``
    are (cloudpickle). A worker that dies fails the task it ran with
    ``WorkerCrashError`` and is replaced; *max_restarts* (default
    ``4 * workers``) caps the deaths per run no task can be blamed for. See
    ``docs/pools.md``.
    """

    def __init__(
        self,
        workers: int = 1,
        spare: int = 1,
        mp_context: Any = None,
        *,
        max_restarts: int | None = None,
    ) -> None:
        super().__init__(workers, spare)
        if os.name != "posix":
            raise PoolError(
                "ProcessWorkerPool needs a POSIX system (Linux, macOS); "
                "use ThreadWorkerPool here"
            )
        self.mp_context = _context(mp_context)
        self.start_method: str = self.mp_context.get_start_method()
        self.max_restarts = (
            4 * self.workers
            if max_restarts is None
            else check_count("max_restarts", max_restarts, 0)
        )
        self._pool_id = next(_pool_ids)
        self._reset()

    def __repr__(self) -> str:
        return (
            f"ProcessWorkerPool(workers={self.workers}, spare={self.spare}, "
            f"mp_context={self.start_method!r})"
        )

    def _reset(self) -> None:
        self._workers: list[_Worker] = []
        self._fd2role: dict[int, tuple[_Worker | None, str]] = {}
        self._poller = select.poll()
        self._backlog: deque[int] = deque()
        self._jobs: dict[int, Job] = {}  # submitted, not finished
        self._wired: dict[int, tuple] = {}  # key -> job as sent (pickled once)
        self._sent_at: dict[int, float] = {}  # key -> when it went to a worker
        self._key2task: dict[int, Any] = {}  # for naming log records
        self._outcomes: list[Outcome] = []
        self._partial: set[Stream] = set()  # text streams holding part of a line
        self._relay: Relay | None = None
        self._n_started = 0
        self._n_unblamed = 0
        self._broken: str | None = None
        self._log_levels: dict[str, int] = {}

    # -- the pool interface ----------------------------------------------------

    def submit(self, job: Job) -> None:
        key = job[0]
        self._jobs[key] = job
        self._key2task[key] = job[1]
        self._backlog.append(key)

    def wait(self) -> list[Outcome]:
        if not self._jobs and not self._outcomes:
            raise PoolError(f"{self!r}: wait() with no job in flight")
        relay = self._live_relay
        if relay.has_news:  # what came while the caller held a result
            self._emit(relay.take())
        self._dispatch(final=False)
        while not self._outcomes:
            timeout = self._check_deadlines()
            if not self._workers:  # none could start: try again shortly
                timeout = 0.1
            self._poll(timeout)
            self._dispatch(final=False)
        self._dispatch(final=True)
        # what a task printed or logged comes before its result
        if relay.sync() or relay.has_news or self._partial:
            self._emit(relay.take(), flush=True)
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def _start(self) -> None:
        self._reset()
        self._log_levels = _log_levels()
        _preload_in_forkserver(self.mp_context)
        relay = self._relay = Relay(f"pexen-relay-{self._pool_id}")
        relay.start()
        self._watch(relay.wake_fd, None, "wake")
        _live_pools.add(self)

    def _stop(self, cancel: bool) -> None:
        with sigint_blocked():  # a second Ctrl-C waits for the workers to go
            try:
                self._shutdown_workers(cancel)
            finally:
                self._teardown()

    @property
    def _live_relay(self) -> Relay:
        """The output relay, which exists from ``_start`` to ``_teardown``."""
        relay = self._relay
        if relay is None:
            raise PoolError(f"{self!r} is not started")
        return relay

    # -- workers ---------------------------------------------------------------

    def _watch(self, fd: int, worker: _Worker | None, role: str) -> None:
        self._fd2role[fd] = (worker, role)
        events = select.POLLOUT if role == "job" else select.POLLIN
        self._poller.register(fd, events)

    def _unwatch(self, fd: int) -> None:
        if self._fd2role.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(fd)

    def _start_worker(self) -> _Worker:
        """Start one worker; raise PoolError if the system will not."""
        ctx = self.mp_context
        self._n_started += 1
        name = f"pexen-worker-{self._pool_id}.{self._n_started}"
        fork = self.start_method == "fork"
        relay = self._live_relay
        pipes: list[Any] = []
        # SIGINT stays blocked until the worker is on record, so a Ctrl-C cannot
        # orphan it; and the worker is born with it blocked, until it ignores it
        with sigint_blocked():
            try:
                for _ in range(5):  # jobs, results, stdout, stderr, log records
                    pipes.extend(ctx.Pipe(duplex=False))  # reader, writer
                job_r, job_w, res_r, res_w, out_r, out_w, err_r, err_w, log_r, log_w = (
                    pipes
                )
                slot = ctx.RawArray("d", 2)
                slot[0] = wire.NO_KEY
                process = ctx.Process(
                    target=wire.main,
                    args=(job_r, res_w, out_w, err_w, log_w, slot,
                          {"log_levels": self._log_levels}),
                    name=name,
                    daemon=False,  # so a task may start processes of its own
                )
                if fork:
                    relay.pause()  # fork no thread of ours, even an idle one
                try:
                    with contextlib.nullcontext() if fork else _main_module_hidden():
                        process.start()
                finally:
                    if fork:
                        relay.start()
            except Exception as exc:
                for conn in pipes:
                    conn.close()
                raise PoolError(f"cannot start worker process {name!r}: {exc}") from exc
            for conn in (job_r, res_w, out_w, err_w, log_w):  # the worker's ends
                conn.close()
            return self._record(process, slot, [job_w, res_r, out_r, err_r, log_r])

    def _record(self, process: Any, slot: Any, conns: list[Any]) -> _Worker:
        """Keep a started worker's pipes and watch them."""
        worker = _Worker(self._n_started, process, slot)
        worker.conns = conns
        job_w, res_r, out_r, err_r, log_r = conns
        worker.job_fd, worker.result_fd = job_w.fileno(), res_r.fileno()
        for conn in conns:
            os.set_blocking(conn.fileno(), False)
        if _SETPIPE_SZ is not None:
            with contextlib.suppress(OSError):  # more room for big results
                fcntl.fcntl(worker.result_fd, _SETPIPE_SZ, RESULT_PIPE_SIZE)
        self._watch(worker.result_fd, worker, "result")
        self._watch(worker.sentinel, worker, "sentinel")
        for conn, kind in ((out_r, OUT), (err_r, ERR), (log_r, LOG)):
            stream = Stream(conn.fileno(), kind, worker)
            worker.streams.append(stream)
            self._live_relay.add(stream)
        self._workers.append(worker)
        return worker

    def _send(self, worker: _Worker, payload: bytes) -> None:
        worker.outbuf += wire.frame(payload)
        self._flush_jobs(worker)

    def _flush_jobs(self, worker: _Worker) -> None:
        """Write what the job pipe takes now; watch it for room if some is left."""
        buf = worker.outbuf
        try:
            while buf:
                del buf[: os.write(worker.job_fd, buf)]
        except BlockingIOError:
            pass
        except OSError:  # the worker is gone: its sentinel will tell
            buf.clear()
        watching = worker.job_fd in self._fd2role
        if buf and not watching:
            self._watch(worker.job_fd, worker, "job")
        elif not buf and watching:
            self._unwatch(worker.job_fd)

    # -- dispatch --------------------------------------------------------------

    def _wire(self, key: int) -> tuple | None:
        """The job as a worker gets it, pickled once per run; None if it cannot be."""
        entry = self._wired.get(key)
        if entry is not None:
            return entry
        _key, task, pass_shared, kwargs, shared, timeout = self._jobs[key]
        try:
            try:
                task_blob = dumps_task(task)
            except TransportError:  # again, to name the task (a rare path)
                task_blob = dumps_task(task, task_name(task))
            data_blob = None
            if kwargs or shared:
                try:
                    data_blob = pickle.dumps((kwargs, shared), PROTOCOL)
                    if b"__main__" in data_blob:
                        data_blob = dumps_value((kwargs, shared), "data")
                except Exception:
                    name = task_name(task)
                    dumps_value(kwargs, f"keyword arguments of task {name!r}", "kwargs")
                    dumps_value(shared, f"shared state of task {name!r}", "shared")
                    data_blob = dumps_value((kwargs, shared), f"data of task {name!r}")
        except TransportError as exc:
            self._finish(key, shared, None, _raised(exc))
            return None
        alarm = None if timeout is None else timeout + timeout_grace(timeout)
        entry = self._wired[key] = (key, task_blob, pass_shared, data_blob, alarm)
        return entry

    def _dispatch(self, final: bool) -> None:
        """Hand out the backlog: to idle workers, or (*final*) to all, balanced."""
        backlog = self._backlog
        if not backlog:
            return
        if self._broken is not None:
            while backlog:
                key = backlog.popleft()
                task = self._jobs[key][1]
                self._finish(key, self._jobs[key][4], None, _raised(PoolError(
                    f"task {task_name(task)!r} was not run: {self._broken}"
                )))
            return
        live = self._workers
        if len(live) < self.workers:  # start workers as the backlog needs them
            n_takers = sum(1 for w in live if not w.ready or not w.outstanding)
            while len(live) < self.workers and n_takers < len(backlog):
                try:
                    self._start_worker()
                except PoolError as exc:  # out of processes or fds, say
                    self._unblamed_death(f"the last could not be started: {exc}")
                    if self._broken is not None:
                        self._dispatch(final)  # fails the backlog
                        return
                    break  # go on with the workers there are; wait() retries
                n_takers += 1
        if not live:
            return
        if final:
            plan = self._balance(live, backlog)
        else:  # one job per idle worker: a spare goes to whoever frees up first
            plan = {}
            for worker in live:
                if not backlog:
                    break
                if worker.ready and not worker.outstanding:
                    plan[worker] = [backlog.popleft()]
            if not plan:
                return
        wire_job = self._wire
        for worker, keys in plan.items():
            jobs = [job for job in map(wire_job, keys) if job is not None]
            if jobs:
                keys = [job[0] for job in jobs]
                worker.outstanding.extend(keys)
                now = time.monotonic()
                self._sent_at.update(dict.fromkeys(keys, now))
                self._send(worker, pickle.dumps((wire.JOBS, jobs), PROTOCOL))

    def _balance(
        self, live: list[_Worker], backlog: deque[int]
    ) -> dict[_Worker, list[int]]:
        """Assign the whole backlog, each job where it should start soonest.

        An idle worker first, then one still starting, then the fewest jobs
        waiting; among equals, the worker whose task started last (a task
        that has run long is likely to run longer; one starting up counts as
        starting now).
        """
        now = time.monotonic()

        sent_at = self._sent_at

        def key(worker: _Worker, n: int) -> tuple:
            if n == 0:
                return (0, not worker.ready, 0.0, worker.index)
            slot, outstanding = worker.slot, worker.outstanding
            if not outstanding:
                since = now  # its first job is just being planned
            elif slot[0] == outstanding[0]:
                since = slot[1]  # running since
            else:
                since = sent_at.get(outstanding[0], now)  # not started: since sent
            return (n, True, -since, worker.index)

        heap = [(*key(w, len(w.outstanding)), w) for w in live]
        heapq.heapify(heap)
        plan: dict[_Worker, list[int]] = {}
        while backlog:
            *_key, worker = heap[0]
            plan.setdefault(worker, []).append(backlog.popleft())
            n = len(worker.outstanding) + len(plan[worker])
            heapq.heapreplace(heap, (*key(worker, n), worker))
        return plan

    # -- events ----------------------------------------------------------------

    def _poll(self, timeout: float | None) -> None:
        # poll() takes at most INT_MAX ms (24.8 days): wake before, and look again
        if timeout is None:
            ms = None
        else:
            ms = min(max(0, int(timeout * 1000) + 1), _MAX_POLL_MS)
        dead = []
        for fd, _events in self._poller.poll(ms):
            worker, role = self._fd2role.get(fd, (None, ""))
            if worker is None:
                if role == "wake":
                    self._emit(self._live_relay.take())
            elif role == "result":
                self._read_results(worker)
            elif role == "sentinel":
                dead.append(worker)
            elif role == "job":
                self._flush_jobs(worker)
        for worker in dead:
            self._on_death(worker)

    def _read_results(self, worker: _Worker) -> None:
        buf = worker.inbuf
        while True:
            try:
                chunk = os.read(worker.result_fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:  # the worker is gone: its sentinel will tell
                self._unwatch(worker.result_fd)
                break
            buf += chunk
            if len(chunk) < _READ_SIZE:  # the pipe is empty: spare a system call
                break
        for payload in wire.split_frames(buf):
            kind, body = loads(payload)
            if kind == wire.RESULT:
                self._on_result(worker, body)
            elif kind == wire.READY:
                worker.ready = True

    def _on_result(self, worker: _Worker, outcome: tuple) -> None:
        key, shared_blob, ret_blob, exc_blob, problem = outcome
        outstanding = worker.outstanding
        if outstanding and outstanding[0] == key:
            outstanding.popleft()
        elif key in outstanding:
            outstanding.remove(key)
        else:  # not this worker's job now: a second answer, from a forked copy
            return
        task, shared = self._jobs[key][1], self._jobs[key][4]
        try:
            if problem is not None:
                raise self._problem(task, worker, *problem)
            name = None
            if shared_blob is None:
                shared = {}
            elif shared_blob is not False:
                name = task_name(task)
                shared = loads_value(shared_blob, f"shared state of task {name!r}")
            if exc_blob is not None:
                self._finish(key, shared, None, loads_excinfo(exc_blob))
                return
            ret = None
            if ret_blob is not None:
                name = name or task_name(task)
                ret = loads_value(ret_blob, f"return value of task {name!r}")
        except TransportError as exc:
            self._finish(key, shared, None, _raised(exc))
            return
        self._finish(key, shared, ret, None)

    def _problem(self, task: Any, worker: _Worker, what: str, reason: str) -> Exception:
        name = task_name(task)
        if what in ("task", "arguments"):
            subject = "task" if what == "task" else "the data of task"
            return TransportError(
                f"{subject} {name!r} cannot be unpickled in worker pid {worker.pid}: "
                f"{reason}; the modules it refers to must be importable there",
                what=f"{subject} {name!r}",
                reason=reason,
            )
        if what == "result":
            return TransportError(
                f"the result of task {name!r} cannot be sent back: {reason}",
                what=f"result of task {name!r}",
                reason=reason,
            )
        return TransportError(
            f"{what} of task {name!r}: {reason}; values that leave a worker "
            f"process must be picklable",
            what=f"{what} of task {name!r}",
            reason=reason,
        )

    def _finish(self, key: int, shared: Any, ret: Any, excinfo: Any) -> None:
        del self._jobs[key]
        self._wired.pop(key, None)
        self._sent_at.pop(key, None)
        self._outcomes.append((key, shared, ret, excinfo))

    def _check_deadlines(self) -> float | None:
        """Kill workers past a deadline; return seconds until the next look.

        The deadlines: a timed job's timeout plus grace plus a second (the
        worker's own alarm should have ended it), and ``START_TIMEOUT`` for a
        worker to start (one hung importing something would wait for ever).
        """
        next_look = None
        now = time.monotonic()
        for worker in self._workers:
            if worker.killed_for is not None:
                continue
            if not worker.ready:
                wait = worker.born + START_TIMEOUT - now
                if wait <= 0:
                    worker.killed_for = int(wire.NO_KEY)  # no task to blame
                    _signal_group(worker.pid, signal.SIGKILL)
                    continue
            elif not worker.outstanding:
                continue
            else:
                head = worker.outstanding[0]
                timeout = self._jobs[head][5]
                if timeout is None:
                    continue
                if worker.slot[0] != head:  # not started yet, or done and on its way
                    wait = UNSTARTED_POLL
                else:
                    deadline = worker.slot[1] + timeout + timeout_grace(timeout) + 1.0
                    wait = deadline - now
                    if wait <= 0:
                        # the worker's own alarm did not end it (a task that
                        # blocks or handles SIGALRM): do it here
                        worker.killed_for = head
                        _signal_group(worker.pid, signal.SIGKILL)
                        continue
            next_look = wait if next_look is None else min(next_look, wait)
        return next_look

    def _on_death(self, worker: _Worker) -> None:
        """A worker died: read what it sent, blame its task, requeue its spares."""
        self._read_results(worker)
        running: int | None = None
        key = worker.slot[0]
        if key != wire.NO_KEY and int(key) in worker.outstanding:
            running = int(key)
        _signal_group(worker.pid, signal.SIGKILL)  # what its task left running
        exitcode = self._bury(worker)
        if worker.killed_for is not None and running != worker.killed_for:
            running = None  # killed for a task that just finished: not its fault
        requeue = [k for k in worker.outstanding if k != running]
        worker.outstanding.clear()
        self._backlog.extendleft(reversed(requeue))
        if running is not None:
            job = self._jobs[running]
            task, timeout = job[1], job[5]
            name = task_name(task)
            if worker.killed_for == running or (
                timeout is not None and exitcode == -signal.SIGALRM
            ):
                err: Exception = TaskTimeoutError(
                    f"task {name!r} ran longer than its timeout of {timeout:g} s; "
                    f"its worker (pid {worker.pid}) was killed"
                )
                err.timeout = timeout  # type: ignore[attr-defined]
            else:
                err = WorkerCrashError(
                    f"task {name!r} crashed its worker: worker pid {worker.pid} "
                    f"{describe_exit(exitcode)} while running it"
                )
                err.exitcode = exitcode  # type: ignore[attr-defined]
            err.pid = worker.pid  # type: ignore[attr-defined]
            self._finish(running, job[4], None, _raised(err))
        elif not worker.stopping:
            self._unblamed_death(
                f"the last, pid {worker.pid}, {describe_exit(exitcode)}; its stderr "
                f"above may say why"
            )

    def _unblamed_death(self, last: str) -> None:
        """Count a worker lost with no task to blame; give up past max_restarts."""
        self._n_unblamed += 1
        if self._n_unblamed > self.max_restarts:
            self._broken = (
                f"the pool gave up after {self._n_unblamed} worker processes "
                f"died without running a task (max_restarts={self.max_restarts}); "
                f"{last}"
            )

    def _bury(self, worker: _Worker) -> int | None:
        """Reap a dead worker, relay its last output, close its pipes."""
        worker.dead = True
        process = worker.process
        process.join(KILL_WAIT)
        exitcode = process.exitcode
        for fd in (worker.result_fd, worker.sentinel, worker.job_fd):
            self._unwatch(fd)
        relay = self._live_relay
        streams = [relay.remove(stream.fd) for stream in worker.streams]
        self._emit([s for s in streams if s is not None], flush=True)
        for conn in worker.conns:
            conn.close()
        if exitcode is not None:
            with contextlib.suppress(ValueError):
                process.close()
        if worker in self._workers:
            self._workers.remove(worker)
        return exitcode

    # -- output ----------------------------------------------------------------

    def _emit(self, streams: list[Stream], flush: bool = False) -> None:
        """Write workers' text to our streams and their log records to our loggers."""
        for stream in streams:
            if stream.kind == LOG:
                self._emit_records(stream)
            else:
                self._emit_text(stream, flush)
        if flush and self._partial:
            for stream in list(self._partial):
                self._emit_text(stream, flush)

    def _emit_text(self, stream: Stream, flush: bool) -> None:
        data = stream.pending
        cut = len(data) if flush else data.rfind(b"\n") + 1
        if cut:
            chunk = bytes(data[:cut])
            del data[:cut]
            if stream.decoder is None:
                stream.decoder = codecs.getincrementaldecoder("utf-8")("replace")
            text = stream.decoder.decode(chunk)
            _write_text(sys.stdout if stream.kind == OUT else sys.stderr, text)
        if data:
            self._partial.add(stream)
        else:
            self._partial.discard(stream)

    def _emit_records(self, stream: Stream) -> None:
        for payload in wire.split_frames(stream.pending):
            try:
                state = loads(payload)
            except Exception:
                continue
            task = self._key2task.get(state.pop("pexen_key", None))
            state["pexen_task"] = None if task is None else task_name(task)
            record = logging.makeLogRecord(state)
            name = record.name
            logger = logging.getLogger(None if name == "root" else name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)

    # -- shutdown --------------------------------------------------------------

    def _shutdown_workers(self, cancel: bool) -> None:
        workers = [w for w in self._workers if not w.dead]
        stop = wire.frame(pickle.dumps((wire.STOP, None), PROTOCOL))
        for worker in workers:
            worker.stopping = True
            if worker.ready and not worker.outstanding and not worker.outbuf:
                worker.outbuf += stop
                self._flush_jobs(worker)
                if not worker.outbuf:
                    continue
            # busy, still starting, or its pipe is full: no use waiting
            _signal_group(worker.pid, signal.SIGTERM if cancel else signal.SIGKILL)
        deadline = time.monotonic() + (CANCEL_GRACE if cancel else STOP_GRACE)
        alive = self._await_exit(workers, deadline)
        for worker in alive:
            _signal_group(worker.pid, signal.SIGKILL)
        self._await_exit(alive, time.monotonic() + KILL_WAIT)
        for worker in workers:
            if cancel or worker in alive:
                _signal_group(worker.pid, signal.SIGKILL)  # its task's leftovers
            self._bury(worker)

    def _await_exit(self, workers: list[_Worker], deadline: float) -> list[_Worker]:
        """Wait until *workers* exited or *deadline*; return those still alive."""
        alive = [w for w in workers if w.process.exitcode is None]
        while alive:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            poller = select.poll()
            for worker in alive:
                poller.register(worker.sentinel, select.POLLIN)
            gone = {fd for fd, _ in poller.poll(int(left * 1000) + 1)}
            alive = [w for w in alive if w.sentinel not in gone]
        return alive

    def _teardown(self) -> None:
        """Close whatever is left; run even if shutting the workers down failed."""
        _live_pools.discard(self)
        for worker in self._workers:
            with contextlib.suppress(Exception):
                if worker.process.exitcode is None:
                    _signal_group(worker.pid, signal.SIGKILL)
                    worker.process.join(KILL_WAIT)
            for conn in worker.conns:
                with contextlib.suppress(Exception):
                    conn.close()
        relay = self._relay
        if relay is not None:
            with contextlib.suppress(Exception):
                relay.sync()
                self._emit(relay.take(), flush=True)
            relay.close()
        self._reset()


@atexit.register
def _stop_live_pools() -> None:
    """Stop pools whose run was never finished nor closed, before exit.

    Registered after multiprocessing's own exit hook (imported above), so it
    runs first: that one joins non-daemonic children, which our idle
    workers, waiting for jobs, would never let it finish.
    """
    for pool in list(_live_pools):
        with contextlib.suppress(Exception):
            pool.stop(cancel=True)

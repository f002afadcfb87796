"""Starting worker processes, signalling them, and waiting for them to go.

Each worker is a ``multiprocessing`` process running :func:`.worker.main`,
with six private pipes (jobs and their tickets in; results, stdout, stderr
and log records out) and a shared *slot* (:mod:`.wire`). :class:`WorkerProc`
is the parent's record of one; the run that owns it (:mod:`.run`) watches
its fds.

Each worker carries an id of its own in ``PEXEN_RUN_ID`` (where there is
``/proc``: Linux), which whatever its tasks start inherits; killing a worker
to stop its task (:func:`kill_worker`), or a worker's crash
(:func:`kill_leftovers`), kills them all by it, wherever they have moved
(``pexen._watchdog``, "Process-pool workers"). Elsewhere, its process group.

Start method: the default is ``forkserver`` on POSIX systems that have it,
except macOS, and ``spawn`` elsewhere: the choice CPython 3.14 makes.
``fork`` copies the caller's threads' locks in whatever state they are (a
deadlock waiting to happen; Python 3.12+ warns about it), and hides tasks
that would not pickle. A forkserver child is forked from a small
single-threaded server, so it starts fast and clean, and needs exactly what
``spawn`` needs.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from pexen._proctree import has_table, kill_trees
from pexen._watchdog import leftovers
from pexen.sched._errors import PoolError
from pexen.sched._pools.base import sigint_blocked
from pexen.sched._pools.process import wire
from pexen.sched._pools.process import worker as worker_module
from pexen.sched._pools.process.output import ERR, LOG, OUT, Relay, Stream

try:
    import fcntl
except ImportError:  # not POSIX: the pool refuses to be built there
    fcntl = None  # type: ignore[assignment]

_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux
RESULT_PIPE_SIZE = 1 << 18  # room for big results, where the system allows it
KILL_WAIT = 10.0  # seconds to wait for a SIGKILLed worker to be gone


def default_start_method() -> str:
    """``forkserver`` where CPython 3.14 picks it (POSIX but macOS), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    if sys.platform != "darwin" and "forkserver" in methods:
        return "forkserver"
    return "spawn"


def resolve_context(mp_context: Any) -> Any:
    """The multiprocessing context for *mp_context*: None, a name, or a context."""
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


def preload_in_forkserver(ctx: Any) -> None:
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
    if not isinstance(modules, list) or worker_module.__name__ in modules:
        return
    if getattr(server, "_forkserver_pid", None) is not None:
        return  # already running: too late, and harmless
    ctx.set_forkserver_preload([*modules, worker_module.__name__])


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep ``spawn``/``forkserver`` workers from re-importing ``__main__``.

    multiprocessing re-runs the main script (or ``-m`` module) in each such
    worker, so its functions can be found by name. pexen needs no such
    import: whatever a task takes from ``__main__`` travels by value
    (``transport``). Skipping it means no ``if __name__ == "__main__":``
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


def log_levels() -> dict[str, int]:
    """The parent's logger levels, so workers forward what it would handle."""
    levels = {"": logging.getLogger().level}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


class WorkerProc:
    """The parent's record of one worker process."""

    __slots__ = (
        "born",
        "conns",
        "dead",
        "definitions",
        "inbuf",
        "index",
        "job_fd",
        "killed_for",
        "name",
        "outbuf",
        "outstanding",
        "pid",
        "process",
        "ready",
        "result_fd",
        "retiring",
        "scope",
        "sentinel",
        "slot",
        "stopping",
        "streams",
        "ticket_r",
        "ticket_w",
    )

    def __init__(
        self,
        index: int,
        process: Any,
        slot: Any,
        conns: list[Any],
        scope: str | None = None,
    ) -> None:
        self.index = index
        self.scope = scope  # the id its tasks' processes carry (None: not marked)
        self.born = time.monotonic()
        self.process = process
        self.name: str = process.name
        self.pid: int = process.pid
        self.sentinel: int = process.sentinel
        self.slot = slot
        self.conns = conns  # job_w, res_r, out_r, err_r, log_r, ticket_w, ticket_r
        self.job_fd, self.result_fd = conns[0].fileno(), conns[1].fileno()
        self.streams = [
            Stream(conn.fileno(), kind, self)
            for conn, kind in zip(conns[2:5], (OUT, ERR, LOG), strict=True)
        ]
        # the parent reads tickets back to take back jobs not started (wire)
        self.ticket_w, self.ticket_r = conns[5].fileno(), conns[6].fileno()
        self.definitions: set[int] = set()  # numbers of the definitions it has
        self.outstanding: deque[int] = deque()  # keys sent, in order, not done
        self.outbuf = bytearray()  # framed jobs the pipe did not take yet
        self.inbuf = bytearray()  # result bytes short of a whole frame
        self.ready = False
        self.dead = False
        self.stopping = False
        self.killed_for: int | None = None  # key whose timeout (or cancel) we enforced
        self.retiring = False  # one too many (the pool shrank): STOP once idle

    def __repr__(self) -> str:
        return f"<worker {self.process.name} pid={self.pid}>"


def start_worker(
    ctx: Any,
    name: str,
    index: int,
    levels: dict[str, int],
    relay: Relay,
    hooks: bytes | None = None,
    scope: str | None = None,
) -> WorkerProc:
    """Start one worker process; raise PoolError if the system will not.

    Its output pipes are handed to *relay* at once, so nothing it writes is
    left unread. *hooks* is the pool's initializer, its arguments and its
    finalizer, pickled once per run (:func:`.worker.main` runs them).
    *scope*: the id it puts in ``PEXEN_RUN_ID`` for its tasks to inherit.
    """
    fork = ctx.get_start_method() == "fork"
    pipes: list[Any] = []
    # SIGINT stays blocked until the worker is on record, so a Ctrl-C cannot
    # orphan it; and the worker is born with it blocked, until it ignores it
    with sigint_blocked():
        try:
            for _ in range(6):  # jobs, results, stdout, stderr, log records, tickets
                pipes.extend(ctx.Pipe(duplex=False))  # reader, writer
            (job_r, job_w, res_r, res_w, out_r, out_w, err_r, err_w, log_r, log_w,
             tick_r, tick_w) = pipes
            slot = ctx.RawArray("d", wire.SLOT_SIZE)
            slot[0] = wire.NO_KEY
            process = ctx.Process(
                target=worker_module.main,
                args=(job_r, res_w, out_w, err_w, log_w, tick_r, slot,
                      {"log_levels": levels, "hooks": hooks, "scope": scope}),
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
            conn.close()  # but tick_r: both read tickets (wire)
        worker = WorkerProc(
            index, process, slot, [job_w, res_r, out_r, err_r, log_r, tick_w, tick_r],
            scope,
        )
        for conn in worker.conns:
            os.set_blocking(conn.fileno(), False)
        if _SETPIPE_SZ is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(worker.result_fd, _SETPIPE_SZ, RESULT_PIPE_SIZE)
        for stream in worker.streams:
            relay.add(stream)
        return worker


def signal_group(pid: int, sig: int) -> None:
    """Send *sig* to a worker's process group (or to it, before it made one)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    except PermissionError:
        pass


def scope_prefix() -> str | None:
    """The start of the ids of one run's workers (None: this system cannot
    find processes by id, so workers are not marked)."""
    return f"{os.getpid()}-{os.urandom(6).hex()}.w" if has_table() else None


def kill_worker(worker: WorkerProc) -> None:
    """SIGKILL a live *worker* and every process its tasks left running.

    Those carrying its id, those below it (found while it lives, so before
    anything moves to init) and those in its process group, with their
    descendants, each stopped before any is killed. Without ``/proc``: its
    process group.
    """
    _sweep(worker, below=True)
    signal_group(worker.pid, signal.SIGKILL)  # and what the sweep could not see


def kill_leftovers(worker: WorkerProc) -> None:
    """SIGKILL what a dead *worker*'s tasks left running: as :func:`kill_worker`,
    but for the processes below it, which are no longer below it."""
    _sweep(worker, below=False)
    signal_group(worker.pid, signal.SIGKILL)


def _sweep(worker: WorkerProc, below: bool) -> None:
    """Stop, then kill, what carries *worker*'s id, is in its process group
    or (*below*) below it, and their descendants.

    None is spared as one of CPython's helpers: a forkserver's children,
    workers included, share its command line, and the pool's own helpers are
    never among them (they neither carry the id, nor are below the worker or
    in its group). A task's own helpers go too, as their interpreter does.
    """
    if worker.scope is None:
        return
    victims, helpers = leftovers(
        worker.scope, {}, below=worker.pid if below else None, group=worker.pid
    )
    kill_trees(victims | helpers)


def await_exit(workers: list[WorkerProc], deadline: float) -> list[WorkerProc]:
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

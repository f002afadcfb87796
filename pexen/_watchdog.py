"""The watchdog of ``pexen run``: if the runner dies, what its run started dies.

Why
---
With the thread pool, ``pexen run`` is the only process pexen has. Killed by
``kill -9`` (or the OOM killer, or a CI job's hard timeout), it leaves the
executables its tasks run, their children and a Python task's subprocesses
running on under init, still holding the job's output pipe open. Process
pool workers follow a dead parent by themselves (see the worker: their
process group gets SIGIO), but not what left a worker's process group. So
``guard()`` starts a process for the purpose, which outlives the runner just
long enough to clean up after it.

How it knows
------------
The watchdog is a child of the runner in a session of its own (a signal to
the job's process group, or the terminal's, does not reach it), running
this module and ``pexen._proctree`` on the standard library alone. A pidfd
of the runner tells it at once when the runner has died; where there is
none (Linux before 5.3), the EOF of a pipe only the runner holds open, and
its own parent pid changing, checked once a scan. At a normal end the
runner dismisses it with SIGKILL: it must do nothing then (a task's
deliberate background process outlives a normal run), and a SIGKILL is
instant, even while the watchdog is still starting, so a short run does not
wait for it. It imports little, for the same reason.

What it kills
-------------
Once the runner is dead, and only then:

* every process whose environment carries the run's id in ``PEXEN_RUN_ID``:
  the runner puts it in its own environment for the run, so whatever it
  starts, and whatever that starts, inherits it, wherever it has moved
  since (a new process group or session, re-parented to init). The cookie
  Jenkins' ProcessTreeKiller uses; an id, not a pid, so no other process
  carries it (ids of nested runs are appended, space-separated);
* every process it saw below the runner and that still is the same process
  (pid and start time): what cleared its environment, or was forked without
  an exec (its environment is its parent's as of the parent's exec). The
  watchdog reads ``/proc`` once a second for this, or less often on a
  machine with many processes, so that it never takes more than about 1%
  of a CPU (a scan costs about 1 ms per 100 processes);
* and all their descendants, each stopped before any is killed
  (``_proctree.kill_trees``).

Never itself, nor CPython's forkserver and resource tracker (they exit once
their interpreter is gone; the tracker then frees what the runner leaked),
nor anything else: the shell, a ``| tee`` beside pexen in its pipeline, the
script's next command and other users' processes carry no id and were never
below the runner. A process that started less than a scan before the
runner's death, cleared its environment and left the runner's tree is
missed. Linux only: elsewhere ``guard()`` starts nothing.

The runner's own sweep
----------------------
A run that ends without having waited for all of its tasks (interrupted by
a signal, or leaving threads abandoned) kills the same set itself, at its
end and before it dismisses the watchdog (``RunGuard.sweep``): below the
runner instead of what a scan saw, as the runner is alive to look. Then
nothing the run started is left once ``pexen run`` returns, but what an
abandoned thread starts in the moment between the sweep and its exit.

Process-pool workers
--------------------
Each worker of a ``ProcessWorkerPool`` (with or without ``pexen run``)
appends an id of its own to ``PEXEN_RUN_ID`` as it starts (``mark``), so
whatever its tasks start carries it too. When the pool kills a worker (to
stop its task: a timeout, a forced cancel or abort), or a worker dies
without being told to stop (a crash: a segfault, ``os._exit`` in a task,
a timeout's alarm, the OOM killer), the pool kills every process carrying
that id, in the worker's process group or below it (while it lives), and
their descendants (``leftovers``, then ``kill_trees``). A crash counts as
a kill: the task ended abnormally all the same, no one is left to wait
for what it started or to use what it made, and its process group has
always died with it; a task cannot tell in advance whether it will time
out or crash, so it cannot rely on what either leaves. A worker told to
stop (a run's end, retired by a resize) kills nothing: a task's
deliberate background process outlives a normal end. The id is the
worker's, not the task's (one per task would cost an environment change
per task), so what its earlier tasks left on purpose dies with it too.
Only a kill or a crash costs a sweep, never a task; one reads ``/proc``
two or three times, about 1 ms per 100 processes each. Missed: a process
forked without an exec (its ``/proc`` environment is then its parent's as
of that parent's exec) that left the worker's process group and is no
longer below the worker when the sweep looks: its parent died, or the
worker did (a crash re-parents the worker's children).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pexen._errors import PexenWarning
from pexen._proctree import (
    descendants,
    has_table,
    is_cpython_helper,
    kill_trees,
    snapshot,
)

if TYPE_CHECKING:  # the watchdog process has no use for it: it starts nothing
    import subprocess

ENV = "PEXEN_RUN_ID"  # the ids of the runs (and pool workers) a process belongs to
SCAN_INTERVAL = 1.0  # seconds between scans, at least
SCAN_SHARE = 0.01  # of a CPU that scans may take, at most

# how the runner starts it: this module, on nothing but the standard library
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from pexen._watchdog import main; main(sys.argv[2:])"
)


# -- in the runner ------------------------------------------------------------


@contextlib.contextmanager
def _stop_signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back meanwhile: an interrupt must not leave a
    watchdog started but unknown, or dismissed but not waited for."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Watchdog:
    """The runner's handle on its watchdog process."""

    def __init__(self, proc: subprocess.Popen[bytes], pipe: int) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._pipe = pipe  # its EOF tells the watchdog we died (without pidfd)

    def dismiss(self) -> None:
        """The run ended: end the watchdog, which kills nothing then."""
        with _stop_signals_blocked():
            self.proc.kill()
            self.proc.wait()
            os.close(self._pipe)


def _start(run_id: str) -> Watchdog:
    """Start the watchdog of this process; raise OSError if the system will not."""
    import subprocess  # here: the watchdog process itself starts nothing

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    read_end, write_end = os.pipe()
    try:
        with _stop_signals_blocked():
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _BOOT, root, str(os.getpid()),
                 run_id],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return Watchdog(proc, write_end)


class RunGuard:
    """What ``guard()`` yields: the run's id (None: not marked, not Linux) and
    its watchdog (None: there is none)."""

    def __init__(self, run_id: str | None, watchdog: Watchdog | None) -> None:
        self.run_id = run_id
        self.watchdog = watchdog

    def sweep(self) -> set[int]:
        """Kill what the run left running, now; return the pids killed.

        For a run that ends without waiting for all of its tasks (interrupted,
        or with threads abandoned): every process below this one and every
        process carrying the run's id, with their descendants, as the
        watchdog would once this process had died. Never this process, the
        watchdog, nor CPython's helpers (their descendants do die).
        """
        if self.run_id is None:
            return set()
        victims, spared = leftovers(self.run_id, {}, below=os.getpid())
        if self.watchdog is not None:
            victims.discard(self.watchdog.pid)
            spared.add(self.watchdog.pid)
        # the spared are roots too: what they fork meanwhile dies
        return kill_trees(victims | spared, spare=spared)


def mark(scope_id: str) -> str | None:
    """Add *scope_id* to the ids this process, and all it starts, carries;
    return what ``PEXEN_RUN_ID`` was (None: unset), to put it back."""
    outer = os.environ.get(ENV)
    os.environ[ENV] = f"{outer} {scope_id}" if outer else scope_id
    return outer


@contextlib.contextmanager
def guard() -> Iterator[RunGuard]:
    """Mark everything this process starts meanwhile as this run's, and have a
    watchdog kill it should this process die (where there is ``/proc``: Linux;
    if the watchdog cannot be started, a warning says so)."""
    if not has_table():
        yield RunGuard(None, None)
        return
    run_id = f"{os.getpid()}-{os.urandom(6).hex()}"
    outer = mark(run_id)
    try:
        try:
            watchdog: Watchdog | None = _start(run_id)
        except OSError as exc:
            import warnings

            watchdog = None
            warnings.warn(
                f"cannot start the watchdog of this run ({exc}): should pexen be "
                "killed, what its tasks started may run on",
                PexenWarning,
                stacklevel=3,
            )
        try:
            yield RunGuard(run_id, watchdog)
        finally:
            if watchdog is not None:
                watchdog.dismiss()
    finally:
        if outer is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = outer


# -- the watchdog process -------------------------------------------------------


def carries(pid: int, run_id: str) -> bool:
    """Whether process *pid* was started with *run_id* in its ``PEXEN_RUN_ID``."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:  # gone, or another user's
        return False
    prefix = ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return run_id.encode() in entry[len(prefix) :].split()
    return False


def scan(runner: int, seen: dict[int, int]) -> None:
    """Add what is below *runner* now to *seen* (pid -> start time), and drop
    from it what has ended (a pid now naming another process counts as ended)."""
    table = snapshot()
    for pid, start in list(seen.items()):
        proc = table.get(pid)
        if proc is None or proc.start != start:
            del seen[pid]
    for pid in descendants(table, [runner]):
        seen[pid] = table[pid].start
    seen.pop(os.getpid(), None)


def leftovers(
    run_id: str,
    seen: dict[int, int],
    below: int | None = None,
    group: int | None = None,
) -> tuple[set[int], set[int]]:
    """What to kill: the processes carrying *run_id*, those *seen* that still
    are the same, those *below* a process and those in process *group*; and,
    apart, CPython's helpers among them, to spare. Never this process."""
    table = snapshot()
    found = {pid for pid, start in seen.items()
             if (proc := table.get(pid)) is not None and proc.start == start}
    found |= {pid for pid in table if carries(pid, run_id)}
    if below is not None:
        found |= descendants(table, [below])
    if group is not None:
        found |= {proc.pid for proc in table.values() if proc.pgrp == group}
    found.discard(os.getpid())
    helpers = {pid for pid in found if is_cpython_helper(pid)}
    return found - helpers, helpers


def _pidfd(pid: int) -> int | None:
    """A pidfd of *pid* (readable once it has ended), or None (not Linux 5.3+)."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
    except OSError:
        return None
    return fd


def watch(runner: int, seen: dict[int, int]) -> None:
    """Scan below *runner* until it has died."""
    pidfd = _pidfd(runner)
    if os.getppid() != runner:  # died before we could watch it (or the pidfd)
        return
    poller = select.poll()
    poller.register(0, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    while True:
        began = time.monotonic()
        scan(runner, seen)
        pause = max(SCAN_INTERVAL, (time.monotonic() - began) / SCAN_SHARE)
        for fd, _event in poller.poll(pause * 1000):
            if fd == pidfd:
                return
            poller.unregister(0)  # EOF: the runner is dying (or closed it)
        if os.getppid() != runner:
            return


def main(argv: list[str]) -> None:
    """The watchdog process: watch the runner; once it is dead, kill what is left."""
    # started with the runner's signal mask, and in a session of its own
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    runner, run_id = int(argv[0]), argv[1]
    seen: dict[int, int] = {}
    watch(runner, seen)
    victims, helpers = leftovers(run_id, seen)
    killed = kill_trees(victims, spare=helpers)
    if killed:
        pids = ", ".join(map(str, sorted(killed)))
        what = "process" if len(killed) == 1 else f"{len(killed)} processes"
        with contextlib.suppress(OSError, ValueError):
            print(
                f"pexen: pexen (pid {runner}) died mid-run; its watchdog killed the "
                f"{what} its run had left running: {pids}",
                file=sys.stderr,
                flush=True,
            )

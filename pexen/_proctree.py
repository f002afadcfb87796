"""The process table, read from ``/proc`` (Linux), and killing process trees.

Whoever must leave nothing running uses it: a ``FileTask`` whose script timed
out, ``pexen run`` ending a run it did not wait for, the watchdog cleaning
up after a killed ``pexen run`` (both in ``pexen._watchdog``), and the
process pool killing a worker that ran a task. A
pid alone may name another process by the time it is used; a pid with its
start time names one process for good. Only the standard library is
imported here, as the watchdog runs it with nothing else on its path.
Without ``/proc`` the table is empty: only the processes named are killed,
not their descendants.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Collection, Iterable
from typing import NamedTuple

# Code run with -c by CPython's shared helpers, one per interpreter: each
# exits by itself once its interpreter is gone, and the resource tracker
# then releases what that interpreter leaked, which a SIGKILL would prevent.
_CPYTHON_HELPERS = (
    b"from multiprocessing.forkserver import main",
    b"from multiprocessing.resource_tracker import main",
)
_ROUNDS = 100  # of stop-and-look, at most: a spared process may fork on


class Proc(NamedTuple):
    """One live process: who its parent is, when it started, its process group."""

    pid: int
    ppid: int
    start: int  # clock ticks after boot; with the pid, one process for good
    pgrp: int


def has_table() -> bool:
    """Whether this system has the process table read here (Linux)."""
    return sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")


def read_proc(pid: int) -> Proc | None:
    """Process *pid*, or None if there is none (or only its zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the name, in parentheses, may hold anything: the fields after it are fixed
    fields = data.rsplit(b")", 1)[-1].split()
    try:
        if fields[0] == b"Z":
            return None
        return Proc(pid, int(fields[1]), int(fields[19]), int(fields[2]))
    except (IndexError, ValueError):
        return None


def snapshot() -> dict[int, Proc]:
    """Every live process, by pid (empty where there is no ``/proc``)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    table = {}
    for name in names:
        if name.isdigit() and (proc := read_proc(int(name))) is not None:
            table[proc.pid] = proc
    return table


def descendants(table: dict[int, Proc], roots: Iterable[int]) -> set[int]:
    """The pids below *roots* in *table* (not the roots themselves)."""
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def is_cpython_helper(pid: int) -> bool:
    """Whether *pid* is CPython's forkserver or resource tracker. Not a
    process the forkserver forked (a worker of a pool started so): it has
    the forkserver's command line too, but a parent that runs helper code."""
    if not _runs_helper_code(pid):
        return False
    proc = read_proc(pid)
    return proc is not None and not _runs_helper_code(proc.ppid)


def _runs_helper_code(pid: int) -> bool:
    """Whether *pid*'s command line is one of CPython's helpers'."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return any(arg.startswith(_CPYTHON_HELPERS) for arg in argv)


def kill_trees(roots: Iterable[int], spare: Collection[int] = ()) -> set[int]:
    """SIGKILL *roots* and all their descendants but *spare*; return who got it.

    Every victim is stopped first, and the table read again, until no new
    descendant turns up: a stopped process can neither fork a new one nor
    die and have its children re-parented out of reach. A spared process is
    neither stopped nor killed, but its descendants are.
    """
    spare = {os.getpid(), *spare}  # stopping ourselves would end it all
    looked = set(roots)
    todo = looked - spare
    stopped: set[int] = set()
    for _ in range(_ROUNDS):
        for victim in todo:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGSTOP)
                stopped.add(victim)
        found = descendants(snapshot(), looked) - looked
        if not found:
            break
        looked |= found
        todo = found - spare
    for victim in stopped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)
    return stopped


def kill_process_tree(pid: int) -> None:
    """SIGKILL *pid* and every process below it."""
    kill_trees([pid])

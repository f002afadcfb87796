"""What a test may not leave behind: threads, and processes anywhere below us.

Workers started by a forkserver are its children, not ours, so the process
check walks the whole tree below this process (grandchildren too), reading
``/proc``. CPython's own shared helpers (the forkserver and the resource
tracker, started once per interpreter) may stay; their children may not.
What a test's process orphans when it is killed is no longer below us: such a
test records what was below it first (``below``), then checks on those
(``still_running``), and kills what is left whatever happens (``kill_all``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable

DEADLINE = 10.0  # seconds to wait for stragglers before naming them


def poll(pred: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll *pred* until true or *timeout*; return its last value."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def alive(pid: int) -> bool:
    """Whether *pid* exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _proc_table() -> tuple[dict[int, list[int]], dict[int, str]]:
    """Children of every process, and each process's name and state."""
    children: dict[int, list[int]] = defaultdict(list)
    what: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces; the fields after the last ')' are fixed
        rest = stat.rsplit(")", 1)[1].split()
        pid = int(entry)
        children[int(rest[1])].append(pid)
        what[pid] = f"{stat[stat.index('(') + 1 : stat.rindex(')')]} state={rest[0]}"
    return children, what


def _is_cpython_helper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"forkserver" in cmdline or b"resource_tracker" in cmdline


def descendants() -> dict[int, str]:
    """Every process below this one (zombies included), but CPython's helpers."""
    children, what = _proc_table()
    me = os.getpid()
    below: dict[int, str] = {}
    frontier = [me]
    while frontier:
        parent = frontier.pop()
        for pid in children.get(parent, ()):
            if pid in below or pid not in what:
                continue
            frontier.append(pid)
            if not (parent == me and _is_cpython_helper(pid)):
                below[pid] = what[pid]
    return below


def cpython_helpers() -> list[int]:
    """Our children that are CPython's shared helpers (forkserver, tracker)."""
    children, _ = _proc_table()
    return [pid for pid in children.get(os.getpid(), ())
            if _is_cpython_helper(pid)]


class LeakCheck:
    """Snapshot threads and processes now; :meth:`problems` names newcomers."""

    def __init__(self) -> None:
        self.threads = set(threading.enumerate())
        self.processes = set(descendants())

    def new_threads(self) -> list[str]:
        return [t.name for t in threading.enumerate()
                if t not in self.threads and t.is_alive()]

    def new_processes(self) -> dict[int, str]:
        return {pid: w for pid, w in descendants().items()
                if pid not in self.processes}

    def problems(self) -> list[str]:
        """Wait up to DEADLINE for stragglers; describe what is still there."""
        found = []
        if not poll(lambda: not self.new_threads()):
            found.append(f"threads left behind: {self.new_threads()}")
        if not poll(lambda: not self.new_processes()):
            found.append("processes left behind (grandchildren too): "
                         f"{self.new_processes()}")
        return found


def start_time(pid: int) -> int | None:
    """When *pid* started (clock ticks after boot), or None: gone, or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def below(root: int) -> dict[int, int]:
    """Every live process below *root*: pid -> start time, which tells the
    process from another that reuses its pid once it is gone."""
    children, _ = _proc_table()
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        for pid in children.get(frontier.pop(), ()):
            if pid not in found and (start := start_time(pid)) is not None:
                found[pid] = start
                frontier.append(pid)
    return found


def still_running(procs: dict[int, int]) -> dict[int, str]:
    """Those of *procs* (pid -> start time) still running, with their names."""
    _, what = _proc_table()
    return {pid: what.get(pid, "?") for pid, start in procs.items()
            if start_time(pid) == start}


def kill_all(procs: dict[int, int]) -> None:
    """SIGKILL those of *procs* still running (a failed test's cleanup)."""
    for pid in still_running(procs):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def of_run(runner: int) -> dict[int, str]:
    """The live processes of the ``pexen run`` whose pid is *runner*: those
    whose ``PEXEN_RUN_ID`` names one of its runs (ids start with its pid)."""
    prefix = f"{runner}-".encode()
    _, what = _proc_table()
    found = {}
    for pid, name in what.items():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:  # gone, or another user's
            continue
        for entry in environ:
            if entry.startswith(b"PEXEN_RUN_ID="):
                ids = entry[len(b"PEXEN_RUN_ID="):].split()
                if any(run_id.startswith(prefix) for run_id in ids) and alive(pid):
                    found[pid] = name
    return found

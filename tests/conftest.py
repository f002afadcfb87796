"""Shared fixtures: the pool matrix and leak checks after every test."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tests._pools import POOL_KINDS

LEAK_DEADLINE = 10.0  # seconds to wait for stragglers before naming them


@pytest.fixture(params=[factory for _, factory in POOL_KINDS],
                ids=[name for name, _ in POOL_KINDS])
def make_pool(request):
    """A factory ``make_pool(workers=1, spare=1)`` for each pool kind."""
    return request.param


def _poll(pred, timeout: float = LEAK_DEADLINE, interval: float = 0.01) -> bool:
    """Poll *pred* until true or *timeout*; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def _children() -> list[tuple[int, str]]:
    """Direct child processes of this process (zombies included), via /proc."""
    me = os.getpid()
    found = []
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
        if int(rest[1]) == me:
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            found.append((int(entry), f"{comm} state={rest[0]}"))
    return found


def _allowed_child(pid: int) -> bool:
    """CPython's own shared helpers (forkserver, resource tracker) may stay."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ")
    except OSError:
        return True
    return b"forkserver" in cmdline or b"resource_tracker" in cmdline


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves a thread, child process or zombie behind."""
    threads_before = set(threading.enumerate())
    children_before = {pid for pid, _ in _children()}
    yield

    def leaked_threads():
        return [t for t in threading.enumerate()
                if t not in threads_before and t.is_alive()]

    def leaked_children():
        return [(pid, what) for pid, what in _children()
                if pid not in children_before and not _allowed_child(pid)]

    if not _poll(lambda: not leaked_threads()):
        pytest.fail(f"threads left behind: {[t.name for t in leaked_threads()]}")
    if not _poll(lambda: not leaked_children()):
        pytest.fail(f"child processes left behind: {leaked_children()}")

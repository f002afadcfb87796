"""The policy of ``workers="auto"``: as many workers as keep the CPUs busy.

As AsyncProcessScheduler's ``dynamic`` mode does, the pool measures how busy
the machine's CPUs are (all of it, not only its own workers: the CPUs are
shared) and adapts its worker count between 1 and a limit:

- It starts with one worker per CPU this process may use (at most the
  limit).
- Every ``INTERVAL`` seconds it looks at the CPU use since its last look.
  Below ``LOW``, while jobs wait for a worker, it adds one worker (tasks
  that wait on I/O leave CPUs idle: more of them fit). Above ``HIGH`` it
  retires one (the machine is overloaded, by us or by others), never going
  below 1.
- One step per look, so the count moves slowly and a short burst does not
  swing it.

CPU use comes from ``/proc/stat`` on Linux; elsewhere from the load average
over the CPU count, a coarser measure.
"""

from __future__ import annotations

import os
import time

INTERVAL = 0.5  # seconds between two looks
LOW, HIGH = 0.75, 0.95  # fractions of the machine's CPU time in use


def usable_cpus() -> int:
    """The CPUs this process may use (its affinity), not all the machine has."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


class CpuMeter:
    """The fraction of the machine's CPU time in use between two samples."""

    def __init__(self) -> None:
        self.last = self._times()

    @staticmethod
    def _times() -> tuple[float, float] | None:
        """``(busy, total)`` CPU time since boot, or None where unknown."""
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 4:
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        # guest time is counted in user time already
        total = sum(fields[:8])
        return total - idle, total

    def sample(self) -> float | None:
        """CPU use since the last sample (0 to 1), or None if it cannot tell."""
        now = self._times()
        last, self.last = self.last, now
        if now is not None and last is not None:
            total = now[1] - last[1]
            return None if total <= 0 else (now[0] - last[0]) / total
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
        return min(1.0, load / (os.cpu_count() or 1))


class AutoWorkers:
    """How many workers to have, from the CPU use (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.initial = min(usable_cpus(), self.limit)
        self.meter = CpuMeter()
        self.next_look = time.monotonic() + INTERVAL

    def restart(self) -> None:
        """Begin measuring afresh (a new run: the time between runs says nothing)."""
        self.meter = CpuMeter()
        self.next_look = time.monotonic() + INTERVAL

    def due(self, now: float) -> float:
        """Seconds until the next look (0: now)."""
        return max(0.0, self.next_look - now)

    def next_workers(self, workers: int, queued: bool, now: float) -> int:
        """The worker count to have now; *queued*: jobs wait for a worker."""
        if now < self.next_look:
            return workers
        self.next_look = now + INTERVAL
        use = self.meter.sample()
        if use is None:
            return workers
        if use < LOW and queued and workers < self.limit:
            return workers + 1
        if use > HIGH and workers > 1:
            return workers - 1
        return workers

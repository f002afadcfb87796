"""``ChromeTrace``: a run as Chrome trace-event JSON, for Perfetto and
chrome://tracing.

An observer for ``Sched.observe``. It writes the JSON Array Format of the
trace-event format: one track per worker with a complete slice (``"X"``)
per task attempt, named by the task's display name, with its priority,
tags, locks and outcome as ``args`` (``"retried"`` for an attempt that
failed and ran again); an instant event per skipped task and
per change of the whole run (pause, abort, resize); a counter of the tasks
running, queued in the pool and waiting. Each event is written and flushed
as it comes, so a run killed midway leaves a file the viewers open (the
format allows the closing ``]`` to be missing); at the end of each run the
``]`` is written, and taken back if another run follows.

The counter's samples are written as events arrive, which is not the order
in which things happened: a process pool's worker reports the start of its
next (pre-queued) task before the outcome of the one it ran comes back. So
``running`` counts workers, not events: a worker runs one task at a time, so
its latest start ends its previous task's share (whose "finished" then
changes nothing), and a start older than its worker's latest (told late,
with its outcome) is not counted at all. Tasks on workers the pool does not
name are counted by their own events. Each sample is stamped no earlier
than any event it counts, so the samples never go back in time. A pool that
cannot tell a running task from a queued one (``WorkerPool.running()`` is
None: the thread pool) tells each start with its outcome, so its tasks count
as queued until then.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO, Any

from pexen._tracks import Tracks
from pexen.sched._result import task_key
from pexen.sched.meta import META_ATTR, SchedMeta

__all__ = ["ChromeTrace"]

PID = 1  # one process in the trace: the run
COUNTER = "tasks"


def _shown(tags: Any) -> list[str]:
    return sorted(tag if isinstance(tag, str) else repr(tag) for tag in tags)


def _task_args(task: Any) -> dict[str, Any]:
    meta = getattr(task, META_ATTR, None)
    if not isinstance(meta, SchedMeta):
        return {"priority": 0}
    args: dict[str, Any] = {
        "priority": meta.priority if isinstance(meta.priority, (int, float))
        else repr(meta.priority)
    }
    for field in ("requires", "provides", "claims", "uses"):
        tags = getattr(meta, field)
        if tags:
            args[field] = _shown(tags)
    return args


class ChromeTrace:
    """Write the runs a ``Sched`` reports to *path* as Chrome trace-event JSON.

    Register it with ``sched.observe(ChromeTrace(path))``; ``close()`` (or a
    ``with`` block) closes the file. Times are microseconds since the first
    event.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()
        self._t0: float | None = None
        self._closed_at: int | None = None  # where the "]" of the last run starts
        self._tracks = Tracks()
        self._key2start: dict[Any, tuple[float, str | None]] = {}
        self._key2dispatched: dict[Any, float] = {}
        self._n_queued = 0
        self._worker2key: dict[str, Any] = {}  # the task each worker runs now
        self._worker2start: dict[str, float] = {}  # its latest start
        self._unnamed: set[Any] = set()  # running on a worker the pool does not name
        self._counter_ts = 0.0  # of the last sample: the next is no earlier
        self._total: int | None = None
        self._n_out = 0  # tasks dispatched or skipped this run
        self._first = True
        self._file.write("[")
        self._write({"ph": "M", "pid": PID, "name": "process_name",
                     "args": {"name": "pexen run"}})

    def __repr__(self) -> str:
        return f"<ChromeTrace {str(self.path)!r}>"

    def __enter__(self) -> ChromeTrace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the JSON array (if a run left it open) and close the file."""
        with self._lock:
            if self._file is None:
                return
            if self._closed_at is None:
                self._file.write("\n]\n")
            self._file.close()
            self._file = None

    # -- writing ---------------------------------------------------------------

    def _write(self, record: dict[str, Any]) -> None:
        out = self._file
        if out is None:
            raise ValueError(f"{self!r} is closed")
        if self._closed_at is not None:  # a new run: take the "]" back
            out.seek(self._closed_at)
            out.truncate()
            self._closed_at = None
        out.write(("\n" if self._first else ",\n") + json.dumps(record))
        self._first = False
        out.flush()

    def _us(self, when: float) -> float:
        if self._t0 is None:
            self._t0 = when
        return round((when - self._t0) * 1e6, 3)

    def _counter(self, when: float) -> None:
        args = {"running": len(self._worker2key) + len(self._unnamed),
                "queued": self._n_queued}
        if self._total is not None:
            args["waiting"] = max(self._total - self._n_out, 0)
        self._counter_ts = max(self._us(when), self._counter_ts)
        self._write({"ph": "C", "pid": PID, "name": COUNTER, "ts": self._counter_ts,
                     "args": args})

    def _reset_counts(self) -> None:
        self._n_queued = 0
        self._worker2key.clear()
        self._worker2start.clear()
        self._unnamed.clear()

    def _started(self, key: Any, when: float, worker: str | None) -> None:
        """Count a task that started: its worker's, unless that worker started
        another one since (this start was told late)."""
        self._n_queued -= 1
        if worker is None:
            self._unnamed.add(key)
        elif when >= self._worker2start.get(worker, when):
            self._worker2key[worker] = key
            self._worker2start[worker] = when

    def _ended(self, key: Any, worker: str | None) -> None:
        """Stop counting a task that started on *worker*, if still counted."""
        if worker is None:
            self._unnamed.discard(key)
        elif self._worker2key.get(worker) == key:
            del self._worker2key[worker]

    def _instant(self, when: float, name: str, args: dict[str, Any],
                 scope: str = "g") -> None:
        self._write({"ph": "i", "pid": PID, "tid": 0, "s": scope, "name": name,
                     "ts": self._us(when), "args": args})

    # -- the observer ------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        """Write what one ``Sched.observe`` event adds to the trace."""
        with self._lock:
            kind = event.kind
            if kind == "dispatched":
                self._key2dispatched[task_key(event.task)] = event.time
                self._n_queued += 1
                self._n_out += 1
                self._counter(event.time)
            elif kind == "started":
                key = task_key(event.task)
                self._key2start[key] = (event.time, event.worker)
                self._started(key, event.time, event.worker)
                self._counter(event.time)
            elif kind == "finished":
                self._finished(event)
            elif kind == "retrying":  # an attempt's span; the next one is counted anew
                self._finished(event, "retried")
                self._n_out -= 1
            elif kind == "skipped":
                self._n_out += 1
                self._instant(event.time, f"skipped: {event.name}",
                              {"reason": event.reason}, scope="p")
            elif kind == "run-started":
                self._run_started(event)
            elif kind == "run-ended":
                self._run_ended(event)
            else:  # paused, resumed, aborting, resized
                args = {k: v for k, v in (("reason", event.reason),
                                          ("workers", getattr(event, "workers", None)))
                        if v is not None}
                self._instant(event.time, kind, args)

    def _run_started(self, event: Any) -> None:
        status = getattr(event, "status", None)
        # waiting: the tasks neither done (carried over) nor handed out yet
        self._total = None if status is None else status.total - status.done
        self._n_out = 0
        self._reset_counts()
        args = {}
        workers = getattr(event, "workers", None)
        if workers is not None:
            args["workers"] = workers
        self._instant(event.time, "run started", args)
        self._counter(event.time)

    def _finished(self, event: Any, failed: str = "failed") -> None:
        """The span of an attempt that ended (*failed*: its outcome if it failed)."""
        key = task_key(event.task)
        dispatched = self._key2dispatched.pop(key, event.time)
        start, worker = self._key2start.pop(key, (None, event.worker))
        if start is None:  # it never started (or its pool does not tell starts)
            self._n_queued -= 1
            start = dispatched
        else:
            self._ended(key, worker)
        if event.worker is not None:
            worker = event.worker
        duration = getattr(event, "duration", None)
        end = event.time if duration is None else min(start + duration, event.time)
        tid = self._tracks.place(worker, start, end)
        for new_tid, name in self._tracks.new:
            self._write({"ph": "M", "pid": PID, "tid": new_tid, "name": "thread_name",
                         "args": {"name": name}})
        self._tracks.new.clear()
        args = _task_args(event.task)
        excinfo = event.res.excinfo
        if excinfo is None:
            args["outcome"] = "passed"
        else:
            args["outcome"] = failed
            args["error"] = f"{excinfo.type.__qualname__}: {excinfo.val}"
        self._write({"ph": "X", "pid": PID, "tid": tid, "name": event.name,
                     "cat": args["outcome"], "ts": self._us(start),
                     "dur": round(max(end - start, 0.0) * 1e6, 3), "args": args})
        self._counter(event.time)

    def _run_ended(self, event: Any) -> None:
        self._reset_counts()
        self._total = None
        self._counter(event.time)
        self._instant(event.time, "run ended", {})
        out = self._file
        assert out is not None
        position = out.tell()
        out.write("\n]\n")
        out.flush()
        self._closed_at = position

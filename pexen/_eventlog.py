"""``JsonEventLog``: every event of a run as one JSON object per line.

An observer for ``Sched.observe``, behind ``pexen run --log-json FILE``, for
log shippers: each line is a complete object, written and flushed as the
event comes, so a killed run loses no line it had written. Keys with no
value for an event are left out.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
from pathlib import Path
from typing import IO, Any

from pexen.journal._identity import task_identity


class JsonEventLog:
    """Append one JSON line per ``Sched.observe`` event to *path*.

    Keys: ``time`` (ISO 8601, local time with its offset), ``wall``
    (``time.time()``), ``event`` (the kind), and where they apply ``task``
    (display name), ``id`` (identity across runs), ``worker``, ``outcome``
    (passed or failed), ``duration`` (seconds), ``error`` (``Type: message``),
    ``reason`` and ``workers``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<JsonEventLog {str(self.path)!r}>"

    def __enter__(self) -> JsonEventLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __call__(self, event: Any) -> None:
        """Write *event* as one line."""
        when = datetime.datetime.fromtimestamp(event.wall).astimezone()
        record: dict[str, Any] = {
            "time": when.isoformat(),
            "wall": event.wall,
            "event": event.kind,
        }
        task = event.task
        if task is not None:
            record["task"] = event.name
            record["id"] = task_identity(task)
        if event.worker is not None:
            record["worker"] = event.worker
        res = event.res
        if res is not None:
            if res.excinfo is None:
                record["outcome"] = "passed"
            else:
                record["outcome"] = "failed"
                record["error"] = f"{res.excinfo.type.__qualname__}: {res.excinfo.val}"
        for key in ("duration", "reason", "workers"):
            value = getattr(event, key, None)
            if value is not None:
                record[key] = value
        line = json.dumps(record, default=repr) + "\n"
        with self._lock:
            if self._file is None:
                raise ValueError(f"{self!r} is closed")
            self._file.write(line)
            self._file.flush()

"""Tracks of a timeline: the trace's and the report's Gantt chart rows."""

from __future__ import annotations


class Tracks:
    """Which track (``tid``) each slice goes on: its worker's, if it fits there.

    A slice whose worker is unknown, or that would overlap the last slice on
    its worker's track (a pool that times tasks coarsely), goes on the first
    "lane" track free at its start, so no track holds overlapping slices.
    """

    def __init__(self) -> None:
        self.name2tid: dict[str, int] = {}
        self.tid2end: dict[int, float] = {}
        self.lanes: list[int] = []
        self.new: list[tuple[int, str]] = []  # tracks to name in the file

    def _track(self, name: str) -> int:
        tid = self.name2tid.get(name)
        if tid is None:
            tid = self.name2tid[name] = len(self.name2tid) + 1
            self.new.append((tid, name))
        return tid

    def place(self, worker: str | None, start: float, end: float) -> int:
        if worker is not None:
            tid = self._track(worker)
            if self.tid2end.get(tid, start) <= start:
                self.tid2end[tid] = end
                return tid
        for tid in self.lanes:
            if self.tid2end[tid] <= start:
                break
        else:
            tid = self._track(f"lane {len(self.lanes) + 1}")
            self.lanes.append(tid)
        self.tid2end[tid] = end
        return tid

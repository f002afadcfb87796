"""A checker of Chrome trace-event JSON (the JSON Array Format), as the
trace viewers read it: the closing ``]`` may be missing (a killed writer)."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

PHASES = {"X", "i", "C", "M"}  # the ones pexen writes


def load(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The events of the trace at *path*, and whether its ``]`` was there."""
    text = path.read_text().rstrip()
    assert text.startswith("["), text[:40]
    closed = text.endswith("]")
    if not closed:  # what the viewers do with a trace cut short
        text = text.rstrip(",") + "]"
    events = json.loads(text)
    assert isinstance(events, list)
    return events, closed


def check(events: list[dict[str, Any]]) -> dict[tuple[int, int], list[dict]]:
    """Assert the required fields of each event, that no track holds
    overlapping slices and that the counters stay in range; return the
    complete slices by ``(pid, tid)``."""
    tracks: dict[tuple[int, int], list[dict]] = defaultdict(list)
    workers: int | None = None  # the most the run had (resizes included)
    for event in events:
        assert event.get("ph") in PHASES, event
        assert isinstance(event.get("name"), str) and event["name"], event
        assert isinstance(event.get("pid"), int), event
        if event["ph"] != "M":
            assert isinstance(event.get("ts"), (int, float)) and event["ts"] >= 0, event
        if event["ph"] == "X":
            assert isinstance(event.get("tid"), int), event
            assert isinstance(event.get("dur"), (int, float)) and event["dur"] >= 0
            tracks[event["pid"], event["tid"]].append(event)
        elif event["ph"] == "i":
            assert event.get("s") in ("g", "p", "t"), event
            told = event["args"].get("workers")
            if event["name"] == "run started":
                workers = told
            elif told is not None and workers is not None:
                workers = max(workers, told)
        elif event["ph"] == "C":
            assert event["args"] and all(
                isinstance(v, (int, float)) for v in event["args"].values()
            ), event
            _check_counts(event, workers)
        elif event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name"), event
            assert isinstance(event["args"]["name"], str), event
    for track, slices in tracks.items():
        slices.sort(key=lambda e: e["ts"])
        for before, after in itertools.pairwise(slices):
            assert before["ts"] + before["dur"] <= after["ts"] + 1e-3, (
                f"overlapping slices on track {track}: {before} and {after}"
            )
    return tracks


def _check_counts(sample: dict[str, Any], workers: int | None) -> None:
    """No count is negative, and no more tasks run than the run has workers."""
    assert all(value >= 0 for value in sample["args"].values()), sample
    running = sample["args"].get("running", 0)
    assert workers is None or running <= workers, (
        f"{running} tasks running on {workers} workers: {sample}"
    )

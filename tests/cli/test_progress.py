"""The live display on a terminal, drawn into a recording console."""

from __future__ import annotations

from rich.console import Console

from pexen.cli import _progress
from pexen.cli._progress import LiveProgress
from pexen.cli._report import FAILED, PASSED, Outcome
from pexen.sched import ExceptionInfo


def test_live_display_shows_running_and_queued_tasks():
    busy, queued = object(), object()
    console = Console(record=True, width=100, force_terminal=True)
    progress = LiveProgress(
        console,
        0,
        workers=lambda: 1,
        in_flight=lambda: {busy: 0.0, queued: 0.0},
        started=lambda task: None,
        name={busy: "suite/busy", queued: "suite/waiting"}.get,
    )
    progress.total = 5
    progress.task_done(Outcome(object(), "suite/ok", PASSED, 0.1))
    progress.task_done(Outcome(object(), "suite/ok2", PASSED, 0.1))
    console.print(progress.render())
    text = console.export_text()
    assert "2/5" in text and "2 passed" in text and "0 failed" in text
    assert "running" in text and "suite/busy" in text
    assert "queued" in text and "suite/waiting" in text


def test_live_display_prints_failures_above_it():
    console = Console(record=True, width=200, force_terminal=True)
    progress = LiveProgress(
        console,
        0,
        workers=lambda: 1,
        in_flight=dict,
        started=lambda task: None,
        name=str,
    )
    progress.total = 2
    progress.task_done(Outcome(object(), "suite/ok", PASSED, 0.1))
    try:
        raise ValueError("boom")
    except ValueError as exc:
        excinfo = ExceptionInfo(ValueError, exc, exc.__traceback__)
    progress.task_done(Outcome(object(), "suite/bad", FAILED, 0.2, excinfo=excinfo))
    text = console.export_text()
    assert "suite/ok" not in text  # passes show only with -v
    assert "[2/2] FAILED  suite/bad (0.20s): ValueError: boom" in text


def test_live_display_shows_the_elapsed_time(clock_time, monkeypatch):
    monkeypatch.setattr(_progress.time, "monotonic", clock_time)
    console = Console(record=True, width=100, force_terminal=True)
    progress = LiveProgress(
        console, 0, workers=lambda: 1, in_flight=dict, started=lambda t: None, name=str
    )
    progress.start(3)
    clock_time.now += 3725
    progress.stop(0)
    assert "1:02:05" in console.export_text()


def test_live_display_estimates_the_time_left_from_a_journal():
    """With the durations a journal recorded: the work left over the workers."""
    slow, quick, other = object(), object(), object()
    console = Console(record=True, width=120, force_terminal=True)
    progress = LiveProgress(
        console, 0, workers=lambda: 2, in_flight=dict, started=lambda t: None,
        name=str, expected={id(slow): 240.0, id(quick): 60.0, id(other): 30.0},
    )
    progress.total = 3
    console.print(progress.render())
    progress.task_done(Outcome(slow, "suite/slow", PASSED, 240.0))
    console.print(progress.render())
    lines = [line for line in console.export_text().splitlines() if "left" in line]
    assert [line.split("about ")[1] for line in lines] == [
        "0:02:45 left", "0:00:45 left"
    ]


def test_live_display_without_a_journal_estimates_nothing():
    console = Console(record=True, width=120, force_terminal=True)
    progress = LiveProgress(
        console, 0, workers=lambda: 2, in_flight=dict, started=lambda t: None,
        name=str,
    )
    progress.total = 3
    console.print(progress.render())
    assert "left" not in console.export_text()

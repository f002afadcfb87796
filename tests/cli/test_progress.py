"""The live display on a terminal, drawn into a recording console."""

from __future__ import annotations

import re

from rich.console import Console

from pexen.cli._console import duration
from pexen.cli._progress import MAX_ROWS, LiveProgress
from pexen.cli._report import FAILED, PASSED, Outcome
from pexen.sched import ExceptionInfo, Status


def test_live_display_shows_running_and_queued_tasks(clock_time):
    busy, queued = object(), object()
    console = Console(record=True, width=100, force_terminal=True)
    progress = LiveProgress(
        console,
        0,
        workers=lambda: 1,
        # started 3 s ago, as the pool measured it
        status=lambda: Status(running=1, queued=1, running_tasks=((busy, 97.0),)),
        in_flight=lambda: {busy: 90.0, queued: 90.0},
        name={busy: "suite/busy", queued: "suite/waiting"}.get,
    )
    progress.total = 5
    progress.task_done(Outcome(object(), "suite/ok", PASSED, 0.1))
    progress.task_done(Outcome(object(), "suite/ok2", PASSED, 0.1))
    console.print(progress.render())
    text = console.export_text()
    assert "2/5" in text and "2 passed" in text and "0 failed" in text
    assert re.search(r"running +3\.00s suite/busy *\n", text), text
    assert re.search(r"queued +suite/waiting\n", text), text
    assert "more" not in text


def test_live_display_counts_the_tasks_it_has_no_room_for():
    running = tuple((object(), 0.0) for _ in range(MAX_ROWS - 1))
    queued = [object() for _ in range(3)]
    console = Console(record=True, width=100, force_terminal=True)
    progress = LiveProgress(
        console,
        0,
        workers=lambda: MAX_ROWS - 1,
        status=lambda: Status(running=len(running), queued=3, running_tasks=running),
        in_flight=lambda: dict.fromkeys([task for task, _ in running] + queued, 0.0),
        name=lambda task: "suite/queued" if task in queued else "suite/running",
    )
    console.print(progress.render())
    text = console.export_text()
    assert text.count("suite/running") == MAX_ROWS - 1
    assert text.count("suite/queued") == 1
    assert "and 2 more" in text


def test_live_display_prints_failures_above_it():
    console = Console(record=True, width=200, force_terminal=True)
    progress = LiveProgress(
        console,
        0,
        workers=lambda: 1,
        status=Status,
        in_flight=dict,
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


def test_live_display_shows_the_elapsed_time(clock_time):
    console = Console(record=True, width=100, force_terminal=True)
    progress = LiveProgress(
        console, 0, workers=lambda: 1, status=Status, in_flight=dict, name=str
    )
    progress.start(3)
    clock_time.now += 3725
    progress.stop(0)
    assert "1:02:05" in console.export_text()


def test_live_display_estimates_the_time_left_from_a_journal():
    """With the durations a journal recorded: the work left over the workers,
    or the longest task left if it takes longer alone."""
    slow, quick, other = object(), object(), object()
    more = [object() for _ in range(4)]
    console = Console(record=True, width=120, force_terminal=True)
    progress = LiveProgress(
        console, 0, workers=lambda: 2, status=Status, in_flight=dict, name=str,
        expected={id(slow): 240.0, id(quick): 60.0, id(other): 30.0}
        | {id(task): 60.0 for task in more},
    )
    progress.total = 7
    console.print(progress.render())  # 570 s of work on 2 workers
    for task in more:
        progress.task_done(Outcome(task, "suite/more", PASSED, 60.0))
    console.print(progress.render())  # slow's 240 s: more than 330 s over 2
    progress.task_done(Outcome(slow, "suite/slow", PASSED, 240.0))
    console.print(progress.render())  # quick's 60 s: more than 90 s over 2
    lines = [line for line in console.export_text().splitlines() if "left" in line]
    assert [line.split("about ")[1] for line in lines] == [
        "0:04:45 left", "0:04:00 left", "0:01:00 left"
    ]


def test_the_time_left_counts_what_running_tasks_ran(clock_time):
    """A long task running alone at the end: its expected seconds less those
    it ran, whatever the workers (it was 'work left over the workers')."""
    slow, quick = object(), object()
    status = Status(running=1, running_tasks=((slow, clock_time.now - 60.0),))
    console = Console(record=True, width=120, force_terminal=True)
    progress = LiveProgress(
        console, 0, workers=lambda: 4, status=lambda: status, in_flight=dict,
        name=str, expected={id(slow): 180.0, id(quick): 20.0},
    )
    progress.total = 2
    progress.task_done(Outcome(quick, "suite/quick", PASSED, 20.0))
    console.print(progress.render())
    clock_time.now += 200  # it overran: nothing left that the journal knows
    console.print(progress.render())
    lines = [line for line in console.export_text().splitlines() if "left" in line]
    assert [line.split("about ")[1] for line in lines] == [
        "0:02:00 left", "0:00:00 left"
    ]


def test_live_display_without_a_journal_estimates_nothing():
    console = Console(record=True, width=120, force_terminal=True)
    progress = LiveProgress(
        console, 0, workers=lambda: 2, status=Status, in_flight=dict, name=str,
    )
    progress.total = 3
    console.print(progress.render())
    assert "left" not in console.export_text()


def test_duration_format():
    assert [duration(s) for s in (None, 0.123, 12.34, 125)] == [
        "-",
        "0.12s",
        "12.3s",
        "2m05s",
    ]

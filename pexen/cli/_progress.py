"""What a person sees while ``pexen run`` runs.

On a terminal, a live display (rich): done/total with a bar, passed, failed,
the tasks running now and for how long, and the elapsed time; failures (and
with ``-v`` every finished task) are printed above it as they come. Anywhere
else (a CI log, a pipe): one plain line per finished task and nothing else,
no control characters. ``-q`` prints neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from pexen.cli._console import duration
from pexen.cli._report import FAILED, PASSED, SKIPPED, Outcome, failure_message

MAX_ROWS = 8  # running tasks shown at once; the rest are counted

STATUS_STYLE = {PASSED: "green", FAILED: "bold red", SKIPPED: "yellow"}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def result_line(outcome: Outcome, n_done: int, total: int) -> Text:
    """``[ 3/10] FAILED suite/x (0.01s): AssertionError: boom``."""
    width = len(str(total))
    line = Text.assemble(
        f"[{n_done:>{width}}/{total}] ",
        (f"{outcome.status.upper():<7}", STATUS_STYLE[outcome.status]),
        " ",
        outcome.name,
        f" ({duration(outcome.duration)})",
    )
    if outcome.status == FAILED:
        line.append(": " + failure_message(outcome))
    return line


class Progress:
    """Shows nothing while tasks run (``-q``); the base of the other displays."""

    def __init__(self, console: Console, verbosity: int = 0) -> None:
        self.console = console
        self.verbosity = verbosity
        self.total = 0
        self.n_done = 0
        self.counts = dict.fromkeys((PASSED, FAILED, SKIPPED), 0)

    def start(self, total: int) -> None:
        """The run begins with *total* tasks."""
        self.total = total

    def task_done(self, outcome: Outcome) -> None:
        """A task finished."""
        self.n_done += 1
        self.counts[outcome.status] += 1

    def stop(self, n_skipped: int) -> None:
        """The run is over; *n_skipped* tasks did not run (they count as done)."""
        self.counts[SKIPPED] += n_skipped
        self.n_done += n_skipped


class PlainProgress(Progress):
    """One plain line per finished task."""

    def task_done(self, outcome: Outcome) -> None:
        super().task_done(outcome)
        self.console.print(result_line(outcome, self.n_done, self.total))


class LiveProgress(Progress):
    """A live display on a terminal.

    *in_flight* returns the tasks handed to the pool with their hand-over time
    (``Sched.in_flight``), *started* when one really started (or None), and
    *name* a task's call path; the display's refresh thread calls them.
    *expected* maps the ``id()`` of each task to the seconds a journal says
    it takes; with it, the display shows an estimate of the time left: the
    expected seconds of the tasks not done yet, over the workers.
    """

    def __init__(
        self,
        console: Console,
        verbosity: int,
        *,
        workers: Callable[[], int],
        in_flight: Callable[[], Mapping[Any, float]],
        started: Callable[[Any], float | None],
        name: Callable[[Any], str],
        expected: Mapping[int, float] | None = None,
    ) -> None:
        super().__init__(console, verbosity)
        self.expected = expected
        self.left = sum(expected.values()) if expected else 0.0  # seconds of work
        self.workers = workers
        self.in_flight = in_flight
        self.started = started
        self.name = name
        self.t_start = time.monotonic()
        self.t_end: float | None = None
        self.spinner = Spinner("dots", style="cyan")
        self.live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=8,
            transient=False,
        )

    def start(self, total: int) -> None:
        super().start(total)
        self.t_start = time.monotonic()
        self.live.start()

    def task_done(self, outcome: Outcome) -> None:
        super().task_done(outcome)
        if self.expected:
            self.left = max(self.left - self.expected.get(id(outcome.task), 0.0), 0.0)
        if outcome.status == FAILED or self.verbosity > 0:
            self.console.print(result_line(outcome, self.n_done, self.total))

    def stop(self, n_skipped: int) -> None:
        super().stop(n_skipped)
        self.t_end = time.monotonic()
        self.live.stop()  # draws the final state once more

    def render(self) -> RenderableType:
        """The display's current state (called by the refresh thread)."""
        now = self.t_end or time.monotonic()
        counts = self.counts
        head = Table.grid(padding=(0, 1))
        cells: list[RenderableType] = [
            Text("✔", style="green") if self.t_end else self.spinner,
            Text(f"{self.n_done}/{self.total}", style="bold"),
            ProgressBar(total=max(self.total, 1), completed=self.n_done, width=30),
            Text(f"{counts[PASSED]} passed", style="green"),
            Text(f"{counts[FAILED]} failed", style="red" if counts[FAILED] else "dim"),
            Text(
                f"{counts[SKIPPED]} skipped",
                style="yellow" if counts[SKIPPED] else "dim",
            ),
            Text(_clock(now - self.t_start), style="cyan"),
        ]
        if self.expected and self.t_end is None:
            eta = self.left / max(self.workers(), 1)
            cells.append(Text(f"about {_clock(eta)} left", style="dim"))
        head.add_row(*cells)
        if self.t_end is not None:
            return head
        rows = Table.grid(padding=(0, 1))
        in_flight = list(self.in_flight().items())
        n_workers = self.workers()
        for position, (task, handed) in enumerate(in_flight[:MAX_ROWS]):
            if position < n_workers:
                since = self.started(task) or handed
                rows.add_row(
                    Text("  running", style="cyan"),
                    Text(f"{duration(now - since):>7}"),
                    Text(self.name(task)),
                )
            else:
                rows.add_row(
                    Text("  queued", style="dim"),
                    Text(""),
                    Text(self.name(task), style="dim"),
                )
        if len(in_flight) > MAX_ROWS:
            rows.add_row(
                Text(""), Text(""), Text(f"and {len(in_flight) - MAX_ROWS} more")
            )
        return Group(head, rows)

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
from itertools import islice
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from pexen.cli._console import duration
from pexen.cli._report import FAILED, PASSED, SKIPPED, Outcome, failure_message
from pexen.sched import Status

MAX_ROWS = 8  # running tasks shown at once; the rest are counted

STATUS_STYLE = {PASSED: "green", FAILED: "bold red", SKIPPED: "yellow"}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def plain_result_line(outcome: Outcome, n_done: int, total: int) -> str:
    """``[ 3/10] FAILED  suite/x (0.01s): AssertionError: boom``."""
    width = len(str(total))
    line = (
        f"[{n_done:>{width}}/{total}] {outcome.status.upper():<7} {outcome.name} "
        f"({duration(outcome.duration)})"
    )
    if outcome.status == FAILED:
        line += ": " + failure_message(outcome)
    return line


def result_line(outcome: Outcome, n_done: int, total: int) -> Text:
    """``plain_result_line``, its status in colour."""
    line = Text(plain_result_line(outcome, n_done, total))
    start = len(str(total)) * 2 + 4  # after "[ 3/10] "
    line.stylize(STATUS_STYLE[outcome.status], start, start + 7)
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
    """One plain line per finished task.

    Written as it is, not rendered by the console: a plain console would
    only copy it, at a cost that shows on thousands of tiny tasks. Names and
    messages in it are escaped already (``one_line``).
    """

    def task_done(self, outcome: Outcome) -> None:
        super().task_done(outcome)
        file = self.console.file
        file.write(plain_result_line(outcome, self.n_done, self.total) + "\n")
        file.flush()  # a log followed as it grows shows each task at once


class LiveProgress(Progress):
    """A live display on a terminal.

    *status* returns the run's ``Sched.status()``: its running tasks, since
    when (as their pool measured it, where it can tell), and how many are
    queued; *in_flight* the tasks handed to the pool (``Sched.in_flight``),
    to name the queued ones; *name* a task's call path. The display's
    refresh thread calls them, a few times a second: nothing is worked out
    per result. *expected* maps the ``id()`` of each task to the seconds a
    journal says it takes; with it, the display shows an estimate of the
    time left: the expected seconds of the tasks not done yet, over the
    workers.
    """

    def __init__(
        self,
        console: Console,
        verbosity: int,
        *,
        workers: Callable[[], int],
        status: Callable[[], Status],
        in_flight: Callable[[], Mapping[Any, float]],
        name: Callable[[Any], str],
        expected: Mapping[int, float] | None = None,
    ) -> None:
        super().__init__(console, verbosity)
        self.expected = expected
        self.left = sum(expected.values()) if expected else 0.0  # seconds of work
        self.workers = workers
        self.status = status
        self.in_flight = in_flight
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
        return Group(head, self._tasks(now))

    def _tasks(self, now: float) -> Table:
        """The running tasks, then the queued ones, MAX_ROWS at most."""
        rows = Table.grid(padding=(0, 1))
        status = self.status()
        running = status.running_tasks
        for task, since in running[:MAX_ROWS]:
            rows.add_row(
                Text("  running", style="cyan"),
                Text(f"{duration(max(0.0, now - since)):>7}"),  # since: a bit later
                Text(self.name(task)),
            )
        room = MAX_ROWS - len(rows.rows)
        if status.queued and room > 0:
            busy = {id(task) for task, _since in running}
            queued = (task for task in self.in_flight() if id(task) not in busy)
            for task in islice(queued, room):
                rows.add_row(
                    Text("  queued", style="dim"),
                    Text(""),
                    Text(self.name(task), style="dim"),
                )
        more = len(running) + status.queued - len(rows.rows)
        if more > 0:
            rows.add_row(Text(""), Text(""), Text(f"and {more} more"))
        return rows

"""What a person sees while ``pexen run`` runs.

On a terminal, a live display (rich): done/total with a bar, passed, failed,
the tasks running now and for how long, and the elapsed time; failures (and
with ``-v`` every finished task) are printed above it as they come. Anywhere
else (a CI log, a pipe): one plain line per finished task and nothing else,
no control characters. ``-q`` prints neither.
"""

from __future__ import annotations

import heapq
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
    time left (``time_left``).
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
        # the longest tasks first, for the longest one not done (those done
        # are dropped as they reach the top)
        self.longest = [(-seconds, key) for key, seconds in (expected or {}).items()]
        heapq.heapify(self.longest)
        self.done_ids: set[int] = set()
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
            self.done_ids.add(id(outcome.task))
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
        status = self.status() if self.t_end is None else None
        if self.expected and status is not None:
            eta = self.time_left(status.running_tasks, now)
            cells.append(Text(f"about {_clock(eta)} left", style="dim"))
        head.add_row(*cells)
        if status is None:
            return head
        return Group(head, self._tasks(status, now))

    def time_left(self, running: tuple[tuple[Any, float], ...], now: float) -> float:
        """The seconds the run should still take, by the journal's durations.

        No less than the work left over the workers, nor than the longest task
        left alone (a running one: its expected seconds less those it ran).
        The tasks *running* (``(task, since)``) count what they have run so
        far as done. A few heap steps per call, whatever the run's size.
        """
        expected = self.expected or {}
        work, longest = self.left, 0.0
        busy = set()
        for task, since in running:
            seconds = expected.get(id(task))
            if seconds is not None:
                ran = min(max(now - since, 0.0), seconds)
                work -= ran
                longest = max(longest, seconds - ran)
                busy.add(id(task))
        heap, done = self.longest, self.done_ids
        skipped = []  # running: counted above, as they ran some
        while heap and (heap[0][1] in done or heap[0][1] in busy):
            entry = heapq.heappop(heap)  # for good if done: done tasks stay done
            if entry[1] in busy:
                skipped.append(entry)
        if heap:
            longest = max(longest, -heap[0][0])
        for entry in skipped:
            heapq.heappush(heap, entry)
        return max(work / max(self.workers(), 1), longest, 0.0)

    def _tasks(self, status: Status, now: float) -> Table:
        """The running tasks, then the queued ones, MAX_ROWS at most."""
        rows = Table.grid(padding=(0, 1))
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

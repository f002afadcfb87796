"""``pexen history FILE``: the runs a journal recorded, and each task across them.

First a line per run (when, how long, the counts, the pool), then a line per
task over the recent runs: its outcome in each (a letter), the median and
longest of its durations, and "flaky" if it both passed and failed.
"""

from __future__ import annotations

import datetime
import statistics
from collections import defaultdict

from rich.console import Console
from rich.text import Text

from pexen.cli._console import duration, heading, plural, printable
from pexen.journal._read import Attempt, RunRecord
from pexen.journal._store import CARRIED, DISPATCHED, FAILED, PASSED, RETRIED, SKIPPED

RECENT_RUNS = 10  # the runs whose outcomes each task's line shows

# a task's last attempt in a run: "retried" only if the run ended before the retry
LETTERS = {PASSED: "P", FAILED: "F", SKIPPED: "S", CARRIED: "C", DISPATCHED: "?",
           RETRIED: "?"}
NOT_IN_RUN = "."
LEGEND = (
    "P passed, F failed, S skipped, C carried over by a resumed run, "
    "? never finished, . not in that run"
)


def when(seconds: float) -> str:
    """A ``time.time()`` as local date and time, to the second."""
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def run_wall(run: RunRecord) -> str:
    """How long *run* took; a run with no end recorded is still running, or
    was killed (the journal cannot tell which)."""
    if run.ended is None:
        return "no end recorded (still running, or killed)"
    return duration(run.ended - run.started)


def run_counts(run: RunRecord) -> str:
    """``6 passed, 1 failed, 8 carried over, 2 attempts retried`` (nonzero
    counts only, passed always)."""
    parts = [f"{run.passed} passed"]
    for count, what in ((run.failed, "failed"), (run.skipped, "skipped"),
                        (run.carried, "carried over"),
                        (run.unfinished, "never finished")):
        if count:
            parts.append(f"{count} {what}")
    if run.retried:
        parts.append(f"{plural(run.retried, 'attempt')} retried")
    return ", ".join(parts)


def _run_line(run: RunRecord) -> str:
    line = f"run {run.id}: {when(run.started)}, {run_wall(run)}, {run_counts(run)}"
    if run.pool:
        line += f" ({run.pool})"
    if run.resumed_from is not None:
        line += f", resumed from run {run.resumed_from}"
    if run.end_reason:
        line += f", {run.end_reason}"
    return line


def print_history(
    console: Console, path: str, runs: list[RunRecord], attempts: list[Attempt]
) -> None:
    """Print the history of the journal at *path*: *runs* (all of them) and
    the *attempts* of the recent ones."""
    console.print(f"journal {path}: {plural(len(runs), 'run')}", markup=False)
    if not runs:
        return
    heading(console, "runs", "bold")
    for run in runs:
        console.print(printable(_run_line(run)), markup=False, soft_wrap=True)
    recent = [run.id for run in runs[-RECENT_RUNS:]]
    by_task: dict[str, dict[int, Attempt]] = defaultdict(dict)
    names: dict[str, str] = {}
    for attempt in attempts:
        if attempt.run in recent:
            by_task[attempt.identity][attempt.run] = attempt
            names[attempt.identity] = attempt.name
    heading(console, f"tasks over the last {plural(len(recent), 'run')}", "bold")
    console.print(f"(oldest first: {LEGEND})", markup=False, style="dim")
    width = max(len(recent), 4)
    console.print(f"{'runs':<{width}}  {'median':>7} {'longest':>7}  task",
                  markup=False, style="dim")
    n_flaky = 0
    for identity in sorted(by_task):
        per_run = by_task[identity]
        outcomes = "".join(
            LETTERS.get(per_run[run].outcome, "?") if run in per_run else NOT_IN_RUN
            for run in recent
        )
        times = [a.duration for a in per_run.values() if a.duration is not None]
        median = duration(statistics.median(times)) if times else "-"
        longest = duration(max(times)) if times else "-"
        flaky = "P" in outcomes and "F" in outcomes
        n_flaky += flaky
        shown = identity if names[identity] == identity else (
            f"{identity} ({names[identity]})"
        )
        line = Text(f"{outcomes:<{width}}  {median:>7} {longest:>7}  ")
        line.append(printable(shown))
        if flaky:
            line.append("  flaky", style="bold yellow")
        console.print(line, soft_wrap=True)
    if n_flaky:
        console.print(
            f"{plural(n_flaky, 'flaky task')}: passed and failed in the last "
            f"{plural(len(recent), 'run')}", markup=False,
        )

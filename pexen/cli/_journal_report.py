"""``pexen report FILE``: where the time of a journal's last run went.

In the terminal: the run's summary, its critical path, its slowest tasks,
each worker's utilisation, the time tasks waited for locks, and its
failures; the analysis is ``pexen.journal._analysis``'s. ``--html OUT``
writes the same as one page (``_html``).
"""

from __future__ import annotations

from typing import NamedTuple

from rich.console import Console
from rich.text import Text

from pexen.cli._console import duration, heading, one_line, plural, printable
from pexen.cli._history import run_counts, run_wall, when
from pexen.journal import _analysis
from pexen.journal._read import Attempt, RunRecord
from pexen.journal._store import FAILED

SLOWEST = 5
PATH_ENDS = 3  # links of a long critical path shown at each end; the rest counted


class Analysis(NamedTuple):
    """What the report of one run shows, worked out once for both renderings."""

    run: RunRecord
    attempts: list[Attempt]
    span: float
    path: list[_analysis.Step]
    slowest: list[Attempt]
    workers: list[_analysis.WorkerUse]
    lock_waits: list[_analysis.LockWait]
    failures: list[Attempt]


def analyse(run: RunRecord, attempts: list[Attempt]) -> Analysis:
    """The report of *run*, whose attempts are *attempts*."""
    run_span = _analysis.span(attempts, run.started, run.ended)
    return Analysis(
        run=run,
        attempts=attempts,
        span=run_span,
        path=_analysis.critical_path(attempts),
        slowest=_analysis.slowest(attempts, SLOWEST),
        workers=_analysis.worker_use(attempts, run_span),
        lock_waits=_analysis.lock_waits(attempts, run.started),
        failures=[a for a in attempts if a.outcome == FAILED],
    )


def title(analysis: Analysis, path: str) -> str:
    """``run 2 of j.db: 2026-12-04 07:33:00, 0.52s (thread pool, 2 workers)``."""
    run = analysis.run
    line = f"run {run.id} of {path}: {when(run.started)}, {run_wall(run)}"
    return line + (f" ({run.pool})" if run.pool else "")


def took(attempt: Attempt) -> float:
    assert attempt.start is not None and attempt.end is not None
    return attempt.end - attempt.start


def path_length(analysis: Analysis) -> float:
    """Time from the start of the critical path's first task to the end of its last."""
    if not analysis.path:
        return 0.0
    first, last = analysis.path[0].attempt, analysis.path[-1].attempt
    assert first.start is not None and last.end is not None
    return last.end - first.start


def _print_path(console: Console, path: list[_analysis.Step]) -> None:
    """The links of the critical *path*; of a long one, only those at its ends
    (the rest would bury the other sections: a run of thousands of tasks may
    have hundreds of links), the ones between counted with their time."""
    hidden: list[_analysis.Step] = []
    if len(path) > 2 * PATH_ENDS + 1:
        hidden = path[PATH_ENDS:-PATH_ENDS]
        path = path[:PATH_ENDS] + path[-PATH_ENDS:]
    for i, step in enumerate(path):
        attempt = step.attempt
        after_gap = bool(hidden) and i == PATH_ENDS
        if after_gap:
            seconds = sum(took(link.attempt) for link in hidden)
            console.print(Text(f"{'...':>8} {plural(len(hidden), 'more task')} on "
                               f"the path ({duration(seconds)})", style="dim"))
        line = Text(f"{duration(took(attempt)):>8} {printable(attempt.name)}")
        if step.cause:
            above = "the last of those" if after_gap else "the one above"
            line.append(f"  after {above}: {step.cause}", style="dim")
        console.print(line, soft_wrap=True)


def print_report(console: Console, analysis: Analysis, path: str) -> None:
    """Print the terminal report of *analysis*, a run of the journal at *path*."""
    say = console.print
    say(printable(title(analysis, path)), markup=False, soft_wrap=True)
    say(run_counts(analysis.run), markup=False)
    if analysis.path:
        heading(console, f"critical path: {plural(len(analysis.path), 'task')}, "
                f"{duration(path_length(analysis))} of {duration(analysis.span)}",
                "bold")
        _print_path(console, analysis.path)
    if analysis.slowest:
        heading(console, f"slowest {len(analysis.slowest)}", "bold")
        for attempt in analysis.slowest:
            say(Text(f"{duration(took(attempt)):>8} {printable(attempt.name)}"),
                soft_wrap=True)
    if analysis.workers:
        heading(console, "workers", "bold")
        for use in analysis.workers:
            say(Text(f"{duration(use.busy):>8} busy {use.utilisation:4.0%}  "
                     f"{plural(use.n_tasks, 'task'):>9}  {printable(use.worker)}"),
                soft_wrap=True)
    if analysis.lock_waits:
        heading(console, "waiting for locks", "bold")
        for wait in analysis.lock_waits:
            say(Text(f"{duration(wait.waited):>8} {plural(wait.n_tasks, 'task'):>9}"
                     f"  {printable(wait.resource)}"), soft_wrap=True)
    if analysis.failures:
        heading(console, "failures", "bold red")
        for attempt in analysis.failures:
            message = (attempt.exc_message or "").strip().splitlines()
            text = f"{attempt.exc_type}: {message[0]}" if message else attempt.exc_type
            say(Text.assemble(("FAILED ", "bold red"),
                              (printable(attempt.name), "bold"),
                              f": {one_line(text or '')}"), soft_wrap=True)

"""The report at the end of ``pexen run``.

In order: each failure with its call path and traceback (for an executable:
its exit and the tail of its output; for a Python task, the tail of what it
printed, if anything), each skipped task with its reason,
collection errors, warnings the run raised, the slowest tasks, and a closing
line with the totals and the wall time.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.text import Text

from pexen.cli._console import (
    duration,
    heading,
    one_line,
    plural,
    printable,
    size,
)
from pexen.cli._report import (
    FAILED,
    PASSED,
    SKIPPED,
    Outcome,
    RunReport,
    bounded_traceback,
    command_text,
    failure_message,
    failure_traceback,
    tail,
)

OUTPUT_TAIL_LINES = 20
# ... and characters: one huge line must not flood the log (JUnit has it all)
OUTPUT_TAIL_CHARS = 10_000
GROUP_SKIPS_OVER = 5  # list tasks sharing one reason by name only up to this many


def say(console: Console, *objects: Any) -> None:
    """Print a line, letting a terminal wrap it (so copied text stays whole)."""
    console.print(*objects, soft_wrap=True)


def _print_failure(console: Console, outcome: Outcome, verbose: bool) -> None:
    title = Text.assemble(
        ("FAILED ", "bold red"),
        (outcome.name, "bold"),
        f" ({duration(outcome.duration)})",
    )
    cmd = outcome.command
    if cmd is None:
        say(console, title)
        say(console, Text(bounded_traceback(failure_traceback(outcome))))
        if outcome.output:  # what the Python task printed
            _print_output(console, outcome.output, verbose)
        say(console, "")
        return
    title.append(": " + failure_message(outcome), style="red")
    say(console, title)
    say(console, Text(f"command: {command_text(cmd)}", style="dim"))
    if outcome.output:
        _print_output(console, outcome.output, verbose)
    else:
        say(console, Text("no output", style="dim"))
    say(console, "")


def _print_output(console: Console, output: str, verbose: bool) -> None:
    """The tail of a failed task's output (all of it with -v), each line marked."""
    if verbose:
        end = tail(output)
    else:
        end = tail(output, OUTPUT_TAIL_LINES, OUTPUT_TAIL_CHARS)
    lines = list(end.lines)
    if end.cut_by_size:
        shown = size(end.n_bytes - end.bytes_cut)
        label = f"output (the last {shown} of {size(end.n_bytes)}, -v shows all):"
        lines[0] = f"[... {size(end.bytes_cut)} cut ...]{lines[0]}"
    elif end.bytes_cut:
        label = f"output (last {len(lines)} of {end.n_lines} lines, -v shows all):"
    else:
        label = "output:"
    say(console, Text(label, style="dim"))
    for line in lines:
        say(console, Text("  | " + printable(line)))


def _print_skipped(console: Console, skipped: list[Outcome], verbose: bool) -> None:
    reason2names: dict[str, list[str]] = defaultdict(list)
    for outcome in skipped:
        reason2names[one_line(outcome.reason or "(no reason given)")].append(
            outcome.name
        )
    for reason, names in reason2names.items():
        if len(names) <= GROUP_SKIPS_OVER or verbose:
            for name in names:
                say(
                    console,
                    Text.assemble(
                        ("SKIPPED ", "yellow"), (name, "bold"), f": {reason}"
                    ),
                )
        else:
            say(
                console,
                Text.assemble(
                    ("SKIPPED ", "yellow"),
                    (plural(len(names), "task"), "bold"),
                    f": {reason} (-v lists them)",
                ),
            )


def totals_line(report: RunReport) -> str:
    """``6 passed, 1 failed, 2 skipped in 0.52s``, with collection errors if any."""
    counts = report.counts
    parts = [f"{counts[PASSED]} passed"]
    parts += [f"{counts[s]} {s}" for s in (FAILED, SKIPPED) if counts[s]]
    if report.carried:
        parts.append(f"{report.carried} carried over")
    if report.collect_errors:
        parts.append(plural(len(report.collect_errors), "collection error"))
    line = ", ".join(parts) + f" in {duration(report.wall_time)}"
    if report.interrupted:
        line = "interrupted: " + line
    elif report.stopped_early:
        line += ", stopped at the first failure"
    return line


def print_summary(
    console: Console, report: RunReport, verbosity: int = 0, slowest: int = 5
) -> None:
    """Print the end-of-run report of *report*; *verbosity* is -1 (quiet) to 1+."""
    verbose = verbosity > 0
    failed = report.with_status(FAILED)
    if failed:
        heading(console, "failures", "bold red")
        for outcome in failed:
            _print_failure(console, outcome, verbose)
    skipped = report.with_status(SKIPPED)
    if skipped:
        heading(console, "skipped", "yellow")
        _print_skipped(console, skipped, verbose)
    if report.collect_errors:
        heading(console, "collection errors", "bold red")
        for error in report.collect_errors:
            say(
                console,
                Text.assemble(("ERROR ", "bold red"), (one_line(str(error)), "bold")),
            )
            say(console, Text(printable(error.traceback.rstrip("\n"))))
            say(console, "")
    if report.warnings:
        heading(console, "warnings", "yellow")
        for message in report.warnings:
            say(console, Text(printable(message), style="yellow"))
    timed = sorted(
        (o for o in report.outcomes if o.duration is not None),
        key=lambda o: o.duration or 0.0,
        reverse=True,
    )[:slowest]
    if timed and verbosity >= 0:
        heading(console, f"slowest {len(timed)}", "dim")
        for outcome in timed:
            say(console, Text(f"{duration(outcome.duration):>8} {outcome.name}"))
    style = "bold red" if report.exit_status else "bold green"
    heading(console, f"{totals_line(report)} ({report.pool})", style)

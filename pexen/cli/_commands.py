"""The commands of ``pexen``: ``run``, ``list`` and ``graph`` here, and the
journal's ``history``, ``report`` and ``forget`` (``_journal_commands``).

Each takes the parsed arguments and the output and error streams, and
returns its exit status (``_exit.ExitStatus``); a ``UsageError`` it raises is
reported by ``main``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from pexen._errors import PexenError
from pexen.cli._collect import Collection, UsageError, collect
from pexen.cli._console import make_console, one_line, plural, printable
from pexen.cli._exit import ExitStatus
from pexen.cli._graph import render
from pexen.cli._journal_commands import cmd_forget, cmd_history, cmd_report
from pexen.cli._journaling import NothingFailed, RunRecords, check_options, journal_path
from pexen.cli._junit import check_writable, write_junit
from pexen.cli._listing import print_listing
from pexen.cli._parser import PROG
from pexen.cli._pools import importable_in_workers, make_pool, pool_description
from pexen.cli._report import RunReport
from pexen.cli._run import execute, pexen_warnings
from pexen.cli._select import Selection, select
from pexen.cli._summary import print_summary
from pexen.sched import Sched
from pexen.sched._order import ORDERS as SCHED_ORDERS


def say(err: IO[str], kind: str, message: str) -> None:
    """Print ``pexen: KIND: MESSAGE`` (its control characters escaped)."""
    print(f"{PROG}: {kind}: {printable(message)}", file=err)


def say_error(err: IO[str], message: str) -> int:
    """Print ``pexen: error: MESSAGE``; return the status of a usage error."""
    say(err, "error", message)
    return ExitStatus.USAGE


def _collect(args: argparse.Namespace) -> tuple[Collection, Selection]:
    """The tasks of the PATHs, and those -k selects; none is a usage error."""
    collection = collect(args.paths, args.kind, args.follow_symlinks)
    selection = select(collection.tasks, collection.names, args.patterns)
    if not selection.tasks and not collection.errors:
        if collection.tasks:
            patterns = " or ".join(map(repr, args.patterns))
            among = plural(len(collection.tasks), "task")
            raise UsageError(f"no task matches -k {patterns} among {among}")
        raise UsageError(
            f"no tasks found in {', '.join(map(repr, args.paths))}: no function "
            "there carries pexen metadata, and no executable file"
        )
    return collection, selection


def _say_collected(
    console: Console, collection: Collection, selection: Selection, patterns: list[str]
) -> None:
    """``collected 9 tasks from ...`` and, with -k, what it selected."""
    console.print(collection.describe(), markup=False)
    if patterns:
        among = plural(len(collection.tasks), "task")
        line = (
            f"selected {selection.n_matched} of {among} with -k {' -k '.join(patterns)}"
        )
        if selection.n_providers:
            line += f", and {plural(selection.n_providers, 'provider')} they require"
        console.print(line, markup=False)


def _check_junit_path(path: Path) -> None:
    """Refuse a ``--junit-xml`` path the report could not be written to."""
    try:
        check_writable(path)
    except IsADirectoryError:
        raise UsageError(
            f"--junit-xml {str(path)!r}: is a directory; give a file name, such as "
            f"{str(path / 'junit.xml')!r}"
        ) from None
    except OSError as exc:
        cause = exc.strerror or str(exc)
        if exc.filename is not None:
            cause += f": {exc.filename!r}"
        raise UsageError(
            f"--junit-xml {str(path)!r}: cannot write the JUnit report there "
            f"({cause}); give a file in a directory pexen can write to"
        ) from None


def _merged(capacities: list[dict[str, Any]]) -> dict[str, Any]:
    """The amounts of every ``--capacity``, a later one winning."""
    merged: dict[str, Any] = {}
    for capacity in capacities:
        merged.update(capacity)
    return merged


def cmd_run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """``pexen run``: run the tasks with progress, then the summary and reports."""
    console = make_console(out)
    if args.junit_xml is not None:
        _check_junit_path(args.junit_xml)
    check_options(args)
    collection, selection = _collect(args)
    verbosity = -1 if args.quiet else args.verbose
    if verbosity >= 0:
        _say_collected(console, collection, selection, args.patterns)
    pool = make_pool(args)
    report = RunReport(collect_errors=collection.errors)
    with RunRecords(args, pool_description(args.pool, pool)) as records:
        try:
            selection = records.choose(console, selection, verbosity)
        except NothingFailed as exc:
            console.print(f"{exc}: nothing to run again", markup=False)
            return ExitStatus.OK
        report.carried = records.n_carried
        try:
            with importable_in_workers(collection.import_paths):
                execute(
                    console,
                    selection.tasks,
                    selection.names,
                    pool,
                    report,
                    capacity=_merged(args.capacity),
                    order=args.order if args.order in SCHED_ORDERS else "priority",
                    verbosity=verbosity,
                    exitfirst=args.exitfirst,
                    filtered=bool(args.patterns or args.rerun_failed),
                    capture_ids=collection.python_ids,
                    observers=records.observers,
                    resume=records.resume_from,
                    expected=records.expected,
                )
        except PexenError as exc:  # the graph is unsound, or the pool cannot start
            if collection.errors:
                print_summary(console, report, verbosity, slowest=0)
            return say_error(err, str(exc))
    report.pool = pool_description(args.pool, pool)  # a cluster's size is known now
    if args.junit_xml is not None:
        try:
            args.junit_xml.parent.mkdir(parents=True, exist_ok=True)
            write_junit(args.junit_xml, report)
        except OSError as exc:
            say_error(err, f"cannot write the JUnit report: {exc}")
            print_summary(console, report, verbosity, args.slowest)
            return ExitStatus.USAGE
    print_summary(console, report, verbosity, args.slowest)
    if verbosity >= 0:
        for option, path in (("JUnit XML report", args.junit_xml),
                             ("journal", journal_path(args)),
                             ("trace", args.trace), ("event log", args.log_json)):
            if path is not None:
                console.print(f"{option} written to {path}", markup=False)
    return report.exit_status


def cmd_list(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """``pexen list``: the tasks in run order; a usage error if some never run."""
    console = make_console(out)
    collection, selection = _collect(args)
    _say_collected(console, collection, selection, args.patterns)
    n_never = print_listing(console, selection.tasks, selection.names)
    status: int = ExitStatus.OK
    warned: list[str] = []
    with pexen_warnings(warned, filtered=bool(args.patterns)):
        try:
            Sched(selection.tasks, capacity=_merged(args.capacity)).check()
        except PexenError as exc:
            status = say_error(err, str(exc))
    for message in warned:
        say(err, "warning", message)
    if n_never and status == ExitStatus.OK:
        status = say_error(err, f"{plural(n_never, 'task')} would never run")
    for error in collection.errors:
        say(err, "error", one_line(str(error)))
    return ExitStatus.USAGE if collection.errors else status


def cmd_graph(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """``pexen graph``: the requires/provides graph as DOT or Mermaid."""
    collection, selection = _collect(args)
    out.write(render(args.format, selection.tasks, selection.names))
    out.flush()
    for error in collection.errors:
        say(err, "error", one_line(str(error)))
    return ExitStatus.USAGE if collection.errors else ExitStatus.OK


COMMANDS = {
    "run": cmd_run,
    "list": cmd_list,
    "graph": cmd_graph,
    "history": cmd_history,
    "report": cmd_report,
    "forget": cmd_forget,
}

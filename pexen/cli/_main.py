"""The ``pexen`` command: parse the arguments, then run, list or graph.

Exit status: 0 all tasks passed; 1 a task failed or was skipped because of a
failure; 2 a usage or collection error; 128 + the signal's number when a
signal stopped the run: 130 interrupted by Ctrl-C (SIGINT), 143 by SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from rich.console import Console

import pexen
from pexen._errors import PexenError
from pexen.cli._collect import KINDS, Collection, UsageError, collect
from pexen.cli._console import make_console, plural
from pexen.cli._graph import FORMATS, render
from pexen.cli._junit import write_junit
from pexen.cli._listing import print_listing
from pexen.cli._pools import POOLS, importable_in_workers, make_pool, pool_description
from pexen.cli._report import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    RunReport,
)
from pexen.cli._run import execute, pexen_warnings
from pexen.cli._select import Selection, select
from pexen.cli._summary import print_summary
from pexen.sched import Sched

PROG = "pexen"

MAIN_EPILOG = """\
examples:
  pexen run examples/suite              run a package of decorated test functions
  pexen run -j 4 --pool process tests/  four worker processes
  pexen run examples/scripts -x         executables; stop at the first failure
  pexen run tests -k db --junit-xml report.xml
  pexen run tests --pool dask --address tcp://host:8786   on a Dask cluster
  pexen list examples/suite             the tasks, their metadata and run order
  pexen graph examples/suite | dot -Tsvg > graph.svg

exit status: 0 all passed, 1 a task failed (or was skipped because of a failure),
2 usage or collection error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

RUN_EPILOG = """\
PATH is a Python package, a .py module, a directory of modules, a dotted
module name, a directory of executables or one executable; pexen decides by
what it finds (--kind overrides) and says what it collected.

examples:
  pexen run examples/suite
  pexen run examples/suite -j 2 --pool process -v
  pexen run examples/scripts -k 'scripts/[12]0-*' --junit-xml junit.xml
  pexen run examples/suite -x -q
  pexen run examples/suite --pool dask -j 4    a local Dask cluster of four
  pexen run examples/suite --pool dask --address tcp://scheduler:8786
  pexen run examples/suite --pool mpi -j 4     four spawned MPI workers

exit status: 0 all passed, 1 a task failed (or was skipped because of a failure),
2 usage or collection error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

LIST_EPILOG = """\
The order is the one a run with one worker would use, every task passing.

examples:
  pexen list examples/suite
  pexen list examples/scripts -k deploy
"""

GRAPH_EPILOG = """\
Tasks are nodes, an edge goes from a provider to each task requiring the tag
it is labelled with; locks are separate nodes joined by 'claims' or 'uses'.

examples:
  pexen graph examples/suite > suite.dot && dot -Tsvg suite.dot > suite.svg
  pexen graph examples/scripts --format mermaid
"""


def _count(minimum: int, allow_auto: bool = False) -> Any:
    def parse(text: str) -> int | None:
        if allow_auto and text == "auto":
            return None
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number" + (" or 'auto'" if allow_auto else "")
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def _collection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="what to collect tasks from"
    )
    parser.add_argument(
        "-k",
        dest="patterns",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only tasks whose call path (joined with '/') contains PATTERN, or "
        "matches it as a glob if it has any of *?[ ; repeat for more; the tasks "
        "providing what they require are kept",
    )
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="auto",
        help="read PATHs as Python modules or as executables (default: decide by "
        "what is there)",
    )
    parser.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="follow symlinks to directories when collecting executables",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pexen`` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run Python test suites and directories of executables as\n"
        "ordered, parallel task graphs.",
        epilog=MAIN_EPILOG,
        formatter_class=fmt,
    )
    parser.add_argument(
        "--version", action="version", version=f"pexen {pexen.__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the tasks and report",
        epilog=RUN_EPILOG,
        formatter_class=fmt,
        description="Collect tasks from each PATH, run them in parallel in the order\n"
        "their metadata asks for, show progress and a summary.",
    )
    _collection_args(run)
    run.add_argument(
        "-j",
        "--workers",
        type=_count(1, allow_auto=True),
        default=None,
        metavar="N",
        help="tasks run at once (default: auto, one per CPU; for Dask, the "
        "cluster's size)",
    )
    run.add_argument(
        "--spare",
        type=_count(0),
        default=None,
        metavar="N",
        help="tasks queued beyond the workers so none starves (default: the "
        "pool's, 1 for thread and process)",
    )
    run.add_argument(
        "--pool",
        choices=list(POOLS),
        default="thread",
        help="where tasks run: threads of this process, separate processes"
        + (", a Dask cluster" if "dask" in POOLS else "")
        + (", MPI processes" if "mpi" in POOLS else "")
        + " (default: thread)",
    )
    if "dask" in POOLS:
        run.add_argument(
            "--address",
            metavar="URL",
            help="with --pool dask: the scheduler to connect to (tcp://host:8786); "
            "default: start a local cluster",
        )
    run.add_argument(
        "-x",
        "--exitfirst",
        action="store_true",
        help="stop at the first failure; tasks not run are reported as skipped",
    )
    run.add_argument(
        "--junit-xml",
        metavar="FILE",
        type=Path,
        help="write a JUnit XML report to FILE",
    )
    run.add_argument(
        "--slowest",
        type=_count(0),
        default=5,
        metavar="N",
        help="list the N slowest tasks in the summary (default: 5, 0: none)",
    )
    loud = run.add_mutually_exclusive_group()
    loud.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="a line for every finished task also on a terminal, full output of "
        "failed executables, every skipped task by name",
    )
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress, no list of slowest tasks: just the summary",
    )

    listing = commands.add_parser(
        "list",
        help="show the tasks with their metadata, in run order",
        epilog=LIST_EPILOG,
        formatter_class=fmt,
        description="Collect tasks from each PATH and show them in a table, in the\n"
        "order a one-worker run would use, without running anything.",
    )
    _collection_args(listing)

    graph = commands.add_parser(
        "graph",
        help="print the requires/provides graph (DOT or Mermaid)",
        epilog=GRAPH_EPILOG,
        formatter_class=fmt,
        description="Collect tasks from each PATH and print their graph for "
        "Graphviz (dot) or Markdown (mermaid).",
    )
    _collection_args(graph)
    graph.add_argument(
        "--format",
        choices=FORMATS,
        default="dot",
        help="dot for Graphviz, mermaid for Markdown (default: dot)",
    )
    return parser


def _error(err: IO[str], message: str) -> int:
    print(f"{PROG}: error: {message}", file=err)
    return EXIT_USAGE


def _collect(args: argparse.Namespace) -> tuple[Collection, Selection]:
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


def cmd_run(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    console = make_console(out)
    collection, selection = _collect(args)
    verbosity = -1 if args.quiet else args.verbose
    if verbosity >= 0:
        _say_collected(console, collection, selection, args.patterns)
    pool = make_pool(args)
    report = RunReport(collect_errors=collection.errors)
    try:
        with importable_in_workers(collection.import_paths):
            execute(
                console,
                selection.tasks,
                selection.names,
                pool,
                report,
                verbosity=verbosity,
                exitfirst=args.exitfirst,
                filtered=bool(args.patterns),
                capture_ids=collection.python_ids,
            )
    except PexenError as exc:  # the graph is unsound, or the pool cannot start
        if collection.errors:
            print_summary(console, report, verbosity, slowest=0)
        return _error(err, str(exc))
    report.pool = pool_description(args.pool, pool)  # a cluster's size is known now
    if args.junit_xml is not None:
        try:
            args.junit_xml.parent.mkdir(parents=True, exist_ok=True)
            write_junit(args.junit_xml, report)
        except OSError as exc:
            _error(err, f"cannot write the JUnit report: {exc}")
            print_summary(console, report, verbosity, args.slowest)
            return EXIT_USAGE
    print_summary(console, report, verbosity, args.slowest)
    if args.junit_xml is not None and verbosity >= 0:
        console.print(f"JUnit XML report written to {args.junit_xml}", markup=False)
    return report.exit_status


def cmd_list(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    console = make_console(out)
    collection, selection = _collect(args)
    _say_collected(console, collection, selection, args.patterns)
    n_never = print_listing(console, selection.tasks, selection.names)
    status = EXIT_OK
    warned: list[str] = []
    with pexen_warnings(warned, filtered=bool(args.patterns)):
        try:
            Sched(selection.tasks).check()
        except PexenError as exc:
            status = _error(err, str(exc))
    for message in warned:
        print(f"{PROG}: warning: {message}", file=err)
    if n_never and status == EXIT_OK:
        status = _error(err, f"{plural(n_never, 'task')} would never run")
    for error in collection.errors:
        print(f"{PROG}: error: {error}", file=err)
    return EXIT_USAGE if collection.errors else status


def cmd_graph(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    collection, selection = _collect(args)
    out.write(render(args.format, selection.tasks, selection.names))
    out.flush()
    for error in collection.errors:
        print(f"{PROG}: error: {error}", file=err)
    return EXIT_USAGE if collection.errors else EXIT_OK


COMMANDS = {"run": cmd_run, "list": cmd_list, "graph": cmd_graph}


def _tolerant_output() -> None:
    """Let ``sys.stdout`` and ``sys.stderr`` write what their encoding cannot
    (a task's output under ``PYTHONIOENCODING=ascii``) as ``\\uXXXX`` escapes."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError):  # closed
                stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pexen`` with *argv* (default: the command line); return the exit status."""
    _tolerant_output()
    out, err = sys.stdout, sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(err)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args, out, err)
    except UsageError as exc:
        return _error(err, str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except PexenError as exc:
        return _error(err, str(exc))

"""The argument parser of ``pexen``: its commands, options, help and examples.

The help's list of exit statuses is made from ``_exit.ExitStatus``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pexen
from pexen.cli._collect import KINDS
from pexen.cli._exit import exit_status_text
from pexen.cli._graph import FORMATS
from pexen.cli._journaling import ORDERS
from pexen.cli._pools import POOLS

PROG = "pexen"

MAIN_EPILOG = (
    """\
examples:
  pexen run examples/suite              run a package of decorated test functions
  pexen run -j 4 --pool process tests/  four worker processes
  pexen run examples/scripts -x         executables; stop at the first failure
  pexen run tests -k db --junit-xml report.xml
  pexen run tests --pool dask --address tcp://host:8786   on a Dask cluster
  pexen list examples/suite             the tasks, their metadata and run order
  pexen graph examples/suite | dot -Tsvg > graph.svg
  pexen run examples/suite --journal j.db    record the run; then:
  pexen run examples/suite --resume j.db     run what did not pass
  pexen history j.db                         past runs, flaky tasks
  pexen report j.db --html report.html       where the time went

"""
    + exit_status_text()
)

RUN_EPILOG = (
    """\
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

"""
    + exit_status_text()
)

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


HISTORY_EPILOG = """\
Each task's line shows its outcome in each of the last runs (oldest first),
the median and longest of its durations, and 'flaky' if it both passed and
failed in them.

examples:
  pexen history j.db
"""

REPORT_EPILOG = """\
The critical path is the chain of tasks that set the run's length: each one
waited for the one before it (a tag it requires, a lock, its worker).

examples:
  pexen report j.db
  pexen report j.db --html report.html
"""

FORGET_EPILOG = """\
A forgotten task runs again in a run resumed from the journal.

examples:
  pexen forget j.db -k test_db       forget the results of the matching tasks
  pexen forget j.db                  forget every run
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


def _capacity(text: str) -> dict[str, int | float]:
    """``gpu=2,mem_gb=16.5`` -> ``{"gpu": 2, "mem_gb": 16.5}`` (positive amounts)."""
    capacity: dict[str, int | float] = {}
    for item in text.split(","):
        name, eq, amount = item.strip().partition("=")
        if not (eq and name and amount):
            raise argparse.ArgumentTypeError(
                f"{item.strip()!r} is not RESOURCE=AMOUNT; write for example "
                f"--capacity gpu=2,mem_gb=16"
            )
        try:
            value: int | float = int(amount)
        except ValueError:
            try:
                value = float(amount)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"{item.strip()!r}: {amount!r} is not a number"
                ) from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(
                f"{item.strip()!r}: the amount must be a positive number"
            )
        capacity[name] = value
    return capacity


def _capacity_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--capacity",
        type=_capacity,
        action="append",
        default=[],
        metavar="RES=N,...",
        help="how much there is of the counted resources tasks need (their "
        "'needs'), as gpu=2,mem_gb=16; a task needing more, or a resource not "
        "given, is an error",
    )


def _file_name(text: str) -> Path:
    # Path("") is ".", the current directory: refuse it by name here
    if not text:
        raise argparse.ArgumentTypeError(
            "an empty file name; give the report's path, such as junit.xml"
        )
    return Path(text)


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
        help="tasks queued beyond the workers so none starves (default: auto, "
        "more while tasks are short, 1 for tasks of 2 ms or more)",
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
    _capacity_arg(run)
    run.add_argument(
        "-x",
        "--exitfirst",
        action="store_true",
        help="stop at the first failure; tasks not run are reported as skipped",
    )
    run.add_argument(
        "--junit-xml",
        metavar="FILE",
        type=_file_name,
        help="write a JUnit XML report to FILE",
    )
    _journal_options(run)
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
    _capacity_arg(listing)

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
    _journal_commands(commands, fmt)
    return parser


def _journal_options(run: argparse.ArgumentParser) -> None:
    """``pexen run``'s options to record, resume and trace a run."""
    run.add_argument(
        "--journal",
        metavar="FILE",
        type=_file_name,
        help="record the run in the SQLite journal FILE (made if missing), for "
        "--resume, history and report",
    )
    again = run.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        metavar="FILE",
        type=_file_name,
        help="resume the last run of the journal FILE: what passed there is not "
        "run again, its shared state reaches its dependents; the run is "
        "recorded in FILE too",
    )
    again.add_argument(
        "--rerun-failed",
        metavar="FILE",
        type=_file_name,
        help="run only the tasks that failed in the last run of the journal FILE, "
        "and what they require (what passed is carried over)",
    )
    run.add_argument(
        "--order",
        choices=ORDERS,
        default="priority",
        help="among tasks of equal priority: the order they were collected in "
        "(priority, the default), the longest chain of cost behind them first "
        "(critical-path), the highest cost first (longest-first), or the "
        "slowest first by the durations the journal recorded, tasks it never "
        "timed before all (slowest-first)",
    )
    run.add_argument(
        "--trace",
        metavar="FILE",
        type=_file_name,
        help="write the run as Chrome trace-event JSON to FILE (open it in "
        "Perfetto or chrome://tracing)",
    )
    run.add_argument(
        "--log-json",
        metavar="FILE",
        type=_file_name,
        help="append every event of the run to FILE, one JSON object per line",
    )


def _journal_commands(commands: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """The parsers of ``history``, ``report`` and ``forget``."""
    history = commands.add_parser(
        "history",
        help="the runs a journal recorded, and each task across them",
        epilog=HISTORY_EPILOG,
        formatter_class=fmt,
        description="Show the runs recorded in a journal (pexen run --journal FILE)\n"
        "and each task's outcomes and durations over the recent ones.",
    )
    history.add_argument("journal", metavar="FILE", type=_file_name,
                         help="the journal")
    report = commands.add_parser(
        "report",
        help="where the time of a journal's last run went",
        epilog=REPORT_EPILOG,
        formatter_class=fmt,
        description="Report on the last run recorded in a journal: its critical\n"
        "path, slowest tasks, worker utilisation, waits for locks and failures.",
    )
    report.add_argument("journal", metavar="FILE", type=_file_name,
                        help="the journal")
    report.add_argument(
        "--html",
        metavar="OUT",
        type=_file_name,
        help="also write the report as one self-contained HTML page, with a Gantt "
        "chart of the workers over time",
    )
    forget = commands.add_parser(
        "forget",
        help="drop results recorded in a journal",
        epilog=FORGET_EPILOG,
        formatter_class=fmt,
        description="Drop the recorded results of the tasks matching -k (without\n"
        "-k: every run), so that a resumed run runs them again.",
    )
    forget.add_argument("journal", metavar="FILE", type=_file_name,
                        help="the journal")
    forget.add_argument(
        "-k",
        dest="patterns",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only the tasks whose identity contains PATTERN, or matches it as a "
        "glob if it has any of *?[ ; repeat for more",
    )

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
    return parser

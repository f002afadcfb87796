"""``pexen run``'s journal options: ``--journal``, ``--resume``,
``--rerun-failed``, ``--order slowest-first``, ``--trace``, ``--log-json``.

``RunRecords`` opens what the options ask for before any task runs (a
journal that cannot be used, or two tasks of one identity, is a usage
error), says what a resumed run carries over and why each other task runs,
chooses the tasks of ``--rerun-failed``, orders them for ``slowest-first``,
and hands the observers (journal, trace, event log) to the run.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from pexen._eventlog import JsonEventLog
from pexen.cli._collect import UsageError
from pexen.cli._console import plural, printable
from pexen.cli._select import Selection, with_providers
from pexen.journal import Journal, ResumePlan, task_identity
from pexen.sched._order import ORDERS as SCHED_ORDERS
from pexen.trace import ChromeTrace

# Sched(order=...)'s, and the journal's own (which orders the tasks as added)
ORDERS = (*SCHED_ORDERS, "slowest-first")


def journal_path(args: argparse.Namespace) -> Path | None:
    """The journal the run records into: the one it resumes, or ``--journal``."""
    return args.journal or args.resume or args.rerun_failed


def check_options(args: argparse.Namespace) -> None:
    """Refuse option combinations that cannot work, before anything runs."""
    if args.order == "slowest-first" and journal_path(args) is None:
        raise UsageError(
            "--order slowest-first orders tasks by the durations a journal "
            "recorded: give --journal FILE (or --resume/--rerun-failed FILE)"
        )
    resumed = args.resume or args.rerun_failed
    if resumed is not None and args.journal is not None and (
        Path(resumed).absolute() != Path(args.journal).absolute()
    ):
        option = "--resume" if args.resume else "--rerun-failed"
        raise UsageError(
            f"{option} {str(resumed)!r} and --journal {str(args.journal)!r}: a "
            f"resumed run is recorded in the journal it resumes from; give {option} "
            "alone"
        )
    files = [(option, path) for option, path in (
        ("--journal", journal_path(args)), ("--trace", args.trace),
        ("--log-json", args.log_json), ("--junit-xml", args.junit_xml),
    ) if path is not None]
    for i, (option, path) in enumerate(files):
        for other, other_path in files[i + 1:]:
            if Path(path).absolute() == Path(other_path).absolute():
                raise UsageError(
                    f"{option} and {other} name one file, {str(path)!r}; give each "
                    "its own"
                )


class RunRecords:
    """The journal, trace and event log of one ``pexen run``, open for it."""

    def __init__(self, args: argparse.Namespace, pool: str) -> None:
        self.args = args
        self.journal: Journal | None = None
        self.resume_from: Journal | None = None
        self.n_carried = 0  # tasks a resumed run takes over as passed
        self.expected: dict[int, float] | None = None  # id(task) -> seconds
        self.observers: list[Any] = []
        self._stack = contextlib.ExitStack()
        path = journal_path(args)
        try:
            resumed = args.resume or args.rerun_failed
            if resumed is not None:
                # resuming from a file that is not there is a mistake, not a fresh start
                Journal.existing(resumed).close()
            if path is not None:
                _make_parent(path)
                self.journal = self._stack.enter_context(Journal(
                    path, command=shlex.join(["pexen", *args.argv]), pool=pool
                ))
                self.observers.append(self.journal)
            if resumed is not None:
                self.resume_from = self.journal  # the same file: check_options
            for option, opener in (("--trace", ChromeTrace),
                                   ("--log-json", JsonEventLog)):
                target = getattr(args, option[2:].replace("-", "_"))
                if target is not None:
                    self.observers.append(self._stack.enter_context(
                        _opened(option, target, opener)
                    ))
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> RunRecords:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def choose(
        self, console: Console, selection: Selection, verbosity: int
    ) -> Selection:
        """The tasks to hand to the run, in the order to add them; say what a
        resumed run carries over (with -v: every decision, with its reason)."""
        if self.journal is not None:
            self.journal.check(selection.tasks)
        if self.resume_from is not None:
            plan = self.resume_from.plan(selection.tasks)
            if self.args.rerun_failed is not None:
                selection = _failed_and_providers(selection, plan)
                plan = self.resume_from.plan(selection.tasks)
            self.n_carried = len(plan.carried)
            _say_plan(console, plan, selection, self.resume_from, verbosity)
        if self.args.order == "slowest-first":
            assert self.journal is not None
            selection = _slowest_first(selection, self.journal)
        if self.journal is not None:
            self.expected = expected_durations(
                [d.task for d in plan.to_run] if self.resume_from is not None
                else selection.tasks,
                self.journal,
            )
        return selection


def _make_parent(path: Path) -> None:
    """Make the directories *path* is to be in, as ``--junit-xml`` does (one
    that cannot be made is left to the file's own error to name)."""
    with contextlib.suppress(OSError):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _opened(option: str, path: Path, opener: Any) -> Iterator[Any]:
    _make_parent(path)
    try:
        observer = opener(path)
    except OSError as exc:
        raise UsageError(
            f"{option} {str(path)!r}: cannot write there ({exc.strerror or exc}); "
            "give a file in a directory pexen can write to"
        ) from None
    with observer:
        yield observer


def _say_plan(
    console: Console,
    plan: ResumePlan,
    selection: Selection,
    journal: Journal,
    verbosity: int,
) -> None:
    if verbosity < 0:
        return
    where = (f"run {plan.run_id} of {journal.path}" if plan.run_id is not None
             else f"{journal.path}, which has no runs yet")
    n_carried = len(plan.carried)
    console.print(
        f"resuming {where}: {plural(n_carried, 'task')} passed there and "
        f"{'is' if n_carried == 1 else 'are'} carried over, "
        f"{len(plan.to_run)} to run",
        markup=False,
    )
    if verbosity < 1:
        return
    names = {id(task): name for task, name in
             zip(selection.tasks, selection.names, strict=True)}
    for decision in plan.decisions:
        verb = "carried " if decision.carry else "runs    "
        console.print(printable(f"  {verb} {names[id(decision.task)]}: "
                                f"{decision.reason}"), markup=False, soft_wrap=True)


def _failed_and_providers(selection: Selection, plan: ResumePlan) -> Selection:
    """The tasks that failed in the plan's run, and every task providing a
    tag they need (transitively)."""
    failed = {id(d.task) for d in plan.decisions if d.kind == "failed"}
    if not failed:
        raise NothingFailed(plan.run_id)
    chosen = {index for index, task in enumerate(selection.tasks) if id(task) in failed}
    return with_providers(selection.tasks, selection.names, chosen)


class NothingFailed(UsageError):
    """``--rerun-failed`` on a run where nothing failed: nothing to do."""

    def __init__(self, run_id: int | None) -> None:
        super().__init__(f"no task failed in run {run_id}" if run_id is not None
                         else "the journal has no runs")
        self.run_id = run_id


def _last_durations(journal: Journal) -> dict[str, float]:
    """The duration the journal recorded last for each identity."""
    last: dict[str, float] = {}
    for identity, seconds in journal.connection.execute(
        "SELECT identity, duration FROM attempts WHERE duration IS NOT NULL "
        "ORDER BY id"
    ):
        last[identity] = seconds
    return last


def expected_durations(tasks: list[Any], journal: Journal) -> dict[int, float]:
    """Seconds each of *tasks* is expected to take (by ``id()``): what the
    journal recorded last, or for a task it never timed, the median of the
    others (nothing if it timed none)."""
    last = _last_durations(journal)
    known = {id(task): last[identity] for task in tasks
             if (identity := task_identity(task)) in last}
    if not known:
        return {}
    guess = statistics.median(known.values())
    return {id(task): known.get(id(task), guess) for task in tasks}


def _slowest_first(selection: Selection, journal: Journal) -> Selection:
    """*selection* reordered by the durations *journal* recorded last, the
    longest first; tasks it never timed go before all of them. Priorities
    still win: the scheduler keeps this order only among equal ones."""
    last = _last_durations(journal)
    order = sorted(
        range(len(selection.tasks)),
        key=lambda i: -last.get(task_identity(selection.tasks[i]), float("inf")),
    )
    return Selection([selection.tasks[i] for i in order],
                     [selection.names[i] for i in order],
                     selection.n_matched, selection.n_providers)

"""``pexen run``: drive the scheduler over the collected tasks and report.

The loop is the scheduler's own generator: each ``TaskRes`` becomes an
``Outcome`` that the progress display shows at once. ``-x`` leaves the loop
at the first failure; closing the generator makes the pool drop queued tasks,
and ``Sched.skipped`` then names every task that did not run. Ctrl-C leaves
the loop the same way, after which the command waits for the workers to be
cleaned up (a second Ctrl-C abandons them), prints a partial summary and
exits with 130.

Python tasks run inside a ``CapturingTask`` (``_capture``), so what they
print is kept with their outcome instead of mixing into the display; the
outcomes name the tasks as collected, never the wrappers.
"""

from __future__ import annotations

import contextlib
import datetime
import signal
import threading
import time
import warnings
from collections.abc import Collection, Generator, Iterator
from typing import Any, cast

from rich.console import Console

from pexen._errors import PexenWarning
from pexen.cli._capture import OUTPUT_ATTR, CapturingTask, TaskOutput, uninstall
from pexen.cli._progress import LiveProgress, PlainProgress, Progress
from pexen.cli._report import (
    FAILED,
    PASSED,
    SKIPPED,
    Outcome,
    RunReport,
    captured_output,
)
from pexen.cli._timing import RunClock
from pexen.sched import Sched, TaskRes, UnrunTasksWarning, UnusedTagWarning
from pexen.sched._pool_base import WorkerPool


@contextlib.contextmanager
def pexen_warnings(into: list[str], filtered: bool = False) -> Iterator[None]:
    """Collect the text of every ``PexenWarning`` into *into* instead of printing it.

    The scheduler's warning about tasks left unrun is dropped, as the summary
    lists each of them with its reason; so is the one about tags nobody
    requires when the tasks were *filtered* with ``-k``.
    """
    # Tasks left unrun: the summary lists each with its reason. A tag nobody
    # requires, after -k: often just a requirer left out by the filter.
    dropped = (UnrunTasksWarning, UnusedTagWarning) if filtered else UnrunTasksWarning
    with warnings.catch_warnings():
        warnings.simplefilter("always", PexenWarning)
        original = warnings.showwarning

        def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if issubclass(category, PexenWarning):
                if not issubclass(category, dropped):
                    into.append(str(message))
            else:
                original(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


@contextlib.contextmanager
def announced_interrupts(console: Console) -> Iterator[None]:
    """Say what a Ctrl-C does the moment it comes, then interrupt as usual.

    The first one stops the run: the scheduler's generator then shuts the pool
    down, waiting for the running tasks, before the interrupt reaches the
    command's loop. A second one, while it waits, abandons them.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield  # not ours to change (a thread, or SIGINT ignored or handled)
        return
    presses = 0

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal presses
        presses += 1
        console.print(
            "interrupted: stopping the workers (Ctrl-C again to abandon the "
            "running tasks)"
            if presses == 1
            else "interrupted again: abandoning the running tasks",
            markup=False,
        )
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def make_progress(
    console: Console,
    verbosity: int,
    sched: Sched,
    clock: RunClock,
    names: dict[int, str],
) -> Progress:
    """The display that fits the output: live on a terminal, plain lines elsewhere."""
    if verbosity < 0:
        return Progress(console, verbosity)
    if console.is_terminal:
        return LiveProgress(
            console,
            verbosity,
            workers=clock.workers,
            in_flight=lambda: sched.in_flight,
            started=clock.started,
            name=lambda task: names[id(task)],
        )
    return PlainProgress(console, verbosity)


def _outcome(res: TaskRes, task: Any, name: str, seconds: float) -> Outcome:
    """The outcome of *task* (as collected; ``res.task`` may be its wrapper)."""
    if res.excinfo is None:
        ret = res.ret
        if isinstance(ret, TaskOutput):
            return Outcome(task, name, PASSED, seconds, output=ret.output)
        return Outcome(task, name, PASSED, seconds, output=captured_output(ret, None))
    output = getattr(res.excinfo.val, OUTPUT_ATTR, None)
    if not isinstance(output, str):
        output = captured_output(None, res.excinfo)
    return Outcome(task, name, FAILED, seconds, excinfo=res.excinfo, output=output)


def execute(
    console: Console,
    tasks: list[Any],
    task_names: list[str],
    pool: WorkerPool,
    report: RunReport,
    *,
    verbosity: int = 0,
    exitfirst: bool = False,
    filtered: bool = False,
    capture_ids: Collection[int] = (),
) -> None:
    """Run *tasks* on *pool*, filling *report*; return once every worker is gone.

    Raises what ``Sched.run()`` raises before any task starts (``DepcheckError``,
    ``MutexError``, ``SchedulerError``). *filtered* says ``-k`` chose the tasks;
    the output of the tasks whose ``id()`` is in *capture_ids* is captured.
    """
    run_tasks = [
        CapturingTask(task) if id(task) in capture_ids else task for task in tasks
    ]
    originals = {id(run): task for run, task in zip(run_tasks, tasks, strict=True)}
    names = {id(run): name for run, name in zip(run_tasks, task_names, strict=True)}
    sched = Sched(run_tasks)
    clock = RunClock(lambda: pool.workers)
    progress = make_progress(console, verbosity, sched, clock, names)
    report.started = datetime.datetime.now().astimezone()
    t_start = time.monotonic()
    with (
        pexen_warnings(report.warnings, filtered),
        announced_interrupts(console),
    ):
        # a generator (SPEC §1): closing it shuts the pool down
        results = cast(Generator[TaskRes, None, None], sched.run(pool))
        progress.start(len(tasks))
        try:
            clock.resumed()
            for res in results:
                seconds = clock.finished(res.task, sched.in_flight)
                key = id(res.task)
                outcome = _outcome(res, originals[key], names[key], seconds)
                report.outcomes.append(outcome)
                progress.task_done(outcome)
                if exitfirst and outcome.status == FAILED:
                    report.stopped_early = True
                    break
                clock.resumed()
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            try:
                results.close()  # shuts the pool down if the loop was left early
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                report.wall_time = time.monotonic() - t_start
                skipped = sched.skipped
                report.outcomes += [
                    Outcome(task, names[id(run)], SKIPPED, reason=skipped[run])
                    for run, task in zip(run_tasks, tasks, strict=True)
                    if run in skipped
                ]
                progress.stop(len(skipped))
                uninstall()  # the capture of tasks run in threads of this process

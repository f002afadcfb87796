"""``pexen run``: drive the scheduler over the collected tasks and report.

The loop is the scheduler's own generator: each ``TaskRes`` becomes an
``Outcome`` that the progress display shows at once. ``-x`` leaves the loop
at the first failure; closing the generator makes the pool drop queued tasks,
and ``Sched.skipped`` then names every task that did not run. Ctrl-C (or
SIGTERM) aborts the run (``Sched.abort``, from the signal handler: see
``_signals``): no new task starts, queued ones are dropped, and the tasks
running finish and are reported. A second signal aborts with ``force``:
running tasks are stopped (a worker process is killed, a thread abandoned).
A signal that comes once the run's loop is over (its pool shutting down)
interrupts that wait instead. Then the command prints a partial summary and
exits with the signal's status (``_exit.signalled``). A task that overran
its timeout in a thread is abandoned, not waited for (``ThreadWorkerPool``).

A run ended by a signal, or leaving threads abandoned, kills what its tasks
left running before it returns (``RunGuard.sweep``): an executable, its
children, a Python task's subprocesses, also those in a session of their
own. Should ``pexen run`` itself be killed, its watchdog
(``pexen._watchdog``) kills what the run had started.

Python tasks run inside a ``CapturingTask`` (``pexen._capture``), so what they
print is kept with their outcome instead of mixing into the display; the
outcomes name the tasks as collected, never the wrappers.
"""

from __future__ import annotations

import contextlib
import datetime
import time
import warnings
from collections.abc import Collection, Generator, Iterator, Mapping, Sequence
from typing import Any, cast

from rich.console import Console

from pexen._capture import OUTPUT_ATTR, CapturingTask, TaskOutput, uninstall
from pexen._errors import PexenWarning
from pexen._watchdog import guard
from pexen.cli._progress import LiveProgress, PlainProgress, Progress
from pexen.cli._report import (
    FAILED,
    PASSED,
    SKIPPED,
    Outcome,
    RunReport,
    captured_output,
)
from pexen.cli._signals import announced_interrupts
from pexen.factory._filesystem import kill_running_files
from pexen.sched import Sched, TaskRes, UnrunTasksWarning, UnusedTagWarning
from pexen.sched._pools.base import WorkerPool
from pexen.sched.pool import ThreadWorkerPool


@contextlib.contextmanager
def pexen_warnings(into: list[str], filtered: bool = False) -> Iterator[None]:
    """Collect every ``PexenWarning``, as ``Kind: text``, into *into* instead of
    printing it.

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
                    into.append(f"{category.__name__}: {message}")
            else:
                original(message, category, *args, **kwargs)

        warnings.showwarning = show
        yield


def make_progress(
    console: Console,
    verbosity: int,
    sched: Sched,
    pool: WorkerPool,
    names: dict[int, str],
    expected: Mapping[int, float] | None = None,
) -> Progress:
    """The display that fits the output: live on a terminal, plain lines elsewhere."""
    if verbosity < 0:
        return Progress(console, verbosity)
    if console.is_terminal:
        return LiveProgress(
            console,
            verbosity,
            workers=lambda: pool.workers,  # asked each time: a cluster may grow
            status=sched.status,
            in_flight=lambda: sched.in_flight,
            name=lambda task: names[id(task)],
            expected=expected,
        )
    return PlainProgress(console, verbosity)


def _outcome(res: TaskRes, task: Any, name: str, seconds: float | None) -> Outcome:
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
    capacity: Mapping[str, Any] | None = None,
    order: str = "priority",
    verbosity: int = 0,
    exitfirst: bool = False,
    filtered: bool = False,
    capture_ids: Collection[int] = (),
    observers: Sequence[Any] = (),
    resume: Any = None,
    expected: Mapping[int, float] | None = None,
) -> None:
    """Run *tasks* on *pool*, filling *report*; return once every worker is gone.

    A signal that interrupted the run (SIGINT or SIGTERM) sets
    ``report.interrupted`` and ``report.signal``. Raises what
    ``Sched.run()`` raises before any task starts (``DepcheckError``,
    ``MutexError``, ``SchedulerError``). *filtered* says ``-k`` chose the tasks;
    the output of the tasks whose ``id()`` is in *capture_ids* is captured.
    *observers* are told the run's events; *resume* is ``Sched.run``'s;
    *expected* the seconds a journal expects of each task (by ``id()``);
    *capacity* is that of the counted resources (``pexen run --capacity``),
    *order* the Sched's (``pexen run --order``).
    """
    run_tasks = [
        CapturingTask(task) if id(task) in capture_ids else task for task in tasks
    ]
    originals = {id(run): task for run, task in zip(run_tasks, tasks, strict=True)}
    names = {id(run): name for run, name in zip(run_tasks, task_names, strict=True)}
    sched = Sched(run_tasks, capacity=capacity, order=order)
    progress = make_progress(console, verbosity, sched, pool, names, expected)
    report.started = datetime.datetime.now().astimezone()
    t_start = time.monotonic()
    with (
        pexen_warnings(report.warnings, filtered),
        guard() as run_guard,
        announced_interrupts(console, sched, pool.wake) as interrupts,
    ):
        # a generator (SPEC §1): closing it shuts the pool down
        for observer in observers:
            sched.observe(observer)
        results = cast(Generator[TaskRes, None, None], sched.run(pool, resume=resume))
        progress.start(len(tasks) - report.carried)
        try:
            for res in results:
                seconds = sched.attempts(res.task)[-1][1]  # as the pool timed it
                key = id(res.task)
                outcome = _outcome(res, originals[key], names[key], seconds)
                report.outcomes.append(outcome)
                progress.task_done(outcome)
                if exitfirst and outcome.status == FAILED:
                    report.stopped_early = True
                    break
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            try:
                interrupts.stopping = True  # a signal now abandons the running tasks
                results.close()  # shuts the pool down if the loop was left early
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                interrupts.ignored = True
                if report.interrupted or interrupts.signum is not None or (
                    isinstance(pool, ThreadWorkerPool) and pool.abandoned_threads
                ):
                    # tasks were not waited for, or what they started would
                    # outlive us: end it all now (the scripts by name too,
                    # where there is no /proc to find what the run started)
                    kill_running_files()
                    run_guard.sweep()
                report.wall_time = time.monotonic() - t_start
                skipped = sched.skipped
                report.outcomes += [
                    Outcome(task, names[id(run)], SKIPPED, reason=skipped[run])
                    for run, task in zip(run_tasks, tasks, strict=True)
                    if run in skipped
                ]
                progress.stop(len(skipped))
                uninstall()  # the capture of tasks run in threads of this process
    if interrupts.signum is not None:  # the run was aborted, or interrupted
        report.interrupted = True
        report.signal = interrupts.signum

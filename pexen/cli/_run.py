"""``pexen run``: drive the scheduler over the collected tasks and report.

The loop is the scheduler's own generator: each ``TaskRes`` becomes an
``Outcome`` that the progress display shows at once. ``-x`` leaves the loop
at the first failure; closing the generator makes the pool drop queued tasks,
and ``Sched.skipped`` then names every task that did not run. Ctrl-C (or
SIGTERM) aborts the run (``Sched.abort``, from the signal handler): no new
task starts, queued ones are dropped, and the tasks running finish and are
reported. A second signal aborts with ``force``: running tasks are stopped
(a worker process is killed, a thread abandoned) and every process still
running below this one is killed: an executable, its children, a Python
task's subprocesses. A signal that comes once the run's loop is over (its
pool shutting down) interrupts that wait instead. Then the command prints
a partial summary and exits with the signal's status (``_exit.signalled``).
A task that overran its timeout in a thread is abandoned, not waited for
(``ThreadWorkerPool``). Should ``pexen run`` itself be killed, its watchdog
(``pexen._watchdog``) kills what the run had started.

Python tasks run inside a ``CapturingTask`` (``pexen._capture``), so what they
print is kept with their outcome instead of mixing into the display; the
outcomes name the tasks as collected, never the wrappers.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import threading
import time
import warnings
from collections.abc import Collection, Generator, Iterator, Mapping, Sequence
from typing import Any, cast

from rich.console import Console

from pexen._capture import OUTPUT_ATTR, CapturingTask, TaskOutput, uninstall
from pexen._errors import PexenWarning
from pexen._proctree import kill_descendants
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
from pexen.cli._timing import RunClock
from pexen.factory._filesystem import kill_running_files
from pexen.sched import Sched, TaskRes, UnrunTasksWarning, UnusedTagWarning
from pexen.sched._pools.base import WorkerPool


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


# The signals that stop a run: Ctrl-C, and SIGTERM (how CI systems cancel a job).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """What the signals that came during a run did (see ``announced_interrupts``).

    ``signum`` is the first one (None: none came). The first signal aborts
    the run (``Sched.abort``): no new task starts, the running ones finish.
    Once the run is stopping (``stopping``: after the first signal, or when
    the loop was left and waits for tasks still running), the next signal
    stops the running tasks (``abort(force=True)``) and ``abandoned`` says
    so; signals after that are ignored, so that none cuts short the killing
    of what those tasks started. When no run's loop takes the abort in (it is
    over, its pool shutting down), the signal raises ``KeyboardInterrupt``,
    which ends that wait.
    """

    def __init__(self, sched: Sched | None = None) -> None:
        self.sched = sched
        self.signum: int | None = None
        self.stopping = False
        self.abandoned = False

    def on_signal(self, console: Console, signum: int) -> None:
        """Say what this signal does, then abort the run (or interrupt)."""
        if self.abandoned:
            return  # the run is ending already
        first = self.signum is None
        if first:
            self.signum = signum
        name = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        reason = f"interrupted{name}"
        if self.stopping:
            self.abandoned = True
            again = "" if first else " again"
            line = f"interrupted{again}: stopping the running tasks"
        else:
            self.stopping = True
            again = "Ctrl-C" if signum == signal.SIGINT else "Ctrl-C or SIGTERM"
            line = (
                f"{reason}: no new task starts; waiting for the running ones "
                f"({again} again to stop them)"
            )
        console.print(line, markup=False)
        took = self.sched is not None and self.sched.abort(
            reason, force=self.abandoned
        )
        if not took:
            raise KeyboardInterrupt


@contextlib.contextmanager
def announced_interrupts(
    console: Console, sched: Sched | None = None
) -> Iterator[Interrupts]:
    """Say what a Ctrl-C or a SIGTERM does the moment it comes, then act.

    The first one aborts the run of *sched*: no new task starts, and the
    loop goes on until the running tasks are back. A second one stops them
    (``abort(force=True)``). Without a run to take the abort in, a signal
    raises ``KeyboardInterrupt``. The handlers are installed only in the
    main thread and only over the default ones (a signal ignored or handled
    by someone else is left alone), and the previous ones are put back.
    """
    interrupts = Interrupts(sched)
    if threading.current_thread() is not threading.main_thread():
        yield interrupts  # not ours to change
        return
    defaults = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: signal.SIG_DFL,
    }
    previous = {  # the signals whose handlers are ours to replace
        signum: handler
        for signum in STOP_SIGNALS
        if (handler := signal.getsignal(signum)) is defaults[signum]
    }

    def on_signal(signum: int, frame: Any) -> None:
        interrupts.on_signal(console, signum)

    try:
        for signum in previous:
            signal.signal(signum, on_signal)
        yield interrupts
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def make_progress(
    console: Console,
    verbosity: int,
    sched: Sched,
    clock: RunClock,
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
            workers=clock.workers,
            in_flight=lambda: sched.in_flight,
            started=clock.started,
            name=lambda task: names[id(task)],
            expected=expected,
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
    clock = RunClock(lambda: pool.workers)
    progress = make_progress(console, verbosity, sched, clock, names, expected)
    report.started = datetime.datetime.now().astimezone()
    t_start = time.monotonic()
    with (
        pexen_warnings(report.warnings, filtered),
        guard() as watchdog,
        announced_interrupts(console, sched) as interrupts,
    ):
        # a generator (SPEC §1): closing it shuts the pool down
        for observer in observers:
            sched.observe(observer)
        results = cast(Generator[TaskRes, None, None], sched.run(pool, resume=resume))
        progress.start(len(tasks) - report.carried)
        try:
            clock.resumed()
            for res in results:
                estimated = clock.finished(res.task, sched.in_flight)
                measured = sched.attempts(res.task)[-1][1]  # by the pool itself
                seconds = estimated if measured is None else measured
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
                interrupts.stopping = True  # a signal now abandons the running tasks
                results.close()  # shuts the pool down if the loop was left early
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                if interrupts.abandoned:
                    # what they started would outlive us: end it with its tasks
                    # (the scripts by name, where there is no /proc to list
                    # our descendants), sparing our own helpers
                    kill_running_files()
                    kill_descendants(os.getpid(), [watchdog.pid] if watchdog else [])
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

"""What a run of the command produced: one ``Outcome`` per task, and the totals.

The progress display, the summary and the JUnit writer all read these records,
so each fact about a task (its status, duration, output) is worked out once.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import traceback
from typing import Any

import attrs

from pexen import _capture
from pexen import sched as sched_package
from pexen.cli._console import one_line, printable
from pexen.cli._exit import run_status
from pexen.sched import ExceptionInfo, TaskTimeoutError

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@attrs.define(eq=False)
class Outcome:
    """How one task ended: passed, failed (``excinfo``) or skipped (``reason``)."""

    task: Any
    name: str
    status: str
    duration: float | None = None
    excinfo: ExceptionInfo | None = None
    reason: str | None = None
    output: str | None = None

    @property
    def process_error(self) -> subprocess.CalledProcessError | None:
        """The exit of a failed executable, if that is how this task failed."""
        if self.excinfo is not None and isinstance(
            self.excinfo.val, subprocess.CalledProcessError
        ):
            return self.excinfo.val
        return None

    @property
    def command(self) -> Any:
        """The command of an executable that failed (its exit or its timeout)."""
        if self.excinfo is None:
            return None
        return getattr(self.excinfo.val, "cmd", None) if isinstance(
            self.excinfo.val, _PROCESS_FAILURES
        ) else None


def decode_output(data: Any) -> str | None:
    """Turn captured process output (bytes or str) into text."""
    if data is None:
        return None
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return str(data)


# How an executable task fails: its exit status, or its timeout (FileTask).
_PROCESS_FAILURES = (subprocess.CalledProcessError, TaskTimeoutError)


def captured_output(ret: Any, excinfo: ExceptionInfo | None) -> str | None:
    """The output an executable task captured, from its result or its failure."""
    if excinfo is not None:
        return (
            decode_output(getattr(excinfo.val, "output", None))
            if isinstance(excinfo.val, _PROCESS_FAILURES)
            else None
        )
    if isinstance(ret, subprocess.CompletedProcess):
        return decode_output(ret.stdout)
    return None


@attrs.define(eq=False)
class RunReport:
    """Everything the summary and the reports say about one ``pexen run``."""

    outcomes: list[Outcome] = attrs.field(factory=list)
    collect_errors: list[Any] = attrs.field(factory=list)  # factory CollectionErrors
    warnings: list[str] = attrs.field(factory=list)
    wall_time: float = 0.0
    started: datetime.datetime | None = None
    interrupted: bool = False
    signal: int | None = None  # the signal that interrupted the run, if known
    stopped_early: bool = False
    pool: str = ""

    def with_status(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((PASSED, FAILED, SKIPPED), 0)
        for outcome in self.outcomes:
            counts[outcome.status] += 1
        return counts

    @property
    def exit_status(self) -> int:
        """The status ``pexen run`` exits with after this run (``_exit``)."""
        return run_status(
            interrupted=self.interrupted,
            signum=self.signal,
            collect_errors=bool(self.collect_errors),
            all_passed=all(o.status == PASSED for o in self.outcomes),
        )


def exit_description(err: subprocess.CalledProcessError) -> str:
    """``exit code 3`` or ``killed by signal SIGKILL``."""
    code = err.returncode
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def command_text(cmd: Any) -> str:
    """Show the command an executable task ran."""
    if isinstance(cmd, (list, tuple)):
        return one_line(" ".join(str(part) for part in cmd))
    return one_line(str(cmd))


def failure_message(outcome: Outcome) -> str:
    """One line saying how a failed task failed."""
    err = outcome.process_error
    if err is not None:
        return exit_description(err)
    assert outcome.excinfo is not None
    text = str(outcome.excinfo.val).strip().splitlines()
    kind = outcome.excinfo.type.__name__
    return one_line(f"{kind}: {text[0]}" if text else kind)


# Frames of pexen's own that call a task: the scheduler's, the capture wrapper's.
_CALLER_FRAMES = (
    os.path.dirname(os.path.abspath(sched_package.__file__)) + os.sep,
    os.path.abspath(_capture.__file__),
)


def failure_traceback(outcome: Outcome) -> str:
    """The traceback of a failed task as Python prints it, from the task's own frame.

    The frames of the scheduler and of the capture wrapper that called the
    task are left out, as pytest leaves out its own.
    """
    assert outcome.excinfo is not None
    kind, exc, tb = outcome.excinfo
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_CALLER_FRAMES):
        tb = tb.tb_next  # all of them, for an error of pexen's own (a timeout)
    return printable("".join(traceback.format_exception(kind, exc, tb)).rstrip("\n"))


def tail(text: str, n_lines: int) -> tuple[list[str], int]:
    """The last *n_lines* lines of *text* and how many lines came before them."""
    lines = text.rstrip("\n").splitlines()
    if n_lines <= 0 or len(lines) <= n_lines:
        return lines, 0
    return lines[-n_lines:], len(lines) - n_lines

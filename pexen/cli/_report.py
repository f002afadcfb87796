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
    carried: int = 0  # tasks a resumed run took over as passed, not run

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
    return one_line(f"{kind}: {clipped(text[0], MESSAGE_CHARS)}" if text else kind)


MESSAGE_CHARS = 500  # of a failure's one-line message
TRACEBACK_LINE_CHARS = 2_000  # of a line of a traceback in the summary
TRACEBACK_CHARS = 20_000  # of a traceback in the summary, its start and end kept


def clipped(text: str, limit: int) -> str:
    """*text*, cut to its first *limit* characters with a note of what was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}[... {len(text) - limit:,} characters cut]"


def bounded_traceback(text: str) -> str:
    """A traceback as the summary shows it: each line at most
    ``TRACEBACK_LINE_CHARS``, and all of it at most ``TRACEBACK_CHARS``, its
    start (where the task's frames are) and end (the exception) kept. A
    message of megabytes must not flood the terminal; JUnit keeps it whole."""
    lines = [clipped(line, TRACEBACK_LINE_CHARS) for line in text.split("\n")]
    text = "\n".join(lines)
    if len(text) <= TRACEBACK_CHARS:
        return text
    half = TRACEBACK_CHARS // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut:,} characters cut ...]\n{text[-half:]}"


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


@attrs.frozen
class Tail:
    """The end of a task's output, as much of it as a report shows.

    ``lines`` are the lines shown, of ``n_lines``; with ``cut_by_size`` the
    size bound cut them, and the first may be only the end of its line.
    ``n_bytes`` is the size of the whole output, ``bytes_cut`` of what comes
    before the lines shown (UTF-8).
    """

    lines: list[str]
    n_lines: int
    n_bytes: int
    bytes_cut: int
    cut_by_size: bool


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def tail(text: str, max_lines: int = 0, max_chars: int = 0) -> Tail:
    """The end of *text*: its last *max_lines* lines, and of those at most the
    last *max_chars* characters, so one huge line is bounded too (0: no bound)."""
    whole = "\n".join(text.rstrip("\n").splitlines())
    lines = whole.split("\n") if whole else []
    shown = lines[-max_lines:] if 0 < max_lines < len(lines) else lines
    shown_text = "\n".join(shown)
    cut_by_size = 0 < max_chars < len(shown_text)
    if cut_by_size:
        shown_text = shown_text[-max_chars:]
        shown = shown_text.split("\n")
    n_bytes = _utf8_size(whole)
    bytes_cut = n_bytes - _utf8_size(shown_text)
    return Tail(shown, len(lines), n_bytes, bytes_cut, cut_by_size)

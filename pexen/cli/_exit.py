"""The exit status of ``pexen``: each number and what it means, defined once.

``ExitStatus`` is the one definition: the commands return its members, the
help text shows ``exit_status_text()`` made from it, and a test checks the
table of docs/cli.md against it. A run stopped by a signal exits as a shell
reports a process that signal ended, 128 + its number.
"""

from __future__ import annotations

import enum
import signal
import textwrap


class ExitStatus(enum.IntEnum):
    """What ``pexen`` exits with; ``meaning`` is the help text's words for it."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> ExitStatus:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "all passed"
    FAILED = 1, "a task failed (or was skipped because of a failure)"
    USAGE = 2, "usage or collection error"
    INTERRUPTED = 128 + signal.SIGINT, "interrupted (Ctrl-C)"
    TERMINATED = 128 + signal.SIGTERM, "terminated (SIGTERM)"


def signalled(signum: int | None) -> int:
    """The status of a run a signal stopped: 128 + its number (Ctrl-C if unknown)."""
    return 128 + signum if signum else ExitStatus.INTERRUPTED


def run_status(
    *, interrupted: bool, signum: int | None, collect_errors: bool, all_passed: bool
) -> int:
    """The status of ``pexen run``: a signal wins, then a collection error, then
    whether every task passed."""
    if interrupted:
        return signalled(signum)
    if collect_errors:
        return ExitStatus.USAGE
    return ExitStatus.OK if all_passed else ExitStatus.FAILED


def exit_status_text(width: int = 80) -> str:
    """``exit status: 0 all passed, 1 a task failed ..., 143 terminated (SIGTERM).``"""
    listed = ", ".join(f"{status.value} {status.meaning}" for status in ExitStatus)
    return textwrap.fill(f"exit status: {listed}.", width=width) + "\n"

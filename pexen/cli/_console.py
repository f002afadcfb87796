"""Where the command writes: a rich console on a terminal, plain text elsewhere.

Text that comes from tasks (their output, names, errors) is escaped here
before it is printed, so no task can drive the terminal or forge a line.
"""

from __future__ import annotations

import re
from typing import IO

from rich.console import Console
from rich.text import Text

PLAIN_WIDTH = 10_000  # never wrap plain output: CI logs keep long lines whole

# C0 and C1 controls but tab and newline: colour codes, bells, clear-screen
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# ... and in one line, also what starts a new line or reorders what is shown
_LINE_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """*text* with control characters (colour codes, bells, clear-screen) shown
    as ``\\xNN``, so a task's output cannot drive the terminal or the log."""
    return _CONTROL.sub(_escape, text)


def one_line(text: str) -> str:
    """*text* (a task's name, a reason) with every control character escaped,
    newlines and tabs too, so it stays one line and cannot forge another."""
    return _LINE_CONTROL.sub(_escape, text)


def make_console(stream: IO[str]) -> Console:
    """A console for *stream*: styled on a terminal, no control characters otherwise."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return Console(file=stream, force_terminal=True, highlight=False)
    return Console(
        file=stream,
        force_terminal=False,
        force_interactive=False,
        color_system=None,
        no_color=True,
        highlight=False,
        emoji=False,
        width=PLAIN_WIDTH,
        soft_wrap=True,
    )


def heading(console: Console, title: str, style: str = "bold") -> None:
    """A section heading: a rule across a terminal, ``=== title ===`` in plain text."""
    if console.is_terminal:
        console.rule(Text(title, style=style), style=style)
    else:
        console.print(f"=== {title} ===", markup=False)


def duration(seconds: float | None) -> str:
    """``0.12s``, ``3.4s``, ``2m05s``."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def size(n_bytes: int) -> str:
    """``512 bytes``, ``9.9 kB``, ``10.0 MB`` (powers of 1000, as disks count)."""
    if n_bytes < 1000:
        return plural(n_bytes, "byte")
    value = n_bytes / 1000
    for unit in ("kB", "MB"):
        if value < 999.95:  # not "1000.0 kB"
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def plural(n: int, noun: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"

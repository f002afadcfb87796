"""Where the command writes: a rich console on a terminal, plain text elsewhere."""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.text import Text

PLAIN_WIDTH = 10_000  # never wrap plain output: CI logs keep long lines whole


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


def plural(n: int, noun: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"

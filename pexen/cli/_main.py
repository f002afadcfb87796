"""``main()``: parse the arguments, run the command, turn errors into a status.

The parser is ``_parser``'s, the commands are ``_commands``', and what each
exit status means is ``_exit``'s.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Sequence

from pexen._errors import PexenError
from pexen.cli._collect import UsageError
from pexen.cli._commands import COMMANDS, say_error
from pexen.cli._exit import ExitStatus
from pexen.cli._parser import PROG, build_parser


def _tolerant_output() -> None:
    """Let ``sys.stdout`` and ``sys.stderr`` write what their encoding cannot
    (a task's output under ``PYTHONIOENCODING=ascii``) as ``\\uXXXX`` escapes."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError):  # closed
                stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pexen`` with *argv* (default: the command line); return the exit status."""
    _tolerant_output()
    out, err = sys.stdout, sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else ExitStatus.USAGE
    if args.command is None:
        parser.print_help(err)
        return ExitStatus.USAGE
    try:
        return COMMANDS[args.command](args, out, err)
    except UsageError as exc:
        return say_error(err, str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return ExitStatus.INTERRUPTED
    except PexenError as exc:
        return say_error(err, str(exc))

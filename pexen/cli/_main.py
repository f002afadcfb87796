"""``main()``: parse the arguments, run the command, turn errors into a status.

The parser is ``_parser``'s, the commands are ``_commands``', what each exit
status means is ``_exit``'s, and the streams they write to are ``_streams``'.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO

from pexen._errors import PexenError
from pexen.cli._collect import UsageError
from pexen.cli._commands import COMMANDS, say_error
from pexen.cli._exit import ExitStatus
from pexen.cli._parser import PROG, build_parser
from pexen.cli._streams import command_streams


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pexen`` with *argv* (default: the command line); return the exit status."""
    with command_streams() as (out, err):
        return _run_command(argv, out, err)


def _run_command(argv: Sequence[str] | None, out: IO[str], err: IO[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else ExitStatus.USAGE
    if args.command is None:
        parser.print_help(err)
        return ExitStatus.USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the journal
    try:
        return COMMANDS[args.command](args, out, err)
    except UsageError as exc:
        return say_error(err, str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return ExitStatus.INTERRUPTED
    except PexenError as exc:
        return say_error(err, str(exc))

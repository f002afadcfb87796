"""The commands that read or trim a journal: ``history``, ``report``, ``forget``.

``history`` and ``report`` open the journal read-only, so looking at one
never changes it; ``forget`` is the one way to drop recorded results on
purpose.
"""

from __future__ import annotations

import argparse
from typing import IO

from pexen.cli._collect import UsageError
from pexen.cli._console import make_console, plural
from pexen.cli._exit import ExitStatus
from pexen.cli._history import RECENT_RUNS, print_history
from pexen.cli._html import render
from pexen.cli._journal_report import analyse, print_report
from pexen.cli._select import matches
from pexen.journal import Journal
from pexen.journal._read import attempts, runs
from pexen.journal._store import connect


def cmd_history(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """``pexen history FILE``: the runs, and each task across the recent ones."""
    console = make_console(out)
    conn = connect(args.journal, readonly=True)
    try:
        all_runs = runs(conn)
        recent = [run.id for run in all_runs[-RECENT_RUNS:]]
        print_history(console, str(args.journal), all_runs, attempts(conn, recent))
    finally:
        conn.close()
    return ExitStatus.OK


def cmd_report(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """``pexen report FILE [--html OUT]``: where the last run's time went."""
    console = make_console(out)
    conn = connect(args.journal, readonly=True)
    try:
        last = runs(conn, last=1)
        if not last:
            raise UsageError(f"journal {str(args.journal)!r} has no runs to report on")
        analysis = analyse(last[0], attempts(conn, [last[0].id]))
    finally:
        conn.close()
    print_report(console, analysis, str(args.journal))
    if args.html is not None:
        try:
            args.html.write_text(render(analysis, str(args.journal)), encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"--html {str(args.html)!r}: cannot write the page there "
                f"({exc.strerror or exc}); give a file in a directory pexen can "
                "write to"
            ) from None
        console.print(f"HTML report written to {args.html}", markup=False)
    return ExitStatus.OK


def cmd_forget(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """``pexen forget FILE [-k PATTERN]``: drop recorded results on purpose."""
    console = make_console(out)
    connect(args.journal, readonly=True).close()  # a missing file is an error
    with Journal(args.journal) as journal:
        if not args.patterns:
            n_attempts, n_runs = journal.forget()
            console.print(
                f"forgot {plural(n_runs, 'run')} and {plural(n_attempts, 'result')} "
                f"in {args.journal}",
                markup=False,
            )
            return ExitStatus.OK
        known = [
            identity for (identity,) in journal.connection.execute(
                "SELECT DISTINCT identity FROM attempts ORDER BY identity"
            )
        ]
        chosen = [
            identity for identity in known
            if any(matches(identity, pattern) for pattern in args.patterns)
        ]
        if not chosen:
            patterns = " or ".join(map(repr, args.patterns))
            raise UsageError(
                f"no task recorded in {str(args.journal)!r} matches -k {patterns} "
                f"(among {plural(len(known), 'task')}); 'pexen history "
                f"{args.journal}' lists them"
            )
        n_attempts, _ = journal.forget(chosen)
    console.print(
        f"forgot {plural(n_attempts, 'result')} of {plural(len(chosen), 'task')} "
        f"in {args.journal}; a run resumed from it runs them again",
        markup=False,
    )
    return ExitStatus.OK

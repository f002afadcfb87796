"""Resume: which tasks a run takes over from the journal's last run, and why.

``plan_resume`` reads the last run of a journal and decides, for each task
of the new run, whether it runs again or is *carried*: it passed in the last
run (or was carried into it), so it is not run again, and the shared state
it produced is handed to its dependents as if it had just finished. Every
decision comes with its reason in words, which ``pexen run --resume -v``
shows.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterable
from typing import Any, NamedTuple

from pexen.journal._identity import identities
from pexen.journal._store import (
    CARRIED,
    DISPATCHED,
    FAILED,
    PASSED_OUTCOMES,
    RETRIED,
    SKIPPED,
)
from pexen.sched._naming import CALLPATH_ATTR


class Decision(NamedTuple):
    """What a resumed run does with one task.

    ``carry`` true: it is not run; ``shared`` is its recorded shared state
    and ``source`` the id of the attempt that passed. Else it runs, and
    ``reason`` says why (for a carried task: where it passed). ``kind`` is
    the reason in a word: ``passed``, ``failed``, ``skipped``,
    ``unfinished``, ``absent`` (not in the last run), ``new``, ``moved``
    (its call path changed) or ``state`` (its shared state is not usable).
    """

    task: Any
    identity: str
    carry: bool
    kind: str
    reason: str
    shared: dict | None = None
    source: int | None = None


class ResumePlan(NamedTuple):
    """The decisions for the tasks of a run resumed from a journal's run
    ``run_id`` (None: the journal had no run), in the order of the tasks."""

    run_id: int | None
    decisions: list[Decision]

    @property
    def carried(self) -> list[Decision]:
        return [d for d in self.decisions if d.carry]

    @property
    def to_run(self) -> list[Decision]:
        return [d for d in self.decisions if not d.carry]


class _Row(NamedTuple):
    id: int
    identity: str
    callpath: str | None
    outcome: str
    carried_from: int | None
    reason: str | None
    exc_type: str | None
    exc_message: str | None


def _callpath(task: Any) -> str | None:
    callpath = getattr(task, CALLPATH_ATTR, None)
    return "/".join(callpath) if callpath else None


def plan_resume(conn: sqlite3.Connection, tasks: Iterable[Any]) -> ResumePlan:
    """Decide, for each of *tasks*, whether the journal's last run lets it be
    carried; raise ``JournalError`` for two tasks with one identity."""
    by_identity = identities(tasks)
    last = conn.execute("SELECT max(id) FROM runs").fetchone()[0]
    killed = last is not None and conn.execute(
        "SELECT ended IS NULL FROM runs WHERE id = ?", (last,)).fetchone()[0]
    rows: dict[str, _Row] = {}
    if last is not None:
        for row in conn.execute(
            "SELECT id, identity, callpath, outcome, carried_from, reason, exc_type, "
            "exc_message FROM attempts WHERE run = ? ORDER BY id", (last,)
        ):
            rows[row[1]] = _Row(*row)  # the last attempt of an identity wins
    known = {
        identity
        for (identity,) in conn.execute("SELECT DISTINCT identity FROM attempts")
    }
    sources = {
        row.carried_from or row.id: row
        for row in rows.values()
        if row.outcome in PASSED_OUTCOMES and row.identity in by_identity
    }
    source2state = _shared_states(conn, list(sources))
    decisions = []
    for identity, task in by_identity.items():
        row = rows.get(identity)
        if row is None:
            if killed:
                # killed (or still going on) before handing it out, or just after
                # (a task gets its "dispatched" row a moment late, _writer)
                kind, reason = "unfinished", (
                    f"never finished in run {last}, which stopped before recording "
                    "a result for it" + ("" if identity in known
                                         else " (new: not in the journal)"))
            elif identity in known:
                kind, reason = "absent", f"not in run {last}, the journal's last run"
            else:
                kind, reason = "new", "new: not in the journal"
            decisions.append(Decision(task, identity, False, kind, reason))
            continue
        callpath = _callpath(task)
        if row.outcome in PASSED_OUTCOMES and row.callpath != callpath:
            decisions.append(Decision(
                task, identity, False, "moved",
                f"its call path changed since run {last}: was {row.callpath!r}, "
                f"now {callpath!r}",
            ))
        elif row.outcome in PASSED_OUTCOMES:
            source = row.carried_from or row.id
            passed_in, shared, problem = source2state[source]
            if problem is not None:
                decisions.append(Decision(task, identity, False, "state", problem))
            else:
                where = (
                    f"passed in run {passed_in}"
                    + (f", carried into run {last}" if row.outcome == CARRIED else "")
                )
                decisions.append(
                    Decision(task, identity, True, "passed", where, shared, source)
                )
        else:
            kind = _KINDS.get(row.outcome, row.outcome)
            decisions.append(
                Decision(task, identity, False, kind, _why_again(row, last))
            )
    return ResumePlan(last, decisions)


_KINDS = {
    FAILED: "failed", SKIPPED: "skipped", DISPATCHED: "unfinished",
    RETRIED: "unfinished",  # the run ended while it waited to run again
}


def _why_again(row: _Row, run: int) -> str:
    if row.outcome == FAILED:
        message = (row.exc_message or "").strip().splitlines()
        failure = f"{row.exc_type}: {message[0]}" if message else f"{row.exc_type}"
        return f"failed in run {run}: {failure}"
    if row.outcome == SKIPPED:
        return f"skipped in run {run}: {row.reason}"
    if row.outcome == DISPATCHED:
        return (
            f"never finished in run {run}: handed to the pool, no result recorded"
        )
    if row.outcome == RETRIED:
        return f"never finished in run {run}: {row.reason}, but the run ended first"
    return f"{row.outcome} in run {run}"


def _shared_states(
    conn: sqlite3.Connection, sources: list[int]
) -> dict[int, tuple[int, dict | None, str | None]]:
    """For each attempt id: its run, its shared state, and why it cannot be
    handed on (None if it can)."""
    found: dict[int, tuple[int, dict | None, str | None]] = {}
    for start in range(0, len(sources), 500):  # SQLite's limit on parameters
        chunk = sources[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for source, run, blob, note in conn.execute(
            f"SELECT id, run, shared, shared_note FROM attempts WHERE id IN ({marks})",
            chunk,
        ):
            if note is not None:
                found[source] = (run, None, (
                    f"passed in run {run}, but its shared state was not recorded "
                    f"({note}), so its dependents could not have it"
                ))
                continue
            try:
                shared = {} if blob is None else pickle.loads(blob)
            except Exception as exc:
                found[source] = (run, None, (
                    f"passed in run {run}, but its recorded shared state cannot be "
                    f"loaded ({type(exc).__name__}: {exc})"
                ))
                continue
            found[source] = (run, shared, None)
    return found

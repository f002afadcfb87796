"""The journal's file: an SQLite database, its schema and its checks.

A journal is marked as one (``PRAGMA application_id``) and carries its format
version (``PRAGMA user_version``). Before anything is written, a file is read
through a read-only connection: one that is not a journal, is corrupt, or is
of a format this pexen does not know is refused with a ``JournalError``
naming the file and the cause, and is left as it was. A new journal is made
in WAL mode, so that a writer killed mid-transaction loses only that
transaction, and readers (``pexen history``) never block the run.

Tables: ``runs`` (one row per run) and ``attempts`` (one row per task per
run, and one more per retry of a task whose metadata allows retries, the
last one deciding: its identity, times as ``time.time()`` seconds, worker,
outcome, the exception, and for a task that passed and provides tags, its
shared state pickled, or in ``shared_note`` why it could not be).

Attempts are indexed by run only: an index holding the identity (text, in
no order) cost each row written more than the rest of its writing together,
and only reading, which is rare, looks attempts up by identity. The tables
are the same with either set of indexes, so the format version stays 1: a
journal made before this index set was chosen (by (run, identity) and by
identity) is read and written alike, and keeps its indexes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from pexen.journal._errors import JournalError

APPLICATION_ID = 0x70786A6E  # "pxjn"
FORMAT_VERSION = 1
BUSY_TIMEOUT_MS = 10_000  # another pexen writing the same journal: wait for it
_SQLITE_MAGIC = b"SQLite format 3\x00"

SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    ended REAL,
    host TEXT,
    pexen_version TEXT,
    python TEXT,
    command TEXT,
    pool TEXT,
    workers INTEGER,
    resumed_from INTEGER REFERENCES runs(id),
    end_reason TEXT
);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES runs(id),
    identity TEXT NOT NULL,
    name TEXT NOT NULL,
    callpath TEXT,
    outcome TEXT NOT NULL,
    dispatched REAL,
    started REAL,
    ended REAL,
    duration REAL,
    worker TEXT,
    exc_type TEXT,
    exc_message TEXT,
    traceback TEXT,
    reason TEXT,
    shared BLOB,
    shared_note TEXT,
    carried_from INTEGER REFERENCES attempts(id),
    priority TEXT,
    requires TEXT,
    provides TEXT,
    claims TEXT,
    uses TEXT
);
CREATE INDEX attempts_by_run ON attempts(run);
"""

# The outcomes an attempt row can hold.
DISPATCHED = "dispatched"  # handed to the pool; no result recorded (yet)
PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
CARRIED = "carried"  # passed in an earlier run, taken over by a resumed one
RETRIED = "retried"  # failed, and the task ran again (SchedMeta.retries)
PASSED_OUTCOMES = (PASSED, CARRIED)


def _refuse(path: Path, what: str, fix: str) -> JournalError:
    return JournalError(f"journal {str(path)!r}: {what}; {fix}")


def _check_header(path: Path) -> bool:
    """Read the file's first bytes: False for a new (absent or empty) file,
    True for an SQLite database; anything else is refused."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise _refuse(path, "is a directory", "give a file name, such as "
                      f"{str(path / 'pexen-journal.db')!r}") from None
    except OSError as exc:
        raise _refuse(path, f"cannot be read ({exc.strerror or exc})",
                      "check the path and its permissions") from None
    if not head:
        return False
    if not head.startswith(_SQLITE_MAGIC) or len(head) < 100:
        raise _refuse(
            path, "is not a pexen journal (not an SQLite database)",
            "give another path, or remove the file to start a new journal",
        )
    return True


def _check_database(path: Path) -> None:
    """Check an existing database through a read-only connection; one
    refused is left as it was, without the side files (``-wal``, ``-shm``)
    SQLite makes to read it."""
    side_files = [path.with_name(path.name + end) for end in ("-wal", "-shm")]
    made = [side for side in side_files if not side.exists()]
    try:
        _check_open(path)
    except JournalError:
        for side in made:
            with contextlib.suppress(OSError):
                side.unlink()
        raise


def _check_open(path: Path) -> None:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise _refuse(path, f"cannot be opened ({exc})",
                      "check the path and its permissions") from None
    try:
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            n_tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            raise _corrupt(path, str(exc)) from None
        if app_id != APPLICATION_ID:
            if app_id == 0 and n_tables == 0:
                return  # an empty database: made into a journal below
            raise _refuse(
                path, "is an SQLite database, but not a pexen journal",
                "give another path; pexen will not change this file",
            )
        if problems != ["ok"]:
            raise _corrupt(path, "; ".join(problems[:3]))
        if version > FORMAT_VERSION:
            raise _refuse(
                path,
                f"was written in journal format {version}, newer than this "
                f"pexen reads (up to {FORMAT_VERSION})",
                "use a newer pexen to read or extend it; this pexen will not "
                "change it",
            )
        if version < 1:
            raise _refuse(
                path, f"has an unknown journal format ({version})",
                "give another path; pexen will not change this file",
            )
    finally:
        conn.close()


def _corrupt(path: Path, detail: str) -> JournalError:
    detail = " ".join(detail.split())  # SQLite's report spans lines
    return _refuse(
        path, f"is corrupt ({detail})",
        "pexen will not change it and will not start over on its own: move it "
        "aside to keep it, or remove it to start a new journal",
    )


def connect(
    path: str | os.PathLike[str], *, readonly: bool = False
) -> sqlite3.Connection:
    """Open the journal at *path*, checked; make a new one if there is none.

    With *readonly*, a missing file is an error too, and the connection
    cannot write. The connection is in autocommit mode: callers open and
    commit their transactions themselves.
    """
    path = Path(path)
    exists = _check_header(path)
    if exists:
        _check_database(path)
    elif readonly:
        raise _refuse(path, "no such journal", "record one first with "
                      "'pexen run --journal FILE' or Journal(path)")
    try:
        if readonly:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True,
                isolation_level=None, check_same_thread=False,
            )
        else:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False
            )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            _set_up(conn)
    except sqlite3.Error as exc:
        raise _refuse(path, f"cannot be used ({exc})",
                      "check the path and its permissions") from None
    return conn


def _set_up(conn: sqlite3.Connection) -> None:
    """Switch to WAL mode; make a new journal's tables, all in one transaction."""
    # WAL: a killed writer loses only its open transaction; readers never block
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: each commit is synced to disk, so a power cut or a crash of the
    # system (not only of pexen) keeps every result committed; NORMAL would
    # keep the file sound but might lose the last commits. The writer thread
    # waits for the sync with the GIL let go: the run does not
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise

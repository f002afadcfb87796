"""``pexen run`` with ``--journal``, ``--resume``, ``--rerun-failed``,
``--order slowest-first``, ``--trace`` and ``--log-json``, in-process."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3

import pytest

from pexen.cli import main
from pexen.journal import Journal
from pexen.sched import TaskRes
from tests import _traceformat
from tests._events import Clock
from tests.cli._cli import EXAMPLES, restore_imports, write_package
from tests.journal._schedule import named

_names = itertools.count()


@pytest.fixture
def isolated_imports():
    with restore_imports():
        yield


def run(capsys, *args):
    status = main(["run", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def rows(path, sql):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


SUITE = EXAMPLES / "suite"


def test_journal_trace_and_event_log_of_a_run(capsys, tmp_path, isolated_imports):
    journal, trace, log = tmp_path / "j.db", tmp_path / "t.json", tmp_path / "e.jsonl"
    status, out, err = run(capsys, SUITE, "-j", "2", "--journal", journal,
                           "--trace", trace, "--log-json", log)
    assert status == 1, out + err
    assert out.endswith(f"journal written to {journal}\ntrace written to {trace}\n"
                        f"event log written to {log}\n")
    assert rows(journal, "SELECT outcome, count(*) FROM attempts GROUP BY outcome "
                "ORDER BY outcome") == [("failed", 1), ("passed", 6), ("skipped", 2)]
    [(command, pool)] = rows(journal, "SELECT command, pool FROM runs")
    assert "--journal" in command and pool == "thread pool, 2 workers"
    events, closed = _traceformat.load(trace)
    assert closed
    _traceformat.check(events)
    assert len([e for e in events if e["ph"] == "X"]) == 7
    kinds = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert kinds[0] == "run-started" and kinds[-1] == "run-ended"
    assert kinds.count("finished") == 7 and kinds.count("skipped") == 2


def test_resume_runs_what_did_not_pass(capsys, tmp_path, isolated_imports):
    journal = tmp_path / "j.db"
    run(capsys, SUITE, "--journal", journal)
    status, out, _ = run(capsys, SUITE, "--resume", journal, "-v")
    assert status == 1
    lines = out.splitlines()
    assert lines[1] == (f"resuming run 1 of {journal}: 6 tasks passed there and are "
                        "carried over, 3 to run")
    assert "  carried  suite/test_db/test_migrate: passed in run 1" in lines
    assert ("  runs     suite/test_report/test_export_report: failed in run 1: "
            "AssertionError: the report needs 3 tables, the schema has 2") in lines
    assert "0 passed, 1 failed, 2 skipped, 6 carried over in" in out
    [(resumed_from,)] = rows(journal, "SELECT resumed_from FROM runs WHERE id = 2")
    assert resumed_from == 1


def test_rerun_failed_runs_the_failures_and_what_they_require(
    capsys, tmp_path, isolated_imports, pkg_name
):
    package = write_package(tmp_path, pkg_name, {"test_m": """
        from pexen.sched.meta import func_meta

        @func_meta(provides=["db"])
        def test_db(shared):
            shared["db"] = 1

        @func_meta(requires=["db"])
        def test_uses_db(shared):
            assert shared["db"] == 2, "db is not 2"

        @func_meta()
        def test_other():
            pass
    """})
    journal = tmp_path / "j.db"
    assert run(capsys, package, "--journal", journal)[0] == 1
    status, out, _ = run(capsys, package, "--rerun-failed", journal, "-v")
    assert status == 1
    assert (f"resuming run 1 of {journal}: 1 task passed there and is carried over, "
            "1 to run") in out
    assert f"{pkg_name}/test_m/test_other" not in out.partition("resuming")[2]
    assert "FAILED  " + f"{pkg_name}/test_m/test_uses_db" in out
    # run 2 carried what passed in run 1 and was not among its tasks too
    status, out, _ = run(capsys, package, "--resume", journal, "-v")
    assert (f"  carried  {pkg_name}/test_m/test_other: passed in run 1, carried "
            "into run 2") in out.splitlines()
    assert (f"resuming run 2 of {journal}: 2 tasks passed there and are carried "
            "over, 1 to run") in out


def test_rerun_failed_with_no_failure_runs_nothing(capsys, tmp_path, pkg_name,
                                                  isolated_imports):
    package = write_package(tmp_path, pkg_name, {"test_m": """
        from pexen.sched.meta import func_meta

        @func_meta()
        def test_fine():
            pass
    """})
    journal = tmp_path / "j.db"
    assert run(capsys, package, "--journal", journal)[0] == 0
    status, out, _ = run(capsys, package, "--rerun-failed", journal)
    assert status == 0
    assert out.splitlines()[-1] == "no task failed in run 1: nothing to run again"
    assert rows(journal, "SELECT count(*) FROM runs") == [(1,)]


@pytest.fixture
def pkg_name():
    return f"jpkg{next(_names)}"


def test_slowest_first_by_the_recorded_durations(capsys, tmp_path, pkg_name,
                                                isolated_imports):
    package = write_package(tmp_path, pkg_name, {"test_m": """
        from pexen.sched.meta import func_meta

        @func_meta()
        def test_quick():
            pass

        @func_meta()
        def test_slow():
            pass

        @func_meta()
        def test_new():
            pass

        @func_meta()
        def test_medium():
            pass

        @func_meta(priority=-1)
        def test_urgent():
            pass
    """})
    journal = tmp_path / "j.db"
    clock = Clock()
    with Journal(journal) as j:  # a run that timed all but test_new
        j(clock.event("run-started"))
        for name, seconds in (("quick", 0.1), ("slow", 3.0), ("medium", 1.0),
                              ("urgent", 0.1)):
            task = named(f"{pkg_name}/test_m/test_{name}")
            j(clock.event("dispatched", task=task))
            j(clock.event("finished", seconds, task=task, res=TaskRes(task),
                          duration=seconds))
        j(clock.event("run-ended"))
    status, out, _ = run(capsys, package, "-j", "1", "--journal", journal,
                         "--order", "slowest-first")
    assert status == 0
    order = [line.split()[2].rpartition("/")[2] for line in out.splitlines()
             if line.startswith("[")]
    assert order == ["test_urgent", "test_new", "test_slow", "test_medium",
                     "test_quick"]


def test_slowest_first_needs_a_journal(capsys, isolated_imports):
    status, _, err = run(capsys, SUITE, "--order", "slowest-first")
    assert status == 2
    assert "--order slowest-first orders tasks by the durations a journal" in err


def test_two_tasks_with_one_identity_stop_the_run_before_it_starts(
    capsys, tmp_path, pkg_name, isolated_imports
):
    package = write_package(tmp_path, pkg_name, {"test_m": """
        from pexen.sched.meta import func_meta

        @func_meta(name="setup")
        def test_one():
            raise AssertionError("must not run")

        @func_meta(name="setup")
        def test_two():
            raise AssertionError("must not run")
    """})
    status, out, err = run(capsys, package, "--journal", tmp_path / "j.db")
    assert status == 2
    assert err == (
        f"pexen: error: two tasks have the identity 'setup': "
        f"'{pkg_name}/test_m/test_one' and '{pkg_name}/test_m/test_two'; a journal "
        "tells tasks apart across runs by it, so give one of them a name of its "
        "own: assign_val(task, name=...) or @func_meta(name=...)\n"
    )
    assert "must not run" not in out


@pytest.mark.parametrize("option", ["--resume", "--rerun-failed"])
def test_resuming_from_a_missing_journal_is_a_usage_error(
    capsys, tmp_path, option, isolated_imports
):
    status, _, err = run(capsys, SUITE, option, tmp_path / "none.db")
    assert status == 2
    assert "no such journal" in err
    assert not (tmp_path / "none.db").exists()


def test_a_corrupt_journal_stops_the_run_and_stays_as_it_was(
    capsys, tmp_path, isolated_imports
):
    journal = tmp_path / "j.db"
    journal.write_bytes(b"SQLite format 3\x00" + b"\xff" * 8000)
    before = hashlib.sha256(journal.read_bytes()).hexdigest()
    status, out, err = run(capsys, SUITE, "--resume", journal)
    assert status == 2
    assert err.startswith(f"pexen: error: journal {str(journal)!r}: is corrupt (")
    assert "PASSED" not in out
    assert hashlib.sha256(journal.read_bytes()).hexdigest() == before


def test_one_file_for_two_outputs_is_a_usage_error(capsys, tmp_path,
                                                  isolated_imports):
    status, _, err = run(capsys, SUITE, "--journal", tmp_path / "x",
                         "--trace", tmp_path / "x")
    assert status == 2
    assert f"--journal and --trace name one file, {str(tmp_path / 'x')!r}" in err


def test_an_unwritable_trace_is_a_usage_error(capsys, tmp_path, isolated_imports):
    (tmp_path / "file").write_text("in the way\n")
    target = tmp_path / "file" / "t.json"
    status, out, err = run(capsys, SUITE, "--trace", target)
    assert status == 2
    assert f"--trace {str(target)!r}: cannot write there" in err
    assert "PASSED" not in out


def test_the_directories_of_the_outputs_are_made(capsys, tmp_path,
                                                 isolated_imports):
    """As for --junit-xml: a CI job names files under a directory of its own."""
    out_dir = tmp_path / "out" / "run"
    status, _, err = run(capsys, SUITE, "--journal", out_dir / "j.db", "--trace",
                         out_dir / "t.json", "--log-json", out_dir / "e.jsonl")
    assert status == 1, err  # the suite has a failure
    assert sorted(p.name for p in out_dir.iterdir()) == ["e.jsonl", "j.db", "t.json"]


def test_expected_durations_are_the_last_recorded_or_the_median(tmp_path):
    from pexen.cli._journaling import expected_durations

    clock = Clock()
    a, b, c, new = named("a"), named("b"), named("c"), named("new")
    with Journal(tmp_path / "j.db") as j:
        for seconds in (1.0, 2.0):  # two runs: the last duration counts
            j(clock.event("run-started"))
            for task, factor in ((a, 1), (b, 3), (c, 10)):
                j(clock.event("dispatched", task=task))
                j(clock.event("finished", task=task, res=TaskRes(task),
                              duration=seconds * factor))
            j(clock.event("run-ended"))
        assert expected_durations([a, b, c, new], j) == {
            id(a): 2.0, id(b): 6.0, id(c): 20.0, id(new): 6.0
        }
        assert expected_durations([new], j) == {}  # nothing to guess from
    with Journal(tmp_path / "empty.db") as j:
        assert expected_durations([a], j) == {}


def test_a_resumed_run_is_recorded_where_it_resumes_from(capsys, tmp_path,
                                                         isolated_imports):
    """--journal naming another file than --resume is refused: the journal
    a run resumes from is the one that records it, carried tasks and all."""
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    run(capsys, SUITE, "--journal", first)
    status, _, err = run(capsys, SUITE, "--resume", first, "--journal", second)
    assert status == 2
    assert err == (
        f"pexen: error: --resume {str(first)!r} and --journal {str(second)!r}: a "
        "resumed run is recorded in the journal it resumes from; give --resume "
        "alone\n"
    )
    assert not second.exists()

"""``pexen history``, ``pexen report`` and ``pexen forget`` on journals whose
runs the tests set (``tests.journal._schedule``)."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3

import pytest

from pexen.cli import main
from tests.journal._schedule import SCHEDULE, record


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_history_lists_runs_and_tasks_with_flaky_ones_marked(capsys, tmp_path):
    path = tmp_path / "j.db"
    record(path, runs=2)
    flipped = [(n, w, s, e, not fails, f) for n, w, s, e, fails, f in SCHEDULE
               if n == "bad"]
    record(path, flipped, skipped=(), runs=1)
    before = digest(path)
    status, out, err = run(capsys, "history", str(path))
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"journal {path}: 3 runs"
    assert lines[2].startswith("run 1: 2023-11-1")
    assert lines[2].endswith(", 6.00s, 5 passed, 1 failed, 1 skipped "
                             "(thread pool, 2 workers)")
    assert lines[4].endswith(", 1 passed (thread pool, 2 workers)")
    tasks = {line.split()[-1] if "flaky" not in line else line.split()[-2]: line
             for line in lines if line[:1] in "PFS."}
    assert tasks["bad"].split() == ["FFP", "1.00s", "1.00s", "bad", "flaky"]
    assert tasks["migrate"].split() == ["PP.", "3.00s", "3.00s", "migrate"]
    assert tasks["report"].split() == ["SS.", "-", "-", "report"]
    assert lines[-1] == "1 flaky task: passed and failed in the last 3 runs"
    assert digest(path) == before  # reading never changes the journal


def test_report_in_the_terminal(capsys, tmp_path):
    path = tmp_path / "j.db"
    record(path)
    status, out, err = run(capsys, "report", str(path))
    assert (status, err) == (0, "")
    assert out.splitlines()[:2] == [
        out.splitlines()[0], "5 passed, 1 failed, 1 skipped"
    ]
    assert out.startswith(f"run 1 of {path}: 2023-11-1")
    assert "=== critical path: 3 tasks, 6.00s of 6.00s ===\n" \
        "   2.00s db\n" \
        "   3.00s migrate  after the one above: requires 'db'\n" \
        "   1.00s final  after the one above: requires 'm'\n" in out
    assert ("   6.00s busy 100%    3 tasks  w1\n"
            "   4.00s busy  67%    3 tasks  w2\n") in out
    assert "=== waiting for locks ===\n   1.00s    1 task  port\n" in out
    assert "FAILED bad: RuntimeError: bad broke" in out


def test_report_shows_the_ends_of_a_long_critical_path(capsys, tmp_path):
    """A chain of 20 tasks on one worker: the first and last 3 links, the 14
    between counted, and the sections after the path close by."""
    chain = [(f"t{i:02d}", "w1", i, i + 1, False,
              {"provides": [f"x{i}"], "requires": [f"x{i - 1}"] if i else []})
             for i in range(20)]
    path = tmp_path / "j.db"
    record(path, chain, skipped=(), end=20.0)
    status, out, err = run(capsys, "report", str(path))
    assert (status, err) == (0, "")
    section = out.split("=== critical path")[1].split("===\n", 1)[1]
    assert section.split("\n=== ")[0].splitlines() == [
        "   1.00s t00",
        "   1.00s t01  after the one above: requires 'x0'",
        "   1.00s t02  after the one above: requires 'x1'",
        "     ... 14 more tasks on the path (14.0s)",
        "   1.00s t17  after the last of those: requires 'x16'",
        "   1.00s t18  after the one above: requires 'x17'",
        "   1.00s t19  after the one above: requires 'x18'",
    ]
    assert "=== critical path: 20 tasks, 20.0s of 20.0s ===\n" in out


def test_report_of_a_journal_without_runs_is_a_usage_error(capsys, tmp_path):
    path = tmp_path / "j.db"
    record(path, [], skipped=())
    main(["forget", str(path)])
    status, _, err = run(capsys, "report", str(path))
    assert status == 2
    assert err == f"pexen: error: journal {str(path)!r} has no runs to report on\n"


@pytest.mark.parametrize("command", ["history", "report", "forget"])
def test_a_missing_journal_is_a_usage_error(capsys, tmp_path, command):
    path = tmp_path / "none.db"
    status, _, err = run(capsys, command, str(path))
    assert status == 2
    assert "no such journal; record one first with 'pexen run --journal" in err
    assert not path.exists()


@pytest.mark.parametrize("command", ["history", "report", "forget"])
def test_a_corrupt_journal_is_a_usage_error_and_stays_as_it_was(
    capsys, tmp_path, command
):
    path = tmp_path / "j.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    before = digest(path)
    status, _, err = run(capsys, command, str(path))
    assert status == 2
    assert err.startswith(f"pexen: error: journal {str(path)!r}: is corrupt (")
    assert digest(path) == before


def test_forget_with_k_drops_the_matching_tasks_in_every_run(capsys, tmp_path):
    path = tmp_path / "j.db"
    record(path, runs=2)
    status, out, _ = run(capsys, "forget", str(path), "-k", "migr", "-k", "b?d")
    assert status == 0
    assert out == (f"forgot 4 results of 2 tasks in {path}; a run resumed from it "
                   "runs them again\n")
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        left = {row[0] for row in conn.execute("SELECT identity FROM attempts")}
    conn.close()
    assert left == {"db", "web", "api", "final", "report"}


def test_forget_without_k_drops_every_run(capsys, tmp_path):
    path = tmp_path / "j.db"
    record(path, runs=2)
    status, out, _ = run(capsys, "forget", str(path))
    assert (status, out) == (0, f"forgot 2 runs and 14 results in {path}\n")
    status, out, _ = run(capsys, "history", str(path))
    assert out == f"journal {path}: 0 runs\n"


def test_forget_with_a_pattern_matching_nothing_says_so(capsys, tmp_path):
    path = tmp_path / "j.db"
    record(path)
    status, _, err = run(capsys, "forget", str(path), "-k", "nothing")
    assert status == 2
    assert err == (
        f"pexen: error: no task recorded in {str(path)!r} matches -k 'nothing' "
        f"(among 7 tasks); 'pexen history {path}' lists them\n"
    )


def test_history_says_a_killed_run_has_no_end_recorded(capsys, tmp_path):
    path = tmp_path / "j.db"
    record(path)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE runs SET ended = NULL")
        conn.execute("UPDATE attempts SET outcome = 'dispatched', duration = NULL "
                     "WHERE identity = 'final'")
    conn.close()
    status, out, _ = run(capsys, "history", str(path))
    assert status == 0
    assert (", no end recorded (still running, or killed), 4 passed, 1 failed, "
            "1 skipped, 1 never finished") in out
    assert [line for line in out.splitlines() if line.endswith("  final")] == [
        "?           -       -  final"
    ]


def test_history_and_report_of_a_run_with_a_retried_task(capsys, tmp_path):
    """The run line counts the attempts retried; the task's letter is its
    last attempt's; the page draws the retried attempt and does not list it
    among the tasks not run."""
    from pexen.journal import Journal
    from pexen.sched import Sched
    from pexen.sched.meta import assign_val

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first attempt")

    assign_val(flaky, name="flaky", retries=1)
    path = tmp_path / "j.db"
    with Journal(path) as journal:
        s = Sched([flaky])
        s.observe(journal)
        list(s.run())
    status, out, _ = run(capsys, "history", str(path))
    assert status == 0
    assert ", 1 passed, 1 attempt retried" in out
    [line] = [line for line in out.splitlines() if "  flaky" in line]
    assert line.startswith("P ")
    page = tmp_path / "report.html"
    assert main(["report", str(path), "--html", str(page)]) == 0
    html = page.read_text()
    assert html.count('fill="#fb8c00"') == 1  # the retried attempt's bar
    assert 'background:#fb8c00"></i>retried' in html  # and in the legend
    assert "Not run" not in html

"""The exit policy: each status defined once, the run's status worked out from it."""

from __future__ import annotations

import re
import signal

import pytest

from pexen.cli._exit import ExitStatus, exit_status_text, run_status, signalled
from pexen.cli._report import FAILED, PASSED, SKIPPED, Outcome, RunReport
from tests.cli._cli import REPO


def test_the_statuses_are_a_shells():
    assert [int(s) for s in ExitStatus] == [0, 1, 2, 130, 143]
    assert signalled(signal.SIGINT) == ExitStatus.INTERRUPTED
    assert signalled(signal.SIGTERM) == ExitStatus.TERMINATED
    assert signalled(signal.SIGHUP) == 128 + signal.SIGHUP
    assert signalled(None) == ExitStatus.INTERRUPTED  # a KeyboardInterrupt alone


@pytest.mark.parametrize(
    ("interrupted", "signum", "collect_errors", "all_passed", "expected"),
    [
        (False, None, False, True, ExitStatus.OK),
        (False, None, False, False, ExitStatus.FAILED),
        (False, None, True, True, ExitStatus.USAGE),
        (False, None, True, False, ExitStatus.USAGE),
        (True, signal.SIGTERM, True, False, ExitStatus.TERMINATED),
        (True, None, False, True, ExitStatus.INTERRUPTED),
    ],
)
def test_run_status(interrupted, signum, collect_errors, all_passed, expected):
    status = run_status(
        interrupted=interrupted,
        signum=signum,
        collect_errors=collect_errors,
        all_passed=all_passed,
    )
    assert status == expected


def test_a_run_report_exits_with_the_policys_status():
    report = RunReport()
    report.outcomes.append(Outcome(object(), "t/ok", PASSED, 0.1))
    assert report.exit_status == ExitStatus.OK
    report.outcomes.append(Outcome(object(), "t/later", SKIPPED, reason="stopped"))
    assert report.exit_status == ExitStatus.FAILED
    report.outcomes.append(Outcome(object(), "t/bad", FAILED, 0.1))
    report.interrupted, report.signal = True, signal.SIGTERM
    assert report.exit_status == ExitStatus.TERMINATED


def test_the_text_fits_a_terminal_and_names_every_status():
    text = exit_status_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    for status in ExitStatus:
        assert f"{status.value} {status.meaning}" in " ".join(text.split())


def test_the_docs_table_lists_exactly_these_statuses():
    """docs/cli.md explains each status in its own words, one row each."""
    page = (REPO / "docs" / "cli.md").read_text()
    table = page.partition("### Exit status")[2].partition("\n\n")[2]
    rows = re.findall(r"^\| (\d+) \|", table.partition("\n\n")[0], re.M)
    assert [int(code) for code in rows] == [int(s) for s in ExitStatus]

"""The command line's parts on their own: -k selection, the run clock, the display."""

from __future__ import annotations

import warnings

import pytest
from rich.console import Console

from pexen import PexenWarning
from pexen.cli import _pools, _progress, _timing
from pexen.cli._console import duration
from pexen.cli._main import build_parser
from pexen.cli._progress import LiveProgress
from pexen.cli._report import FAILED, PASSED, Outcome
from pexen.cli._run import pexen_warnings
from pexen.cli._select import matches, select
from pexen.sched import ExceptionInfo, Sched
from pexen.sched.meta import func_meta
from pexen.sched.pool import InlineWorkerPool


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("suite/test_db/test_migrate", "db", True),
        ("suite/test_db/test_migrate", "test_db/test_m", True),
        ("suite/test_db/test_migrate", "DB", False),  # case matters
        ("suite/test_db/test_migrate", "test_*", False),  # a glob matches it whole
        ("suite/test_db/test_migrate", "suite/*", True),
        ("suite/test_db/test_migrate", "*/test_[dx]b/*", True),
        ("suite/test_db/test_migrate", "*migrat?", True),
        ("suite/test_db/test_migrate", "*migrat?e", False),
        ("suite/test_db/test_migrate", "test_db", True),
    ],
)
def test_matches(name, pattern, expected):
    assert matches(name, pattern) is expected


def _chain():
    @func_meta(provides=["a"])
    def make_a():
        pass

    @func_meta(provides=["a"])
    def other_a():
        pass

    @func_meta(requires=["a"], provides=["b"])
    def make_b():
        pass

    @func_meta(requires=["b"])
    def use_b():
        pass

    def lone():
        pass

    tasks = [make_a, other_a, make_b, use_b, lone]
    return tasks, [f"t/{t.__name__}" for t in tasks]


def test_select_keeps_every_provider_transitively_in_order():
    tasks, names = _chain()
    sel = select(tasks, names, ["use_b"])
    assert sel.names == ["t/make_a", "t/other_a", "t/make_b", "t/use_b"]
    assert sel.tasks == tasks[:4]
    assert (sel.n_matched, sel.n_providers) == (1, 3)


def test_select_union_of_patterns_and_no_pattern():
    tasks, names = _chain()
    sel = select(tasks, names, ["lone", "other*"])
    assert sel.names == ["t/lone"]  # "other*" is a glob on the whole call path
    sel = select(tasks, names, ["lone", "t/other*"])
    assert sel.names == ["t/other_a", "t/lone"]
    assert select(tasks, names, []).tasks == tasks


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock_time(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(_timing.time, "monotonic", fake)
    return fake


def test_clock_charges_queued_tasks_only_from_when_a_worker_took_them(clock_time):
    a, b, c = object(), object(), object()
    clock = _timing.RunClock(lambda: 1)
    clock.resumed()  # at 100: a and b handed over (one worker, one spare)
    clock_time.now = 103.0
    # a came back; b is still queued behind it, so it starts now
    assert clock.finished(a, {b: 100.0}) == 3.0
    assert clock.started(b) == 103.0
    clock.resumed()
    clock_time.now = 104.5
    assert clock.finished(b, {c: 103.0}) == 1.5
    clock_time.now = 105.0
    assert clock.finished(c, {}) == 0.5


def test_clock_with_two_workers_and_unseen_tasks(clock_time):
    a, b = object(), object()
    clock = _timing.RunClock(lambda: 2)
    clock.resumed()
    clock_time.now = 101.0
    assert clock.finished(a, {}) == 1.0  # never seen in flight: from the resume
    clock_time.now = 101.5
    clock.resumed()
    clock_time.now = 102.0
    assert clock.finished(b, {}) == 0.5


def test_duration_format():
    assert [duration(s) for s in (None, 0.123, 12.34, 125)] == [
        "-",
        "0.12s",
        "12.3s",
        "2m05s",
    ]


def test_live_display_shows_running_and_queued_tasks():
    busy, queued = object(), object()
    console = Console(record=True, width=100, force_terminal=True)
    progress = LiveProgress(
        console,
        0,
        workers=lambda: 1,
        in_flight=lambda: {busy: 0.0, queued: 0.0},
        started=lambda task: None,
        name={busy: "suite/busy", queued: "suite/waiting"}.get,
    )
    progress.total = 5
    progress.task_done(Outcome(object(), "suite/ok", PASSED, 0.1))
    progress.task_done(Outcome(object(), "suite/ok2", PASSED, 0.1))
    console.print(progress.render())
    text = console.export_text()
    assert "2/5" in text and "2 passed" in text and "0 failed" in text
    assert "running" in text and "suite/busy" in text
    assert "queued" in text and "suite/waiting" in text


def test_live_display_prints_failures_above_it():
    console = Console(record=True, width=200, force_terminal=True)
    progress = LiveProgress(
        console,
        0,
        workers=lambda: 1,
        in_flight=dict,
        started=lambda task: None,
        name=str,
    )
    progress.total = 2
    progress.task_done(Outcome(object(), "suite/ok", PASSED, 0.1))
    try:
        raise ValueError("boom")
    except ValueError as exc:
        excinfo = ExceptionInfo(ValueError, exc, exc.__traceback__)
    progress.task_done(Outcome(object(), "suite/bad", FAILED, 0.2, excinfo=excinfo))
    text = console.export_text()
    assert "suite/ok" not in text  # passes show only with -v
    assert "[2/2] FAILED  suite/bad (0.20s): ValueError: boom" in text


def test_live_display_shows_the_elapsed_time(clock_time, monkeypatch):
    monkeypatch.setattr(_progress.time, "monotonic", clock_time)
    console = Console(record=True, width=100, force_terminal=True)
    progress = LiveProgress(
        console, 0, workers=lambda: 1, in_flight=dict, started=lambda t: None, name=str
    )
    progress.start(3)
    clock_time.now += 3725
    progress.stop(0)
    assert "1:02:05" in console.export_text()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--pool", "thread", "-j", "3", "--spare", "0"], ("ThreadWorkerPool", 3, 0)),
        (["--pool", "process", "-j", "2", "--spare", "4"], ("ProcessWorkerPool", 2, 4)),
        (["-j", "auto"], ("ThreadWorkerPool", _pools.available_cpus(), 1)),
        ([], ("ThreadWorkerPool", _pools.available_cpus(), 1)),
    ],
)
def test_pool_options_reach_the_pool(argv, expected):
    args = build_parser().parse_args(["run", "x", *argv])
    pool = _pools.make_pool(args)
    assert (type(pool).__name__, pool.workers, pool.spare) == expected


def test_the_schedulers_warnings_are_told_apart_by_category():
    """Unrun tasks are never kept (the summary lists them); unused tags only
    when the tasks were not filtered; any other PexenWarning always."""

    @func_meta(provides=["a", "unused"])
    def fails():
        warnings.warn("something else", PexenWarning, stacklevel=1)
        raise RuntimeError("boom")

    @func_meta(requires=["a"])
    def needs_a():
        pass

    for filtered, kept in (
        (False, ["something else", "tags provided but required by no task"]),
        (True, ["something else"]),
    ):
        seen: list[str] = []
        with pexen_warnings(seen, filtered=filtered):
            results = list(Sched([fails, needs_a]).run(InlineWorkerPool()))
        assert len(results) == 1
        assert sorted(text[:37] for text in seen) == kept, seen

"""The worker side: a pytest session of its own in each pool worker.

``start`` (the pool's initializer) rebuilds the controller's configuration
from its command line, in its directory, with its ``sys.path`` and
environment; on its first test the worker configures it, starts a session
and collects, as ``pytest`` itself would (pytest-xdist's workers do the
same). A ``TestTask`` runs one test through ``pytest_runtest_protocol`` and
returns what the worker recorded (serialized reports, warnings); a test that
did not pass raises ``TestNotPassed`` carrying the same, so that the
scheduler counts its tags unmet but frees its locks.

Scopes: a test is run with its parent as ``nextitem``, so only its function
scope is torn down; the class, module, package and session scopes stay up
for the next test this worker gets. Before that next test, whatever it does
not share with the last one is torn down (a failure there is reported as
the last test's teardown error, as pytest would). ``finish`` (the pool's
finalizer) tears down the rest and ends the session; the reports of any
failure there go to a file the controller reads after the run.

The worker's config carries ``workerinput``, as under pytest-xdist, so
pytest's cache, junitxml and stepwise plugins, and any plugin that checks
for it, leave the controller's files alone.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from _pytest.config import _prepareconfig
from _pytest.runner import CallInfo

from pexen.pytest_plugin._reports import Event, warning_data
from pexen.sched import TaskFailError

# pexen is imported in a worker before pytest marks its plugins for assertion
# rewriting: pytest's warning about it would be an error under
# ``filterwarnings = error``, and says nothing about the user's code
_ALREADY_IMPORTED = (
    "ignore:Module already imported so cannot be rewritten; pexen"
    ":pytest.PytestAssertRewriteWarning"
)


class WorkerSetup(NamedTuple):
    """What every worker needs to rebuild the controller's session."""

    args: list[str]  # the command line's arguments
    invocation_dir: str
    sys_path: list[str]
    environ: dict[str, str]
    workers: int
    expected: list[str]  # the node ids the controller collected, in order
    outdir: str  # where finish() leaves the reports of late teardowns
    basetemp: str  # each worker's tmp_path lives below it


class TestNotPassed(TaskFailError):
    """A test failed, was skipped or xfailed: its provides stay unmet.

    ``events`` holds what the worker recorded, for the controller to replay.
    """

    def __init__(self, events: list[Event]) -> None:
        super().__init__("the test did not pass", deps_ok=False, locks_ok=True)
        self.events = events


class CollectionMismatch(Exception):
    """The worker collected other tests than the controller did."""


class StartFailed(Exception):
    """The worker's pytest session could not start; the message says why."""


class TestTask:
    """Run the test *nodeid* in this worker's session (the pexen task)."""

    __test__ = False  # not a test class, whatever pytest's patterns say

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self.__qualname__ = nodeid  # how pexen's messages name it

    def __reduce__(self) -> tuple:
        return (TestTask, (self.nodeid,))  # the id alone; metadata stays home

    def __call__(self) -> list[Event]:
        if _session is None:
            raise StartFailed("this worker has no pytest session (not started)")
        return _session.run(self.nodeid)


_session: WorkerSession | None = None


def start(setup: WorkerSetup) -> None:
    """The pool's initializer: take the controller's place and configuration."""
    global _session
    os.chdir(setup.invocation_dir)
    sys.path[:] = setup.sys_path
    os.environ.clear()
    os.environ.update(setup.environ)
    _session = WorkerSession(setup)


def finish() -> None:
    """The pool's finalizer: tear everything down, end the session."""
    if _session is not None:
        _session.close()


class WorkerSession:
    """This worker's pytest session and the reports of the test it runs."""

    def __init__(self, setup: WorkerSetup) -> None:
        self.setup = setup
        self.config: pytest.Config | None = None
        self.session: pytest.Session | None = None
        self.nodeid2item: dict[str, pytest.Item] = {}
        self.failure: str | None = None  # why the session could not start
        self.last: pytest.Item | None = None  # the test run last, not torn down
        self.events: list[Event] = []
        self.passed = True

    # -- hooks: what the session records ---------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        assert self.config is not None  # hooks run once it is configured
        data = self.config.hook.pytest_report_to_serializable(
            config=self.config, report=report
        )
        self.events.append(Event("report", data))
        if not report.passed:
            self.passed = False

    def pytest_warning_recorded(
        self, warning_message: Any, when: str, nodeid: str, location: Any
    ) -> None:
        if when == "runtest":  # the controller has its own collection's
            self.events.append(
                Event("warning", warning_data(warning_message, when, nodeid, location))
            )

    # -- running ---------------------------------------------------------

    def run(self, nodeid: str) -> list[Event]:
        if self.session is None and self.failure is None:
            self._open()
        if self.failure is not None:
            raise StartFailed(self.failure)
        item = self.nodeid2item.get(nodeid)
        if item is None:
            raise CollectionMismatch(
                f"test {nodeid!r} was collected by the controller, not by the "
                f"worker (pid {os.getpid()})"
            )
        assert self.config is not None  # the session opened
        self.events = []
        self._teardown_before(item)  # its failure is the last test's, not this
        self.passed = True
        # the parent as the next item: only the function scope is torn down;
        # SIGINT as in a plain pytest process (a pexen worker ignores it, and
        # what a test starts would inherit that): this worker's process group
        # is its own, so a Ctrl-C at the terminal does not reach it
        ignored = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.config.hook.pytest_runtest_protocol(
                item=item, nextitem=item.parent
            )
        finally:
            signal.signal(signal.SIGINT, ignored)
        self.last = item
        events = self.events
        self.events = []
        if not self.passed:
            raise TestNotPassed(events)
        return events

    def _teardown_before(self, item: pytest.Item | None) -> None:
        """Tear down what the last test set up and *item* does not need."""
        last, session = self.last, self.session
        if last is None or session is None:
            return
        stack = list(session._setupstate.stack)
        needed = item.listchain() if item is not None else []
        if stack == needed[: len(stack)]:
            return
        capture = last.config.pluginmanager.get_plugin("capturemanager")
        with capture.item_capture("teardown", last) if capture else _nothing():
            # captured as pytest would, shown only with a failure
            call = CallInfo.from_call(
                lambda: session._setupstate.teardown_exact(item), when="teardown"
            )
        report = last.ihook.pytest_runtest_makereport(item=last, call=call)
        if report.failed:  # a passing one would be the last test's second
            self.pytest_runtest_logreport(report)

    def _open(self) -> None:
        """Configure, start the session and collect, as ``pytest`` would."""
        setup = self.setup
        try:
            config = _prepareconfig([*setup.args, "-W", _ALREADY_IMPORTED])
            option = config.option
            option.pexen = None  # the plugin is inert here
            option.maxfail = 0  # the controller counts failures, not us
            option.usepdb = False
            option.stepwise = option.stepwise_skip = False
            basetemp = Path(setup.basetemp) / f"pexen-{os.getpid()}"
            option.basetemp = str(basetemp)
            config.workerinput = {  # type: ignore[attr-defined]
                "workerid": f"pexen-{os.getpid()}",
                "workercount": setup.workers,
                "testrunuid": Path(setup.outdir).name,
                "mainargv": list(setup.args),
            }
            config.workeroutput = {}  # type: ignore[attr-defined]
            config.pluginmanager.register(self, "pexen-worker")
            self.config = config
            # the terminal reporter binds to sys.stdout now: the controller
            # reports, this session only records (devnull, for its lifetime)
            devnull = open(os.devnull, "w")  # noqa: SIM115
            config.add_cleanup(devnull.close)
            with contextlib.redirect_stdout(devnull):
                config._do_configure()
                session = pytest.Session.from_config(config)
                session.exitstatus = pytest.ExitCode.OK
                config.hook.pytest_sessionstart(session=session)
                self.session = session
                config.hook.pytest_collection(session=session)
        except BaseException as exc:  # any way pytest can refuse to start
            self.failure = (
                f"the pytest session of worker pid {os.getpid()} could not start: "
                f"{type(exc).__name__}: {exc}; the same command without --pexen "
                "shows what pytest itself makes of it"
            )
            return
        self.nodeid2item = {item.nodeid: item for item in session.items}
        ours = [item.nodeid for item in session.items]
        if set(ours) != set(setup.expected):  # the order is the controller's
            self.failure = _mismatch(setup.expected, ours)

    def close(self) -> None:
        """Tear down what is still set up; end the session and the config."""
        session, config = self.session, self.config
        if session is None or config is None:
            return
        self.events = []
        try:
            self._teardown_before(None)
            # the summary is the controller's: no pytest_terminal_summary here
            # (plugins import much for theirs: a second per worker, seen)
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                config.pluginmanager.unregister(reporter)
            config.hook.pytest_sessionfinish(session=session, exitstatus=0)
        finally:
            config._ensure_unconfigure()
        if self.events:
            path = Path(self.setup.outdir) / f"{os.getpid()}.pickle"
            path.write_bytes(pickle.dumps(self.events))


_nothing = contextlib.nullcontext


def _mismatch(expected: list[str], ours: list[str]) -> str:
    """Say how two collections differ, naming some of the differing ids."""
    theirs, mine = set(expected), set(ours)
    only_there = [nodeid for nodeid in expected if nodeid not in mine]
    only_here = [nodeid for nodeid in ours if nodeid not in theirs]
    parts = []
    for ids, where in ((only_there, "by the controller only"),
                       (only_here, f"by worker pid {os.getpid()} only")):
        if ids:
            shown = ", ".join(map(repr, ids[:5]))
            more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
            parts.append(f"collected {where}: {shown}{more}")
    return (
        "the worker collected other tests than the controller: "
        + "; ".join(parts)
        + "; pexen needs the same collection in every process: is a "
        "parametrization random, or does collection depend on the process?"
    )

"""With ``--pexen N``: the controlling session runs its tests on pexen's workers.

The session collects as usual (``-k``, ``-m``, ``--lf``, conftest hooks all
apply here), then ``pytest_runtestloop`` hands one pexen task per test to a
``Sched`` over a ``ProcessWorkerPool``: the markers' requires, provides,
claims, uses, priority and timeout become each task's metadata. As each
task finishes, the reports its worker recorded are replayed into this
session's hooks, so the terminal, ``-x``/``--maxfail``, the cache,
``--junitxml`` and the summaries see the run as they would a serial one.
Tests the scheduler did not run are reported skipped with its reason; a
test whose worker died or timed out is reported failed with the pool's
error. ``-x`` and Ctrl-C end the run at once: workers running a test are
stopped.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import pytest

from pexen.pytest_plugin import _marks, _reports, _worker
from pexen.pytest_plugin._worker import (
    CollectionMismatch,
    StartFailed,
    TestNotPassed,
    TestTask,
    WorkerSetup,
    finish,
    start,
)
from pexen.sched import Sched, TaskRes
from pexen.sched._pools.process import default_start_method
from pexen.sched.meta import assign_meta, retrieve_meta
from pexen.sched.pool import ProcessWorkerPool


class Controller:
    """Runs the session's tests on *workers* pexen worker processes."""

    def __init__(self, config: pytest.Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.exit: BaseException | None = None  # pytest.exit() in a test

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if not session.config.option.collectonly:
            _start_forkserver()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        option = session.config.option
        if session.testsfailed and not option.continue_on_collection_errors:
            return None  # pytest's own loop says so, in its words
        if session.config.option.collectonly or not session.items:
            return None
        self._run(session)
        if self.exit is not None:
            raise self.exit  # as pytest.exit() in a serial run ends the session
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        return True

    def _run(self, session: pytest.Session) -> None:
        items = session.items
        found = _marks.plan(items, self.config)
        tasks, task2item = [], {}
        for index, item in enumerate(items):
            if index in found.unmet:
                _reports.report_skipped(item, found.unmet[index])
                continue
            task = TestTask(item.nodeid)
            meta = found.metas.get(index)
            if meta is not None:
                assign_meta(task, meta)
            tasks.append(task)
            task2item[id(task)] = item
        if not tasks:
            return
        # claimers first among equals (the planner keeps the order of adding
        # for equal priorities): tests that claim a resource queue for it,
        # and the run cannot end before that queue is through; started first,
        # the queue runs while the other tests fill the other workers
        tasks.sort(key=_claims_nothing)
        _marks.check(tasks)
        outdir = tempfile.mkdtemp(prefix="pexen-pytest-")
        try:
            pool = ProcessWorkerPool(
                self.workers,
                initializer=start,
                initargs=(self._setup(session, outdir),),
                finalizer=finish,
            )
            sched = Sched(tasks)
            stopped = self._drive(session, sched, pool, task2item)
            if not stopped:
                for task, reason in sched.skipped.items():
                    _reports.report_skipped(task2item[id(task)], f"pexen: {reason}")
            # what workers reported as they were stopped (late teardowns)
            for path in sorted(Path(outdir).glob("*.pickle")):
                _reports.replay_reports(self.config, pickle.loads(path.read_bytes()))
        finally:
            shutil.rmtree(outdir, ignore_errors=True)

    def _drive(
        self, session: pytest.Session, sched: Sched, pool: ProcessWorkerPool,
        task2item: dict[int, pytest.Item],
    ) -> bool:
        """Run and replay; return whether the run was stopped early."""
        with _marks.quiet():
            results = cast(Generator[TaskRes, None, None], sched.run(pool=pool))
            try:
                for res in results:
                    item = task2item[id(res.task)]
                    problem = self._replay(item, res)
                    if problem is not None:
                        session.shouldstop = problem
                    if session.shouldfail or session.shouldstop:
                        return True
            finally:
                results.close()  # at once: -x, Ctrl-C or an error here
        return False

    def _replay(self, item: pytest.Item, res: Any) -> str | None:
        """Replay how *item* went; return why the run must stop, if it must."""
        if res.excinfo is None:
            _reports.replay(item, res.ret)
            return None
        exc = res.excinfo.val
        if isinstance(exc, TestNotPassed):
            _reports.replay(item, exc.events)
            return None
        if isinstance(exc, (StartFailed, CollectionMismatch)):
            return f"pexen: {exc}"
        if isinstance(exc, pytest.exit.Exception):
            self.exit = exc
            return str(exc)
        # the worker could not report it: it crashed, timed out, or the
        # reports could not travel
        _reports.report_failed(item, f"{type(exc).__name__}: {exc}")
        return None

    def _setup(self, session: pytest.Session, outdir: str) -> WorkerSetup:
        config = self.config
        factory = getattr(config, "_tmp_path_factory", None)
        basetemp = str(factory.getbasetemp()) if factory is not None else outdir
        return WorkerSetup(
            args=[str(arg) for arg in config.invocation_params.args],
            invocation_dir=str(config.invocation_params.dir),
            sys_path=list(sys.path),
            environ=dict(os.environ),
            workers=self.workers,
            expected=[item.nodeid for item in session.items],
            outdir=outdir,
            basetemp=basetemp,
        )


def _claims_nothing(task: TestTask) -> bool:
    meta = retrieve_meta(task)
    return meta is None or not meta.claims


def _start_forkserver() -> None:
    """Start the forkserver now, having it import pytest and the worker side.

    Called as the session starts: the server starts and imports them while
    this process collects, and each worker is forked with them imported
    instead of importing them itself (a run starts a few tenths of a second
    sooner, seen). Where workers are not forked from a forkserver, or one
    runs already (another session in this process), nothing is done.
    """
    if default_start_method() != "forkserver":
        return
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    modules = getattr(server, "_preload_modules", None)
    if getattr(server, "_forkserver_pid", None) is not None or not isinstance(
        modules, list
    ):
        return
    wanted = [_worker.__name__, "pexen.sched._pools.process.worker"]
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        [*modules, *(name for name in wanted if name not in modules)]
    )
    forkserver.ensure_running()

"""pexen's pytest plugin: tests scheduled by pexen's metadata.

Installed with pexen as the ``pytest11`` entry point ``pexen``, and inert
until a test carries ``@pytest.mark.pexen(...)``, an ini option declares a
resource fixture, or ``--pexen`` is given. See ``docs/pytest.md``.

Design
======

Two modes share one reading of the markers (``_marks``):

* Without ``--pexen`` (``_order``): pytest runs the tests in this process;
  the plugin orders them as a one-worker pexen run would and skips the
  dependents of a provider that did not pass.
* With ``--pexen N`` (``_controller``, ``_worker``, ``_reports``): this
  session collects, then each test becomes a pexen task run by a
  ``ProcessWorkerPool``. Each worker keeps a pytest session of its own, set
  up by the pool's initializer and collected on its first test, torn down by
  its finalizer, so class, module and session fixtures are set up once per
  worker while consecutive tests share them (the scheduler hands tests out
  in collection order, so they mostly do). Workers send back serialized
  reports; the controller replays them into its own hooks. One task per
  test, not per group: a lock or a dependency is per test, and a test
  waiting for a lock must not hold a worker. Ready tests start by priority,
  then those claiming a resource (a queue the run cannot end before), then
  in collection order.

What a worker rebuilds from the command line, what it reports and when it
tears scopes down is in ``_worker``'s docstring; how reports travel, in
``_reports``'s.

Nothing here is imported by ``import pexen``, and this module imports
pexen's scheduler only when a session needs it.
"""

from __future__ import annotations

import argparse
import os

import pytest

MARKER = "pexen"
MARKER_HELP = (
    f"{MARKER}(requires=(), provides=(), claims=(), uses=(), priority=0, "
    "timeout=None): how pexen schedules this test; see pexen's docs/pytest.md"
)


def _workers(value: str) -> int:
    """``--pexen`` value: a number of workers (0: off), or ``auto``."""
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected a number of workers (0 for none) or 'auto'"
        )
    return count


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pexen", "scheduling by pexen's metadata")
    group.addoption(
        "--pexen", metavar="N", type=_workers, default=None,
        help="run the tests on N pexen worker processes ('auto': one per CPU), "
        "honouring @pytest.mark.pexen locks, dependencies, priorities and timeouts",
    )
    parser.addini(
        "pexen_claims", type="linelist", default=[],
        help="fixtures that are resources: a test using one claims it exclusively",
    )
    parser.addini(
        "pexen_uses", type="linelist", default=[],
        help="fixtures that are resources: a test using one uses it shared",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    if not config.getoption("pexen") or hasattr(config, "workerinput"):
        return
    if getattr(config.option, "numprocesses", None):
        raise pytest.UsageError(
            "--pexen and -n (pytest-xdist) both run the tests in worker processes; "
            "give one of them: --pexen to honour @pytest.mark.pexen locks and "
            "dependencies, or -n for pytest-xdist"
        )
    if os.name != "posix":
        raise pytest.UsageError(
            "--pexen runs tests on pexen's process pool, which needs a POSIX "
            "system (Linux, macOS); drop --pexen here"
        )
    if config.getoption("usepdb"):
        raise pytest.UsageError(
            "--pdb needs the test in this process, --pexen runs it in a worker; "
            "drop --pexen to debug"
        )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    if hasattr(config, "workerinput"):
        return  # a worker (pexen's or pytest-xdist's): its controller decides
    workers = config.getoption("pexen")
    if workers:
        from pexen.pytest_plugin._controller import Controller

        config.pluginmanager.register(Controller(config, workers), "pexen-controller")
    else:
        config.pluginmanager.register(_Inert(), "pexen-order")


class _Inert:
    """Without ``--pexen``: look at the collection, order it only if marked."""

    @pytest.hookimpl(trylast=True)  # after -k, -m, --lf and conftest hooks
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not (config.getini("pexen_claims") or config.getini("pexen_uses")
                or any(item.get_closest_marker(MARKER) for item in items)):
            return
        from pexen.pytest_plugin._order import SerialOrder

        order = SerialOrder()
        config.pluginmanager.register(order, "pexen-serial-order")
        order.pytest_collection_modifyitems(config, items)

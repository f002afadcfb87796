"""Without ``--pexen``: marked tests run in dependency order, in this process.

pytest runs the items one after the other as usual; this plugin only puts
them in the order pexen's scheduler would hand them out with one worker
(providers before the tests that require their tags, lower ``priority``
first, otherwise the order of collection), and skips a test whose required
tag was not provided because its providers failed or were skipped, naming
them. Locks need nothing here: one test runs at a time.
"""

from __future__ import annotations

from typing import Any

import pytest

from pexen.pytest_plugin import _marks
from pexen.sched import Sched
from pexen.sched.meta import assign_meta
from pexen.sched.pool import InlineWorkerPool


class SerialOrder:
    """Orders the session's items and skips the dependents of failed providers."""

    def __init__(self) -> None:
        self.requires: dict[str, frozenset] = {}  # nodeid -> tags it requires
        self.provides: dict[str, frozenset] = {}  # nodeid -> tags it provides
        self.unmet: dict[str, str] = {}  # nodeid -> why it cannot run
        self.tag2providers: dict[Any, list[str]] = {}
        self.met: set = set()
        self.passed: dict[str, bool] = {}  # nodeid -> whether every phase passed
        self.done: set[str] = set()  # nodeids whose teardown was reported

    @pytest.hookimpl(trylast=True)  # after -k, -m, --lf and conftest hooks
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        found = _marks.plan(items, config)
        if not found.active:
            return
        for index, meta in found.metas.items():
            nodeid = items[index].nodeid
            self.requires[nodeid] = frozenset(meta.requires)
            self.provides[nodeid] = frozenset(meta.provides)
        self.tag2providers = {tag: [item.nodeid for item in providers]
                              for tag, providers in found.tag2providers.items()}
        self.unmet = {items[i].nodeid: reason for i, reason in found.unmet.items()}
        items[:] = _ordered(items, found)

    @pytest.hookimpl(tryfirst=True)  # before fixtures are set up
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        nodeid = item.nodeid
        reason = self.unmet.get(nodeid)
        if reason is None:
            missing = [tag for tag in self.requires.get(nodeid, ())
                       if tag not in self.met]
            if missing:
                reason = self._reason(sorted(missing, key=repr))
        if reason is not None:
            # shown at the test's place, as a skip marker's, not at this line
            raise pytest.skip.Exception(reason, _use_item_location=True)

    def _reason(self, missing: list) -> str:
        tags = ", ".join(map(repr, missing))
        noun = "tag" if len(missing) == 1 else "tags"
        providers = [p for tag in missing for p in self.tag2providers.get(tag, ())]
        failed = [p for p in providers if p in self.done]
        if failed and len(failed) == len(providers):
            names = ", ".join(map(repr, dict.fromkeys(failed)))
            return (f"pexen: requires {noun} {tags}, never provided because "
                    f"{names} did not pass")
        waiting = ", ".join(map(repr, dict.fromkeys(p for p in providers
                                                    if p not in self.done)))
        return (f"pexen: requires {noun} {tags}, not provided yet: {waiting} "
                "ran after it (did another plugin reorder the tests?)")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        if nodeid not in self.provides:
            return
        self.passed[nodeid] = self.passed.get(nodeid, True) and report.passed
        if report.when == "teardown":
            self.done.add(nodeid)
            if self.passed.pop(nodeid):
                self.met.update(self.provides[nodeid])


def _ordered(items: list[pytest.Item], found: _marks.Plan) -> list[pytest.Item]:
    """The items in the order a one-worker pexen run would start them."""
    slots = []
    for index, item in enumerate(items):
        if index in found.unmet:
            continue
        slot = _marks.Slot(item.nodeid)
        slot.index = index  # type: ignore[attr-defined]
        meta = found.metas.get(index)
        if meta is not None:
            assign_meta(slot, meta)
        slots.append(slot)
    _marks.check(slots)
    with _marks.quiet():
        order = [res.task.index for res in Sched(slots).run(pool=InlineWorkerPool())]
    order += sorted(found.unmet)  # skipped with the reason, at the end
    return [items[index] for index in order]

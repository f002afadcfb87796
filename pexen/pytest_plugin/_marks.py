"""What each test asks of the scheduler: its markers and resource fixtures.

``@pytest.mark.pexen(...)`` may sit on a test, its class and its module
(``pytestmark``), or be added by a conftest hook. The tag fields of all of
them add up; for ``priority`` and ``timeout`` the closest marker wins (the
test's over its class's over its module's). A fixture named in the ini
options ``pexen_claims`` / ``pexen_uses`` is a resource: every test that uses
it, directly or through other fixtures, claims (or uses) a resource of that
name. A test that both claims and uses a resource claims it.

:func:`plan` reads all that once per session and sorts the tests into those
the scheduler can order and those whose requirement no selected test
provides (deselected, say), which are skipped with that reason.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import pytest

from pexen import PexenWarning
from pexen.pytest_plugin import MARKER
from pexen.sched import DepcheckError, MutexError, Sched
from pexen.sched.meta import TAG_FIELDS, MetaError, SchedMeta

FIELDS = (*TAG_FIELDS, "priority", "timeout")


class Slot:
    """A test as the scheduler sees it: a name, metadata, nothing to run.

    :func:`plan` orders slots with a ``Sched`` and an inline pool; the
    ``--pexen`` controller runs ``worker.TestTask`` objects instead.
    """

    def __init__(self, nodeid: str) -> None:
        self.__qualname__ = nodeid  # how pexen's messages name it

    def __call__(self) -> None:
        return None


class Plan(NamedTuple):
    """The tests of a session as pexen sees them.

    ``metas`` maps an item's index to its metadata (tests without any are
    absent); ``unmet`` maps an index to the skip reason of a test whose
    requirement no selected test provides; ``tag2providers`` names, for each
    required tag, the items that provide it.
    """

    metas: dict[int, SchedMeta]
    unmet: dict[int, str]
    tag2providers: dict[Any, list[pytest.Item]]

    @property
    def active(self) -> bool:
        """Whether any test carries scheduling metadata."""
        return bool(self.metas)


def resources(config: pytest.Config) -> tuple[list[str], list[str]]:
    """The fixtures declared resources: (claimed, used)."""
    return list(config.getini("pexen_claims")), list(config.getini("pexen_uses"))


def item_meta(
    item: pytest.Item, claimed: Sequence[str], used: Sequence[str]
) -> SchedMeta | None:
    """The metadata of *item* from its markers and fixtures; None if it has none.

    Raise ``pytest.UsageError`` naming the test for a marker pexen cannot use.
    """
    tags: dict[str, set] = {field: set() for field in TAG_FIELDS}
    closest: dict[str, Any] = {}
    found = False
    for mark in item.iter_markers(MARKER):  # the closest first
        found = True
        if mark.args:
            raise pytest.UsageError(
                f"test {item.nodeid!r}: @pytest.mark.{MARKER} takes keyword "
                f"arguments only, got {mark.args!r}; write for example "
                f"@pytest.mark.{MARKER}(claims=['db'])"
            )
        for name, value in mark.kwargs.items():
            if name not in FIELDS:
                raise pytest.UsageError(
                    f"test {item.nodeid!r}: @pytest.mark.{MARKER} has no field "
                    f"{name!r}; the fields are {', '.join(FIELDS)}"
                )
            if name in tags:
                tags[name] |= _checked(item, name, value)
            else:
                closest.setdefault(name, value)
    fixtures = getattr(item, "fixturenames", ())
    if fixtures and (claimed or used):
        for name in claimed:
            if name in fixtures:
                found = True
                tags["claims"].add(name)
        for name in used:
            if name in fixtures:
                found = True
                tags["uses"].add(name)
    if not found:
        return None
    tags["uses"] -= tags["claims"]  # an exclusive lock covers the shared one
    fields: dict[str, Any] = {**tags, **closest}
    try:
        return SchedMeta(**fields)
    except MetaError as exc:
        raise pytest.UsageError(f"test {item.nodeid!r}: {exc}") from None


def _checked(item: pytest.Item, name: str, value: Any) -> set:
    try:
        return getattr(SchedMeta(**{name: value}), name)
    except MetaError as exc:
        raise pytest.UsageError(
            f"test {item.nodeid!r}: @pytest.mark.{MARKER}: {exc}"
        ) from None


def plan(items: Sequence[pytest.Item], config: pytest.Config) -> Plan:
    """Read every test's metadata; find the requirements nothing selected meets."""
    claimed, used = resources(config)
    metas: dict[int, SchedMeta] = {}
    for index, item in enumerate(items):
        meta = item_meta(item, claimed, used)
        if meta is not None:
            metas[index] = meta
    tag2providers: dict[Any, list[pytest.Item]] = {}
    for index, meta in metas.items():
        for tag in meta.provides:
            tag2providers.setdefault(tag, []).append(items[index])
    # a test whose tag no runnable test provides cannot run, nor can the
    # tests that need what it provides: drop them until nothing changes
    unmet: dict[int, str] = {}
    providers = {tag: {id(item) for item in found}
                 for tag, found in tag2providers.items()}
    changed = True
    while changed:
        changed = False
        for index, meta in metas.items():
            if index in unmet:
                continue
            missing = sorted((tag for tag in meta.requires if not providers.get(tag)),
                             key=repr)
            if missing:
                unmet[index] = _unmet_reason(missing, tag2providers)
                for tag in meta.provides:
                    providers[tag].discard(id(items[index]))
                changed = True
    return Plan(metas, unmet, tag2providers)


def _unmet_reason(missing: list, tag2providers: dict) -> str:
    tags = ", ".join(map(repr, missing))
    noun = "tag" if len(missing) == 1 else "tags"
    if any(tag in tag2providers for tag in missing):
        return (f"pexen: requires {noun} {tags}, which no test that can run "
                "provides (their providers cannot run either)")
    return (f"pexen: requires {noun} {tags}, which no selected test provides "
            "(deselected, or not collected)")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Without pexen's warnings meanwhile: the plugin reports per test.

    A tag some test provides and none requires is common and harmless, and
    the tests a run leaves unrun are reported skipped, each with its reason.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PexenWarning)
        yield


def check(tasks: list[Any]) -> None:
    """Check the graph of *tasks* as ``Sched`` would; a UsageError if unsound."""
    try:
        with quiet():
            Sched(tasks).check()
    except (DepcheckError, MutexError) as exc:
        raise pytest.UsageError(f"pexen markers: {exc}") from None

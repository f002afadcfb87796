"""Reports and warnings on their way from a worker to the controlling session.

A worker serializes each ``TestReport`` with pytest's own hook
(``pytest_report_to_serializable``) and each recorded warning as a small
dict; the controller rebuilds them (``pytest_report_from_serializable``) and
replays them into its hooks, so every plugin there sees what it would have
seen in a serial run. The controller also makes the reports of tests that
never reported themselves: skipped by the scheduler, or lost with a worker.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, NamedTuple

import pytest


class Event(NamedTuple):
    """One thing a worker recorded while it ran a test.

    ``kind`` is ``"report"`` (``data``: the serialized report) or
    ``"warning"`` (``data``: :func:`warning_data`, with ``when``, ``nodeid``
    and ``location`` as ``pytest_warning_recorded`` got them).
    """

    kind: str
    data: dict


def warning_data(
    message: warnings.WarningMessage, when: str, nodeid: str, location: Any
) -> dict:
    """A recorded warning as plain data (the warning object may not pickle)."""
    category = message.category or UserWarning
    return {
        "category": (category.__module__, category.__qualname__),
        "text": str(message.message),
        "filename": str(message.filename),
        "lineno": message.lineno,
        "when": when,
        "nodeid": nodeid,
        "location": tuple(location) if location else None,
    }


def replay_warning(config: pytest.Config, data: dict) -> None:
    """Hand a worker's warning to the controlling session's hook."""
    category = _import(*data["category"])
    if not (isinstance(category, type) and issubclass(category, Warning)):
        category = UserWarning
    try:
        message: Any = category(data["text"])
    except Exception:  # a category whose constructor wants more
        message = data["text"]
    config.hook.pytest_warning_recorded.call_historic(kwargs={
        "warning_message": warnings.WarningMessage(
            message, category, data["filename"], data["lineno"]
        ),
        "when": data["when"],
        "nodeid": data["nodeid"],
        "location": data["location"],
    })


def _import(module: str, qualname: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj


def replay(item: pytest.Item, events: list[Event]) -> None:
    """Replay one test's events as if it had run here."""
    config, ihook = item.config, item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for kind, data in events:
        if kind == "report":
            ihook.pytest_runtest_logreport(report=_rebuild(config, data))
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    for kind, data in events:
        if kind == "warning":
            replay_warning(config, data)


def replay_reports(config: pytest.Config, events: list[Event]) -> None:
    """Replay reports made apart from a test's run (a deferred teardown)."""
    for kind, data in events:
        if kind == "report":
            config.hook.pytest_runtest_logreport(report=_rebuild(config, data))


def _rebuild(config: pytest.Config, data: dict) -> pytest.TestReport:
    return config.hook.pytest_report_from_serializable(config=config, data=data)


def _keywords(item: pytest.Item) -> dict[str, Any]:
    return dict.fromkeys(item.keywords, 1)


def report_failed(item: pytest.Item, text: str) -> None:
    """Report *item* failed with *text*: it never reported itself (a crash...)."""
    keywords = _keywords(item)
    _log(item, [
        pytest.TestReport(item.nodeid, item.location, keywords, "failed", text,
                          "call", user_properties=item.user_properties),
        pytest.TestReport(item.nodeid, item.location, keywords, "passed", None,
                          "teardown"),
    ])


def report_skipped(item: pytest.Item, reason: str) -> None:
    """Report *item* skipped at setup with *reason*, as ``pytest.skip`` would."""
    path, line = item.reportinfo()[:2]
    longrepr = (str(path), (line or 0) + 1, f"Skipped: {reason}")
    keywords = _keywords(item)
    _log(item, [
        pytest.TestReport(item.nodeid, item.location, keywords, "skipped", longrepr,
                          "setup"),
        pytest.TestReport(item.nodeid, item.location, keywords, "passed", None,
                          "teardown"),
    ])


def _log(item: pytest.Item, reports: list[pytest.TestReport]) -> None:
    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in reports:
        ihook.pytest_runtest_logreport(report=report)
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

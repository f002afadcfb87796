"""Decorated tasks, plain functions and names imported from elsewhere."""

from os.path import join  # noqa: F401 - a callable defined elsewhere: not collected

from mtpkg.helpers import (  # noqa: F401 - collected in helpers only
    imported_task,
    make_test,
)
from pexen.sched.meta import func_meta


@func_meta(requires=["root"], provides=["alpha"])
def build(shared):
    shared["alpha"] = shared["root"] + 1
    return "build"


@func_meta(priority=1)
def _private_task():
    return "private"


def test_one():
    return 1


def helper():
    return "not a task"


test_generated = make_test(7)  # made by a helper elsewhere, but for this module

alias_of_build = build  # the same object under a second name: collected once


class Thing:
    """A class defined here; callable, but no task without metadata or match."""

"""Helpers imported by other modules of the package."""

from pexen.sched.meta import func_meta


@func_meta(priority=5)
def imported_task():
    return "imported"


def not_a_task():
    return "plain helper"


def make_test(value):
    """Make a test function for the module that calls this (a closure made here)."""

    def generated():
        return value

    return generated

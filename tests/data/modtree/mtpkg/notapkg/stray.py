"""Not in a package: ModTreeFactory does not reach it."""

from pexen.sched.meta import func_meta


@func_meta
def stray():
    return "stray"

"""Root of the ModTreeFactory test package."""

from mtpkg.helpers import imported_task  # noqa: F401 - defined elsewhere: not ours
from pexen.sched.meta import func_meta


@func_meta(provides=["root"])
def setup(shared):
    shared["root"] = 1
    return "setup"


def test_in_init():
    return "init"

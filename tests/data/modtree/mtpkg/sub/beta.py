"""A task that needs what ``mtpkg.alpha.build`` provides."""

from pexen.sched.meta import func_meta


@func_meta(requires=["alpha"])
def use(shared):
    return shared["alpha"] * 10


def test_two():
    return 2

"""A task's identity across runs (SPEC §10): ``SchedMeta.name``, else its call
path, else module and qualified name; two tasks of a run with one identity
are an error naming both."""

from __future__ import annotations

import functools

import pytest

from pexen.journal import JournalError, task_identity
from pexen.journal._identity import identities
from pexen.sched._naming import CALLPATH_ATTR
from pexen.sched.meta import MetaError, SchedMeta, assign_val, func_meta


def build():
    pass


class Deploy:
    def __call__(self):
        pass

    def step(self):
        pass


def test_module_and_qualified_name_by_default():
    assert task_identity(build) == f"{__name__}:build"
    assert task_identity(Deploy()) == f"{__name__}:Deploy"
    assert task_identity(Deploy().step) == f"{__name__}:Deploy.step"
    assert task_identity(functools.partial(build)) == f"partial({__name__}:build)"


def test_call_path_where_a_factory_gave_one():
    def fn():
        pass

    setattr(fn, CALLPATH_ATTR, ("suite", "test_db", "test_migrate"))
    assert task_identity(fn) == "suite/test_db/test_migrate"


def test_an_explicit_name_wins():
    @func_meta(name="migrate the db")
    def fn():
        pass

    setattr(fn, CALLPATH_ATTR, ("suite", "fn"))
    assert task_identity(fn) == "migrate the db"


@pytest.mark.parametrize("bad", ["", "  ", 3, b"x"])
def test_a_name_must_be_a_non_empty_string(bad):
    with pytest.raises(MetaError, match=r"name=.*non-empty string"):
        SchedMeta(name=bad)
    with pytest.raises(MetaError, match=r"task 'build'.*name="):
        assign_val(build, name=bad)


def test_two_tasks_with_one_identity_are_named_both():
    def first():
        pass

    def second():
        pass

    assign_val(first, name="same")
    assign_val(second, name="same")
    with pytest.raises(JournalError, match=(
        r"two tasks have the identity 'same': '.*first' and '.*second'.*"
        r"assign_val\(task, name=\.\.\.\)"
    )):
        identities([first, second])


def test_lambdas_of_one_module_clash_until_named():
    tasks = [lambda: 1, lambda: 2]
    with pytest.raises(JournalError, match=r"identity '.*:.*<lambda>'"):
        identities(tasks)
    assign_val(tasks[1], name="second")
    assert set(identities(tasks)) == {f"{__name__}:test_lambdas_of_one_module_clash"
                                      "_until_named.<locals>.<lambda>", "second"}


def test_one_bound_method_twice_is_one_task():
    obj = Deploy()
    assert list(identities([obj.step, obj.step])) == [f"{__name__}:Deploy.step"]

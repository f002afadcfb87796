"""BaseFactory: call paths, sorting, reuse, sub-factories and collection errors."""

from __future__ import annotations

import functools

import pytest

import pexen.factory
from pexen import PexenError, PexenWarning
from pexen.factory import BaseFactory, CollectionError, get_callpath
from pexen.sched._naming import CALLPATH_ATTR, task_name


def test_exports():
    assert sorted(pexen.factory.__all__) == [
        "BaseFactory",
        "CollectionError",
        "FilesystemFactory",
        "HeaderError",
        "ModTreeFactory",
        "ModuleFactory",
        "get_callpath",
    ]
    for name in pexen.factory.__all__:
        assert getattr(pexen.factory, name).__module__.startswith("pexen.factory")
    assert issubclass(CollectionError, PexenError)
    assert issubclass(pexen.factory.HeaderError, PexenError)
    assert issubclass(pexen.factory.HeaderError, ValueError)


def test_get_callpath_of_a_plain_task_is_empty():
    def plain():
        pass

    assert get_callpath(plain) == ()
    assert get_callpath(lambda: None) == ()
    assert get_callpath(42) == ()


class Named(BaseFactory):
    """A factory making one task per (path, name) pair, in the order given."""

    def collect(self, pairs):
        for path, name in pairs:
            for part in path:
                self.callpath_push(part)

            def task(name=name):
                return name

            yield self.callpath_burn(task, name)
            for _ in path:
                self.callpath_pop()


def test_callpath_burn_records_a_tuple_read_by_get_callpath_and_task_name():
    factory = Named()
    (task,) = factory([(("grp", "sub"), "job")])
    assert get_callpath(task) == ("grp", "sub", "job")
    assert getattr(task, CALLPATH_ATTR) == ("grp", "sub", "job")
    assert task_name(task) == "grp/sub/job"


def test_tasks_come_sorted_by_callpath_whatever_the_collection_order():
    pairs = [(("b",), "x"), ((), "z"), (("a", "c"), "y"), (("a",), "y")]
    paths = [get_callpath(task) for task in Named()(pairs)]
    assert paths == [("a", "c", "y"), ("a", "y"), ("b", "x"), ("z",)]


def test_a_factory_is_reusable_and_its_prefix_is_restored():
    factory = Named()
    factory.callpath_push("top")
    first = [get_callpath(t) for t in factory([(("g",), "one"), ((), "two")])]
    second = [get_callpath(t) for t in factory([(("g",), "one"), ((), "two")])]
    assert first == second == [("top", "g", "one"), ("top", "two")]
    assert factory.callpath == ["top"]


def test_the_prefix_is_restored_when_collect_raises():
    class Failing(BaseFactory):
        def collect(self):
            self.callpath_push("half-way")
            yield functools.partial(print)
            raise OSError("disk gone")

    factory = Failing()
    with pytest.raises(OSError, match="disk gone"):
        factory()
    assert factory.callpath == []


def test_a_task_yielded_twice_comes_once():
    def task():
        pass

    class Twice(BaseFactory):
        def collect(self):
            yield self.callpath_burn(task, "t")
            yield task

    assert list(Twice()()) == [task]


def test_push_pop_and_transfer():
    parent, child = BaseFactory(), BaseFactory()
    parent.callpath_push("a")
    parent.callpath_push("b")
    parent.callpath_transfer(child)
    assert child.callpath == ["a", "b"]
    child.callpath_push("c")
    assert parent.callpath == ["a", "b"], "a transfer copies, it does not share"
    assert parent.callpath_pop() == "b"
    assert parent.callpath == ["a"]
    parent.callpath_pop()
    with pytest.raises(IndexError, match="without a matching callpath_push"):
        parent.callpath_pop()


@pytest.mark.parametrize("bad", ["", "a/b", None, 3])
def test_a_callpath_part_must_be_a_plain_string(bad):
    factory = BaseFactory()
    with pytest.raises(ValueError, match=r"call path part .*joined with '/'"):
        factory.callpath_push(bad)
    with pytest.raises(ValueError, match=r"call path part"):
        factory.callpath_burn(lambda: None, bad)


def test_callpath_burn_on_an_object_without_attributes():
    with pytest.raises(TypeError, match="does not accept attributes"):
        BaseFactory().callpath_burn(len, "len")


def test_base_factory_itself_has_nothing_to_collect():
    with pytest.raises(NotImplementedError, match="must implement collect"):
        BaseFactory()()


class Grouping(BaseFactory):
    """Runs a sub-factory per group, under a path level named after the group."""

    def collect(self, groups):
        for group, pairs in groups.items():
            self.callpath_push(group)
            yield from self.collect_from(Recording(), pairs)
            self.callpath_pop()


class Recording(Named):
    """Like Named, but a name starting with '!' is recorded as an error."""

    def collect(self, pairs):
        for path, name in pairs:
            if name.startswith("!"):
                self.record_error(f"{name[1:]}.json", ValueError("bad entry"), name[1:])
            else:
                yield from super().collect([(path, name)])


def test_sub_factories_group_tasks_and_hand_their_errors_up():
    factory = Grouping()
    groups = {"g2": [((), "x"), ((), "!broken")], "g1": [(("s",), "y")]}
    with pytest.warns(PexenWarning, match=r"^Grouping: 1 item could not be collected"):
        tasks = list(factory(groups))
    assert [get_callpath(t) for t in tasks] == [("g1", "s", "y"), ("g2", "x")]
    (error,) = factory.errors
    assert isinstance(error, CollectionError)
    assert error.path == "broken.json"
    assert error.callpath == ("g2", "broken")
    assert isinstance(error.exc, ValueError)
    assert "ValueError: bad entry" in error.traceback
    assert str(error) == "cannot collect broken.json: ValueError: bad entry"


def test_errors_are_reset_at_each_call():
    factory = Recording()
    with pytest.warns(PexenWarning, match="2 items could not be collected"):
        factory([((), "!a"), ((), "!b")])
    assert len(factory.errors) == 2
    list(factory([((), "fine")]))
    assert factory.errors == []


def test_a_collection_error_pickles():
    import pickle

    try:
        raise KeyError("k")
    except KeyError as exc:
        error = CollectionError("f.py", exc, ("f",))
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.callpath, copy.traceback, str(copy)) == (
        error.path, error.callpath, error.traceback, str(error))
    assert isinstance(copy.exc, KeyError)

"""Graph checks made before any task starts (SPEC §4): tags, cycles, mutexes."""

from __future__ import annotations

import pickle
import re
import warnings

import pytest

from pexen import PexenWarning, sched
from pexen.sched import DepcheckError, MutexError
from pexen.sched.meta import assign_val


def task(name, log=None, **fields):
    """A fresh task called *name* (also its qualified name) with metadata."""

    def fn():
        if log is not None:
            log.append(name)
        return name

    fn.__name__ = fn.__qualname__ = name
    if fields:
        assign_val(fn, **fields)
    return fn


# -- missing tags -----------------------------------------------------------


def test_missing_tag_names_tag_and_task():
    log = []
    a = task("a", log, requires=["ghost"])
    b = task("b", log)
    s = sched.Sched([b, a])
    message = r"^no task provides tag 'ghost', required by 'a'$"
    with pytest.raises(DepcheckError, match=message) as info:
        s.run(pool=sched.pool.InlineWorkerPool())
    assert info.value.missing == {"ghost": [a]}
    assert info.value.cycle == []
    assert log == []


def test_missing_tags_all_named():
    a = task("a", requires=["x", "y"])
    b = task("b", requires=["x"])
    c = task("c", requires=["z"], provides=["q"])
    d = task("d", requires=["q"])
    with pytest.raises(DepcheckError) as info:
        sched.Sched([a, b, c, d]).check()
    message = str(info.value)
    assert "tag 'x', required by 'a', 'b'" in message
    assert "tag 'y', required by 'a'" in message
    assert "tag 'z', required by 'c'" in message
    assert "'q'" not in message
    assert info.value.missing == {"x": [a, b], "y": [a], "z": [c]}


def test_missing_tag_many_waiters_abbreviated():
    tasks = [task(f"t{i}", requires=["x"]) for i in range(8)]
    with pytest.raises(DepcheckError,
                       match=r"required by 't0', 't1', 't2', 't3', 't4', and 3 more"):
        sched.Sched(tasks).check()


def test_non_string_tags_shown_with_repr():
    a = task("a", requires=[("build", 3)])
    with pytest.raises(DepcheckError, match=re.escape("tag ('build', 3), required")):
        sched.Sched([a]).check()


def needs_x():
    pass


def provides_own_requirement():
    pass


def test_depcheck_error_is_a_value_error_and_pickles():
    assign_val(needs_x, requires=["x"])
    with pytest.raises(ValueError, match="no task provides") as info:
        sched.Sched([needs_x]).check()
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is DepcheckError
    assert str(copy) == str(info.value)
    assert copy.missing == {"x": [needs_x]}


# -- cycles -------------------------------------------------------------------


def test_two_task_cycle():
    a = task("a", requires=["from_b"], provides=["from_a"])
    b = task("b", requires=["from_a"], provides=["from_b"])
    with pytest.raises(DepcheckError, match=r"^requirement cycle: a -> b -> a ") as inf:
        sched.Sched([a, b]).run()
    assert inf.value.cycle == [a, b, a]
    assert "'a' requires 'from_b'" in str(inf.value)
    assert "'b' requires 'from_a'" in str(inf.value)


def test_self_cycle():
    a = task("a", requires=["x"], provides=["x"])
    with pytest.raises(DepcheckError, match=r"requirement cycle: a -> a "):
        sched.Sched([a]).check()


def test_three_task_cycle_reached_from_outside():
    a = task("a", requires=["c"], provides=["a"])
    b = task("b", requires=["a"], provides=["b"])
    c = task("c", requires=["b"], provides=["c"])
    outside = task("outside", requires=["a"])
    root = task("root", provides=["r"])
    after_root = task("after_root", requires=["r"])
    with pytest.raises(DepcheckError) as info:
        sched.Sched([outside, root, after_root, a, b, c]).check()
    cycle = info.value.cycle
    assert len(cycle) == 4
    assert cycle[0] is cycle[-1]
    assert set(cycle) == {a, b, c}
    names = [fn.__name__ for fn in cycle]
    assert f"requirement cycle: {' -> '.join(names)} (" in str(info.value)
    # "x -> y": x waits for a tag y provides; a rotation of a -> c -> b -> a
    assert " -> ".join(names) in {"a -> c -> b -> a", "c -> b -> a -> c",
                                  "b -> a -> c -> b"}


def test_alternative_provider_breaks_the_cycle():
    """Any provider will do: a cycle with a way in from outside is fine."""
    log = []
    a = task("a", log, requires=["x"], provides=["y"])
    b = task("b", log, requires=["y"], provides=["x"])
    c = task("c", log, provides=["x"])
    s = sched.Sched([a, b, c])
    s.check()
    assert [r.task for r in s.run(pool=sched.pool.InlineWorkerPool())] == [c, a, b]
    assert log == ["c", "a", "b"]


def test_a_long_cycle_is_shown_in_part_and_kept_whole():
    n = 10_000
    tasks = [task(f"t{i}", requires=[f"x{i}"], provides=[f"x{(i + 1) % n}"])
             for i in range(n)]
    with pytest.raises(DepcheckError) as info:
        sched.Sched(tasks).check()
    cycle = info.value.cycle
    assert len(cycle) == n + 1 and cycle[0] is cycle[-1]
    assert set(cycle) == set(tasks)
    names = [fn.__name__ for fn in cycle]
    steps = [f"'{names[i]}' requires 'x{names[i][1:]}'" for i in range(n)]
    assert str(info.value) == (
        f"requirement cycle: {' -> '.join(names[:4])} -> ... -> "
        f"{' -> '.join(names[-3:])} (10,000 tasks in the cycle, all in "
        f"DepcheckError.cycle; {'; '.join(steps[:4])}; ...; {'; '.join(steps[-2:])}, "
        "provided only by the next task or by tasks waiting on the cycle)"
    )


def test_a_cycle_of_six_is_shown_whole():
    tasks = [task(f"t{i}", requires=[f"x{i}"], provides=[f"x{(i + 1) % 6}"])
             for i in range(6)]
    with pytest.raises(DepcheckError) as info:
        sched.Sched(tasks).check()
    names = [fn.__name__ for fn in info.value.cycle]
    assert str(info.value).startswith(f"requirement cycle: {' -> '.join(names)} ('")
    assert "..." not in str(info.value)


def test_many_missing_tags_are_listed_in_part():
    tasks = [task(f"t{i}", requires=[f"x{i:05}"]) for i in range(10_000)]
    with pytest.raises(DepcheckError) as info:
        sched.Sched(tasks).check()
    listed = "; ".join(f"tag 'x{i:05}', required by 't{i}'" for i in range(10))
    assert str(info.value) == (
        f"no task provides {listed}; and 9,990 more tags (10,000 in all, in "
        "DepcheckError.missing)"
    )
    assert len(info.value.missing) == 10_000


def test_cycle_checked_after_missing_tags():
    a = task("a", requires=["x", "missing"], provides=["y"])
    b = task("b", requires=["y"], provides=["x"])
    with pytest.raises(DepcheckError, match="no task provides tag 'missing'"):
        sched.Sched([a, b]).check()


def test_cycle_error_pickles():
    task = provides_own_requirement
    assign_val(task, requires=["x"], provides=["x"])
    with pytest.raises(DepcheckError) as info:
        sched.Sched([task]).check()
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value)
    assert copy.cycle == [task, task]


# -- mutexes -------------------------------------------------------------------


def test_claims_and_uses_same_resource():
    log = []
    ok = task("ok", log, claims=["db"])
    bad = task("bad", log, claims=["db", "net"], uses=["net", "disk"])
    s = sched.Sched([ok, bad])
    with pytest.raises(MutexError, match=r"^task 'bad' both claims and uses 'net'; "):
        s.run(pool=sched.pool.InlineWorkerPool())
    with pytest.raises(MutexError, match="'bad' both claims and uses 'net'"):
        s.check()
    assert log == []


def test_mutex_error_lists_every_shared_resource():
    bad = task("bad", claims=["r1", "r2", "r3"], uses=["r2", "r1"])
    with pytest.raises(MutexError, match=r"both claims and uses 'r1', 'r2';"):
        sched.Sched([bad]).check()
    assert issubclass(MutexError, ValueError)


def test_claims_and_uses_across_tasks_is_fine():
    a = task("a", claims=["db"])
    b = task("b", uses=["db"])
    sched.Sched([a, b]).check()


# -- tags nobody requires --------------------------------------------------------


def test_unrequired_tag_warns_at_run():
    log = []
    a = task("a", log, provides=["lonely", "used"])
    b = task("b", log, requires=["used"])
    s = sched.Sched([a, b])
    message = r"^tags provided but required by no task: 'lonely' by 'a'$"
    with pytest.warns(PexenWarning, match=message):
        results = list(s.run(pool=sched.pool.InlineWorkerPool()))
    # only a warning: the run goes on
    assert [r.task for r in results] == [a, b]
    assert log == ["a", "b"]


def test_unrequired_tag_warns_at_check():
    a = task("a", provides=["t1"])
    b = task("b", provides=["t1", "t2"])
    with pytest.warns(sched.UnusedTagWarning, match=r"'t1' by 'a', 'b'; 't2' by 'b'"):
        sched.Sched([a, b]).check()


def test_many_unrequired_tags_abbreviated():
    a = task("a", provides=[f"t{i:02}" for i in range(13)])
    with pytest.warns(PexenWarning, match=r"'t09' by 'a' and 3 more$"):
        sched.Sched([a]).check()


def test_warning_points_at_the_caller():
    a = task("a", provides=["lonely"])
    s = sched.Sched([a])
    with pytest.warns(PexenWarning) as record:
        s.check()
    with pytest.warns(PexenWarning) as record_run:
        s.run(pool=sched.pool.InlineWorkerPool()).close()
    assert [w.filename for w in [*record, *record_run]] == [__file__, __file__]


def test_no_warning_when_every_tag_is_required():
    a = task("a", provides=["x"])
    b = task("b", requires=["x"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.Sched([a, b]).check()


# -- check() ------------------------------------------------------------------------


def test_check_runs_nothing_on_a_sound_graph():
    log = []
    tasks = [task("a", log, provides=["x"]), task("b", log, requires=["x"]),
             task("c", log, claims=["r"]), task("d", log, uses=["r"])]
    s = sched.Sched(tasks)
    assert s.check() is None
    assert log == []
    assert [r.ret for r in s.run(pool=sched.pool.InlineWorkerPool())] == [
        "a", "b", "c", "d"]


def test_check_sees_tasks_added_later():
    s = sched.Sched([task("a", provides=["x"]), task("b", requires=["x"])])
    s.check()
    s.add_tasks([task("c", requires=["nope"])])
    with pytest.raises(DepcheckError, match="'nope', required by 'c'"):
        s.check()


def test_empty_sched_checks_and_runs():
    s = sched.Sched()
    s.check()
    assert list(s.run(pool=sched.pool.InlineWorkerPool())) == []
    assert s.skipped == {}

"""The planner driven by hand, without threads (STYLE §16).

``pop_ready()`` hands out the next dispatchable task and ``complete()`` reports
how one ended; the tests compare what is handed out with ``==``.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pexen.sched import TaskFailError
from pexen.sched._planner import PARKED, READY, Planner
from pexen.sched._result import ExceptionInfo
from pexen.sched.meta import assign_val


def task(name, **fields):
    """A fresh task called *name*, with metadata *fields*."""

    def fn():
        return name

    fn.__name__ = fn.__qualname__ = name
    if fields:
        assign_val(fn, **fields)
    return fn


def excinfo(exc):
    """An ``ExceptionInfo`` as a pool reports it for *exc*."""
    try:
        raise exc
    except BaseException:
        return ExceptionInfo(*sys.exc_info())


class Driver:
    """A planner plus name-based helpers: ``pop()``, ``drain()``, ``done()``."""

    def __init__(self, tasks, presets=None):
        self.planner = Planner(tasks, presets or {})
        self.by_name = {info.task.__name__: info for info in self.planner.infos}
        self.running = {}

    def pop(self):
        """Name of the next task handed out, or None."""
        info = self.planner.pop_ready()
        if info is None:
            return None
        name = info.task.__name__
        self.running[name] = info
        return name

    def drain(self):
        """Names of every task that can be handed out now."""
        names = []
        while (name := self.pop()) is not None:
            names.append(name)
        return names

    def shared(self, name):
        return self.planner.shared_for(self.by_name[name])

    def done(self, name, shared=None, exc=None):
        info = self.running.pop(name)
        self.planner.complete(info, shared or {}, None if exc is None else excinfo(exc))

    def run_serially(self):
        """Pop and complete one task at a time; return the order."""
        order = []
        while (name := self.pop()) is not None:
            order.append(name)
            self.done(name)
        return order

    def skipped(self, stopped=False):
        skips = self.planner.skips(stopped=stopped)
        return {skip.task.__name__: skip.reason for skip in skips}


# -- order ------------------------------------------------------------------------


def test_insertion_order_without_priorities():
    d = Driver([task(n) for n in "dcab"])
    assert d.drain() == ["d", "c", "a", "b"]
    assert d.pop() is None


def test_priority_lower_first_ties_in_insertion_order():
    d = Driver([task("a", priority=2), task("b"), task("c", priority=1),
                task("d"), task("e", priority=-1), task("f", priority=1)])
    assert d.drain() == ["e", "b", "d", "c", "f", "a"]


def test_any_sortable_priority():
    d = Driver([task("a", priority=(1, "z")), task("b", priority=(0, "z")),
                task("c", priority=(1, "a"))])
    assert d.drain() == ["b", "c", "a"]


def test_ready_later_competes_by_priority():
    d = Driver([
        task("root", provides=["x"]),
        task("late", priority=5),
        task("urgent", requires=["x"], priority=1),
        task("lazy", requires=["x"], priority=9),
        task("later", priority=5),
    ])
    assert d.pop() == "root"
    d.done("root")
    assert d.drain() == ["urgent", "late", "later", "lazy"]


def test_ready_later_keeps_insertion_order_on_ties():
    d = Driver([task("root", provides=["x"]), task("waiter", requires=["x"]),
                task("t2"), task("t3")])
    assert d.pop() == "root"
    assert d.pop() == "t2"
    d.done("root")
    # waiter was added before t3: it goes first
    assert d.drain() == ["waiter", "t3"]


def test_nothing_ready_until_completion():
    d = Driver([task("a", provides=["x"]), task("b", requires=["x"])])
    assert d.drain() == ["a"]
    assert d.pop() is None
    d.done("a")
    assert d.drain() == ["b"]


def test_waits_for_every_required_tag():
    d = Driver([task("p1", provides=["x"]), task("p2", provides=["y"]),
                task("w", requires=["x", "y"])])
    assert d.drain() == ["p1", "p2"]
    d.done("p2")
    assert d.pop() is None
    d.done("p1")
    assert d.drain() == ["w"]


def test_first_provider_wins_and_waiter_is_handed_out_once():
    d = Driver([task("p1", provides=["x"]), task("p2", provides=["x"]),
                task("w", requires=["x"])])
    assert d.drain() == ["p1", "p2"]
    d.done("p2")
    assert d.drain() == ["w"]
    d.done("p1")
    assert d.drain() == []


def test_one_provider_many_tags_many_waiters():
    d = Driver([task("p", provides=["x", "y", "z"]), task("wx", requires=["x"]),
                task("wxy", requires=["x", "y"]), task("wz", requires=["z"]),
                task("other", requires=["q"]), task("q", provides=["q"])])
    assert d.drain() == ["p", "q"]
    d.done("p")
    assert d.drain() == ["wx", "wxy", "wz"]
    d.done("q")
    assert d.drain() == ["other"]


def test_serial_run_of_a_dag():
    d = Driver([
        task("link", requires=["objs"], provides=["bin"]),
        task("compile", requires=["src"], provides=["objs"]),
        task("fetch", provides=["src"]),
        task("test", requires=["bin"]),
        task("docs", requires=["src"], priority=1),
    ])
    assert d.run_serially() == ["fetch", "compile", "link", "test", "docs"]
    assert d.skipped() == {}


# -- locks ----------------------------------------------------------------------


def test_claims_are_exclusive():
    d = Driver([task("a", claims=["db"]), task("b", claims=["db"]), task("c")])
    assert d.drain() == ["a", "c"]
    d.done("a")
    assert d.drain() == ["b"]


def test_uses_are_shared_claims_wait_for_all_users():
    d = Driver([task("u1", uses=["db"]), task("u2", uses=["db"]),
                task("w", claims=["db"])])
    assert d.drain() == ["u1", "u2"]
    d.done("u1")
    assert d.pop() is None
    d.done("u2")
    assert d.drain() == ["w"]


def test_users_wait_for_the_claimer():
    d = Driver([task("w", claims=["db"]), task("u1", uses=["db"]),
                task("u2", uses=["db"])])
    assert d.drain() == ["w"]
    d.done("w")
    assert d.drain() == ["u1", "u2"]


def test_parked_task_keeps_its_place():
    d = Driver([task("a", claims=["r"]), task("b", claims=["r"]), task("c"),
                task("d")])
    assert d.pop() == "a"
    # b is parked on r: c goes by it
    assert d.pop() == "c"
    d.done("a")
    assert d.drain() == ["b", "d"]


def test_parked_task_keeps_its_priority():
    d = Driver([task("holder", claims=["r"], priority=-5), task("low", priority=9),
                task("high", claims=["r"], priority=-1)])
    assert d.pop() == "holder"
    assert d.pop() == "low"
    d.done("holder")
    assert d.drain() == ["high"]


def test_locks_are_all_or_nothing():
    d = Driver([task("has_r2", claims=["r2"]), task("both", claims=["r1", "r2"]),
                task("wants_r1", claims=["r1"])])
    # "both" cannot get r2, so it must not hold r1 either
    assert d.drain() == ["has_r2", "wants_r1"]
    d.done("has_r2")
    assert d.pop() is None
    d.done("wants_r1")
    assert d.drain() == ["both"]


def test_claim_and_use_of_different_resources():
    d = Driver([task("a", claims=["r1"], uses=["r2"]), task("b", uses=["r2"]),
                task("c", uses=["r1"]), task("e", claims=["r2"])])
    assert d.drain() == ["a", "b"]
    d.done("a")
    assert d.drain() == ["c"]
    d.done("b")
    assert d.drain() == ["e"]


def test_lock_and_requirement_together():
    d = Driver([task("p", provides=["x"], claims=["r"]),
                task("w", requires=["x"], claims=["r"])])
    assert d.drain() == ["p"]
    d.done("p")
    assert d.drain() == ["w"]


def test_a_woken_task_that_cannot_run_passes_its_turn():
    # r1 frees: "first" is next in line but still lacks r2, so "second" runs
    d = Driver([task("holds_r1", claims=["r1"]), task("holds_r2", claims=["r2"]),
                task("first", claims=["r1", "r2"], priority=0),
                task("second", claims=["r1"], priority=1)])
    assert d.drain() == ["holds_r1", "holds_r2"]
    d.done("holds_r1")
    assert d.drain() == ["second"]
    d.done("holds_r2")
    assert d.pop() is None
    d.done("second")
    assert d.drain() == ["first"]


def test_waiting_users_all_wake_when_a_claim_ends():
    d = Driver([task("owner", claims=["r"]), task("u1", uses=["r"]),
                task("c", claims=["r"], priority=1), task("u2", uses=["r"])])
    assert d.drain() == ["owner"]
    d.done("owner")
    assert d.drain() == ["u1", "u2"]
    d.done("u1")
    assert d.pop() is None
    d.done("u2")
    assert d.drain() == ["c"]


def test_a_queue_on_one_resource_parks_each_task_once():
    # the queue must not be re-sorted on every release: n tasks, n - 1 parks
    n = 300
    d = Driver([task(f"t{i}", claims=["db"]) for i in range(n)])
    parks = 0
    park = d.planner._park

    def counting_park(*args):
        nonlocal parks
        parks += 1
        return park(*args)

    d.planner._park = counting_park
    order = []
    while names := d.drain():  # all wait at once: one at a time gets the lock
        assert len(names) == 1
        order += names
        d.done(names[0])
    assert order == [f"t{i}" for i in range(n)]
    assert parks == n - 1


# -- failures ------------------------------------------------------------------------


def test_failure_keeps_tags_unmet_and_locks_held():
    d = Driver([task("bad", provides=["x"], claims=["r"]),
                task("dep", requires=["x"]), task("rival", claims=["r"]),
                task("user", uses=["r"]), task("free")])
    assert d.drain() == ["bad", "free"]
    d.done("free")
    d.done("bad", exc=RuntimeError("boom"))
    assert d.drain() == []
    assert d.skipped() == {
        "dep": "requires tag 'x', never provided because 'bad' failed",
        "rival": "waits for lock 'r', held because 'bad' failed",
        "user": "waits for lock 'r', held because 'bad' failed",
    }


def test_failure_cascades_to_the_whole_subtree():
    d = Driver([task("root", provides=["a"]), task("mid", requires=["a"],
                provides=["b"]), task("leaf", requires=["b"], claims=["r"]),
                task("peer", claims=["r"]), task("aside")])
    assert d.pop() == "root"
    d.done("root", exc=ValueError())
    assert d.run_serially() == ["peer", "aside"]
    assert d.skipped() == {
        "mid": "requires tag 'a', never provided because 'root' failed",
        "leaf": "requires tag 'b', never provided because 'root' failed",
    }


def test_skip_reason_names_every_tag_and_root():
    d = Driver([task("f1", provides=["x"]), task("f2", provides=["y"]),
                task("ok", provides=["z"]),
                task("w", requires=["x", "y", "z"])])
    assert d.drain() == ["f1", "f2", "ok"]
    d.done("f2", exc=RuntimeError())
    d.done("ok")
    d.done("f1", exc=RuntimeError())
    assert d.skipped() == {
        "w": "requires tags 'x', 'y', never provided because 'f1', 'f2' failed",
    }


def test_parked_behind_kept_lock_blocks_its_dependents():
    d = Driver([task("bad", claims=["r"]), task("parked", claims=["r"],
                provides=["x"]), task("dep", requires=["x"])])
    assert d.drain() == ["bad"]
    d.done("bad", exc=OSError())
    assert d.drain() == []
    assert d.skipped() == {
        "parked": "waits for lock 'r', held because 'bad' failed",
        "dep": "requires tag 'x', never provided because 'bad' failed",
    }


def test_second_provider_after_a_failed_one():
    d = Driver([task("bad", provides=["x"]), task("good", provides=["x"]),
                task("w", requires=["x"])])
    assert d.drain() == ["bad", "good"]
    d.done("bad", exc=RuntimeError())
    assert d.pop() is None
    d.done("good")
    assert d.drain() == ["w"]
    d.done("w")
    assert d.skipped() == {}


def test_skip_reason_with_a_cycle_of_alternative_providers():
    """b and a each provide what the other needs; the way in failed."""
    d = Driver([task("way_in", provides=["x"]),
                task("a", requires=["x"], provides=["y"]),
                task("b", requires=["y"], provides=["x"]),
                task("c", requires=["x", "y"])])
    assert d.pop() == "way_in"
    d.done("way_in", exc=RuntimeError())
    assert d.drain() == []
    assert d.skipped() == {
        "a": "requires tag 'x', never provided because 'way_in' failed",
        "b": "requires tag 'y', never provided because 'way_in' failed",
        "c": "requires tags 'x', 'y', never provided because 'way_in' failed",
    }


def test_skip_reason_with_two_cycles_and_two_roots():
    d = Driver([task("in1", provides=["x"]), task("in2", provides=["z"]),
                task("a", requires=["x"], provides=["y"]),
                task("b", requires=["y", "z"], provides=["x"]),
                task("c", requires=["z"], provides=["w"]),
                task("d", requires=["w"], provides=["z"]),
                task("e", requires=["y"])])
    assert d.drain() == ["in1", "in2"]
    d.done("in1", exc=RuntimeError())
    d.done("in2", exc=RuntimeError())
    reasons = d.skipped()
    assert set(reasons) == {"a", "b", "c", "d", "e"}
    for name in ("a", "b", "e"):
        assert reasons[name].endswith("because 'in1', 'in2' failed"), reasons[name]
    for name in ("c", "d"):
        assert reasons[name].endswith("because 'in2' failed"), reasons[name]


@pytest.mark.parametrize(
    ("deps_ok", "locks_ok", "handed_out"),
    [(True, True, ["dep", "rival"]), (True, False, ["dep"]),
     (False, True, ["rival"]), (False, False, [])],
)
def test_task_fail_error_options(deps_ok, locks_ok, handed_out):
    d = Driver([task("ctl", provides=["x"], claims=["r"]),
                task("dep", requires=["x"]), task("rival", claims=["r"])])
    assert d.drain() == ["ctl"]
    d.done("ctl", exc=TaskFailError("stop", deps_ok=deps_ok, locks_ok=locks_ok))
    assert d.drain() == handed_out
    for name in handed_out:
        d.done(name)
    assert set(d.skipped()) == {"dep", "rival"} - set(handed_out)


def test_task_fail_error_defaults_and_subclass():
    class Flaky(TaskFailError):
        pass

    d = Driver([task("f1", provides=["x"], claims=["r"]),
                task("f2", provides=["y"], uses=["r"]),
                task("w", requires=["x", "y"], claims=["r"])])
    assert d.drain() == ["f1"]
    d.done("f1", exc=TaskFailError())
    assert d.drain() == ["f2"]
    d.done("f2", exc=Flaky("meh", locks_ok=True))
    assert d.drain() == ["w"]


def test_plain_exception_with_deps_ok_attribute_is_not_controlled():
    class Lookalike(Exception):
        deps_ok = locks_ok = True

    d = Driver([task("f", provides=["x"]), task("w", requires=["x"])])
    d.pop()
    d.done("f", exc=Lookalike())
    assert d.drain() == []


# -- shared state ----------------------------------------------------------------


def test_shared_starts_as_presets():
    presets = {"k": [1]}
    d = Driver([task("a"), task("b")], presets)
    assert d.drain() == ["a", "b"]
    first, second = d.shared("a"), d.shared("b")
    assert first == second == {"k": [1]}
    assert first is not second
    assert first is not presets
    first["new"] = 1
    assert presets == {"k": [1]}


def test_no_presets_gives_empty_dicts():
    d = Driver([task("a")])
    d.pop()
    assert d.shared("a") == {}


def test_presets_copied_at_planner_creation():
    presets = {"k": 1}
    d = Driver([task("a")], presets)
    presets["later"] = 2
    d.pop()
    assert d.shared("a") == {"k": 1}


def test_shared_merged_only_into_dependents():
    d = Driver([task("p", provides=["x"]), task("dep", requires=["x"]),
                task("other", requires=["y"]), task("q", provides=["y"])],
               {"base": 0})
    assert d.drain() == ["p", "q"]
    d.done("p", shared={"base": 0, "from_p": 1})
    d.done("q", shared={"base": 5})
    assert d.drain() == ["dep", "other"]
    assert d.shared("dep") == {"base": 0, "from_p": 1}
    assert d.shared("other") == {"base": 5}


def test_shared_merged_from_every_provider_in_completion_order():
    d = Driver([task("p1", provides=["x"]), task("p2", provides=["y"]),
                task("p3", provides=["x"]), task("w", requires=["x", "y"])],
               {"base": 0})
    assert d.drain() == ["p1", "p2", "p3"]
    d.done("p3", shared={"k": "p3", "only3": 1})
    d.done("p1", shared={"k": "p1"})
    d.done("p2", shared={"k2": "p2"})
    assert d.drain() == ["w"]
    assert d.shared("w") == {"base": 0, "k": "p1", "only3": 1, "k2": "p2"}


def test_shared_not_merged_after_dispatch():
    d = Driver([task("p1", provides=["x"]), task("p2", provides=["x"]),
                task("w", requires=["x"])])
    d.drain()
    d.done("p1", shared={"from": "p1"})
    assert d.drain() == ["w"]
    assert d.shared("w") == {"from": "p1"}
    d.done("p2", shared={"from": "p2"})
    assert d.shared("w") == {}  # a fresh dict: w already has its own


def test_shared_of_failed_provider():
    d = Driver([task("bad", provides=["x"]), task("ctl", provides=["y"]),
                task("w1", requires=["y"]), task("w2", requires=["x"]),
                task("good", provides=["x"])])
    assert d.drain() == ["bad", "ctl", "good"]
    d.done("bad", shared={"from_bad": 1}, exc=RuntimeError())
    d.done("ctl", shared={"from_ctl": 1}, exc=TaskFailError())
    d.done("good", shared={"from_good": 1})
    assert d.drain() == ["w1", "w2"]
    assert d.shared("w1") == {"from_ctl": 1}
    assert d.shared("w2") == {"from_good": 1}


# -- stopped early ------------------------------------------------------------------


def test_skip_reasons_when_stopped():
    d = Driver([task("done"), task("running"), task("ready"),
                task("pending", requires=["x"]), task("p", provides=["x"])])
    assert d.pop() == "done"
    d.done("done")
    assert d.pop() == "running"
    assert d.skipped(stopped=True) == {
        "running": "handed to the pool, but the run was stopped before its "
                   "result came back",
        "ready": "not started: the run was stopped early",
        "pending": "not started: the run was stopped early",
        "p": "not started: the run was stopped early",
    }


def test_nothing_skipped_after_a_full_run():
    d = Driver([task("a", claims=["r"]), task("b", claims=["r"])])
    assert d.run_serially() == ["a", "b"]
    assert d.skipped() == {}
    assert d.skipped(stopped=True) == {}


# -- locks, any mix ------------------------------------------------------------------


def _lockable(info, count):
    return all(not count.get(r, 0) for r in info.claims) and all(
        count.get(r, 0) >= 0 for r in info.uses
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.sampled_from("abc"), max_size=2),  # claims
            st.sets(st.sampled_from("abc"), max_size=2),  # uses
            st.integers(0, 2),  # priority
        ),
        min_size=1, max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_each_pop_hands_out_the_first_task_that_can_lock(specs, rng):
    """Whatever waits, parked or not, the first lockable task in
    (priority, seq) order goes next, and every task runs in the end."""
    tasks = [
        task(f"t{i}", claims=claims, uses=uses - claims, priority=prio)
        for i, (claims, uses, prio) in enumerate(specs)
    ]
    d = Driver(tasks)
    planner = d.planner
    finished = 0
    while finished < len(tasks):
        count = planner.lock2count
        waiting = [i for i in planner.infos if i.state in (READY, PARKED)]
        can_run = [i for i in waiting if _lockable(i, count)]
        if d.running and (not can_run or rng.random() < 0.5):
            d.done(rng.choice(sorted(d.running)))
            finished += 1
            continue
        expected = min(can_run, key=lambda i: (i.priority, i.seq), default=None)
        assert planner.pop_ready() is expected
        assert expected is not None, "tasks wait but none can run: a lost wake-up"
        d.running[expected.task.__name__] = expected


# -- carried tasks (a resumed run) ---------------------------------------------


def test_carried_tasks_are_not_handed_out_and_provide_their_tags():
    d = Driver([
        task("make", provides=["db"]),
        task("use", requires=["db"]),
        task("other"),
        task("after", requires=["x"]),
        task("x", provides=["x"], requires=["db"]),
    ], presets={"p": 0})
    seq = {name: info.seq for name, info in d.by_name.items()}
    d.planner.carry({seq["make"]: {"url": "db://1"}, seq["x"]: {"x": 1}})
    assert d.drain() == ["use", "other", "after"]
    assert d.shared("use") == {"p": 0, "url": "db://1"}
    assert d.shared("after") == {"p": 0, "x": 1}
    for name in ("use", "other", "after"):
        d.done(name)
    assert d.skipped() == {}


def test_a_carried_task_whose_requirement_is_met_later_stays_carried():
    """A carried task requiring a tag that a task of this run provides is not
    made ready when the tag comes."""
    d = Driver([task("root", provides=["a"]), task("carried", requires=["a"])])
    d.planner.carry({d.by_name["carried"].seq: {}})
    assert d.run_serially() == ["root"]
    assert d.skipped() == {}

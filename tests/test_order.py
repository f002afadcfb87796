"""Orders of ready tasks (SPEC §11): the ranks, computed by hand."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pexen.sched import Sched, SchedulerError
from pexen.sched._order import ORDERS, bottom_levels, check_order, ranks
from pexen.sched.meta import func_meta
from pexen.sched.pool import InlineWorkerPool


class Rec:
    """What the ranks read of a planner record."""

    def __init__(self, seq, cost=1, priority=0, provides=(), requires=()):
        self.seq, self.cost, self.priority = seq, cost, priority
        self.provides, self.requires = frozenset(provides), frozenset(requires)


def test_orders_are_checked():
    assert [check_order(order) for order in ORDERS] == list(ORDERS)
    message = ("order='fastest': expected one of 'priority', 'critical-path', "
               "'longest-first'")
    with pytest.raises(SchedulerError, match=f"^{message}$"):
        check_order("fastest")


def diamond():
    """a -> (b: 5, c: 1) -> d, and e alone."""
    return [
        Rec(0, cost=1, provides=["a"]),
        Rec(1, cost=5, provides=["b"], requires=["a"]),
        Rec(2, cost=1, provides=["c"], requires=["a"]),
        Rec(3, cost=2, requires=["b", "c"]),
        Rec(4, cost=3, priority=-1),
    ]


def costs(infos):
    return {info.seq: info.cost for info in infos}


def test_bottom_levels_are_the_longest_chain_of_cost_to_the_end():
    infos = diamond()
    assert bottom_levels(infos, costs(infos)) == {0: 8, 1: 7, 2: 3, 3: 2, 4: 3}


def test_ranks_start_with_the_priority():
    infos = diamond()
    cost = costs(infos)
    assert ranks(infos, "priority", cost) == [0, 0, 0, 0, -1]
    assert ranks(infos, "longest-first", cost) == [(0, -1), (0, -5), (0, -1),
                                                   (0, -2), (-1, -3)]
    chains = bottom_levels(infos, cost)
    assert ranks(infos, "critical-path", cost, chains) == [(0, -8), (0, -7),
                                                           (0, -3), (0, -2),
                                                           (-1, -3)]


def test_every_provider_of_a_tag_leads_to_its_requirers():
    infos = [Rec(0, cost=1, provides=["t"]), Rec(1, cost=2, provides=["t"]),
             Rec(2, cost=10, requires=["t"])]
    assert bottom_levels(infos, costs(infos)) == {0: 11, 1: 12, 2: 10}


def test_known_chains_count_as_they_are():
    # tasks added to a run: an existing task requiring their tag is known
    existing = Rec(0, cost=1, requires=["new"])
    added = [Rec(1, cost=2, provides=["new"])]
    chains = bottom_levels(added, costs(added), {"new": [existing]}, {0: 50})
    assert chains == {1: 52}


def test_a_long_chain_needs_no_recursion():
    n = 20_000  # far past the recursion limit
    infos = [Rec(i, provides=[i], requires=[i - 1] if i else []) for i in range(n)]
    chains = bottom_levels(infos, costs(infos))
    assert chains[0] == n and chains[n - 1] == 1


@st.composite
def dags(draw):
    n = draw(st.integers(1, 12))
    weights = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    rng = random.Random(draw(st.integers(0, 2**32)))
    preds = {i: rng.sample(range(i), rng.randint(0, min(i, 3))) for i in range(n)}
    return weights, preds


@settings(max_examples=200, deadline=None)
@given(dags())
def test_bottom_levels_match_the_longest_path(dag):
    weights, preds = dag
    n = len(weights)
    infos = [Rec(i, cost=weights[i], provides=[i], requires=preds[i])
             for i in range(n)]
    succs = {i: [j for j in range(n) if i in preds[j]] for i in range(n)}

    def longest(i):
        return weights[i] + max((longest(j) for j in succs[i]), default=0)

    assert bottom_levels(infos, costs(infos)) == {i: longest(i) for i in range(n)}


# -- in the scheduler --------------------------------------------------------


def recorder(order):
    """A factory of tasks that note their name in *order* when they run."""

    def make(name, **fields):
        def fn():
            order.append(name)

        fn.__name__ = fn.__qualname__ = name
        return func_meta(**fields)(fn)

    return make


def chain_and_short(make):
    """Short tasks added first, then a chain of three long ones."""
    shorts = [make(f"s{i}", cost=1) for i in range(3)]
    chain = [
        make("c0", cost=5, provides=["c0"]),
        make("c1", cost=5, requires=["c0"], provides=["c1"]),
        make("c2", cost=5, requires=["c1"]),
    ]
    return [*shorts, *chain]


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("priority", ["s0", "s1", "s2", "c0", "c1", "c2"]),
        ("critical-path", ["c0", "c1", "c2", "s0", "s1", "s2"]),
        # c1 becomes ready after c0 and goes before the short ones left
        ("longest-first", ["c0", "c1", "c2", "s0", "s1", "s2"]),
    ],
)
def test_the_order_of_ready_tasks(order, expected):
    ran = []
    s = Sched(chain_and_short(recorder(ran)), order=order)
    list(s.run(InlineWorkerPool()))
    assert ran == expected


def test_critical_path_goes_by_the_chain_behind_a_task_not_its_own_cost():
    ran = []
    make = recorder(ran)
    tasks = [
        make("big", cost=8),
        make("head", cost=1, provides=["h"]),
        make("tail", cost=9, requires=["h"]),
    ]
    list(Sched(tasks, order="critical-path").run(InlineWorkerPool()))
    assert ran == ["head", "tail", "big"]  # 1 + 9 > 8
    ran.clear()
    list(Sched(tasks, order="longest-first").run(InlineWorkerPool()))
    assert ran == ["big", "head", "tail"]


@pytest.mark.parametrize("order", ORDERS)
def test_priority_always_wins(order):
    ran = []
    make = recorder(ran)
    tasks = [*chain_and_short(make), make("urgent", cost=0, priority=-1)]
    list(Sched(tasks, order=order).run(InlineWorkerPool()))
    assert ran[0] == "urgent"


def test_tasks_added_during_a_run_are_ranked_too():
    ran = []
    make = recorder(ran)
    s = Sched([make("first", cost=1, priority=-1)], order="critical-path")
    late = [make("short", cost=1), make("long", cost=7)]
    s.observe(lambda event: event.kind == "finished" and event.name == "first"
              and s.add_tasks(late))
    list(s.run(InlineWorkerPool()))
    assert ran == ["first", "long", "short"]


def test_sched_refuses_an_unknown_order_at_once():
    with pytest.raises(SchedulerError, match=r"^order='slowest': expected one of"):
        Sched(order="slowest")

"""Counted resources (SPEC §11): the Capacity bookkeeping, driven by hand."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from pexen.sched import MutexError, SchedulerError
from pexen.sched._capacity import Capacity, check_capacity, check_needs, exact


class Rec:
    """What Capacity reads of a planner record."""

    def __init__(self, seq: int, rank: object = 0, **needs: object) -> None:
        self.seq, self.rank = seq, rank
        self.needs = {res: exact(amount) for res, amount in needs.items()}
        self.cap_token = 0
        self.cap_parked = self.cap_held = False

        def task():
            pass

        task.__qualname__ = f"t{seq}"
        self.task = task

    def __repr__(self) -> str:
        return f"t{self.seq}"


def test_take_and_give_back():
    cap = Capacity(check_capacity({"gpu": 2}))
    a, b, c = Rec(0, gpu=1), Rec(1, gpu=1), Rec(2, gpu=1)
    for rec in (a, b):
        assert cap.fits(rec)
        cap.take(rec)
    assert not cap.fits(c)
    assert cap.in_use() == {"gpu": (2, 2)}
    assert cap.give(a) == []  # nobody waits
    assert cap.fits(c)


def test_a_parked_task_is_woken_when_enough_is_given_back():
    cap = Capacity({"gpu": 2})
    runs = [Rec(0, gpu=1), Rec(1, gpu=1)]
    for rec in runs:
        cap.take(rec)
    big = Rec(2, gpu=2)
    assert cap.lacks(big) == "gpu"
    cap.park(big)
    assert cap.give(runs[0]) == []  # one free: not enough for it
    assert cap.give(runs[1]) == [big]
    # woken, it holds what it needs: nobody else counts it as free
    assert big.cap_held and not big.cap_parked
    assert cap.in_use() == {"gpu": (2, 2)}


def test_the_first_in_line_reserves_what_it_needs():
    # a stream of small tasks, behind a big one, does not starve it
    cap = Capacity({"gpu": 2})
    running = Rec(0, gpu=1)
    cap.take(running)
    big = Rec(1, gpu=2)
    cap.park(big)
    small = Rec(2, gpu=1)
    assert not cap.fits(small)  # one is free, but the big one is first in line
    assert cap.give(running) == [big]
    assert cap.in_use() == {"gpu": (2, 2)}


def test_a_task_ahead_of_the_first_in_line_may_go():
    cap = Capacity({"gpu": 2})
    running = Rec(5, gpu=1)
    cap.take(running)
    big = Rec(3, rank=1, gpu=2)
    cap.park(big)
    urgent = Rec(4, rank=0, gpu=1)  # a lower rank: before the big one
    assert cap.fits(urgent)


def test_beside_a_reservation_others_fit():
    # the first in line lacks memory, not GPUs: a GPU task fits beside it
    cap = Capacity({"gpu": 3, "mem": 8})
    hog = Rec(0, mem=8)
    cap.take(hog)
    first = Rec(1, gpu=2, mem=4)
    assert cap.lacks(first) == "mem"
    cap.park(first)
    gpu_only = Rec(2, gpu=1)
    assert cap.fits(gpu_only)
    greedy = Rec(3, gpu=2)
    assert not cap.fits(greedy)  # 3 free, 2 of them reserved


def test_parked_tasks_behind_a_blocked_first_in_line_are_woken_beside_it():
    cap = Capacity({"gpu": 2, "mem": 8})
    hog, gpu_user = Rec(0, mem=8), Rec(1, gpu=2)
    cap.take(hog)
    cap.take(gpu_user)
    first = Rec(2, gpu=1, mem=4)  # lacks both
    behind = Rec(3, gpu=1)
    cap.park(first)
    cap.park(behind)
    # the GPUs come back: the first in line still lacks memory, and the task
    # behind it fits beside its reservation of one GPU
    assert cap.give(gpu_user) == [behind]
    assert first.cap_parked and cap.lacks(first) == "mem"
    assert cap.give(hog) == [first]


def test_a_woken_task_leaves_every_queue_and_the_next_in_line_moves_up():
    cap = Capacity({"gpu": 1, "mem": 1})
    g, m = Rec(0, gpu=1), Rec(1, mem=1)
    cap.take(g)
    cap.take(m)
    both = Rec(2, gpu=1, mem=1)
    mem_next = Rec(3, mem=1)
    cap.park(both)
    cap.park(mem_next)
    assert cap.give(m) == []  # both lacks the GPU; it reserves the memory
    assert cap.give(g) == [both]  # and it holds the memory: mem_next waits
    assert cap.give(both) == [mem_next]


def test_one_give_back_wakes_only_what_it_makes_room_for():
    cap = Capacity({"gpu": 1})
    running = Rec(0, gpu=1)
    cap.take(running)
    queue = [Rec(i, gpu=1) for i in range(1, 1001)]
    for rec in queue:
        cap.park(rec)
    assert cap.give(running) == [queue[0]]
    assert cap.give(queue[0]) == [queue[1]]


def test_unpark_wakes_those_behind():
    cap = Capacity({"gpu": 2})
    running = Rec(0, gpu=1)
    cap.take(running)
    big, small = Rec(1, gpu=2), Rec(2, gpu=1)
    cap.park(big)
    cap.park(small)
    assert cap.unpark(big) == [small]
    assert cap.unpark(big) == []  # not parked any more


def test_fractional_amounts_add_up_exactly():
    cap = Capacity(check_capacity({"mem": 1.0}))
    recs = [Rec(i, mem=0.1) for i in range(10)]
    for _ in range(3):
        for rec in recs:
            assert cap.fits(rec)
            cap.take(rec)
        for rec in recs:
            cap.give(rec)
    whole = Rec(10, mem=1.0)
    assert cap.fits(whole)  # floats would leave 1.0 - 1e-16 free
    assert cap.in_use() == {"mem": (0, 1)}
    cap.take(recs[0])
    assert cap.in_use() == {"mem": (0.1, 1)}
    assert cap.free["mem"] == Fraction(9, 10)


@pytest.mark.parametrize(
    ("capacity", "message"),
    [
        (["gpu"], "capacity=['gpu']: expected a mapping of resource -> amount, as "
                  "capacity={'gpu': 2, 'mem_gb': 16}; got list"),
        ({"gpu": 0}, "capacity={'gpu': 0}: the capacity of 'gpu' must be a "
                     "positive, finite number, not 0"),
        ({"gpu": float("inf")}, "must be a positive, finite number, not inf"),
        ({"gpu": True}, "must be a positive, finite number, not True"),
        ({"gpu": "2"}, "must be a positive, finite number, not '2'"),
        ({"workers": 2}, "capacity={'workers': 2}: 'workers' is the pool's worker "
                         "count (a task with needs={'workers': 4} takes 4 of them); "
                         "set the pool's workers instead, or name the resource "
                         "otherwise"),
    ],
    ids=repr,
)
def test_capacity_checked(capacity, message):
    with pytest.raises(SchedulerError, match=re.escape(message)):
        check_capacity(capacity)


def test_capacity_kept_exactly():
    assert check_capacity(None) == {}
    checked = check_capacity({"gpu": 2, "mem": 0.5, "big": 10**30})
    assert checked == {"gpu": 2, "mem": Fraction(1, 2), "big": 10**30}
    assert type(checked["gpu"]) is int


def test_needs_beyond_capacity_or_without_one_are_refused_naming_both():
    with pytest.raises(MutexError, match=r"^task 't0' needs 3 of 'gpu', more than "
                       r"its capacity of 2; give 'gpu' more capacity or the task "
                       r"a smaller need$"):
        check_needs([Rec(0, gpu=3)], {"gpu": 2})
    with pytest.raises(MutexError, match=r"^task 't1' needs 8 of 'mem', which has "
                       r"no capacity; say how much there is, as "
                       r"Sched\(capacity=\{'mem': \.\.\.\}\)$"):
        check_needs([Rec(0, gpu=1), Rec(1, mem=8)], {"gpu": 2})
    check_needs([Rec(0, gpu=2, workers=16)], {"gpu": 2})  # workers: the pool's

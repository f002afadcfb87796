"""ProcessWorkerPool: construction.

Split from the pool's test file along its section banners; shared helpers
in ``tests/pools/_process.py``, the start-method fixture in tests/conftest.py.
"""


from __future__ import annotations

import multiprocessing
import os
import sys

import pytest

from pexen.sched import (
    PoolError,
    Sched,
)
from pexen.sched._pools.process import default_start_method
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks

# -- construction ------------------------------------------------------------


def test_defaults_and_repr():
    pool = ProcessWorkerPool()
    assert (pool.workers, pool.spare, pool.capacity) == (1, 1, 2)
    assert pool.start_method == default_start_method()
    method = default_start_method()
    assert repr(pool) == (
        f"ProcessWorkerPool(workers=1, spare='auto', mp_context={method!r})"
    )
    assert pool.max_restarts == 4


def test_default_start_method_is_forkserver_on_linux():
    if sys.platform.startswith("linux"):
        assert default_start_method() == "forkserver"
    else:
        assert default_start_method() in multiprocessing.get_all_start_methods()


def test_mp_context_as_name_or_context(method):
    assert ProcessWorkerPool(mp_context=method).start_method == method
    ctx = multiprocessing.get_context(method)
    assert ProcessWorkerPool(mp_context=ctx).mp_context is ctx


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (
            "threads",
            r"mp_context='threads': not a start method of this platform; "
            r"choose one of 'fork', ",
        ),
        (
            42,
            r"mp_context=42: expected a start method name .* or a multiprocessing "
            r"context",
        ),
    ],
)
def test_bad_mp_context(value, match):
    with pytest.raises(PoolError, match=match):
        ProcessWorkerPool(mp_context=value)


@pytest.mark.parametrize(
    "kwargs", [{"workers": 0}, {"spare": -1}, {"max_restarts": -1}]
)
def test_bad_counts(kwargs):
    with pytest.raises(PoolError, match=rf"{next(iter(kwargs))}=-?\d: expected an int"):
        ProcessWorkerPool(**kwargs)


def test_a_drop_in_context_object_is_used():
    ctx = tasks.WrappedContext("spawn")
    results = list(Sched([tasks.getpid]).run(pool=ProcessWorkerPool(mp_context=ctx)))
    assert results[0].ret != os.getpid()
    assert ctx.created == 1



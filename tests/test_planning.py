"""Planning a run: warnings point at the caller; the collector is left as found."""

from __future__ import annotations

import asyncio
import gc

import pytest

from pexen.sched import Sched, UnusedTagWarning
from pexen.sched.meta import func_meta


@func_meta(provides=["nobody-needs-it"])
def provider():
    pass


@pytest.mark.parametrize("how", ["check", "run", "arun"])
def test_a_graph_warning_points_at_the_caller(how):
    sched = Sched([provider])
    with pytest.warns(UnusedTagWarning) as record:
        if how == "check":
            sched.check()
        elif how == "run":
            list(sched.run())
        else:
            asyncio.run(sched.arun().aclose())
    assert record[0].filename == __file__


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_it_was(enabled):
    seen = []

    def task():
        seen.append(gc.isenabled())

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        list(Sched([task]).run())
        assert gc.isenabled() is enabled
        assert seen == [enabled]  # paused while planning only, not while running
    finally:
        (gc.enable if was else gc.disable)()

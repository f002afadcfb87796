"""What travels between processes: an exception with its chain and traceback,
also when its class was made at run time (cloudpickle carries it)."""

from __future__ import annotations

import sys
import traceback

from pexen.sched import ExceptionInfo
from pexen.sched._pools.transport import dumps_excinfo, loads_excinfo


def _raise_chained(cls: type[BaseException]) -> ExceptionInfo:
    try:
        try:
            {}["key"]
        except KeyError as exc:
            raise cls("outer") from exc
    except cls:
        return ExceptionInfo(*sys.exc_info())
    raise AssertionError("not raised")


def test_an_exception_of_a_class_made_at_run_time_keeps_its_chain():
    class MadeNow(Exception):  # plain pickle cannot refer to it
        pass

    excinfo = loads_excinfo(dumps_excinfo(_raise_chained(MadeNow)))
    assert excinfo.type.__name__ == "MadeNow" and str(excinfo.val) == "outer"
    assert isinstance(excinfo.val.__cause__, KeyError)
    text = "".join(traceback.format_exception(*excinfo))
    assert "The above exception was the direct cause" in text
    assert "in _raise_chained" in text


def test_an_importable_exception_comes_back_as_itself():
    excinfo = loads_excinfo(dumps_excinfo(_raise_chained(RuntimeError)))
    assert excinfo.type is RuntimeError
    assert isinstance(excinfo.val.__cause__, KeyError)
    assert excinfo.tb is excinfo.val.__traceback__

"""ProcessWorkerPool: output.

Split from the pool's test file along its section banners; shared helpers
in ``tests/pools/_process.py``, the start-method fixture in tests/conftest.py.
"""


from __future__ import annotations

import logging
import os

from pexen.sched import (
    Sched,
)
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests.pools._process import (
    fresh,
    poll_for,
    with_kwargs,
)

# -- output ------------------------------------------------------------------


def test_output_and_logs_reach_the_parent_before_the_result(method, capfd, caplog):
    caplog.set_level(logging.INFO, logger="pexen.tests.tasks")
    task = with_kwargs(tasks.print_and_log, tag="T1")
    seen = {}
    for res in Sched([task]).run(pool=ProcessWorkerPool(mp_context=method)):
        seen["ret"] = res.ret
        seen["out"], seen["err"] = capfd.readouterr()
        seen["records"] = list(caplog.records)
    assert seen["ret"] == "T1"
    out = seen["out"].splitlines()
    for line in ["out T1", "partial T1", "raw fd T1", "subprocess T1"]:
        assert line in out
    assert "err T1" in seen["err"].splitlines()
    records = [r for r in seen["records"] if r.name == "pexen.tests.tasks"]
    assert [(r.levelname, r.getMessage()) for r in records] == [
        ("INFO", "info T1"),
        ("ERROR", "failure T1"),
    ]  # DEBUG stays in the worker
    assert {r.pexen_task for r in records} == {"partial(print_and_log)"}
    assert records[0].process != os.getpid()
    assert records[1].exc_text.endswith("ZeroDivisionError: logged")


def test_output_goes_to_the_current_sys_stdout(method, capsys):
    task = with_kwargs(tasks.print_and_log, tag="T2")
    list(Sched([task]).run(pool=ProcessWorkerPool(mp_context=method)))
    out, err = capsys.readouterr()  # Python-level capture sees it too
    assert "out T2\n" in out and "subprocess T2\n" in out
    assert "err T2\n" in err


def test_a_chatty_task_never_waits_for_the_caller(tmp_path, method, capfd):
    # while the caller holds a result, a task printing far more than a pipe
    # holds still finishes: the relay thread drains its output meanwhile
    marker = tmp_path / "chatty-done"
    chatty = with_kwargs(tasks.chatty, nbytes=4 << 20, marker=str(marker))
    first = fresh(tasks.getpid)
    rets = []
    for res in Sched([first, chatty]).run(
        pool=ProcessWorkerPool(1, 1, mp_context=method)
    ):
        rets.append(res.ret)
        if res.task is first:
            assert poll_for(marker.exists)
    assert rets[1] == "chatty"
    out, _err = capfd.readouterr()
    assert out.count("x" * 99 + "\n") == (4 << 20) // 100



"""Factory-made tasks run through Sched with their metadata honoured, on the
thread pool and on the process pool under spawn and forkserver.

Order is checked from event logs the scripts write, never from timing.
"""

from __future__ import annotations

import importlib
import multiprocessing
import pathlib
import sys

import pytest

from pexen import PexenWarning, sched
from pexen.factory import FilesystemFactory, ModTreeFactory, get_callpath
from pexen.sched import pool

DATA = pathlib.Path(__file__).resolve().parent / "data" / "modtree"


def make_pool(kind: str) -> pool.WorkerPool:
    """Two workers, so that independent tasks could overlap."""
    if kind == "thread":
        return pool.ThreadWorkerPool(workers=2, spare=1)
    try:
        process_pool = pool.ProcessWorkerPool
    except AttributeError:
        pytest.skip("pexen.sched.pool.ProcessWorkerPool is not available yet")
    method = kind.rpartition("-")[2]
    return process_pool(
        workers=2, spare=1, mp_context=multiprocessing.get_context(method)
    )


@pytest.fixture(params=["thread", "process-spawn", "process-forkserver"])
def pool_kind(request):
    return request.param


@pytest.fixture(autouse=True)
def isolated_imports():
    """Undo what a test did to sys.path and sys.modules (for mtpkg only)."""
    saved_path = list(sys.path)
    yield
    sys.path[:] = saved_path
    for name in [name for name in sys.modules if name.partition(".")[0] == "mtpkg"]:
        del sys.modules[name]
    importlib.invalidate_caches()


def logging_script(root: pathlib.Path, name: str, header: str, log: pathlib.Path):
    """A script logging its start and end; a lock holder also takes a lock dir."""
    start, end = f"echo 'start {name}' >> '{log}'", f"echo 'end {name}' >> '{log}'"
    if "claims=" in header:
        # mkdir is atomic: it fails while another lock holder is still running
        lockdir = f"{log}.lockdir"
        body = [start, f"mkdir '{lockdir}' || exit 17", end, f"rmdir '{lockdir}'"]
    else:
        body = [start, end]
    path = root / name
    path.write_text("\n".join(["#!/bin/sh", f"# pexen: {header}", *body, ""]))
    path.chmod(0o755)


def test_script_headers_order_and_serialise_scripts(tmp_path, pool_kind):
    root = tmp_path / "suite"
    root.mkdir()
    log = tmp_path / "events.log"
    # sorted by name the consumer comes first: only its header holds it back
    logging_script(root, "a_consumer.sh", "requires=built", log)
    logging_script(root, "b_producer.sh", "provides=built", log)
    logging_script(root, "c_lock1.sh", "claims=port80", log)
    logging_script(root, "d_lock2.sh", "claims=port80", log)
    tasks = list(FilesystemFactory()(root))
    assert [t.path.rsplit("/", 1)[1] for t in tasks] == [
        "a_consumer.sh", "b_producer.sh", "c_lock1.sh", "d_lock2.sh"]

    results = list(sched.Sched(tasks).run(pool=make_pool(pool_kind)))

    assert sorted(get_callpath(res.task) for res in results) == [
        ("a_consumer.sh",), ("b_producer.sh",), ("c_lock1.sh",), ("d_lock2.sh",)]
    assert {id(res.task) for res in results} == {id(t) for t in tasks}
    assert [res.excinfo for res in results] == [None] * 4
    assert all(res.ret.returncode == 0 for res in results)
    events = log.read_text().splitlines()
    assert sorted(events) == sorted(
        f"{what} {name}" for what in ("start", "end")
        for name in ("a_consumer.sh", "b_producer.sh", "c_lock1.sh", "d_lock2.sh"))
    # the chain: the consumer starts only after the producer ended
    assert events.index("end b_producer.sh") < events.index("start a_consumer.sh")
    # the claim: the two lock holders' intervals do not overlap
    locked = [event for event in events if "lock" in event]
    first, second = sorted(["c_lock1.sh", "d_lock2.sh"],
                           key=lambda name: locked.index(f"start {name}"))
    assert locked == [f"start {first}", f"end {first}",
                      f"start {second}", f"end {second}"]


def test_module_tree_tasks_chain_their_shared_dicts(pool_kind):
    # imported from a path, so the workers need sys.path to find mtpkg again
    with pytest.warns(PexenWarning, match="1 item could not be collected"):
        tasks = list(ModTreeFactory()(DATA / "mtpkg"))
    import mtpkg.alpha

    results = {get_callpath(res.task): res
               for res in sched.Sched(tasks).run(pool=make_pool(pool_kind))}
    assert all(res.excinfo is None for res in results.values()), results
    assert len(results) == len(tasks)
    assert results[("mtpkg", "alpha", "build")].task is mtpkg.alpha.build
    assert results[("mtpkg", "alpha", "build")].shared == {"root": 1, "alpha": 2}
    use = results[("mtpkg", "sub", "beta", "use")]
    assert (use.ret, use.shared) == (20, {"root": 1, "alpha": 2})
    assert results[("mtpkg", "helpers", "imported_task")].ret == "imported"

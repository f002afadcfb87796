"""DaskWorkerPool on real Dask processes: by address, with a client, embedded.

The shared scheduler suite (every test of tests/test_sched.py that takes
``make_pool``) runs here too, on a pool connected by address: this module's
``make_pool`` overrides the pool matrix of conftest.py. ``make_pool(1, spare)``
connects to a cluster of one worker (tests that check the order of results
need one), any larger count to the cluster of two.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading

import pytest

from pexen.sched import PoolError, Sched, WorkerCrashError
from pexen.sched._pools.dask import _scheduled
from pexen.sched.meta import func_meta
from pexen.sched.pool import DaskWorkerPool, ExecutorWorkerPool
from tests._cluster import (
    HAVE_DASK,
    DaskProcesses,
    cli_error_without_engines,
    needs_dask,
    pexen_argv,
    poll_for,
    run_break_then_again,
    run_contract,
    run_program,
    shared_suite,
    warm_up_dask,
    write_cli_suite,
)
from tests._live import blocker, run_live_contract


@pytest.fixture(scope="module")
def dask_warm():
    """Skip without Dask; else start its process-wide helper thread."""
    if not HAVE_DASK:
        pytest.skip("Dask distributed is not installed (pip install 'pexen[dask]')")
    warm_up_dask()


@pytest.fixture(scope="module")
def cluster(dask_warm, tmp_path_factory):
    """A scheduler and two workers, shared by the tests that leave them be."""
    with DaskProcesses(tmp_path_factory.mktemp("dask")) as procs:
        yield procs.start(workers=2)


@pytest.fixture(scope="module")
def one_worker_cluster(dask_warm, tmp_path_factory):
    """A scheduler and a single worker, for the shared suite's one-worker runs."""
    with DaskProcesses(tmp_path_factory.mktemp("dask1")) as procs:
        yield procs.start(workers=1)


@pytest.fixture
def make_pool(one_worker_cluster, cluster):
    """``make_pool(workers, spare)``: a pool by address on a real cluster."""
    by_size = {1: one_worker_cluster, 2: cluster}

    def make(workers=1, spare=1):
        return DaskWorkerPool(address=by_size[min(workers, 2)].address, spare=spare)

    return make


SHARED_SUITE = shared_suite()
globals().update(SHARED_SUITE)  # collected here, on this module's make_pool


def test_the_shared_suite_joined():
    assert len(SHARED_SUITE) >= 40
    assert "test_shared_back_pressure_bounds_dispatch" in SHARED_SUITE


@pytest.fixture
def own_cluster(dask_warm, tmp_path):
    """A cluster for one test that kills or adds workers; starts with none."""
    with DaskProcesses(tmp_path) as procs:
        yield procs


@needs_dask
def test_contract_by_address(cluster):
    pool = DaskWorkerPool(address=cluster.address)
    run_contract(pool)
    assert pool.workers == 2
    assert pool.client is None  # disconnected after the run


@needs_dask
def test_break_then_run_again_by_address(cluster):
    run_break_then_again(DaskWorkerPool(address=cluster.address, spare=2))


@needs_dask
def test_contract_with_the_callers_client(cluster):
    run_contract(DaskWorkerPool(client=cluster.client))
    assert cluster.client.status == "running"  # the caller's client stays open


@needs_dask
def test_run_closed_on_dasks_event_loop_does_not_block_it(cluster):
    # a run's generator finalised by the garbage collector may be closed on
    # any thread, Dask's event loop among them, where Dask cannot block
    client = cluster.client
    pool = DaskWorkerPool(client=client, spare=4)
    gen = Sched([lambda *, i=i: i for i in range(20)]).run(pool)
    next(gen)
    closed = threading.Event()

    def close():
        gen.close()
        closed.set()

    client.loop.add_callback(close)
    poll_for(closed.is_set, "the run to close on Dask's event loop")
    assert pool.client is None
    # the cancel was started, not dropped (a dropped one warns, failing this test)
    poll_for(lambda: not _scheduled, "the cancel to finish")


@needs_dask
def test_contract_on_the_embedded_local_cluster(dask_warm):
    pool = DaskWorkerPool(workers=2)
    run_contract(pool)
    assert pool.workers == 2
    assert pool.client is None  # closed, and the cluster with it:
    # no worker process is left (the autouse leak check of conftest.py)


@needs_dask
def test_the_live_contract_by_address(cluster, tmp_path):
    run_live_contract(DaskWorkerPool(address=cluster.address, spare=2), tmp_path)


@needs_dask
def test_the_live_contract_and_resizing_on_the_embedded_cluster(dask_warm, tmp_path):
    pool = DaskWorkerPool(workers=1)
    run_live_contract(pool, tmp_path / "contract")
    # resized while it runs: a second worker joins, then one retires, idle
    gate = tmp_path / "release"
    tasks = [func_meta(kwargs={"started": str(tmp_path / "started"),
                               "release": str(gate)})(functools.partial(blocker)),
             lambda: "quick"]
    s = Sched(tasks)
    quick_done = threading.Event()
    s.observe(lambda e: e.kind == "finished" and e.res.ret == "quick"
              and quick_done.set())
    counts = []

    def drive():
        poll_for(lambda: (tmp_path / "started").exists(), "the blocker to start")
        s.resize(2)
        poll_for(lambda: sum(pool.client.nthreads().values()) == 2, "a second worker")
        poll_for(quick_done.is_set, "the quick task, on the new worker")
        pool.workers = 1
        poll_for(lambda: sum(pool.client.nthreads().values()) == 1,
                 "the idle worker to retire")
        counts.append(pool.workers)
        gate.touch()

    thread = threading.Thread(target=drive)
    thread.start()
    results = [res.ret for res in s.run(pool)]
    thread.join()
    assert results == ["quick", "blocker"]  # the running blocker was kept
    assert counts == [1]


@needs_dask
def test_embedded_cluster_defaults_to_the_usable_cpus(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    pool = DaskWorkerPool()
    assert (pool.workers, pool.client) == (3, None)  # nothing starts before a run
    assert repr(pool) == "DaskWorkerPool(workers=3, spare='auto')"


@func_meta(priority=-1)
def kills_its_worker():
    os.kill(os.getpid(), signal.SIGKILL)


@needs_dask
def test_worker_killed_mid_task_fails_that_task_and_the_run_goes_on(own_cluster):
    own_cluster.start(workers=2)
    tasks = [kills_its_worker] + [lambda *, i=i: i for i in range(6)]
    # spare=0: each worker holds only the task it runs
    results = list(Sched(tasks).run(DaskWorkerPool(address=own_cluster.address,
                                                   spare=0)))
    assert len(results) == len(tasks)
    crashed = [res for res in results if res.excinfo]
    assert [res.task for res in crashed] == [kills_its_worker]
    excinfo = crashed[0].excinfo
    assert excinfo.type is WorkerCrashError
    assert "the worker running task 'kills_its_worker' died (KilledWorker" in str(
        excinfo.val
    )
    assert type(excinfo.val.__cause__).__name__ == "KilledWorker"
    assert sorted(res.ret for res in results if not res.excinfo) == list(range(6))
    assert len(own_cluster.worker_names()) == 1


def kills_its_first_worker(runs: str) -> str:
    """Note each run in a file of its own; the first run kills its worker."""
    n = len(os.listdir(runs))  # runs follow each other: Dask reruns after a death
    open(os.path.join(runs, f"run-{n}-pid-{os.getpid()}"), "x").close()
    if not n:
        os.kill(os.getpid(), signal.SIGKILL)
    return "ran again"


@pytest.fixture
def rerunning_cluster(dask_warm, tmp_path):
    """Two workers under Dask's default allowed-failures (3), which runs a
    task again on another worker when its worker dies; for one test."""
    with DaskProcesses(tmp_path, allowed_failures=3) as procs:
        yield procs.start(workers=2)


POOLS_ON_DASK = {
    "address": lambda procs: DaskWorkerPool(address=procs.address, spare=0),
    "executor": lambda procs: ExecutorWorkerPool(
        procs.client.get_executor(), spare=0
    ),
}


@needs_dask
@pytest.mark.parametrize(
    ("kind", "retries"), [("address", 0), ("executor", 0), ("address", 1)]
)
def test_a_task_whose_worker_died_runs_once_unless_retries_allow_more(
    rerunning_cluster, tmp_path, kind, retries
):
    # Dask would run the task again on the other worker, behind pexen's
    # back; pexen reports the crash instead (the cluster keeps its settings),
    # and the task's own retries decide whether it runs again
    procs = rerunning_cluster
    runs = tmp_path / "runs"
    runs.mkdir()
    crasher = func_meta(priority=-1, retries=retries)(
        functools.partial(kills_its_first_worker, str(runs))
    )
    tasks = [crasher] + [lambda *, i=i: i for i in range(4)]
    sched = Sched(tasks)
    results = list(sched.run(POOLS_ON_DASK[kind](procs)))
    assert len(os.listdir(runs)) == 1 + retries, sorted(os.listdir(runs))
    assert len(procs.worker_names()) == 1  # the other worker lives on
    assert len(results) == len(tasks)
    assert sorted(res.ret for res in results if res.task is not crasher) == list(
        range(4)
    )
    first, *others = sched.attempts(crasher)
    excinfo = first[0]
    assert excinfo.type is WorkerCrashError
    message = str(excinfo.val)
    assert "the worker running task 'partial(kills_its_first_worker)' died" in message
    assert "left the cluster before its outcome came back" in message
    assert type(excinfo.val.__cause__).__name__ == "StartedBefore"
    (res,) = [res for res in results if res.task is crasher]
    if retries:
        assert others == [(None, others[0][1])] and res.ret == "ran again"
    else:
        assert others == [] and res.excinfo is excinfo


def crash_once_others_are_queued(tmp: str) -> None:
    """Kill the worker, once every other task has been handed out."""
    poll_for(lambda: os.path.exists(os.path.join(tmp, "all handed out")),
             "the other tasks to be handed out")
    os.kill(os.getpid(), signal.SIGKILL)


class HandOutRecorder(DaskWorkerPool):
    """The embedded pool, noting when it has handed out every task."""

    def __init__(self, tmp: str, n: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tmp, self.left = tmp, n

    def submit(self, job) -> None:
        super().submit(job)
        self.left -= 1
        if not self.left:
            open(os.path.join(self.tmp, "all handed out"), "w").close()


@needs_dask
def test_a_crash_on_the_embedded_cluster_fails_only_its_task(dask_warm, tmp_path):
    # the embedded workers hold only the task they run: no bystander is queued
    # on the worker that dies (Dask's default worker-saturation queues one)
    crasher = functools.partial(crash_once_others_are_queued, str(tmp_path))
    tasks = [crasher] + [lambda *, i=i: i for i in range(5)]
    pool = HandOutRecorder(str(tmp_path), len(tasks), workers=1, spare=5)
    results = list(Sched(tasks).run(pool))
    assert len(results) == len(tasks)
    assert [res.task for res in results if res.excinfo] == [crasher]
    assert sorted(res.ret for res in results if not res.excinfo) == list(range(5))


def meet(tmp: str, me: str) -> str:
    """Wait until two tasks run at once (each on a worker of its own)."""
    open(os.path.join(tmp, me), "w").close()
    poll_for(lambda: len(os.listdir(tmp)) >= 2, "a second task running alongside")
    from distributed import get_worker

    return get_worker().name


@needs_dask
def test_workers_joining_mid_run_are_used(own_cluster, tmp_path):
    own_cluster.start(workers=1)
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    first = func_meta(priority=-1)(lambda: "first")
    tasks = [first] + [
        func_meta(kwargs={"tmp": str(rendezvous), "me": f"t{n}"})(
            lambda *, tmp, me: meet(tmp, me)
        )
        for n in range(2)
    ]
    pool = DaskWorkerPool(address=own_cluster.address, spare=0)
    gen = Sched(tasks).run(pool)
    assert next(gen).ret == "first"
    assert pool.capacity == 1  # one worker so far: the two others wait
    new = own_cluster.add_worker()
    poll_for(lambda: pool.capacity == 2, "the pool to count the new worker")
    rest = list(gen)
    assert sorted(res.ret for res in rest) == sorted(["worker-1", new])


@needs_dask
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": "tcp://127.0.0.1:1", "client": object()}, "not both"),
        ({"address": "tcp://127.0.0.1:1", "workers": 2},
         "workers=2 sizes the embedded local cluster"),
        ({"workers": 0}, r"workers=0: expected an int >= 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(PoolError, match=message):
        DaskWorkerPool(**kwargs)


def test_without_dask_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(PoolError, match=r"pip install 'pexen\[dask\]'"):
        DaskWorkerPool()


def test_without_dask_the_cli_says_which_extra_to_install(tmp_path):
    err = cli_error_without_engines(tmp_path, "dask")
    assert "DaskWorkerPool needs Dask distributed" in err
    assert "pip install 'pexen[dask]'" in err


ON_A_DASK_WORKER = "from distributed import get_worker; assert get_worker().address"


@needs_dask
def test_cli_pool_dask_runs_on_a_local_cluster(dask_warm, tmp_path):
    write_cli_suite(tmp_path, "clidask", ON_A_DASK_WORKER)
    out = run_program(pexen_argv("run", "clidask", "--pool", "dask", "-j", "2"),
                      tmp_path)
    assert "=== 3 passed in " in out and "(dask pool, 2 workers) ===" in out, out


@needs_dask
def test_cli_pool_dask_by_address(own_cluster, tmp_path):
    # the workers run in tmp_path, where they import the suite from
    write_cli_suite(tmp_path, "cliaddress", ON_A_DASK_WORKER)
    own_cluster.start(workers=2)
    argv = pexen_argv("run", "cliaddress", "--pool", "dask",
                      "--address", own_cluster.address)
    out = run_program(argv, tmp_path)
    assert "=== 3 passed in " in out and "(dask pool, 2 workers) ===" in out, out
    assert len(own_cluster.worker_names()) == 2  # the cluster is left running

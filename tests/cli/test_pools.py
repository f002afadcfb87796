"""``--pool``, ``--workers``, ``--spare``: the pool the command line builds."""

from __future__ import annotations

import threading

import pytest

from pexen.cli import _pools, main
from pexen.cli._parser import build_parser
from tests._cluster import HAVE_DASK, DaskProcesses, warm_up_dask
from tests.cli._cli import poll_for, restore_imports, write_package


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--pool", "thread", "-j", "3", "--spare", "0"], ("ThreadWorkerPool", 3, 0)),
        (["--pool", "process", "-j", "2", "--spare", "4"], ("ProcessWorkerPool", 2, 4)),
        (["-j", "auto"], ("ThreadWorkerPool", _pools.available_cpus(), 1)),
        ([], ("ThreadWorkerPool", _pools.available_cpus(), 1)),
    ],
)
def test_pool_options_reach_the_pool(argv, expected):
    args = build_parser().parse_args(["run", "x", *argv])
    pool = _pools.make_pool(args)
    assert (type(pool).__name__, pool.workers, pool.spare) == expected


# The task waits for the test: it says it started, then polls for a release
# file (the deadline only keeps a broken test from hanging for ever).
WAITS_FOR_RELEASE = """
import os, time

from pexen.sched.meta import func_meta

HERE = {here!r}

@func_meta
def test_waits():
    open(os.path.join(HERE, "started"), "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(HERE, "release")):
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.01)
"""


@pytest.fixture(scope="module")
def dask_warm():
    """Skip without Dask; else start its lifelong helper thread now, before
    the leak check of a test takes its snapshot."""
    if not HAVE_DASK:
        pytest.skip("Dask distributed is not installed (pip install 'pexen[dask]')")
    warm_up_dask()


@pytest.fixture
def dask_cluster(dask_warm, tmp_path):
    """Real Dask scheduler and worker processes on loopback, none started yet."""
    with DaskProcesses(tmp_path) as procs:
        yield procs


def test_the_summary_tells_the_dask_clusters_size_at_the_end_of_the_run(
    tmp_path, capsys, monkeypatch, dask_cluster
):
    """A worker that joins during the run counts, however short the run is
    after it joined (the pool recounts at most once a second: here never)."""
    from pexen.sched._pools import dask as _dask_pool

    monkeypatch.setattr(_dask_pool, "COUNT_INTERVAL", 3600.0)
    dask_cluster.start(workers=1)
    write_package(tmp_path, "joinsuite", {"test_join": WAITS_FOR_RELEASE.format(
        here=str(tmp_path))})
    argv = ["run", "joinsuite", "--pool", "dask", "--address", dask_cluster.address]
    statuses: list[int] = []
    run = threading.Thread(target=lambda: statuses.append(main(argv)))
    monkeypatch.chdir(tmp_path)
    with restore_imports():
        run.start()
        try:
            assert poll_for(lambda: (tmp_path / "started").exists()), "never started"
            dask_cluster.add_worker()  # returns once the scheduler has it
        finally:
            (tmp_path / "release").touch()
            run.join(60)
    out, err = capsys.readouterr()
    assert statuses == [0], out + err
    assert "=== 1 passed in " in out and "(dask pool, 2 workers) ===" in out, out


def test_the_summary_counts_the_threads_the_system_let_the_run_have(
    refuse_thread, tmp_path, capsys
):
    # it said "thread pool, 5 workers" when the run went on with 2
    refuse_thread(3)
    tests = "".join(f"@func_meta\ndef test_{n}():\n    pass\n" for n in range(6))
    write_package(tmp_path, "refused", {
        "test_six": "from pexen.sched.meta import func_meta\n" + tests
    })
    with restore_imports():
        status = main(["run", str(tmp_path / "refused"), "-j", "5"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "PoolWarning: ThreadWorkerPool(workers=5, spare='auto') could start only " \
        "2 of the 5 threads" in out
    assert out.splitlines()[-1].endswith(
        " (thread pool, 2 workers of the 5 asked for) ==="
    )

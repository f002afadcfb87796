"""MPIWorkerPool on real MPI: spawned workers, and 3 ranks under mpiexec.

MPI is initialised once per process and a spawning (singleton) process keeps
an ``mpiexec`` helper until it exits, so each MPI run is a script of its own,
run in a subprocess; the test process never loads MPI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pexen.sched import PoolError
from pexen.sched.pool import MPIWorkerPool
from tests._cluster import (
    MPIEXEC,
    SCRIPTS,
    cli_error_without_engines,
    needs_mpi,
    pexen_argv,
    poll_for,
    run_program,
    write_cli_suite,
)

HERE = Path(__file__).resolve().parent  # tests/pools
REPO = HERE.parent.parent

SCRIPT = '''
import os
import sys

from pexen.sched import Sched
from pexen.sched.meta import func_meta
from pexen.sched.pool import MPIWorkerPool


@func_meta(kwargs={"n": 7})
def square(*, n):  # defined in __main__: travels by value
    return n * n, os.getpid()


def main():
    from tests._cluster import run_break_then_again, run_contract

    workers = int(sys.argv[1]) if len(sys.argv) > 1 else None
    pool = MPIWorkerPool(workers=workers)
    run_contract(pool)
    assert pool.workers == 2, pool.workers
    [res] = Sched([square]).run(pool)
    assert res.ret[0] == 49 and res.ret[1] != os.getpid(), res
    run_break_then_again(pool)
    import pathlib
    import tempfile

    from tests._live import run_live_contract

    with tempfile.TemporaryDirectory() as tmp:
        run_live_contract(pool, pathlib.Path(tmp))
    print(f"contract kept by {pool.workers} MPI workers")


if __name__ == "__main__":  # mpi4py runs this file in its workers too
    main()
'''


def run_script(tmp_path: Path, argv: list[str], env: dict) -> str:
    """Write the script to *tmp_path* and run it with *argv* (SCRIPT: its path)."""
    script = tmp_path / "mpi_suite.py"
    script.write_text(SCRIPT)
    env = dict(env, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE)]))
    return run_program(
        [arg.replace("SCRIPT", str(script)) for arg in argv], tmp_path, env
    )


@needs_mpi
def test_spawned_workers(tmp_path):
    # without the environment's scripts on PATH: the pool finds its mpiexec
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p != SCRIPTS
    )
    env = dict(os.environ, PATH=path)
    out = run_script(tmp_path, [sys.executable, "SCRIPT", "2"], env)
    assert "contract kept by 2 MPI workers" in out


CTRL_C_SCRIPT = '''
import os, pathlib, signal, sys, time

from pexen.sched import Sched
from pexen.sched.pool import MPIWorkerPool


def wait_for_release(*, here):  # in __main__: travels by value
    (pathlib.Path(here) / "started").touch()
    deadline = time.monotonic() + 60
    while not (pathlib.Path(here) / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.02)


def on_sigint(signum, frame):
    (pathlib.Path(sys.argv[1]) / "interrupted").touch()
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGINT, on_sigint)
    here = sys.argv[1]
    task = lambda: wait_for_release(here=here)
    try:
        for res in Sched([task]).run(MPIWorkerPool(workers=1)):
            print(res)
    except KeyboardInterrupt:
        print("KeyboardInterrupt reached the program", flush=True)
        raise
'''


@needs_mpi
def test_ctrl_c_at_the_terminal_interrupts_the_program(tmp_path):
    # a terminal sends SIGINT to the whole process group; the mpiexec that
    # spawned workers need must not answer it by SIGKILLing the MPI job
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        assert poll_for(lambda: (tmp_path / "started").exists(), "the task to start")
        os.killpg(proc.pid, signal.SIGINT)
        # the run stops, waiting for its running task (MPI cannot interrupt it)
        poll_for(lambda: (tmp_path / "interrupted").exists() or proc.poll() is not None,
                 "the program to see the interrupt")
        (tmp_path / "release").touch()
        out, _ = proc.communicate(timeout=60)
    finally:
        (tmp_path / "release").touch()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode != -signal.SIGKILL, text
    assert "KeyboardInterrupt reached the program" in text, text


@needs_mpi
def test_three_ranks_under_mpiexec(tmp_path):
    out = run_script(
        tmp_path,
        [MPIEXEC, "-n", "3", sys.executable, "-m", "mpi4py.futures", "SCRIPT"],
        dict(os.environ),
    )
    assert out.count("contract kept by 2 MPI workers") == 1, out


def test_without_mpi_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(PoolError, match=r"pip install 'pexen\[mpi\]'"):
        MPIWorkerPool(workers=2)


def test_without_mpi_the_cli_says_which_extra_to_install(tmp_path):
    err = cli_error_without_engines(tmp_path, "mpi")
    assert "MPIWorkerPool needs mpi4py and an MPI library" in err
    assert "pip install 'pexen[mpi]'" in err


@needs_mpi
def test_cli_pool_mpi_spawns_workers(tmp_path):
    spawned = "from mpi4py import MPI; assert MPI.Comm.Get_parent() != MPI.COMM_NULL"
    write_cli_suite(tmp_path, "clispawn", spawned)
    out = run_program(pexen_argv("run", "clispawn", "--pool", "mpi", "-j", "2"),
                      tmp_path)
    assert "=== 3 passed in " in out and "(mpi pool, 2 workers) ===" in out, out


@needs_mpi
def test_cli_pool_mpi_under_mpiexec(tmp_path):
    a_rank = "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_rank() != 0"
    write_cli_suite(tmp_path, "cliranks", a_rank)
    # ranks start before pexen collects the suite: they find it through PYTHONPATH
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    argv = [MPIEXEC, "-n", "3", sys.executable, "-m", "mpi4py.futures",
            *pexen_argv("run", "cliranks", "--pool", "mpi")[1:]]
    out = run_program(argv, tmp_path, dict(os.environ, PYTHONPATH=path))
    assert "=== 3 passed in " in out and "(mpi pool, 2 workers) ===" in out, out

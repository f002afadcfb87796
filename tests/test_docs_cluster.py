"""The examples of docs/cluster.md run, on every engine that is installed.

The fence's info string says what a ```python block needs:

- ``python``: nothing; run in this process, in order, in one namespace.
- ``python dask``: Dask; run in that namespace after the plain blocks.
- ``python dask-address``: a running Dask cluster; run the same way, with
  ``DASK_SCHEDULER_ADDRESS`` naming a local cluster started for the test.
- ``python mpi``: a program of its own. Its first line names its file and its
  ``# run:`` lines the commands the page shows; each command is run (with this
  interpreter for ``python``) in a directory that also holds every block whose
  first line names a file (``# cluster_suite.py``).

A block of a kind whose engine is missing is skipped with the reason.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests._cluster import MPIEXEC, needs_dask, needs_mpi, run_program, warm_up_dask

PAGE = Path(__file__).resolve().parent.parent / "docs" / "cluster.md"
FENCE = re.compile(r"^```python(?P<kind>[^\n]*)\n(?P<code>.*?)^```", re.S | re.M)
KINDS = {"", "dask", "dask-address", "mpi"}
FILE_LINE = re.compile(r"#\s*(?P<name>\w+\.py)\s*$")


def blocks(*kinds: str) -> list[str]:
    found = FENCE.finditer(PAGE.read_text())
    return [m["code"] for m in found if m["kind"].strip() in kinds]


def run_blocks(codes: list[str], namespace: dict) -> None:
    for n, code in enumerate(codes, 1):
        exec(compile(code, f"{PAGE.name} block {n}", "exec"), namespace)


def test_every_block_has_a_known_kind():
    kinds = [m["kind"].strip() for m in FENCE.finditer(PAGE.read_text())]
    assert set(kinds) <= KINDS, set(kinds) - KINDS
    assert kinds.count("") >= 3 and "dask" in kinds and "mpi" in kinds


def test_plain_blocks(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    run_blocks(blocks(""), {"__name__": "cluster_md"})


@pytest.fixture(scope="module")
def dask_warm():
    warm_up_dask()  # before the leak check of conftest.py takes its snapshot


@needs_dask
def test_dask_blocks(dask_warm, monkeypatch, tmp_path):
    import distributed

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "cluster_md"}
    run_blocks(blocks("")[:1], namespace)  # the suite
    run_blocks(blocks("dask"), namespace)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0",
    ) as cluster:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        run_blocks(blocks("dask-address"), namespace)


@needs_mpi
def test_mpi_programs(tmp_path):
    files = {}
    for code in blocks("", "mpi"):
        named = FILE_LINE.match(code.splitlines()[0])
        if named:
            files[named["name"]] = code
            (tmp_path / named["name"]).write_text(code)
    commands = [
        line.split(":", 1)[1].split()
        for code in blocks("mpi")
        for line in code.splitlines()
        if line.startswith("# run:")
    ]
    assert "cluster_suite.py" in files and len(commands) >= 2
    tools = {"python": sys.executable, "mpiexec": MPIEXEC}
    for argv in commands:
        run_program([tools.get(arg, arg) for arg in argv], tmp_path)

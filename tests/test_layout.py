"""The layering of the code: who may import whom (issue 11).

Pools run jobs and never see scheduling state: no module of
``pexen.sched._pools`` imports the planner, the graph checks or ``Sched``.
A worker process imports neither the command line nor rich, and neither does
``import pexen.sched``.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import pexen

PACKAGE = pathlib.Path(pexen.__file__).parent
POOLS = PACKAGE / "sched" / "_pools"

# what a pool must not import: scheduling state, and the layers above the pools
FORBIDDEN_IN_POOLS = (
    "pexen.sched._planner",
    "pexen.sched._graph",
    "pexen.sched._sched",
    "pexen.cli",
    "pexen.factory",
    "rich",
)


def _imports(path: pathlib.Path) -> list[str]:
    """Every module *path* imports, absolute names (``from x import y``: x.y too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


POOL_MODULES = sorted(POOLS.rglob("*.py"))


def test_the_pools_package_is_where_the_pools_are():
    names = {p.relative_to(POOLS).as_posix() for p in POOL_MODULES}
    assert {"base.py", "inline.py", "thread.py", "process/pool.py",
            "process/worker.py", "remote.py", "dask.py", "mpi.py"} <= names


@pytest.mark.parametrize(
    "path", POOL_MODULES, ids=lambda p: p.relative_to(POOLS).as_posix()
)
def test_pools_never_import_the_planner_or_sched(path):
    bad = [
        name for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_POOLS)
        or name in ("pexen.sched.Sched", "pexen.sched.check")
    ]
    assert not bad, f"{path.name} imports {bad}"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        check=True, capture_output=True, text=True,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("code", [
    "import pexen.sched",
    "import pexen.sched.pool",
    "import pexen.sched._pools.process.worker",  # what a worker process loads
    "import pexen._capture",  # what a `pexen run` Python task's wrapper loads
])
def test_no_cli_and_no_rich_below_the_command_line(code):
    above = {m for m in _modules_after(code)
             if m == "rich" or m.startswith(("rich.", "pexen.cli"))}
    assert not above


@pytest.mark.parametrize("code", [
    "import pexen",
    "import pexen.sched",
    "import pexen.sched._pools.process.worker",
    "import pexen.cli",
])
def test_pexen_never_imports_pytest(code):
    """pytest is imported by pexen's pytest plugin, which pytest loads, alone."""
    assert not {m for m in _modules_after(code) if m == "pytest" or
                m.startswith(("_pytest", "pexen.pytest_plugin"))}


def test_the_plugin_imports_the_scheduler_only_when_a_session_needs_it():
    assert "pexen.sched" not in _modules_after("import pexen.pytest_plugin")

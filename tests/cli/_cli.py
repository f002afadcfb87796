"""Helpers for the command-line tests: suites on disk, running ``pexen``, polling."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

# Anything but newline: a plain (non-terminal) output must hold none of these.
CONTROL_CHARS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\x9b]")


# Where the standard library, installed packages and pexen itself live.
_INSTALLED = tuple(
    {os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    | {str(REPO / "pexen") + os.sep}
)


@contextlib.contextmanager
def restore_imports() -> Iterator[None]:
    """Undo what collecting a suite does to ``sys.path`` and ``sys.modules``.

    Only the suites' modules are forgotten: a module of the standard library
    or of an installed package imported meanwhile (``multiprocessing.heap`` by
    the first process pool) stays, as a second copy of it would make objects
    that no longer pickle as its classes.
    """
    path, before = list(sys.path), set(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - before:
            top = sys.modules.get(name.partition(".")[0])
            where = getattr(top, "__file__", None) or ""
            if name.partition(".")[0] not in before and not where.startswith(
                _INSTALLED
            ):
                del sys.modules[name]


def write_package(root: Path, name: str, modules: dict[str, str]) -> Path:
    """Make package *name* under *root* with the given module sources."""
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for module, source in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(source))
    return package


def write_script(path: Path, body: str, header: str = "") -> Path:
    """Make an executable shell script; *header* is its ``# pexen:`` line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["#!/bin/sh"] + ([f"# pexen: {header}"] if header else []) + [body]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return path


def pexen_env(**extra: str) -> dict[str, str]:
    """The environment for a ``pexen`` subprocess: no colour forced, bytecode off."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "120", **extra})
    return env


def run_pexen(*args: str, cwd: Path = REPO, timeout: float = 60, **env: str):
    """Run ``python -m pexen ARGS`` to its end; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "pexen", *args],
        cwd=cwd,
        env=pexen_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def poll_for(pred, timeout: float = 30.0, interval: float = 0.01) -> bool:
    """Poll *pred* until it is true or *timeout* passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True

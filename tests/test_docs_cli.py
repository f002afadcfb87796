"""Every command shown in docs/cli.md runs, and prints the lines shown there.

Each ```console block is a shell session: ``$ command`` lines run one by one
(through bash, with ``pexen`` on PATH) in a scratch directory where
``examples`` is this checkout's; the lines after a command are what it must
print. ``...`` stands for lines left out. Lines are compared after blurring
what changes from run to run: durations, worker counts, the progress
counter's place, the directory's path, dates and pexen's version. ``echo $?``
prints the exit status of the command before it; without one, a command must
not fail with a usage error (exit status 2) unless it prints ``pexen: error:``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from pexen.cli._parser import build_parser
from pexen.sched import pool as pools
from tests.cli._cli import EXAMPLES, REPO, pexen_env

PAGE = REPO / "docs" / "cli.md"
BLOCK = re.compile(r"^```console\n(.*?)^```\n", re.S | re.M)
DOCS_ROOT = "/path/to/pexen"
# The carets under a traceback's failing expression, which Python prints (or
# not) depending on its version: not compared, as in tests/test_readme.py.
CARETS = re.compile(r"^\s*[~^]+\s*$")


def sessions() -> list[list[tuple[str, list[str]]]]:
    """Each console block as ``[(command, expected lines), ...]``."""
    found = []
    for block in BLOCK.findall(PAGE.read_text()):
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                assert steps, f"output before any command in:\n{block}"
                steps[-1][1].append(line)
        found.append(steps)
    return found


def blur(line: str, root: str) -> str:
    line = line.replace(root, DOCS_ROOT)
    line = re.sub(r"\b\d+\.\d+s\b|\b\d+m\d\ds\b", "N.NNs", line)
    line = re.sub(r"\b\d+ workers?\b", "N workers", line)
    line = re.sub(r"^\[\s*\d+/", "[n/", line)
    line = re.sub(r"^pexen \d+\.\d+\S*$", "pexen N.N.N", line)  # --version
    line = re.sub(r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\b", "YYYY-MM-DD hh:mm:ss", line)
    return " ".join(line.split())


def _missing_tool(command: str) -> str | None:
    """Why *command* cannot run here, or None."""
    if "--pool process" in command and "ProcessWorkerPool" not in pools.__all__:
        return "no ProcessWorkerPool in this pexen"
    if "--pool dask" in command and importlib.util.find_spec("distributed") is None:
        return "Dask distributed is not installed"
    if "--pool mpi" in command and importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed"
    if "| dot " in command and shutil.which("dot") is None:
        return "Graphviz 'dot' is not installed"
    return None


@pytest.fixture
def scratch(tmp_path):
    """A directory with ``examples`` and a ``pexen`` command on PATH."""
    (tmp_path / "examples").symlink_to(EXAMPLES)
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    launcher = bin_dir / "pexen"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pexen "$@"\n')
    launcher.chmod(0o755)
    return tmp_path


SESSIONS = sessions()


# Options shown in a ```sh block only: they need a running cluster.
NOT_RUN_HERE = {"--address"}


def _options() -> dict[str, list[tuple[str, ...]]]:
    """Every option of every command, as ``{command: [option strings, ...]}``."""
    parser = build_parser()
    found = {"": [a.option_strings for a in parser._actions if a.option_strings]}
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            found[name] = [a.option_strings for a in sub._actions if a.option_strings]
    return found


def test_the_page_has_an_example_of_every_option_of_every_command():
    """Each option is described, and an example on the page runs it.

    An option that several commands share (``-k``, ``--kind``) needs one
    example with any of them; ``--help`` one as well.
    """
    text = PAGE.read_text()
    commands = [cmd for steps in SESSIONS for cmd, _ in steps]
    option2commands: dict[tuple[str, ...], list[str]] = {}
    for command, options in _options().items():
        assert any(f"pexen {command}" in c for c in commands), command
        for strings in options:
            option2commands.setdefault(tuple(strings), []).append(command)
    for strings, having in option2commands.items():
        name = "/".join(strings)
        assert any(f"`{s}" in text for s in strings), f"{name}: not described"
        if NOT_RUN_HERE.intersection(strings):
            continue
        runs = [c for c in commands if any(f"pexen {h}" in c for h in having)]
        shown = any(
            re.search(rf"(^| ){re.escape(s)}( |=|$)", c) for s in strings for c in runs
        )
        assert shown, f"{name} (pexen {' or '.join(having)}): no example runs it"
    for value in ("process", "dask", "mpi"):
        assert any(f"--pool {value}" in c for c in commands), value
    assert any("--format mermaid" in c for c in commands)
    assert any("--kind exec" in c for c in commands)
    assert "--address tcp://" in text


@pytest.mark.parametrize("steps", SESSIONS, ids=lambda steps: steps[0][0][:60])
def test_console_session(steps, scratch):
    env = pexen_env(COLUMNS="80")
    env["PATH"] = f"{scratch / '.bin'}{os.pathsep}{env['PATH']}"
    root = str(scratch)
    status = None
    skipped = []
    for command, expected in steps:
        if command == "echo $?":
            assert expected == [str(status)], "exit status of the command before"
            continue
        why = _missing_tool(command)
        if why:
            skipped.append(f"{command!r}: {why}")
            status = None
            continue
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        status = proc.returncode
        output = proc.stdout + proc.stderr
        actual = {blur(line, root) for line in output.splitlines()}
        for line in expected:
            if line.strip() == "..." or CARETS.match(line):
                continue
            assert blur(line, root) in actual, (
                f"{command!r} did not print {line!r}; it printed:\n{output}"
            )
        if "pexen: error:" not in "\n".join(expected):
            assert status != 2, f"{command!r} failed:\n{output}"
    if skipped:
        pytest.skip("; ".join(skipped))

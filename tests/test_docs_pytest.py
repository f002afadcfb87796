"""docs/pytest.md: its files make a suite, and its commands print what it shows.

Every ```python and ```ini block whose first line is ``# <file name>`` is
written to a scratch directory; every ```console block is a list of
``$ pytest ...`` commands run there (plugin auto-loading off, pexen's loaded
with ``-p pexen``, no cache), each followed by lines its output must contain,
in that order; ``...`` stands for lines left out, and durations are blurred.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pytest_plugin._runs import clean_env

PAGE = Path(__file__).resolve().parent.parent / "docs" / "pytest.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
FILE_LINE = re.compile(r"^# ([\w.]+)\n")


def blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(PAGE.read_text()) if kind == lang]


def files() -> dict[str, str]:
    found = {}
    for body in blocks("python") + blocks("ini"):
        match = FILE_LINE.match(body)
        if match:
            found[match[1]] = body
    return found


def sessions() -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for body in blocks("console"):
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def blur(line: str) -> str:
    return re.sub(r"\bin \d+\.\d+s\b", "in N.NNs", line).rstrip()


def test_the_page_has_a_suite_and_commands():
    assert {"test_shop.py", "conftest.py", "pytest.ini"} <= set(files())
    commands = [command for command, _ in sessions()]
    assert any("--pexen 2" in command for command in commands)
    assert any("--pexen" not in command for command in commands)


@pytest.mark.parametrize(("command", "expected"), sessions(),
                         ids=[command for command, _ in sessions()])
def test_a_command_of_the_page_prints_what_it_shows(tmp_path, command, expected):
    for name, text in files().items():
        (tmp_path / name).write_text(text)
    argv = shlex.split(command)
    assert argv[0] == "pytest"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "pexen", "-p", "no:cacheprovider",
         *argv[1:]],
        cwd=tmp_path, env=clean_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
        capture_output=True, text=True, timeout=120, check=False,
    )
    lines = iter(blur(line) for line in proc.stdout.splitlines())
    for want in (blur(line) for line in expected if line != "..."):
        assert any(line == want for line in lines), (
            f"{want!r} not found (in order) in:\n{proc.stdout}")

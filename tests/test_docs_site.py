"""The pages of the documentation site run as they read, and the site shows
all of pexen.

Each page of ``PAGES`` runs from top to bottom in a fresh directory, as a
reader would go through it: every ```python block in one namespace (a
```text block right after one is what it must print, memory addresses
aside), every ```console block as a shell session (``$ command`` lines run
through bash with ``pexen`` on PATH; the lines after a command must be among
what it printed, durations and worker counts blurred; ``...`` stands for
lines left out; ``echo $?`` checks the status of the command before).

Every page of docs/ with an example must be run by a test: by this file, or
by a tests/test_docs*.py that names it.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._docs import FENCE, examples

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = [
    "index.md",
    "tutorial.md",
    "howto/test-suite.md",
    "howto/locks.md",
    "howto/passing-data.md",
    "howto/processes.md",
    "howto/asyncio.md",
    "howto/gui.md",
    "howto/resume.md",
    "concepts/generator-loop.md",
    "concepts/spare.md",
    "concepts/failure.md",
    "concepts/events.md",
    "comparison.md",
]
ADDRESS = re.compile(r"\b0x[0-9a-f]+\b")
RUNNABLE = ("python", "console")


def blur(line: str) -> str:
    """A console line with what changes from run to run masked."""
    line = re.sub(r"\b\d+\.\d+s\b", "N.NNs", line)
    line = re.sub(r"\b\d+ workers?\b", "N workers", line)
    line = re.sub(r"^\[\s*\d+/", "[n/", line)
    return " ".join(line.split())


def run_console(block: str, cwd: Path, env: dict[str, str]) -> None:
    """Run a ```console block's commands; check the lines shown after each."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any command in:\n{block}"
            steps[-1][1].append(line)
    status = None
    for command, expected in steps:
        if command == "echo $?":
            assert expected == [str(status)], "exit status of the command before"
            continue
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env,
            capture_output=True, text=True, timeout=60,
        )
        status = proc.returncode
        output = proc.stdout + proc.stderr
        printed = {blur(line) for line in output.splitlines()}
        for line in expected:
            if line.strip() != "...":
                assert blur(line) in printed, (
                    f"{command!r} did not print {line!r}; it printed:\n{output}"
                )


@pytest.fixture
def reader(tmp_path, monkeypatch):
    """A fresh directory to run a page in, with ``pexen`` on PATH; the page's
    modules are forgotten and sys.path restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    launcher = bin_dir / "pexen"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pexen "$@"\n')
    launcher.chmod(0o755)
    env = {**os.environ, "COLUMNS": "80"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    yield tmp_path, env
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_as_it_reads(page, reader):
    cwd, env = reader
    text = (DOCS / page).read_text()
    outputs = dict(examples(text))
    namespace: dict = {"__name__": "docs_" + re.sub(r"\W", "_", page)}
    n = 0
    for match in FENCE.finditer(text):
        lang, body = match[1], match[2]
        if lang == "console":
            run_console(body, cwd, env)
        elif lang == "python":
            n += 1
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, f"{page} example {n}", "exec"), namespace)
            expected = outputs.get(body)
            if expected is not None:
                assert ADDRESS.sub("0x...", out.getvalue()) == ADDRESS.sub(
                    "0x...", expected
                ), f"{page} example {n} printed otherwise"


def test_every_output_block_follows_an_example():
    """A ```text block set apart from its example would be checked by nobody."""
    for page in PAGES:
        text = (DOCS / page).read_text()
        n_output = sum(m[1] == "text" for m in FENCE.finditer(text))
        n_checked = sum(expected is not None for _, expected in examples(text))
        assert n_output == n_checked, page


def test_every_page_with_examples_is_run_by_a_test():
    tests = "".join(p.read_text() for p in (REPO / "tests").rglob("test_docs*.py"))
    for path in sorted(DOCS.rglob("*.md")):
        page = path.relative_to(DOCS).as_posix()
        langs = {m[1] for m in FENCE.finditer(path.read_text())}
        if langs & set(RUNNABLE):
            assert page in PAGES or f'"{path.name}"' in tests, (
                f"docs/{page} has examples that no test runs: add it to PAGES"
            )


def _conf_value(name: str) -> object:
    """A setting of docs/conf.py, read without importing Sphinx."""
    tree = ast.parse((DOCS / "conf.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError(name)


def test_the_cli_reference_is_made_from_the_parser_pexen_uses(capsys):
    """The hook of the command-line reference names the parser behind ``pexen``."""
    from pexen.cli import main

    module, _, function = str(_conf_value("pexen_cli_parser")).partition(":")
    parser = getattr(importlib.import_module(module), function)()
    assert main(["--help"]) == 0
    assert capsys.readouterr().out == parser.format_help()


def test_the_api_reference_covers_every_public_module():
    text = (DOCS / "reference" / "api.md").read_text()
    documented = re.findall(r"^```\{pexen-api\} (\S+)$", text, re.M)
    assert documented == [
        "pexen", "pexen.sched", "pexen.sched.meta", "pexen.sched.pool",
        "pexen.journal", "pexen.trace", "pexen.factory",
    ]

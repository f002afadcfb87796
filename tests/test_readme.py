"""README.md stays true: its example runs, and it shows what the main job prints."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.DOTALL)


def _normalise(text: str) -> list[str]:
    """Lines with durations, progress counts, the worker count (one per CPU),
    the checkout path and traceback carets (Python 3.11+ only) masked, sorted
    (two workers finish tasks in either order)."""
    text = re.sub(r"\d+\.\d+s", "T", text)
    text = re.sub(r"\b\d+ workers?\b", "N workers", text)
    text = re.sub(r"^\s*[~^]+\s*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"^\[\d+/", "[n/", text, flags=re.MULTILINE)
    text = text.replace(str(REPO), "/path/to/pexen")
    return sorted(line.rstrip() for line in text.splitlines() if line.strip())


def test_the_python_example_runs_on_processes(tmp_path):
    (example,) = _blocks("python")
    script = tmp_path / "example.py"
    script.write_text(example)
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True,
        text=True, check=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    # create_schema runs first although listed second: load_users requires it
    assert out.splitlines() == [
        "create_schema None None",
        "load_users loaded ['users'] None",
    ]


def test_the_main_job_prints_what_the_readme_shows():
    shown = next(block for block in _blocks("text") if "collected" in block)
    proc = subprocess.run(
        [sys.executable, "-m", "pexen", "run", "examples/suite"], cwd=REPO,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 1  # the deliberate failure, as the README says
    assert _normalise(proc.stdout) == _normalise(shown)


def test_the_two_commands_are_the_ones_ci_runs():
    sh = _blocks("sh")
    assert any("pexen run examples/suite" in block for block in sh)
    assert any(block.strip() == "bash .ci/run" for block in sh)

"""The examples in docs/scheduler.md and docs/task-meta.md run, in order."""

from __future__ import annotations

import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(name: str) -> list[str]:
    return BLOCK.findall((DOCS / name).read_text())


@pytest.mark.parametrize("page", ["scheduler.md", "task-meta.md"])
def test_examples_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(page)
    assert blocks, f"{page} has no python examples"
    namespace: dict = {"__name__": f"docs_{page.replace('.', '_')}"}
    for n, block in enumerate(blocks, 1):
        code = compile(block, f"{page} example {n}", "exec")
        exec(code, namespace)

"""The examples of docs/scheduler.md and docs/task-meta.md run, in order, and
print what the pages show.

Every ```python block of a page runs in one namespace (as a reader pasting
them one after the other would); when a ```text block (or a bare ``` block)
follows it directly, that is the output the block must print. Memory
addresses (``0x7f69d794f170``) are the only part that may differ.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

from tests._docs import FENCE, examples

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
ADDRESS = re.compile(r"\b0x[0-9a-f]+\b")
PAGES = ["scheduler.md", "task-meta.md", "map.md", "async.md"]




def normalise(output: str) -> str:
    return ADDRESS.sub("0x...", output)


def test_examples_are_found():
    """The pattern still finds the blocks (a silent miss would test nothing)."""
    assert len(examples((DOCS / "scheduler.md").read_text())) >= 10
    assert len(examples((DOCS / "task-meta.md").read_text())) >= 6
    shown = sum(
        expected is not None
        for page in PAGES
        for _, expected in examples((DOCS / page).read_text())
    )
    assert shown >= 7


def test_every_output_block_belongs_to_an_example():
    """No output block is left unchecked by sitting apart from its example."""
    for page in PAGES:
        text = (DOCS / page).read_text()
        n_output = sum(m[1] == "text" for m in FENCE.finditer(text))
        n_checked = sum(expected is not None for _, expected in examples(text))
        assert n_output == n_checked, page


@pytest.mark.parametrize("page", [*PAGES, "journal.md"])
def test_examples_run_and_print_what_the_page_shows(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = examples((DOCS / page).read_text())
    assert found, f"{page} has no python examples"
    namespace: dict = {"__name__": f"docs_{page.replace('.', '_').replace('-', '_')}"}
    for n, (code, expected) in enumerate(found, 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{page} example {n}", "exec"), namespace)
        if expected is not None:
            assert normalise(out.getvalue()) == normalise(expected), (
                f"{page} example {n} printed otherwise"
            )

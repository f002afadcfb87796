"""The examples in docs/factories.md run, in order, and print what the page shows.

Every ```python block runs in one namespace, in a fresh directory; a ```text
block right after a python block is the output that block must print.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pathlib
import re
import sys

import pytest

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "factories.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def examples(text: str) -> list[tuple[str, str | None]]:
    """Each python block with the text block that directly follows it, if any."""
    blocks = [(m[1], m[2], m.start(), m.end()) for m in FENCE.finditer(text)]
    found = []
    for i, (lang, body, _, end) in enumerate(blocks):
        if lang != "python":
            continue
        expected = None
        if i + 1 < len(blocks):
            next_lang, next_body, next_start, _ = blocks[i + 1]
            if next_lang == "text" and not text[end:next_start].strip():
                expected = next_body
        found.append((body, expected))
    return found


@pytest.fixture
def isolated_imports(tmp_path):
    """Undo the examples' sys.path entry and forget the modules they wrote."""
    saved_path = list(sys.path)
    yield
    sys.path[:] = saved_path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    importlib.invalidate_caches()


def test_the_page_has_examples_with_output():
    found = examples(PAGE.read_text())
    assert len(found) >= 8
    assert sum(expected is not None for _, expected in found) >= 6


def test_examples_run_and_print_what_the_page_shows(tmp_path, monkeypatch,
                                                    isolated_imports):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_factories"}
    for n, (code, expected) in enumerate(examples(PAGE.read_text()), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"factories.md example {n}", "exec"), namespace)
        if expected is not None:
            assert out.getvalue() == expected, f"example {n} printed otherwise"

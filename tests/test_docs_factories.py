"""The examples in docs/factories.md run, in order, and print what the page shows.

Every ```python block runs in one namespace, in a fresh directory; a ```text
block right after a python block is the output that block must print.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pathlib
import sys

import pytest

from tests._docs import examples

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "factories.md"




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
    found = examples(PAGE.read_text(), ("text",))
    assert len(found) >= 8
    assert sum(expected is not None for _, expected in found) >= 6


def test_examples_run_and_print_what_the_page_shows(tmp_path, monkeypatch,
                                                    isolated_imports):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_factories"}
    for n, (code, expected) in enumerate(examples(PAGE.read_text(), ("text",)), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"factories.md example {n}", "exec"), namespace)
        if expected is not None:
            assert out.getvalue() == expected, f"example {n} printed otherwise"

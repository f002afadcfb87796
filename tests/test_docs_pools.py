"""The examples of docs/pools.md run, in order, and print what the page shows.

Every ```python block runs in one namespace (as a reader pasting them one
after the other would); when a plain ``` block follows it directly, that is
the output the example must print.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "pools.md"
EXAMPLE = re.compile(
    r"^```python\n(?P<code>.*?)^```\n(?:```\n(?P<out>.*?)^```\n)?", re.S | re.M
)


def examples() -> list[tuple[str, str | None]]:
    return [(m["code"], m["out"]) for m in EXAMPLE.finditer(PAGE.read_text())]


def test_the_page_has_examples_with_output():
    found = examples()
    assert len(found) >= 8
    assert sum(out is not None for _code, out in found) >= 7


def test_examples_run_and_print_what_the_page_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_pools_md"}
    for n, (code, expected) in enumerate(examples(), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{PAGE.name} example {n}", "exec"), namespace)
        if expected is not None:
            assert out.getvalue() == expected, f"example {n} printed otherwise"

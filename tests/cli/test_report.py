"""The records of a run's report: how much of a task's output is shown."""

from __future__ import annotations

import pytest

from pexen.cli._console import size
from pexen.cli._report import Tail, tail


@pytest.mark.parametrize(
    ("text", "max_lines", "max_chars", "expected"),
    [
        ("", 20, 100, Tail([], 0, 0, 0, False)),
        ("a\nb\nc\n", 0, 0, Tail(["a", "b", "c"], 3, 5, 0, False)),
        ("a\nb\nc\n", 2, 0, Tail(["b", "c"], 3, 5, 2, False)),
        ("a\nb\nc\n", 2, 3, Tail(["b", "c"], 3, 5, 2, False)),
        ("xxxxx\nyy", 20, 4, Tail(["x", "yy"], 2, 8, 4, True)),
        ("xxxxx\nyy", 20, 3, Tail(["", "yy"], 2, 8, 5, True)),
        ("é" * 10, 0, 4, Tail(["éééé"], 1, 20, 12, True)),  # bytes: UTF-8's
    ],
)
def test_tail_bounds_lines_and_characters(text, max_lines, max_chars, expected):
    assert tail(text, max_lines, max_chars) == expected


@pytest.mark.parametrize(
    ("n_bytes", "expected"),
    [
        (1, "1 byte"),
        (999, "999 bytes"),
        (2_500, "2.5 kB"),
        (999_960, "1.0 MB"),
        (9_990_008, "10.0 MB"),
        (3 * 10**12, "3000.0 GB"),
    ],
)
def test_size(n_bytes, expected):
    assert size(n_bytes) == expected

"""``-k``: which tasks a pattern selects, with the providers they need."""

from __future__ import annotations

import pytest

from pexen.cli._select import matches, select
from pexen.sched.meta import func_meta


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("suite/test_db/test_migrate", "db", True),
        ("suite/test_db/test_migrate", "test_db/test_m", True),
        ("suite/test_db/test_migrate", "DB", False),  # case matters
        ("suite/test_db/test_migrate", "test_*", False),  # a glob matches it whole
        ("suite/test_db/test_migrate", "suite/*", True),
        ("suite/test_db/test_migrate", "*/test_[dx]b/*", True),
        ("suite/test_db/test_migrate", "*migrat?", True),
        ("suite/test_db/test_migrate", "*migrat?e", False),
        ("suite/test_db/test_migrate", "test_db", True),
    ],
)
def test_matches(name, pattern, expected):
    assert matches(name, pattern) is expected


def _chain():
    @func_meta(provides=["a"])
    def make_a():
        pass

    @func_meta(provides=["a"])
    def other_a():
        pass

    @func_meta(requires=["a"], provides=["b"])
    def make_b():
        pass

    @func_meta(requires=["b"])
    def use_b():
        pass

    def lone():
        pass

    tasks = [make_a, other_a, make_b, use_b, lone]
    return tasks, [f"t/{t.__name__}" for t in tasks]


def test_select_keeps_every_provider_transitively_in_order():
    tasks, names = _chain()
    sel = select(tasks, names, ["use_b"])
    assert sel.names == ["t/make_a", "t/other_a", "t/make_b", "t/use_b"]
    assert sel.tasks == tasks[:4]
    assert (sel.n_matched, sel.n_providers) == (1, 3)


def test_select_union_of_patterns_and_no_pattern():
    tasks, names = _chain()
    sel = select(tasks, names, ["lone", "other*"])
    assert sel.names == ["t/lone"]  # "other*" is a glob on the whole call path
    sel = select(tasks, names, ["lone", "t/other*"])
    assert sel.names == ["t/other_a", "t/lone"]
    assert select(tasks, names, []).tasks == tasks

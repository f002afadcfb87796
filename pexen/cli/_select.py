"""``-k``: choose tasks by call path, keeping the providers they need.

A pattern selects the tasks whose call path, joined with ``/``, contains it;
a pattern with any of ``*?[`` is a shell-style glob matched against the whole
call path instead. Several patterns select the union. A selected task keeps,
transitively, every task providing a tag it requires, so a filtered run never
fails for want of a provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

import attrs

from pexen.sched.meta import retrieve_meta

GLOB_CHARS = frozenset("*?[")


def matches(name: str, pattern: str) -> bool:
    """Whether call path *name* is selected by *pattern* (substring or glob)."""
    if GLOB_CHARS.isdisjoint(pattern):
        return pattern in name
    return fnmatchcase(name, pattern)


@attrs.frozen
class Selection:
    """The tasks kept (with their names), in collection order, and why."""

    tasks: list[Any]
    names: list[str]
    n_matched: int
    n_providers: int


def select(
    tasks: Sequence[Any], names: Sequence[str], patterns: Sequence[str]
) -> Selection:
    """Keep the tasks (named *names*) matching any *pattern*, and their providers."""
    if not patterns:
        return Selection(list(tasks), list(names), len(tasks), 0)
    return with_providers(tasks, names, {
        index
        for index, name in enumerate(names)
        if any(matches(name, pattern) for pattern in patterns)
    })


def with_providers(
    tasks: Sequence[Any], names: Sequence[str], chosen: set[int]
) -> Selection:
    """Keep the tasks at the indexes *chosen* and, transitively, every task
    providing a tag one of them requires; in collection order."""
    tag2providers: dict[Any, list[int]] = {}
    for index, task in enumerate(tasks):
        meta = retrieve_meta(task)
        for tag in meta.provides if meta else ():
            tag2providers.setdefault(tag, []).append(index)
    keep = set(chosen)
    todo = list(keep)
    while todo:
        meta = retrieve_meta(tasks[todo.pop()])
        for tag in meta.requires if meta else ():
            for provider in tag2providers.get(tag, ()):
                if provider not in keep:
                    keep.add(provider)
                    todo.append(provider)
    kept = sorted(keep)
    return Selection(
        [tasks[index] for index in kept],
        [names[index] for index in kept],
        len(chosen),
        len(keep) - len(chosen),
    )

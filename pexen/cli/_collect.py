"""Turn the PATHs given on the command line into tasks.

Each PATH is looked at to decide which factory reads it:

* a Python package (a directory with ``__init__.py``), a ``.py`` file, or a
  directory of Python modules: ``ModTreeFactory``, which imports every module
  and keeps the callables carrying pexen metadata;
* a directory of executables, or one executable file: ``FilesystemFactory``;
  the call paths start with the directory's name (``scripts/10-build.sh``);
* a dotted module name that is not a path (``mypkg.tests``): ``ModTreeFactory``.

A directory holding both executables and non-executable ``.py`` modules is
ambiguous; ``--kind python`` or ``--kind exec`` settles it. Executables run
with their output captured (stdout and stderr together, stdin empty), so a
failure can show the tail of it and the JUnit report can carry it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from pexen._errors import PexenError, PexenWarning
from pexen.cli._console import one_line, plural
from pexen.factory import FilesystemFactory, ModTreeFactory
from pexen.sched._naming import task_name

KINDS = ("auto", "python", "exec")

# How executables run under the command line: output captured for the report.
POPEN_KWARGS = {
    "stdin": subprocess.DEVNULL,
    "stdout": subprocess.PIPE,
    "stderr": subprocess.STDOUT,
}

_ANY_EXEC = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class UsageError(PexenError, ValueError):
    """Raised by the command line for arguments it cannot use (exit status 2)."""


@attrs.frozen
class Source:
    """One PATH, what it turned out to be, and how many tasks it gave."""

    path: str
    what: str
    n_tasks: int


@attrs.define
class Collection:
    """The tasks of all PATHs in order, their names, and what went wrong."""

    tasks: list[Any] = attrs.field(factory=list)
    names: list[str] = attrs.field(factory=list)
    sources: list[Source] = attrs.field(factory=list)
    errors: list[Any] = attrs.field(factory=list)  # pexen.factory.CollectionError
    import_paths: list[str] = attrs.field(factory=list)  # put on sys.path for them
    python_ids: set[int] = attrs.field(factory=set)  # id() of the Python tasks

    def describe(self) -> str:
        """``collected 9 tasks from examples/suite (Python package 'suite')``."""
        parts = [
            f"{one_line(s.path)} ({s.what}, {plural(s.n_tasks, 'task')})"
            for s in self.sources
        ]
        if len(self.sources) == 1:
            parts = [f"{one_line(self.sources[0].path)} ({self.sources[0].what})"]
        line = f"collected {plural(len(self.tasks), 'task')} from " + ", ".join(parts)
        if self.errors:
            line += f"; {plural(len(self.errors), 'collection error')}"
        return line


def _is_exec_file(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & _ANY_EXEC)


def _executables(root: str, follow: bool) -> Iterable[str]:
    """Executable, non-hidden files below *root*, as FilesystemFactory finds them."""
    walked = set()
    for directory, dirnames, filenames in os.walk(root, followlinks=follow):
        st = os.stat(directory)
        if (st.st_dev, st.st_ino) in walked:  # a symlink cycle
            dirnames[:] = []
            continue
        walked.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = os.path.join(directory, name)
            if not name.startswith(".") and _is_exec_file(path):
                yield os.path.relpath(path, root)


def _modules(root: str) -> list[str]:
    """Top-level Python modules and packages of directory *root*."""
    found = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py")):
            found.append(entry.name + "/")
        elif entry.name.endswith(".py") and not _is_exec_file(entry.path):
            found.append(entry.name)
    return found


def _first(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(one_line(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def classify(path: str, kind: str = "auto", follow: bool = False) -> tuple[str, str]:
    """Decide how to collect *path*: ``("python" | "exec", description)``."""
    if not os.path.exists(path):
        looks_like_a_file = path.endswith(".py") or os.sep in path
        if kind != "exec" and not looks_like_a_file and all(
            part.isidentifier() for part in path.split(".")
        ):
            return "python", f"module {path!r}"
        raise UsageError(f"{path!r}: no such file or directory")
    if os.path.isfile(path):
        if kind == "python" or (
            kind == "auto" and path.endswith(".py") and not _is_exec_file(path)
        ):
            if not path.endswith(".py"):
                raise UsageError(
                    f"{path!r}: --kind python needs a .py file or a directory"
                )
            return "python", "Python module"
        if _is_exec_file(path):
            return "exec", "executable"
        raise UsageError(
            f"{path!r} is neither a Python module (.py) nor an executable file"
        )
    if not os.path.isdir(path):
        raise UsageError(f"{path!r} is neither a file nor a directory")
    package = os.path.isfile(os.path.join(path, "__init__.py"))
    if kind == "python" or (kind == "auto" and package):
        if package:
            return (
                "python",
                f"Python package {os.path.basename(os.path.abspath(path))!r}",
            )
        return "python", "directory of Python modules"
    executables = list(_executables(path, follow))
    if kind == "exec":
        return "exec", "directory of executables"
    modules = _modules(path)
    if executables and modules:
        raise UsageError(
            f"{path!r} holds both executables ({_first(executables)}) and Python "
            f"modules ({_first(modules)}); choose with --kind exec or --kind python"
        )
    if modules:
        return "python", "directory of Python modules"
    if executables:
        return "exec", "directory of executables"
    raise UsageError(
        f"{path!r} holds neither Python modules nor executable files; "
        "nothing to collect"
    )


def _exec_tasks(path: str, follow: bool) -> tuple[list[Any], list[Any]]:
    factory = FilesystemFactory(follow=follow, **POPEN_KWARGS)
    if os.path.isdir(path):
        top = os.path.basename(os.path.abspath(path))
        if top:
            factory.callpath_push(top)
    return list(factory(path)), factory.errors


def _python_tasks(path: str) -> tuple[list[Any], list[Any]]:
    if not os.path.exists(path) and "" not in sys.path and os.getcwd() not in sys.path:
        # a dotted name is found from here, as by ``python -m pexen``
        sys.path.insert(0, os.getcwd())
    factory = ModTreeFactory()
    try:
        return list(factory(path)), factory.errors
    except (ImportError, ValueError) as exc:  # the root itself cannot be imported
        if not os.path.exists(path):
            raise UsageError(
                f"{path!r}: no such file or directory, nor an importable module ({exc})"
            ) from None
        raise UsageError(f"{path!r}: {exc}") from None


def collect(
    paths: Sequence[str], kind: str = "auto", follow: bool = False
) -> Collection:
    """Collect the tasks of every PATH; raise ``UsageError`` for an unusable one."""
    collection = Collection()
    before = set(sys.path)
    seen: set[int] = set()
    for path in paths:
        how, what = classify(path, kind, follow)
        with warnings.catch_warnings():
            # the factory's warning about .errors: the summary lists them itself
            warnings.simplefilter("ignore", PexenWarning)
            if how == "exec":
                tasks, errors = _exec_tasks(path, follow)
            else:
                tasks, errors = _python_tasks(path)
        new = [task for task in tasks if id(task) not in seen]
        seen.update(id(task) for task in new)
        collection.tasks += new
        # names are only ever shown: control characters in them, escaped here
        # once, can neither drive the terminal nor forge a line of the output
        collection.names += [one_line(task_name(task)) for task in new]
        collection.errors += errors
        collection.sources.append(Source(path, what, len(new)))
        if how == "python":
            collection.python_ids.update(id(task) for task in new)
    collection.import_paths = [entry for entry in sys.path if entry not in before]
    return collection

"""``ModuleFactory`` and ``ModTreeFactory``: tasks from Python modules and packages.

Modules are imported with ``importlib.import_module`` under their real dotted
names, so they sit in ``sys.modules`` and their functions pickle by
reference: a worker process under spawn or forkserver imports the module
again instead of needing the function itself. A directory given as the root
is put on ``sys.path`` (at the front, as pytest's default import mode does)
when it is not there yet; spawned workers inherit ``sys.path``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from types import ModuleType
from typing import Any

import attrs

from pexen.factory._base import BaseFactory
from pexen.sched.meta import assign_meta, has_meta, retrieve_meta


def _check_match(match: object) -> str | None:
    """Accept None or an fnmatch pattern."""
    if match is not None and not isinstance(match, str):
        raise TypeError(f"match={match!r}: expected an fnmatch pattern (a str)")
    return match


def _defined_in(obj: object, module: ModuleType, name: str) -> bool:
    """Tell whether *obj*, found as *name* in *module*, was not imported from elsewhere.

    An object whose ``__module__`` names another module was imported from it
    when that module holds it too (under *name* or its own ``__name__``); one
    it does not hold (a function a helper elsewhere made here) belongs here.
    """
    try:
        origin = getattr(obj, "__module__", None)
        if origin is None or origin == module.__name__:
            return True
        source = sys.modules.get(origin)
        if source is None:
            return True
        own_name = getattr(obj, "__name__", None)
        return not any(
            getattr(source, attr, None) is obj
            for attr in (name, own_name)
            if isinstance(attr, str)
        )
    except Exception:  # an object with a hostile __getattr__ is no task of ours
        return False


class ModuleFactory(BaseFactory):
    """From an imported module, make a task of every callable defined in it that
    carries pexen metadata, or whose name matches the fnmatch pattern *match*.

    Objects the module imported from elsewhere are left out: those whose
    ``__module__`` names another module that holds them too (a function a
    helper module made *for* this module is kept). A callable's call path is
    the module's dotted name split at the dots plus the name it has in the
    module; the function itself is the task, so a function has one call path,
    the last one given. A callable that takes no attributes (a bound method,
    a builtin such as ``"abc".upper``) cannot carry a call path: its task is a
    ``functools.partial`` wrapping it, with a copy of its metadata. Should
    even that fail, the error is recorded in ``errors`` and the rest of the
    module is collected.
    """

    def __init__(self, match: str | None = None) -> None:
        super().__init__()
        self.match = _check_match(match)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(match={self.match!r})"

    def collect(self, module: ModuleType | str) -> Iterator[Callable[..., Any]]:
        """Yield the tasks of *module* (a module object or its dotted name)."""
        if isinstance(module, str):
            module = importlib.import_module(module)
        elif not isinstance(module, ModuleType):
            raise TypeError(f"{module!r}: expected a module or a dotted module name")
        match = self.match
        chosen: dict[int, tuple[str, Any]] = {}  # id -> (name, task)
        for name, obj in sorted(vars(module).items(), key=lambda item: item[0]):
            if not callable(obj) or not _defined_in(obj, module, name):
                continue
            if not has_meta(obj) and (match is None or not fnmatchcase(name, match)):
                continue
            # one task under several names: prefer the name it was defined with
            if id(obj) not in chosen or name == getattr(obj, "__name__", None):
                chosen[id(obj)] = (name, obj)
        parts = module.__name__.split(".")
        for part in parts:
            self.callpath_push(part)
        for name, obj in sorted(chosen.values(), key=lambda pair: pair[0]):
            try:
                task = self._make(obj, name)
            except Exception as exc:  # one odd object must not hide the others
                self.record_error(f"{module.__name__}.{name}", exc, name)
                continue
            yield task
        for _ in parts:
            self.callpath_pop()

    def _make(self, obj: Callable[..., Any], name: str) -> Callable[..., Any]:
        """Record the call path on *obj*, or on a partial wrapping it if need be."""
        try:
            return self.callpath_burn(obj, name)
        except Exception:
            # A bound method or a builtin takes no attributes (and an object's
            # own __setattr__ may refuse them): a partial takes them, calls
            # *obj* the same way, has its signature, and pickles when it does.
            wrapper = functools.partial(obj)
        meta = retrieve_meta(obj)
        if meta is not None:
            # its own copy, as task_fail_wrap gives: the planner reads the
            # task's attribute, and changing one task must not change another
            assign_meta(wrapper, attrs.evolve(meta))
        return self.callpath_burn(wrapper, name)


class ModTreeFactory(BaseFactory):
    """Walk a package with all its subpackages and modules, applying
    :class:`ModuleFactory` (with *match*) to each.

    The root is a module object, a dotted name, or a path: a package
    directory, a ``.py`` file, or a directory of top-level modules (one
    without ``__init__.py``, treated as a ``sys.path`` entry). A string names
    a path when that path exists, a module otherwise. A module that fails to
    import is recorded in ``errors`` (file, exception, traceback) and the walk
    goes on; a package's ``__main__`` module is never imported.
    """

    def __init__(self, match: str | None = None) -> None:
        super().__init__()
        self.match = _check_match(match)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(match={self.match!r})"

    def collect(
        self, root: ModuleType | str | os.PathLike[str]
    ) -> Iterator[Callable[..., Any]]:
        """Yield the tasks of every module in the tree rooted at *root*."""
        importlib.invalidate_caches()  # files may have appeared since the last import
        if isinstance(root, ModuleType):
            yield from self._walk(root)
        elif isinstance(root, os.PathLike) or (
            isinstance(root, str) and os.path.exists(root)
        ):
            yield from self._from_path(os.path.abspath(os.fspath(root)))
        elif isinstance(root, str):
            module = self._import(root, _find_origin(root), root=True)
            if module is not None:
                yield from self._walk(module)
        else:
            raise TypeError(
                f"{root!r}: expected a module, a dotted module name or a path"
            )

    def _from_path(self, path: str) -> Iterator[Callable[..., Any]]:
        """Yield the tasks of the package, module file or module directory *path*."""
        is_dir = os.path.isdir(path)
        if is_dir and not os.path.isfile(os.path.join(path, "__init__.py")):
            _ensure_on_sys_path(path)
            for info in _submodules([path], ""):
                yield from self._walk_info(info)
            return
        if is_dir:
            origin = os.path.join(path, "__init__.py")
            parts = [os.path.basename(path)]
        elif path.endswith(".py") and os.path.isfile(path):
            origin = path
            parts = [os.path.basename(path)[:-3]]
        elif not os.path.exists(path):
            raise FileNotFoundError(f"{path!r} does not exist")
        else:
            raise ValueError(
                f"{path!r}: expected a package directory, a directory of modules "
                "or a .py file"
            )
        entry = os.path.dirname(path)
        while os.path.isfile(os.path.join(entry, "__init__.py")):
            parts.insert(0, os.path.basename(entry))
            entry = os.path.dirname(entry)
        bad = [part for part in parts if not part.isidentifier()]
        if bad:
            raise ValueError(
                f"{path!r} cannot be imported as {'.'.join(parts)!r}: {bad[0]!r} "
                "is not a valid Python name"
            )
        _ensure_on_sys_path(entry)
        module = self._import(".".join(parts), origin)
        if module is not None:
            yield from self._walk(module)

    def _walk(self, module: ModuleType) -> Iterator[Callable[..., Any]]:
        """Yield the tasks of *module* and, for a package, of everything below it."""
        yield from self.collect_from(ModuleFactory(self.match), module)
        path = getattr(module, "__path__", None)
        if path is not None:
            for info in _submodules(path, module.__name__ + "."):
                yield from self._walk_info(info)

    def _walk_info(self, info: pkgutil.ModuleInfo) -> Iterator[Callable[..., Any]]:
        """Import the module *info* describes and walk it."""
        module = self._import(info.name, _origin(info))
        if module is not None:
            yield from self._walk(module)

    def _import(
        self, name: str, origin: str | None, root: bool = False
    ) -> ModuleType | None:
        """Import *name* from *origin*; on failure record the error and return None."""
        callpath = name.split(".")
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if root and (name == missing or name.startswith(missing + ".")):
                raise  # the root (or a package above it) is not there: a typo
            self._record(origin or name, exc, callpath)
            return None
        except (Exception, SystemExit) as exc:
            self._record(origin or name, exc, callpath)
            return None
        found = getattr(module, "__file__", None)
        if origin and found and not _same_file(found, origin):
            clash = ImportError(
                f"module {name!r} is already imported from {found!r}, so {origin!r} "
                "cannot be imported under that name; rename one of them",
                name=name,
                path=origin,
            )
            self._record(origin, clash, callpath)
            return None
        return module

    def _record(self, path: str, exc: BaseException, callpath: list[str]) -> None:
        saved = self.callpath
        self.callpath = [*saved, *callpath]
        try:
            self.record_error(path, exc)
        finally:
            self.callpath = saved


def _submodules(path: Any, prefix: str) -> list[pkgutil.ModuleInfo]:
    """The importable modules and packages on *path*, sorted by name."""
    return sorted(
        (
            info
            for info in pkgutil.iter_modules(path, prefix)
            if all(part.isidentifier() for part in info.name.split("."))
            and info.name.rpartition(".")[2] != "__main__"
        ),
        key=lambda info: info.name,
    )


def _origin(info: pkgutil.ModuleInfo) -> str | None:
    """The file *info*'s module would be loaded from, if it can be told."""
    find_spec = getattr(info.module_finder, "find_spec", None)
    if find_spec is None:
        return None
    try:
        spec = find_spec(info.name)
    except Exception:
        return None
    return getattr(spec, "origin", None)


def _find_origin(name: str) -> str | None:
    """The file module *name* would be loaded from, without importing it if it can."""
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # a parent package failed: the import will say why
        return None
    return getattr(spec, "origin", None)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _ensure_on_sys_path(entry: str) -> None:
    """Put directory *entry* at the front of ``sys.path`` unless it is there already."""
    for item in sys.path:
        try:
            if os.path.abspath(item or os.curdir) == entry or _same_file(item, entry):
                return
        except (TypeError, OSError):
            continue
    sys.path.insert(0, entry)

"""Moving tasks, values and exceptions between processes or machines.

Every pool that leaves this process (the process pool, the executor, Dask and
MPI pools) goes through these functions, so they behave alike:

* **Tasks** go through plain pickle when it can, by reference (module and
  qualified name; fast, small), and through cloudpickle otherwise: lambdas,
  closures, and anything that refers to ``__main__``, which a worker started
  by ``spawn``/``forkserver`` (or on another machine) may not be able to
  import. cloudpickle sends those by value, keeping the source file name of
  their code (cloudpickle writes ``<dynamic-code>``), so a traceback from the
  worker still shows the task's source lines.
* **Data** (kwargs, shared dicts, return values): plain pickle first, the fast
  path, and cloudpickle when that fails or refers to ``__main__``.
* **Exceptions** travel with their traceback and their ``__cause__`` and
  ``__context__`` chain. One that cannot make the trip is replaced by a
  :class:`RemoteTaskError` carrying its type name, message, formatted
  traceback and the reason it could not come back, never by None.
* **Tracebacks** travel as a flat list of their frames' places (file,
  function, line, and the columns of the failing expression), and are rebuilt
  as real traceback objects from code made to fail at that very place; so
  Python 3.11+ marks (``~~~^^^``) the same part of each line as it would have
  in the worker (the tblib way, one stand-in code object for every frame,
  marks the wrong one), and a traceback thousands of frames deep (a
  RecursionError) travels as well as a short one.

Whatever cannot be pickled raises :class:`TransportError` naming what it was
and why, down to the attribute or item that failed where it can be found:
``return value of task 'probe': cannot pickle '_thread.lock' object (at
ret['lock'])``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import linecache
import pickle
import sys
import traceback
import types
from types import TracebackType
from typing import Any, NamedTuple

import cloudpickle

from pexen.sched._errors import RemoteTaskError, TransportError
from pexen.sched._result import ExceptionInfo

PROTOCOL = pickle.HIGHEST_PROTOCOL
loads = pickle.loads

_MAIN = b"__main__"


# -- why a value cannot be pickled ------------------------------------------

_MAX_DEPTH = 6
_MAX_ITEMS = 64


def _pickles(value: Any) -> bool:
    try:
        pickle.dumps(value, PROTOCOL)
        return True
    except Exception:
        pass
    try:
        cloudpickle.dumps(value, protocol=PROTOCOL)
        return True
    except Exception:
        return False


def _children(value: Any) -> list[tuple[str, Any]]:
    """The parts of *value* pickle would visit, each with its path suffix."""
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
        return [(f"[{key!r}]", val) for key, val in items] + [
            (f" (a key: {key!r})", key) for key, _ in items
        ]
    if isinstance(value, (list, tuple)):
        return [(f"[{n}]", item) for n, item in enumerate(value[:_MAX_ITEMS])]
    if isinstance(value, (set, frozenset)):
        return [(f" (an element: {item!r})", item) for item in list(value)[:_MAX_ITEMS]]
    if isinstance(value, functools.partial):
        return [
            (".func", value.func),
            *[(f".args[{n}]", arg) for n, arg in enumerate(value.args)],
            *[(f".keywords[{key!r}]", val) for key, val in value.keywords.items()],
            *_attributes(value),
        ][:_MAX_ITEMS]
    if isinstance(value, types.MethodType):
        return [(".__self__", value.__self__), (".__func__", value.__func__)]
    if isinstance(value, types.FunctionType):
        code, namespace = value.__code__, value.__globals__
        found = [(f".__globals__[{name!r}]", namespace[name])
                 for name in code.co_names if name in namespace]
        for name, cell in zip(code.co_freevars, value.__closure__ or (), strict=True):
            with contextlib.suppress(ValueError):  # an empty cell
                found.append((f".<closure {name!r}>", cell.cell_contents))
        return found[:_MAX_ITEMS]
    return _attributes(value)[:_MAX_ITEMS]


def _attributes(value: Any) -> list[tuple[str, Any]]:
    """Instance attributes, from ``__dict__`` and ``__slots__``."""
    found = []
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        found = [(f".{name}", val) for name, val in list(state.items())[:_MAX_ITEMS]]
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(value, name):
                found.append((f".{name}", getattr(value, name)))
    return found


def locate_unpicklable(value: Any, root: str = "") -> str:
    """The path (``root['key'].attr[3]``) to the innermost part that fails to pickle.

    Best effort: containers and instance attributes are searched, a few levels
    deep; *root* is returned when no smaller culprit is found.
    """
    path = root
    for _depth in range(_MAX_DEPTH):
        for suffix, child in _children(value):
            if not _pickles(child):
                path, value = path + suffix, child
                break
        else:
            break
    return path


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


def pickling_reason(value: Any, exc: BaseException, root: str = "") -> str:
    """Explain why *value* failed to pickle with *exc*, naming where if found."""
    reason = _reason(exc)
    try:
        path = locate_unpicklable(value, root)
    except Exception:  # a hostile __getattr__ or __eq__: the reason alone will do
        path = root
    return f"{reason} (at {path})" if path and path != root else reason


# -- tasks --------------------------------------------------------------------

# cloudpickle's reduction of a code object; private, hence looked up with care
_code_reduce = getattr(getattr(cloudpickle, "cloudpickle", None), "_code_reduce", None)


def _code_in_file(ctor: Any, args: tuple, filename: str) -> types.CodeType:
    return ctor(*args).replace(co_filename=filename)


class _SourceKeepingPickler(cloudpickle.Pickler):
    """cloudpickle, except that code sent by value keeps its file name."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.CodeType) and _code_reduce is not None:
            ctor, args = _code_reduce(obj)
            return _code_in_file, (ctor, args, obj.co_filename)
        return super().reducer_override(obj)


def _dumps_with(pickler_cls: type, value: Any, **attrs: Any) -> bytes:
    """Pickle *value* with a *pickler_cls* whose attributes *attrs* are set."""
    buf = io.BytesIO()
    pickler = pickler_cls(buf, PROTOCOL)
    for name, attr in attrs.items():
        setattr(pickler, name, attr)
    pickler.dump(value)
    return buf.getvalue()


def cloud_dumps(obj: Any) -> bytes:
    """``cloudpickle.dumps``, keeping the file names of code sent by value."""
    return _dumps_with(_SourceKeepingPickler, obj)


def dumps_task(task: Any, name: str | None = None) -> bytes:
    """Pickle a task, by reference where plain pickle can, by value otherwise.

    A task whose plain pickle refers to ``__main__`` goes by value as well,
    so it also works in workers that cannot import the main script. Raise
    TransportError (naming *name*, if given) when neither way works.
    """
    blob = _by_reference_or_none(task)
    if blob is not None:
        return blob
    try:
        return cloud_dumps(task)
    except Exception as exc:
        raise _task_error(task, name, exc) from exc


def _by_reference_or_none(task: Any) -> bytes | None:
    """Plain pickle of *task*, if it works and needs nothing of ``__main__``."""
    try:
        blob = pickle.dumps(task, PROTOCOL)
    except Exception:
        return None
    return blob if _MAIN not in blob else None


def _task_error(task: Any, name: str | None, exc: BaseException) -> TransportError:
    what = f"task {name!r}" if name else "task"
    reason = pickling_reason(task, exc, "task")
    return TransportError(
        f"{what} cannot be sent to a worker: {reason}; a task for a process "
        f"pool must be picklable (a module-level function, or a lambda, "
        f"closure or object holding only picklable values)",
        what=what,
        reason=reason,
    )


# cloudpickle's own test of what it sends by reference; private, hence looked
# up with care, with the rule it implements for __main__ as the fallback
_by_reference = getattr(
    getattr(cloudpickle, "cloudpickle", None),
    "_should_pickle_by_reference",
    lambda obj: getattr(obj, "__module__", None) != "__main__",
)


class Definitions:
    """Classes and code that tasks of one run carry by value, pickled once.

    Without it, every task that is an instance of a class defined in
    ``__main__`` carries the whole class definition, and every closure its
    function's code: pickled, sent and rebuilt again for each task. With it,
    :meth:`dumps_task` pickles such a task with the class (or code) replaced
    by a number; ``blobs[number]`` is its pickle, made once, which a worker
    loads once (:func:`loads_task`) before the first task that needs it. The
    numbered objects stay referenced here for the run, so their ids stay
    theirs.
    """

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self._numbers: dict[int, int] = {}  # id(obj) -> its number
        self._objects: list[Any] = []  # the numbered objects, kept alive
        self._by_value: set[Any] = set()  # types and code plain pickle failed
        self._templates: dict[types.CodeType, Any] = {}  # code -> first function
        self._by_reference: dict[Any, bool] = {}  # class or code -> by reference

    def dumps_task(
        self, task: Any, name: str | None = None
    ) -> tuple[bytes, tuple[int, ...], int]:
        """Pickle *task* as ``dumps_task`` does; return the pickle, the numbers
        it needs and its form (``PLAIN``, ``NUMBERED``, ``FROM_TEMPLATE``), for
        :func:`loads_task`.

        Once a task of some type (or a function of some code) needed
        cloudpickle, its like skip the plain pickle that would fail again. A
        function with the code of a template already sent, whose own values
        pickle plainly, is pickled as its template's number and those values
        alone, by the C pickler with no Python in between: the common case of
        many closures made by one function.
        """
        if type(task) is types.FunctionType:
            fast = self._from_template(task)
            if fast is not None:
                return fast
        kind = _kind(task)
        if kind not in self._by_value:
            blob = _by_reference_or_none(task)
            if blob is not None:
                return blob, (), PLAIN
            self._by_value.add(kind)
        # the C pickler where it can do (fast); cloudpickle for what it cannot
        for pickler_cls in (_PlainDefiningPickler, _CloudDefiningPickler):
            buf = io.BytesIO()
            pickler = pickler_cls(buf, self, task)
            with contextlib.suppress(Exception):
                pickler.dump(task)
                return buf.getvalue(), tuple(sorted(pickler.used)), NUMBERED
        try:  # neither: the error cloudpickle gives of the task itself says why
            cloud_dumps(task)
        except Exception as exc:
            raise _task_error(task, name, exc) from exc
        raise _task_error(task, name, TypeError("it could not be pickled"))

    def by_reference(self, obj: Any) -> bool:
        """Whether cloudpickle would send *obj*, a class or function, by reference.

        Asked for every class and function in every task, so the answer is
        kept: per class, and per code object for functions.
        """
        key = obj.__code__ if type(obj) is types.FunctionType else obj
        known = self._by_reference.get(key)
        if known is None:
            known = self._by_reference[key] = _by_reference(obj)
        return known

    def _from_template(
        self, function: types.FunctionType
    ) -> tuple[bytes, tuple[int, ...], int] | None:
        template = self._templates.get(function.__code__)
        if template is None or template is function or not _fits(template, function):
            return None
        number = self._numbers[id(template)]
        try:
            blob = pickle.dumps((number, *_function_state(function)), PROTOCOL)
        except Exception:
            return None
        if _MAIN in blob:  # a value of the script's own: by value, the long way
            return None
        return blob, (number,), FROM_TEMPLATE

    def template(self, function: types.FunctionType) -> Any:
        """The first function seen with *function*'s code, if it can stand for
        it (same globals and names); None if it cannot."""
        code = function.__code__
        template = self._templates.get(code)
        if template is None:
            self.number(function)  # first: it may fail
            template = self._templates[code] = function
        return template if _fits(template, function) else None

    def number(self, obj: Any) -> int:
        """The number of *obj*, pickling it (by value) on first sight."""
        number = self._numbers.get(id(obj))
        if number is None:
            number = len(self.blobs)
            self.blobs.append(cloud_dumps(obj))
            self._objects.append(obj)
            self._numbers[id(obj)] = number
        return number


# How a task's pickle is loaded (``loads_task``): plain, with numbers standing
# for definitions, or as a function rebuilt from its template's number
PLAIN, NUMBERED, FROM_TEMPLATE = 0, 1, 2


def _fits(template: types.FunctionType, function: types.FunctionType) -> bool:
    """Whether *template* (same code) can stand for *function*: the same
    globals, names, docstring and annotations, so that only cells, defaults
    and attributes differ (``_function_state``)."""
    return (
        template.__globals__ is function.__globals__
        and template.__name__ == function.__name__
        and template.__qualname__ == function.__qualname__
        and template.__module__ == function.__module__
        and template.__doc__ == function.__doc__
        and template.__annotations__ == function.__annotations__
    )


def _function_state(function: types.FunctionType) -> tuple:
    """What differs between functions of one code: cells, defaults, attributes."""
    return (
        tuple(_cell_value(cell) for cell in function.__closure__ or ()),
        function.__defaults__,
        function.__kwdefaults__,
        function.__dict__ or None,
    )


def _kind(task: Any) -> Any:
    """What decides how a task pickles: its code if a function, else its type."""
    if isinstance(task, types.FunctionType):
        return task.__code__
    return type(task)


# never numbered: values, and the containers pickle looks into
_PLAIN_TYPES = frozenset(
    {str, bytes, int, float, bool, type(None), tuple, list, dict, set, frozenset}
)


class _Numbering:
    """What goes by value once per run, replaced by numbers in a task's pickle.

    By-value classes and code become numbers. A by-value function (a lambda
    or closure of ``__main__``) becomes its *template*, the first function
    seen with its code, by number, plus what differs from one such function
    to the next: its cells, defaults and attributes (``_function_skeleton``,
    ``_fill_function``).
    """

    definitions: Definitions
    root: Any
    used: set[int]

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj) in _PLAIN_TYPES:  # most of what a task holds: be quick
            return None
        definitions = self.definitions
        number = definitions._numbers.get(id(obj))
        if number is None:
            if not (isinstance(obj, types.CodeType) or (
                isinstance(obj, type) and obj is not self.root
                and not definitions.by_reference(obj)
            )):
                return None
            number = definitions.number(obj)
        self.used.add(number)
        return number

    def _reduce_function(self, obj: Any) -> Any:
        """The reduction of a by-value function, or None to leave it be."""
        if type(obj) is not types.FunctionType or self.definitions.by_reference(obj):
            return None
        template = self.definitions.template(obj)
        if template is obj:  # the first of its kind: by number, as it is
            return _same, (obj,)
        if template is None:
            return None
        state = _function_state(obj)
        return (
            _function_skeleton, (template, len(state[0])), state, None, None,
            _fill_function,
        )


class _PlainDefiningPickler(_Numbering, pickle.Pickler):
    """The C pickler, numbering what goes by value; fails on anything else."""

    def __init__(self, file: Any, definitions: Definitions, root: Any) -> None:
        super().__init__(file, PROTOCOL)
        self.definitions, self.root, self.used = definitions, root, set()

    def reducer_override(self, obj: Any) -> Any:
        reduced = self._reduce_function(obj)
        return NotImplemented if reduced is None else reduced


class _CloudDefiningPickler(_Numbering, _SourceKeepingPickler):
    """cloudpickle, numbering what goes by value."""

    def __init__(self, file: Any, definitions: Definitions, root: Any) -> None:
        super().__init__(file, PROTOCOL)
        self.definitions, self.root, self.used = definitions, root, set()

    def reducer_override(self, obj: Any) -> Any:
        reduced = self._reduce_function(obj)
        return super().reducer_override(obj) if reduced is None else reduced


def _same(obj: Any) -> Any:
    return obj


class _EmptyCell:
    """Stands for a closure cell with no value yet (pickled by reference)."""


def _cell_value(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # empty
        return _EmptyCell


def _function_skeleton(template: Any, n_cells: int) -> types.FunctionType:
    """A function like *template*, with *n_cells* empty cells to fill."""
    function = types.FunctionType(
        template.__code__,
        template.__globals__,
        template.__name__,
        None,
        tuple(types.CellType() for _ in range(n_cells)) or None,
    )
    function.__qualname__ = template.__qualname__
    function.__module__ = template.__module__
    function.__doc__ = template.__doc__
    function.__annotations__ = template.__annotations__
    return function


def _fill_function(function: types.FunctionType, state: tuple) -> None:
    """Give a skeleton its cells' values, defaults and attributes."""
    values, defaults, kwdefaults, attributes = state
    for cell, value in zip(function.__closure__ or (), values, strict=True):
        if value is not _EmptyCell:
            cell.cell_contents = value
    function.__defaults__ = defaults
    function.__kwdefaults__ = kwdefaults
    if attributes:
        function.__dict__.update(attributes)


def loads_task(blob: bytes, form: int, definitions: dict[int, Any]) -> Any:
    """Unpickle a task that :meth:`Definitions.dumps_task` pickled in *form*,
    given the objects its numbers stand for."""
    if form == PLAIN:
        return loads(blob)
    if form == FROM_TEMPLATE:
        number, *state = loads(blob)
        function = _function_skeleton(definitions[number], len(state[0]))
        _fill_function(function, tuple(state))
        return function
    return _DefinitionsUnpickler(io.BytesIO(blob), definitions).load()


class _DefinitionsUnpickler(pickle.Unpickler):
    """Unpickle with the numbers of a task's pickle standing for *definitions*.

    A subclass, as Python 3.13 no longer lets ``persistent_load`` be set on an
    instance of the C unpickler.
    """

    def __init__(self, file: io.BytesIO, definitions: dict[int, Any]) -> None:
        super().__init__(file)
        self._definitions = definitions

    def persistent_load(self, pid: Any) -> Any:
        return self._definitions[pid]


# -- data ---------------------------------------------------------------------


def dumps_value(value: Any, what: str, root: str = "") -> bytes:
    """Pickle data, plain pickle first; raise TransportError naming *what*.

    *root* names *value* in the path of the culprit (``ret['lock']``).
    """
    blob = None
    try:
        blob = pickle.dumps(value, PROTOCOL)
        if _MAIN not in blob:
            return blob
    except Exception:
        pass
    try:  # by value, or without ``__main__``, which the receiver may lack
        return cloud_dumps(value)
    except Exception as exc:
        if blob is not None:
            return blob
        reason = pickling_reason(value, exc, root)
        raise TransportError(f"{what}: {reason}", what=what, reason=reason) from exc


def loads_value(blob: bytes, what: str) -> Any:
    """Unpickle data; raise TransportError naming *what* if that fails here."""
    try:
        return loads(blob)
    except Exception as exc:
        reason = _reason(exc)
        raise TransportError(
            f"{what} cannot be unpickled here: {reason}; the modules and classes "
            f"it refers to must be importable in this process too",
            what=what,
            reason=reason,
        ) from exc


# -- tracebacks ---------------------------------------------------------------

# Python 3.11+ draws carets under the part of a line that failed, taken from the
# code's positions at the instruction a frame stopped at (co_positions, tb_lasti)
_HAS_COLUMNS = sys.version_info >= (3, 11)
_NO_POSITION: tuple[int | None, ...] = (None, None, None, None)


class _FramePlace(NamedTuple):
    """Where one frame of a traceback stopped, as plain data that can travel.

    ``lineno`` to ``end_lineno``, ``col`` to ``end_col`` (UTF-8 byte offsets)
    is the expression that failed; the last three are None where the worker
    had no columns. ``module`` keeps the frame's ``__name__`` and ``__file__``.
    """

    filename: str
    name: str
    qualname: str
    lineno: int | None
    end_lineno: int | None
    col: int | None
    end_col: int | None
    module: dict[str, str]


def _position(tb: TracebackType) -> tuple[int | None, ...]:
    """``(lineno, end_lineno, col, end_col)`` of the instruction *tb* stopped at."""
    positions = getattr(tb.tb_frame.f_code, "co_positions", None)  # Python 3.11+
    if positions is None or tb.tb_lasti < 0:
        return _NO_POSITION
    return next(itertools.islice(positions(), tb.tb_lasti // 2, None), _NO_POSITION)


def frame_places(tb: TracebackType | None) -> tuple[_FramePlace, ...]:
    """The places of *tb*'s frames, outermost first, to rebuild it elsewhere."""
    places = []
    modules: dict[int, dict[str, str]] = {}
    while tb is not None:
        code, namespace = tb.tb_frame.f_code, tb.tb_frame.f_globals
        module = modules.get(id(namespace))
        if module is None:
            module = modules[id(namespace)] = {
                key: value
                for key in ("__name__", "__file__")
                if isinstance(value := namespace.get(key), str)
            }
        lineno, end_lineno, col, end_col = _position(tb)
        places.append(
            _FramePlace(
                code.co_filename,
                code.co_name,
                getattr(code, "co_qualname", code.co_name),
                tb.tb_lineno if lineno is None else lineno,
                end_lineno,
                col,
                end_col,
                module,
            )
        )
        tb = tb.tb_next
    return tuple(places)


def _span(place: _FramePlace) -> tuple[int, int, int]:
    """``(extra_lines, col, end_col)`` that the rebuilt frame should mark.

    The worker's own columns where it had them; otherwise the whole source
    line (if it can be read here), which Python leaves unmarked but for the
    operator of a bare expression.
    """
    _file, _name, _qualname, lineno, end_lineno, col, end_col, _module = place
    if not (lineno is None or end_lineno is None or col is None or end_col is None):
        lines = end_lineno - lineno
        if (lines == 0 and end_col > col) or (lines > 0 and end_col > 0):
            return lines, col, end_col
    text = linecache.getline(place.filename, lineno) if _HAS_COLUMNS and lineno else ""
    code = text.strip()
    if not code:
        return 0, 0, 1  # no source line is shown, so no mark either
    col = len(text[: len(text) - len(text.lstrip())].encode())
    return 0, col, col + len(code.encode())


@functools.lru_cache(maxsize=256)
def _failing_code(lines: int, col: int, end_col: int) -> types.CodeType:
    """Code whose first line fails at an expression spanning exactly these columns.

    The expression starts at *col* of line 1 and ends at *end_col* of line
    ``1 + lines``: on one line, an undefined name of that width (NameError);
    across lines, a call of None (TypeError), which spans the whole call.
    """
    if lines == 0:
        expression = "n" * (end_col - col)
    else:
        expression = "N(" + "\n" * lines + " " * (end_col - 1) + ")"
    if col:  # a line cannot be indented, but what is inside brackets can
        expression = "(" + " " * (col - 1) + expression + ")"
    return compile(expression, "<traceback>", "exec")


def _rebuilt_frame(place: _FramePlace) -> TracebackType:
    """A one-frame traceback that renders like *place* did in the worker."""
    code = _failing_code(*_span(place)).replace(
        co_firstlineno=place.lineno or 0,
        co_filename=place.filename,
        co_name=place.name,
    )
    if sys.version_info >= (3, 11):
        code = code.replace(co_qualname=place.qualname)
    namespace: dict[str, Any] = {**place.module, "__builtins__": {}, "N": None}
    try:
        exec(code, namespace, {})
    except (NameError, TypeError) as exc:
        tb = exc.__traceback__
        assert tb is not None and tb.tb_next is not None
        return tb.tb_next  # the frame of *code*, stopped at the failing part
    raise AssertionError(f"code made to fail at {place} did not")


def rebuild_traceback(places: tuple[_FramePlace, ...]) -> TracebackType | None:
    """A real traceback object with a frame for each of *places*."""
    top = last = None
    for place in places:
        tb = _rebuilt_frame(place)
        if last is None:
            top = tb
        else:
            last.tb_next = tb
        last = tb
    return top


def _reduce_traceback(tb: TracebackType) -> tuple:
    return rebuild_traceback, (frame_places(tb),)


# -- exceptions ---------------------------------------------------------------

MAX_CHAIN = 100  # exceptions of one ``__cause__``/``__context__`` chain that travel


def chain_cuts(exc: BaseException) -> dict[int, str]:
    """Where *exc*'s chain is cut to its first MAX_CHAIN exceptions, and the note why.

    The chain is walked breadth first through ``__cause__`` and
    ``__context__``, each exception once (a chain may loop back on itself).
    The map goes from the ``id`` of each kept exception that links to a cut
    one to the note it gets in place of those links; it is empty when the
    whole chain fits. A loop that fits travels whole: pickle's memo keeps it.
    """
    order = [exc]
    seen = {id(exc)}
    for link in order:  # grows as it goes: breadth first, without recursion
        for nxt in (link.__cause__, link.__context__):
            if nxt is not None and id(nxt) not in seen:
                seen.add(id(nxt))
                order.append(nxt)
    if len(order) <= MAX_CHAIN:
        return {}
    kept = {id(link) for link in order[:MAX_CHAIN]}
    note = (
        f"[pexen: the chain of this exception went on with {len(order) - MAX_CHAIN} "
        f"more exceptions (its __cause__ and __context__); they were cut, as at "
        f"most {MAX_CHAIN} travel back from a worker]"
    )
    return {
        id(link): note
        for link in order[:MAX_CHAIN]
        if any(nxt is not None and id(nxt) not in kept
               for nxt in (link.__cause__, link.__context__))
    }


def _reduce_exception(exc: BaseException, cut_note: str | None) -> tuple:
    """The exception's own reduction, plus its traceback and chain.

    The exception's ``__reduce_ex__`` keeps what its class knows how to keep
    (``SystemExit.code``, keyword-only options...); the chain and the
    traceback, which pickle drops, are put back after, as the state of the
    rebuilt exception: pickle has it in its memo by then, so a chain that
    loops back to it is pickled as a reference, not for ever. *cut_note*,
    if given, replaces the exception's links (see :func:`chain_cuts`).
    """
    reduced = exc.__reduce_ex__(PROTOCOL)
    func, args = reduced[0], reduced[1]
    state = reduced[2] if len(reduced) > 2 else None
    cause, context = exc.__cause__, exc.__context__
    notes = getattr(exc, "__notes__", None)
    if cut_note is not None:
        cause = context = None
        notes = [*(notes or ()), cut_note]
    chain = (cause, context, exc.__suppress_context__, exc.__traceback__, notes)
    return _new_exception, (func, args, state), chain, None, None, _set_chain


def _new_exception(func, args, state):
    try:
        exc = func(*args)
    except TypeError:
        if not (isinstance(func, type) and issubclass(func, BaseException)):
            raise
        # an __init__ that wants other arguments than the exception keeps in
        # ``args`` (the usual reason exceptions do not unpickle): skip it
        exc = func.__new__(func, *args)
        exc.args = args
    if state:
        setstate = getattr(exc, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:
            exc.__dict__.update(state)
    return exc


def _set_chain(exc, chain):
    cause, context, suppress, tb, notes = chain
    exc.__cause__ = cause
    exc.__context__ = context
    exc.__suppress_context__ = suppress
    exc.__traceback__ = tb
    if notes is not None:
        exc.__notes__ = notes


class _KeepingChains:
    """What a pickler this is mixed into adds: exceptions keep their traceback
    and their ``__cause__``/``__context__`` chain, which ``cuts`` (from
    :func:`chain_cuts`) says where to end; the rest goes as the pickler does."""

    cuts: dict[int, str] = {}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            return _reduce_exception(obj, self.cuts.get(id(obj)))
        if isinstance(obj, TracebackType):
            return _reduce_traceback(obj)
        # plain pickle's Pickler has no reducer_override; cloudpickle's has
        pickler_own = getattr(super(), "reducer_override", None)
        return NotImplemented if pickler_own is None else pickler_own(obj)


class _ChainPickler(_KeepingChains, pickle.Pickler):
    """Plain pickle that keeps tracebacks and chains."""


class _ChainCloudPickler(_KeepingChains, _SourceKeepingPickler):
    """cloudpickle (exception classes made at run time) that keeps them too."""


def _type_name(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    if module in (None, "builtins"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as err:  # __str__ itself broken
        return f"<str() failed: {_reason(err)}>"


def _format(exc: BaseException, tb: TracebackType | None) -> str:
    try:
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception as err:
        return f"<the traceback could not be formatted: {_reason(err)}>\n"


def dumps_excinfo(excinfo: ExceptionInfo) -> bytes:
    """Pickle an ExceptionInfo with its traceback and chain; never fails.

    The exception is round-tripped here, in the worker, so one that pickles
    but cannot be rebuilt is replaced by a stand-in before it travels. Its
    type name, message and formatted traceback always travel too, so the
    receiver can still make a stand-in if *it* cannot rebuild the original.
    """
    _type, exc, tb = excinfo
    if exc.__traceback__ is not tb:
        exc = exc.with_traceback(tb)
    type_name = _type_name(type(exc))
    message = _safe_str(exc)
    text = _format(exc, tb)
    places = frame_places(tb)
    kind = "exc"  # with its chain
    reason = ""
    cuts = chain_cuts(exc)
    for pickler_cls in (_ChainPickler, _ChainCloudPickler):
        try:
            data = _dumps_with(pickler_cls, exc, cuts=cuts)
        except Exception as err:  # the last, most capable attempt says why
            reason = pickling_reason(exc, err, "exception")
            continue
        try:
            loads(data)
            break
        except Exception as err:
            reason = f"it cannot be rebuilt from its pickle: {_reason(err)}"
    else:
        kind = "bare"  # the exception alone, without its chain
        try:
            data = dumps_value(exc, "exception")
            loads(data)
        except Exception:
            stand_in = RemoteTaskError(type_name, message, text, reason)
            data = pickle.dumps(stand_in, PROTOCOL)
    return pickle.dumps((kind, data, places, type_name, message, text), PROTOCOL)


def loads_excinfo(blob: bytes) -> ExceptionInfo:
    """Rebuild an ExceptionInfo whose ``tb`` is a real traceback object.

    If the exception cannot be rebuilt in this process (its class is not
    importable here, say), a :class:`RemoteTaskError` stands in for it.
    """
    kind, data, places, type_name, message, text = loads(blob)
    try:
        exc = loads(data)
    except Exception as err:
        exc = RemoteTaskError(
            type_name, message, text, f"cannot be unpickled here: {_reason(err)}"
        )
        kind = "bare"
    tb = exc.__traceback__ if kind == "exc" else None
    if tb is None and places:
        tb = rebuild_traceback(places)
        exc.__traceback__ = tb
    return ExceptionInfo(type(exc), exc, tb)

"""Task metadata: what a task requires and provides, what it locks, and more.

Metadata lives in a :class:`SchedMeta` attached to the callable as the
``pexen_meta`` attribute. A task without metadata costs nothing: the scheduler
reads the attribute and uses shared defaults when it is absent.
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
from collections.abc import Callable, Hashable, Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeVar, overload

import attrs

from pexen._errors import PexenError
from pexen.sched._naming import task_name

__all__ = [
    "MetaError",
    "SchedMeta",
    "assign_meta",
    "assign_val",
    "func_meta",
    "has_meta",
    "retrieve_meta",
]

META_ATTR = "pexen_meta"
TAG_FIELDS = ("requires", "provides", "claims", "uses")

F = TypeVar("F", bound=Callable[..., Any])


class MetaError(PexenError, TypeError):
    """Raised at once for an unknown metadata field or a value of the wrong type."""


def _describe(obj: object) -> str:
    """Name a task for an error message, quoted."""
    return repr(task_name(obj))


def _tag_set(value: Any, field: str) -> set:
    """Normalise a collection of tags to a set; reject strings and non-collections."""
    if isinstance(value, (str, bytes)):
        raise MetaError(
            f"{field}={value!r}: expected a collection of tags, got a string "
            f"(which would be taken as its characters); write {field}=[{value!r}]"
        )
    if not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise MetaError(
            f"{field}={value!r}: expected a collection of tags "
            f"(list, tuple or set), got {type(value).__name__}"
        )
    tags = set()
    for tag in value:
        try:
            # a tuple is Hashable to the ABC yet fails to hash if it holds a list
            if not isinstance(tag, Hashable):
                raise TypeError
            tags.add(tag)
        except TypeError:
            raise MetaError(f"{field}={value!r}: tag {tag!r} is not hashable") from None
    return tags


def _requires(value: Any) -> set:
    return _tag_set(value, "requires")


def _provides(value: Any) -> set:
    return _tag_set(value, "provides")


def _claims(value: Any) -> set:
    return _tag_set(value, "claims")


def _uses(value: Any) -> set:
    return _tag_set(value, "uses")


def _kwargs_dict(value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise MetaError(
            f"kwargs={value!r}: expected a mapping of keyword arguments, "
            f"got {type(value).__name__}"
        )
    bad = [key for key in value if not isinstance(key, str) or not key.isidentifier()]
    if bad:
        raise MetaError(f"kwargs={value!r}: keys must be identifiers, not {bad[0]!r}")
    return dict(value)


def _check_timeout(_inst: object, _attr: object, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetaError(f"timeout={value!r}: expected seconds (a number) or None")
    if not (value > 0 and math.isfinite(value)):
        raise MetaError(f"timeout={value!r}: expected a positive, finite number")
    if value > MAX_TIMEOUT:
        raise MetaError(
            f"timeout={value!r}: at most {MAX_TIMEOUT:g} s (a year); "
            "for no timeout, give None"
        )


MAX_TIMEOUT = 365 * 24 * 3600  # what every pool's timers can hold, with room


def _real_problem(value: Any) -> str | None:
    """Why *value* is not a finite real number (None if it is one)."""
    if type(value) is int:  # the defaults, and most values: no ABC check
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"expected a number, got {type(value).__name__}"
    # an int is finite however large (math.isfinite would overflow on it)
    if not isinstance(value, int) and not math.isfinite(value):
        return "expected a finite number"
    return None


def _amount(value: Any, where: str) -> Any:
    """Check one amount of a counted resource: a positive, finite number."""
    problem = _real_problem(value)
    if problem is None and not value > 0:
        problem = "expected a positive amount (leave the resource out for none)"
    if problem is not None:
        raise MetaError(f"{where}: {problem}")
    return value


def _needs(value: Any) -> dict:
    if type(value) is dict and not value:  # the default, a fresh dict
        return value
    if not isinstance(value, Mapping):
        raise MetaError(
            f"needs={value!r}: expected a mapping of resource -> amount, as "
            f"needs={{'gpu': 1, 'mem_gb': 8}}; got {type(value).__name__}"
        )
    return {
        res: _amount(amount, f"needs={value!r}: the amount of {res!r}")
        for res, amount in value.items()
    }


def _check_cost(_inst: object, _attr: object, value: Any) -> None:
    problem = _real_problem(value)
    if problem is None and value < 0:
        problem = "expected a cost of 0 or more"
    if problem is not None:
        raise MetaError(f"cost={value!r}: {problem}")


def _check_retries(_inst: object, _attr: object, value: Any) -> None:
    if type(value) is not int:
        raise MetaError(
            f"retries={value!r}: expected how many times a failed task may run "
            f"again (an int), got {type(value).__name__}"
        )
    if value < 0:
        raise MetaError(f"retries={value!r}: expected 0 or more")


RETRY_ON = (Exception,)  # retry_on's default: any error


def _exception_types(value: Any) -> tuple:
    """Normalise ``retry_on`` to a tuple of exception classes."""
    if value is RETRY_ON:
        return value
    items = (value,) if isinstance(value, type) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise MetaError(
            f"retry_on={value!r}: expected exception classes, as "
            f"retry_on=(OSError, TimeoutError); got {type(value).__name__}"
        )
    types = tuple(items)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise MetaError(
                f"retry_on={value!r}: {item!r} is not an exception class; "
                f"give the classes themselves, as retry_on=(OSError,)"
            )
    return types


def _check_retry_delay(_inst: object, _attr: object, value: Any) -> None:
    problem = _real_problem(value)
    if problem is None and value < 0:
        problem = "expected seconds, 0 or more"
    elif problem is None and value > MAX_TIMEOUT:
        problem = f"at most {MAX_TIMEOUT:g} s (a year)"
    if problem is not None:
        raise MetaError(f"retry_delay={value!r}: {problem}")


def _check_retry_backoff(_inst: object, _attr: object, value: Any) -> None:
    problem = _real_problem(value)
    if problem is None and value < 1:
        problem = (
            "expected a multiplier of 1 or more (1 keeps the delay, 2 doubles "
            "it after each attempt)"
        )
    if problem is not None:
        raise MetaError(f"retry_backoff={value!r}: {problem}")


def _check_name(_inst: object, _attr: object, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise MetaError(
            f"name={value!r}: expected a non-empty string (the task's identity "
            "across runs, as a journal records it) or None"
        )


def _is_nan(value: Any) -> bool:
    """Whether *value* is NaN (float, Decimal, any real) or a tuple or list
    holding one (they sort by their items)."""
    if type(value) is int:  # the usual priority: quick
        return False
    if isinstance(value, (tuple, list)):
        return any(_is_nan(item) for item in value)
    if isinstance(value, Decimal):
        return value.is_nan()  # != would raise for a signalling NaN
    return isinstance(value, numbers.Real) and value != value


def _check_priority(_inst: object, _attr: object, value: Any) -> None:
    # NaN compares false with everything, so a sort would order tasks anyhow
    if _is_nan(value):
        raise MetaError(
            f"priority={value!r}: NaN is not ordered (every comparison with it "
            "is false), so the order of tasks would be arbitrary; give a number"
        )


@attrs.define(slots=True)
class SchedMeta:
    """The scheduling metadata of one task.

    The four tag fields accept any collection of hashable tags and are stored
    as sets. ``priority`` may be anything sortable (lower runs first);
    ``kwargs`` are passed to the task by keyword; ``timeout`` is in seconds.
    ``needs`` maps counted resources to amounts (``Sched(capacity=...)`` says
    how much there is); ``cost`` weighs the task for ``Sched(order=...)``;
    ``retries`` failed attempts run again when their exception is one of
    ``retry_on`` (a ``TaskFailError`` only when ``retry_on`` names it), after
    ``retry_delay`` seconds, multiplied by ``retry_backoff`` each time.
    ``name`` is the task's identity across runs (``task_identity``); by
    default its call path, else its module and qualified name.
    """

    requires: set = attrs.field(factory=set, converter=_requires)
    provides: set = attrs.field(factory=set, converter=_provides)
    claims: set = attrs.field(factory=set, converter=_claims)
    uses: set = attrs.field(factory=set, converter=_uses)
    priority: Any = attrs.field(default=0, validator=_check_priority)
    kwargs: dict = attrs.field(factory=dict, converter=_kwargs_dict)
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)
    name: str | None = attrs.field(default=None, validator=_check_name)
    needs: dict = attrs.field(factory=dict, converter=_needs)
    cost: Any = attrs.field(default=1, validator=_check_cost)
    retries: int = attrs.field(default=0, validator=_check_retries)
    retry_on: tuple = attrs.field(default=RETRY_ON, converter=_exception_types)
    retry_delay: Any = attrs.field(default=0, validator=_check_retry_delay)
    retry_backoff: Any = attrs.field(default=1, validator=_check_retry_backoff)


FIELDS = tuple(field.name for field in attrs.fields(SchedMeta))


def _init_naming_unknown_fields(init: Callable[..., None]) -> Callable[..., None]:
    """``SchedMeta(requirez=...)`` raises MetaError with a did-you-mean hint,
    as ``assign_val`` does, instead of a bare ``TypeError``."""

    @functools.wraps(init)
    def __init__(self: SchedMeta, *args: Any, **fields: Any) -> None:
        _check_fields(None, fields, where="SchedMeta()")
        init(self, *args, **fields)

    return __init__


SchedMeta.__init__ = _init_naming_unknown_fields(SchedMeta.__init__)  # type: ignore[method-assign]


def _check_fields(obj: object, fields: Iterable[str], where: str = "") -> None:
    for name in fields:
        if name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MetaError(
                f"{where or 'task ' + _describe(obj)}: unknown metadata field "
                f"{name!r}{hint}; known fields: {', '.join(FIELDS)}"
            )


def _attach(obj: object, meta: SchedMeta) -> None:
    try:
        setattr(obj, META_ATTR, meta)
    except (AttributeError, TypeError):
        raise MetaError(
            f"cannot attach metadata to {obj!r}: it does not accept attributes; "
            "wrap it in a function or functools.partial first"
        ) from None


def has_meta(obj: object) -> bool:
    """Return whether *obj* carries a :class:`SchedMeta`."""
    return isinstance(getattr(obj, META_ATTR, None), SchedMeta)


def retrieve_meta(obj: object) -> SchedMeta | None:
    """Return the :class:`SchedMeta` of *obj*, or None if it has none."""
    meta = getattr(obj, META_ATTR, None)
    return meta if isinstance(meta, SchedMeta) else None


def assign_meta(obj: object, meta: SchedMeta | None = None) -> SchedMeta:
    """Attach *meta* to *obj*; without it, fetch its metadata, creating an empty one."""
    if meta is None:
        existing = retrieve_meta(obj)
        if existing is not None:
            return existing
        meta = SchedMeta()
    elif not isinstance(meta, SchedMeta):
        raise MetaError(
            f"task {_describe(obj)}: expected a SchedMeta, got {type(meta).__name__}"
        )
    _attach(obj, meta)
    return meta


def assign_val(obj: object, **fields: Any) -> SchedMeta:
    """Set metadata *fields* of *obj* (creating its metadata if needed)."""
    _check_fields(obj, fields)
    existing = retrieve_meta(obj)
    try:
        if existing is None:
            meta = SchedMeta(**fields)
        else:
            meta = existing
            for name, value in fields.items():
                setattr(meta, name, value)
    except MetaError as exc:
        raise MetaError(f"task {_describe(obj)}: {exc}") from None
    if existing is None:
        _attach(obj, meta)
    return meta


@overload
def func_meta(fn: F, /) -> F: ...
@overload
def func_meta(**fields: Any) -> Callable[[F], F]: ...


def func_meta(fn: Any = None, /, **fields: Any) -> Any:
    """Decorate a callable with metadata: ``@func_meta`` or ``@func_meta(**fields)``."""
    if fn is not None:
        if fields or not callable(fn):
            raise MetaError(
                f"func_meta takes keyword fields only, as @func_meta(requires=...); "
                f"got {fn!r}"
            )
        assign_meta(fn)
        return fn

    def decorate(fn: F) -> F:
        assign_val(fn, **fields)
        return fn

    return decorate

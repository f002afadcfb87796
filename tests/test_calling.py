"""How a task is called, decided from its signature (SPEC §3)."""

from __future__ import annotations

import functools
import inspect

import pytest

from pexen import sched
from pexen.sched import SchedulerError, _calling
from pexen.sched.meta import assign_val, func_meta

PRESET = {"preset": "p"}


def run_all(make_pool, *tasks):
    """Run *tasks* in one run, on one pool, with the PRESET shared keys; return
    their ``ret`` in the order given. One run rather than one per task, so a
    process pool starts once per test; each task still has its own metadata
    and its own calling decision, which a decision cached for the one before
    it would spoil."""
    s = sched.Sched(tasks)
    s.add_shared(**PRESET)
    results = list(s.run(pool=make_pool(1, 1)))
    assert len(results) == len(tasks)
    by_task = {id(res.task): res for res in results}
    assert set(by_task) == {id(task) for task in tasks}  # each its very object
    for res in results:
        assert res.excinfo is None, res.excinfo
    return [by_task[id(task)].ret for task in tasks]


def run_one(make_pool, task):
    """Run *task* alone with the PRESET shared keys; return its ``ret``."""
    (ret,) = run_all(make_pool, task)
    return ret


def no_args():
    return "nothing"


def only_shared(shared):
    return ("shared", dict(shared))


def only_var_kw(**kw):
    return ("kw", kw)


def kw_only(*, wtype, build=1):
    return ("kw", wtype, build)


def shared_and_kw(shared, wtype, build=1):
    return ("both", dict(shared), wtype, build)


def var_args(*args):
    return ("args", args)


def var_args_and_kw(*args, **kw):
    return ("args", args, kw)


def shared_with_default(shared=None):
    return ("shared", shared)


def positional_only(shared, /):
    return ("shared", shared)


def first_param_is_a_kwarg(wtype, build=1):
    return ("kw", wtype, build)


CASES = [
    (no_args, {}, "nothing"),
    (only_shared, {}, ("shared", PRESET)),
    (only_var_kw, {"a": 1}, ("kw", {"a": 1})),
    (only_var_kw, {}, ("kw", {})),
    (kw_only, {"wtype": "x"}, ("kw", "x", 1)),
    (kw_only, {"wtype": "x", "build": 2}, ("kw", "x", 2)),
    (shared_and_kw, {"wtype": "x"}, ("both", PRESET, "x", 1)),
    (shared_and_kw, {"wtype": "x", "build": 3}, ("both", PRESET, "x", 3)),
    (var_args, {}, ("args", (PRESET,))),
    (var_args_and_kw, {"k": 1}, ("args", (PRESET,), {"k": 1})),
    (shared_with_default, {}, ("shared", PRESET)),
    (positional_only, {}, ("shared", PRESET)),
    (first_param_is_a_kwarg, {"wtype": "w"}, ("kw", "w", 1)),
    (first_param_is_a_kwarg, {"wtype": "w", "build": 0}, ("kw", "w", 0)),
]


def fresh(fn, kwargs):
    """A new task calling *fn*, with *fn*'s signature and *kwargs* as its own."""
    task = functools.wraps(fn)(lambda *a, **k: fn(*a, **k))
    task.__wrapped__ = fn
    assign_val(task, kwargs=kwargs)
    return task


CASE_IDS = [f"{fn.__name__}-{'-'.join(kw) or 'nokw'}" for fn, kw, _ in CASES]


def test_functions(make_pool):
    # a fresh function object per case: metadata must not leak between cases
    tasks = [fresh(fn, kwargs) for fn, kwargs, _ in CASES]
    got = dict(zip(CASE_IDS, run_all(make_pool, *tasks), strict=True))
    expected = [expected for _, _, expected in CASES]
    assert got == dict(zip(CASE_IDS, expected, strict=True))


def test_plain_function_with_meta(make_pool):
    @func_meta(kwargs={"wtype": "y", "build": 5})
    def task(shared, wtype, build=1):
        return (dict(shared), wtype, build)

    assert run_one(make_pool, task) == (PRESET, "y", 5)


def test_lambdas(make_pool):
    kw = lambda **k: k  # noqa: E731 - a lambda on purpose
    assign_val(kw, kwargs={"x": 2})
    assert run_all(
        make_pool, lambda: 1, lambda shared: sorted(shared), lambda *a: len(a), kw
    ) == [1, ["preset"], 1, {"x": 2}]


def test_lambdas_sharing_code_with_different_kwargs(make_pool):
    """Tasks made in a loop share a code object; each gets its own kwargs."""
    def make(kwargs):
        def task(shared=None, **kw):
            return (shared is not None, kw)

        assign_val(task, kwargs=kwargs)
        return task

    with_x, without, first_named = make({"x": 1}), make({}), make({"shared": 5})
    # the first parameter's name is a kwarg (first_named): it is not given shared
    assert run_all(make_pool, with_x, without, first_named) == [
        (True, {"x": 1}), (True, {}), (True, {})]


class Suite:
    """Bound methods, class and static methods as tasks."""

    def __init__(self, name="suite"):
        self.name = name

    def bare(self):
        return ("bare", self.name)

    def with_shared(self, shared):
        return ("shared", self.name, dict(shared))

    def with_kw(self, *, level):
        return ("kw", self.name, level)

    @classmethod
    def cls_method(cls, shared):
        return ("cls", cls.__name__, dict(shared))

    @staticmethod
    def static():
        return "static"


def test_bound_methods(make_pool):
    suite = Suite("s1")
    tasks = (suite.bare, suite.with_shared, Suite.cls_method, Suite.static)
    assert run_all(make_pool, *tasks) == [
        ("bare", "s1"), ("shared", "s1", PRESET), ("cls", "Suite", PRESET), "static"]


def test_bound_method_with_kwargs_from_function_meta(make_pool):
    class Kw:
        @func_meta(kwargs={"level": 3})
        def task(self, *, level):
            return ("kw", level)

    assert run_one(make_pool, Kw().task) == ("kw", 3)


def test_partials(make_pool):
    def two(a, shared):
        return (a, dict(shared))

    def three(a, b, *, c=0):
        return (a, b, c)

    # a keyword-bound first parameter leaves shared to the second
    part = functools.partial(two, a="A")
    with pytest.raises(SchedulerError, match="cannot be called"):
        sched.Sched([part]).check()
    fixed = functools.partial(three, 1, 2)
    with_kw = functools.partial(three, 1, 2)
    assign_val(with_kw, kwargs={"c": 9})
    takes_shared = functools.partial(three, 1)
    tasks = (functools.partial(two, "A"), fixed, with_kw, takes_shared)
    assert run_all(make_pool, *tasks) == [
        ("A", PRESET), (1, 2, 0), (1, 2, 9), (1, PRESET, 0)]


def test_callable_objects(make_pool):
    class NoArgs:
        def __call__(self):
            return "called"

    class WithShared:
        def __call__(self, shared, *, flag=False):
            return (dict(shared), flag)

    flagged = WithShared()
    assign_val(flagged, kwargs={"flag": True})
    assert run_all(make_pool, NoArgs(), WithShared(), flagged) == [
        "called", (PRESET, False), (PRESET, True)]


def test_wrapped_function_uses_wrapped_signature(make_pool):
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return ("wrapped", fn(*args, **kwargs))

        return wrapper

    @deco
    def task():
        return 1

    @deco
    def task_shared(shared):
        return sorted(shared)

    assert run_all(make_pool, task, task_shared) == [
        ("wrapped", 1), ("wrapped", ["preset"])]


def test_builtin_without_signature(make_pool):
    # dict has no introspectable signature: it gets the kwargs only
    task = functools.partial(dict)
    assign_val(task, kwargs={"a": 1})
    assert run_one(make_pool, task) == {"a": 1}


def test_shared_is_a_private_dict(make_pool):
    def writer(shared):
        shared["mine"] = 1
        return dict(shared)

    def reader(shared):
        return dict(shared)

    s = sched.Sched([writer, reader])
    s.add_shared(base=0)
    results = {r.task: r for r in s.run(pool=make_pool(2, 0))}
    assert results[writer].ret == {"base": 0, "mine": 1}
    assert results[writer].shared == {"base": 0, "mine": 1}
    assert results[reader].ret == {"base": 0}
    assert results[reader].shared == {"base": 0}


# -- signatures that cannot take what the metadata gives -------------------


def unexpected_kwarg():
    pass


def missing_second(shared, other):
    pass


def missing_kw_only(*, needed):
    pass


BAD = [
    (unexpected_kwarg, {"a": 1}, r"unexpected keyword argument 'a'"),
    (missing_second, {}, r"missing a required argument: 'other'"),
    (missing_kw_only, {}, r"missing a required (keyword-only )?argument: 'needed'"),
    (missing_kw_only, {"needed": 1, "extra": 2}, r"unexpected keyword .*'extra'"),
]


@pytest.mark.parametrize(("fn", "kwargs", "why"), BAD,
                         ids=[fn.__name__ for fn, _, _ in BAD])
def test_uncallable_signature_fails_before_the_run(make_pool, fn, kwargs, why):
    started = []

    def first():
        started.append(1)

    task = functools.wraps(fn)(lambda *a, **k: fn(*a, **k))
    task.__wrapped__ = fn
    assign_val(task, kwargs=kwargs)
    s = sched.Sched([first, task])
    with pytest.raises(SchedulerError, match=rf"task '{fn.__name__}' cannot be called"
                                             rf".*{why}.*its signature is \("):
        s.run(pool=make_pool(1, 1))
    with pytest.raises(SchedulerError, match=why):
        s.check()
    assert started == []


def test_uncallable_message_names_what_was_given():
    @func_meta(kwargs={"x": 1, "y": 2})
    def needs_nothing(shared):
        pass

    with pytest.raises(SchedulerError, match=r"gives it \(shared, x=, y=\): "):
        sched.Sched([needs_nothing]).check()

    def takes_two(a, b):
        pass

    with pytest.raises(SchedulerError, match=r"gives it \(shared\): .*'b'"):
        sched.Sched([takes_two]).check()


def test_uncallable_without_arguments_says_so():
    class Strict:
        def __call__(self, *, a):
            pass

    task = Strict()
    with pytest.raises(SchedulerError, match=r"task '<.*Strict object.*>' cannot be "
                                             r"called .* \(no arguments\): missing"):
        sched.Sched([task]).check()


# -- the cached decision -----------------------------------------------------


def shared_first(shared, a, b=2, *, c=3):
    return (shared, a, b, c)


def any_args(*args, **kw):
    return (args, kw)


def shared_only_by_name(*, shared=None, d=4):
    return (shared, d)


def positional_pair(shared, a, /, b=0):
    return (shared, a, b)


def _outcome(decide, task, kwargs):
    """What *decide* says: ``(True|False, None)``, or ``(None, message)``."""
    try:
        return decide(task, kwargs), None
    except SchedulerError as exc:
        return None, str(exc)


PARTIAL_BINDINGS = [
    ((), {}),
    (({"bound": "shared"},), {}),  # binds the shared parameter by position
    ((), {"shared": {"bound": "shared"}}),  # ... and by keyword
    (({"s": 1}, "A"), {}),
    (({"s": 1}, "A", "B"), {}),
    (({"s": 1}, "A", "B", "too many"), {}),
    ((), {"a": "A"}),
    ((), {"a": "A", "c": 30}),
    (("x",), {"b": 20}),
    ((), {"d": 40}),
    ((), {"unknown": 0}),
]
KWARGS = [{}, {"a": 1}, {"b": 2}, {"c": 3}, {"a": 1, "c": 3}, {"shared": 0},
          {"d": 4}, {"unknown": 5}]


@pytest.mark.parametrize("fn", [shared_first, any_args, shared_only_by_name,
                                positional_pair, no_args])
def test_cached_decision_for_partials_matches_a_fresh_one(fn, monkeypatch):
    # each partial is made anew, as factories do, and asked twice: the first
    # may fill the cache, the second is answered from it, bound values differ
    monkeypatch.setattr(_calling, "_decision_cache", {})
    for args, keywords in PARTIAL_BINDINGS:
        for kwargs in KWARGS:
            for value in ("first", "second"):
                bound = [*args[:1], *(f"{arg}-{value}" for arg in args[1:])]
                task = functools.partial(fn, *bound, **keywords)
                fresh = _outcome(_calling._decide, task, kwargs)
                cached = _outcome(_calling.passes_shared, task, kwargs)
                assert cached == fresh, (fn, args, keywords, kwargs, value)
    assert _calling._decision_cache  # the cache was used


def test_a_partial_binding_shared_is_not_given_it_again(make_pool):
    by_position = functools.partial(shared_first, {"mine": 1})
    assign_val(by_position, kwargs={"a": "A"})
    by_keyword = functools.partial(shared_only_by_name, shared={"mine": 2})
    assert run_all(make_pool, by_position, by_keyword) == [
        ({"mine": 1}, "A", 2, 3), ({"mine": 2}, 4)]


def test_partials_of_one_function_inspect_it_once(monkeypatch):
    monkeypatch.setattr(_calling, "_decision_cache", {})
    calls = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda fn: calls.append(fn) or real(fn))
    for n in range(5):
        assert _calling.passes_shared(functools.partial(shared_first, a=n), {})
        assert not _calling.passes_shared(functools.partial(shared_first, n, n, n), {})
    assert len(calls) == 2
    # what inspect.signature would see differently is never taken from the cache
    special = functools.partial(shared_first, a=0)
    special.__signature__ = inspect.signature(any_args)
    assert _calling.passes_shared(special, {"unknown": 1})
    assert len(calls) == 4


class Shaped:
    """Instances of one class share their class's ``__call__`` signature."""

    def __call__(self, shared, a=1, *, c=3):
        return (shared, a, c)


class AnyArgs:
    def __call__(self, *args, **kw):
        return (args, kw)


class KwOnly:
    def __call__(self, *, shared=None, d=4):
        return (shared, d)

    def method(self, shared, a=0, /, b=0):
        return (shared, a, b)


@pytest.mark.parametrize("make", [Shaped, AnyArgs, KwOnly, lambda: KwOnly().method],
                         ids=["shared-first", "any-args", "kw-only", "bound-method"])
def test_cached_decision_for_objects_matches_a_fresh_one(make, monkeypatch):
    monkeypatch.setattr(_calling, "_decision_cache", {})
    for kwargs in KWARGS:
        for _ in ("first", "second"):  # the second is answered from the cache
            task = make()
            fresh = _outcome(_calling._decide, task, kwargs)
            cached = _outcome(_calling.passes_shared, task, kwargs)
            assert cached == fresh, (make, kwargs)
    assert _calling._decision_cache  # the cache was used


def test_instances_of_one_class_inspect_it_once(monkeypatch):
    monkeypatch.setattr(_calling, "_decision_cache", {})
    calls = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda fn: calls.append(fn) or real(fn))
    instances = [Shaped() for _ in range(1000)]
    assert all(_calling.passes_shared(obj, {"a": 2}) for obj in instances)
    assert len(calls) == 1
    # bound methods of one function: once too
    assert all(_calling.passes_shared(KwOnly().method, {}) for _ in range(1000))
    assert len(calls) == 2


def test_an_instance_with_its_own_signature_is_decided_on_its_own(make_pool):
    plain, told = AnyArgs(), AnyArgs()
    told.__signature__ = inspect.Signature()  # "takes nothing": gets no shared
    assert run_all(make_pool, plain, told, AnyArgs()) == [
        ((PRESET,), {}), ((), {}), ((PRESET,), {})]


class Wrapping:
    """Called as what it wraps, like the capture wrapper of ``pexen run``."""

    def __init__(self, fn):
        self.__wrapped__ = fn

    def __call__(self, *args, **kwargs):
        return self.__wrapped__(*args, **kwargs)


def test_instances_wrapping_different_functions_are_decided_apart(make_pool):
    tasks = (Wrapping(no_args), Wrapping(only_shared), Wrapping(no_args))
    assert run_all(make_pool, *tasks) == ["nothing", ("shared", PRESET), "nothing"]


def test_an_instance_attribute_call_is_not_what_runs(make_pool):
    # Python calls type(obj).__call__, and so does inspect.signature: an
    # instance's own __call__ changes neither, cached or not
    first, second = Shaped(), Shaped()
    second.__call__ = lambda: "instance attribute"
    assert run_all(make_pool, first, second) == [(PRESET, 1, 3), (PRESET, 1, 3)]

"""Task metadata: ``SchedMeta`` and the helpers that attach it (SPEC §2)."""

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal
from fractions import Fraction

import pytest

from pexen import PexenError, sched
from pexen.sched import meta
from pexen.sched.meta import (
    MetaError,
    SchedMeta,
    assign_meta,
    assign_val,
    func_meta,
    has_meta,
    retrieve_meta,
)


def plain():
    return "plain"


# -- SchedMeta itself ------------------------------------------------------


def test_defaults():
    m = SchedMeta()
    assert m.requires == set()
    assert m.provides == set()
    assert m.claims == set()
    assert m.uses == set()
    assert m.priority == 0
    assert m.kwargs == {}
    assert m.timeout is None
    assert m.needs == {}
    assert m.cost == 1
    assert (m.retries, m.retry_on, m.retry_delay, m.retry_backoff) == (
        0, (Exception,), 0, 1
    )


def test_defaults_are_not_shared_between_instances():
    a, b = SchedMeta(), SchedMeta()
    a.requires.add("x")
    a.kwargs["k"] = 1
    assert b.requires == set()
    assert b.kwargs == {}


@pytest.mark.parametrize("field", ["requires", "provides", "claims", "uses"])
@pytest.mark.parametrize(
    "given", [lambda: ["a", "b", "a"], lambda: ("a", "b"), lambda: {"a", "b"},
              lambda: frozenset({"a", "b"}), lambda: iter(["a", "b"])],
    ids=["list", "tuple", "set", "frozenset", "iterator"],
)
def test_tag_fields_stored_as_sets(field, given):
    m = SchedMeta(**{field: given()})
    value = getattr(m, field)
    assert type(value) is set
    assert value == {"a", "b"}


def test_tag_set_is_a_copy():
    tags = {"a"}
    m = SchedMeta(requires=tags)
    tags.add("b")
    assert m.requires == {"a"}


def test_any_hashable_tag():
    m = SchedMeta(provides=[1, ("t", 2), frozenset({3}), None])
    assert m.provides == {1, ("t", 2), frozenset({3}), None}


@pytest.mark.parametrize("field", ["requires", "provides", "claims", "uses"])
def test_string_for_tags_says_so(field):
    with pytest.raises(MetaError, match=rf"{field}='abc'.*got a string") as info:
        SchedMeta(**{field: "abc"})
    assert f"{field}=['abc']" in str(info.value)


def test_bytes_for_tags_rejected():
    with pytest.raises(MetaError, match=r"requires=b'ab'.*string"):
        SchedMeta(requires=b"ab")


def test_unhashable_tag():
    with pytest.raises(MetaError, match=r"provides=.*tag \['x'\] is not hashable"):
        SchedMeta(provides=[["x"]])


def test_tag_that_fails_to_hash():
    # a tuple is Hashable to the ABC but hashing it fails on its contents
    with pytest.raises(MetaError, match=r"requires=.*\(1, \[2\]\).*not hashable"):
        SchedMeta(requires=[(1, [2])])


@pytest.mark.parametrize("value", [1, 2.5, None, {"a": 1}], ids=repr)
def test_wrong_type_for_tags(value):
    with pytest.raises(MetaError, match=rf"claims={value!r}: expected a collection"):
        SchedMeta(claims=value)


def test_meta_error_is_a_pexen_type_error():
    assert issubclass(MetaError, PexenError)
    assert issubclass(MetaError, TypeError)


def test_priority_any_sortable():
    assert SchedMeta(priority=(1, "a")).priority == (1, "a")
    assert SchedMeta(priority=-3.5).priority == -3.5


NANS = [math.nan, -math.nan, (1, math.nan), [2, math.nan], (0, ("a", math.nan)),
        Decimal("NaN"), Decimal("sNaN"), (Decimal("-NaN"),)]


@pytest.mark.parametrize("value", NANS, ids=repr)
def test_nan_priority_is_refused(value):
    # NaN compares false with everything: the order would be left to chance
    message = re.escape(f"priority={value!r}: NaN is not ordered (every comparison "
                        "with it is false), so the order of tasks would be "
                        "arbitrary; give a number")
    with pytest.raises(MetaError, match=f"^{message}$"):
        SchedMeta(priority=value)

    def task():
        pass

    with pytest.raises(MetaError, match=f"^task 'test_nan_priority_is_refused.<locals>"
                                        f".task': {message}$"):
        func_meta(priority=value)(task)
    meta = assign_val(task, priority=1)
    with pytest.raises(MetaError, match=f"^task '.*task': {message}$"):
        assign_val(task, priority=value)
    with pytest.raises(MetaError, match=f"^{message}$"):
        meta.priority = value
    assert meta.priority == 1


def test_priorities_that_are_not_nan_are_kept():
    for value in (math.inf, -math.inf, (1, "nan"), Decimal("1.5"), 2**70, "nan"):
        assert SchedMeta(priority=value).priority == value


def test_kwargs_copied_to_dict():
    given = {"a": 1}
    m = SchedMeta(kwargs=given)
    given["b"] = 2
    assert m.kwargs == {"a": 1}


@pytest.mark.parametrize("value", [[("a", 1)], "ab", 3, None], ids=repr)
def test_kwargs_wrong_type(value):
    with pytest.raises(MetaError, match=r"kwargs=.*expected a mapping"):
        SchedMeta(kwargs=value)


@pytest.mark.parametrize("key", [1, "not an identifier", "2x"], ids=repr)
def test_kwargs_keys_must_be_identifiers(key):
    with pytest.raises(MetaError, match=rf"keys must be identifiers, not {key!r}"):
        SchedMeta(kwargs={key: 1})


@pytest.mark.parametrize("value", [1, 0.5, 3600])
def test_timeout_accepts_positive_numbers(value):
    assert SchedMeta(timeout=value).timeout == value


@pytest.mark.parametrize(
    "value", [0, -1, math.inf, math.nan, -math.inf], ids=repr
)
def test_timeout_must_be_positive_and_finite(value):
    with pytest.raises(MetaError, match=r"timeout=.*positive, finite"):
        SchedMeta(timeout=value)


def test_timeout_of_more_than_a_year_is_refused():
    # the process pool's alarm and poll() cannot hold 1e12 s: say so up front
    assert SchedMeta(timeout=365 * 24 * 3600).timeout == 365 * 24 * 3600
    message = r"timeout=1000000000000.0: at most 3.1536e\+07 s \(a year\); for no"
    with pytest.raises(MetaError, match=message):
        SchedMeta(timeout=1e12)


@pytest.mark.parametrize("value", [True, "10", [1]], ids=repr)
def test_timeout_must_be_a_number(value):
    with pytest.raises(MetaError, match=re.escape(f"timeout={value!r}: expected sec")):
        SchedMeta(timeout=value)


def test_setting_a_field_converts_and_validates():
    m = SchedMeta()
    m.requires = ["a", "a"]
    assert m.requires == {"a"}
    with pytest.raises(MetaError, match="got a string"):
        m.provides = "x"
    with pytest.raises(MetaError, match="timeout"):
        m.timeout = -1


# -- counted resources, cost, retries (SPEC §11) ---------------------------


def test_needs_are_copied_to_a_dict():
    given = {"gpu": 1, "mem_gb": 0.5, "seats": Fraction(1, 3)}
    m = SchedMeta(needs=given)
    given["gpu"] = 2
    assert m.needs == {"gpu": 1, "mem_gb": 0.5, "seats": Fraction(1, 3)}
    assert type(m.needs) is dict


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["gpu"], "expected a mapping of resource -> amount, as "
                  "needs={'gpu': 1, 'mem_gb': 8}; got list"),
        ("gpu", "expected a mapping of resource -> amount"),
        ({"gpu": 0}, "the amount of 'gpu': expected a positive amount (leave the "
                     "resource out for none)"),
        ({"gpu": -1}, "the amount of 'gpu': expected a positive amount"),
        ({"gpu": True}, "the amount of 'gpu': expected a number, got bool"),
        ({"gpu": "1"}, "the amount of 'gpu': expected a number, got str"),
        ({"mem": math.nan}, "the amount of 'mem': expected a finite number"),
        ({"mem": math.inf}, "the amount of 'mem': expected a finite number"),
    ],
    ids=repr,
)
def test_needs_wrong_type_or_amount(value, problem):
    with pytest.raises(MetaError, match=re.escape(f"needs={value!r}: {problem}")):
        SchedMeta(needs=value)


@pytest.mark.parametrize("value", [0, 1, 2.5, Fraction(1, 2), 10**30])
def test_cost_accepts_numbers_of_zero_or_more(value):
    assert SchedMeta(cost=value).cost == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [(-1, "expected a cost of 0 or more"), (math.nan, "expected a finite number"),
     (math.inf, "expected a finite number"), ("1", "expected a number, got str"),
     (True, "expected a number, got bool"), (None, "expected a number")],
    ids=repr,
)
def test_cost_refused(value, problem):
    with pytest.raises(MetaError, match=f"^{re.escape(f'cost={value!r}: {problem}')}"):
        SchedMeta(cost=value)


def test_retries_take_an_int_of_zero_or_more():
    assert SchedMeta(retries=3).retries == 3
    with pytest.raises(MetaError, match=r"^retries=-1: expected 0 or more$"):
        SchedMeta(retries=-1)
    for value in (1.0, True, "2"):
        message = re.escape(f"retries={value!r}: expected how many times a failed "
                            f"task may run again (an int), got {type(value).__name__}")
        with pytest.raises(MetaError, match=f"^{message}$"):
            SchedMeta(retries=value)


@pytest.mark.parametrize(
    ("given", "stored"),
    [(OSError, (OSError,)), ([OSError, TimeoutError], (OSError, TimeoutError)),
     ((), ()), (iter([KeyError]), (KeyError,)),
     ((sched.TaskFailError,), (sched.TaskFailError,))],
    ids=["one class", "list", "none", "iterator", "TaskFailError"],
)
def test_retry_on_is_stored_as_a_tuple_of_classes(given, stored):
    assert SchedMeta(retry_on=given).retry_on == stored


@pytest.mark.parametrize(
    ("value", "message"),
    [("OSError", "retry_on='OSError': expected exception classes, as "
                 "retry_on=(OSError, TimeoutError); got str"),
     (3, "retry_on=3: expected exception classes"),
     ([OSError, 3], "retry_on=[<class 'OSError'>, 3]: 3 is not an exception "
                    "class; give the classes themselves, as retry_on=(OSError,)"),
     ((OSError("x"),), "OSError('x') is not an exception class"),
     ((int,), "<class 'int'> is not an exception class")],
    ids=repr,
)
def test_retry_on_refuses_what_is_not_exception_classes(value, message):
    with pytest.raises(MetaError, match=re.escape(message)):
        SchedMeta(retry_on=value)


def test_retry_delay_and_backoff():
    m = SchedMeta(retry_delay=0.5, retry_backoff=2)
    assert (m.retry_delay, m.retry_backoff) == (0.5, 2)
    refused = {
        "retry_delay=-1: expected seconds, 0 or more": {"retry_delay": -1},
        "retry_delay=inf: expected a finite number": {"retry_delay": math.inf},
        "retry_delay=10000000000.0: at most 3.1536e+07 s (a year)": {
            "retry_delay": 1e10
        },
        "retry_delay='1': expected a number, got str": {"retry_delay": "1"},
        "retry_backoff=0.5: expected a multiplier of 1 or more (1 keeps the "
        "delay, 2 doubles it after each attempt)": {"retry_backoff": 0.5},
        "retry_backoff=nan: expected a finite number": {"retry_backoff": math.nan},
    }
    for message, fields in refused.items():
        with pytest.raises(MetaError, match=f"^{re.escape(message)}$"):
            SchedMeta(**fields)


def test_new_fields_are_checked_when_set_and_name_the_task():
    def gpu_job():
        pass

    meta = assign_val(gpu_job, needs={"gpu": 1}, retries=2)
    with pytest.raises(MetaError, match=r"^task 'test_new_fields_are_checked_when"
                       r"_set_and_name_the_task.<locals>.gpu_job': needs=\['gpu'\]"):
        assign_val(gpu_job, needs=["gpu"])
    with pytest.raises(MetaError, match=r"^cost=-2: "):
        meta.cost = -2
    meta.retry_on = ValueError
    assert (meta.needs, meta.retries, meta.cost, meta.retry_on) == (
        {"gpu": 1}, 2, 1, (ValueError,)
    )


# -- attaching metadata ----------------------------------------------------


def test_plain_function_has_no_meta():
    def f():
        pass

    assert not has_meta(f)
    assert retrieve_meta(f) is None
    assert not hasattr(f, meta.META_ATTR)


def test_retrieve_does_not_create():
    def f():
        pass

    retrieve_meta(f)
    has_meta(f)
    assert not hasattr(f, meta.META_ATTR)


def test_foreign_attribute_is_not_meta():
    def f():
        pass

    setattr(f, meta.META_ATTR, {"requires": ["x"]})
    assert not has_meta(f)
    assert retrieve_meta(f) is None


def test_assign_meta_creates_and_fetches():
    def f():
        pass

    created = assign_meta(f)
    assert isinstance(created, SchedMeta)
    assert created == SchedMeta()
    assert has_meta(f)
    assert retrieve_meta(f) is created
    assert assign_meta(f) is created


def test_assign_meta_attaches_given():
    def f():
        pass

    given = SchedMeta(provides=["x"])
    assert assign_meta(f, given) is given
    assert retrieve_meta(f) is given
    replacement = SchedMeta(provides=["y"])
    assign_meta(f, replacement)
    assert retrieve_meta(f) is replacement


def test_assign_meta_rejects_other_types():
    def f():
        pass

    with pytest.raises(MetaError, match=r"task 'test_assign_meta_rejects.*f'.*"
                                        r"expected a SchedMeta, got dict"):
        assign_meta(f, {"requires": ["x"]})
    assert not has_meta(f)


def test_assign_val_creates():
    def f():
        pass

    m = assign_val(f, requires=["a"], priority=3, kwargs={"k": 1})
    assert retrieve_meta(f) is m
    assert m == SchedMeta(requires={"a"}, priority=3, kwargs={"k": 1})


def test_assign_val_updates_in_place():
    def f():
        pass

    first = assign_val(f, requires=["a"])
    second = assign_val(f, provides=("b",))
    assert first is second
    assert second == SchedMeta(requires={"a"}, provides={"b"})
    assign_val(f, requires=["c"])
    assert retrieve_meta(f).requires == {"c"}


def test_assign_val_unknown_field_suggests():
    def my_task():
        pass

    with pytest.raises(
        MetaError,
        match=r"task '.*my_task': unknown metadata field 'requries' "
              r"\(did you mean 'requires'\?\)",
    ):
        assign_val(my_task, requries=["x"])
    assert not has_meta(my_task)


def test_schedmeta_unknown_field_suggests():
    with pytest.raises(MetaError, match=r"^SchedMeta\(\): unknown metadata field "
                                        r"'require' \(did you mean 'requires'\?\)"):
        SchedMeta(require=["x"])
    assert SchedMeta(["x"], priority=2) == SchedMeta(requires={"x"}, priority=2)


def test_assign_val_unknown_field_without_suggestion():
    with pytest.raises(MetaError, match=r"unknown metadata field 'zzzz'; known fields: "
                                        r"requires, provides"):
        assign_val(plain, zzzz=1)


def test_assign_val_wrong_type_names_task_field_and_value():
    def build_docs():
        pass

    with pytest.raises(MetaError, match=r"task '.*build_docs': requires='docs'.*str"):
        assign_val(build_docs, requires="docs")
    assert not has_meta(build_docs)


def test_assign_val_wrong_type_on_existing_meta():
    def build_docs():
        pass

    assign_val(build_docs, requires=["a"])
    with pytest.raises(MetaError, match=r"task '.*build_docs': kwargs=3"):
        assign_val(build_docs, kwargs=3)
    assert retrieve_meta(build_docs).kwargs == {}


def test_assign_val_timeout_validated():
    def slow():
        pass

    with pytest.raises(MetaError, match=r"task '.*slow': timeout=-2"):
        assign_val(slow, timeout=-2)


def test_meta_on_partial_and_callable_object():
    part = functools.partial(plain)
    assign_val(part, provides=["p"])
    assert retrieve_meta(part).provides == {"p"}

    class Task:
        def __call__(self):
            pass

    obj = Task()
    assign_val(obj, requires=["p"])
    assert retrieve_meta(obj).requires == {"p"}
    assert not has_meta(Task())


def test_meta_on_object_without_attributes():
    with pytest.raises(MetaError, match=r"cannot attach metadata to .*partial"):
        assign_val(len, provides=["x"])


def test_bound_method_meta_comes_from_function():
    class Suite:
        @func_meta(provides=["m"])
        def method(self):
            pass

        def bare(self):
            pass

    assert retrieve_meta(Suite().method).provides == {"m"}
    with pytest.raises(MetaError, match="cannot attach metadata to <bound method"):
        assign_val(Suite().bare, requires=["y"])


# -- func_meta ---------------------------------------------------------------


def test_func_meta_bare():
    @func_meta
    def f():
        return 1

    assert f() == 1
    assert retrieve_meta(f) == SchedMeta()


def test_func_meta_empty_call():
    @func_meta()
    def f():
        return 1

    assert f() == 1
    assert retrieve_meta(f) == SchedMeta()


def test_func_meta_with_fields():
    @func_meta(requires=["a"], provides=["b"], claims=["c"], uses=["d"],
               priority=-1, kwargs={"x": 1}, timeout=5)
    def f(x):
        return x

    assert f(2) == 2
    assert retrieve_meta(f) == SchedMeta(
        requires={"a"}, provides={"b"}, claims={"c"}, uses={"d"},
        priority=-1, kwargs={"x": 1}, timeout=5,
    )


def test_func_meta_keeps_existing_meta():
    @func_meta(priority=2)
    @func_meta(requires=["a"])
    def f():
        pass

    assert retrieve_meta(f) == SchedMeta(requires={"a"}, priority=2)


def test_func_meta_unknown_field():
    with pytest.raises(MetaError, match=r"unknown metadata field 'provide' "
                                        r"\(did you mean 'provides'\?\)"):
        @func_meta(provide=["x"])
        def f():
            pass


def test_func_meta_positional_with_fields():
    with pytest.raises(MetaError, match="keyword fields only"):
        func_meta(plain, requires=["x"])
    with pytest.raises(MetaError, match="keyword fields only"):
        func_meta(["x"])


# -- tasks without metadata cost nothing -----------------------------------


def test_running_creates_no_meta():
    def f():
        return 1

    class Obj:
        def __call__(self):
            return 2

    obj = Obj()
    part = functools.partial(f)
    s = sched.Sched([f, obj, part])
    s.check()
    assert sorted(r.ret for r in s.run(pool=sched.pool.InlineWorkerPool())) == [1, 1, 2]
    for task in (f, obj, part):
        assert not hasattr(task, meta.META_ATTR)

"""What tasks carry by value travels once per run (issue 11, speed).

Instances of a class of ``__main__`` and closures of ``__main__`` must travel
by value (a worker cannot import the main script). Their class, or their
function's code, is pickled once per run and sent once to each worker; each
task then carries only what is its own (instance state; cell values,
defaults and attributes of a closure). Classes and functions "of
``__main__``" are made here by running code in a namespace named
``__main__``, as a script's would be.
"""

from __future__ import annotations

import pickle
import sys
import types

import pytest

from pexen.sched import Sched, TransportError
from pexen.sched._pools.process.run import ProcessRun
from pexen.sched._pools.transport import Definitions, loads_task
from pexen.sched.meta import assign_val, retrieve_meta
from pexen.sched.pool import ProcessWorkerPool
from tests._pools import START_METHODS

MAIN = '''
import os

class Task:
    def __init__(self, n):
        self.n = n

    def __call__(self):
        return ("task", self.n, os.getpid())


def make_closure(n):
    def closure():
        return ("closure", n, os.getpid())
    return closure


def with_defaults(n):
    def task(a=n, *, b=n * 2):
        return (a, b)
    return task


def recursive(n):
    def fact(k=n):
        return 1 if k <= 1 else k * fact(k - 1)
    return fact


def empty_cell():
    def task():
        return later
    return task
    later = 1
'''


@pytest.fixture
def main():
    namespace = {"__name__": "__main__"}
    exec(MAIN, namespace)
    return types.SimpleNamespace(**namespace)


def loaded(definitions: Definitions) -> dict:
    return {n: pickle.loads(blob) for n, blob in enumerate(definitions.blobs)}


def roundtrip(definitions: Definitions, task):
    blob, needs, form = definitions.dumps_task(task)
    return blob, needs, loads_task(blob, form, loaded(definitions))


def test_a_class_of_main_is_pickled_once_for_all_its_instances(main):
    definitions = Definitions()
    blobs = [definitions.dumps_task(main.Task(n)) for n in range(100)]
    assert len(definitions.blobs) == 1  # the class, once
    assert all(needs == (0,) for _blob, needs, _form in blobs)
    assert max(len(blob) for blob, _needs, _form in blobs) < 64  # no class body
    task = loads_task(blobs[7][0], blobs[7][2], loaded(definitions))
    assert task()[:2] == ("task", 7)


def test_closures_share_their_code_and_keep_their_own_cells(main):
    definitions = Definitions()
    blobs = [definitions.dumps_task(main.make_closure(n)) for n in range(100)]
    assert len(definitions.blobs) == 1  # the first closure, as the template
    assert max(len(blob) for blob, _needs, _form in blobs[1:]) < 200
    objects = loaded(definitions)
    assert [
        loads_task(blob, form, objects)()[1] for blob, _needs, form in blobs
    ] == list(range(100))


def test_defaults_recursion_empty_cells_and_attributes_travel(main):
    definitions = Definitions()
    first, second = main.with_defaults(1), main.with_defaults(5)
    assign_val(second, timeout=3.0)
    roundtrip(definitions, first)
    _blob, _needs, back = roundtrip(definitions, second)
    assert back() == (5, 10)
    assert retrieve_meta(back).timeout == 3.0
    roundtrip(definitions, main.recursive(3))
    _blob, _needs, fact = roundtrip(definitions, main.recursive(5))
    assert fact() == 120  # its cell holds itself
    roundtrip(definitions, main.empty_cell())
    _blob, _needs, empty = roundtrip(definitions, main.empty_cell())
    with pytest.raises(NameError):
        empty()


def test_tasks_by_reference_need_no_definitions():
    definitions = Definitions()
    blob, needs, _form = definitions.dumps_task(print)
    assert (needs, definitions.blobs) == ((), [])
    assert pickle.loads(blob) is print


def test_an_unpicklable_task_is_named_with_the_reason(main):
    import threading

    lock = threading.Lock()
    namespace = {"__name__": "__main__", "lock": lock}
    exec("def holds():\n    return lock.locked()\n", namespace)
    with pytest.raises(TransportError, match=r"cannot pickle '_thread\.lock' object"):
        Definitions().dumps_task(namespace["holds"], "holds")


def _record_shipments(monkeypatch) -> list[tuple[int, list[int]]]:
    """(worker index, definition numbers) of every batch sent to a worker."""
    shipped: list[tuple[int, list[int]]] = []
    real = ProcessRun._definitions_for

    def recording(self, worker, keys):
        new = real(self, worker, keys)
        shipped.append((worker.index, [number for number, _blob in new]))
        return new

    monkeypatch.setattr(ProcessRun, "_definitions_for", recording)
    return shipped


def test_a_run_sends_each_definition_once_to_each_worker(main, method, monkeypatch):
    shipped = _record_shipments(monkeypatch)
    tasks = [main.Task(n) for n in range(60)] + [
        main.make_closure(n) for n in range(60)
    ]
    pool = ProcessWorkerPool(workers=2, mp_context=method)
    results = {res.task: res for res in Sched(tasks).run(pool)}
    assert all(res.excinfo is None for res in results.values())
    assert [results[task].ret[1] for task in tasks] == [*range(60), *range(60)]
    per_worker: dict[int, list[int]] = {}
    for index, numbers in shipped:
        per_worker.setdefault(index, []).extend(numbers)
    for numbers in per_worker.values():
        assert len(numbers) == len(set(numbers))  # none sent twice
    assert {n for numbers in per_worker.values() for n in numbers} == {0, 1}


@pytest.mark.parametrize("method", [m for m in START_METHODS if m != "fork"])
def test_a_definition_a_worker_cannot_load_fails_only_its_tasks(main, method):
    # a class whose base lives in a module only this process has (a forked
    # worker would have it too)
    module = types.ModuleType("pexen_test_only_here")
    exec("class Base:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        namespace = {"__name__": "__main__", "Base": module.Base}
        exec("class Stranded(Base):\n    def __call__(self):\n        return 1\n",
             namespace)
        stranded = [namespace["Stranded"]() for _ in range(3)]
        fine = [main.Task(n) for n in range(3)]
        pool = ProcessWorkerPool(workers=1, mp_context=method)
        results = {res.task: res for res in Sched([*stranded, *fine]).run(pool)}
    finally:
        del sys.modules[module.__name__]
    for task in stranded:
        err = results[task].excinfo.val
        assert isinstance(err, TransportError)
        assert "cannot be unpickled in worker" in str(err)
        assert "pexen_test_only_here" in str(err)
    assert [results[task].ret[1] for task in fine] == [0, 1, 2]


def renamed_closures(namespace: dict) -> list:
    exec(
        "def make(i):\n"
        "    def task():\n"
        "        return task.__name__, task.__doc__\n"
        "    task.__name__ = f'task_{i}'\n"
        "    task.__doc__ = f'doc {i}'\n"
        "    return task\n",
        namespace,
    )
    return [namespace["make"](i) for i in range(3)]


def test_closures_that_differ_in_name_or_doc_keep_theirs(method):
    tasks = renamed_closures({"__name__": "__main__"})
    pool = ProcessWorkerPool(workers=1, mp_context=method)
    results = {res.task: res.ret for res in Sched(tasks).run(pool)}
    assert [results[task] for task in tasks] == [
        ("task_0", "doc 0"), ("task_1", "doc 1"), ("task_2", "doc 2")
    ]

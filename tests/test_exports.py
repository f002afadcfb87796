"""The public surface is what SPEC.md names, and every listed name exists."""

from __future__ import annotations

import concurrent.futures
import importlib
import pickle
import subprocess
import sys

import pytest

import pexen
from pexen import sched
from pexen.sched import meta, pool

SPEC_PEXEN = {"PexenError", "PexenWarning"}
SPEC_SCHED = {
    "SchedulerError", "DepcheckError", "MutexError", "PoolError",
    "WorkerCrashError", "TaskTimeoutError", "TaskFailError", "task_fail_wrap",
    "TaskRes", "ExceptionInfo", "Sched", "meta", "pool",
    "Event", "Status", "TaskCancelledError",  # §8, driving a run live
}
SPEC_META = {
    "SchedMeta", "assign_meta", "assign_val", "has_meta", "retrieve_meta", "func_meta",
}
# the pools of SPEC §5, the engine pools (imported lazily) included
SPEC_POOL = {
    "WorkerPool", "InlineWorkerPool", "ThreadWorkerPool", "ProcessWorkerPool",
    "AsyncWorkerPool",  # §9
    "ExecutorWorkerPool", "DaskWorkerPool", "MPIWorkerPool",
}

# deliberate additions beyond SPEC.md
EXTRA_PEXEN = {"__version__"}
SPEC_PEXEN |= {"map", "starmap", "amap", "astarmap"}  # §9
EXTRA_META = {"MetaError"}
EXTRA_SCHED = {
    "UnrunTasksWarning", "UnusedTagWarning", "PoolWarning",  # PexenWarning's kinds
    "TransportError", "RemoteTaskError",  # reach users in TaskRes (issue 11)
}


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (pexen, SPEC_PEXEN | EXTRA_PEXEN),
        (sched, SPEC_SCHED | EXTRA_SCHED),
        (meta, SPEC_META | EXTRA_META),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_all_matches_spec(module, expected):
    assert sorted(module.__all__) == sorted(expected)
    assert len(set(module.__all__)) == len(module.__all__)


def test_pool_all():
    assert sorted(pool.__all__) == sorted(SPEC_POOL)
    assert len(set(pool.__all__)) == len(pool.__all__)
    for name in pool.__all__:
        assert name.endswith("WorkerPool"), name


@pytest.mark.parametrize("modname", ["pexen", "pexen.sched", "pexen.sched.meta",
                                     "pexen.sched.pool"])
def test_every_exported_name_exists(modname):
    module = importlib.import_module(modname)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict = {}
    exec(f"from {modname} import *", namespace)
    assert set(module.__all__) <= set(namespace)


def test_public_modules():
    assert sched.meta is meta
    assert sched.pool is pool
    for cls_name in pool.__all__:
        assert issubclass(getattr(pool, cls_name), pool.WorkerPool)


@pytest.mark.parametrize(
    "name",
    ["SchedulerError", "DepcheckError", "MutexError", "PoolError",
     "WorkerCrashError", "TaskTimeoutError", "TransportError", "TaskCancelledError"],
)
def test_errors_derive_from_pexen_error(name):
    cls = getattr(sched, name)
    assert issubclass(cls, pexen.PexenError)
    assert cls.__doc__


@pytest.mark.parametrize(
    ("name", "builtin"),
    [("SchedulerError", RuntimeError), ("DepcheckError", ValueError),
     ("MutexError", ValueError), ("PoolError", RuntimeError),
     ("TaskTimeoutError", TimeoutError), ("TransportError", pickle.PicklingError),
     ("TaskCancelledError", concurrent.futures.CancelledError)],
)
def test_errors_subclass_the_fitting_builtin(name, builtin):
    assert issubclass(getattr(sched, name), builtin)


def test_task_fail_error_and_warning():
    assert issubclass(sched.TaskFailError, Exception)
    assert issubclass(pexen.PexenWarning, Warning)
    assert issubclass(pexen.PexenError, Exception)
    assert meta.MetaError.__mro__[1] is pexen.PexenError


def test_import_pexen_stays_light():
    code = (
        "import sys, pexen; "
        "heavy = [m for m in ('dask', 'distributed', 'mpi4py', 'pexen.sched') "
        "if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_journal_and_trace_all():
    from pexen import journal, trace

    # SPEC §10 names Journal; the rest is what using it meets (its error, the
    # identity it files tasks under, what it decides for a resumed run)
    extra = {"JournalError", "task_identity", "ResumePlan", "Decision"}
    assert sorted(journal.__all__) == sorted({"Journal"} | extra)
    assert trace.__all__ == ["ChromeTrace"]
    assert issubclass(journal.JournalError, pexen.PexenError)
    assert issubclass(journal.JournalError, ValueError)
    for name in journal.__all__:
        assert getattr(journal, name).__module__ == "pexen.journal", name


def test_factory_all():
    from pexen import factory

    spec = {"BaseFactory", "FilesystemFactory", "ModuleFactory", "ModTreeFactory",
            "get_callpath"}
    extra = {"CollectionError", "HeaderError"}  # what collection records/raises
    assert sorted(factory.__all__) == sorted(spec | extra)
    for name in ("FilesystemFactory", "ModuleFactory", "ModTreeFactory"):
        assert issubclass(getattr(factory, name), factory.BaseFactory)
    for method in ("callpath_push", "callpath_pop", "callpath_transfer"):
        assert callable(getattr(factory.BaseFactory, method))


@pytest.mark.parametrize("modname", ["pexen.sched.pool", "pexen.cli", "pexen.factory"])
def test_engines_are_imported_only_when_used(modname):
    code = (
        f"import sys, {modname}; "
        "heavy = [m for m in ('dask', 'distributed', 'mpi4py') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_transport_errors_are_public_and_print_under_their_public_name():
    assert sched.TransportError.__module__ == "pexen.sched"
    assert sched.RemoteTaskError.__module__ == "pexen.sched"
    assert issubclass(sched.TransportError, sched.PoolError)
    assert not issubclass(sched.RemoteTaskError, pexen.PexenError)  # a stand-in
    err = pickle.loads(pickle.dumps(sched.TransportError("m", what="w", reason="r")))
    assert (err.args, err.what, err.reason) == (("m",), "w", "r")


# Every import path SPEC.md shows (its §1-§8); the layout behind them is private.
SPEC_IMPORT_PATHS = [
    "from pexen import sched",
    "from pexen import PexenError, PexenWarning",
    "from pexen.sched import Sched, TaskRes, ExceptionInfo, TaskFailError, "
    "task_fail_wrap, SchedulerError, DepcheckError, MutexError, PoolError, "
    "WorkerCrashError, TaskTimeoutError",
    "from pexen.sched import meta, pool",
    "from pexen.sched import Event, Status, TaskCancelledError",
    "from pexen.sched.meta import SchedMeta, assign_meta, assign_val, has_meta, "
    "retrieve_meta, func_meta",
    "from pexen.sched.pool import InlineWorkerPool, ThreadWorkerPool, "
    "ProcessWorkerPool, WorkerPool, ExecutorWorkerPool, DaskWorkerPool, "
    "MPIWorkerPool",
    "import pexen.sched.pool; pexen.sched.pool.ProcessWorkerPool",
    "sched.pool.ProcessWorkerPool; sched.Sched",
    "from pexen.factory import FilesystemFactory, ModuleFactory, ModTreeFactory, "
    "BaseFactory, get_callpath",
    "import pexen.factory; pexen.factory.get_callpath",
    "from pexen.cli import main",
    "from pexen.journal import Journal",
    "from pexen.trace import ChromeTrace",
    "from pexen.sched.meta import SchedMeta; SchedMeta(name='x').name",
]


@pytest.mark.parametrize("statement", SPEC_IMPORT_PATHS)
def test_every_spec_import_path_works(statement):
    namespace: dict = {}
    exec("from pexen import sched\n" + statement, namespace)


def test_the_pytest_plugin_is_the_entry_point_spec_names():
    """SPEC §12: a ``pytest11`` entry point named ``pexen``."""
    from importlib.metadata import entry_points

    (point,) = [p for p in entry_points(group="pytest11") if p.name == "pexen"]
    assert point.value == "pexen.pytest_plugin"
    plugin = point.load()
    assert callable(plugin.pytest_addoption)

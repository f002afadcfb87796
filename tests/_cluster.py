"""Real Dask processes for the tests, and the contract every remote pool passes.

:class:`DaskProcesses` runs ``dask scheduler`` and ``dask worker`` processes on
127.0.0.1 with random ports, waits until the scheduler sees the workers
(polling to a deadline, never a blind sleep) and stops and reaps every one of
them. By default the scheduler fails a task at the first worker death
(``allowed-failures`` 0, so Dask reports ``KilledWorker``) and workers hold
only the tasks they run (``worker-saturation`` 1.0); ``allowed_failures=``
sets another count (Dask's own default, 3, runs the task again elsewhere).

:func:`run_contract` is one run of a suite that touches what SPEC §1, §3 and
§4 promise of every pool: ``TaskRes.task`` identity, shared state both ways,
kwargs, remote tracebacks, stand-ins for unpicklable exceptions, tasks that
cannot travel, closures, lambdas and functions of ``__main__``, controlled
failures, skipped dependents and a task past its timeout.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from pexen import PexenWarning
from pexen.sched import Sched, TaskFailError, TaskRes, TaskTimeoutError
from pexen.sched.meta import assign_val, func_meta

TESTS_DIR = Path(__file__).resolve().parent
DEADLINE = 60.0  # seconds: only to catch a process that never gets ready

HAVE_DASK = importlib.util.find_spec("distributed") is not None
needs_dask = pytest.mark.skipif(
    not HAVE_DASK,
    reason="Dask distributed is not installed (pip install 'pexen[dask]')",
)
SCRIPTS = sysconfig.get_path("scripts")  # where the mpich wheel puts mpiexec
MPIEXEC = shutil.which(
    "mpiexec", path=os.pathsep.join([SCRIPTS, os.environ.get("PATH", "")])
)
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="mpi4py or mpiexec is not installed (pip install 'pexen[mpi]')",
)


def poll_for(pred: Callable[[], object], what: str, timeout: float = DEADLINE):
    """Poll *pred* until it returns something true; fail naming *what*."""
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)
    return value


def run_program(argv: list[str], cwd: Path, env: dict | None = None) -> str:
    """Run a program to its end and return its output; fail if it fails.

    It runs in a session of its own, so the whole process group (an MPI job,
    say) is killed if it hangs.
    """
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{argv} hung:\n{out.decode(errors='replace')[-3000:]}")
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{argv} failed:\n{text[-3000:]}"
    return text


# --- the command line ----------------------------------------------------

CLI_SUITE = """
import os

from pexen.sched.meta import func_meta


@func_meta(provides=["where"])
def test_provide(shared):
    shared["where"] = os.getpid()


@func_meta(requires=["where"])
def test_consume(shared):
    assert isinstance(shared["where"], int)


@func_meta
def test_runs_remotely():
    {check}
"""

# `python -c` code that makes the engines unimportable, then runs pexen's CLI
WITHOUT_ENGINES = """
import sys

class NoEngines:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("dask", "distributed", "mpi4py"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")

sys.meta_path.insert(0, NoEngines())
from pexen.cli import main
sys.exit(main(sys.argv[1:]))
"""


def write_cli_suite(root: Path, package: str, check: str) -> Path:
    """Make a package of three tests; the last one asserts *check* (one line)."""
    path = root / package
    path.mkdir()
    (path / "__init__.py").write_text("")
    (path / "test_remote.py").write_text(CLI_SUITE.format(check=check))
    return path


def pexen_argv(*args: str) -> list[str]:
    """``python -m pexen ARGS`` with this interpreter."""
    return [sys.executable, "-m", "pexen", *args]


def cli_error_without_engines(tmp_path: Path, pool: str) -> str:
    """Run ``pexen run SUITE --pool POOL`` with Dask and mpi4py made unimportable.

    Check that it is a usage error (exit status 2); return what it printed.
    """
    write_cli_suite(tmp_path, f"noengine{pool}", "pass")
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_ENGINES, "run", f"noengine{pool}",
         "--pool", pool],
        cwd=tmp_path, text=True, capture_output=True, stdin=subprocess.DEVNULL,
        timeout=DEADLINE,
    )
    assert proc.returncode == 2, proc
    return proc.stderr


def warm_up_dask() -> None:
    """Start Dask's process-wide helper thread before a test's leak check.

    distributed runs some work in one ``Dask-Offload`` thread that lives until
    the interpreter exits, like CPython's forkserver; it is not a leak.
    """
    from distributed.utils import _offload_executor

    _offload_executor.submit(int).result()


class DaskProcesses:
    """A scheduler and workers, each a real ``dask`` process of this machine."""

    def __init__(self, tmp: Path, allowed_failures: int = 0) -> None:
        self.tmp = tmp
        self.env = dict(
            os.environ,
            DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=str(allowed_failures),
            DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="1.0",
            # workers import the test modules that tasks refer to by name
            PYTHONPATH=os.pathsep.join([
                str(TESTS_DIR), str(TESTS_DIR / "pools"), str(TESTS_DIR.parent),
                os.environ.get("PYTHONPATH", ""),
            ]),
        )
        self.procs: dict[str, subprocess.Popen] = {}
        self.address = ""
        self.client = None
        self._names = 0

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed below
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.tmp,
            )
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def _alive(self, name: str) -> bool:
        if self.procs[name].poll() is None:
            return True
        log = (self.tmp / f"{name}.log").read_text(errors="replace")
        pytest.fail(f"{name} exited early:\n{log[-3000:]}")

    def start(self, workers: int = 2) -> DaskProcesses:
        """Start the scheduler and *workers* workers; return once all are in."""
        import distributed

        info = self.tmp / "scheduler.json"
        self._spawn(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
            "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
            "--scheduler-file", str(info), "--idle-timeout", "600",
        )

        def address() -> str:
            self._alive("scheduler")
            try:
                return json.loads(info.read_text())["address"]
            except (OSError, ValueError, KeyError):
                return ""

        self.address = poll_for(address, "the scheduler's address file")
        self.client = distributed.Client(
            self.address, set_as_default=False, timeout=DEADLINE
        )
        names = [self.add_worker(wait=False) for _ in range(workers)]
        self.wait_for(names)
        return self

    def add_worker(self, wait: bool = True) -> str:
        """Start one single-threaded worker; return its name (once it is in)."""
        self._names += 1
        name = f"worker-{self._names}"
        self._spawn(
            name, "worker", self.address, "--name", name, "--nthreads", "1",
            "--nworkers", "1", "--no-nanny", "--host", "127.0.0.1",
            "--no-dashboard", "--death-timeout", "60",
        )
        if wait:
            self.wait_for([name])
        return name

    def wait_for(self, names: list[str]) -> None:
        """Poll the scheduler until the workers *names* have joined."""

        def joined() -> bool:
            alive = all(self._alive(name) for name in names)
            return alive and set(names) <= self.worker_names()

        poll_for(joined, f"{', '.join(names)} to join")

    def worker_names(self) -> set[str]:
        self._alive("scheduler")
        workers = self.client.scheduler_info()["workers"]
        return {info["name"] for info in workers.values()}

    def __enter__(self) -> DaskProcesses:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process (workers first) and reap it."""
        if self.client is not None:
            self.client.close()
            self.client = None
        for name in sorted(self.procs, key=lambda n: n == "scheduler"):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


# --- the contract ---------------------------------------------------------

MAIN_SOURCE = '''
def made_in_main(shared):
    shared["main"] = "by value"
    return __name__
'''


def made_in_main():
    """A function whose module is ``__main__`` and which no importer finds."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(MAIN_SOURCE, "<__main__ script>", "exec"), namespace)
    return namespace["made_in_main"]


class Unpicklable(Exception):
    """An exception that cannot travel: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


@func_meta(provides=["base"], kwargs={"start": 10})
def provider(shared, start):
    shared["base"] = start
    return "provided"


@func_meta(requires=["base"], kwargs={"step": 5})
def consumer(shared, *, step):
    shared["seen"] = shared["base"] + step
    return shared["seen"]


@func_meta(provides=["doomed"])
def failing():
    raise ValueError("failing on purpose")


@func_meta(requires=["doomed"])
def never_runs():
    raise AssertionError("a dependent of a failed task ran")


def raises_unpicklable():
    raise Unpicklable("carries a lock")


def returns_unpicklable():
    return threading.Lock()


@func_meta(timeout=0.2)
def overruns():
    time.sleep(1)  # the work of a slow task, cut short where the pool can
    return "too late"


@func_meta(provides=["soft"])
def fails_softly():
    raise TaskFailError("controlled", deps_ok=True)


@func_meta(requires=["soft"])
def after_soft():
    return "ran after a controlled failure"


def contract_tasks() -> dict[str, object]:
    """The suite's tasks by name; each is a distinct object."""
    lock = threading.Lock()
    factor = 3

    def closure(*, n=7):
        return n * factor

    def cannot_travel():
        return lock  # a closure over a lock cannot be pickled

    tasks = {
        "provider": provider,
        "consumer": consumer,
        "failing": failing,
        "never_runs": never_runs,
        "raises_unpicklable": raises_unpicklable,
        "returns_unpicklable": returns_unpicklable,
        "fails_softly": fails_softly,
        "after_soft": after_soft,
        "overruns": overruns,
        "closure": closure,
        "lambda": lambda: "from a lambda",
        "main": made_in_main(),
        "cannot_travel": cannot_travel,
    }
    assign_val(tasks["lambda"], priority=-1)
    return tasks


def run_contract(pool) -> list[TaskRes]:
    """Run the suite on *pool* and check every promise; return the results."""
    tasks = contract_tasks()
    sched = Sched(tasks.values())
    sched.add_shared(preset="everyone")
    with pytest.warns(PexenWarning, match="1 task did not run"):
        results = list(sched.run(pool))
    by_name = {}
    for res in results:
        names = [name for name, task in tasks.items() if task is res.task]
        assert len(names) == 1, f"TaskRes.task is not an object we added: {res}"
        assert names[0] not in by_name, f"{names[0]} yielded twice"
        by_name[names[0]] = res
    assert set(by_name) == set(tasks) - {"never_runs"}
    assert sched.skipped.keys() == {tasks["never_runs"]}

    def ok(name):
        res = by_name[name]
        assert res.excinfo is None, (
            f"{name} failed:\n{''.join(traceback.format_exception(*res.excinfo))}"
        )
        return res

    assert ok("provider").ret == "provided"
    assert ok("provider").shared == {"preset": "everyone", "base": 10}
    assert ok("consumer").ret == 15
    assert ok("consumer").shared == {"preset": "everyone", "base": 10, "seen": 15}
    assert ok("closure").ret == 21
    assert ok("lambda").ret == "from a lambda"
    assert ok("main").ret == "__main__"
    assert ok("main").shared["main"] == "by value"
    assert ok("after_soft").ret == "ran after a controlled failure"

    failed = by_name["failing"].excinfo
    assert failed.type is ValueError and str(failed.val) == "failing on purpose"
    text = "".join(traceback.format_exception(*failed))
    assert "in failing" in text and 'raise ValueError("failing on purpose")' in text

    stand_in = by_name["raises_unpicklable"].excinfo
    assert stand_in.type.__name__ == "RemoteTaskError"
    assert "Unpicklable" in str(stand_in.val) and "carries a lock" in str(stand_in.val)
    assert "raises_unpicklable" in stand_in.val.remote_traceback

    not_back = by_name["returns_unpicklable"].excinfo
    assert not_back.type.__name__ == "TransportError"
    assert "return value" in str(not_back.val)

    not_sent = by_name["cannot_travel"].excinfo
    assert not_sent.type.__name__ == "TransportError"
    assert "cannot be sent to a worker" in str(not_sent.val)

    soft = by_name["fails_softly"].excinfo
    assert soft.type is TaskFailError

    late = by_name["overruns"]
    assert late.ret is None and late.excinfo.type is TaskTimeoutError
    message = str(late.excinfo.val)
    assert "task 'overruns' ran longer than its timeout of 0.2 s" in message
    return results


def shared_suite() -> dict[str, Callable]:
    """The tests of test_sched.py that take ``make_pool``, named ``test_shared_*``.

    A module that binds them to its globals and defines a ``make_pool``
    fixture runs the shared scheduler suite on its own pool.
    """
    from tests import test_sched

    return {
        f"test_shared_{name.removeprefix('test_')}": test
        for name, test in vars(test_sched).items()
        if name.startswith("test_")
        and callable(test)
        and "make_pool" in inspect.signature(test).parameters
    }


def run_break_then_again(pool) -> None:
    """Leave a run after its first result, then run the same pool again."""
    tasks = [lambda *, i=i: i for i in range(12)]
    sched = Sched(tasks)
    gen = sched.run(pool)
    first = next(gen)
    assert first.task in tasks
    gen.close()
    assert not sched.in_flight
    rets = sorted(res.ret for res in sched.run(pool))
    assert rets == list(range(12))

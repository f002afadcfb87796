"""Tasks for the process pool tests, importable by name in every worker.

Only the standard library is imported here, so a ``spawn`` or ``forkserver``
worker that unpickles one of these (by reference) stays quick to start.
Tasks that wait for something poll a file to a deadline (never a bare sleep),
so a broken test fails instead of hanging.
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import multiprocessing
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import types

DEADLINE = 30.0  # seconds: only so that a broken test cannot hang for ever


def wait_for(path: str | os.PathLike, deadline: float = DEADLINE) -> bool:
    """Poll for *path* to exist; return whether it did before *deadline*."""
    end = time.monotonic() + deadline
    while not os.path.exists(path):
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def getpid() -> int:
    return os.getpid()


def echo(*, value):
    return value


def add_to_shared(shared, *, key, value):
    shared[key] = value
    return sorted(shared)


def raise_value_error(message: str = "boom") -> None:
    raise ValueError(message)


def _inner_failure() -> None:
    raise KeyError("inner")


def raise_chained() -> None:
    try:
        _inner_failure()
    except KeyError as exc:
        raise RuntimeError("outer") from exc


def exit_now(*, code: int = 7) -> None:
    os._exit(code)


def value_and_pid(*, value):
    """Where it ran, too: tells whether a job moved to another worker."""
    return value, os.getpid()


def note_and_exit(*, path: str, code: int = 9) -> None:
    """Append our pid to *path* (one line per run), then kill our worker."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    os._exit(code)


def fork_and_return(*, child_exits: bool = False) -> int:
    """Fork; the child copy returns too (or raises SystemExit), into the worker."""
    pid = os.fork()
    if pid == 0 and child_exits:
        sys.exit(0)
    return pid


def kill_self(*, sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)


def segfault() -> None:
    """Crash with SIGSEGV; pytest's faulthandler would dump a (noisy) trace."""
    faulthandler.disable()
    ctypes.string_at(0)


def write_pid_and_wait(*, path: str) -> int:
    """Tell the test our pid (atomically), then wait for ``path + '.go'``."""
    tmp = path + ".tmp"
    pathlib.Path(tmp).write_text(str(os.getpid()))
    os.replace(tmp, path)
    wait_for(path + ".go")
    return os.getpid()


def start_sleep_and_wait(*, path: str) -> int:
    """Start ``sleep 300``, tell the test our pid and its pid (atomically),
    then wait for it: only a killer ends this task."""
    child = subprocess.Popen(["sleep", "300"])
    tmp = path + ".tmp"
    pathlib.Path(tmp).write_text(f"{os.getpid()} {child.pid}")
    os.replace(tmp, path)
    return child.wait()


_background: list[subprocess.Popen] = []  # kept: a dropped Popen warns


def start_background_sleep() -> int:
    """Start ``sleep 300`` and return its pid without waiting for it."""
    _background.append(subprocess.Popen(["sleep", "300"]))
    return _background[-1].pid


def start_escapees(*, path: str, then: str, fork: bool = False) -> list[int]:
    """Start three ``sleep 300``: one in the worker's process group, one in a
    session of its own, and a shell's background child re-parented to init
    from another session (and, with *fork*, a copy of this process in a
    session of its own, which never exec's); tell the test their pids
    (atomically), then ``hang``, ``crash`` (``os._exit``) or ``return`` them
    (left running on purpose)."""
    plain = subprocess.Popen(["sleep", "300"])
    own = subprocess.Popen(["sleep", "300"], start_new_session=True)
    _background.extend([plain, own])
    shell = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
        start_new_session=True, capture_output=True, text=True, check=True,
    )
    pids = [plain.pid, own.pid, int(shell.stdout)]
    if fork:
        copy = os.fork()
        if copy == 0:
            os.setsid()
            time.sleep(DEADLINE)
            os._exit(0)
        pids.append(copy)
    pathlib.Path(path + ".tmp").write_text(" ".join(map(str, pids)))
    os.replace(path + ".tmp", path)
    if then == "crash":
        os._exit(3)
    if then == "hang":
        hang()
    return pids


def return_lock():
    return {"lock": threading.Lock()}


def lock_in_shared(shared) -> None:
    shared["lock"] = threading.Lock()


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise LockedError("cannot travel")


def _worker_only_module() -> types.ModuleType:
    """A module that exists in this worker only, never in the parent."""
    module = sys.modules.get("pexen_worker_only")
    if module is None:
        module = types.ModuleType("pexen_worker_only")
        exec(
            "class Thing:\n    pass\nclass Oops(Exception):\n    pass\n",
            module.__dict__,
        )
        sys.modules["pexen_worker_only"] = module
    return module


def return_worker_only_object():
    return _worker_only_module().Thing()


def raise_worker_only_exception() -> None:
    raise _worker_only_module().Oops("only the worker knows this class")


def print_and_log(*, tag: str) -> str:
    print(f"out {tag}")
    print(f"err {tag}", file=sys.stderr)
    sys.stdout.write(f"partial {tag}")  # no newline: still comes before the result
    os.write(1, f"\nraw fd {tag}\n".encode())
    subprocess.run(["echo", f"subprocess {tag}"], check=True)
    log = logging.getLogger("pexen.tests.tasks")
    log.info("info %s", tag)
    log.debug("debug %s", tag)
    try:
        raise ZeroDivisionError("logged")
    except ZeroDivisionError:
        log.exception("failure %s", tag)
    return tag


def chatty(*, nbytes: int, marker: str) -> str:
    """Print more than any pipe holds, then leave a marker file."""
    line = "x" * 99 + "\n"
    for _ in range(nbytes // len(line)):
        sys.stdout.write(line)
    sys.stdout.flush()
    pathlib.Path(marker).write_text("done")
    return "chatty"


def sleep_for(*, seconds: float, ret=None):
    """Work that takes a while (no synchronisation depends on it)."""
    time.sleep(seconds)
    return ret


def hang() -> None:
    """Never return on its own (the deadline only guards a broken test)."""
    time.sleep(DEADLINE)


def hang_with_sigalrm_blocked(**_data: object) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(DEADLINE)


class LoadsSlowly:
    """A value whose unpickling, in a worker, waits for the file *gate*: the
    job it comes with stays in its loading phase until then."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def __reduce__(self):
        return (_loaded_once, (self.gate,))


def _loaded_once(gate: str) -> str:
    wait_for(gate)
    return gate


def hang_in_subprocess(*, pidfile: str) -> None:
    """Start ``sleep`` in a child, record its pid, and wait for it."""
    child = subprocess.Popen(["sleep", str(int(DEADLINE))])
    pathlib.Path(pidfile + ".tmp").write_text(str(child.pid))
    os.replace(pidfile + ".tmp", pidfile)
    child.wait()


def leave_a_thread_behind() -> str:
    """Start a non-daemon thread that never ends (it would block a plain exit)."""
    threading.Thread(target=threading.Event().wait, daemon=False).start()
    return "left"


def worker_facts() -> dict:
    return {
        "pid": os.getpid(),
        "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
        "own_group": os.getpgid(0) == os.getpid(),
        "name": multiprocessing.current_process().name,
    }


class CountingTask:
    """A callable object counting how often the parent pickles it."""

    pickles = 0

    def __reduce__(self):
        CountingTask.pickles += 1
        return (CountingTask, ())

    def __call__(self) -> int:
        return os.getpid()


class _DyingProcess(multiprocessing.get_context("fork").Process):
    def run(self) -> None:
        os._exit(3)


class DyingContext:
    """A fork context whose processes die before they can run anything."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("fork")
        self.Process = _DyingProcess

    def __getattr__(self, name):
        return getattr(self._ctx, name)


class WrappedContext:
    """A context object that is not multiprocessing's own (like ``multiprocess``)."""

    def __init__(self, method: str) -> None:
        self._ctx = multiprocessing.get_context(method)
        self.created = 0

    def Process(self, *args, **kwargs):
        self.created += 1
        return self._ctx.Process(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def timed_busy() -> tuple[float, float]:
    """Some pure-Python work; return when it started and ended (monotonic)."""
    start = time.monotonic()
    sum(i * i for i in range(20_000))
    return start, time.monotonic()


# -- the pool's initializer and finalizer --------------------------------------

_initialized: list = []  # what the initializer of this worker was given


def note_pid(path: str, *values: object) -> None:
    """Append this pid (and *values*) to *path*: an initializer or finalizer."""
    _initialized.extend(values)
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")


def initialized() -> tuple[int, list]:
    """This worker's pid and what its initializer was given."""
    return os.getpid(), list(_initialized)


def refuse_to_start(reason: str) -> None:
    raise RuntimeError(reason)


def crash_the_first_time(*, path: str) -> str:
    """Kill the worker at the first attempt (noted in *path*); pass after."""
    try:
        open(path, "x").close()
    except FileExistsError:
        return "passed again"
    os._exit(3)


def overrun_the_first_time(*, path: str) -> str:
    """Hang past the timeout at the first attempt (noted in *path*); pass after."""
    try:
        open(path, "x").close()
    except FileExistsError:
        return "passed again"
    hang()
    return "never"


def held_at(x, *, at, started, release):
    """Return *x*; item *at* first says it started (a file) and waits for *release*."""
    if x == at:
        pathlib.Path(started).touch()
        wait_for(release)
    return x


def busy_until_beats(x, *, counter, beats=20, deadline=10.0):
    """CPU-bound until the heartbeat in file *counter* (a byte a beat) has beaten
    *beats* times; return *x*, or None if it never did (the loop was blocked)."""
    end = time.monotonic() + deadline
    start = os.path.getsize(counter)
    while os.path.getsize(counter) < start + beats:
        sum(i * i for i in range(2_000))
        if time.monotonic() > end:
            return None
    return x


# -- work stealing: where and when each task ran -------------------------------


def stamped(*, name: str) -> tuple[str, int, float, float, bool]:
    """Return *name*, this pid, and when it started and ended (monotonic)."""
    start = time.monotonic()
    return name, os.getpid(), start, time.monotonic(), True


def gated(*, name: str, gate: str) -> tuple[str, int, float, float, bool]:
    """Wait for the file *gate*; the same as ``stamped``, and whether it came."""
    start = time.monotonic()
    came = wait_for(gate)
    return name, os.getpid(), start, time.monotonic(), came


def once(*, path: str) -> int:
    """Create *path*, which must not exist: a task run twice fails."""
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    return os.getpid()

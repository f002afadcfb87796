"""ProcessWorkerPool: the threads tasks leave running when the run ends.

A stopped worker waits for them as a plain program's exit would, for at most
``THREAD_WAIT``; a Ctrl-C meanwhile, or a cancelled run, kills them with it.
Tasks are functions of this module, which workers import.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import sys
import threading

import pytest

from pexen.sched import Sched
from pexen.sched._pools.process import run as run_module
from pexen.sched.pool import ProcessWorkerPool
from tests import _proc_tasks as tasks
from tests.pools._process import poll_for, with_kwargs


def in_call(thread_id: int, name: str) -> bool:
    """Whether the thread *thread_id* is inside a call of a function *name*."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code.co_name == name:
            return True
        frame = frame.f_back
    return False


def stopping(thread_id: int) -> bool:
    """Whether *thread_id* is stopping a process pool: STOP sent, waiting for exits."""
    return in_call(thread_id, "await_exit")


def start_fifo_writer(*, fifo: str, out: str) -> str:
    """Start a thread that writes *out* once a word comes through *fifo*; return."""

    def work():
        with open(fifo) as pipe:
            word = pipe.read()
        pathlib.Path(out).write_text(f"{word} from a thread the task left")

    threading.Thread(target=work, name="fifo-writer").start()
    return "started"


def _release(fifo: pathlib.Path) -> bool:
    """Send a word through *fifo* if a reader has it open; whether one had."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader (yet)
        return False
    try:
        os.write(fd, b"released")
    finally:
        os.close(fd)
    return True


def test_a_stopped_worker_waits_for_threads_its_task_started(method, tmp_path):
    # the worker used to exit at once, killing the thread and its work
    fifo, out = tmp_path / "fifo", tmp_path / "out.txt"
    os.mkfifo(fifo)
    task = with_kwargs(start_fifo_writer, fifo=str(fifo), out=str(out))
    me = threading.get_ident()

    def release_once_stopping():
        # only once the worker was told to stop: its thread's work comes after
        poll_for(lambda: stopping(me) and _release(fifo))

    releaser = threading.Thread(target=release_once_stopping)
    releaser.start()
    try:
        (res,) = Sched([task]).run(pool=ProcessWorkerPool(mp_context=method))
    finally:
        releaser.join()
    assert res.ret == "started"
    assert out.read_text() == "released from a thread the task left"


def test_a_thread_that_never_ends_is_killed_and_named(method, monkeypatch, capsys):
    monkeypatch.setattr(run_module, "THREAD_WAIT", 0.2)
    (res,) = Sched([tasks.leave_a_thread_behind]).run(
        pool=ProcessWorkerPool(mp_context=method)
    )
    assert res.ret == "left"
    assert re.search(
        r"^pexen: worker pid \d+ is killed with 1 thread its tasks started "
        r"\('Thread-\d+ \(wait\)'\), still running 0.2 s after the run ended; have "
        r"the task join its threads, or start them with daemon=True if their work "
        r"may be lost$",
        capsys.readouterr().err,
        re.MULTILINE,
    )


def test_ctrl_c_ends_the_wait_for_threads_at_once(capsys):
    # the wait used to keep SIGINT out until THREAD_WAIT was over
    me = threading.get_ident()

    def ctrl_c_once_stopping():
        if poll_for(lambda: stopping(me)):
            signal.pthread_kill(me, signal.SIGINT)

    interrupter = threading.Thread(target=ctrl_c_once_stopping)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            for res in Sched([tasks.leave_a_thread_behind]).run(
                pool=ProcessWorkerPool()
            ):
                assert res.ret == "left"
    finally:
        interrupter.join()
    assert "is killed with" not in capsys.readouterr().err  # the pool killed it


def test_a_cancelled_run_does_not_wait_for_threads(capsys):
    # leaving the loop early kills the worker, threads and all
    for res in Sched([tasks.leave_a_thread_behind, tasks.getpid]).run(
        pool=ProcessWorkerPool(1, 0)
    ):
        assert res.ret == "left"
        break
    assert "is killed with" not in capsys.readouterr().err

"""What Ctrl-C and SIGTERM do while ``pexen run`` runs.

The first signal aborts the run (``Sched.abort``, from the handler), a second
one aborts it with ``force``; ``Interrupts`` keeps count. CPython runs signal
handlers in the main thread, between two bytecodes, whichever thread the
kernel handed the signal to: the kernel may pick any thread that does not
block it (a worker of the thread pool, the output relay of a process pool,
the live display's). The main thread then learns of it only when it next
runs Python code, and while it waits for the pool it runs none: the signal
was taken in only when the next task ended, or never (CPython issue 85300),
or at a random later moment, once the handlers were given back. So while
the handlers are ours, a thread of our own reads the signal wakeup fd,
which the C handler writes to in any thread, and wakes the pool's wait
(``woken_by_signals``); back in Python, the main thread runs the handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console

from pexen.sched import Sched

# The signals that stop a run: Ctrl-C, and SIGTERM (how CI systems cancel a job).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """What the signals that came during a run did (see ``announced_interrupts``).

    ``signum`` is the first one (None: none came). The first signal aborts
    the run (``Sched.abort``): no new task starts, the running ones finish.
    Once the run is stopping (``stopping``: after the first signal, or when
    the loop was left and waits for tasks still running), the next signal
    stops the running tasks (``abort(force=True)``) and ``abandoned`` says
    so; signals after that are ignored, and so are those that come once the
    run is ``ignored`` (killing what its tasks left), so that none cuts that
    short. When no run's loop takes the abort in (it is over, its pool
    shutting down), the signal raises ``KeyboardInterrupt``, which ends that
    wait.
    """

    def __init__(self, sched: Sched | None = None) -> None:
        self.sched = sched
        self.signum: int | None = None
        self.stopping = False
        self.abandoned = False
        self.ignored = False  # from now on: nothing may cut the run's end short

    def on_signal(self, console: Console, signum: int) -> None:
        """Say what this signal does, then abort the run (or interrupt)."""
        if self.abandoned or self.ignored:
            return  # the run is ending already
        first = self.signum is None
        if first:
            self.signum = signum
        name = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
        reason = f"interrupted{name}"
        if self.stopping:
            self.abandoned = True
            again = "" if first else " again"
            line = f"interrupted{again}: stopping the running tasks"
        else:
            self.stopping = True
            again = "Ctrl-C" if signum == signal.SIGINT else "Ctrl-C or SIGTERM"
            line = (
                f"{reason}: no new task starts; waiting for the running ones "
                f"({again} again to stop them)"
            )
        console.print(line, markup=False)
        took = self.sched is not None and self.sched.abort(
            reason, force=self.abandoned
        )
        if not took:
            raise KeyboardInterrupt


@contextlib.contextmanager
def announced_interrupts(
    console: Console,
    sched: Sched | None = None,
    wake: Callable[[], None] | None = None,
) -> Iterator[Interrupts]:
    """Say what a Ctrl-C or a SIGTERM does the moment it comes, then act.

    The first one aborts the run of *sched*: no new task starts, and the
    loop goes on until the running tasks are back. A second one stops them
    (``abort(force=True)``). Without a run to take the abort in, a signal
    raises ``KeyboardInterrupt``. The handlers are installed only in the
    main thread and only over the default ones (a signal ignored or handled
    by someone else is left alone), and the previous ones are put back.
    *wake* (the pool's ``wake``) ends the main thread's wait for the pool
    when another thread took the signal (see ``woken_by_signals``).
    """
    interrupts = Interrupts(sched)
    if threading.current_thread() is not threading.main_thread():
        yield interrupts  # not ours to change
        return
    defaults = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: signal.SIG_DFL,
    }
    previous = {  # the signals whose handlers are ours to replace
        signum: handler
        for signum in STOP_SIGNALS
        if (handler := signal.getsignal(signum)) is defaults[signum]
    }

    def on_signal(signum: int, frame: Any) -> None:
        interrupts.on_signal(console, signum)

    try:
        for signum in previous:
            signal.signal(signum, on_signal)
        if wake is None or not previous or not hasattr(signal, "pthread_sigmask"):
            yield interrupts
        else:
            with woken_by_signals(wake):
                yield interrupts
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def woken_by_signals(wake: Callable[[], None]) -> Iterator[None]:
    """Call *wake* meanwhile whenever a signal with a Python handler comes, in
    whichever thread it lands (main thread only: the wakeup fd is its).

    A thread of its own reads the wakeup fd; it blocks the stop signals, so
    that it never is the one the kernel hands them to. The previous wakeup fd
    is given back at the end.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block on it
    done = threading.Event()

    def watch() -> None:
        with contextlib.suppress(OSError):  # closed: the join was interrupted
            while os.read(read_end, 512) and not done.is_set():
                wake()

    watcher = threading.Thread(target=watch, name="pexen-signal-waker", daemon=True)
    try:
        previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        try:
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                watcher.start()  # with the stop signals blocked, as the mask is now
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            try:
                yield
            finally:
                done.set()
                with contextlib.suppress(BlockingIOError):  # full: it wakes anyway
                    os.write(write_end, b"\0")
                watcher.join()
        finally:
            signal.set_wakeup_fd(previous)
    finally:
        os.close(read_end)
        os.close(write_end)

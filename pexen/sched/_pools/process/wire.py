"""What travels between the process pool and its workers, and how it is framed.

Each worker has its own pipes, so the parent always knows which jobs a worker
holds, and a worker that dies can corrupt nothing shared (a worker killed
while holding the lock of a shared queue is how ``multiprocessing.Pool``
hangs). Messages are *frames*: a 4-byte little-endian length, then a pickle
of ``(kind, body)``.

* parent -> worker, ``jobs`` pipe: ``(JOBS, (definitions, [WireJob, ...]))``
  or ``(STOP, seconds)``. ``definitions`` is a list of ``(number, pickle)``:
  the classes and code that tasks of the run carry by value
  (``transport.Definitions``), each sent to a worker once, with the first
  jobs that need it. ``seconds`` is how long to wait for threads its tasks
  left running before exiting (0: not at all).
* parent -> worker, ``tickets`` pipe: one *ticket* per job, its key in 8
  bytes, written before the job goes out (see below).
* worker -> parent, ``results`` pipe: ``(READY, pid)`` once started (after
  the pool's initializer, if any), then one ``(RESULT, WireOutcome)`` per
  job, in the order the jobs came, sent as soon as the job is done (never
  held back: a worker that dies must not take finished results with it). A
  worker whose initializer raised sends ``(INIT_FAILED, reason)`` instead of
  READY, and exits.
* worker -> parent, ``log`` pipe: one frame per ``logging`` record (a dict,
  ``pexen_key`` naming the job that was running); stdout and stderr: fds 1
  and 2 of the worker are pipes, so output of C code and subprocesses is
  caught too.

The records are named tuples at both ends but travel as plain tuples: pickle
writes a plain tuple in a few bytes, a named one as a class reference and a
call (five times the time, both ways, measured), and every job pays that.
``tuple(record)`` before pickling, ``tuple.__new__(Record, t)`` after.

Tickets: who starts a job, the worker or no one
-----------------------------------------------
A worker starts a job only once it has read the job's ticket from its
tickets pipe; the parent keeps a read end of that pipe too, and *takes
back* the jobs a worker holds but has not started by reading the tickets
left there (to hand them to an idle worker, or to cancel them). The kernel
hands each ticket to exactly one of the two reads, so a job is either
started by the worker or taken back by the parent, never both and never
neither, at once and without a message: the worker may be deep in a long
task, unable to answer. Tickets and jobs go out in the same order, so a
worker that reads the ticket of job *k* knows the jobs it holds before *k*
were taken back, and one that finds no ticket knows that all were; a ticket
may come before its job, which is then on its way. A ticket write of at
most ``PIPE_BUF`` bytes is all or nothing, so reads never split one.

The *slot* is a small shared array: ``[key, since, phase]``: the job the
worker holds now, ``key`` ``NO_KEY`` between jobs; ``phase`` is ``LOADING``
while the job's task and data are unpickled (which may import modules) and
``RUNNING`` once the task runs, ``since`` when that phase began. It costs no
message, tells the parent which job a dead worker was running (a job whose
result arrived is never blamed) and when the task started, for the parent's
fallback timeout (which does not count the loading), ``Sched.status()`` and
work stealing.
"""

from __future__ import annotations

import array
import os
import select
import struct
from typing import NamedTuple

from pexen.sched._errors import TransportError

HEADER = struct.Struct("<I")
MAX_FRAME = 2**32 - 1

# parent -> worker
JOBS, STOP = 0, 1
# worker -> parent
READY, RESULT, INIT_FAILED = 0, 1, 2
SLOT_SIZE = 3  # key, since, phase

TICKET = struct.Struct("=q")  # a job's key, as the tickets pipe carries it
# tickets written at once: all or nothing (POSIX), so never split by a read
TICKETS_PER_WRITE = select.PIPE_BUF // TICKET.size

NO_KEY = -1.0  # the slot's key between jobs (the slot holds doubles)
LOADING, RUNNING = 0.0, 1.0  # the slot's phase of the job it holds


class WireJob(NamedTuple):
    """A job as a worker gets it."""

    key: int
    task_blob: bytes  # the task, pickled once per run (``transport.dumps_task``)
    pass_shared: bool
    data_blob: bytes | None  # pickled ``(kwargs, shared)``; None: two empty dicts
    alarm: float | None  # seconds after which the worker's SIGALRM ends it
    form: int  # how task_blob is loaded: ``transport.loads_task``


class WireOutcome(NamedTuple):
    """How a job ended, as a worker reports it; the parent words the errors."""

    key: int
    shared_blob: bytes | bool | None  # None: empty dict; False: not picklable
    ret_blob: bytes | None  # None: the task returned None
    exc_blob: bytes | None  # ``transport.dumps_excinfo`` of what it raised
    problem: tuple[str, str] | None  # (what, reason): a value that cannot travel
    started: float | None = None  # time.monotonic() when the task started
    duration: float | None = None  # seconds the task ran


def frame(payload: bytes) -> bytes:
    """Prefix *payload* with its length."""
    if len(payload) > MAX_FRAME:
        raise TransportError(
            f"a message of {len(payload)} bytes is too large to send "
            f"(at most {MAX_FRAME})"
        )
    return HEADER.pack(len(payload)) + payload


def write_tickets(fd: int, keys: list[int]) -> int:
    """Write the tickets of jobs *keys* to a non-blocking fd; return how many
    went in (those of the first jobs: the pipe may be full)."""
    written = 0
    while written < len(keys):
        chunk = keys[written : written + TICKETS_PER_WRITE]
        try:
            os.write(fd, array.array("q", chunk).tobytes())
        except BlockingIOError:
            break
        written += len(chunk)
    return written


def read_tickets(fd: int, most: int) -> list[int]:
    """Read up to *most* tickets from a non-blocking fd: the keys of the jobs
    they are for, in order; none if the pipe is empty."""
    try:
        data = os.read(fd, TICKET.size * most)
    except BlockingIOError:
        return []
    return array.array("q", data).tolist()


def split_frames(buf: bytearray) -> list[bytes]:
    """Remove and return the complete frames at the start of *buf*."""
    frames = []
    pos, end, size = 0, len(buf), HEADER.size
    while end - pos >= size:
        (length,) = HEADER.unpack_from(buf, pos)
        if end - pos - size < length:
            break
        frames.append(bytes(buf[pos + size : pos + size + length]))
        pos += size + length
    if pos:
        del buf[:pos]
    return frames


def write_all(fd: int, data: bytes) -> None:
    """Write *data* to a blocking fd, whatever the pipe takes at a time."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FrameReader:
    """Read frames from a blocking fd; ``read()`` returns None at end of file."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.frames: list[bytes] = []

    def read(self) -> bytes | None:
        while not self.frames:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk
            self.frames = split_frames(self.buf)
            self.frames.reverse()
        return self.frames.pop()


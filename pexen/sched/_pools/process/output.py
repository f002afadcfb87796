"""Worker output for ``ProcessWorkerPool``: stdout, stderr and log records.

Two parts: the :class:`Relay` moves bytes, the :class:`Emitter` shows them.
A thread of the parent (``pexen-relay-N``) drains the workers' output pipes
into memory as soon as anything arrives, so a task never blocks on a full
pipe, even while the caller holds a result and the scheduler does not run.
It only moves bytes: it writes to no stream and calls no handler, so it holds
no lock a forked child could inherit in a held state. Everything the user
sees is *emitted* by the pool in the caller's thread, in ``wait()`` and
``stop()``: text to the parent's ``sys.stdout``/``sys.stderr`` of the moment
(so ``contextlib.redirect_stdout`` and pytest's capture see it), log records
to the parent's loggers. ``sync()`` reads what is already in the pipes, so
what a task printed or logged before it finished is emitted before its
result is handed back.

The thread wakes the pool's ``wait()`` through ``wake_fd`` when there is
something to emit, so output of a long task shows while it runs. Lines stay
whole: a partial line waits for its end, or for ``take(flush=True)``.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import pickle
import select
import sys
import threading
from collections.abc import Callable
from typing import Any

from pexen.sched._pools.base import sigint_blocked
from pexen.sched._pools.process.wire import split_frames

OUT, ERR, LOG = "stdout", "stderr", "log"

_CHUNK = 1 << 16
_MAX_BUFFERED = 64 << 20  # per stream; beyond it the worker waits for the caller
_READS_PER_TURN = 16


class Stream:
    """One output pipe of one worker, and what was read from it."""

    __slots__ = ("buf", "decoder", "eof", "fd", "kind", "owner", "pending")

    def __init__(self, fd: int, kind: str, owner: Any) -> None:
        self.fd = fd
        self.kind = kind
        self.owner = owner
        self.buf = bytearray()  # the relay's, under its lock
        self.pending = bytearray()  # the pool's: taken, not yet emitted
        self.decoder: Any = None  # the pool's
        self.eof = False


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


class Relay:
    """Drains output pipes in a thread; ``take()`` hands over what arrived."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._version = 0
        self._sync_version = -1
        self._sync_poller = select.poll()
        self._stopping = False
        self._news = False  # data read since the last take(); under the lock
        self._poked = False  # wake_fd written since the last take()
        self._thread: threading.Thread | None = None
        self._ctl_r, self._ctl_w = _pipe()
        self.wake_fd, self._wake_w = _pipe()

    # -- lifecycle (the pool's thread) -----------------------------------------

    def start(self) -> None:
        """Start the thread (with SIGINT blocked: Ctrl-C is the caller's)."""
        self._stopping = False
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        with sigint_blocked():
            thread.start()
        self._thread = thread

    def pause(self) -> None:
        """Stop the thread (streams stay); ``start()`` resumes. Used around fork."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._nudge()
        thread.join()

    def close(self) -> None:
        """Stop the thread and close the relay's own pipes (streams are the pool's)."""
        self.pause()
        for fd in (self._ctl_r, self._ctl_w, self.wake_fd, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def add(self, stream: Stream) -> None:
        with self._lock:
            self._streams[stream.fd] = stream
            self._version += 1
        self._nudge()

    def remove(self, fd: int) -> Stream | None:
        """Stop watching *fd* after reading what it holds now; the caller closes it."""
        with self._lock:
            stream = self._streams.pop(fd, None)
            if stream is not None:
                self._read(stream, limit=_READS_PER_TURN)  # a writer may go on
                stream.pending += stream.buf
                stream.buf.clear()
            self._version += 1
        self._nudge()
        return stream

    # -- handing over (the pool's thread) --------------------------------------

    @property
    def has_news(self) -> bool:
        """Whether anything was read since the last ``take()``.

        Set in the same locked step as the read itself, so a caller that saw
        a result after the output was written cannot miss the output.
        """
        return self._news

    def sync(self) -> bool:
        """Read whatever the pipes hold right now; return whether there was any."""
        with self._lock:
            if self._version != self._sync_version:
                self._sync_version = self._version
                poller = self._sync_poller = select.poll()
                for fd, stream in self._streams.items():
                    if not stream.eof:
                        poller.register(fd, select.POLLIN)
        ready = self._sync_poller.poll(0)
        if not ready:
            return False
        got = False
        with self._lock:
            for fd, _events in ready:
                found = self._streams.get(fd)
                if found is not None:
                    got = self._read(found, limit=_READS_PER_TURN) or got
        return got

    def take(self) -> list[Stream]:
        """Move what arrived to each stream's ``pending``; return those streams."""
        with contextlib.suppress(OSError):
            while os.read(self.wake_fd, 4096):
                pass
        with self._lock:
            self._news = self._poked = False
            ready = [s for s in self._streams.values() if s.buf]
            full = False
            for stream in ready:
                full = full or len(stream.buf) >= _MAX_BUFFERED
                stream.pending += stream.buf
                stream.buf.clear()
            if full:  # they were left unwatched while full
                self._version += 1
        if full:
            self._nudge()
        return ready

    # -- the thread ------------------------------------------------------------

    def _nudge(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._ctl_w, b"x")

    def _read(self, stream: Stream, limit: int | None) -> bool:
        """Read *stream* until empty (or *limit* chunks); hold the lock."""
        got = False
        n = 0
        while limit is None or n < limit:
            try:
                chunk = os.read(stream.fd, _CHUNK)
            except BlockingIOError:
                break
            except OSError:  # closed under us: the pool removed it
                stream.eof = True
                break
            if not chunk:
                stream.eof = True
                self._version += 1
                break
            stream.buf += chunk
            got = self._news = True
            n += 1
        return got

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._ctl_r, select.POLLIN)
        watched: set[int] = set()
        seen_version = -1
        while True:
            with self._lock:
                if self._version != seen_version:
                    seen_version = self._version
                    wanted = {
                        fd
                        for fd, s in self._streams.items()
                        if not s.eof and len(s.buf) < _MAX_BUFFERED
                    }
                else:
                    wanted = watched
            for fd in watched - wanted:
                with contextlib.suppress(KeyError, ValueError):
                    poller.unregister(fd)
            for fd in wanted - watched:
                poller.register(fd, select.POLLIN)
            watched = set(wanted)
            got = False
            for fd, _events in poller.poll():
                if fd == self._ctl_r:
                    with contextlib.suppress(BlockingIOError, OSError):
                        os.read(self._ctl_r, 4096)
                    if self._stopping:
                        return
                    continue
                with self._lock:
                    stream = self._streams.get(fd)
                    if stream is None:  # removed, maybe closed: forget it
                        with contextlib.suppress(KeyError, ValueError):
                            poller.unregister(fd)
                        watched.discard(fd)
                        continue
                    got = self._read(stream, _READS_PER_TURN) or got
                    if stream.eof or len(stream.buf) >= _MAX_BUFFERED:
                        self._version += 1
            if got:
                with self._lock:
                    poke, self._poked = not self._poked, True
                if poke:
                    with contextlib.suppress(BlockingIOError, OSError):
                        os.write(self._wake_w, b"x")


def _write_text(target: Any, text: str) -> None:
    if target is None or not text:
        return
    try:
        target.write(text)
    except UnicodeEncodeError:
        encoding = getattr(target, "encoding", None) or "ascii"
        target.write(text.encode(encoding, "backslashreplace").decode(encoding))
    except (OSError, ValueError):  # closed, or gone
        return
    with contextlib.suppress(OSError, ValueError):
        target.flush()


class Emitter:
    """Show what the relay took: text on our streams, records to our loggers.

    Runs in the caller's thread only. ``name_of(key)`` names the task of a
    job key, for the ``pexen_task`` attribute of forwarded log records.
    """

    def __init__(self, name_of: Callable[[Any], str | None]) -> None:
        self.name_of = name_of
        self.partial: set[Stream] = set()  # text streams holding part of a line

    def emit(self, streams: list[Stream], flush: bool = False) -> None:
        """Emit *streams*' pending data; with *flush*, partial lines too."""
        for stream in streams:
            if stream.kind == LOG:
                self._emit_records(stream)
            else:
                self._emit_text(stream, flush)
        if flush and self.partial:
            for stream in list(self.partial):
                self._emit_text(stream, flush)

    def _emit_text(self, stream: Stream, flush: bool) -> None:
        data = stream.pending
        cut = len(data) if flush else data.rfind(b"\n") + 1
        if cut:
            chunk = bytes(data[:cut])
            del data[:cut]
            if stream.decoder is None:
                stream.decoder = codecs.getincrementaldecoder("utf-8")("replace")
            text = stream.decoder.decode(chunk)
            _write_text(sys.stdout if stream.kind == OUT else sys.stderr, text)
        if data:
            self.partial.add(stream)
        else:
            self.partial.discard(stream)

    def _emit_records(self, stream: Stream) -> None:
        for payload in split_frames(stream.pending):
            try:
                state = pickle.loads(payload)
            except Exception:
                continue
            state["pexen_task"] = self.name_of(state.pop("pexen_key", None))
            record = logging.makeLogRecord(state)
            name = record.name
            logger = logging.getLogger(None if name == "root" else name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)

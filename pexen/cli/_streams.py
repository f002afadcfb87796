"""The command's stdout and stderr: what they cannot encode, and a reader gone.

``pexen run ... | head -1`` closes the pipe after one line. A closed output
changes nothing about the run: what is written to it is dropped quietly, so
every task runs, the reports are written and the exit status is the suite's.
While a command runs, ``sys.stdout`` and ``sys.stderr`` are stand-ins that
do so, for every writer in this process: the console, ``print``, the
capture's routers and the process pool's output relay. Once a reader is
gone, the stream's file descriptor is pointed at ``os.devnull``, so what its
buffer still holds goes nowhere when Python flushes it at exit, instead of
printing ``Exception ignored ... BrokenPipeError``. Afterwards the original
streams are given back, also to the logging handlers made meanwhile (by a
suite's ``logging.basicConfig()`` at import).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import IO, Any, TextIO, cast

from pexen._capture import stream_handlers


class ReaderTolerant:
    """A text stream that drops what it writes once its reader has gone."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self.stream.write(text)
            except BrokenPipeError:
                self._drop()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._drop()

    def _drop(self) -> None:
        self.reader_gone = True
        to_devnull(self.stream)

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ...
        return getattr(self.stream, name)


def to_devnull(stream: IO[str]) -> None:
    """Point *stream*'s file descriptor at ``os.devnull`` (if it has one)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # pytest's capture, closed
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _tolerant_encoding() -> None:
    """Let ``sys.stdout`` and ``sys.stderr`` write what their encoding cannot
    (a task's output under ``PYTHONIOENCODING=ascii``) as ``\\uXXXX`` escapes."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError):  # closed
                stream.reconfigure(errors="backslashreplace")


@contextlib.contextmanager
def command_streams() -> Iterator[tuple[IO[str], IO[str]]]:
    """Make ``sys.stdout`` and ``sys.stderr`` tolerant while a command runs;
    yield them, and put the originals back, flushed, at the end (also in
    the logging handlers that took them)."""
    _tolerant_encoding()
    saved = sys.stdout, sys.stderr
    out = cast(TextIO, ReaderTolerant(saved[0]))
    err = cast(TextIO, ReaderTolerant(saved[1]))
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = saved
        originals = {id(out): saved[0], id(err): saved[1]}
        for handler in stream_handlers():
            original = originals.get(id(handler.stream))
            if original is not None:
                handler.setStream(original)

"""``FilesystemFactory``: every executable file below a directory becomes a task."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

from pexen._proctree import kill_process_tree
from pexen.factory._base import BaseFactory, get_callpath
from pexen.factory._header import read_header
from pexen.sched._errors import TaskTimeoutError
from pexen.sched.meta import SchedMeta, assign_meta, retrieve_meta

# subprocess.run() arguments the factory sets itself
_RESERVED = ("args", "check", "cwd")
_ANY_EXEC = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class FileTask:
    """Run one executable file in its own directory; return its ``CompletedProcess``.

    A plain module-level class (not a closure) so that it pickles by value and
    runs on process pools under every start method. ``path`` is absolute.
    It behaves as ``subprocess.run([path], cwd=its directory, check=True,
    **popen_kwargs)``, except when the script must stop early: a ``timeout``
    in the task's metadata (or in ``popen_kwargs``) kills the script *and every
    process it started*, then raises ``TaskTimeoutError`` carrying ``cmd``
    and the ``output``/``stderr`` captured until then; ``kill_running_files``
    does the same for every script still running in this process.
    """

    def __init__(
        self, path: str, popen_kwargs: Mapping[str, Any] | None = None
    ) -> None:
        self.path = path
        self.popen_kwargs = dict(popen_kwargs or {})

    def __repr__(self) -> str:
        name = "/".join(get_callpath(self)) or self.path
        return f"<FileTask {name!r}>"

    def __call__(self) -> subprocess.CompletedProcess[Any]:
        """Run the file; raise ``CalledProcessError`` on a non-zero exit and
        ``TaskTimeoutError`` on timeout."""
        kwargs = dict(self.popen_kwargs)
        timeout = kwargs.pop("timeout", None)
        if timeout is None:
            meta = retrieve_meta(self)
            timeout = meta.timeout if meta is not None else None
        data = kwargs.pop("input", None)
        if data is not None:
            kwargs["stdin"] = subprocess.PIPE
        if kwargs.pop("capture_output", False):
            kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
        cmd = [self.path]
        with subprocess.Popen(cmd, cwd=os.path.dirname(self.path), **kwargs) as proc:
            _running.add(proc)
            try:
                out, err = proc.communicate(data, timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_process_tree(proc.pid)
                out, err = _output_left(proc)
                exc = TaskTimeoutError(
                    f"{self.path!r} ran longer than its timeout of {timeout}s "
                    "and was killed, with every process it started"
                )
                exc.cmd, exc.output, exc.stderr = cmd, out, err
                raise exc from None
            except BaseException:  # interrupted: leave nothing running
                kill_process_tree(proc.pid)
                raise
            finally:
                _running.discard(proc)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, cmd, out, err)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# The scripts FileTasks of this process are running now (for kill_running_files).
_running: set[subprocess.Popen] = set()


def kill_running_files() -> None:
    """Kill every script a ``FileTask`` of this process is running, with all
    the processes it started (``pexen run`` abandoning its running tasks)."""
    for proc in list(_running):
        kill_process_tree(proc.pid)


def _output_left(proc: subprocess.Popen) -> tuple[Any, Any]:
    """What a killed script wrote before it died (its pipes are closed now,
    unless a process that escaped the kill holds them: then give up on them)."""
    try:
        return proc.communicate(timeout=_OUTPUT_GRACE)
    except subprocess.TimeoutExpired as exc:
        return exc.output, exc.stderr


_OUTPUT_GRACE = 5.0  # seconds to read a killed script's last output


class FilesystemFactory(BaseFactory):
    """Make a task of every executable, non-hidden file below a directory.

    Hidden files and directories (name starting with ``.``) are skipped, and
    so are symlinks that lead nowhere (dangling, or a loop of symlinks) and
    directory symlinks unless *follow* is true; with *follow*, a
    symlink back to a directory being walked (a cycle) is not entered again.
    A file counts as executable when it is a regular file (symlinks to files
    are followed) with any execute bit set. Each task runs the file as
    ``subprocess.run([path], cwd=its directory, check=True, **popen_kwargs)``
    would (see ``FileTask`` for how a timeout ends it).
    Its call path is the directory parts relative to the root plus the file
    name; a ``# pexen:`` header gives it metadata (see docs/factories.md), and
    a file with a malformed header is recorded in ``errors`` and skipped.
    """

    def __init__(self, follow: bool = False, **popen_kwargs: Any) -> None:
        super().__init__()
        reserved = [key for key in _RESERVED if key in popen_kwargs]
        if reserved:
            raise TypeError(
                f"FilesystemFactory sets {', '.join(map(repr, reserved))} of "
                "subprocess.run() itself (the file, its directory, check=True); "
                "do not pass them"
            )
        self.follow = follow
        self.popen_kwargs = popen_kwargs

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.popen_kwargs.items())
        return f"FilesystemFactory(follow={self.follow!r}{extra})"

    def collect(self, root: str | os.PathLike[str]) -> Iterator[FileTask]:
        """Yield a task per executable file below *root* (or for *root* itself)."""
        root = os.path.abspath(os.fspath(root))
        st = os.stat(root)
        if stat.S_ISDIR(st.st_mode):
            yield from self._walk(root, frozenset({(st.st_dev, st.st_ino)}))
        elif stat.S_ISREG(st.st_mode) and st.st_mode & _ANY_EXEC:
            task = self._make(root, os.path.basename(root))
            if task is not None:
                yield task
        else:
            raise ValueError(
                f"{root!r} is neither a directory nor an executable file"
            )

    def _walk(
        self, directory: str, ancestors: frozenset[tuple[int, int]]
    ) -> Iterator[FileTask]:
        """Yield tasks below *directory*; *ancestors*: (dev, inode) of dirs walked."""
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda entry: entry.name)
        except OSError as exc:
            self.record_error(directory, exc)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat()  # follows symlinks
            except FileNotFoundError:
                continue  # a dangling symlink is no executable
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    continue  # nor is a symlink loop (one onto itself, a to b to a)
                self.record_error(entry.path, exc, entry.name)
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.is_symlink() and not self.follow:
                    continue
                ident = (st.st_dev, st.st_ino)
                if ident in ancestors:
                    continue  # a symlink cycle: this directory is being walked
                self.callpath_push(entry.name)
                yield from self._walk(entry.path, ancestors | {ident})
                self.callpath_pop()
            elif stat.S_ISREG(st.st_mode) and st.st_mode & _ANY_EXEC:
                task = self._make(entry.path, entry.name)
                if task is not None:
                    yield task

    def _make(self, path: str, name: str) -> FileTask | None:
        """Build the task for *path*, or record why it cannot be made."""
        try:
            fields = read_header(path)
        except (OSError, ValueError) as exc:
            self.record_error(path, exc, name)
            return None
        task = FileTask(path, self.popen_kwargs)
        if fields:
            assign_meta(task, SchedMeta(**fields))
        return self.callpath_burn(task, name)

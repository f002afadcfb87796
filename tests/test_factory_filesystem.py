"""FilesystemFactory: which files become tasks, how they run, and script headers."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import threading

import pytest

from pexen import PexenWarning, sched
from pexen.factory import CollectionError, FilesystemFactory, HeaderError, get_callpath
from pexen.factory._filesystem import kill_running_files
from pexen.factory._header import HEADER_LINES, read_header
from pexen.sched.meta import retrieve_meta
from tests._leaks import alive, poll


def write(path, text, executable=False):
    """Write *text* to *path* (making parents); set the execute bits if asked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755 if executable else 0o644)
    return path


def script(path, body="", header=""):
    """Write an executable shell script with an optional ``# pexen:`` header."""
    return write(path, f"#!/bin/sh\n{header}{body}\n", executable=True)


@pytest.fixture
def tree(tmp_path):
    """A directory of executables, other files, hidden entries and symlink loops."""
    root = tmp_path / "root"
    script(root / "a.sh", "echo a")
    write(root / "notes.txt", "not executable\n")
    write(root / "data.bin", "x\n", executable=False)
    script(root / ".hidden.sh", "echo hidden")
    script(root / ".hiddendir" / "c.sh", "echo c")
    script(root / "sub" / "d.sh", "pwd")
    script(root / "sub" / "deeper" / "e.sh", "echo e")
    (root / "sub" / "fifo").parent.mkdir(exist_ok=True)
    os.mkfifo(root / "sub" / "fifo")
    os.chmod(root / "sub" / "fifo", 0o755)
    os.symlink("a.sh", root / "alias.sh")  # a file symlink: followed
    os.symlink("missing", root / "dangling")  # points nowhere: skipped
    os.symlink("../..", root / "sub" / "deeper" / "up")  # cycle back to root
    os.symlink(".", root / "sub" / "self")  # cycle onto itself
    script(tmp_path / "outside" / "f.sh", "echo f")
    os.symlink("../outside", root / "link_out")  # a plain directory symlink
    return root


def paths(tasks):
    return [get_callpath(task) for task in tasks]


def test_executables_become_tasks_sorted_by_callpath(tree):
    assert paths(FilesystemFactory()(tree)) == [
        ("a.sh",),
        ("alias.sh",),
        ("sub", "d.sh"),
        ("sub", "deeper", "e.sh"),
    ]


def test_follow_enters_directory_symlinks_but_not_cycles(tree):
    assert paths(FilesystemFactory(follow=True)(tree)) == [
        ("a.sh",),
        ("alias.sh",),
        ("link_out", "f.sh"),
        ("sub", "d.sh"),
        ("sub", "deeper", "e.sh"),
    ]


@pytest.mark.parametrize("follow", [False, True])
def test_symlink_loops_are_skipped_like_dangling_symlinks(tmp_path, follow):
    script(tmp_path / "a.sh", "echo a")
    script(tmp_path / "sub" / "b.sh", "echo b")
    os.symlink("self", tmp_path / "self")  # a symlink onto itself
    os.symlink("pong", tmp_path / "ping")  # ping -> pong -> ping
    os.symlink("ping", tmp_path / "pong")
    os.symlink("loop", tmp_path / "sub" / "loop")
    os.symlink("missing", tmp_path / "dangling")
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        os.stat(tmp_path / "ping")  # so the loops are real
    factory = FilesystemFactory(follow=follow)
    assert paths(factory(tmp_path)) == [("a.sh",), ("sub", "b.sh")]
    assert factory.errors == [], "no note, no warning: as for a dangling symlink"


def test_a_task_runs_its_file_in_its_own_directory(tree):
    factory = FilesystemFactory(capture_output=True, text=True)
    task = {get_callpath(t): t for t in factory(tree)}[("sub", "d.sh")]
    assert task.path == str(tree / "sub" / "d.sh")
    assert os.path.isabs(task.path)
    done = task()
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.args == [task.path]
    assert done.returncode == 0
    assert os.path.samefile(done.stdout.strip(), tree / "sub")


def test_the_root_may_be_given_as_str_and_from_another_directory(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    tasks = list(FilesystemFactory(capture_output=True)("root"))
    assert len(tasks) == 4
    assert all(os.path.isabs(task.path) for task in tasks)
    monkeypatch.chdir("/")
    assert all(task().returncode == 0 for task in tasks)


def test_a_single_executable_file_as_root(tree):
    (task,) = FilesystemFactory()(tree / "sub" / "d.sh")
    assert get_callpath(task) == ("d.sh",)
    with pytest.raises(ValueError, match=r"notes.txt' is neither a directory nor an"):
        FilesystemFactory()(tree / "notes.txt")
    with pytest.raises(FileNotFoundError):
        FilesystemFactory()(tree / "nowhere")


def test_the_factory_is_reusable(tree):
    factory = FilesystemFactory(follow=True, capture_output=True)

    def fingerprint(task):
        return (get_callpath(task), task.path, task.popen_kwargs, retrieve_meta(task))

    first, second = list(factory(tree)), list(factory(tree))
    assert [fingerprint(t) for t in first] == [fingerprint(t) for t in second]
    assert not set(map(id, first)) & set(map(id, second)), "fresh tasks each call"


def test_tasks_pickle_with_their_callpath_and_metadata(tmp_path):
    script(tmp_path / "s.sh", "echo hi",
           header="# pexen: provides=x requires=y claims=db priority=-2 timeout=30\n")
    (task,) = FilesystemFactory(capture_output=True)(tmp_path)
    copy = pickle.loads(pickle.dumps(task))
    assert type(copy) is type(task)
    assert get_callpath(copy) == ("s.sh",)
    assert retrieve_meta(copy) == retrieve_meta(task)
    assert copy().stdout == b"hi\n"
    assert repr(copy) == "<FileTask 's.sh'>"


@pytest.mark.parametrize("key", ["args", "cwd", "check"])
def test_the_factory_refuses_run_arguments_it_sets_itself(key):
    with pytest.raises(TypeError, match=rf"sets '{key}' of subprocess.run\(\) itself"):
        FilesystemFactory(**{key: None})


def test_a_failing_script_fails_its_task(tmp_path):
    script(tmp_path / "fail.sh", "exit 3")
    script(tmp_path / "ok.sh", "exit 0")
    results = {get_callpath(res.task): res
               for res in sched.Sched(FilesystemFactory()(tmp_path)).run()}
    assert results[("ok.sh",)].excinfo is None
    failed = results[("fail.sh",)].excinfo
    assert failed.type is subprocess.CalledProcessError
    assert failed.val.returncode == 3


def test_a_header_timeout_kills_the_script(tmp_path):
    # the script would wait for a minute; the header's timeout cuts it short
    # a second: the script is killed by its task, within the pool's own grace
    # past the same timeout, even on a loaded machine
    script(tmp_path / "hang.sh", "exec sleep 60", header="# pexen: timeout=1\n")
    (res,) = sched.Sched(FilesystemFactory()(tmp_path)).run()
    assert res.excinfo.type is sched.TaskTimeoutError
    assert str(res.excinfo.val).endswith(
        "hang.sh' ran longer than its timeout of 1s and was killed, with every "
        "process it started")
    assert res.excinfo.val.cmd == [str(tmp_path / "hang.sh")]


LEAVES_A_CHILD = """
sleep 60 &
echo $! > child.pid
echo "before the timeout"
echo started > started
wait
"""


def test_a_timeout_kills_what_the_script_started_and_keeps_its_output(tmp_path):
    script(tmp_path / "spawns.sh", LEAVES_A_CHILD, header="# pexen: timeout=1\n")
    factory = FilesystemFactory(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    (res,) = sched.Sched(factory(tmp_path)).run()
    assert res.excinfo.type is sched.TaskTimeoutError
    assert res.excinfo.val.output == b"before the timeout\n"
    child = int((tmp_path / "child.pid").read_text())
    assert poll(lambda: not alive(child)), "the script's child outlived its timeout"


def test_kill_running_files_stops_scripts_and_their_children(tmp_path):
    script(tmp_path / "spawns.sh", LEAVES_A_CHILD)
    (task,) = FilesystemFactory(stdout=subprocess.DEVNULL)(tmp_path)
    outcome = []

    def run():
        try:
            task()
        except subprocess.CalledProcessError as exc:
            outcome.append(exc.returncode)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        assert poll(lambda: (tmp_path / "started").exists())
        kill_running_files()
    finally:
        runner.join(30)
    assert outcome == [-signal.SIGKILL]
    child = int((tmp_path / "child.pid").read_text())
    assert poll(lambda: not alive(child))


def test_an_unreadable_executable_is_recorded(tmp_path, monkeypatch):
    script(tmp_path / "secret.sh", "echo")
    script(tmp_path / "plain.sh", "echo")

    def read_header(path):
        # what open() raises for a file with mode --x (root may read anything)
        if path.endswith("secret.sh"):
            raise PermissionError(13, "Permission denied", path)
        return {}

    monkeypatch.setattr("pexen.factory._filesystem.read_header", read_header)
    factory = FilesystemFactory()
    with pytest.warns(PexenWarning, match="1 item could not be collected"):
        assert paths(factory(tmp_path)) == [("plain.sh",)]
    assert isinstance(factory.errors[0].exc, PermissionError)
    assert factory.errors[0].callpath == ("secret.sh",)


# -- the header --------------------------------------------------------------


@pytest.mark.parametrize(("lines", "fields"), [
    ([], {}),
    (["# pexen: requires=db"], {"requires": {"db"}}),
    (["#pexen: provides=web,api claims=port80 uses=net priority=5 timeout=30"],
     {"provides": {"web", "api"}, "claims": {"port80"}, "uses": {"net"},
      "priority": 5, "timeout": 30}),
    (["  #   pexen:  requires=a  ", "# pexen: requires=b,a provides=c"],
     {"requires": {"a", "b"}, "provides": {"c"}}),
    (["# pexen: priority=-3 timeout=2.5"], {"priority": -3, "timeout": 2.5}),
    (["# pexen: requires=db:5432,ns/tag"], {"requires": {"db:5432", "ns/tag"}}),
    (["# not a header: pexen: requires=x", "echo '# pexen: requires=y'"], {}),
    (["# PEXEN: requires=x"], {}),
])
def test_header_syntax(tmp_path, lines, fields):
    path = script(tmp_path / "s.sh", "\n".join(lines))
    assert read_header(str(path)) == fields


@pytest.mark.parametrize(("line", "problem"), [
    ("# pexen:", r"'# pexen:' with nothing after it"),
    ("# pexen: requires db", r"'requires' is not key=value"),
    ("# pexen: requires = db", r"'requires' is not key=value"),
    ("# pexen: require=db", r"unknown key 'require' \(did you mean 'requires'\?\)"),
    ("# pexen: kwargs=x", r"unknown key 'kwargs'; allowed keys: requires, provides"),
    ("# pexen: requires=", r"requires= has no value"),
    ("# pexen: requires=a,,b", r"'requires=a,,b': '' is not a tag"),
    ("# pexen: provides=a, ", r"'provides=a,': '' is not a tag"),
    ("# pexen: claims=a=b", r"'claims=a=b': 'a=b' is not a tag"),
    ("# pexen: priority=high", r"priority='high': expected an integer"),
    ("# pexen: priority=1 priority=2", r"priority is given twice"),
    ("# pexen: timeout=0", r"timeout='0': expected a positive number of seconds"),
    ("# pexen: timeout=-1", r"timeout='-1': expected a positive"),
    ("# pexen: timeout=1e3", r"timeout='1e3': expected a positive"),
    ("# pexen: requires=db # a comment", r"'#' is not key=value"),
])
def test_a_malformed_header_names_file_and_line(tmp_path, line, problem):
    path = script(tmp_path / "s.sh", "echo", header=f"# a comment\n{line}\n")
    expected = rf"^{path}:3: malformed pexen header: {problem}"
    with pytest.raises(HeaderError, match=expected):
        read_header(str(path))


def test_header_error_attributes_and_pickling(tmp_path):
    path = script(tmp_path / "s.sh", "", header="# pexen: oops\n")
    with pytest.raises(HeaderError) as info:
        read_header(str(path))
    err = info.value
    assert (err.path, err.lineno) == (str(path), 2)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.lineno, copy.problem, str(copy)) == (
        err.path, err.lineno, err.problem, str(err))


def test_only_the_first_lines_are_a_header(tmp_path):
    filler = ["# filler"] * (HEADER_LINES - 2)
    near = script(tmp_path / "near.sh", "\n".join([*filler, "# pexen: requires=x"]))
    far = script(tmp_path / "far.sh", "\n".join([*filler, "#", "# pexen: oops"]))
    assert read_header(str(near)) == {"requires": {"x"}}
    assert read_header(str(far)) == {}


def test_a_binary_has_no_header(tmp_path):
    path = tmp_path / "prog"
    path.write_bytes(b"\x7fELF\0\0\n# pexen: this would be malformed\n")
    assert read_header(str(path)) == {}


def test_a_malformed_header_skips_that_file_and_collection_goes_on(tmp_path):
    script(tmp_path / "good.sh", "", header="# pexen: provides=x\n")
    bad = script(tmp_path / "grp" / "bad.sh", "",
                 header="#\n# pexen: requires=x oops\n")
    factory = FilesystemFactory()
    with pytest.warns(PexenWarning, match=r"1 item could not be collected \(first: "
                      rf"cannot collect {bad}: HeaderError: {bad}:3: malformed"):
        tasks = list(factory(tmp_path))
    assert paths(tasks) == [("good.sh",)]
    assert retrieve_meta(tasks[0]).provides == {"x"}
    (error,) = factory.errors
    assert isinstance(error, CollectionError)
    assert (error.path, error.callpath) == (str(bad), ("grp", "bad.sh"))
    assert isinstance(error.exc, HeaderError)
    assert error.exc.lineno == 3
    assert "'oops' is not key=value" in error.traceback


def test_header_metadata_orders_scripts_in_a_run(tmp_path):
    log = tmp_path / "log"
    for name, header in [("1-last.sh", "requires=mid"),
                         ("2-mid.sh", "requires=first provides=mid"),
                         ("3-first.sh", "provides=first")]:
        script(tmp_path / name, f"echo {name} >> {log}", header=f"# pexen: {header}\n")
    results = list(sched.Sched(FilesystemFactory()(tmp_path)).run())
    assert [res.excinfo for res in results] == [None] * 3
    assert log.read_text().split() == ["3-first.sh", "2-mid.sh", "1-last.sh"]

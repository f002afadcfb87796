"""``pexen run`` in-process: output, exit status, -k, -x, errors, executables."""

from __future__ import annotations

import io
import itertools
import logging
import pathlib
import re
import subprocess
import sys
import warnings

import pytest

from pexen import PexenWarning
from pexen.cli import main
from pexen.cli._run import pexen_warnings
from pexen.sched import Sched
from pexen.sched.meta import func_meta
from pexen.sched.pool import InlineWorkerPool
from tests.cli._cli import (
    CONTROL_CHARS,
    EXAMPLES,
    pexen_env,
    restore_imports,
    write_package,
    write_script,
)

_names = itertools.count()


@pytest.fixture
def isolated_imports():
    """Undo what collecting a suite does to ``sys.path`` and ``sys.modules``."""
    with restore_imports():
        yield


@pytest.fixture
def pkg_name():
    """A package name no other test uses (modules stay imported under it)."""
    return f"clipkg{next(_names)}"


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["run", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_example_suite_plain_output(capsys, isolated_imports):
    status, out, err = run(capsys, str(EXAMPLES / "suite"), "-j", "2")
    assert status == 1
    assert not CONTROL_CHARS.search(out), "plain output holds control characters"
    lines = out.splitlines()
    assert lines[0] == (
        f"collected 9 tasks from {EXAMPLES / 'suite'} (Python package 'suite')"
    )
    # one line per finished task, numbered
    finished = [line for line in lines if line.startswith("[")]
    assert len(finished) == 7
    assert finished[0].startswith("[1/9] ")
    assert any("PASSED  suite/test_db/test_start_db (" in line for line in finished)
    assert any(
        "FAILED  suite/test_report/test_export_report (" in line
        and line.endswith("AssertionError: the report needs 3 tables, the schema has 2")
        for line in finished
    )
    # the summary: failure with traceback, skipped with reasons, slowest, totals
    failures = out.index("=== failures ===")
    assert "FAILED suite/test_report/test_export_report" in out[failures:]
    assert 'test_report.py", line 9, in test_export_report' in out
    assert "_calling.py" not in out, "the scheduler's own frames are left out"
    assert (
        "SKIPPED suite/test_report/test_email_report: requires tag 'report', never "
        "provided because 'suite/test_report/test_export_report' failed"
    ) in out
    assert "=== slowest 5 ===" in out
    # it sleeps 0.2 s; the figure is what the machine made of it
    assert re.search(r"\d\.\d\ds suite/test_db/test_start_db", out), out
    assert lines[-1].startswith("=== 6 passed, 1 failed, 2 skipped in ")
    assert lines[-1].endswith("s (thread pool, 2 workers) ===")
    assert "Sched.skipped" not in out  # the scheduler's warning is the summary's job
    assert err == ""


def test_all_passed_exits_0_and_k_keeps_providers(capsys, isolated_imports):
    status, out, _ = run(capsys, str(EXAMPLES / "suite"), "-k", "test_web")
    assert status == 0
    assert "selected 4 of 9 tasks with -k test_web, and 2 providers they require" in out
    assert out.splitlines()[-1].startswith("=== 6 passed in ")
    assert "PASSED  suite/test_db/test_start_db" in out


def test_k_glob_matches_the_whole_call_path(capsys, isolated_imports):
    status, out, _ = run(capsys, str(EXAMPLES / "suite"), "-k", "suite/*/test_m*")
    assert status == 0
    # test_migrate, and test_start_db which provides the "db" it requires
    assert "selected 1 of 9 tasks with -k suite/*/test_m*, and 1 provider" in out
    assert "=== 2 passed in " in out


def test_k_without_a_match_is_a_usage_error(capsys, isolated_imports):
    status, _, err = run(capsys, str(EXAMPLES / "suite"), "-k", "nothing-like-it")
    assert status == 2
    assert "pexen: error: no task matches -k 'nothing-like-it' among 9 tasks" in err


def test_exitfirst_stops_and_reports_the_rest_skipped(capsys, isolated_imports):
    status, out, _ = run(capsys, str(EXAMPLES / "suite"), "-x", "-j", "1")
    assert status == 1
    assert "FAILED  suite/test_report/test_export_report" in out
    assert "not started: the run was stopped early" in out
    totals = out.splitlines()[-1]
    assert ", stopped at the first failure (thread pool, 1 worker) ===" in totals
    # with one worker nothing after the failure ran
    assert "PASSED  suite/test_web/test_login" not in out


def test_quiet_prints_only_the_summary(capsys, isolated_imports):
    status, out, _ = run(capsys, str(EXAMPLES / "suite"), "-q")
    assert status == 1
    assert "collected" not in out and "[1/9]" not in out and "slowest" not in out
    assert out.startswith("=== failures ===")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no/such/dir"], "'no/such/dir': no such file or directory"),
        (["run", "nosuch.py"], "'nosuch.py': no such file or directory\n"),
        (["run", "nosuch.mod"],
         "'nosuch.mod': no such file or directory, nor an importable module "
         "(No module named 'nosuch')"),
        (["run", "-j", "0", "x"], "argument -j/--workers: 0 is less than 1"),
        (["run", "-j", "many", "x"], "'many' is not a whole number or 'auto'"),
        (["run"], "the following arguments are required: PATH"),
        (["run", "--pool", "nope", "x"], "argument --pool: invalid choice: 'nope'"),
        (["run", "--capacity", "gpu", "x"],
         "argument --capacity: 'gpu' is not RESOURCE=AMOUNT; write for example "
         "--capacity gpu=2,mem_gb=16"),
        (["run", "--capacity", "gpu=two", "x"], "'gpu=two': 'two' is not a number"),
        (["list", "--capacity", "gpu=0", "x"],
         "'gpu=0': the amount must be a positive number"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_a_dotted_module_is_found_from_the_current_directory(tmp_path):
    # as `python -m pexen` does; the console script has no cwd on sys.path
    sub = tmp_path / "proj" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "proj" / "__init__.py").write_text("")
    (sub / "__init__.py").write_text("")
    (sub / "test_x.py").write_text(
        "from pexen.sched.meta import func_meta\n\n"
        "@func_meta\ndef test_a():\n    pass\n"
    )
    console_script = pathlib.Path(sys.executable).with_name("pexen")
    proc = subprocess.run([str(console_script), "run", "proj.sub"], cwd=tmp_path,
                          env=pexen_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "collected 1 task from proj.sub (module 'proj.sub')" in proc.stdout


def test_address_needs_dask(capsys, isolated_imports):
    status = main(["run", str(EXAMPLES / "suite"), "--address", "tcp://127.0.0.1:1"])
    assert status == 2
    assert "--address is for --pool dask" in capsys.readouterr().err


def test_collection_error_is_reported_and_exits_2(
    tmp_path, capsys, isolated_imports, pkg_name
):
    write_package(
        tmp_path,
        pkg_name,
        {
            "test_good": """
                from pexen.sched.meta import func_meta
                @func_meta
                def test_ok():
                    pass
            """,
            "test_broken": "import no_such_module_anywhere\n",
        },
    )
    status, out, _ = run(capsys, str(tmp_path / pkg_name))
    assert status == 2
    assert "collected 1 task from" in out and "1 collection error" in out
    errors = out[out.index("=== collection errors ===") :]
    assert f"ERROR cannot collect {tmp_path / pkg_name / 'test_broken.py'}" in errors
    assert "ModuleNotFoundError: No module named 'no_such_module_anywhere'" in errors
    assert "=== 1 passed, 1 collection error in " in out


def test_unsound_graph_is_a_usage_error(tmp_path, capsys, isolated_imports, pkg_name):
    write_package(
        tmp_path,
        pkg_name,
        {
            "test_x": """
                from pexen.sched.meta import func_meta
                @func_meta(requires=["nothing"])
                def test_needs():
                    pass
            """
        },
    )
    status, _, err = run(capsys, str(tmp_path / pkg_name))
    assert status == 2
    assert "pexen: error: no task provides tag 'nothing', required by" in err


def test_capacity_of_counted_resources(tmp_path, capsys, isolated_imports, pkg_name):
    write_package(
        tmp_path,
        pkg_name,
        {
            "test_gpu": """
                from pexen.sched.meta import func_meta
                @func_meta(needs={"gpu": 1, "mem_gb": 2.5})
                def test_train():
                    pass
                @func_meta(needs={"gpu": 2})
                def test_big():
                    pass
            """
        },
    )
    suite = str(tmp_path / pkg_name)
    status, out, _ = run(capsys, suite, "--capacity", "gpu=1", "--capacity",
                         "gpu=2,mem_gb=8")  # a later amount wins
    assert status == 0 and "=== 2 passed in " in out
    status, _, err = run(capsys, suite, "--capacity", "gpu=1,mem_gb=8")
    assert status == 2
    assert "needs 2 of 'gpu', more than its capacity of 1" in err
    assert main(["list", suite]) == 2
    err = capsys.readouterr().err
    assert "needs 2 of 'gpu', which has no capacity" in err
    assert "pexen run --capacity gpu=N" in err
    assert main(["list", suite, "--capacity", "gpu=2,mem_gb=2.5"]) == 0
    listing = capsys.readouterr().out
    assert "needs" in listing and "gpu=1, mem_gb=2.5" in listing


@pytest.mark.parametrize(("order", "first"), [
    ("priority", "a_quick"),  # tasks are collected by name
    ("critical-path", "c_build"),  # 2 + 5 behind it
    ("longest-first", "b_long"),  # of those ready, the costliest
])
def test_order_by_cost(tmp_path, capsys, isolated_imports, pkg_name, order, first):
    # on one worker the first task handed out is the first result (the rest
    # depends on how many the pool queues as spares)
    write_package(
        tmp_path,
        pkg_name,
        {
            "test_cost": """
                from pexen.sched.meta import func_meta
                @func_meta(cost=1)
                def test_a_quick():
                    pass
                @func_meta(cost=3)
                def test_b_long():
                    pass
                @func_meta(provides=["build"], cost=2)
                def test_c_build():
                    pass
                @func_meta(requires=["build"], cost=5)
                def test_d_e2e():
                    pass
            """
        },
    )
    status, out, _ = run(capsys, str(tmp_path / pkg_name), "-j", "1", "--order", order)
    assert status == 0
    passed = re.findall(r"PASSED\s+\S+/test_cost/test_(\w+)", out)
    assert passed[0] == first
    assert sorted(passed) == ["a_quick", "b_long", "c_build", "d_e2e"]


def test_failed_executable_shows_exit_code_and_output_tail(tmp_path, capsys):
    scripts = tmp_path / "checks"
    body = "i=1; while [ $i -le 30 ]; do echo line $i; i=$((i+1)); done; exit 4"
    write_script(scripts / "noisy.sh", body)
    write_script(scripts / "quiet.sh", "true")
    status, out, _ = run(capsys, str(scripts))
    assert status == 1
    assert "collected 2 tasks from" in out and "(directory of executables)" in out
    assert "] FAILED  checks/noisy.sh (" in out  # its progress line
    assert "FAILED checks/noisy.sh (" in out and "): exit code 4" in out
    assert f"command: {scripts / 'noisy.sh'}" in out
    assert "output (last 20 of 30 lines, -v shows all):" in out
    assert "  | line 30" in out and "  | line 11" in out
    assert "  | line 10\n" not in out

    status, out, _ = run(capsys, str(scripts), "-v")
    assert "  | line 1\n" in out and "output:" in out


def test_timed_out_executable_shows_its_command_and_output(tmp_path, capsys):
    scripts = tmp_path / "s"
    write_script(scripts / "stuck.sh", "echo waiting for the lock\nexec sleep 60",
                 header="timeout=0.5")
    xml = tmp_path / "report.xml"
    status, out, _ = run(capsys, str(scripts), "--junit-xml", str(xml))
    assert status == 1
    assert "FAILED s/stuck.sh (" in out
    assert "): TaskTimeoutError: " in out and "ran longer than its timeout" in out
    assert f"command: {scripts / 'stuck.sh'}" in out
    assert "  | waiting for the lock" in out
    assert "Traceback" not in out  # an executable's failure is its output
    failure = xml.read_text()
    assert "waiting for the lock" in failure and "Traceback" not in failure


def test_control_characters_in_task_output_are_shown_not_obeyed(tmp_path, capsys):
    write_script(tmp_path / "s" / "colours.sh",
                 r"printf 'plain \033[31mred\033[0m bell\a\n'; exit 1")
    status, out, _ = run(capsys, str(tmp_path / "s"))
    assert status == 1
    assert r"  | plain \x1b[31mred\x1b[0m bell\x07" in out
    assert not CONTROL_CHARS.search(out)


# A directory and a file whose call path, printed as is, would forge a line
# of its own (a passed task) and colour what follows it.
FORGING_DIR, FORGING_FILE = "x\n[9", "9] PASSED  forged \x1b[32mgreen"
FORGED = "\n[9/9] PASSED  forged \x1b[32mgreen"


def _forging_suite(root: pathlib.Path) -> pathlib.Path:
    jobs = root / "jobs"
    write_script(jobs / FORGING_DIR / FORGING_FILE, "exit 1", "provides=made")
    write_script(jobs / "needs.sh", "true", "requires=made")
    write_script(jobs / "ok.sh", "true")
    return jobs


def _assert_escaped(text: str, n_at_least: int) -> None:
    assert not CONTROL_CHARS.search(text), "a control character got through"
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith("[9/9] PASSED  forged")]
    forged = [line for line in lines if "forged" in line]
    assert len(forged) >= n_at_least, text
    escaped = ("x\\x0a[9/9] PASSED  forged \\x1b[32mgreen", "x\\n[9/9]")
    unquoted = [line.replace("\\\\", "\\") for line in forged]  # DOT's \\
    assert all(any(e in line for e in escaped) for line in unquoted), forged


def test_control_characters_in_task_names_are_shown_not_obeyed(tmp_path, capsys):
    """Progress, failure (title and command), skipped (its reason), slowest."""
    jobs = _forging_suite(tmp_path)
    status, out, err = run(capsys, str(jobs), "-j", "1", "-v")
    assert status == 1
    _assert_escaped(out + err, n_at_least=5)


@pytest.mark.parametrize("command", ["list", "graph"])
def test_control_characters_in_task_names_are_escaped_by_list_and_graph(
    tmp_path, capsys, command
):
    jobs = _forging_suite(tmp_path)
    assert main([command, str(jobs)]) == 0
    out, err = capsys.readouterr()
    _assert_escaped(out + err, n_at_least=1)


def test_killed_executable_names_the_signal(tmp_path, capsys):
    write_script(tmp_path / "s" / "killed.sh", "kill -TERM $$")
    status, out, _ = run(capsys, str(tmp_path / "s"))
    assert status == 1
    assert "killed by signal SIGTERM" in out
    assert "no output" in out


def test_directory_with_scripts_and_modules_needs_kind(tmp_path, capsys):
    mixed = tmp_path / "mixed"
    write_script(mixed / "run.sh", "echo hi")
    (mixed / "helper.py").write_text("X = 1\n")
    status, _, err = run(capsys, str(mixed))
    assert status == 2
    assert "holds both executables (run.sh) and Python modules (helper.py)" in err
    assert "--kind exec or --kind python" in err
    status, out, _ = run(capsys, str(mixed), "--kind", "exec")
    assert status == 0 and "PASSED  mixed/run.sh" in out


def test_empty_directory_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    status, _, err = run(capsys, str(tmp_path / "empty"))
    assert status == 2
    assert "holds neither Python modules nor executable files" in err


def test_module_file_and_dotted_name(tmp_path, capsys, isolated_imports, pkg_name):
    write_package(
        tmp_path,
        pkg_name,
        {
            "test_one": """
                from pexen.sched.meta import func_meta
                @func_meta(provides=["a"])
                def test_a(shared):
                    shared["n"] = 1
                @func_meta(requires=["a"])
                def test_b(shared):
                    assert shared["n"] == 1
            """
        },
    )
    status, out, _ = run(capsys, str(tmp_path / pkg_name / "test_one.py"))
    assert status == 0
    assert "(Python module)" in out and f"PASSED  {pkg_name}/test_one/test_b" in out
    status, out, _ = run(capsys, f"{pkg_name}.test_one")
    assert status == 0
    assert f"(module '{pkg_name}.test_one')" in out and "2 passed" in out


def test_live_display_on_a_terminal(capsys, monkeypatch, isolated_imports):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    status = main(["run", str(EXAMPLES / "suite"), "-j", "2"])
    out = screen.getvalue()
    assert status == 1
    assert "\x1b[" in out  # styled, with cursor movement for the live display
    assert "9/9" in out  # the final state of the display: every task accounted for
    assert "FAILED" in out and "suite/test_report/test_export_report" in out
    assert "6 passed, 1 failed, 2 skipped in" in out


def test_process_pool(capsys, isolated_imports):
    status, out, _ = run(
        capsys, str(EXAMPLES / "suite"), "--pool", "process", "-j", "2"
    )
    assert status == 1
    assert 'test_report.py", line 9, in test_export_report' in out
    assert "pexen/sched" not in out  # the pool's own frames are left out
    assert out.splitlines()[-1].endswith("(process pool, 2 workers) ===")
    assert "=== 6 passed, 1 failed, 2 skipped in " in out


PRINTING = """
    import sys

    from pexen.sched.meta import func_meta

    @func_meta(provides=["x"])
    def test_chatty(shared):
        print("chatty says hello")
        shared["v"] = 1

    @func_meta(requires=["x"])
    def test_fails(shared):
        for i in range(25):
            print("fails line", i)
        print("fails on stderr", file=sys.stderr)
        raise ValueError("nope")
"""


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_python_task_output_is_captured(
    tmp_path, capsys, isolated_imports, pkg_name, pool
):
    write_package(tmp_path, pkg_name, {"test_print": PRINTING})
    stdout, stderr = sys.stdout, sys.stderr
    status, out, err = run(capsys, str(tmp_path / pkg_name), "--pool", pool)
    assert (sys.stdout, sys.stderr) == (stdout, stderr), "the capture is undone"
    assert status == 1
    # nothing a task printed mixes into the progress lines or reaches stderr
    assert "chatty says hello" not in out and err == ""
    failure = out[out.index("=== failures ===") :]
    assert 'raise ValueError("nope")' in failure
    assert "_capture.py" not in failure, "the capture wrapper's frame is left out"
    assert "output (last 20 of 26 lines, -v shows all):" in failure
    assert "  | fails line 24\n  | fails on stderr\n" in failure
    assert "  | fails line 4\n" not in failure
    status, out, _ = run(capsys, str(tmp_path / pkg_name), "--pool", pool, "-v")
    assert "output:\n  | fails line 0\n" in out


LOGGING = """
    import logging, sys
    from pexen.sched.meta import func_meta

    log = logging.getLogger(__name__)
    log.addHandler(logging.StreamHandler(sys.stderr))  # made at import time
    log.setLevel(logging.INFO)

    @func_meta
    def test_logs():
        log.info("connecting to the test database")
        raise ConnectionError("refused")
"""


def test_what_a_task_logs_is_captured_with_its_output(
    tmp_path, capsys, isolated_imports, pkg_name
):
    write_package(tmp_path, pkg_name, {"test_logging": LOGGING})
    try:
        status, out, err = run(capsys, str(tmp_path / pkg_name))
        assert status == 1
        assert "connecting to the test database" not in err
        failure = out[out.index("=== failures ===") :]
        assert "  | connecting to the test database\n" in failure
    finally:
        logger = logging.getLogger(f"{pkg_name}.test_logging")
        handler = logger.handlers.pop()
        assert handler.stream is sys.stderr, "the handler's stream is given back"


OVERRUNS = """
    import time
    from pexen.sched.meta import func_meta

    @func_meta(timeout=0.1)
    def test_overruns():
        time.sleep(0.6)  # the workload: longer than its timeout
"""


def test_a_timeout_is_reported_by_its_message_alone(
    tmp_path, capsys, isolated_imports, pkg_name
):
    write_package(tmp_path, pkg_name, {"test_slow": OVERRUNS})
    status, out, _ = run(capsys, str(tmp_path / pkg_name))
    assert status == 1
    failure = out[out.index("=== failures ===") :]
    assert (f"\npexen.sched.TaskTimeoutError: task '{pkg_name}/test_slow/"
            "test_overruns' ran longer than its timeout of 0.1 s") in failure
    # pexen's own frames and what it was doing when it noticed are not shown
    assert "Traceback" not in failure and "Empty" not in failure


def test_directory_of_modules_and_one_executable(tmp_path, capsys, isolated_imports):
    modules = tmp_path / "loose"
    modules.mkdir()
    (modules / f"test_loose_{next(_names)}.py").write_text(
        "from pexen.sched.meta import func_meta\n"
        "@func_meta\n"
        "def test_one():\n"
        "    pass\n"
    )
    status, out, _ = run(capsys, str(modules))
    assert status == 0
    assert f"collected 1 task from {modules} (directory of Python modules)" in out
    script = write_script(tmp_path / "bin" / "check.sh", "echo fine")
    status, out, _ = run(capsys, str(script))
    assert status == 0
    assert f"collected 1 task from {script} (executable)" in out
    assert "PASSED  check.sh (" in out


def test_verbose_on_a_terminal_prints_every_finished_task(
    capsys, monkeypatch, isolated_imports
):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for flags, shown in (([], False), (["-v"], True)):
        screen = Terminal()
        monkeypatch.setattr(sys, "stdout", screen)
        assert main(["run", str(EXAMPLES / "suite"), "-k", "test_db", *flags]) == 0
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # no styles
        assert ("PASSED  suite/test_db/test_migrate (" in text) is shown


UNUSED_TAG = """
    from pexen.sched.meta import func_meta

    @func_meta(provides=["nobody-needs-this"])
    def test_provider():
        pass

    @func_meta
    def test_other():
        pass
"""


def test_warnings_of_the_run_are_listed_except_filtered_ones(
    tmp_path, capsys, isolated_imports, pkg_name
):
    write_package(tmp_path, pkg_name, {"test_warn": UNUSED_TAG})
    status, out, err = run(capsys, str(tmp_path / pkg_name))
    assert status == 0 and err == ""
    warned = out[out.index("=== warnings ===") :]
    assert "UnusedTagWarning: tags provided but required by no task: " in warned
    assert "'nobody-needs-this'" in warned
    # after -k, a tag nobody requires is mostly a requirer the filter left out
    status, out, _ = run(capsys, str(tmp_path / pkg_name), "-k", "test_provider")
    assert status == 0 and "=== warnings ===" not in out
    # the scheduler's "tasks did not run" warning: the summary's skipped list
    # says the same, task by task
    status, out, _ = run(capsys, str(EXAMPLES / "suite"))
    assert "=== skipped ===" in out and "=== warnings ===" not in out


def test_the_schedulers_warnings_are_told_apart_by_category():
    """Unrun tasks are never kept (the summary lists them); unused tags only
    when the tasks were not filtered; any other PexenWarning always."""

    @func_meta(provides=["a", "unused"])
    def fails():
        warnings.warn("something else", PexenWarning, stacklevel=1)
        raise RuntimeError("boom")

    @func_meta(requires=["a"])
    def needs_a():
        pass

    for filtered, kept in (
        (False, ["PexenWarning: something else",
                 "UnusedTagWarning: tags provided but required by no task"]),
        (True, ["PexenWarning: something else"]),
    ):
        seen: list[str] = []
        with pexen_warnings(seen, filtered=filtered):
            results = list(Sched([fails, needs_a]).run(InlineWorkerPool()))
        assert len(results) == 1
        assert sorted(text[: len(k)] for text, k in zip(sorted(seen), kept,
                                                         strict=True)) == kept, seen


def test_a_result_costs_nothing_that_grows_with_the_tasks_out(
    tmp_path, capsys, monkeypatch, isolated_imports, pkg_name
):
    # the run's clock went over every task handed to the pool for each result
    # (hundreds with spare="auto"): the command was 4x slower on tiny tests.
    # Durations are the pool's; a live display looks at the tasks out by itself.
    reads = []
    in_flight = Sched.in_flight
    monkeypatch.setattr(
        Sched, "in_flight", property(lambda s: reads.append(1) or in_flight.fget(s))
    )
    tests = "".join(f"@func_meta\ndef test_{n}():\n    pass\n" for n in range(50))
    write_package(tmp_path, pkg_name, {
        "test_many": "from pexen.sched.meta import func_meta\n" + tests
    })
    status, out, _ = run(capsys, str(tmp_path / pkg_name), "-j", "2", "--junit-xml",
                         str(tmp_path / "junit.xml"))
    assert status == 0, out
    assert "=== 50 passed in " in out
    assert reads == []
    junit = (tmp_path / "junit.xml").read_text()
    assert len(re.findall(r'<testcase [^>]*time="\d+\.\d{3}"', junit)) == 50

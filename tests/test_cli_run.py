"""``pexen run`` in-process: output, exit status, -k, -x, errors, executables."""

from __future__ import annotations

import io
import itertools
import sys

import pytest

from pexen.cli import main
from tests._cli import CONTROL_CHARS, EXAMPLES, write_package, write_script

_names = itertools.count()


@pytest.fixture
def isolated_imports():
    """Undo what collecting a suite does to ``sys.path`` and ``sys.modules``."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


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
    assert "0.20s suite/test_db/test_start_db" in out
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
        (["run", "-j", "0", "x"], "argument -j/--workers: 0 is less than 1"),
        (["run", "-j", "many", "x"], "'many' is not a whole number or 'auto'"),
        (["run"], "the following arguments are required: PATH"),
        (["run", "--pool", "nope", "x"], "argument --pool: invalid choice: 'nope'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: pexen" in capsys.readouterr().err


def test_help_exits_0_with_examples(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "pexen run examples/suite" in out
    assert "--junit-xml FILE" in out


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

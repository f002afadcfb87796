"""``--junit-xml`` read back by a JUnit consumer; ``pexen list``; ``pexen graph``."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped

from pexen.cli import main
from pexen.cli._listing import one_worker_order
from pexen.sched import Sched
from pexen.sched.pool import InlineWorkerPool
from tests.cli._cli import EXAMPLES, restore_imports, write_package, write_script

_names = itertools.count()


@pytest.fixture
def isolated_imports():
    """Undo what collecting a suite does to ``sys.path`` and ``sys.modules``."""
    with restore_imports():
        yield


@pytest.fixture
def pkg_name():
    return f"clirep{next(_names)}"


def _mixed_suite(root, name):
    """A package (a pass, a fail, a skip, a broken module) and two scripts."""
    write_package(
        root,
        name,
        {
            "test_mod": """
                from pexen.sched.meta import func_meta

                @func_meta(provides=["data"])
                def test_fails():
                    print("reading <data>")
                    raise ValueError("bad <data> & more")

                @func_meta(requires=["data"])
                def test_needs_data():
                    pass

                @func_meta
                def test_passes():
                    print("all fine")
            """,
            "test_broken": "raise RuntimeError('cannot import me')\n",
        },
    )
    scripts = root / "scripts"
    write_script(scripts / "ok.sh", "echo all good")
    write_script(scripts / "bad.sh", r"printf 'colour \033[31mred\033[0m\n'; exit 2")
    return root / name, scripts


def test_junit_xml_structure(tmp_path, capsys, isolated_imports, pkg_name):
    package, scripts = _mixed_suite(tmp_path, pkg_name)
    report = tmp_path / "out" / "junit.xml"  # the directory is made
    status = main(["run", str(package), str(scripts), "--junit-xml", str(report)])
    out = capsys.readouterr().out
    assert status == 2  # the broken module is a collection error
    assert f"JUnit XML report written to {report}" in out

    xml = JUnitXml.fromfile(str(report))
    (suite,) = list(xml)
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (6, 2, 1, 1)
    assert suite.time > 0 and suite.timestamp
    cases = {case.name: case for case in suite}
    assert set(cases) == {
        f"{pkg_name}/test_mod/test_fails",
        f"{pkg_name}/test_mod/test_needs_data",
        f"{pkg_name}/test_mod/test_passes",
        "scripts/ok.sh",
        "scripts/bad.sh",
        str(package / "test_broken.py"),
    }

    passed = cases[f"{pkg_name}/test_mod/test_passes"]
    assert passed.is_passed and passed.classname == f"{pkg_name}.test_mod"

    failed = cases[f"{pkg_name}/test_mod/test_fails"]
    (failure,) = failed.result
    assert isinstance(failure, Failure)
    assert failure.message == "ValueError: bad <data> & more"
    assert failure.type == "ValueError"
    assert "Traceback (most recent call last):" in failure.text
    assert 'raise ValueError("bad <data> & more")' in failure.text
    assert failed.system_out == "reading <data>\n"  # what the Python task printed
    assert passed.system_out == "all fine\n"

    skipped = cases[f"{pkg_name}/test_mod/test_needs_data"]
    (skip,) = skipped.result
    assert isinstance(skip, Skipped)
    assert skip.message == (
        f"requires tag 'data', never provided because "
        f"'{pkg_name}/test_mod/test_fails' failed"
    )

    ok = cases["scripts/ok.sh"]
    assert ok.is_passed and ok.classname == "scripts"
    assert ok.system_out == "all good\n"

    bad = cases["scripts/bad.sh"]
    (failure,) = bad.result
    assert failure.message == "exit code 2" and failure.type == "CalledProcessError"
    assert f"command: {scripts / 'bad.sh'}" in failure.text
    # the escape character, not allowed in XML, is shown as text
    assert bad.system_out == "colour \\x1b[31mred\\x1b[0m\n"

    broken = cases[str(package / "test_broken.py")]
    (error,) = broken.result
    assert isinstance(error, Error)
    assert error.message == "cannot collect: RuntimeError: cannot import me"
    assert "raise RuntimeError('cannot import me')" in error.text


HUGE = 10_000_000  # characters of the one line the tasks below print


def test_a_huge_output_is_bounded_in_the_summary_and_whole_in_junit(
    tmp_path, capsys, isolated_imports, pkg_name
):
    package = write_package(tmp_path, pkg_name, {"test_huge": f"""
        import sys
        from pexen.sched.meta import func_meta

        @func_meta
        def test_prints_a_huge_line():
            sys.stdout.write("p" * {HUGE} + "\\nthe end of the Python task\\n")
            raise AssertionError("too much")
    """})
    scripts = tmp_path / "jobs"
    write_script(scripts / "huge.sh", f"head -c {HUGE} /dev/zero | tr '\\0' x\n"
                 "echo; echo the end of the script; exit 1")
    report = tmp_path / "junit.xml"
    status = main(["run", str(package), str(scripts), "--junit-xml", str(report)])
    out = capsys.readouterr().out
    assert status == 1
    assert len(out) < 50_000, "the summary is bounded"
    for last in ("the end of the Python task", "the end of the script"):
        assert f"  | {last}\n" in out
    cut = re.findall(r"\| \[\.\.\. (\d+\.\d MB) cut \.\.\.\][px]+$", out, re.M)
    assert cut == ["10.0 MB", "10.0 MB"], out[-3000:]
    assert out.count("output (the last 10.0 kB of 10.0 MB, -v shows all):") == 2

    (suite,) = list(JUnitXml.fromfile(str(report)))
    cases = {case.name: case for case in suite}
    python = cases[f"{pkg_name}/test_huge/test_prints_a_huge_line"]
    script = cases["jobs/huge.sh"]
    # all of the output, in system-out; the failure text only ends it
    assert python.system_out.count("p") == HUGE
    assert script.system_out.count("x") == HUGE
    (failure,) = script.result
    assert len(failure.text) < 50_000
    assert failure.text.endswith("the end of the script")
    assert "cut: all of it is in system-out" in failure.text


def test_a_huge_failure_message_is_bounded_in_the_summary_and_whole_in_junit(
    tmp_path, capsys, isolated_imports, pkg_name
):
    package = write_package(tmp_path, pkg_name, {"test_huge": f"""
        from pexen.sched.meta import func_meta

        @func_meta
        def test_says_too_much():
            raise AssertionError("z" * {HUGE} + " the end")
    """})
    report = tmp_path / "junit.xml"
    status = main(["run", str(package), "--junit-xml", str(report)])
    out = capsys.readouterr().out
    assert status == 1
    assert len(out) < 50_000, "the progress line and the summary are bounded"
    assert "characters cut]" in out and "the end" in out  # its end is kept
    (suite,) = list(JUnitXml.fromfile(str(report)))
    (case,) = suite
    (failure,) = case.result
    assert "z" * HUGE + " the end" in failure.text  # JUnit keeps it whole


def test_junit_xml_of_an_interrupted_or_stopped_run(tmp_path, capsys, isolated_imports):
    report = tmp_path / "junit.xml"
    status = main(
        ["run", str(EXAMPLES / "suite"), "-x", "-j", "1", "--junit-xml", str(report)]
    )
    capsys.readouterr()
    assert status == 1
    (suite,) = list(JUnitXml.fromfile(str(report)))
    assert suite.tests == 9 and suite.failures == 1
    reasons = {case.result[0].message for case in suite if case.is_skipped}
    assert "not started: the run was stopped early" in reasons


@pytest.mark.parametrize(
    ("where", "cause"),
    [
        ("file/x.xml", "cannot write the JUnit report there (Not a directory"),
        ("file/deeper/x.xml", "cannot write the JUnit report there (Not a dir"),
        ("reports", "is a directory; give a file name, such as "),
        ("", "an empty file name"),
    ],
)
def test_an_unwritable_junit_xml_is_a_usage_error_before_any_task_runs(
    tmp_path, capsys, where, cause
):
    (tmp_path / "file").write_text("")
    (tmp_path / "reports").mkdir()
    jobs = tmp_path / "jobs"
    write_script(jobs / "ok.sh", 'touch "$0.ran"')
    path = str(tmp_path / where) if where else ""
    status = main(["run", str(jobs), "--junit-xml", path])
    out, err = capsys.readouterr()
    assert status == 2
    assert not list(jobs.glob("*.ran")), "no task ran"
    assert "passed" not in out, "no summary: there was no run"
    named = f"--junit-xml {path!r}: " if path else "argument --junit-xml: "
    assert f"{named}{cause}" in err, err


def test_junit_xml_unwritable_at_the_end_is_reported(tmp_path, capsys):
    """A report that cannot be written after the run (the disk filled, the
    directory went away) still gets the summary, and the usage status."""
    jobs = tmp_path / "jobs"
    write_script(jobs / "ok.sh", "rm -r ../reports && touch ../reports")
    report = tmp_path / "reports" / "junit.xml"
    status = main(["run", str(jobs), "-q", "--junit-xml", str(report)])
    out, err = capsys.readouterr()
    assert status == 2
    assert "pexen: error: cannot write the JUnit report" in err
    assert "1 passed in" in out  # the summary still comes


def test_list_shows_metadata_in_one_worker_order(capsys, isolated_imports):
    assert main(["list", str(EXAMPLES / "suite")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("collected 9 tasks from")
    assert lines[1].split() == [
        "#",
        "task",
        "requires",
        "provides",
        "claims",
        "priority",
    ]
    rows = [line.split() for line in lines[2:]]
    assert [row[:2] for row in rows[:4]] == [
        ["1", "suite/test_web/test_config_loads"],
        ["2", "suite/test_db/test_start_db"],
        ["3", "suite/test_db/test_migrate"],
        ["4", "suite/test_report/test_export_report"],
    ]
    assert rows[0][2:] == ["-1"]
    assert rows[1][2:] == ["db", "port-5432"]
    assert rows[2][2:] == ["db", "schema"]
    assert all(line == line.rstrip() for line in lines)


def test_list_order_is_the_order_of_a_one_worker_run(
    tmp_path, isolated_imports, pkg_name
):
    write_package(
        tmp_path,
        pkg_name,
        {
            "test_order": """
                from pexen.sched.meta import func_meta

                @func_meta(priority=5, provides=["late"])
                def test_a(): pass

                @func_meta(requires=["late"], priority=-3)
                def test_b(): pass

                @func_meta(claims=["lock"], provides=["x"])
                def test_c(): pass

                @func_meta(uses=["lock"], requires=["x"])
                def test_d(): pass

                @func_meta(priority=1)
                def test_e(): pass

                @func_meta(requires=["x", "late"], priority=-1)
                def test_f(): pass
            """
        },
    )
    from pexen.factory import ModTreeFactory

    tasks = list(ModTreeFactory()(str(tmp_path / pkg_name)))
    ran = [res.task for res in Sched(tasks).run(InlineWorkerPool())]
    places = one_worker_order(tasks)
    assert sorted(tasks, key=lambda t: places[tasks.index(t)]) == ran


def test_list_of_a_cycle_marks_unreachable_tasks_and_exits_2(
    tmp_path, capsys, isolated_imports, pkg_name
):
    write_package(
        tmp_path,
        pkg_name,
        {
            "test_cycle": """
                from pexen.sched.meta import func_meta

                @func_meta(requires=["b"], provides=["a"])
                def test_a(): pass

                @func_meta(requires=["a"], provides=["b"])
                def test_b(): pass

                @func_meta
                def test_free(): pass
            """
        },
    )
    assert main(["list", str(tmp_path / pkg_name)]) == 2
    out, err = capsys.readouterr()
    rows = [line.split()[:2] for line in out.splitlines()[2:]]
    assert rows == [
        ["1", f"{pkg_name}/test_cycle/test_free"],
        ["-", f"{pkg_name}/test_cycle/test_a"],
        ["-", f"{pkg_name}/test_cycle/test_b"],
    ]
    assert "pexen: error: requirement cycle:" in err


def test_list_k_and_scripts(capsys):
    assert main(["list", str(EXAMPLES / "scripts"), "-k", "deploy"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == (
        "selected 1 of 6 tasks with -k deploy, and 2 providers they require"
    )
    names = [line.split()[1] for line in lines[3:]]
    assert names == [
        "scripts/10-build.sh",
        "scripts/40-package.sh",
        "scripts/50-deploy.sh",
    ]
    assert "30s" in out  # 40-package.sh's timeout


def _graph(capsys, *args):
    assert main(["graph", *args]) == 0
    return capsys.readouterr().out


def test_graph_dot_is_valid_graphviz(capsys, tmp_path, isolated_imports):
    dot_text = _graph(capsys, str(EXAMPLES / "suite"), str(EXAMPLES / "scripts"))
    lines = dot_text.splitlines()
    assert lines[0] == "digraph pexen {" and lines[-1] == "}"
    ids = {
        line.split(" [label=")[1].rstrip("];").strip('"'): line.split()[0]
        for line in lines
        if line.startswith("    t") and " [label=" in line and "->" not in line
    }
    start, migrate = (
        ids["suite/test_db/test_start_db"],
        ids["suite/test_db/test_migrate"],
    )
    assert f'    {start} -> {migrate} [label="db"];' in lines
    assert any('[label="lock: port-8080", shape=hexagon' in line for line in lines)
    assert any("[label=claims, style=dashed, dir=none]" in line for line in lines)
    assert any("[label=uses, style=dotted, dir=none]" in line for line in lines)
    assert 'label="suite/test_web/test_config_loads\\npriority -1"' in dot_text

    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz 'dot' is not installed; the DOT text was checked only")
    svg = subprocess.run(
        [dot, "-Tsvg"], input=dot_text, capture_output=True, text=True, check=True
    ).stdout
    assert "<svg" in svg and "suite/test_db/test_migrate" in svg


def test_graph_escapes_odd_tags_and_shows_missing_ones(
    tmp_path, capsys, isolated_imports, pkg_name
):
    write_package(
        tmp_path,
        pkg_name,
        {
            "test_odd": """
                from pexen.sched.meta import func_meta

                @func_meta(provides=['say "hi" \\\\ <b>'], claims=[("port", 80)])
                def test_a(): pass

                @func_meta(requires=['say "hi" \\\\ <b>', "ghost"])
                def test_b(): pass
            """
        },
    )
    dot_text = _graph(capsys, str(tmp_path / pkg_name))
    assert '[label="say \\"hi\\" \\\\ <b>"]' in dot_text
    assert "lock: ('port', 80)" in dot_text
    assert 'missing0 [label="missing: ghost"' in dot_text
    if shutil.which("dot"):
        subprocess.run(
            ["dot", "-Tsvg"], input=dot_text, text=True, check=True, capture_output=True
        )

    mermaid = _graph(capsys, str(tmp_path / pkg_name), "--format", "mermaid")
    assert '-->|"say #quot;hi#quot; \\ #lt;b#gt;"|' in mermaid
    assert 'missing0["missing: ghost"]:::missing' in mermaid
    assert "classDef missing" in mermaid


def test_graph_mermaid_structure(capsys, isolated_imports):
    text = _graph(capsys, str(EXAMPLES / "scripts"), "--format", "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes = {
        line.split("[", 1)[1].rstrip("]").strip('"'): line.split("[", 1)[0].strip()
        for line in lines[1:]
        if line.strip().startswith("t") and "[" in line and "--" not in line
    }
    assert set(nodes) == {
        "scripts/10-build.sh<br>priority -1",
        "scripts/20-unit-tests.sh",
        "scripts/30-lint.sh",
        "scripts/40-package.sh",
        "scripts/50-deploy.sh",
        "scripts/60-smoke-test.sh",
    }
    build = nodes["scripts/10-build.sh<br>priority -1"]
    package = nodes["scripts/40-package.sh"]
    assert f'    {build} -->|"build"| {package}' in lines
    assert '    lock1{{"lock: port-8080"}}' in lines
    deploy, smoke = nodes["scripts/50-deploy.sh"], nodes["scripts/60-smoke-test.sh"]
    assert f"    {deploy} ===|claims| lock1" in lines
    assert f"    {smoke} -.-|uses| lock1" in lines

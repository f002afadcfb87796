"""A --pexen 2 run's JUnit XML, read by a consumer, says what a serial run's says."""

from __future__ import annotations

from junitparser import Error, Failure, JUnitXml, Skipped

from tests.pytest_plugin._runs import run_pytest, write_suite

SUITE = {
    "conftest.py": """
        import pytest

        @pytest.fixture
        def broken_setup():
            raise RuntimeError("cannot set up")

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("cannot tear down")
    """,
    "test_mix.py": """
        import logging
        import sys
        import warnings
        import pytest

        def test_pass():
            print("to stdout")

        def test_fail():
            print("before failing", file=sys.stderr)
            logging.getLogger("shop").warning("logged before failing")
            assert 1 == 2

        def test_warns():
            warnings.warn(UserWarning("careful now"))

        def test_skip():
            pytest.skip("not today")

        @pytest.mark.skipif(True, reason="never here")
        def test_skipif():
            pass

        @pytest.mark.xfail(reason="known bug")
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="fixed now")
        def test_xpass():
            pass

        def test_setup_error(broken_setup):
            pass

        def test_teardown_error(broken_teardown):
            pass

        def test_user_property(record_property):
            record_property("answer", 42)

        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_param(n):
            assert n != 2

        class TestThings:
            @pytest.fixture(scope="class")
            def thing(self):
                return [1]

            def test_one(self, thing):
                assert thing == [1]

            def test_two(self, thing):
                assert thing == [2]
    """,
}


def kind(case) -> str:
    found = {type(result) for result in case.result}
    for cls, name in ((Error, "error"), (Failure, "failure"), (Skipped, "skipped")):
        if cls in found:
            return name
    return "passed"


def cases(path) -> dict[tuple[str, str], list[str]]:
    found: dict[tuple[str, str], list[str]] = {}
    for suite in JUnitXml.fromfile(str(path)):
        for case in suite:
            found.setdefault((case.classname, case.name), []).append(kind(case))
    return found


def test_junit_xml_of_a_pexen_run_has_the_outcomes_of_a_serial_run(tmp_path):
    write_suite(tmp_path, SUITE)
    run_pytest(tmp_path, "-p", "no:cacheprovider", "--junitxml", "serial.xml")
    proc, _ = run_pytest(tmp_path, "-p", "no:cacheprovider", "--pexen", "2",
                         "--junitxml", "pexen.xml")
    serial, pexen = cases(tmp_path / "serial.xml"), cases(tmp_path / "pexen.xml")
    assert len(serial) == 15
    assert pexen == serial, proc.stdout
    assert {"failure", "error", "skipped", "passed"} <= {
        k for kinds in pexen.values() for k in kinds}
    text = (tmp_path / "pexen.xml").read_text()
    assert 'name="answer" value="42"' in text  # record_property made it back
    assert "before failing" in text  # captured output of the failed test
    # the terminal: warnings summary, captured log, the -r summary
    assert "UserWarning: careful now" in proc.stdout
    assert "logged before failing" in proc.stdout
    assert "FAILED test_mix.py::test_fail - assert 1 == 2" in proc.stdout

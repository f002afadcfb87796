"""Without --pexen: marked tests run in dependency order, in one process.

Dependents of a provider that did not pass are skipped with the reason;
unmarked suites are left exactly as pytest orders them.
"""

from __future__ import annotations

import pytest

from tests.pytest_plugin._runs import outcomes_of, run_pytest, write_suite

ORDERED = {
    "test_order.py": """
        import pytest

        ORDER = []

        @pytest.mark.pexen(requires=["schema"], provides=["data"])
        def test_load():
            ORDER.append("load")

        @pytest.mark.pexen(requires=["data"])
        def test_query():
            ORDER.append("query")

        def test_plain():
            ORDER.append("plain")

        @pytest.mark.pexen(provides=["schema"])
        def test_schema():
            ORDER.append("schema")

        @pytest.mark.pexen(priority=-1)
        def test_urgent():
            ORDER.append("urgent")

        @pytest.mark.pexen(provides=["report"])
        def test_report():
            assert False, "the report broke"

        @pytest.mark.pexen(requires=["report"])
        def test_mail_report():
            ORDER.append("mail")

        def test_zz_order():
            assert ORDER == ["urgent", "plain", "schema", "load", "query"]
    """,
}


def test_providers_run_first_and_failed_ones_skip_their_dependents(tmp_path):
    write_suite(tmp_path, ORDERED)
    proc, found = run_pytest(tmp_path, "-p", "no:cacheprovider", "-rs")
    assert outcomes_of(found) == {
        "test_order.py::test_urgent": "passed",
        "test_order.py::test_plain": "passed",
        "test_order.py::test_schema": "passed",
        "test_order.py::test_load": "passed",
        "test_order.py::test_query": "passed",
        "test_order.py::test_report": "failed",
        "test_order.py::test_mail_report": "skipped",
        "test_order.py::test_zz_order": "passed",
    }, proc.stdout
    assert (
        "pexen: requires tag 'report', never provided because "
        "'test_order.py::test_report' did not pass"
    ) in proc.stdout


def test_a_requirement_no_selected_test_provides_skips_with_the_reason(tmp_path):
    write_suite(tmp_path, ORDERED)
    proc, found = run_pytest(tmp_path, "-p", "no:cacheprovider", "-rs",
                             "-k", "query or load")
    assert outcomes_of(found) == {
        "test_order.py::test_load": "skipped",
        "test_order.py::test_query": "skipped",
    }, proc.stdout
    assert ("pexen: requires tag 'schema', which no selected test provides "
            "(deselected, or not collected)") in proc.stdout
    assert "pexen: requires tag 'data', which no test that can run provides" in (
        proc.stdout)


def test_markers_added_by_a_conftest_hook_count(tmp_path):
    write_suite(tmp_path, {
        "conftest.py": """
            import pytest

            def pytest_collection_modifyitems(items):
                for item in items:
                    if item.name == "test_b":
                        item.add_marker(pytest.mark.pexen(provides=["b"]))
                    if item.name == "test_a":
                        item.add_marker(pytest.mark.pexen(requires=["b"]))
        """,
        "test_hooked.py": """
            RAN = []

            def test_a():
                assert RAN == ["b"]

            def test_b():
                RAN.append("b")
        """,
    })
    proc, found = run_pytest(tmp_path, "-p", "no:cacheprovider")
    assert outcomes_of(found) == {"test_hooked.py::test_a": "passed",
                                  "test_hooked.py::test_b": "passed"}, proc.stdout


@pytest.mark.parametrize(("marker", "message"), [
    ("pexen(claims='db')", "test 'test_bad.py::test_it': @pytest.mark.pexen: "
     "claims='db': expected a collection of tags, got a string"),
    ("pexen(claim=['db'])", "test 'test_bad.py::test_it': @pytest.mark.pexen has "
     "no field 'claim'; the fields are requires, provides, claims, uses, "
     "priority, timeout"),
    ("pexen('db')", "test 'test_bad.py::test_it': @pytest.mark.pexen takes "
     "keyword arguments only"),
    ("pexen(timeout=-1)", "test 'test_bad.py::test_it': timeout=-1: expected a "
     "positive, finite number"),
])
def test_a_marker_pexen_cannot_use_is_a_usage_error_naming_the_test(
    tmp_path, marker, message
):
    write_suite(tmp_path, {"test_bad.py": f"""
        import pytest

        @pytest.mark.{marker}
        def test_it():
            pass
    """})
    proc, _ = run_pytest(tmp_path, "-p", "no:cacheprovider")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_a_cycle_is_a_usage_error_showing_it(tmp_path):
    write_suite(tmp_path, {"test_cycle.py": """
        import pytest

        @pytest.mark.pexen(requires=["a"], provides=["b"])
        def test_one():
            pass

        @pytest.mark.pexen(requires=["b"], provides=["a"])
        def test_two():
            pass
    """})
    proc, _ = run_pytest(tmp_path, "-p", "no:cacheprovider")
    assert proc.returncode == 4
    assert "pexen markers: " in proc.stderr
    assert "test_cycle.py::test_one" in proc.stderr
    assert "cycle" in proc.stderr


def test_an_unmarked_suite_keeps_pytest_order(tmp_path):
    write_suite(tmp_path, {"test_plain.py": """
        ORDER = []

        def test_c():
            ORDER.append("c")

        def test_a():
            ORDER.append("a")

        def test_check():
            assert ORDER == ["c", "a"]
    """})
    proc, found = run_pytest(tmp_path, "-p", "no:cacheprovider")
    assert set(outcomes_of(found).values()) == {"passed"}, proc.stdout


def test_the_entry_point_loads_the_plugin_unasked(tmp_path):
    write_suite(tmp_path, {"test_one.py": """
        def test_one(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("pexen")
    """})
    proc, found = run_pytest(tmp_path, "-p", "no:cacheprovider", "--markers",
                             autoload=True)
    assert "@pytest.mark.pexen(requires=(), provides=(), claims=()" in proc.stdout
    proc, found = run_pytest(tmp_path, "-p", "no:cacheprovider", autoload=True)
    assert outcomes_of(found) == {"test_one.py::test_one": "passed"}, proc.stdout


@pytest.mark.parametrize("mode", [[], ["--pexen", "1"]], ids=["serial", "pexen"])
def test_pexen_warnings_stay_out_of_a_strict_session(tmp_path, mode):
    """A tag nobody requires is no warning here: -W error must not break."""
    write_suite(tmp_path, {"test_w.py": """
        import pytest

        @pytest.mark.pexen(provides=["unused"])
        def test_a():
            pass
    """})
    proc, _ = run_pytest(tmp_path, "-p", "no:cacheprovider", "-W", "error",
                             *mode)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in proc.stdout.splitlines()[-1]

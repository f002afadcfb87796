"""With --pexen N: tests run on pexen's worker processes, reported as usual.

Invariants are read from intervals the tests record themselves (a real
clock, shared by every process of the machine): no two claimers of a
resource overlap, users never overlap a claimer, dependents start after
their providers end; every collected test is reported exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests._leaks import alive, poll
from tests.pytest_plugin._runs import clean_env, outcomes_of, run_pytest, write_suite

RECORDING_CONFTEST = """
    import json, os, time
    import pytest

    @pytest.fixture(autouse=True)
    def interval(request):
        start = time.monotonic()
        yield
        line = json.dumps({"id": request.node.nodeid, "pid": os.getpid(),
                           "start": start, "end": time.monotonic()})
        with open(os.path.join(str(request.config.rootpath), "intervals.jsonl"),
                  "a") as f:
            f.write(line + "\\n")

    @pytest.fixture
    def db():
        return "db"

    @pytest.fixture
    def db_user(db):
        return db + " user"
"""

LOCKS_AND_DEPS = {
    "pytest.ini": """
        [pytest]
        pexen_claims = db
        pexen_uses = cache
    """,
    "conftest.py": RECORDING_CONFTEST + """
    @pytest.fixture
    def cache():
        return {}
""",
    "test_locks.py": """
        import time
        import pytest

        WORK = 0.02  # the work each test stands for

        @pytest.mark.parametrize("n", range(4))
        def test_db_direct(db, n):
            time.sleep(WORK)

        @pytest.mark.parametrize("n", range(3))
        def test_db_through_a_fixture(db_user, n):
            time.sleep(WORK)

        @pytest.mark.parametrize("n", range(4))
        def test_cache_reader(cache, n):  # uses it: pexen_uses = cache
            time.sleep(WORK)

        @pytest.mark.pexen(claims=["cache"])
        @pytest.mark.parametrize("n", range(2))
        def test_cache_writer(n):
            time.sleep(WORK)

        @pytest.mark.parametrize("n", range(6))
        def test_free(n):
            time.sleep(WORK)
    """,
    "test_deps.py": """
        import pytest

        pytestmark = pytest.mark.pexen(priority=1)

        @pytest.mark.pexen(requires=["schema"], provides=["rows"])
        def test_load():
            pass

        @pytest.mark.pexen(requires=["rows"])
        def test_query():
            pass

        @pytest.mark.pexen(provides=["schema"], priority=2)
        def test_schema():
            pass

        @pytest.mark.pexen(provides=["report"])
        def test_report():
            assert False, "the report broke"

        @pytest.mark.pexen(requires=["report"])
        def test_mail():
            pass

        @pytest.mark.pexen(requires=["report"], provides=["sent"])
        def test_archive():
            pass

        @pytest.mark.pexen(requires=["sent"])
        def test_audit():
            pass
    """,
}


def intervals(root) -> dict[str, dict]:
    lines = (root / "intervals.jsonl").read_text().splitlines()
    found = [json.loads(line) for line in lines]
    by_id = {entry["id"]: entry for entry in found}
    assert len(by_id) == len(found), "a test ran twice"
    return by_id


def overlap(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def collected(root) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "pexen", "-p", "no:cacheprovider",
         "--co", "-q"],
        cwd=root, env=clean_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"),
        capture_output=True, text=True, check=False,
    )
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_locks_and_dependencies_hold_on_two_workers(tmp_path):
    write_suite(tmp_path, LOCKS_AND_DEPS)
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider",
                             "-rs")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # every collected test is reported exactly once
    assert sorted(found) == sorted(collected(tmp_path))
    assert all(entry["teardowns"] == 1 for entry in found.values()), found
    outcomes = outcomes_of(found)
    assert outcomes["test_deps.py::test_report"] == "failed"
    skipped = {nodeid for nodeid, outcome in outcomes.items() if outcome == "skipped"}
    assert skipped == {"test_deps.py::test_mail", "test_deps.py::test_archive",
                       "test_deps.py::test_audit"}
    assert set(outcomes.values()) == {"passed", "failed", "skipped"}
    assert ("pexen: requires tag 'report', never provided because "
            "'test_deps.py::test_report' failed") in proc.stdout

    ran = intervals(tmp_path)
    assert len({entry["pid"] for entry in ran.values()}) == 2
    db = [e for i, e in ran.items() if "test_db_" in i]
    assert len(db) == 7
    for n, a in enumerate(db):
        for b in db[n + 1:]:
            assert not overlap(a, b), (a, b)
    writers = [e for i, e in ran.items() if "test_cache_writer" in i]
    readers = [e for i, e in ran.items() if "test_cache_reader" in i]
    for writer in writers:
        for other in writers + readers:
            assert other is writer or not overlap(writer, other), (writer, other)
    for provider, dependent in [("test_schema", "test_load"),
                                ("test_load", "test_query")]:
        assert (ran[f"test_deps.py::{provider}"]["end"]
                <= ran[f"test_deps.py::{dependent}"]["start"])


def test_a_test_waiting_for_a_lock_does_not_hold_a_worker(tmp_path):
    # the first claimer waits until the four free tests have run: they can
    # only run on the other worker while the second claimer waits its turn
    write_suite(tmp_path, {"test_wait.py": """
        import os, time
        import pytest

        def _flag(n):
            return os.path.join(os.path.dirname(__file__), f"free-{n}")

        @pytest.mark.pexen(claims=["db"])
        def test_claim_first():
            deadline = time.monotonic() + 30
            while not all(os.path.exists(_flag(n)) for n in range(4)):
                assert time.monotonic() < deadline, "the free tests did not run"
                time.sleep(0.01)

        @pytest.mark.pexen(claims=["db"])
        def test_claim_second():
            pass

        @pytest.mark.parametrize("n", range(4))
        def test_free(n):
            open(_flag(n), "w").close()
    """})
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider")
    assert set(outcomes_of(found).values()) == {"passed"}, proc.stdout
    assert len(found) == 6


FIXTURES = {
    "conftest.py": """
        import os
        import pytest

        def _note(request, what):
            path = os.path.join(str(request.config.rootpath), "fixtures.log")
            with open(path, "a") as f:
                f.write(f"{what} {os.getpid()}\\n")

        @pytest.fixture(scope="session")
        def session_thing(request):
            _note(request, "session-setup")
            yield
            _note(request, "session-teardown")
    """,
    "test_mod_a.py": """
        import os
        import pytest
        from conftest import _note

        @pytest.fixture(scope="module")
        def module_thing(request, session_thing):
            _note(request, "module-a-setup")
            yield
            _note(request, "module-a-teardown")

        class TestGroup:
            @pytest.fixture(scope="class")
            def class_thing(self, request):
                _note(request, "class-setup")
                yield
                _note(request, "class-teardown")

            @pytest.mark.parametrize("n", range(10))
            def test_in_class(self, class_thing, module_thing, n):
                pass

        @pytest.mark.parametrize("n", range(10))
        def test_a(module_thing, n):
            pass
    """,
    "test_mod_b.py": """
        import pytest
        from conftest import _note

        @pytest.fixture(scope="module")
        def module_thing(request, session_thing):
            _note(request, "module-b-setup")
            yield
            _note(request, "module-b-teardown")

        @pytest.mark.parametrize("n", range(20))
        def test_b(module_thing, n):
            pass
    """,
}


def test_wider_fixtures_are_set_up_once_per_worker_and_torn_down(tmp_path):
    write_suite(tmp_path, FIXTURES)
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(found) == 40
    lines = [line.split() for line in (tmp_path / "fixtures.log").read_text()
             .splitlines()]
    pids = {pid for _what, pid in lines}
    assert len(pids) <= 2
    for pid in pids:
        mine = [what for what, p in lines if p == pid]
        assert mine.count("session-setup") == 1, lines
        assert mine[-1] == "session-teardown", lines  # by the finalizer
    for scope in ("module-a", "module-b", "class"):
        setups = sum(what == f"{scope}-setup" for what, _ in lines)
        teardowns = sum(what == f"{scope}-teardown" for what, _ in lines)
        # once per worker, or again where the order came back to it
        assert 1 <= setups <= 4 and setups == teardowns, (scope, lines)


def test_a_crashed_or_timed_out_test_fails_and_the_run_goes_on(tmp_path):
    write_suite(tmp_path, {"test_crash.py": """
        import os, time
        import pytest

        @pytest.mark.pexen(claims=["db"])
        def test_exits():
            os._exit(3)

        @pytest.mark.pexen(claims=["db"])
        def test_db_after():
            pass

        @pytest.mark.pexen(timeout=0.5)
        def test_hangs():
            time.sleep(30)

        @pytest.mark.parametrize("n", range(6))
        def test_fine(n):
            pass
    """})
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider",
                             "-rs")
    outcomes = outcomes_of(found)
    assert outcomes.pop("test_crash.py::test_exits") == "failed"
    assert outcomes.pop("test_crash.py::test_hangs") == "failed"
    # the crashed test's lock stays taken: who waits for it is told why
    assert outcomes.pop("test_crash.py::test_db_after") == "skipped"
    assert ("pexen: waits for lock 'db', held because 'test_crash.py::test_exits' "
            "failed") in proc.stdout
    assert set(outcomes.values()) == {"passed"} and len(outcomes) == 6
    assert ("WorkerCrashError: task 'test_crash.py::test_exits' crashed its "
            "worker: worker pid ") in proc.stdout
    assert "exited with code 3 while running it" in proc.stdout
    assert ("TaskTimeoutError: task 'test_crash.py::test_hangs' ran longer than "
            "its timeout of 0.5 s; its worker (pid ") in proc.stdout


def test_exitfirst_stops_the_run_with_pytest_words(tmp_path):
    # the first test fails and every other one waits for ever: only the stop
    # that -x asks for ends the run (a run that went on would hang to the
    # timeout); the tests the stop interrupted have no outcome
    write_suite(tmp_path, {"test_x.py": """
        import threading
        import pytest

        @pytest.mark.parametrize("n", range(40))
        def test_n(n):
            assert n != 0
            threading.Event().wait()
    """})
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider",
                             "-x", timeout=60)
    assert proc.returncode == 1
    assert "stopping after 1 failures" in proc.stdout
    assert outcomes_of(found) == {"test_x.py::test_n[0]": "failed"}, proc.stdout


def test_maxfail_and_last_failed_work_through_the_cache(tmp_path):
    write_suite(tmp_path, {"test_lf.py": """
        import pytest

        @pytest.mark.parametrize("n", range(10))
        def test_n(n):
            assert n % 4
    """})
    proc, found = run_pytest(tmp_path, "--pexen", "2")
    assert sorted(n for n, o in outcomes_of(found).items() if o == "failed") == [
        "test_lf.py::test_n[0]", "test_lf.py::test_n[4]", "test_lf.py::test_n[8]"]
    proc, found = run_pytest(tmp_path, "--pexen", "2", "--lf")
    assert sorted(found) == ["test_lf.py::test_n[0]", "test_lf.py::test_n[4]",
                             "test_lf.py::test_n[8]"], proc.stdout
    proc, found = run_pytest(tmp_path, "--pexen", "2", "--maxfail", "2")
    assert "stopping after 2 failures" in proc.stdout


def test_pexen_with_xdist_n_is_a_usage_error(tmp_path):
    write_suite(tmp_path, {"test_one.py": "def test_one():\n    pass\n"})
    proc, _ = run_pytest(tmp_path, "-p", "xdist", "-p", "no:cacheprovider",
                         "--pexen", "2", "-n", "2", timeout=30)
    assert proc.returncode == 4
    assert ("--pexen and -n (pytest-xdist) both run the tests in worker "
            "processes; give one of them") in proc.stderr
    proc, _ = run_pytest(tmp_path, "-p", "no:cacheprovider", "--pexen", "2",
                         "--pdb", timeout=30)
    assert proc.returncode == 4
    assert "--pdb needs the test in this process" in proc.stderr


def test_a_collection_that_differs_in_a_worker_is_named(tmp_path):
    write_suite(tmp_path, {"test_random.py": """
        import os
        import pytest

        @pytest.mark.parametrize("n", [os.getpid(), 1])
        def test_pid(n):
            pass
    """})
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider")
    assert proc.returncode == 2, proc.stdout
    assert "pexen: the worker collected other tests than the controller: " \
           "collected by the controller only: 'test_random.py::test_pid[" in proc.stdout
    assert "is a parametrization random" in proc.stdout
    assert not found  # no test is reported: the run stopped before any


def test_ctrl_c_ends_the_run_with_the_summary_and_no_worker_left(tmp_path):
    write_suite(tmp_path, {"test_slow.py": """
        import os, time
        import pytest

        @pytest.mark.parametrize("n", range(2))
        def test_wait(n):
            here = os.path.dirname(__file__)
            with open(os.path.join(here, f"pid-{n}"), "w") as f:
                f.write(str(os.getpid()))
            time.sleep(60)
    """})
    env = clean_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "pexen", "-p", "no:cacheprovider",
         "--pexen", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, stdin=subprocess.DEVNULL,
    )
    try:
        pidfiles = [tmp_path / "pid-0", tmp_path / "pid-1"]
        assert poll(lambda: all(p.exists() and p.read_text() for p in pidfiles),
                    timeout=30)
        workers = [int(p.read_text()) for p in pidfiles]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, out
    assert "KeyboardInterrupt" in out
    assert "no tests ran" in out or "interrupted" in out.lower()
    assert poll(lambda: not any(alive(pid) for pid in workers)), workers
    assert os.getpid() not in workers


def test_claimers_start_first_among_equal_priorities(tmp_path):
    write_suite(tmp_path, {
        "conftest.py": RECORDING_CONFTEST,
        "test_order.py": """
            import pytest

            @pytest.mark.parametrize("n", range(3))
            def test_free(n):
                pass

            @pytest.mark.pexen(claims=["db"])
            def test_claimer():
                pass

            @pytest.mark.pexen(priority=-1)
            def test_urgent():
                pass
        """,
    })
    proc, found = run_pytest(tmp_path, "--pexen", "1", "-p", "no:cacheprovider")
    assert len(found) == 5, proc.stdout
    ran = sorted(intervals(tmp_path).values(), key=lambda entry: entry["start"])
    assert [entry["id"].split("::")[1] for entry in ran] == [
        "test_urgent", "test_claimer", "test_free[0]", "test_free[1]", "test_free[2]"]


def test_errors_in_wider_teardowns_are_reported_as_in_a_serial_run(tmp_path):
    write_suite(tmp_path, {
        "conftest.py": """
            import pytest

            @pytest.fixture(scope="session")
            def session_thing():
                yield
                raise RuntimeError("session teardown broke")
        """,
        "test_a.py": """
            import pytest

            @pytest.fixture(scope="module")
            def module_thing(session_thing):
                yield
                print("tearing the module down")
                raise RuntimeError("module teardown broke")

            @pytest.mark.parametrize("n", range(4))
            def test_a(module_thing, n):
                pass
        """,
        "test_b.py": """
            import pytest

            @pytest.mark.parametrize("n", range(4))
            def test_b(n):
                pass
        """,
    })
    serial, found_serial = run_pytest(tmp_path, "-p", "no:cacheprovider")
    # one worker sees the tests in the serial order: the very same reports
    one, found_one = run_pytest(tmp_path, "--pexen", "1", "-p", "no:cacheprovider")
    # two: each worker that set a fixture up tears it down, and may fail to
    two, _ = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider")
    assert outcomes_of(found_one) == outcomes_of(found_serial)
    for proc in (serial, one, two):
        assert proc.returncode == 1
        assert "8 passed, " in proc.stdout.splitlines()[-1], proc.stdout
        assert "RuntimeError: module teardown broke" in proc.stdout
        assert "RuntimeError: session teardown broke" in proc.stdout
        # captured, and shown with the error (not printed as it happened)
        captured = proc.stdout.split("Captured stdout teardown", 1)
        assert len(captured) == 2 and "tearing the module down" in captured[1]
    for proc in (serial, one):
        assert "8 passed, 2 errors" in proc.stdout.splitlines()[-1], proc.stdout


def test_a_worker_whose_session_cannot_start_stops_the_run_saying_why(tmp_path):
    write_suite(tmp_path, {
        "conftest.py": """
            import multiprocessing

            if multiprocessing.current_process().name.startswith("pexen-worker"):
                raise ImportError("no driver in the workers")
        """,
        "test_one.py": "def test_one():\n    pass\n",
    })
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider")
    assert proc.returncode == 2, proc.stdout
    assert "pexen: the pytest session of worker pid " in proc.stdout
    assert "could not start: " in proc.stdout
    assert "no driver in the workers" in proc.stdout
    assert not found


def test_a_teardown_error_left_by_the_last_test_does_not_fail_the_next(tmp_path):
    # the module fixture of test_a.py is torn down as the worker moves on to
    # test_b.py's provider: the error is test_a's, the provider still passed
    write_suite(tmp_path, {
        "test_a.py": """
            import pytest

            @pytest.fixture(scope="module")
            def module_thing():
                yield
                raise RuntimeError("module teardown broke")

            def test_a(module_thing):
                pass
        """,
        "test_b.py": """
            import pytest

            @pytest.mark.pexen(provides=["b"])
            def test_provider():
                pass

            @pytest.mark.pexen(requires=["b"])
            def test_dependent():
                pass
        """,
    })
    proc, found = run_pytest(tmp_path, "--pexen", "1", "-p", "no:cacheprovider")
    assert outcomes_of(found) == {
        "test_a.py::test_a": "error",
        "test_b.py::test_provider": "passed",
        "test_b.py::test_dependent": "passed",
    }, proc.stdout


def test_pytest_exit_in_a_test_ends_the_session_as_in_a_serial_run(tmp_path):
    write_suite(tmp_path, {"test_exit.py": """
        import pytest

        def test_enough():
            pytest.exit("enough for today", returncode=3)

        @pytest.mark.parametrize("n", range(20))
        def test_n(n):
            pass
    """})
    serial, _ = run_pytest(tmp_path, "-p", "no:cacheprovider")
    pexen, _ = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider")
    for proc in (serial, pexen):
        assert proc.returncode == 3, proc.stdout
        assert "Exit: enough for today" in proc.stdout


def test_k_and_m_select_and_class_and_module_markers_add_up(tmp_path):
    write_suite(tmp_path, {
        "pytest.ini": """
            [pytest]
            markers = slow: a slow test
        """,
        "test_sel.py": """
            import pytest

            pytestmark = pytest.mark.pexen(uses=["catalog"])

            @pytest.mark.slow
            def test_slow_reader():
                pass

            def test_fast_reader():
                pass

            @pytest.mark.pexen(claims=["catalog"])  # claims, over the module's uses
            class TestWriter:
                @pytest.mark.slow
                def test_write(self):
                    pass

                @pytest.mark.slow
                def test_other(self):
                    pass
        """,
    })
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider",
                             "-m", "slow", "-k", "not other")
    assert outcomes_of(found) == {"test_sel.py::test_slow_reader": "passed",
                                  "test_sel.py::TestWriter::test_write": "passed"}, (
        proc.stdout + proc.stderr)
    assert "2 deselected" in proc.stdout


def test_pexen_takes_a_count_auto_or_zero_and_refuses_the_rest(tmp_path):
    write_suite(tmp_path, {"test_one.py": """
        import multiprocessing

        def test_where():
            with open("where", "w") as f:
                f.write(multiprocessing.current_process().name)
    """})
    for value, worker in (("auto", True), ("0", False)):
        proc, found = run_pytest(tmp_path, "--pexen", value, "-p", "no:cacheprovider")
        assert outcomes_of(found) == {"test_one.py::test_where": "passed"}, proc.stdout
        ran_in = (tmp_path / "where").read_text()
        assert ran_in.startswith("pexen-worker") == worker, (value, ran_in)
    proc, _ = run_pytest(tmp_path, "--pexen", "two", "-p", "no:cacheprovider")
    assert proc.returncode == 4
    assert "'two': expected a number of workers (0 for none) or 'auto'" in proc.stderr


def test_a_fixture_declared_used_keeps_its_tests_off_a_claimer(tmp_path):
    # the writer holds the door open for a second: a reader not kept out by
    # the lock its fixture stands for would run then, on the other worker
    write_suite(tmp_path, {
        "pytest.ini": """
            [pytest]
            pexen_uses = cache
        """,
        "conftest.py": RECORDING_CONFTEST + """
    @pytest.fixture
    def cache():
        return {}
""",
        "test_cache.py": """
            import os, time
            import pytest

            FLAG = os.path.join(os.path.dirname(__file__), "a-reader-ran")

            @pytest.mark.pexen(claims=["cache"])
            def test_writer():
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline and not os.path.exists(FLAG):
                    time.sleep(0.01)

            @pytest.mark.parametrize("n", range(3))
            def test_reader(cache, n):
                open(FLAG, "w").close()
        """,
    })
    proc, found = run_pytest(tmp_path, "--pexen", "2", "-p", "no:cacheprovider")
    assert set(outcomes_of(found).values()) == {"passed"}, proc.stdout
    ran = intervals(tmp_path)
    writer = ran.pop("test_cache.py::test_writer")
    assert len(ran) == 3
    for reader in ran.values():
        assert not overlap(writer, reader), (writer, reader)


def test_a_test_sees_sigint_as_in_a_plain_pytest_process(tmp_path):
    # pexen's workers ignore SIGINT; a test, and what it starts, must not
    write_suite(tmp_path, {"test_sigint.py": """
        import os, signal, subprocess, sys
        import pytest

        def test_handler():
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

        def test_interrupt_self():
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)  # handled before it returns

        def test_a_child_can_be_interrupted():
            child = subprocess.run(
                [sys.executable, "-c",
                 "import signal; print(signal.getsignal(signal.SIGINT))"],
                capture_output=True, text=True, check=True)
            assert "default_int_handler" in child.stdout
    """})
    proc, found = run_pytest(tmp_path, "--pexen", "1", "-p", "no:cacheprovider")
    assert set(outcomes_of(found).values()) == {"passed"}, proc.stdout
    assert len(found) == 3

"""Benchmark: ``pytest --pexen 2`` against pytest-xdist on generated suites.

    python tools/bench_pytest.py            # both benchmarks, 3 rounds each
    python tools/bench_pytest.py --rounds 1 --quick
    python tools/bench_pytest.py --no-autoload  # only the plugin under test

1. A suite of 400 tests of 10 ms each (sleeping: I/O-bound work), a quarter
   of them using a ``db`` fixture that must not be used by two tests at once.
   pexen: one run, ``--pexen 2``, the fixture declared a resource
   (``pexen_claims = db``); the lock is checked from the intervals the db
   tests record. pytest-xdist: the usual workaround, two passes:
   ``-n 2 -m "not db"``, then ``-m db`` serially.
2. A lock-free suite of 2,000 tests that do nothing: the per-test overhead
   of ``--pexen 2`` against ``-n 2``.

Each figure is the best of the rounds, wall-clock time of whole ``pytest``
processes (start-up included), as users run them: every installed plugin
loads (here pexen, pytest-xdist, pytest-timeout, Hypothesis's), in the
controlling processes and in the workers alike. With ``--no-autoload`` only
the plugin under test loads, which makes every process start faster (half a
second here) and so favours the approach with more processes to start.
Figures depend on the machine and its load; compare the ratios printed in
one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

LOCKED_SUITE = {
    "pytest.ini": """
        [pytest]
        markers = db: uses the database
        pexen_claims = db
    """,
    "conftest.py": """
        import json, os, time
        import pytest

        @pytest.fixture
        def db(request):
            start = time.monotonic()
            yield "db"
            path = os.path.join(str(request.config.rootpath), "db-intervals.jsonl")
            with open(path, "a") as f:
                f.write(json.dumps([start, time.monotonic()]) + "\\n")
    """,
    "test_suite.py": """
        import time
        import pytest

        WORK = {work}

        @pytest.mark.parametrize("n", range({n_free}))
        def test_free(n):
            time.sleep(WORK)

        @pytest.mark.db
        @pytest.mark.parametrize("n", range({n_db}))
        def test_db(db, n):
            time.sleep(WORK)
    """,
}

NOOP_SUITE = {
    "test_noop.py": """
        import pytest

        @pytest.mark.parametrize("n", range({n}))
        def test_noop(n):
            pass
    """,
}


def write(root: Path, files: dict[str, str], **values: object) -> None:
    """Write *files*; the test modules' ``{placeholders}`` filled from *values*."""
    for name, text in files.items():
        text = textwrap.dedent(text)
        if name.startswith("test_"):
            text = text.format(**values)
        (root / name).write_text(text)


AUTOLOAD = True  # as users run pytest: every installed plugin loads


def pytest_run(root: Path, plugin: str, *args: str) -> float:
    """Wall time of one ``pytest`` process in *root*; it must pass."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    load: tuple[str, ...] = ()
    if not AUTOLOAD:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        load = ("-p", plugin)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *load, "-p", "no:cacheprovider",
         *args],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"pytest {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return took


def db_overlaps(root: Path) -> int:
    """How many pairs of db tests overlapped in time (must be 0)."""
    path = root / "db-intervals.jsonl"
    spans = sorted(json.loads(line) for line in path.read_text().splitlines())
    path.unlink()
    return sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if start < end)


def best(rounds: int, run) -> float:
    return min(run() for _ in range(rounds))


def bench_locked(rounds: int, n: int, work: float) -> None:
    n_db = n // 4
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, LOCKED_SUITE, work=work, n_free=n - n_db, n_db=n_db)
        pexen = best(rounds, lambda: pytest_run(root, "pexen", "--pexen", "2"))
        overlaps = db_overlaps(root)

        def two_passes() -> float:
            return (pytest_run(root, "xdist", "-n", "2", "-m", "not db")
                    + pytest_run(root, "xdist", "-m", "db"))

        xdist = best(rounds, two_passes)
        db_overlaps(root)
    print(f"{n} tests of {work * 1000:g} ms, {n_db} using the db fixture, 2 workers:")
    print(f"  pytest --pexen 2 (one run, lock honoured) {pexen:7.2f} s"
          f"   db tests overlapping: {overlaps}")
    print(f"  pytest-xdist: -n 2 -m 'not db', then -m db  {xdist:7.2f} s")
    print(f"  pexen is {xdist / pexen:.2f}x as fast (target: at least 1.3x)")


def bench_noop(rounds: int, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, NOOP_SUITE, n=n)
        pexen = best(rounds, lambda: pytest_run(root, "pexen", "--pexen", "2"))
        xdist = best(rounds, lambda: pytest_run(root, "xdist", "-n", "2"))
        serial = best(rounds, lambda: pytest_run(root, "pexen"))
    print(f"{n} tests that do nothing (whole runs, start-up included):")
    print(f"  plain pytest      {serial:6.2f} s  {serial / n * 1e6:6.0f} us/test")
    print(f"  pytest --pexen 2  {pexen:6.2f} s  {pexen / n * 1e6:6.0f} us/test")
    print(f"  pytest -n 2       {xdist:6.2f} s  {xdist / n * 1e6:6.0f} us/test")
    print(f"  pexen/xdist: {pexen / xdist:.2f} (target: at most 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller suites")
    parser.add_argument("--no-autoload", action="store_true",
                        help="load only the plugin under test in each process")
    opts = parser.parse_args()
    global AUTOLOAD
    AUTOLOAD = not opts.no_autoload
    print("plugins:", "as installed (auto-loaded)" if AUTOLOAD else
          "only the one under test (PYTEST_DISABLE_PLUGIN_AUTOLOAD=1)")
    n_locked, n_noop = (80, 400) if opts.quick else (400, 2000)
    bench_locked(opts.rounds, n_locked, 0.01)
    bench_noop(opts.rounds, n_noop)


if __name__ == "__main__":
    main()

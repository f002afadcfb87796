"""The examples of docs/pools.md run, in order, and print what the page shows.

Every ```python block runs in one namespace (as a reader pasting them one
after the other would); when a plain ``` block follows it directly, that is
the output the example must print. The example pool of "Writing a pool" is
also run through the scheduler against the contract the page states, and
``dir(pexen.sched.pool)`` must name every pool without loading an engine.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "pools.md"
EXAMPLE = re.compile(
    r"^```python\n(?P<code>.*?)^```\n(?:```\n(?P<out>.*?)^```\n)?", re.S | re.M
)


def examples() -> list[tuple[str, str | None]]:
    return [(m["code"], m["out"]) for m in EXAMPLE.finditer(PAGE.read_text())]


def test_the_page_has_examples_with_output():
    found = examples()
    assert len(found) >= 8
    assert sum(out is not None for _code, out in found) >= 7


def test_examples_run_and_print_what_the_page_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_pools_md"}
    for n, (code, expected) in enumerate(examples(), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{PAGE.name} example {n}", "exec"), namespace)
        if expected is not None:
            assert out.getvalue() == expected, f"example {n} printed otherwise"


# -- the pool of "Writing a pool", held to the contract the page states ------

POOL_CLASS = "class LoggingInlinePool(WorkerPool)"


def example_pool_class():
    """Run the page's example that defines the pool; return the class."""
    (code,) = [code for code, _out in examples() if POOL_CLASS in code]
    namespace: dict = {"__name__": "docs_pools_md_writing_a_pool"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, f"{PAGE.name} 'Writing a pool'", "exec"), namespace)
    return namespace["LoggingInlinePool"]


def contract_tasks():
    """Tasks exercising what a pool must carry: shared, kwargs, failures."""
    from pexen.sched.meta import func_meta

    @func_meta(provides=["db"], kwargs={"url": "sqlite://"})
    def start_db(shared, url):
        shared["db"] = url
        return "started"

    @func_meta(requires=["db"], claims=["db-lock"])
    def migrate(shared):
        return f"migrated {shared['db']}"

    @func_meta(requires=["db"], uses=["db-lock"], priority=-1)
    def query(shared):
        return f"queried {shared['db']}"

    @func_meta(provides=["cache"])
    def warm_cache():
        raise OSError("cache server is down")

    @func_meta(requires=["cache"])
    def serve():
        return "serving"

    def exits():
        raise SystemExit(3)

    @func_meta(priority=-5, kwargs={"n": 2})
    def square(*, n):
        return n * n

    return [start_db, migrate, query, warm_cache, serve, exits, square]


def summary(results):
    return [
        (res.task.__name__, res.ret, res.shared,
         res.excinfo and (res.excinfo.type, str(res.excinfo.val)))
        for res in results
    ]


def run_all(pool, tasks):
    from pexen import PexenWarning
    from pexen.sched import Sched

    s = Sched(tasks)
    with pytest.warns(PexenWarning):  # the task that needed the failed cache
        results = list(s.run(pool=pool))
    return results, dict(s.skipped)


@pytest.mark.parametrize("spare", [0, 2])
def test_the_example_pool_runs_like_the_inline_pool(spare):
    from pexen.sched.pool import InlineWorkerPool

    pool_class = example_pool_class()
    tasks = contract_tasks()
    lines: list[str] = []
    got, got_skipped = run_all(pool_class(log=lines.append, spare=spare), tasks)
    want, want_skipped = run_all(InlineWorkerPool(), tasks)

    if spare == 0:  # the same one-at-a-time order, exactly
        assert summary(got) == summary(want)
    else:  # spares are handed out ahead, so only the set is the same
        assert sorted(summary(got), key=repr) == sorted(summary(want), key=repr)
    assert got_skipped == want_skipped
    assert [name for name, *_ in summary(got)][:1] == ["square"]  # priority -5
    by_name = {res.task.__name__: res for res in got}
    assert by_name["migrate"].ret == "migrated sqlite://"
    assert by_name["exits"].excinfo.type is SystemExit
    assert by_name["warm_cache"].excinfo.tb is not None

    assert lines[0] == "run starts" and lines[-1] == "run ends"
    started = [line.split()[0] for line in lines if line.endswith(" starts")]
    assert started[1:] == [res.task.__name__ for res in got]  # [0]: the run


def test_the_example_pool_refuses_a_second_run_and_serves_the_next():
    from pexen.sched import PoolError, Sched

    pool = example_pool_class()(log=lambda line: None)
    s1 = Sched([lambda: 1, lambda: 2])
    first = s1.run(pool=pool)
    assert next(first).ret == 1
    with pytest.raises(PoolError, match="already serving a run"):
        next(Sched([lambda: 3]).run(pool=pool))
    assert [res.ret for res in first] == [2]  # the first run goes on
    assert [res.ret for res in Sched([lambda: 4]).run(pool=pool)] == [4]


def test_the_example_pool_drops_queued_jobs_when_the_loop_is_left():
    from pexen.sched import Sched

    lines: list[str] = []
    pool = example_pool_class()(log=lines.append, spare=3)
    s = Sched([lambda *, n=n: n for n in range(10)])
    gen = s.run(pool=pool)
    assert next(gen).ret == 0
    assert len(s.in_flight) == 3  # the spares, queued in the pool
    gen.close()
    assert lines[-2:] == ["run stopped early, 3 queued job(s) dropped", "run ends"]
    assert len(s.skipped) == 9
    assert [res.ret for res in Sched([lambda: "again"]).run(pool=pool)] == ["again"]


# -- dir() of pexen.sched.pool names the lazy pools without loading them -----


def test_dir_lists_every_exported_pool_without_importing_engines():
    code = textwrap.dedent("""
        import sys
        import pexen.sched.pool as pool

        missing = set(pool.__all__) - set(dir(pool))
        assert not missing, missing
        loaded = [m for m in ("dask", "distributed", "mpi4py",
                              "pexen.sched._pools.dask", "pexen.sched._pools.mpi",
                              "pexen.sched._pools.remote") if m in sys.modules]
        assert not loaded, loaded
    """)
    subprocess.run([sys.executable, "-c", code], check=True)

"""Real third-party suites give the same outcomes with --pexen 2 as with plain pytest.

The suites are the pinned sdists ``tools/fetch_real_suites.py`` unpacks
(``.ci/run`` runs it); without them these tests skip, saying so. Each is
copied to a scratch directory and run twice, plainly and with ``--pexen 2``;
the sets of passed, failed, skipped, xfailed (...) node ids must be equal.
To keep the suite quick, only part of each runs: more-itertools's
test_more.py (533 tests) without its slowest (1 s of Fourier transforms),
attrs without the files that are mostly Hypothesis (whose 400 ms deadline
is a matter of machine load, not of the plugin): 519 tests.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.pytest_plugin._runs import OUTCOMES_PLUGIN, clean_env, run_pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from fetch_real_suites import DEFAULT_DIR, suite_dir  # noqa: E402

sys.path.remove(str(REPO / "tools"))

ROOT = Path(os.environ.get("PEXEN_REAL_SUITES", DEFAULT_DIR))

ATTRS_FILES = [
    "tests/test_abc.py", "tests/test_annotations.py", "tests/test_cmp.py",
    "tests/test_config.py", "tests/test_converters.py", "tests/test_filters.py",
    "tests/test_hooks.py", "tests/test_init_subclass.py", "tests/test_next_gen.py",
    "tests/test_pattern_matching.py", "tests/test_pyright.py",
    "tests/test_setattr.py", "tests/test_slots.py", "tests/test_validators.py",
]

# name -> (import path inside the sdist, pytest arguments, at least this many tests)
SUITES = {
    "more-itertools": (".", ["tests/test_more.py", "-k", "not test_roundtrip"], 500),
    "attrs": ("src", ATTRS_FILES, 500),
}


@pytest.mark.parametrize("name", list(SUITES))
def test_a_real_suite_has_the_same_outcomes_with_pexen(name, tmp_path):
    source = suite_dir(ROOT, name)
    if not source.is_dir():
        pytest.skip(f"{source} is missing: run `python tools/fetch_real_suites.py` "
                    "(as .ci/run does) to fetch the third-party suites")
    import_path, args, at_least = SUITES[name]
    suite = tmp_path / name
    shutil.copytree(source, suite)
    (suite / "outcomes_plugin.py").write_text(OUTCOMES_PLUGIN)
    env = clean_env(PYTHONPATH=str(suite / import_path))
    plain_proc, plain = run_pytest(suite, "-p", "no:cacheprovider", *args, env=env)
    pexen_proc, pexen = run_pytest(suite, "-p", "no:cacheprovider", "--pexen", "2",
                                   *args, env=dict(env))
    assert len(plain) >= at_least, plain_proc.stdout[-3000:] + plain_proc.stderr
    assert pexen == plain, pexen_proc.stdout[-3000:]
    assert pexen_proc.returncode == plain_proc.returncode

"""The test suite on every CPython pexen supports: ``nox`` (or ``nox -s tests``).

Each interpreter of ``PYTHONS`` found on PATH gets a fresh virtualenv with
pexen and its test extra installed from this checkout (its dependencies and
its ``pexen`` command; the tests import the checkout itself, as pytest's
``pythonpath`` says), and runs the whole suite; an interpreter that is not
there is skipped with a message, not a failure. The Dask and MPI pool tests
need the ``dask`` and ``mpi`` extras and skip here: .ci/run runs them once,
on its own interpreter, to keep CI short.
"""

from __future__ import annotations

import nox

# The CPython versions pexen supports: pyproject.toml's classifiers say the
# same (tests/test_release.py checks that they agree).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"
# A missing interpreter is skipped, also on CI, where nox would otherwise fail.
nox.options.error_on_missing_interpreters = False


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Install pexen with its test extra; run the suite (extra args: pytest's)."""
    session.install("--quiet", ".[test]")
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *session.posargs
    )

"""What a user gets from an index: the sdist and the wheel build, the wheel
installs into a fresh virtualenv and its ``pexen`` command runs the example
suite; the version is written once, and the classifiers name the Pythons
that noxfile.py tests.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import pexen
from pexen.cli import main

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = (REPO / "pyproject.toml").read_text()


def _nox_pythons() -> list[str]:
    """noxfile.PYTHONS, read without importing nox."""
    tree = ast.parse((REPO / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "PYTHONS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError("PYTHONS")


def test_the_classifiers_name_the_pythons_nox_tests():
    pythons = _nox_pythons()
    classified = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', PYPROJECT)
    assert classified == pythons
    assert f'requires-python = ">={pythons[0]}"' in PYPROJECT


def test_the_version_is_written_once(capsys):
    """pyproject.toml reads pexen.__version__; ``pexen --version`` prints it."""
    assert 'dynamic = ["version"]' in PYPROJECT
    assert 'version = {attr = "pexen.__version__"}' in PYPROJECT
    assert not re.search(r"^version\s*=\s*\"", PYPROJECT, re.M)  # no literal copy
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"pexen {pexen.__version__}\n"


def test_the_readme_builds_the_site_as_ci_does():
    """The README's one command builds the site with CI's strict options."""
    ci = (REPO / ".ci" / "run").read_text()
    (ci_build,) = re.findall(r"python -m sphinx [^\n]*", ci)
    readme = (REPO / "README.md").read_text()
    assert ci_build in readme


def _run(*argv: str | Path, cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _installed(distribution: str) -> bool:
    """Whether *distribution* is installed (not merely a ``build/`` directory
    that the checkout on sys.path happens to hold)."""
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(
    not _installed("build"),
    reason="needs the 'build' package (the release extra: pip install -e '.[release]')",
)
def test_the_wheel_installs_and_runs_the_example_suite(tmp_path):
    # From a copy without what builds and installs leave behind (an old
    # *.egg-info would stand in for MANIFEST.in); the wheel from the sdist.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".nox", "*.egg-info", "__pycache__", "build", "dist", "_build",
    ))
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", dist, source, cwd=tmp_path)
    version = pexen.__version__
    (wheel,) = dist.glob(f"pexen-{version}-py3-none-any.whl")
    with tarfile.open(dist / f"pexen-{version}.tar.gz") as sdist:
        in_sdist = {name.split("/", 1)[-1] for name in sdist.getnames()}
    # the sdist can run the tests and build the site
    assert {"LICENSE", "CHANGELOG.md", "noxfile.py", "tests/_docs.py", "docs/conf.py",
            "examples/suite/__init__.py"} <= in_sdist
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(f"pexen-{version}.dist-info/METADATA").decode()
    assert "pexen/py.typed" in names
    assert not [name for name in names if name.startswith(("tests/", "docs/"))]
    assert f"Version: {version}\n" in metadata

    # A venv without pip of its own (ensurepip takes seconds): our pip installs
    # into it, as build does into its isolated environments.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel,
         cwd=tmp_path)
    where = _run(python, "-c", "import pexen; print(pexen.__file__)", cwd=tmp_path)
    assert where.startswith(str(venv)), where  # the installed copy, not this checkout

    shutil.copytree(REPO / "examples" / "suite", tmp_path / "suite")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pexen_command = venv / "bin" / "pexen"
    shown = _run(pexen_command, "--version", cwd=tmp_path, env=env)
    assert shown == f"pexen {version}\n"
    proc = subprocess.run(
        [pexen_command, "run", "suite", "-j", "2"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one test fails by design
    summary = (
        r"=== 6 passed, 1 failed, 2 skipped in \d+\.\d+s \(thread pool, 2 workers\) ==="
    )
    assert re.search(f"^{summary}$", proc.stdout, re.M), proc.stdout

"""Fetch the third-party test suites the pytest plugin's tests run on.

    python tools/fetch_real_suites.py [DIR]    # default: .cache/real-suites

Each suite is the source distribution of a pinned release from the package
index pip uses (``pip download --no-binary :all: --no-deps``), unpacked into
DIR/<name>-<version>/. Already there: nothing is done. Needs only Python and
pip, so it runs from a clean clone (``.ci/run`` calls it).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / ".cache" / "real-suites"

# name -> pinned version; tests/pytest_plugin/test_pytest_real_suites.py
# knows how to run each (more-itertools 10.8 no longer ships its tests)
SUITES = {"more-itertools": "10.7.0", "attrs": "25.4.0"}


def suite_dir(root: pathlib.Path, name: str) -> pathlib.Path:
    return root / f"{name}-{SUITES[name]}"


def fetch(root: pathlib.Path, name: str) -> pathlib.Path:
    """Download and unpack *name*'s sdist below *root*; return its directory."""
    target = suite_dir(root, name)
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary",
             ":all:", "--no-deps", f"{name}=={SUITES[name]}", "--dest", tmp],
            check=True,
        )
        (sdist,) = pathlib.Path(tmp).glob("*.tar.gz")
        unpacked = pathlib.Path(tmp) / "unpacked"
        with tarfile.open(sdist) as archive:
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+: refuse odd paths
                archive.extractall(unpacked, filter="data")
            else:
                archive.extractall(unpacked)  # older Pythons: an index sdist
        (top,) = unpacked.iterdir()
        shutil.move(str(top), target)  # whole or not at all
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", type=pathlib.Path, default=DEFAULT_DIR)
    root = parser.parse_args().dir
    for name in SUITES:
        print(f"{name}: {fetch(root, name)}")


if __name__ == "__main__":
    main()

"""Running pytest on a generated suite in a subprocess, as a user would.

Each run is a real ``python -m pytest`` (the plugin loads through its entry
point) in the suite's directory. :data:`OUTCOMES_PLUGIN` is written beside
the suite and loaded with ``-p``: the controlling process writes
``outcomes.json``, each collected node id with the outcome pytest's terminal
would give it (``passed``, ``failed``, ``error``, ``skipped``, ``xfailed``,
``xpassed``) and how many times its teardown was reported.

Plugins are not auto-loaded (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``; pexen's is
named with ``-p pexen``): loading every installed plugin costs half a second
a run. One test checks that the entry point loads it without being asked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

RUN_TIMEOUT = 120.0  # seconds: only so that a hang fails the test

OUTCOMES_PLUGIN = textwrap.dedent('''
    import json

    _seen = {}

    def _record(config):
        return not hasattr(config, "workerinput")  # the controller only

    def pytest_configure(config):
        config._outcomes_record = _record(config)

    def pytest_runtest_logreport(report):
        entry = _seen.setdefault(report.nodeid, {"phases": [], "xfail": False})
        entry["phases"].append((report.when, report.outcome))
        if hasattr(report, "wasxfail"):
            entry["xfail"] = True

    def _outcome(entry):
        phases = dict(entry["phases"])
        if any(o == "failed" for w, o in entry["phases"] if w != "call"):
            return "error"
        call = phases.get("call")
        if entry["xfail"]:
            return "xfailed" if call in ("skipped", None) else "xpassed"
        if call is None:
            return "skipped" if "skipped" in phases.values() else "error"
        return call

    def pytest_unconfigure(config):
        if getattr(config, "_outcomes_record", False):
            out = {}
            for nodeid, entry in _seen.items():
                teardowns = sum(w == "teardown" for w, _ in entry["phases"])
                out[nodeid] = {"outcome": _outcome(entry), "teardowns": teardowns}
            with open("outcomes.json", "w") as f:
                json.dump(out, f, indent=1, sort_keys=True)
''')


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without our own pytest's traces, plus *extra*."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "PEXEN_"))}
    env.update(extra)
    return env


def write_suite(root: Path, files: dict[str, str]) -> None:
    """Write *files* (name -> source, dedented) below *root*, and the plugin."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "outcomes_plugin.py").write_text(OUTCOMES_PLUGIN)


def run_pytest(
    root: Path, *args: str, env: dict[str, str] | None = None,
    autoload: bool = False, timeout: float = RUN_TIMEOUT,
) -> tuple[subprocess.CompletedProcess, dict]:
    """Run pytest in *root* with *args*; return the process and its outcomes."""
    outcomes = root / "outcomes.json"
    if outcomes.exists():
        outcomes.unlink()
    environ = clean_env() if env is None else env
    if not autoload:
        environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        args = ("-p", "pexen", *args)
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(root), environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "outcomes_plugin", *args],
        cwd=root, env=environ, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    found = json.loads(outcomes.read_text()) if outcomes.exists() else {}
    return proc, found


def outcomes_of(found: dict) -> dict[str, str]:
    """Node id -> outcome."""
    return {nodeid: entry["outcome"] for nodeid, entry in found.items()}

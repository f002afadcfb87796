"""Sphinx configuration of pexen's documentation site, built from docs/*.md.

Build it strictly (any warning fails), as .ci/run does:
``python -m sphinx -E -W --keep-going -n -b html docs docs/_build/html``.
"""

import sys
from pathlib import Path

import pexen

sys.path.insert(0, str(Path(__file__).parent / "_ext"))  # pexen_docs

project = "pexen"
author = "the pexen developers"
copyright = "the pexen developers"
release = version = pexen.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinxcontrib.mermaid",
    "sphinx_copybutton",
    "pexen_docs",
]
exclude_patterns = ["_build", "_ext"]

# Markdown: GitHub-style heading anchors, so links such as
# task-meta.md#controlled-failure work on the site and on a repository page.
myst_heading_anchors = 4
myst_fence_as_directive = ["mermaid"]

# Options such as --pool stay as typed (no en dash), quotes as written.
smartquotes = False

# The API reference: signatures with their type hints, members in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# Where the command-line reference finds the real parser ("module:function").
pexen_cli_parser = "pexen.cli._parser:build_parser"

# Strict build (-n): every cross-reference must resolve, except to what the site
# cannot link to. The standard library's objects (type hints such as
# collections.abc.Iterable) would need intersphinx, which fetches Python's
# inventory over the network at build time; pexen's private names (pool
# records such as _pools.base.Job, a private base class) are shown as text,
# as the API promises nothing about them.
STDLIB = (
    r"(abc|collections\.abc|concurrent\.futures|os|types|typing|_pickle|"
    r"subprocess|sqlite3|threading)\..*"
)
nitpick_ignore_regex = [
    ("py:.*", STDLIB),
    ("py:class", "TracebackType"),
    ("py:.*", r"pexen\.(.*\.)?_.*"),
    ("py:class", r"pexen\..*\.[A-Z]"),  # type variables (F, T) of generic helpers
    ("py:.*", "default_start_method|AutoSpare|AutoWorkers"),  # private, in docstrings
]

html_theme = "furo"
html_title = f"pexen {release}"
copybutton_prompt_text = "$ "

"""The ``pexen`` command line: ``pexen run``, ``pexen list``, ``pexen graph``.

``main(argv=None)`` runs the command and returns its exit status (what each
means: ``_exit``); the console script and ``python -m pexen`` call it.
"""

from __future__ import annotations

from pexen.cli._main import main

__all__ = ["main"]

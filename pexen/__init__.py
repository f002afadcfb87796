"""pexen: run Python callables in the right order, in parallel.

``pexen.sched`` holds the scheduler, task metadata and worker pools;
``import pexen`` itself stays light (no heavy engine is imported).
"""

from __future__ import annotations

from pexen._errors import PexenError, PexenWarning

#: The version of pexen: the one place it is written (pyproject.toml reads it,
#: ``pexen --version`` prints it).
__version__ = "0.1.0"
__all__ = ["PexenError", "PexenWarning", "__version__"]

PexenError.__module__ = PexenWarning.__module__ = __name__  # print as pexen.PexenError

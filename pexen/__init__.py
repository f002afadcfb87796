"""pexen: run Python callables in the right order, in parallel.

``pexen.sched`` holds the scheduler, task metadata and worker pools;
``pexen.map`` and ``pexen.starmap`` run one function over many inputs, and
``pexen.amap`` and ``pexen.astarmap`` do so in async code.
``import pexen`` itself stays light: what these need is imported on first use.
"""

from __future__ import annotations

from pexen._errors import PexenError, PexenWarning

#: The version of pexen: the one place it is written (pyproject.toml reads it,
#: ``pexen --version`` prints it).
__version__ = "0.1.0"
__all__ = [
    "PexenError",
    "PexenWarning",
    "__version__",
    "amap",
    "astarmap",
    "map",
    "starmap",
]

_LAZY = {name: "pexen._map" for name in ("map", "starmap", "amap", "astarmap")}

PexenError.__module__ = PexenWarning.__module__ = __name__  # print as pexen.PexenError


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

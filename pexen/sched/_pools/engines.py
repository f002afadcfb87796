"""Import the distributed engines lazily, saying which extra installs them.

``import pexen`` and ``import pexen.sched.pool`` import neither Dask nor
mpi4py; a pool imports its engine when it is built, through these helpers.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from types import ModuleType

from pexen.sched._errors import PoolError


def _missing(pool: str, engine: str, extra: str, exc: BaseException) -> PoolError:
    return PoolError(
        f"{pool} needs {engine}, which cannot be imported ({exc}); "
        f"install it with: pip install 'pexen[{extra}]'"
    )


def import_distributed() -> ModuleType:
    """Return ``distributed``; raise PoolError naming the ``dask`` extra."""
    try:
        import distributed
    except ImportError as exc:
        raise _missing("DaskWorkerPool", "Dask distributed", "dask", exc) from exc
    return distributed


def import_mpi_futures() -> ModuleType:
    """Return ``mpi4py.futures`` with a working MPI; raise PoolError naming ``mpi``.

    mpi4py loads the MPI library when ``mpi4py.MPI`` is imported: a missing
    library is a RuntimeError there, not an ImportError.
    """
    try:
        import mpi4py.futures
        import mpi4py.MPI  # loads the MPI library: fails without one
    except (ImportError, RuntimeError) as exc:
        raise _missing(
            "MPIWorkerPool", "mpi4py and an MPI library", "mpi", exc
        ) from exc
    return mpi4py.futures


def ensure_mpiexec_on_path() -> None:
    """Put this environment's ``mpiexec`` on PATH if PATH has none.

    An MPI process started without ``mpiexec`` (a "singleton") starts one
    from PATH to spawn workers. The ``mpich`` wheel installs it into the
    environment's scripts directory, which is not on PATH when a virtualenv's
    python is run without activating it.
    """
    if shutil.which("mpiexec"):
        return
    scripts = sysconfig.get_path("scripts")
    if os.access(os.path.join(scripts, "mpiexec"), os.X_OK):
        path = os.environ.get("PATH")
        os.environ["PATH"] = f"{scripts}{os.pathsep}{path}" if path else scripts

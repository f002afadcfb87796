"""The root of pexen's exception and warning tree."""

from __future__ import annotations


class PexenError(Exception):
    """Base class of every error pexen raises on its own account."""


class PexenWarning(UserWarning):
    """Something worth a user's attention that does not stop the run.

    Issued for a tag that is provided but required by no task, and for tasks
    left unrun at the end of a run (see ``Sched.skipped``).
    """

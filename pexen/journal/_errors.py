"""The journal's error."""

from __future__ import annotations

from pexen._errors import PexenError


class JournalError(PexenError, ValueError):
    """Raised for a journal that cannot be used: not a journal, corrupt, of a
    newer format, missing when one is needed, or two tasks of a run that it
    could not tell apart. The message names the file or the tasks, and what
    to do."""

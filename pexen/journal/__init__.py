"""The journal: a run recorded in SQLite as it happens, and resumed from it.

``Journal(path)`` is an observer for ``Sched.observe``; ``Sched.run(resume=
journal)`` carries over the tasks that passed in the journal's last run. A
task is known across runs by its identity: ``SchedMeta.name``, else its call
path, else its module and qualified name (``task_identity``).
"""

from __future__ import annotations

from pexen.journal._errors import JournalError
from pexen.journal._identity import task_identity
from pexen.journal._journal import Journal
from pexen.journal._resume import Decision, ResumePlan

__all__ = ["Decision", "Journal", "JournalError", "ResumePlan", "task_identity"]

for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

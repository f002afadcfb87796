"""Factories: turn structures people already have into tasks (SPEC §6).

``FilesystemFactory`` makes a task of every executable file below a
directory, ``ModuleFactory`` of the annotated functions of a module, and
``ModTreeFactory`` of those of a whole package. Every task records its call
path (``get_callpath``); what could not be collected is kept in the
factory's ``errors`` list as :class:`CollectionError` objects.
"""

from __future__ import annotations

from pexen.factory._base import BaseFactory, get_callpath
from pexen.factory._errors import CollectionError, HeaderError
from pexen.factory._filesystem import FilesystemFactory
from pexen.factory._module import ModTreeFactory, ModuleFactory

__all__ = [
    "BaseFactory",
    "CollectionError",
    "FilesystemFactory",
    "HeaderError",
    "ModTreeFactory",
    "ModuleFactory",
    "get_callpath",
]

"""The ``# pexen:`` metadata header of an executable file.

Syntax (see docs/factories.md):

* Only the first ``HEADER_LINES`` lines of the file are read; a file with a
  NUL byte in its first ``HEADER_BYTES`` bytes is binary and has no header.
* A header line matches ``^[ \\t]*#[ \\t]*pexen:`` (case-sensitive); what
  follows is a whitespace-separated list of ``key=value`` items, with no
  spaces around ``=``. Other lines are ignored.
* Keys: ``requires``, ``provides``, ``claims``, ``uses`` take comma-separated
  tags (no whitespace, ``,`` or ``=`` inside a tag, none empty) and add up
  over items and lines; ``priority`` takes an integer and ``timeout`` a
  positive number of seconds (``30``, ``2.5``), each given at most once.
* Anything else is a :class:`HeaderError` naming the file and line.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pexen.factory._errors import HeaderError

HEADER_LINES = 20
HEADER_BYTES = 64 * 1024
TAG_KEYS = ("requires", "provides", "claims", "uses")
KEYS = (*TAG_KEYS, "priority", "timeout")
SYNTAX = (
    "write '# pexen: key=value ...' with keys requires, provides, claims, uses "
    "(comma-separated tags), priority (an integer), timeout (seconds)"
)

_MARKER = re.compile(rb"[ \t]*#[ \t]*pexen:")
_TAG = re.compile(r"[^\s,=]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def read_header(path: str) -> dict[str, Any]:
    """Return the metadata fields *path* declares in its header ({} if none)."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if b"\0" in head:
        return {}
    fields: dict[str, Any] = {}
    for lineno, raw in enumerate(head.split(b"\n")[:HEADER_LINES], start=1):
        marker = _MARKER.match(raw)
        if marker:
            body = raw[marker.end() :].decode("utf-8", errors="replace")
            _parse_line(body, fields, path, lineno)
    return fields


def _parse_line(body: str, fields: dict[str, Any], path: str, lineno: int) -> None:
    """Add the items of one header line to *fields*."""

    def fail(problem: str) -> HeaderError:
        return HeaderError(path, lineno, problem)

    items = body.split()
    if not items:
        raise fail(f"'# pexen:' with nothing after it; {SYNTAX}")
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise fail(f"{item!r} is not key=value; {SYNTAX}")
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(
                f"unknown key {key!r}{hint}; allowed keys: {', '.join(KEYS)}"
            )
        if not value:
            raise fail(f"{key}= has no value")
        if key in TAG_KEYS:
            tags = value.split(",")
            for tag in tags:
                if not _TAG.fullmatch(tag):
                    raise fail(
                        f"{item!r}: {tag!r} is not a tag (tags are separated by "
                        "commas and contain no whitespace, ',' or '=')"
                    )
            fields.setdefault(key, set()).update(tags)
            continue
        if key in fields:
            raise fail(f"{key} is given twice")
        if key == "priority":
            if not _INTEGER.fullmatch(value):
                raise fail(f"priority={value!r}: expected an integer")
            fields[key] = int(value)
        else:
            if not _SECONDS.fullmatch(value) or float(value) <= 0:
                raise fail(
                    f"timeout={value!r}: expected a positive number of seconds"
                )
            seconds = float(value)
            fields[key] = int(seconds) if seconds.is_integer() else seconds

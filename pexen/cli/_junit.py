"""``--junit-xml``: the run as JUnit XML, the report format CI systems read.

One ``<testsuite>`` (inside ``<testsuites>``) with the counts, wall time and
start time; one ``<testcase>`` per task, named by its call path, with the
``classname`` its call path's parent in dots (``suite.test_db``) so CI
systems group them by module or directory. A failure carries its message and
traceback (for an executable: its exit and the tail of its output), a skipped
task its reason, captured output goes to ``<system-out>``. A file that could
not be collected becomes a testcase with an ``<error>``.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from pexen.cli._console import size
from pexen.cli._report import (
    FAILED,
    SKIPPED,
    Outcome,
    RunReport,
    command_text,
    failure_message,
    failure_traceback,
    tail,
)

# XML 1.0 cannot hold these characters even escaped; show them as \xNN.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
OUTPUT_TAIL_LINES = 50  # of an executable's output, in the failure's text
OUTPUT_TAIL_CHARS = 10_000  # the whole output is in system-out


def xml_text(text: str) -> str:
    """Make *text* safe to put in an XML document."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _classname(name: str) -> str:
    parent = name.rpartition("/")[0]
    return parent.replace("/", ".") if parent else "pexen"


def _output_tail(output: str) -> str:
    """The end of an executable's output for its failure's text, saying what
    was left out (``<system-out>`` has all of it)."""
    end = tail(output, OUTPUT_TAIL_LINES, OUTPUT_TAIL_CHARS)
    if end.cut_by_size:
        more = f"[... {size(end.bytes_cut)} cut: all of it is in system-out ...]\n"
    elif end.bytes_cut:
        more = f"[{end.n_lines - len(end.lines)} earlier lines in system-out]\n"
    else:
        more = ""
    return more + "\n".join(end.lines)


def _testcase(suite: ET.Element, outcome: Outcome) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=xml_text(outcome.name),
        classname=xml_text(_classname(outcome.name)),
        time=f"{outcome.duration or 0.0:.3f}",
    )
    if outcome.status == FAILED:
        assert outcome.excinfo is not None
        cmd = outcome.command
        if cmd is not None:
            body = f"command: {command_text(cmd)}\n{failure_message(outcome)}"
            if outcome.output:
                body += "\n\noutput:\n" + _output_tail(outcome.output)
        else:
            body = failure_traceback(outcome)
        failure = ET.SubElement(
            case,
            "failure",
            message=xml_text(failure_message(outcome)),
            type=xml_text(outcome.excinfo.type.__qualname__),
        )
        failure.text = xml_text(body)
    elif outcome.status == SKIPPED:
        ET.SubElement(case, "skipped", message=xml_text(outcome.reason or ""))
    if outcome.output:
        ET.SubElement(case, "system-out").text = xml_text(outcome.output)


def build_tree(report: RunReport) -> ET.ElementTree:
    """The JUnit XML document of *report*."""
    counts = report.counts
    attrs = {
        "name": "pexen",
        "tests": str(len(report.outcomes) + len(report.collect_errors)),
        "failures": str(counts[FAILED]),
        "errors": str(len(report.collect_errors)),
        "skipped": str(counts[SKIPPED]),
        "time": f"{report.wall_time:.3f}",
    }
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", attrs)
    if report.started is not None:
        suite.set("timestamp", report.started.isoformat(timespec="seconds"))
    suite.set("hostname", xml_text(socket.gethostname()))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="pool", value=xml_text(report.pool))
    for error in report.collect_errors:
        case = ET.SubElement(
            suite,
            "testcase",
            name=xml_text(str(error.path)),
            classname="pexen.collect",
            time="0.000",
        )
        exc = error.exc
        node = ET.SubElement(
            case,
            "error",
            message=xml_text(f"cannot collect: {type(exc).__name__}: {exc}"),
            type=xml_text(type(exc).__qualname__),
        )
        node.text = xml_text(error.traceback)
    for outcome in report.outcomes:
        _testcase(suite, outcome)
    ET.indent(root)
    return ET.ElementTree(root)


def check_writable(path: Path) -> None:
    """Raise ``OSError`` if the report could not be written at *path*.

    Called before the run, so a wrong path costs nothing: the missing
    directories are made (as writing would make them), and the file is
    opened for appending, then removed again unless it was there before.
    """
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    # mkdir would say "File exists" of a file in the way: name it for what it is
    above = next((parent for parent in path.parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(above))
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    with open(path, "a", encoding="utf-8"):
        pass
    if not existed:
        path.unlink()


def write_junit(path: str | Path, report: RunReport) -> None:
    """Write *report* to *path* as JUnit XML."""
    build_tree(report).write(path, encoding="utf-8", xml_declaration=True)

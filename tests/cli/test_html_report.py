"""``pexen report --html``: the page, opened in a real headless Chromium.

Chromium (Debian's package; ``.ci/run`` installs it) loads the page from
disk, prints whatever reaches the page's console to its log, and takes a
screenshot, whose pixels must show the chart's bars.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from pexen.cli import main
from pexen.cli._html import COLOURS, CRITICAL
from tests.journal._schedule import record

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")

Image = pytest.importorskip("PIL.Image")


def browse(page, screenshot, tmp_path):
    """Open *page* in headless Chromium, save a screenshot; return what the
    page wrote to its console (one line per message)."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", "--window-size=1200,700",
         f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    assert screenshot.exists(), proc.stderr
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def rgb(colour):
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def test_the_console_check_sees_errors(tmp_path):
    """The check below is not vacuous: a page that errs is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom');"
                    "no_such_function();</script></body></html>")
    console = browse(page, tmp_path / "bad.png", tmp_path)
    assert any("boom" in line for line in console)
    assert any("no_such_function is not defined" in line for line in console)


def test_the_page_loads_cleanly_and_shows_the_chart(capsys, tmp_path):
    journal, page = tmp_path / "j.db", tmp_path / "report.html"
    shot = tmp_path / "r.png"
    record(journal)
    assert main(["report", str(journal), "--html", str(page)]) == 0
    assert f"HTML report written to {page}" in capsys.readouterr().out
    html = page.read_text()
    # self-contained: nothing to fetch (the SVG namespace is a name, not a fetch)
    assert not re.search(r"<script|<link|<img|<iframe|src=|@import|url\(", html)
    assert re.findall(r"https?://[^\s\"']+", html) == ["http://www.w3.org/2000/svg"]
    assert "RuntimeError: bad broke" in html  # the failure, with its traceback
    assert "report: requires tag &#x27;r&#x27;" in html  # the task not run
    assert browse(page, shot, tmp_path) == []
    with Image.open(shot) as image:
        colours = {colour: n for n, colour in image.convert("RGB").getcolors(1 << 24)}
    counts = {name: colours.get(rgb(colour), 0)
              for name, colour in [*COLOURS.items(), ("critical", CRITICAL)]}
    # bars of 1 to 3 s on a 6 s axis 900 px wide, 18 px high: thousands of pixels
    assert counts["passed"] > 5000, counts
    assert counts["failed"] > 1000, counts
    assert counts["critical"] > 500, counts


def test_an_unwritable_html_path_is_a_usage_error(capsys, tmp_path):
    journal = tmp_path / "j.db"
    record(journal)
    status = main(["report", str(journal), "--html", str(tmp_path)])
    assert status == 2
    assert "cannot write the page there" in capsys.readouterr().err

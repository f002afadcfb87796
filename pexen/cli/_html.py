"""``pexen report FILE --html OUT``: the report of a run as one HTML page.

Self-contained: styles inline, the Gantt chart an inline SVG drawn here, no
script and nothing fetched when the page is viewed. The chart has a row per
worker (``_tracks``: a pool that names no worker gets lanes) and a bar per
task attempt, green passed, red failed, the critical path outlined; each bar
says its task, times and outcome on hover (an SVG ``<title>``).
"""

from __future__ import annotations

import math
from html import escape

from pexen._tracks import Tracks
from pexen.cli._console import duration, plural
from pexen.cli._history import run_counts
from pexen.cli._journal_report import Analysis, path_length, title, took
from pexen.journal._analysis import ran
from pexen.journal._store import FAILED, PASSED, RETRIED

LABEL_WIDTH = 180
CHART_WIDTH = 900
ROW_HEIGHT = 24
AXIS_HEIGHT = 28
COLOURS = {"passed": "#43a047", "failed": "#e53935", "retried": "#fb8c00"}
CRITICAL = "#1a237e"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 0.85em; }
.legend span { display: inline-block; margin-right: 1.5em; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
          vertical-align: middle; }
svg text { font-size: 11px; }
"""


def _tick(span: float) -> float:
    """A round step that cuts *span* seconds into 4 to 10 parts."""
    if span <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(span / 5))
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 10:
            return step * factor
    return step * 10


def gantt(analysis: Analysis) -> str:
    """The SVG chart of the run's attempts over time, by worker."""
    done = ran(analysis.attempts)
    start0 = analysis.run.started
    span = max(analysis.span, max((a.end - start0 for a in done if a.end), default=0))
    span = span or 1.0
    scale = CHART_WIDTH / span
    tracks = Tracks()
    placed = []
    for attempt in done:
        assert attempt.start is not None and attempt.end is not None
        placed.append((tracks.place(attempt.worker, attempt.start, attempt.end),
                       attempt))
    rows = {tid: name for tid, name in tracks.new}
    order = {tid: index for index, tid in enumerate(sorted(
        rows, key=lambda tid: (rows[tid].startswith("lane "), tid)
    ))}
    critical = {step.attempt.id for step in analysis.path}
    height = AXIS_HEIGHT + ROW_HEIGHT * max(len(rows), 1) + 4
    width = LABEL_WIDTH + CHART_WIDTH + 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" id="gantt" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="Gantt chart of the tasks by worker">']
    step = _tick(span)
    n_ticks = int(span / step + 1e-9)
    for i in range(n_ticks + 1):
        x = LABEL_WIDTH + i * step * scale
        out.append(f'<line x1="{x:.1f}" y1="{AXIS_HEIGHT - 6}" x2="{x:.1f}" '
                   f'y2="{height}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{AXIS_HEIGHT - 10}" text-anchor="middle">'
                   f'{escape(duration(i * step))}</text>')
    for tid, name in rows.items():
        y = AXIS_HEIGHT + order[tid] * ROW_HEIGHT
        out.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + ROW_HEIGHT / 2 + 4:.1f}" '
                   f'text-anchor="end">{escape(name)}</text>')
    for tid, attempt in placed:
        assert attempt.start is not None
        x = LABEL_WIDTH + (attempt.start - start0) * scale
        w = max(took(attempt) * scale, 1.0)
        y = AXIS_HEIGHT + order[tid] * ROW_HEIGHT + 3
        outline = (f' stroke="{CRITICAL}" stroke-width="3" class="bar critical"'
                   if attempt.id in critical else ' class="bar"')
        tip = (f"{attempt.name}: {attempt.outcome}, {duration(took(attempt))}, "
               f"from {duration(attempt.start - start0)}")
        out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
                   f'height="{ROW_HEIGHT - 6}" rx="2" '
                   f'fill="{COLOURS.get(attempt.outcome, "#888")}"{outline}>'
                   f'<title>{escape(tip)}</title></rect>')
        if w > 8 * min(len(attempt.name), 4):  # room for a few characters at least
            n_chars = int(w / 7)
            label = attempt.name if len(attempt.name) <= n_chars else (
                attempt.name[:max(n_chars - 1, 1)] + "…"
            )
            out.append(f'<text x="{x + 4:.1f}" y="{y + ROW_HEIGHT / 2 + 1:.1f}" '
                       f'fill="#fff" pointer-events="none">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _table(headers: list[str], rows: list[list[str]], numeric: int) -> str:
    """A table whose first *numeric* columns are numbers (cells are escaped)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{escape(cell)}</td>' if i < numeric
            else f"<td>{escape(cell)}</td>"
            for i, cell in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(analysis: Analysis, path: str) -> str:
    """The whole page."""
    heading = title(analysis, path)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(heading)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(heading)}</h1>",
        f'<p id="summary">{escape(run_counts(analysis.run))}</p>',
        "<h2>Workers over time</h2>",
        '<p class="legend">'
        + "".join(
            f'<span><i class="swatch" style="background:{colour}"></i>'
            f"{escape(outcome)}</span>"
            for outcome, colour in COLOURS.items()
        )
        + f'<span><i class="swatch" style="border:3px solid {CRITICAL}"></i>'
        "critical path</span></p>",
        gantt(analysis),
    ]
    if analysis.path:
        parts.append(f"<h2>Critical path: {escape(duration(path_length(analysis)))} "
                     f"of {escape(duration(analysis.span))}</h2>")
        parts.append(_table(
            ["time", "task", "after the one above"],
            [[duration(took(step.attempt)), step.attempt.name, step.cause]
             for step in analysis.path],
            1,
        ))
    if analysis.slowest:
        parts.append(f"<h2>Slowest {len(analysis.slowest)}</h2>")
        parts.append(_table(["time", "task"],
                            [[duration(took(a)), a.name] for a in analysis.slowest], 1))
    if analysis.workers:
        parts.append("<h2>Workers</h2>")
        parts.append(_table(
            ["busy", "utilisation", "tasks", "worker"],
            [[duration(u.busy), f"{u.utilisation:.0%}", str(u.n_tasks), u.worker]
             for u in analysis.workers],
            3,
        ))
    if analysis.lock_waits:
        parts.append("<h2>Waiting for locks</h2>")
        parts.append(_table(
            ["waited", "tasks", "resource"],
            [[duration(w.waited), str(w.n_tasks), w.resource]
             for w in analysis.lock_waits],
            2,
        ))
    failures = analysis.failures
    parts.append(f"<h2>Failures ({len(failures)})</h2>" if failures
                 else "<h2>Failures</h2><p>none</p>")
    for attempt in failures:
        parts.append(f"<h3>{escape(attempt.name)}</h3>")
        text = attempt.traceback or attempt.exc_type or ""
        parts.append(f"<pre>{escape(text)}</pre>")
    skipped = [a for a in analysis.attempts
               if a.outcome not in (PASSED, FAILED, RETRIED) and a.reason]
    if skipped:
        parts.append(f"<h2>Not run ({plural(len(skipped), 'task')})</h2><ul>")
        parts += [f"<li>{escape(a.name)}: {escape(a.reason or '')}</li>"
                  for a in skipped]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

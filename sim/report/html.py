"""``report.html``: one self-contained file to share a result with someone who will not run
a terminal.

The page holds the verdict and notes (coloured as on screen), every table with units in
its headers, every plot embedded as a ``data:`` URI (PNG or SVG, so the file opens with no
network and no sibling files), the experiment as given and as resolved, the seed, the
versions and when it was written. It has no scripts and no external references (no
fonts, no stylesheets, no images by URL): what a browser shows is this file alone.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.core.files import atomic_write
from sim.report.document import Line, Report, Table, dumps, format_cell, header

__all__ = ["render_html", "write_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:2em auto;max-width:1200px;padding:0 1em;color:#1a1a1a;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}
p{margin:.3em 0}.title{font-weight:bold;font-size:1.1em;margin-top:1em}
.subtitle{color:#444;margin-top:0}
.ok{color:#11702f;font-weight:bold}.bad{color:#b3261e;font-weight:bold}
.warn{color:#8a5a00}.dim,.note{color:#555}
.verdict{border-left:4px solid #888;padding:.4em .8em;background:#f7f7f7;margin:.8em 0}
table{border-collapse:collapse;margin:.5em 0 1em 0;font-size:.92em}
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;vertical-align:top}
th{background:#f0f0f0;text-align:left}td.num,th.num{text-align:right;white-space:nowrap}
tr.dim td{color:#666}caption{text-align:left;font-weight:bold;padding:.3em 0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em;max-height:40em}
details{margin:.6em 0}summary{cursor:pointer;font-weight:bold}
footer{margin-top:2em;color:#666;font-size:.85em}
"""

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
         ".jpeg": "image/jpeg"}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table_html(table: Table) -> str:
    out = [f'<table id="table-{_e(table.key)}"><caption>{_e(table.title)}</caption><thead><tr>']
    for c in table.columns:
        out.append(f'<th class="{"num" if c.numeric else ""}">{_e(header(c))}</th>')
    out.append("</tr></thead><tbody>")
    for row in table.rows:
        out.append(f'<tr class="{"dim" if row.get("_dim") else ""}">')
        for c in table.columns:
            out.append(f'<td class="{"num" if c.numeric else ""}">'
                       f'{_e(format_cell(row.get(c.key), c.kind))}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    if table.note:
        out.append(f'<p class="note">{_e(table.note)}</p>')
    return "".join(out)


def _data_uri(path: Path) -> str | None:
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _pretty(obj: Any) -> str:
    return dumps(obj, indent=2)


def render_html(report: Report, folder: Path | None = None,
                summary: Mapping[str, Any] | None = None) -> str:
    """The report as one HTML page; plots are read from ``folder`` and embedded;
    ``summary`` (summary.json's content) supplies the experiment and versions."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             # no network: forbid every external load, allow only inline data
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
             'img-src data:; style-src \'unsafe-inline\'">',
             f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(report.title)}</h1>"]
    in_verdict = False
    for i, block in enumerate(report.blocks):
        if isinstance(block, Line) and i == 0 and block.level == "title" \
                and block.text.startswith(report.title):
            rest = block.text[len(report.title):].strip()  # the heading says the rest
            if rest:
                parts.append(f'<p class="subtitle">{_e(rest)}</p>')
            continue
        if isinstance(block, Line):
            if block.level == "title" and block.text.strip().lower() == "verdict":
                parts.append('<section class="verdict" id="verdict"><h2>Verdict</h2>')
                in_verdict = True
                continue
            if in_verdict and block.level not in ("ok", "bad", "warn", "info"):
                parts.append("</section>")
                in_verdict = False
            parts.append(f'<p class="{_e(block.level)}">{_e(block.text)}</p>')
        else:
            if in_verdict:
                parts.append("</section>")
                in_verdict = False
            parts.append(_table_html(block))
    if in_verdict:
        parts.append("</section>")
    if report.plots:
        parts.append("<h2>Plots</h2>")
        for plot in report.plots:
            uri = _data_uri(Path(folder) / plot.path) if folder is not None else None
            if uri is None:
                parts.append(f'<p class="warn">Plot {_e(plot.path)} is missing.</p>')
                continue
            parts.append(f'<figure><img src="{uri}" alt="{_e(plot.caption)}" '
                         f'data-file="{_e(plot.path)}"><figcaption>{_e(plot.caption)} '
                         f"({_e(plot.path)})</figcaption></figure>")
    if summary:
        parts.append("<h2>Experiment</h2>")
        if "source" in summary:
            parts.append(f"<p>Source: <code>{_e(summary.get('source'))}</code>; seed "
                         f"{_e(summary.get('seed'))}; {_e(summary.get('replications'))} "
                         "replications.</p>")
        for key, label in (("experiment", "As given"), ("resolved", "As resolved")):
            if key in summary:
                parts.append(f"<details><summary>{label}</summary><pre>"
                             f"{_e(_pretty(summary[key]))}</pre></details>")
        versions = summary.get("versions")
        if isinstance(versions, Mapping):
            parts.append("<table id='versions'><caption>Versions</caption><tbody>")
            for k, v in versions.items():
                parts.append(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>")
            parts.append("</tbody></table>")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>Written by capsim ({_e(report.command)}) on {stamp}. "
                 "This page is self-contained: plots are embedded; no network access is "
                 "needed.</footer></body></html>")
    return "\n".join(parts) + "\n"


def write_html(report: Report, folder: Path, summary: Mapping[str, Any] | None = None,
               name: str = "report.html") -> Path:
    """Write ``folder/name`` (atomically) and return its path."""
    path = Path(folder) / name
    text = render_html(report, folder, summary)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


def load_json(path: Path) -> Any:
    """A JSON file, reading bare NaN (written by older capsim versions) as None."""
    return json.loads(Path(path).read_text(), parse_constant=lambda _c: None)

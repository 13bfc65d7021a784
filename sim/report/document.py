"""One report, many formats: what a command found, as text, JSON, CSV, Markdown or HTML.

A command builds a :class:`Report` (a title, lines of verdict and notes, tables of
numbers with their units and 95% intervals, plots, and a machine-readable ``data``
payload) and renders it once per format:

* :func:`render_terminal`: rich tables that never cut a number. A table that fits the
  console is printed whole; one that does not is *stacked* (one block per row, one line
  per column), so no cell is ever abbreviated with an ellipsis. When the output is not a
  terminal (a pipe or a file) nothing is wrapped at all: every row is one full line.
* :func:`to_json`: strict JSON (NaN and infinities become ``null``; :func:`strict`).
* :func:`to_csv`: one long table, a row per cell: ``table, row, label, column, unit,
  value, ci95_low, ci95_high``; parseable by any CSV reader.
* :func:`to_markdown`: GitHub-flavoured Markdown (headings, pipe tables).

Cells are plain text, numbers or :class:`Value` (a mean with its 95% interval). A
column has a *kind* that fixes its unit, stated in the header, so that cells hold only
numbers: ``usd`` (US dollars), ``seconds``, ``share`` (printed in %), ``count``, ``gpus``,
``tokens`` or ``number`` (with an explicit ``unit``). Assumption: one unit per column;
seconds are printed with three significant digits however large, so that a column holding
both 0.28 s and 9,290 s stays in one unit.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

__all__ = ["Value", "Column", "Table", "Line", "Plot", "Report", "strict", "to_json",
           "to_csv", "to_markdown", "render_terminal", "format_cell", "header", "KIND_UNITS",
           "FORMATS"]

FORMATS = ("table", "json", "csv", "markdown")
"""The ``--format`` choices of every command that prints a report."""

Kind = Literal["text", "usd", "seconds", "share", "count", "gpus", "tokens", "number"]
Level = Literal["title", "info", "ok", "warn", "bad", "note", "dim"]

KIND_UNITS: dict[str, str] = {"usd": "$", "seconds": "s", "share": "%", "count": "",
                              "gpus": "GPUs", "tokens": "tokens", "number": "", "text": ""}
"""The unit each column kind states in its header."""

DASH = "-"


def _finite(x: Any) -> bool:
    return (isinstance(x, int | float) and not isinstance(x, bool)
            and math.isfinite(float(x)))


@dataclass(frozen=True)
class Value:
    """A mean and its 95% interval (``low``/``high`` None or NaN: no interval)."""

    mean: float | None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, entry: Mapping[str, Any] | None, scale: float = 1.0) -> Value:
        """From a summary entry (``{mean, ci95_low, ci95_high}``), times ``scale``."""
        if not entry:
            return cls(None)

        def get(k: str) -> float | None:
            x = entry.get(k)
            return float(x) * scale if _finite(x) else None
        return cls(get("mean"), get("ci95_low"), get("ci95_high"))

    @property
    def defined(self) -> bool:
        return _finite(self.mean)

    @property
    def interval(self) -> bool:
        return self.defined and _finite(self.low) and _finite(self.high)


@dataclass(frozen=True)
class Column:
    """A table column: its key (JSON/CSV), its header label and the kind of its numbers.

    ``unit`` overrides the kind's unit in the header (e.g. ``$/month``, ``/month``).
    """

    key: str
    label: str
    kind: Kind = "text"
    unit: str | None = None

    @property
    def unit_text(self) -> str:
        return self.unit if self.unit is not None else KIND_UNITS[self.kind]

    @property
    def numeric(self) -> bool:
        return self.kind != "text"


def header(col: Column) -> str:
    """``Label (unit)``, or the label alone when the kind has no unit."""
    unit = col.unit_text
    return f"{col.label} ({unit})" if unit else col.label


@dataclass
class Table:
    """A titled table: columns and rows (``{column key: str | float | Value | None}``)."""

    key: str
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None


@dataclass(frozen=True)
class Line:
    """A line of text: a verdict, a warning, a note. ``level`` sets its colour."""

    text: str
    level: Level = "info"


@dataclass(frozen=True)
class Plot:
    """A plot file of the results folder, with a caption (the HTML report embeds it)."""

    path: str
    caption: str


Block = Table | Line


@dataclass
class Report:
    """Everything one command found, in the order a reader should see it."""

    command: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def line(self, text: str, level: Level = "info") -> None:
        self.blocks.append(Line(text, level))

    def table(self, table: Table) -> Table:
        self.blocks.append(table)
        return table

    @property
    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    @property
    def lines(self) -> list[Line]:
        return [b for b in self.blocks if isinstance(b, Line)]


# ----------------------------------------------------------------------- numbers


def _decimals_for(x: float, sig: int = 3) -> int:
    """Decimals that show ``x`` with ``sig`` significant digits (0 for |x| >= 10**sig)."""
    a = abs(x)
    if a == 0 or not math.isfinite(a):
        return 0
    return max(0, sig - 1 - int(math.floor(math.log10(a))))


def _number(x: float, kind: str) -> tuple[str, int]:
    """A value of ``kind`` in its column unit, and the decimals used."""
    if kind == "share":
        v = x * 100.0
        d = 1 if abs(v) >= 1 or v == 0 else _decimals_for(v, 2)
    elif kind == "usd":
        v = x
        d = 0 if abs(v) >= 100 else 2
    elif kind in ("gpus",) or (kind == "count" and float(x).is_integer() and abs(x) < 1e6):
        v = x
        d = 0 if float(x).is_integer() else 2
    elif kind in ("count", "tokens"):
        return _big(x), -1
    else:  # seconds, number
        v = x
        d = min(_decimals_for(v), 6)
    return f"{v:,.{d}f}", d


def _big(x: float) -> str:
    a = abs(x)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if a >= size:
            v = x / size
            return f"{v:.{2 if abs(v) < 10 else 1 if abs(v) < 100 else 0}f} {suffix}"
    return f"{x:,.0f}" if float(x).is_integer() or a >= 10 else f"{x:.2f}"


def _big_unit(x: float) -> tuple[float, str]:
    """The K/M/B/T size and suffix :func:`_big` prints ``x`` with (1, '' below 1,000)."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= size:
            return size, suffix
    return 1.0, ""


def _half_text(h: float, kind: str, decimals: int) -> str:
    if kind in ("count", "tokens") and decimals < 0:
        return _big(h)
    scale = 100.0 if kind == "share" else 1.0
    v = h * scale
    text = f"{v:,.{max(decimals, 0)}f}"
    if h > 0 and float(text.replace(",", "")) == 0:
        text = f"{v:.1g}"  # a tiny interval: one significant digit, never a false 0
    return text


def format_cell(value: Any, kind: str) -> str:
    """One cell's text: ``mean ± half`` when the interval is symmetric at the printed
    precision, else ``mean [low, high]``; ``-`` for a missing or undefined value."""
    if value is None:
        return DASH
    if isinstance(value, str):
        return value
    if kind == "text":
        return str(value)
    if not isinstance(value, Value):
        value = Value(float(value)) if _finite(value) else Value(None)
    if not value.defined:
        return DASH
    mean = float(value.mean)  # type: ignore[arg-type]
    text, decimals = _number(mean, kind)
    if not value.interval:
        return text
    low, high = float(value.low), float(value.high)  # type: ignore[arg-type]
    if high - low <= 0:
        return text
    below, above = mean - low, high - mean
    if decimals < 0:  # a count in K/M/B/T: the half-width in the mean's unit
        size, suffix = _big_unit(mean)
        if size > 1:
            d = 2 if abs(mean / size) < 10 else 1 if abs(mean / size) < 100 else 0
            h_below = _half_text(below / size, "number", d)
            h_above = _half_text(above / size, "number", d)
            if h_below == h_above:
                return f"{mean / size:.{d}f} ± {h_below} {suffix}"
            return f"{text} [{_number(low, kind)[0]}, {_number(high, kind)[0]}]"
    h_below = _half_text(below, kind, decimals)
    h_above = _half_text(above, kind, decimals)
    if h_below == h_above:
        return f"{text} ± {h_below}"
    return f"{text} [{_number(low, kind)[0]}, {_number(high, kind)[0]}]"


def _cell_text(row: Mapping[str, Any], col: Column) -> str:
    return format_cell(row.get(col.key), col.kind)


# ----------------------------------------------------------------------- strict JSON


def strict(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None (recursively; numpy scalars and
    arrays become Python numbers and lists; :class:`Value` a ``{mean, ci95_low,
    ci95_high}`` mapping), so that ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(obj, Value):
        return {"mean": strict(obj.mean), "ci95_low": strict(obj.low),
                "ci95_high": strict(obj.high)}
    if isinstance(obj, Mapping):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [strict(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):
        return strict(obj.tolist())
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):
        return strict(obj.item())
    return str(obj)


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (see :func:`strict`)."""
    return json.dumps(strict(obj), indent=indent, allow_nan=False)


def table_data(table: Table) -> dict[str, Any]:
    """A table as JSON data: columns with units, rows with numbers (null if missing)."""
    cols = [{"key": c.key, "label": c.label, "unit": c.unit_text or None, "kind": c.kind}
            for c in table.columns]
    rows = []
    for row in table.rows:
        out: dict[str, Any] = {}
        for c in table.columns:
            v = row.get(c.key)
            if isinstance(v, Value):
                out[c.key] = v if v.interval else v.mean
            else:
                out[c.key] = v
        if row.get("_dim"):
            out["_dim"] = True
        rows.append(out)
    # shares stay fractions in [0, 1] here; the header's % is for people
    return strict({"title": table.title, "columns": cols, "rows": rows, "note": table.note})


def to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (strict: no NaN); :func:`from_dict` reads it back."""
    doc = {"command": report.command, "title": report.title,
           "blocks": [{"line": {"level": b.level, "text": b.text}} if isinstance(b, Line)
                      else {"table": b.key} for b in report.blocks],
           "lines": [{"level": b.level, "text": b.text} for b in report.lines],
           "tables": {t.key: {"key": t.key, **table_data(t)} for t in report.tables},
           "plots": [{"path": p.path, "caption": p.caption} for p in report.plots],
           "data": report.data}
    return strict(doc)


def to_json(report: Report) -> str:
    """The report as strict JSON: title, verdict lines, tables and the command's data."""
    return dumps(to_dict(report))


def _cell_from(value: Any) -> Any:
    if isinstance(value, Mapping) and "mean" in value:
        return Value(value.get("mean"), value.get("ci95_low"), value.get("ci95_high"))
    return value


def from_dict(doc: Mapping[str, Any]) -> Report:
    """A report from :func:`to_dict`'s data (e.g. a results folder's report.json)."""
    report = Report(str(doc.get("command", "?")), str(doc.get("title", "")))
    tables = doc.get("tables") or {}
    for block in doc.get("blocks") or []:
        if "line" in block:
            report.line(block["line"]["text"], block["line"].get("level", "info"))
            continue
        t = tables[block["table"]]
        cols = [Column(c["key"], c["label"], c.get("kind", "text"), c.get("unit") or "")
                for c in t["columns"]]
        rows = [{k: _cell_from(v) for k, v in row.items()} for row in t["rows"]]
        report.table(Table(block["table"], t["title"], cols, rows, t.get("note")))
    report.plots = [Plot(p["path"], p["caption"]) for p in doc.get("plots") or []]
    report.data = dict(doc.get("data") or {})
    return report


# ----------------------------------------------------------------------- CSV


def to_csv(report: Report) -> str:
    """Every table cell as one CSV row (long format, fractions for shares)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "row", "label", "column", "unit", "value", "ci95_low", "ci95_high"])
    for t in report.tables:
        text_cols = [c for c in t.columns if not c.numeric]
        for i, row in enumerate(t.rows):
            label = " / ".join(str(row.get(c.key) or "") for c in text_cols
                               if row.get(c.key) not in (None, ""))
            for c in t.columns:
                v = row.get(c.key)
                unit = "fraction" if c.kind == "share" else c.unit_text
                if isinstance(v, Value):
                    cells = [_csv_num(v.mean), _csv_num(v.low), _csv_num(v.high)]
                elif isinstance(v, int | float) and not isinstance(v, bool):
                    cells = [_csv_num(v), "", ""]
                else:
                    cells = ["" if v is None else str(v), "", ""]
                w.writerow([t.key, i, label, c.key, unit, *cells])
    return buf.getvalue()


def _csv_num(x: Any) -> str:
    return repr(float(x)) if _finite(x) else ""


# ----------------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_line(line: Line) -> str:
    """A line as a paragraph: verdicts (ok, bad) in bold, a ``warning:`` line with a bold
    **Warning:**, other warn-level lines (advice) in italics."""
    text = _md_escape(line.text)
    if line.level in ("ok", "bad"):
        return f"**{text}**"
    if line.level == "warn":
        if text.lower().startswith("warning:"):
            return f"**Warning:** {text[len('warning:'):].strip()}"
        return f"_{text}_"
    return text


def to_markdown(report: Report) -> str:
    """The report as Markdown: a heading, the lines as paragraphs, pipe tables."""
    out = [f"# {report.title}", ""]
    for block in report.blocks:
        if isinstance(block, Line):
            out += [_md_line(block), ""]
            continue
        out += [f"## {block.title}", ""]
        out.append("| " + " | ".join(_md_escape(header(c)) for c in block.columns) + " |")
        out.append("|" + "|".join("---:" if c.numeric else "---" for c in block.columns) + "|")
        for row in block.rows:
            out.append("| " + " | ".join(_md_escape(_cell_text(row, c)) or " "
                                         for c in block.columns) + " |")
        if block.note:
            out += ["", f"_{_md_escape(block.note)}_"]
        out.append("")
    for p in report.plots:
        out += [f"![{_md_escape(p.caption)}]({p.path})", ""]
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------- terminal

_STYLES = {"title": "bold", "info": "", "ok": "bold green", "warn": "yellow", "bad": "bold red",
           "note": "", "dim": "dim"}
_PAD = 1  # cell padding each side, as rich's SIMPLE_HEAD box draws it


def _widths(table: Table) -> list[int]:
    """Each column's narrowest width that never breaks a number: the longest cell (or
    header word) of a numeric column, the longest word of a text column."""
    widths = []
    for c in table.columns:
        cells = [_cell_text(r, c) for r in table.rows]
        words = header(c).split()
        if c.numeric:
            w = max([len(x) for x in cells] + [len(x) for x in words] + [1])
        else:
            w = max([len(word) for x in cells for word in x.split()]
                    + [len(x) for x in words] + [1])
        widths.append(w)
    return widths


def _natural(table: Table) -> list[int]:
    return [max([len(_cell_text(r, c)) for r in table.rows] + [len(header(c))])
            for c in table.columns]


def table_width(widths: Sequence[int]) -> int:
    """The printed width of a SIMPLE_HEAD table with these column widths."""
    # padding each side of each cell, a divider between columns and an edge each side
    return sum(widths) + 2 * _PAD * len(widths) + len(widths) + 1


def _fit(table: Table, width: int) -> list[int] | None:
    """Column widths for ``width`` columns of output: numeric columns as wide as their
    longest cell (headers wrap between words), text columns their natural width shrunk,
    widest first, down to their longest word; None when even that does not fit."""
    mins, natural = _widths(table), _natural(table)
    widths = [m if c.numeric else n
              for c, m, n in zip(table.columns, mins, natural, strict=True)]
    if table_width(natural) <= width:
        return natural
    excess = table_width(widths) - width
    while excess > 0:
        slack = [(w - m, i) for i, (c, w, m) in enumerate(zip(table.columns, widths, mins,
                                                              strict=True))
                 if not c.numeric and w > m]
        if not slack:
            return None
        _, i = max((widths[i], i) for _, i in slack)
        widths[i] -= 1
        excess -= 1
    return widths


def _rich_table(table: Table, widths: Sequence[int], title: str | None = None) -> RichTable:
    rt = RichTable(title=table.title if title is None else title, title_justify="left",
                   header_style="bold", box=box.SIMPLE_HEAD, title_style="bold")
    for c, w in zip(table.columns, widths, strict=True):
        # Fixed widths: a numeric column is as wide as its longest cell, so its numbers
        # never wrap; headers and text cells wrap between words.
        rt.add_column(header(c), justify="right" if c.numeric else "left", width=w,
                      overflow="fold")
    for row in table.rows:
        rt.add_row(*(_cell_text(row, c) for c in table.columns),
                   style="dim" if row.get("_dim") else None)
    return rt


def _groups(table: Table, width: int) -> list[Table] | None:
    """The table split into column groups that each fit ``width``, the text columns
    repeated in each; None when a single numeric column cannot fit beside them."""
    text_cols = [c for c in table.columns if not c.numeric]
    num_cols = [c for c in table.columns if c.numeric]
    w = dict(zip([c.key for c in table.columns], _widths(table), strict=True))
    base = sum(w[c.key] + 2 * _PAD + 1 for c in text_cols) + 1
    groups: list[list[Column]] = [[]]
    used = base
    for c in num_cols:
        need = w[c.key] + 2 * _PAD + 1
        if base + need > width:
            return None
        if groups[-1] and used + need > width:
            groups.append([])
            used = base
        groups[-1].append(c)
        used += need
    n = len(groups)
    return [Table(table.key, f"{table.title} ({i + 1}/{n})" if n > 1 else table.title,
                  text_cols + g, table.rows) for i, g in enumerate(groups)]


def _stacked(table: Table, console: Console) -> None:
    """One block per row: the row's text cells as a heading, then ``header  value``
    (missing values left out)."""
    console.print(Text(table.title, style="bold"))
    text_cols = [c for c in table.columns if not c.numeric]
    num_cols = [c for c in table.columns if c.numeric]
    width = max((len(header(c)) for c in num_cols), default=0)
    for row in table.rows:
        head = " / ".join(str(row.get(c.key)) for c in text_cols
                          if row.get(c.key) not in (None, ""))
        console.print(Text(f"  {head or '-'}", style="bold"))
        for c in num_cols:
            label = header(c)
            cell = _cell_text(row, c)
            if cell == DASH and row.get("_dim"):
                continue
            if 4 + width + 2 + len(cell) <= console.width:
                console.print(Text(f"    {label:<{width}}  {cell}"), soft_wrap=True)
            else:
                console.print(Text(f"    {label}:"), soft_wrap=True)
                console.print(Text(f"      {cell}"), soft_wrap=True)
    console.print()


def print_table(table: Table, console: Console, *, tty: bool | None = None) -> None:
    """Print ``table`` so that every number is whole (see the module docstring): whole
    when it fits, else in column groups that fit (the text columns repeated), else
    stacked; off a terminal always whole, as wide as it needs."""
    tty = console.is_terminal if tty is None else tty
    if not tty:
        natural = _natural(table)
        saved = console.width
        console.width = max(table_width(natural), saved)  # off a terminal: full rows
        try:
            console.print(_rich_table(table, natural), crop=False)
        finally:
            console.width = saved
    elif (widths := _fit(table, console.width)) is not None:
        console.print(_rich_table(table, widths))
    else:
        parts = _groups(table, console.width)
        if parts is None:
            _stacked(table, console)
        else:
            for part in parts:
                part_widths = _fit(part, console.width)
                assert part_widths is not None
                console.print(_rich_table(part, part_widths))
    if table.note:
        _print_line(console, table.note, "dim", tty)


_KEEP = re.compile(r"(?<=\d) (?=[KMBT]\b|ms\b|s\b|min\b|h\b|tokens\b|GPUs?\b|replicas?\b)"
                   r"| (?=± )|(?<= ±) |(?<=CI) (?=[-$\d])|(?<=[\d%]) (?=to [-$\d])"
                   r"|(?<=\bto) (?=[-$\d])|(?<=%) (?=CI\b)")


def wrap(text: str, width: int) -> str:
    """``text`` wrapped at ``width`` between words, never inside a number with its
    interval and unit (``4.85 ± 0.60 B``, ``95% CI $3,027 to $3,047``)."""
    glued = _KEEP.sub("\x00", text)
    lines = textwrap.wrap(glued, width=max(width, 20), break_long_words=False,
                          break_on_hyphens=False) or [""]
    return "\n".join(line.replace("\x00", " ") for line in lines)


def _print_line(console: Console, text: str, style: str, tty: bool) -> None:
    if tty:
        console.print(Text(wrap(text, console.width - 1), style=style), soft_wrap=True,
                      highlight=False)
    else:
        console.print(Text(text, style=style), soft_wrap=True, highlight=False)


def render_terminal(report: Report, console: Console, *, tty: bool | None = None) -> None:
    """Print the report: lines in their colours, tables whole (see :func:`print_table`).

    Off a terminal (``tty`` False; default: whether ``console`` is one) lines are not
    wrapped either, so a file holds each line and each table row in full."""
    tty = console.is_terminal if tty is None else tty
    for block in report.blocks:
        if isinstance(block, Line):
            _print_line(console, block.text, _STYLES[block.level], tty)
        else:
            print_table(block, console, tty=tty)


def render(report: Report, fmt: str, console: Console) -> None:
    """Print ``report`` in ``fmt`` (one of :data:`FORMATS`) on ``console``."""
    if fmt == "table":
        render_terminal(report, console)
        return
    text = {"json": to_json, "csv": to_csv, "markdown": to_markdown}[fmt](report)
    console.file.write(text if text.endswith("\n") else text + "\n")
    console.file.flush()


def rows_of(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plain dict copies of ``items`` (for building table rows)."""
    return [dict(i) for i in items]

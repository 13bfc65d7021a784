"""Reports that fit (issue #22): tables never cut a number at any width, on a terminal or
off one; strict JSON, CSV and Markdown carry the same numbers."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest
from rich.console import Console

from sim.report.document import (
    Column,
    Report,
    Table,
    Value,
    format_cell,
    from_dict,
    header,
    render_terminal,
    to_csv,
    to_dict,
    to_json,
    to_markdown,
    wrap,
)


def _raise(const: str) -> None:
    raise ValueError(f"non-strict JSON constant {const}")


def _report() -> Report:
    r = Report("run", "capsim run: wide")
    r.line("capsim run: wide (30d horizon, 20 replications, seed 7)", "title")
    r.line("Cost: the hybrid costs $12,787 ± 1,967/month more than API-only on gpt-4o: "
           "$3,037 ± 10/month, hybrid $15,825 ± 1,965/month. Traffic is 932 M tokens/month "
           "against a break-even of 4.85 ± 0.60 B tokens/month.", "bad")
    cols = [Column("name", "Configuration"), Column("cost", "Cost", "usd", "$/month"),
            Column("ttft", "interactive TTFT p99", "seconds"),
            Column("e2e", "batch E2E p50", "seconds"),
            Column("share", "Overflow", "share"), Column("failed", "Failed", "share"),
            Column("req", "Requests", "count", "/month"),
            Column("gpus", "GPUs", "gpus", ""), Column("note", "Verdict")]
    t = Table("points", "A wide table", cols)
    for i in range(6):
        t.rows.append({
            "name": f"{i + 1} replicas, overflow.interactive.threshold_s=0.{i + 1}",
            "cost": Value(14_600.0 + 1000 * i, 14_000.0 + 1000 * i, 15_200.0 + 1000 * i),
            "ttft": Value(8.86 / (i + 1), 8.7 / (i + 1), 9.0 / (i + 1)),
            "e2e": Value(9290.93, 9198.0, 9383.8),
            "share": Value(0.0406, 0.035, 0.047), "failed": Value(0.227, 0.2, 0.25),
            "req": Value(208_245.0, 206_682.0, 209_808.0), "gpus": 2.0 * (i + 1),
            "note": "misses interactive.ttft_p99_s" if i < 3 else "feasible"})
    t.rows.append({"name": "missing", "cost": Value(None), "ttft": None, "e2e": math.nan})
    r.table(t)
    return r


def _cells(report: Report) -> list[str]:
    return [format_cell(row.get(c.key), c.kind) for t in report.tables for row in t.rows
            for c in t.columns if c.numeric]


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("width,tty", [(80, True), (200, True), (80, False), (40, True)])
def test_every_number_is_whole_at_every_width(width, tty):
    report = _report()
    console = Console(width=width, record=True, force_terminal=tty, color_system=None)
    render_terminal(report, console, tty=tty)
    out = console.export_text()
    assert "…" not in out
    for cell in _cells(report):
        assert cell in out, (cell, width, tty)
    for line in report.lines:  # prose wraps between words, never inside a number
        assert _squash(line.text) in _squash(out)
    if tty:
        assert max(len(x.rstrip()) for x in out.splitlines()) <= width
    else:  # off a terminal: each row on one line, however wide
        for row in report.tables[0].rows[:6]:
            assert any(row["name"] in x and format_cell(row["cost"], "usd") in x
                       for x in out.splitlines())


def test_units_are_in_the_headers_and_cells_hold_numbers():
    assert header(Column("c", "Cost", "usd", "$/month")) == "Cost ($/month)"
    assert header(Column("t", "TTFT p99", "seconds")) == "TTFT p99 (s)"
    assert header(Column("s", "Overflow", "share")) == "Overflow (%)"
    assert format_cell(Value(0.0406, 0.035, 0.047), "share") == "4.1 ± 0.6"
    assert format_cell(Value(9290.93, 9198.0, 9383.8), "seconds") == "9,291 ± 93"
    assert format_cell(Value(0.284, 0.284, 0.284), "seconds") == "0.284"
    assert format_cell(Value(None), "usd") == "-"
    assert format_cell(math.nan, "usd") == "-"
    # an asymmetric interval (a share near 0) shows both ends, never a negative low end
    assert format_cell(Value(0.003, 0.0004, 0.019), "share") == "0.30 [0.040, 1.9]"


def test_json_is_strict_and_round_trips():
    report = _report()
    text = to_json(report)
    doc = json.loads(text, parse_constant=_raise)
    rows = doc["tables"]["points"]["rows"]
    assert rows[-1]["e2e"] is None and rows[-1]["cost"] is None
    assert rows[0]["share"] == {"mean": 0.0406, "ci95_low": 0.035, "ci95_high": 0.047}
    assert to_markdown(from_dict(doc)) == to_markdown(report)
    assert to_dict(from_dict(doc)) == doc


def test_csv_is_one_row_per_cell():
    report = _report()
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    t = report.tables[0]
    assert len(rows) == len(t.rows) * len(t.columns)
    cost = next(r for r in rows if r["column"] == "cost" and r["row"] == "0")
    assert (float(cost["value"]), float(cost["ci95_low"])) == (14_600.0, 14_000.0)
    assert cost["unit"] == "$/month"
    share = next(r for r in rows if r["column"] == "share" and r["row"] == "0")
    assert share["unit"] == "fraction" and float(share["value"]) == 0.0406


def test_markdown_has_a_pipe_table_with_units():
    md = to_markdown(_report())
    assert "| Configuration | Cost ($/month) | interactive TTFT p99 (s) |" in md
    assert "| 1 replicas, overflow.interactive.threshold_s=0.1 | 14,600 ± 600 |" in md


def test_wrap_keeps_numbers_with_their_interval_and_unit():
    text = "Break-even volume: 4.85 ± 0.60 B tokens/month (95% CI $3,027 to $3,047)."
    for width in range(20, 80):
        wrapped = wrap(text, width)
        assert "4.85 ± 0.60 B" in wrapped
        assert "95% CI $3,027 to $3,047" in wrapped

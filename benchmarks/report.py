"""Result rows, the printed table and the JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Row", "check", "render", "write_json"]

_STYLE = {"PASS": "green", "MISS": "red", "ERROR": "bold red", "n/a": "yellow"}


@dataclass
class Row:
    """One measured quantity; ``target`` and ``status`` are empty when there is no target."""

    case: str
    metric: str
    value: float | int | str | None
    unit: str = ""
    target: str = ""
    status: str = ""
    note: str = ""


def check(case: str, metric: str, value: float, unit: str, *, le: float | None = None,
          ge: float | None = None, note: str = "") -> Row:
    """A row with a target ``value <= le`` or ``value >= ge`` and its PASS/MISS."""
    if le is not None:
        target, ok = f"<= {le:g}", value <= le
    elif ge is not None:
        target, ok = f">= {ge:g}", value >= ge
    else:
        raise ValueError("check needs le or ge")
    status = "n/a" if math.isnan(value) else ("PASS" if ok else "MISS")
    return Row(case, metric, value, unit, target, status, note)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}" if a >= 0.01 or a == 0 else f"{v:.2e}"
    return str(v)


def render(rows: list[Row], console: Console) -> None:
    table = Table(title="capsim benchmarks", show_lines=False)
    for col, justify in (("case", "left"), ("metric", "left"), ("value", "right"),
                         ("unit", "left"), ("target", "right"), ("status", "center"),
                         ("note", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    last_case = None
    for r in rows:
        if last_case is not None and r.case != last_case:
            table.add_section()
        last_case = r.case
        status = f"[{_STYLE[r.status]}]{r.status}[/]" if r.status in _STYLE else r.status
        table.add_row(r.case, r.metric, _fmt(r.value), r.unit, r.target, status, r.note)
    console.print(table)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_json(path: str | Path, machine: dict, settings: dict, rows: list[Row]) -> None:
    data = {"machine": machine, "settings": settings,
            "rows": [{k: _jsonable(v) for k, v in asdict(r).items()} for r in rows]}
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

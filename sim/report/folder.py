"""A finished results folder, read back: its report, its plots, its report.html.

Every command that writes a folder writes ``report.json`` (the report as strict JSON,
:func:`sim.report.document.to_dict`) and ``report.html`` beside its data. A ``capsim run``
folder can also be reported from ``summary.json`` alone (folders written before
report.json existed); its plots are re-drawn from ``timeseries.parquet`` and
``runs.parquet`` when asked. :func:`load_folder_report` is what ``capsim report DIR``
prints; :func:`rewrite_html` what it re-renders.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim.core.errors import ConfigError
from sim.report.document import Plot, Report, from_dict
from sim.report.html import write_html
from sim.report.run_report import build_run_report

__all__ = ["load_folder_report", "rewrite_html", "PLOT_CAPTIONS", "plots_in", "read_json"]

PLOT_CAPTIONS: dict[str, str] = {
    "day_profile": "GPU utilization and the share of requests sent to the API over an "
                   "average day (mean and 5-95% band across replications)",
    "fleet_day": "Fleet size over an average day",
    "ttft_cdf": "Time to first token: distribution per destination (replication 0)",
    "cost_breakdown": "Monthly cost by layer, and its distribution across replications",
    "incident": "The first incident, minute by minute (replication 0)",
    "pareto": "Cost against latency for every configuration evaluated",
    "breakeven": "Monthly cost against volume: API-only, GPU-only and hybrid",
    "comparison": "The variants side by side",
    "cost_vs_gpus": "Monthly cost against GPUs",
    "sweep": "The sweep's metrics across the grid",
}


def read_json(path: Path) -> Any:
    """A JSON file (bare NaN, as older versions wrote, read as None); a missing or broken
    file is a one-line ConfigError."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"),
                          parse_constant=lambda _c: None)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read JSON: {exc}", file=str(path)) from None


def plots_in(folder: Path) -> list[Plot]:
    """The folder's plot files (PNG or SVG) with their captions, in a stable order."""
    order = list(PLOT_CAPTIONS)
    files = [p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".svg")]
    files.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.name))
    return [Plot(p.name, PLOT_CAPTIONS.get(p.stem, p.stem.replace("_", " "))) for p in files]


def _nan(obj: Any) -> Any:
    """None back to NaN inside metric entries (the report builders expect floats)."""
    if isinstance(obj, Mapping):
        return {k: _nan(v) for k, v in obj.items()}
    return float("nan") if obj is None else obj


def load_folder_report(folder: str | Path) -> tuple[Report, dict[str, Any] | None]:
    """The report of a results folder and its summary.json (None if it has none)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("not a results folder (no such directory)", file=str(folder))
    summary_path = folder / "summary.json"
    summary = read_json(summary_path) if summary_path.is_file() else None
    if summary is not None and "metrics" in summary and "meta" in summary \
            and "router_config" not in summary["meta"]:
        metrics = {k: _nan(v) for k, v in summary["metrics"].items()}
        report = build_run_report(metrics, summary["meta"])
    elif (folder / "report.json").is_file():
        report = from_dict(read_json(folder / "report.json"))
    else:
        raise ConfigError("not a capsim results folder (no report.json or summary.json)",
                          file=str(folder))
    report.plots = plots_in(folder)
    return report, summary


def rewrite_html(folder: str | Path, report: Report | None = None,
                 summary: Mapping[str, Any] | None = None) -> Path:
    """Write ``folder/report.html`` again from the folder's files."""
    if report is None:
        report, loaded = load_folder_report(folder)
        summary = summary if summary is not None else loaded
    return write_html(report, Path(folder), summary)

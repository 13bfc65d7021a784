"""``capsim compare``: the same traffic against several fleets, side by side.

An experiment file may name **variants**: each maps override paths to values, applied
like ``--set`` to the experiment as written (``{}`` is the experiment itself)::

    variants:
      peak-fixed: {fleet: {profile: llama-70b-2xa100, pools: [{name: gpu, replicas: 4}]}}
      autoscaled: {}
      trough-hybrid: {fleet.replicas: 1}

Every variant is a full ``capsim run`` (same seed, so the same requests: common random
numbers, and the same cost-input draws) written to ``<out>/<variant>/``; the comparison of
the headline metrics (monthly cost by layer, replicas billed, utilization of what was paid
for, overflow, SLO attainment and latency per class, fleet events) goes to
``<out>/comparison.json`` (strict JSON), the report (:func:`sim.study.reports.compare_report`:
on the terminal as ``--format table|json|csv|markdown``, and as ``<out>/report.json`` and
``<out>/report.html``) and ``<out>/comparison.png`` (replicas billed and overflow over an
average day, per variant). The first variant is the
baseline: the total cost of each variant minus the baseline's is also given with a
paired confidence interval (replication by replication).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich import box
from rich.console import Console
from rich.table import Table

from sim.core.errors import ConfigError, closest
from sim.core.files import check_out_dir, default_out, safe_name, write_json
from sim.core.stats import summarize_values
from sim.costs.model import SECONDS_PER_MONTH
from sim.experiment.config import Experiment, ExperimentSource, load_experiment, load_variant
from sim.experiment.run import run_and_write
from sim.report.document import render as render_report
from sim.report.document import strict
from sim.report.formats import finite, format_count, format_percent, format_seconds, format_usd
from sim.report.plots import plot_fleet_comparison
from sim.study.reports import compare_report, write_reports

__all__ = ["compare", "load_variants", "run_comparison", "render", "COMPARED"]

COMPARED = (
    "cost.total_usd", "cost.compute_usd", "cost.api_usd", "replicas", "paid_utilization",
    "gpu_utilization", "overflow_share", "failure_share", "fleet.cold_starts",
    "fleet.preemptions", "fleet.failures", "requests_restarted",
)
"""Metrics compared across variants (plus ``<class>.slo_attainment`` and TTFT p99)."""


def load_variants(path: ExperimentSource, overrides: Sequence[str] = (), *,
                  names: Sequence[str] = (), replications: int | None = None
                  ) -> dict[str, Experiment]:
    """Every variant of the experiment (or the ones in ``names``), resolved."""
    base = load_experiment(path, list(overrides), replications=replications)
    variants = base.config.variants
    if not variants:
        raise ConfigError("no variants to compare; add 'variants: {name: {path: value}}'",
                          file=base.source, field="variants")
    for name in names:
        if name not in variants:
            raise ConfigError(f"no variant '{name}'{closest(name, variants)}",
                              file=base.source, field="variants")
    chosen = list(names) or list(variants)
    return {name: load_variant(path, overrides, name, variants[name],
                               replications=replications) for name in chosen}


def _row(summary: Mapping[str, Any]) -> dict[str, dict]:
    metrics = summary["metrics"]
    row = {k: metrics[k] for k in COMPARED if k in metrics}
    if "paid_utilization" not in row and "gpu_utilization" in metrics:
        row["paid_utilization"] = metrics["gpu_utilization"]  # a fixed fleet: paid = up
    for cls in summary["meta"].get("classes", []):
        for key in (f"{cls}.slo_attainment", f"{cls}.ttft_p99_s", f"{cls}.e2e_p99_s",
                    f"{cls}.overflow_share"):
            if key in metrics:
                row[key] = metrics[key]
    return row


def variant_folders(names: Sequence[str]) -> dict[str, str]:
    """A safe, distinct folder name for each variant (``../x`` -> ``x``, ``/a/b`` ->
    ``a-b``; a clash gets ``-2``, ``-3``...)."""
    out: dict[str, str] = {}
    for name in names:
        base = folder = safe_name(name, default="variant")
        k = 2
        while folder in out.values() or folder == "comparison.json":
            folder, k = f"{base}-{k}", k + 1
        out[name] = folder
    return out


def run_comparison(variants: Mapping[str, Experiment], out: Path, *,
                   workers: int | None = None, plots: bool = True,
                   quiet: bool = False, overwrite: bool = False, fmt: str = "table") -> dict:
    """Run every variant into ``out/<name>`` and write ``out/comparison.json``."""
    console = Console(stderr=True)
    rows: dict[str, dict] = {}
    series: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    folders = variant_folders(list(variants))
    for name, exp in variants.items():
        if not quiet:
            console.print(f"[bold]variant {name}[/bold]: {exp.config.replications} "
                          "replications")
        summary = run_and_write(exp, out / folders[name], workers=workers, plots=plots,
                                quiet=True, overwrite=overwrite)
        rows[name] = _row(summary)
        meta[name] = summary["meta"]
        series[name] = (pq.read_table(out / folders[name] / "timeseries.parquet"),
                        summary["meta"].get("replicas"))
    _add_paired_differences(rows, out, list(variants))
    result = {"variants": rows, "meta": meta, "baseline": next(iter(variants)),
              "seed": next(iter(variants.values())).config.seed}
    write_json(out / "comparison.json", strict(result))
    if plots:
        plot_fleet_comparison(series, out / "comparison.png")
    report = compare_report(result, name=next(iter(variants.values())).name)
    write_reports(report, out)
    if not quiet:
        render_report(report, fmt, Console())
        if fmt == "table":
            Console().print(f"[dim]results written to {out}/ (report.html to share)[/dim]")
    return result


PAIRED = ("cost.total_usd", "cost.compute_usd")
"""Keys also compared replication by replication with the first (baseline) variant."""


def _add_paired_differences(rows: dict[str, dict], out: Path, names: list[str]) -> None:
    """``<key>.minus_baseline``: the mean and CI of the per-replication difference from
    the first variant. Replication i of every variant sees the same requests and the
    same cost-input draws, so the paired interval is much tighter than the CIs of the
    two means."""
    folders = variant_folders(names)

    def column(name: str, key: str) -> list[float] | None:
        table = pq.read_table(out / folders[name] / "runs.parquet")
        if key not in table.column_names:
            return None
        order = table.column("replication").to_pylist()
        values = table.column(key).to_pylist()
        return [v for _, v in sorted(zip(order, values, strict=True))]

    base = names[0]
    for key in PAIRED:
        ref = column(base, key)
        for name in names:
            other = column(name, key)
            if ref is None or other is None or len(other) != len(ref):
                continue
            rows[name][f"{key}.minus_baseline"] = summarize_values(
                [b - a for a, b in zip(ref, other, strict=True)])


def _rows_to_show(classes: Sequence[str]) -> list[tuple[str, str, str, float]]:
    """(label, key, formatter, scale) of every table row; scale 0 = per month."""
    rows = [("Total $/mo", "cost.total_usd", "usd", 1.0),
            ("  compute", "cost.compute_usd", "usd", 1.0),
            ("  API", "cost.api_usd", "usd", 1.0),
            ("Δ total (paired)", "cost.total_usd.minus_baseline", "usd", 1.0),
            ("Replicas billed", "replicas", "count", 1.0),
            ("Paid util.", "paid_utilization", "percent", 1.0),
            ("Overflow", "overflow_share", "percent", 1.0)]
    for c in classes:
        rows += [(f"{c} SLO met", f"{c}.slo_attainment", "percent", 1.0),
                 (f"{c} TTFT p99", f"{c}.ttft_p99_s", "seconds", 1.0),
                 (f"{c} E2E p99", f"{c}.e2e_p99_s", "seconds", 1.0)]
    rows += [("Cold starts/mo", "fleet.cold_starts", "count", 0.0),
             ("Preemptions/mo", "fleet.preemptions", "count", 0.0),
             ("Failures/mo", "fleet.failures", "count", 0.0),
             ("Restarted/mo", "requests_restarted", "count", 0.0)]
    return rows


def render(rows: Mapping[str, Mapping[str, dict]], meta: Mapping[str, Any], console) -> None:
    """The comparison table: one column per variant, means over replications (their 95%
    CIs are in comparison.json); the paired difference from the baseline (the first
    variant) carries its 95% CI half-width. Event counts are per 30-day month."""
    fmts = {"usd": format_usd, "count": format_count, "percent": format_percent,
            "seconds": format_seconds}
    first = next(iter(meta.values())) if meta else {}
    to_month = SECONDS_PER_MONTH / float(first.get("horizon_s", SECONDS_PER_MONTH))
    baseline = next(iter(rows), "")
    table = Table(title=f"Same traffic, different fleets (means; Δ = minus {baseline}, "
                  "± 95% CI)", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD)
    table.add_column("Metric")
    for name in rows:
        table.add_column(name, justify="right")
    for label, key, fmt_name, scale in _rows_to_show(first.get("classes", [])):
        paired = key.endswith(".minus_baseline")
        cells = [_cell(row.get(key), fmts[fmt_name], scale or to_month, with_ci=paired)
                 for row in rows.values()]
        table.add_row(label, *cells)
    console.print(table)


def _cell(entry: Mapping[str, float] | None, fmt, scale: float, *, with_ci: bool) -> str:
    if not entry or not finite(entry.get("mean")):
        return "-"
    text = fmt(entry["mean"] * scale)
    low, high = entry.get("ci95_low"), entry.get("ci95_high")
    if with_ci and finite(low) and finite(high) and high > low:
        text += f" ±{fmt((high - low) / 2 * scale).lstrip('$')}"
    return text


def compare(experiment: ExperimentSource = None, variants: Sequence[str] = (), *,
            overrides: Sequence[str] = (), replications: int | None = None,
            workers: int | None = None, out: str | Path | None = None, plots: bool = True,
            quiet: bool = True, overwrite: bool = False, fmt: str = "table") -> dict:
    """Run the ``variants`` of ``experiment`` (default: all) on the same traffic into
    ``out/<variant>/`` (default ``results/<name>-compare-<timestamp>/``) and return the
    comparison (also in ``out/comparison.json``); ``quiet=False`` prints the table."""
    chosen = load_variants(experiment, list(overrides), names=variants,
                           replications=replications)
    first = next(iter(chosen.values()))
    folder = Path(out) if out else default_out(
        Path("results"), f"{first.name}-compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    check_out_dir(folder, overwrite=overwrite)  # before the first variant runs
    result = run_comparison(chosen, folder, workers=workers, plots=plots, quiet=quiet,
                            overwrite=overwrite, fmt=fmt)
    result["folder"] = str(folder)
    return result

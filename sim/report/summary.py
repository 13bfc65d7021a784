"""The text summary of ``capsim run``: what a capacity planner reads first.

It shows, from the Monte Carlo summary (:func:`sim.core.stats.summarize`) and the run's
metadata: the fleet, the traffic per month, GPU utilization, latency per traffic class and
destination, overflow share and SLO attainment, the cost layers with their spread, the
cost per million tokens and the comparison with serving everything from the API.

Conventions: every figure carries its unit; ``85 ± 2 ms`` gives the mean over
replications and the half-width of its 95% confidence interval, in the mean's unit (no
interval with one replication); ``-`` marks a figure that does not exist in this run (a
missing or NaN key, e.g. E2E of a class that never finished); a destination row (GPU fleet
or API) is left out when no request of that class went there. Request counts are scaled
from the horizon to a month. Costs are per 30-day month (720 h), see :mod:`sim.costs.model`.
``meta`` may also name ``api_only_model`` for the API-only comparison, and for a fleet of
pools (:mod:`sim.serving.fleet`) list its ``pools``: the summary then adds a table per pool
(replicas up and billed, GPU-hours and compute per month, cold starts, preemptions,
failures and the requests they evicted) and the utilization of what was paid for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sim.core.units import format_duration
from sim.costs.model import SECONDS_PER_MONTH
from sim.report.formats import (
    DASH,
    STYLES,
    UTILIZATION_BASIS,
    finite,
    format_count,
    format_percent,
    format_seconds,
    format_usd,
)

__all__ = ["render_summary"]

Summary = Mapping[str, Mapping[str, float]]


def _half(entry: Mapping[str, float]) -> float:
    low, high = entry.get("ci95_low", math.nan), entry.get("ci95_high", math.nan)
    return (high - low) / 2.0 if finite(low) and finite(high) else math.nan


def _entry(summary: Summary, key: str) -> Mapping[str, float] | None:
    entry = summary.get(key)
    if not entry or not finite(entry.get("mean", math.nan)):
        return None
    return entry


def _with_ci(summary: Summary, key: str, fmt, *, scale: float = 1.0,
             compact: bool = False) -> str:
    """``mean ± half unit``: the half-width in the mean's unit (``85 ± 2 ms``).

    ``compact`` drops the spaces around ``±`` (for wide tables).
    """
    entry = _entry(summary, key)
    if entry is None:
        return DASH
    mean = entry["mean"] * scale
    half = _half(entry) * scale
    if not (finite(half) and half > 0):
        return fmt(mean)
    style = STYLES[fmt](mean)
    pm = "±" if compact else " ± "
    return (f"{'-' if mean < 0 else ''}{style.prefix}{style.number(mean)}{pm}"
            f"{style.half(half)}{style.suffix}")


def _plain(summary: Summary, key: str, fmt, stat: str = "mean") -> str:
    entry = _entry(summary, key)
    if entry is None:
        return DASH
    return fmt(entry.get(stat, math.nan))


# --------------------------------------------------------------------------- render


def render_summary(summary: Summary, meta: Mapping[str, Any], console: Console) -> None:
    """Print the run summary to ``console`` (a rich Console)."""
    horizon_s = float(meta.get("horizon_s", SECONDS_PER_MONTH))
    to_month = SECONDS_PER_MONTH / horizon_s if horizon_s > 0 else math.nan
    n_rep = int(meta.get("replications", 0) or 0)

    title = Text.assemble(("capsim run: ", "bold"), (str(meta.get("name", "experiment")),
                                                    "bold cyan"))
    title.append(f"  ({format_duration(horizon_s)} horizon, {n_rep} replication"
                 f"{'s' if n_rep != 1 else ''}, seed {meta.get('seed', '?')})")
    console.print(title)
    if n_rep >= 2:
        console.print(f"± is the 95% confidence half-width of the mean over {n_rep} "
                      "replications; '-' means no such requests.", style="dim")
    else:
        console.print("One replication: no confidence intervals (run at least 2, "
                      "preferably 10+); '-' means no such requests.", style="yellow")

    console.print(_overview(summary, meta, to_month))
    with_ci = n_rep >= 2
    if meta.get("pools"):
        console.print(_fleet_table(summary, meta, to_month, with_ci))
    console.print(_latency_table(summary, list(meta.get("classes", [])), to_month, with_ci))
    console.print(_cost_table(summary, meta, with_ci))
    verdict = _verdict(summary, meta)
    if verdict is not None:
        console.print(verdict)
    _notes(console, meta, horizon_s, to_month)


def _fleet_line(summary: Summary, meta: Mapping[str, Any]) -> str:
    gpus = int(meta.get("gpus_per_replica", 0) or 0)
    pools = meta.get("pools")
    if pools:
        parts = []
        for p in pools:
            size = (str(p["initial"]) if p["min"] == p["max"]
                    else f"{p['min']}–{p['max']}")
            parts.append(f"{p['name']} ({p['tier'].replace('_', '-')}, {p['policy']} {size})")
        return (f"{meta.get('profile', '?')} × {gpus} GPU{'s' if gpus != 1 else ''} per "
                f"replica; pools: {', '.join(parts)}; mean "
                f"{_with_ci(summary, 'fleet.replicas_billed_mean', format_count)} replicas "
                f"billed, {_with_ci(summary, 'fleet.replicas_up_mean', format_count)} up")
    replicas = int(meta.get("replicas", 0) or 0)
    pricing = str(meta.get("pricing", "on_demand")).replace("_", "-")
    return (f"{meta.get('profile', '?')}: {replicas} replica"
            f"{'s' if replicas != 1 else ''} × {gpus} GPU{'s' if gpus != 1 else ''}"
            f" = {replicas * gpus} GPUs, {pricing} pricing")


def _overview(summary: Summary, meta: Mapping[str, Any], to_month: float) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Fleet", _fleet_line(summary, meta))
    grid.add_row("Traffic", f"{_with_ci(summary, 'requests_arrived', format_count, scale=to_month)}"
                 f" requests/month, {_with_ci(summary, 'tokens_per_month', format_count)}"
                 " tokens/month")
    grid.add_row("GPU", f"busy {_with_ci(summary, 'gpu_busy_fraction', format_percent)} of "
                 f"the time; utilization {_with_ci(summary, 'gpu_utilization', format_percent)}"
                 f" {UTILIZATION_BASIS}"
                 + (f"; {_with_ci(summary, 'paid_utilization', format_percent)} of the "
                    "replica-time paid for" if meta.get("pools") else ""))
    grid.add_row("Overflow", f"{_with_ci(summary, 'overflow_share', format_percent)} of "
                 f"requests served by the API, "
                 f"{_with_ci(summary, 'failure_share', format_percent)} failed")
    return grid


def _latency_table(summary: Summary, classes: Sequence[str], to_month: float,
                   with_ci: bool) -> Table:
    table = Table(title="Latency and service per traffic class"
                  + (" (± 95% CI)" if with_ci else ""),
                  title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for name, justify in (("Class", "left"), ("Served by", "left"), ("Requests/mo", "right"),
                          ("Overflow", "right"), ("SLO met", "right"), ("TTFT p50", "right"),
                          ("TTFT p99", "right"), ("E2E p50", "right"), ("E2E p99", "right")):
        table.add_column(name, justify=justify)
    for cls in classes:
        table.add_row(
            cls, "all",
            _with_ci(summary, f"{cls}.requests", format_count, scale=to_month,
                     compact=True),
            _with_ci(summary, f"{cls}.overflow_share", format_percent, compact=True),
            _with_ci(summary, f"{cls}.slo_attainment", format_percent, compact=True),
            _with_ci(summary, f"{cls}.ttft_p50_s", format_seconds, compact=True),
            _with_ci(summary, f"{cls}.ttft_p99_s", format_seconds, compact=True),
            _with_ci(summary, f"{cls}.e2e_p50_s", format_seconds, compact=True),
            _with_ci(summary, f"{cls}.e2e_p99_s", format_seconds, compact=True))
        for dest, label in (("gpu", "GPU fleet"), ("api", "API")):
            ttft = _with_ci(summary, f"{cls}.{dest}.ttft_p99_s", format_seconds, compact=True)
            e2e = _with_ci(summary, f"{cls}.{dest}.e2e_p99_s", format_seconds, compact=True)
            if ttft == DASH and e2e == DASH:
                continue  # no requests of this class were served there
            table.add_row("", label, DASH, DASH, DASH, DASH, ttft, DASH, e2e, style="dim")
    return table


def _fleet_table(summary: Summary, meta: Mapping[str, Any], to_month: float,
                 with_ci: bool) -> Table:
    """Per pool: replicas, GPU-hours, compute and the events that changed the fleet
    (means over replications; their CIs are in summary.json)."""
    table = Table(title="Fleet pools (mean replicas up and billed; per month: GPU-hours, "
                  "compute, cold starts, preemptions, failures, evicted requests)",
                  title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD)
    for name, justify in (("Pool", "left"), ("Up", "right"), ("Billed", "right"),
                          ("GPU-h", "right"), ("Compute", "right"), ("Cold", "right"),
                          ("Preempt", "right"), ("Failed", "right"), ("Evicted", "right")):
        table.add_column(name, justify=justify)
    for p in meta.get("pools", []):
        key = f"pool.{p['name']}"

        def mean(k: str, fmt, scale: float = 1.0) -> str:
            entry = _entry(summary, k)
            return DASH if entry is None else fmt(entry["mean"] * scale)
        table.add_row(p["name"], mean(f"{key}.replicas_up_mean", _two),
                      mean(f"{key}.replicas_billed_mean", _two),
                      mean(f"{key}.gpu_hours_per_month", format_count),
                      mean(f"cost.pool.{p['name']}.compute_usd", format_usd),
                      mean(f"{key}.cold_starts", format_count, to_month),
                      mean(f"{key}.preemptions", format_count, to_month),
                      mean(f"{key}.failures", format_count, to_month),
                      _evicted(summary, key, to_month))
    return table


def _two(x: float) -> str:
    return f"{x:.2f}"


def _evicted(summary: Summary, key: str, to_month: float) -> str:
    total = 0.0
    found = False
    for cause in ("preemption", "failure"):
        entry = _entry(summary, f"{key}.requests_evicted_{cause}")
        if entry is not None:
            total += entry["mean"]
            found = True
    return format_count(total * to_month) if found else DASH


_COST_ROWS = (
    ("cost.compute_usd", "Compute (GPU fleet, full month)"),
    ("cost.engineering_usd", "Engineering (FTE)"),
    ("cost.infra_usd", "Infrastructure"),
    ("cost.reliability_usd", "Reliability (failures, SLO misses)"),
    ("cost.api_usd", "API spend (overflow)"),
    ("cost.fixed_usd", "Fixed = compute + engineering + infra"),
    ("cost.total_usd", "Total hybrid"),
)


def _cost_table(summary: Summary, meta: Mapping[str, Any], with_ci: bool) -> Table:
    table = Table(title="Monthly cost (USD per 30-day month)", title_justify="left",
                  header_style="bold")
    table.add_column("Layer")
    for name in ("Mean ± 95% CI" if with_ci else "Mean", "p5", "p50", "p95"):
        table.add_column(name, justify="right")
    rows = _COST_ROWS
    if meta.get("pools"):
        rows = (("cost.compute_usd", "Compute (pools: reserved all month, others as billed)"),
                *_COST_ROWS[1:])
    for key, label in rows:
        style = "bold" if key == "cost.total_usd" else None
        table.add_row(label, _with_ci(summary, key, format_usd),
                      *(_plain(summary, key, format_usd, s) for s in ("p5", "p50", "p95")),
                      style=style, end_section=key in ("cost.api_usd", "cost.total_usd"))
    model = meta.get("api_only_model")
    table.add_row(f"API-only alternative{f' ({model})' if model else ''}",
                  _with_ci(summary, "cost.api_only_usd", format_usd),
                  *(_plain(summary, "cost.api_only_usd", format_usd, s)
                    for s in ("p5", "p50", "p95")))
    table.add_row("Savings vs API-only (negative: hybrid costs more)",
                  _with_ci(summary, "cost.savings_usd", format_usd),
                  *(_plain(summary, "cost.savings_usd", format_usd, s)
                    for s in ("p5", "p50", "p95")), end_section=True)
    table.add_row("Hybrid cost per 1M tokens served",
                  _with_ci(summary, "cost.usd_per_1m_tokens", format_usd),
                  *(_plain(summary, "cost.usd_per_1m_tokens", format_usd, s)
                    for s in ("p5", "p50", "p95")))
    table.add_row("Break-even volume (tokens/month)",
                  _with_ci(summary, "cost.breakeven_tokens_per_month", format_count),
                  *(_plain(summary, "cost.breakeven_tokens_per_month", format_count, s)
                    for s in ("p5", "p50", "p95")))
    return table


def _verdict(summary: Summary, meta: Mapping[str, Any]) -> Text | None:
    savings = _entry(summary, "cost.savings_usd")
    if savings is None:
        return None
    mean = savings["mean"]
    low, high = savings.get("ci95_low", math.nan), savings.get("ci95_high", math.nan)
    model = meta.get("api_only_model") or "the API"
    tokens = _entry(summary, "tokens_per_month")
    breakeven = _entry(summary, "cost.breakeven_tokens_per_month")
    volume = ""
    if tokens is not None and breakeven is not None:
        volume = (f" Traffic is {format_count(tokens['mean'])} tokens/month against a "
                  f"break-even of {format_count(breakeven['mean'])}.")
    if finite(low) and finite(high) and low <= 0 <= high:
        return Text(f"Hybrid vs API-only ({model}): no clear difference; savings "
                    f"{format_usd(mean)}/month, 95% CI {format_usd(low)} to "
                    f"{format_usd(high)}.{volume}", style="yellow")
    if mean >= 0:
        return Text(f"Hybrid saves {format_usd(mean)}/month vs API-only ({model}).{volume}",
                    style="bold green")
    return Text(f"Hybrid costs {format_usd(-mean)}/month more than API-only ({model})."
                f"{volume}", style="bold red")


def _notes(console: Console, meta: Mapping[str, Any], horizon_s: float,
           to_month: float) -> None:
    notes = []
    if meta.get("pools"):
        billing = str(meta.get("billing", "per_second")).replace("_", " ")
        notes.append(f"Compute: reserved pools are billed all month; on-demand and spot "
                     f"replicas from request (cold start included) to release, {billing}, "
                     f"scaled from the {format_duration(horizon_s)} horizon by "
                     f"×{to_month:.3g}; failed replicas stay billed while repaired. After the "
                     "horizon the fleet stays as it is while the backlog drains.")
    elif math.isclose(horizon_s, SECONDS_PER_MONTH):
        notes.append("Costs per 30-day month (720 h); compute is billed for the whole fleet, "
                     "idle or busy.")
    else:
        notes.append(f"Costs per 30-day month (720 h): compute is billed for the whole fleet "
                     f"all month; usage costs (API, reliability) and volumes are scaled from "
                     f"the {format_duration(horizon_s)} horizon by ×{to_month:.3g}.")
    notes.extend(str(n) for n in meta.get("notes", []) or [])
    console.print("Notes:", style="bold")
    for note in notes:
        console.print(f"  • {note}")

"""What ``capsim run`` prints and plots for an experiment routed by a LiteLLM config.

The summary table (requests, deployments, monthly cost) and the incident plot; the run
itself and its files are :mod:`sim.experiment.run`'s. Files (each written atomically, in
a folder that appears complete or not at all):
``runs.parquet`` (one flat row per replication: request outcomes, retry and fallback
rates, latency, per-deployment share, failures, cooldown time and spend, monthly costs),
``deployments.parquet`` (replication x deployment totals), ``timeline.parquet``
(replication x deployment x minute: attempts, answers, failures by kind, tokens sent,
seconds in cooldown), ``cooldowns.parquet`` (every cooldown interval),
``requests.parquet`` with ``--requests`` (attempts, path of deployments tried, fallbacks,
outcome and latency of every request), ``summary.json`` and ``incident.png``: the
timeline of replication 0 around the first configured outage (else the minute with the
most failures) -- where traffic went, what failed, and which deployments cooled down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from sim.report.formats import format_count, format_percent, format_seconds, format_usd
from sim.report.plots import COLORS, save_figure

__all__ = ["render_litellm_summary", "plot_incident", "incident_window"]


def _ci(stats: dict, key: str, fmt) -> str:
    entry = stats.get(key)
    if not entry or not math.isfinite(entry.get("mean", math.nan)):
        return "-"
    low, high = entry.get("ci95_low", math.nan), entry.get("ci95_high", math.nan)
    text = fmt(entry["mean"])
    if math.isfinite(low) and math.isfinite(high) and high > low:
        text += f" ({fmt(low)} to {fmt(high)})"
    return text


def render_litellm_summary(stats: dict, meta: dict, console: Console) -> None:
    """Print requests, deployments and monthly cost (means, 95% CI across replications)."""
    console.print(f"[bold]capsim run:[/bold] [bold cyan]{meta['name']}[/bold cyan]  "
                  f"(LiteLLM router {meta['router_config']}, {meta['routing_strategy']}, "
                  f"{meta['replications']} replications, seed {meta['seed']})",
                  highlight=False)
    req = Table(title="Requests (mean and 95% CI across replications)", title_justify="left")
    req.add_column("metric")
    req.add_column("value", justify="right")
    for label, key, fmt in (
            ("requests", "requests_arrived", format_count),
            ("failed", "failure_share", format_percent),
            ("  of which no deployment available", "failed.no_deployment", format_count),
            ("  of which timeout / 503 / 429", None, None),
            ("retried (any retry)", "retry_rate", format_percent),
            ("fell back to another group", "fallback_rate", format_percent),
            ("attempts per request", "attempts_per_request", lambda x: f"{x:.3f}"),
            ("served off the self-hosted servers", "overflow_share", format_percent),
            ("TTFT p95", "ttft_s_p95", format_seconds),
            ("end-to-end p50 / p95", None, None),
            ("latency added by retries (mean)", "retry_added_s_mean", format_seconds),
            ("latency added by retries (p99)", "retry_added_s_p99", format_seconds)):
        if key is None and label.startswith("  of which timeout"):
            value = " / ".join(_ci(stats, f"failed.{k}", format_count).split(" (")[0]
                               for k in ("timeout", "unavailable", "rate_limit"))
        elif key is None:
            value = " / ".join(_ci(stats, k, format_seconds).split(" (")[0]
                               for k in ("e2e_s_p50", "e2e_s_p95"))
        else:
            value = _ci(stats, key, fmt)
        req.add_row(label, value)
    console.print(req)
    console.print(_deployment_table(stats, meta))
    cost = Table(title="Monthly cost (USD per 30 days; spread of the uncertain inputs "
                 "across replications)", title_justify="left")
    cost.add_column("layer")
    cost.add_column("mean", justify="right")
    cost.add_column("p5 to p95", justify="right")
    for label, key in (("GPU compute", "cost.compute_usd"), ("engineering", "cost.engineering_usd"),
                       ("infrastructure", "cost.infra_usd"), ("API tokens", "cost.api_usd"),
                       ("total hybrid", "cost.total_usd"),
                       ("API-only alternative", "cost.api_only_usd")):
        entry = stats.get(key, {})
        spread = (f"{format_usd(entry['p5'])} to {format_usd(entry['p95'])}"
                  if "p5" in entry and math.isfinite(entry["p5"]) else "-")
        cost.add_row(label, format_usd(entry.get("mean", math.nan)), spread)
    console.print(cost)
    for note in meta.get("notes", []):
        console.print(f"[dim]{note}[/dim]", highlight=False)


def _deployment_table(stats: dict, meta: dict) -> Table:
    t = Table(title="Deployments (means across replications)", title_justify="left")
    for col in ("deployment", "group", "kind", "share", "attempts", "failed 429/503/timeout",
                "cooldowns", "in cooldown", "cost/month"):
        t.add_column(col, justify="left" if col in ("deployment", "group", "kind") else "right",
                     no_wrap=True)

    def mean(key: str) -> float:
        return stats.get(key, {}).get("mean", math.nan)

    for d in meta["deployments"]:
        p = f"dep.{d['name']}."
        kind = d["kind"] if d["replicas"] is None else f"gpu x{d['replicas']}"
        t.add_row(d["name"], d["group"], kind, format_percent(mean(p + "share")),
                  format_count(mean(p + "attempts")),
                  " / ".join(format_count(mean(p + k)) for k in
                             ("fail_rate_limit", "fail_unavailable", "fail_timeout")),
                  format_count(mean(p + "cooldowns")),
                  format_seconds(mean(p + "cooldown_s")),
                  format_usd(mean(p + "cost_usd")))
    return t


# ------------------------------------------------------------------------------ the plot


def incident_window(outages: Sequence[tuple[float, float]], timeline: pa.Table, *,
                    before_s: float = 1200.0, after_s: float = 2400.0) -> tuple[float, float]:
    """Around the first of ``outages`` (start, end seconds); else around the minute with
    the most failures in ``timeline``."""
    if outages:
        a, b = min(outages)
        return max(a - before_s, 0.0), b + after_s
    cols = timeline.select(["bin_start_s", "rate_limit", "unavailable", "timeout"]).to_pydict()
    t = np.asarray(cols["bin_start_s"])
    fails = sum(np.asarray(cols[k], dtype=float) for k in ("rate_limit", "unavailable",
                                                           "timeout"))
    if t.size == 0:
        return 0.0, 3600.0
    worst = float(t[int(np.argmax(fails))])
    return max(worst - 1800.0, 0.0), worst + 1800.0


def plot_incident(timeline: pa.Table, cooldowns: pa.Table, window: tuple[float, float],
                  path: str | Path, *, title: str = "") -> Path:
    """Answers and failures per minute per deployment, and cooldown intervals, in
    ``window`` (seconds from the start of the horizon)."""
    t0, t1 = window
    cols = timeline.to_pydict()
    names = list(dict.fromkeys(cols["deployment"]))
    fig = Figure(figsize=(10, 7.5))
    ax_ok, ax_fail, ax_cd = fig.subplots(3, 1, sharex=True,
                                         gridspec_kw={"height_ratios": [3, 2, 1.2]})
    dep = np.asarray(cols["deployment"])
    t = np.asarray(cols["bin_start_s"], dtype=float)
    bin_s = float(t[1] - t[0]) if t.size > 1 and dep[0] == dep[1] else 60.0
    fails = sum(np.asarray(cols[k], dtype=float) for k in ("rate_limit", "unavailable",
                                                           "timeout"))
    ok = np.asarray(cols["ok"], dtype=float)
    for i, name in enumerate(names):
        sel = (dep == name) & (t >= t0) & (t < t1)
        x = (t[sel] - t0) / 60.0
        color = COLORS[i % len(COLORS)]
        ax_ok.plot(x, ok[sel] * 60.0 / bin_s, color=color, lw=1.2, label=name)
        ax_fail.plot(x, fails[sel] * 60.0 / bin_s, color=color, lw=1.2)
    cd = cooldowns.to_pydict()
    for i, name in enumerate(names):
        spans = [(max(a, t0), min(b, t1)) for d, a, b in
                 zip(cd["deployment"], cd["start_s"], cd["end_s"], strict=True)
                 if d == name and b > t0 and a < t1]
        ax_cd.broken_barh([((a - t0) / 60.0, (b - a) / 60.0) for a, b in spans],
                          (i - 0.4, 0.8), color=COLORS[i % len(COLORS)])
    ax_ok.set_ylabel("answers per minute")
    ax_ok.legend(loc="upper left", fontsize=8, ncol=min(len(names), 4))
    ax_fail.set_ylabel("failed attempts\nper minute")
    ax_cd.set_yticks(range(len(names)), names, fontsize=8)
    ax_cd.set_ylim(-0.6, len(names) - 0.4)
    ax_cd.set_ylabel("cooldown")
    ax_cd.set_xlabel(f"minutes from {_stamp(t0)} (replication 0)")
    for ax in (ax_ok, ax_fail, ax_cd):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, (t1 - t0) / 60.0)
    fig.suptitle(f"{title}: where the traffic went, {_stamp(t0)} to {_stamp(t1)}")
    fig.tight_layout()
    return save_figure(fig, path)


def _stamp(t_s: float) -> str:
    day, rest = divmod(int(t_s), 86400)
    return f"day {day} {rest // 3600:02d}:{rest % 3600 // 60:02d}"

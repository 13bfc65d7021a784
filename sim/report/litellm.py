"""What ``capsim run`` prints and plots for an experiment routed by a LiteLLM config.

The summary tables (requests, deployments, monthly cost) and the incident plot; the run
itself and its files are :mod:`sim.experiment.run`'s. Files (each written atomically, in
a folder that appears complete or not at all):
``runs.parquet`` (one flat row per replication: request outcomes, retry and fallback
rates, latency, per-deployment share, failures, cooldown time and spend, monthly costs),
``deployments.parquet`` (replication x deployment totals), ``timeline.parquet``
(replication x deployment x minute: attempts, answers, failures by kind, tokens sent,
seconds in cooldown), ``cooldowns.parquet`` (every cooldown interval),
``requests.parquet`` with ``--requests`` (attempts, path of deployments tried, fallbacks,
outcome and latency of every request), ``summary.json`` and ``incident.png``: the
timeline of replication 0 around the first configured outage inside the horizon (else the
minute with the most failures; the plot says which) -- where traffic went, what failed,
and which deployments cooled down.

Units. Counts (requests, attempts, failures, cooldowns, time in cooldown) are per
replication, i.e. per horizon, and every table says which horizon; costs are per 30-day
month (the horizon's API spend scaled to 30 days, GPUs billed for a month).

Intervals. Every interval is a 95% interval across replications and stays in its range.
Shares of requests (failed, retried, fell back, served off the servers) use the Wilson
score interval with the effective number of requests ``p(1-p) / se^2`` (``se`` the
standard error of the mean over replications; at most the requests simulated): requests
in one outage fail together, so they are not independent trials, and a share that is 0
in every replication still gets an upper bound (``z^2 / (N + z^2)``) instead of a
zero-width interval. Other quantities come from :func:`sim.core.stats.summarize`
(:mod:`sim.core.intervals`: never below 0); an interval that still reached below 0 (an
older ``summary.json``) is cut at 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from sim.core.intervals import t975
from sim.report.formats import format_count, format_percent, format_seconds, format_usd
from sim.report.plots import COLORS, fitted_title, save_figure

__all__ = ["render_litellm_summary", "plot_incident", "incident_window", "IncidentWindow",
           "wilson_share_interval", "horizon_label"]

_SHARES = ("failure_share", "retry_rate", "fallback_rate", "overflow_share")
"""Keys that are shares of the requests that arrived (Wilson intervals)."""


def horizon_label(horizon_s: float) -> str:
    """``3-day``, ``2-hour``, ``90-minute`` or ``45-second``: the horizon as an adjective."""
    for size, unit in ((86400.0, "day"), (3600.0, "hour"), (60.0, "minute")):
        if horizon_s >= size and (horizon_s / size) == round(horizon_s / size, 2):
            return f"{horizon_s / size:g}-{unit}"
    return f"{horizon_s:g}-second"


def wilson_share_interval(mean: float, std: float, n_replications: int,
                          n_requests: float) -> tuple[float, float]:
    """95% Wilson score interval of a share of requests from its mean and standard
    deviation over ``n_replications`` (see the module docstring); NaN for fewer than 2."""
    if n_replications < 2 or not (math.isfinite(mean) and math.isfinite(std)) \
            or not 0.0 <= mean <= 1.0 or not n_requests > 0:
        return math.nan, math.nan
    se2 = std * std / n_replications
    n_eff = n_requests if se2 == 0.0 else min(n_requests, mean * (1.0 - mean) / se2)
    n_eff = max(n_eff, 1.0)
    z = t975(n_replications - 1)
    z2n = z * z / n_eff
    centre = (mean + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(mean * (1.0 - mean) / n_eff + z2n / (4.0 * n_eff))
    return max(0.0, centre - half), min(1.0, centre + half)


def _interval(stats: dict, key: str) -> tuple[float, float, float]:
    """(mean, low, high) of ``key``: Wilson for shares of requests, else the summary's
    interval cut at 0 (every quantity in these tables is non-negative)."""
    entry = stats.get(key) or {}
    mean = entry.get("mean", math.nan)
    if key in _SHARES:
        n = int(entry.get("n", 0) or 0)
        requests = stats.get("requests_arrived", {}).get("mean", math.nan) * n
        low, high = wilson_share_interval(mean, entry.get("std", math.nan), n, requests)
        return mean, low, high
    low, high = entry.get("ci95_low", math.nan), entry.get("ci95_high", math.nan)
    return mean, max(low, 0.0) if math.isfinite(low) else low, high


def _ci(stats: dict, key: str, fmt: Callable[[float], str]) -> str:
    mean, low, high = _interval(stats, key)
    if not math.isfinite(mean):
        return "-"
    text = fmt(mean)
    if math.isfinite(low) and math.isfinite(high) and high > low:
        text += f" ({fmt(low)} to {fmt(high)})"
    return text


def _mean(stats: dict, key: str, fmt: Callable[[float], str]) -> str:
    return fmt(stats.get(key, {}).get("mean", math.nan))


def render_litellm_summary(stats: dict, meta: dict, console: Console) -> None:
    """Print requests, deployments and monthly cost (means, 95% CIs across replications;
    counts per horizon, costs per 30-day month)."""
    horizon = horizon_label(float(meta["horizon_s"]))
    n = meta["replications"]
    console.print(f"[bold]capsim run:[/bold] [bold cyan]{meta['name']}[/bold cyan]  "
                  f"(LiteLLM router {meta['router_config']}, {meta['routing_strategy']}, "
                  f"{horizon} horizon, {n} replications, seed {meta['seed']})",
                  highlight=False)
    console.print(_requests_table(stats, horizon, n))
    console.print(_deployment_table(stats, meta, horizon))
    cost = Table(title=f"Monthly cost (USD per 30-day month: the {horizon} horizon's API "
                 "spend scaled to 30 days; p5 to p95: spread of the uncertain cost inputs "
                 "across replications)", title_justify="left")
    cost.add_column("layer")
    cost.add_column("mean (USD/month)", justify="right")
    cost.add_column("p5 to p95 (USD/month)", justify="right")
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


def _requests_table(stats: dict, horizon: str, n: int) -> Table:
    per = f"count per {horizon} horizon"
    req = Table(title=f"Requests in the {horizon} horizon (per replication: mean and 95% CI "
                f"across {n} replications)", title_justify="left")
    req.add_column("metric")
    req.add_column("value (95% CI)", justify="right")
    req.add_column("unit")
    fails = " / ".join(_mean(stats, f"failed.{k}", format_count)
                       for k in ("timeout", "unavailable", "rate_limit"))
    e2e = " / ".join(_mean(stats, k, format_seconds) for k in ("e2e_s_p50", "e2e_s_p95"))
    for label, value, unit in (
            ("requests", _ci(stats, "requests_arrived", format_count), per),
            ("failed", _ci(stats, "failure_share", format_percent), "% of requests"),
            ("  of which no deployment available",
             _ci(stats, "failed.no_deployment", format_count), per),
            ("  of which timeout / 503 / 429", fails, f"{per} (means)"),
            ("retried (any retry)", _ci(stats, "retry_rate", format_percent), "% of requests"),
            ("fell back to another group", _ci(stats, "fallback_rate", format_percent),
             "% of requests"),
            ("attempts per request", _ci(stats, "attempts_per_request", lambda x: f"{x:.3f}"),
             "attempts"),
            ("served off the self-hosted servers", _ci(stats, "overflow_share", format_percent),
             "% of requests"),
            ("TTFT p95", _ci(stats, "ttft_s_p95", format_seconds), "duration"),
            ("end-to-end p50 / p95", e2e, "duration (means)"),
            ("latency added by retries (mean)", _ci(stats, "retry_added_s_mean", format_seconds),
             "duration"),
            ("latency added by retries (p99)", _ci(stats, "retry_added_s_p99", format_seconds),
             "duration")):
        req.add_row(label, value, unit)
    return req


def _deployment_table(stats: dict, meta: dict, horizon: str) -> Table:
    t = Table(title=f"Deployments (means across replications; counts and time in cooldown "
              f"per {horizon} horizon, cost per 30-day month)", title_justify="left")
    for col in ("deployment", "group", "kind", "share of answers", "attempts",
                "failed 429/503/timeout", "cooldowns", "time in cooldown", "cost (USD/month)"):
        t.add_column(col, justify="left" if col in ("deployment", "group", "kind") else "right",
                     no_wrap=col in ("deployment", "group", "kind"))

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


class IncidentWindow(NamedTuple):
    """The stretch of the horizon the incident plot shows, and why that stretch."""

    start_s: float
    end_s: float
    why: str


def incident_window(outages: Sequence[tuple[float, float]], timeline: pa.Table, *,
                    before_s: float = 1200.0, after_s: float = 2400.0) -> IncidentWindow:
    """Around the first of ``outages`` (start, end seconds) that starts inside the
    horizon (the timeline's span); else around the minute with the most failed attempts
    in ``timeline``; else, with no failure at all, its first hour. ``why`` says which."""
    cols = timeline.select(["bin_start_s", "rate_limit", "unavailable", "timeout"]).to_pydict()
    t = np.asarray(cols["bin_start_s"], dtype=float)
    end = float(t.max()) + _bin_s(timeline) if t.size else math.inf
    inside = sorted(o for o in outages if o[0] < end)
    if inside:
        a, b = inside[0]
        return IncidentWindow(max(a - before_s, 0.0), min(b + after_s, end),
                              f"around the first outage, {_stamp(a)} to {_stamp(min(b, end))}")
    late = (f"no outage inside the horizon (the first starts at {_stamp(min(outages)[0])}, "
            "after it); " if outages else "")
    fails = sum(np.asarray(cols[k], dtype=float) for k in ("rate_limit", "unavailable",
                                                           "timeout"))
    if t.size == 0 or not np.any(fails > 0):
        return IncidentWindow(0.0, min(3600.0, end), f"{late}no failed attempt in "
                              "replication 0: its first hour")
    worst = float(t[int(np.argmax(fails))])
    return IncidentWindow(max(worst - 1800.0, 0.0), min(worst + 1800.0, end),
                          f"{late}around the minute with the most failed attempts")


def _bin_s(timeline: pa.Table) -> float:
    """The timeline's bin width (its first deployment's consecutive bins; else 60 s)."""
    cols = timeline.select(["deployment", "bin_start_s"]).to_pydict()
    dep, t = cols["deployment"], cols["bin_start_s"]
    return float(t[1] - t[0]) if len(t) > 1 and dep[0] == dep[1] else 60.0


def plot_incident(timeline: pa.Table, cooldowns: pa.Table,
                  window: IncidentWindow | tuple[float, float], path: str | Path, *,
                  title: str = "") -> Path:
    """Answers and failures per minute per deployment, and cooldown intervals, in
    ``window`` (seconds from the start of the horizon; its ``why`` in the title)."""
    t0, t1 = window[0], window[1]
    why = window[2] if len(window) > 2 else ""
    cols = timeline.to_pydict()
    names = list(dict.fromkeys(cols["deployment"]))
    fig = Figure(figsize=(10, 7.5), layout="constrained")
    ax_ok, ax_fail, ax_cd = fig.subplots(3, 1, sharex=True,
                                         gridspec_kw={"height_ratios": [3, 2, 1.2]})
    dep = np.asarray(cols["deployment"])
    t = np.asarray(cols["bin_start_s"], dtype=float)
    per_min = 60.0 / _bin_s(timeline)
    fails = sum(np.asarray(cols[k], dtype=float) for k in ("rate_limit", "unavailable",
                                                           "timeout"))
    ok = np.asarray(cols["ok"], dtype=float)
    for i, name in enumerate(names):
        sel = (dep == name) & (t >= t0) & (t < t1)
        x = (t[sel] - t0) / 60.0
        color = COLORS[i % len(COLORS)]
        ax_ok.plot(x, ok[sel] * per_min, color=color, lw=1.2, label=name)
        ax_fail.plot(x, fails[sel] * per_min, color=color, lw=1.2)
    cd = cooldowns.to_pydict()
    for i, name in enumerate(names):
        spans = [(max(a, t0), min(b, t1)) for d, a, b in
                 zip(cd["deployment"], cd["start_s"], cd["end_s"], strict=True)
                 if d == name and b > t0 and a < t1]
        ax_cd.broken_barh([((a - t0) / 60.0, (b - a) / 60.0) for a, b in spans],
                          (i - 0.4, 0.8), color=COLORS[i % len(COLORS)])
    ax_ok.set_ylabel("answers per minute")
    ax_fail.set_ylabel("failed attempts\nper minute")
    ax_cd.set_yticks(range(len(names)), names, fontsize=8)
    ax_cd.set_ylim(-0.6, len(names) - 0.4)
    ax_cd.set_ylabel("in cooldown")
    ax_cd.set_xlabel(f"minutes from {_stamp(t0)} (replication 0)")
    for ax in (ax_ok, ax_fail, ax_cd):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, (t1 - t0) / 60.0)
    for ax in (ax_ok, ax_fail):
        ax.set_ylim(bottom=0)
    fig.legend(*ax_ok.get_legend_handles_labels(), loc="outside lower center", fontsize=8,
               ncols=min(len(names), 5), title="deployment", title_fontsize=8)
    head = f"{title}: where the traffic went" if title else "Where the traffic went"
    fitted_title(fig, f"{head}, {_stamp(t0)} to {_stamp(t1)}" + (f"\n{why}" if why else ""))
    return save_figure(fig, path)


def _stamp(t_s: float) -> str:
    day, rest = divmod(int(t_s), 86400)
    return f"day {day} {rest // 3600:02d}:{rest % 3600 // 60:02d}"

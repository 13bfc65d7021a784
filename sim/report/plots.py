"""PNG plots of a ``capsim run``: an average day, latency CDFs and the monthly cost.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display,
no global backend switch) and written atomically: to ``<path>.tmp`` first, then renamed,
so a crash never leaves a half-written PNG behind. Plots use direct labels rather than
legends where there is room, put units on every axis and say in the title what is shown.

Assumptions: the time series start at the beginning of a day (the horizon starts on a
Monday at 00:00, :mod:`sim.core.units`), so ``t_s mod 86400`` is the time of day; an average
day folds every day of every replication onto 24 hours.
"""

from __future__ import annotations

import math
import os
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, PercentFormatter

from sim.core.errors import ConfigError
from sim.costs.model import COST_LAYERS
from sim.report.formats import format_count, format_percent, format_usd_short

__all__ = ["plot_day_profile", "plot_latency_cdfs", "plot_cost_breakdown", "plot_fleet_day",
           "plot_fleet_comparison", "plot_workload", "save_figure", "usd_axis", "count_axis",
           "fitted_title", "COLORS"]

_DAY_S = 86400.0
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
_LAYER_COLORS = {"compute": "#1f77b4", "engineering": "#9467bd", "infra": "#8c564b",
                 "reliability": "#d62728", "api": "#ff7f0e"}
_LAYER_LABELS = {"compute": "Compute", "engineering": "Engineering", "infra": "Infra",
                 "reliability": "Reliability", "api": "API spend"}


def usd_axis() -> FuncFormatter:
    """A tick formatter writing :func:`~sim.report.formats.format_usd_short` (one per axis)."""
    return FuncFormatter(lambda x, _pos: format_usd_short(x))


def count_axis() -> FuncFormatter:
    """A tick formatter writing :func:`~sim.report.formats.format_count` (one per axis)."""
    return FuncFormatter(lambda x, _pos: format_count(x))


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (``path.tmp`` then rename)."""
    target = Path(os.fspath(path))
    tmp = Path(os.fspath(target) + ".tmp")
    FigureCanvasAgg(fig)
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def fitted_title(where: Figure | Axes, text: str, **kwargs: Any) -> Text:
    """Set a figure's suptitle or an axes' title, wrapped at word boundaries so that it
    fits the figure's (or the axes') width as rendered: never clipped at the edge."""
    fig = where if isinstance(where, Figure) else where.get_figure(root=True)
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    if isinstance(where, Figure):
        title = where.suptitle(text, **kwargs)
        room = 0.96 * fig.bbox.width
    else:
        title = where.set_title(text, **kwargs)
        room = 0.9 * where.get_window_extent().width  # constrained layout shrinks it a bit
    renderer = fig.canvas.get_renderer()
    width = len(text)
    while title.get_window_extent(renderer).width > room and width > 16:
        width = int(width * 0.9)
        title.set_text("\n".join(textwrap.fill(line, width) for line in text.split("\n")))
    return title


# ----------------------------------------------------------------------- day profile


def _columns(timeseries: Any) -> dict[str, np.ndarray]:
    """Columns of a pyarrow Table (or anything with ``to_dict('list')``) as arrays."""
    if isinstance(timeseries, pa.Table):
        return {c: timeseries.column(c).to_numpy() for c in timeseries.column_names}
    return {c: np.asarray(v) for c, v in timeseries.to_dict("list").items()}


def _day_table(timeseries: Any) -> tuple[dict[str, np.ndarray], float]:
    """Per (replication, time-of-day bin) wide arrays of utilization, overflow share."""
    cols = _columns(timeseries)
    needed = {"replication", "t_s", "bin_s", "arrivals", "to_api", "utilization"}
    missing = needed - set(cols)
    if missing:
        raise ValueError(f"timeseries lacks column(s) {sorted(missing)}")
    if not cols["t_s"].size:
        raise ValueError("timeseries is empty")
    bin_s = float(cols["bin_s"][0])
    n_tod = int(round(_DAY_S / bin_s))
    tod = np.floor((cols["t_s"].astype(float) % _DAY_S) / bin_s).astype(int) % n_tod
    reps, rep_idx = np.unique(cols["replication"], return_inverse=True)
    cell = rep_idx * n_tod + tod
    size = reps.size * n_tod

    def total(name: str) -> np.ndarray:
        return np.bincount(cell, cols[name].astype(float), minlength=size)

    count = np.bincount(cell, minlength=size).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        util = total("utilization") / count
        arrivals = total("arrivals")
        overflow = np.where(arrivals > 0, total("to_api") / arrivals, np.nan)
    wide = {"utilization": util.reshape(reps.size, n_tod).T,
            "overflow": overflow.reshape(reps.size, n_tod).T}
    return wide, bin_s


def plot_day_profile(timeseries: Any, path: str | os.PathLike[str]) -> Path:
    """GPU utilization and overflow share over an average day, with a p5-p95 band.

    Each replication's bins are folded by time of day and averaged over its days
    (overflow share as total to-API over total arrivals per time-of-day bin); the line is
    the mean over replications and the band the 5th-95th percentile across them.
    """
    wide_by, bin_s = _day_table(timeseries)
    n_rep = next(iter(wide_by.values())).shape[1]

    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax_util, ax_over = fig.subplots(2, 1, sharex=True)
    panels = ((ax_util, "utilization", "GPU utilization", COLORS[0]),
              (ax_over, "overflow", "Requests sent to the API", COLORS[1]))
    for ax, column, label, color in panels:
        values = wide_by[column]
        hours = _bin_hours(values.shape[0], bin_s)
        with warnings.catch_warnings():  # all-NaN bins (no arrivals) are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=1)
            p5 = np.nanpercentile(values, 5, axis=1)
            p95 = np.nanpercentile(values, 95, axis=1)
        if n_rep > 1:
            ax.fill_between(hours, p5, p95, color=color, alpha=0.2, linewidth=0)
        ax.plot(hours, mean, color=color, linewidth=1.8)
        ax.set_ylabel(f"{label} (%)")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        peak = ""
        finite = np.isfinite(mean)
        if finite.any():  # marked on the curve, named in the panel title (never on the data)
            i = int(np.nanargmax(np.where(finite, mean, -np.inf)))
            ax.plot(hours[i], mean[i], marker="v", color=color, markersize=7,
                    linestyle="none")
            peak = f"; peak ▼ {format_percent(mean[i])} at {_clock(hours[i])}"
        band = f"line: mean; band: p5–p95 across {n_rep} replications" if n_rep > 1 \
            else "one replication: no band"
        ax.set_title(f"{label}{peak} — {band}", fontsize=10, loc="left")
    _time_of_day_axis(ax_over)
    fig.suptitle(f"Average day: GPU utilization and overflow ({bin_s / 60:g}-min bins, "
                 "all days folded)", fontsize=12)
    return save_figure(fig, path)


def _bin_hours(n_bins: int, bin_s: float) -> np.ndarray:
    """The centre of each time-of-day bin, in hours."""
    return np.arange(n_bins) * bin_s / 3600.0 + bin_s / 7200.0


def _time_of_day_axis(ax: Any) -> None:
    ax.set_xlabel("Time of day (hours)")
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))


def _clock(hours: float) -> str:
    minutes = int(round(hours * 60)) % (24 * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ------------------------------------------------------------------------ fleet day


def _fold_day(cols: dict[str, np.ndarray], names: Sequence[str]
              ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sum of each column per time-of-day bin over all days and replications, and counts."""
    bin_s = float(cols["bin_s"][0])
    n_tod = int(round(_DAY_S / bin_s))
    tod = np.floor((cols["t_s"].astype(float) % _DAY_S) / bin_s).astype(int) % n_tod
    count = np.bincount(tod, minlength=n_tod).astype(float)
    sums = {n: np.bincount(tod, np.nan_to_num(cols[n].astype(float)), minlength=n_tod)
            for n in names}
    return sums, count


def plot_fleet_day(timeseries: Any, path: str | os.PathLike[str]) -> Path:
    """Replicas per pool and overflow over an average day (a fleet that changes).

    Top: mean replicas billed per pool (stacked areas) and replicas up (serving, black
    line) by time of day. Bottom: share of arrivals sent to the API (left axis) and the
    arrival rate (right axis). Means over every day of every replication.
    """
    cols = _columns(timeseries)
    pools = sorted(c.removeprefix("replicas_billed.") for c in cols
                   if c.startswith("replicas_billed."))
    if not pools or not cols["t_s"].size:
        raise ValueError("timeseries has no per-pool replica columns")
    names = ["replicas_up", "arrivals", "to_api", *(f"replicas_billed.{p}" for p in pools)]
    sums, count = _fold_day(cols, names)
    bin_s = float(cols["bin_s"][0])
    hours = _bin_hours(count.size, bin_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = {n: sums[n] / count for n in names}
        overflow = np.where(sums["arrivals"] > 0, sums["to_api"] / sums["arrivals"], np.nan)

    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax_rep, ax_over = fig.subplots(2, 1, sharex=True)
    stack = [mean[f"replicas_billed.{p}"] for p in pools]
    colors = [COLORS[i % len(COLORS)] for i in range(len(pools))]
    ax_rep.stackplot(hours, *stack, labels=[f"{p} (billed)" for p in pools], colors=colors,
                     alpha=0.55, linewidth=0)
    ax_rep.plot(hours, mean["replicas_up"], color="black", linewidth=1.5,
                label="up (serving)")
    ax_rep.set_ylabel("Replicas (mean)")
    ax_rep.set_ylim(bottom=0)
    handles, labels = ax_rep.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncols=min(len(labels), 4))
    ax_rep.grid(alpha=0.3)
    ax_rep.set_title("Replicas billed per pool (stacked) and replicas up", fontsize=10,
                     loc="left")
    ax_over.plot(hours, overflow, color=COLORS[1], linewidth=1.8)
    ax_over.set_ylabel("Share sent to the API (%)", color=COLORS[1])
    ax_over.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_over.set_ylim(bottom=0)
    ax_over.grid(alpha=0.3)
    ax_rate = ax_over.twinx()
    ax_rate.plot(hours, mean["arrivals"] / bin_s, color="#7f7f7f", linewidth=1.0,
                 linestyle="--")
    ax_rate.set_ylabel("Arrivals (requests/s, dashed)", color="#7f7f7f")
    ax_rate.set_ylim(bottom=0)
    ax_over.set_title("Overflow share (solid) and arrival rate (dashed)", fontsize=10,
                      loc="left")
    _time_of_day_axis(ax_over)
    fig.suptitle(f"Average day of the fleet ({bin_s / 60:g}-min bins, all days and "
                 "replications folded)", fontsize=12)
    return save_figure(fig, path)


def _fleet_profile(timeseries: Any, fixed_replicas: float | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hours, mean replicas billed and overflow share per time-of-day bin."""
    cols = _columns(timeseries)
    names = ["arrivals", "to_api"] + (["replicas_billed"] if "replicas_billed" in cols else [])
    sums, count = _fold_day(cols, names)
    bin_s = float(cols["bin_s"][0])
    with np.errstate(invalid="ignore", divide="ignore"):
        billed = (sums["replicas_billed"] / count if "replicas_billed" in sums
                  else np.full(count.size, float(fixed_replicas or 0)))
        overflow = np.where(sums["arrivals"] > 0, sums["to_api"] / sums["arrivals"], np.nan)
    hours = _bin_hours(count.size, bin_s)
    return hours, billed, overflow


def plot_fleet_comparison(series: Mapping[str, tuple[Any, float | None]],
                          path: str | os.PathLike[str]) -> Path:
    """Replicas billed and overflow share over an average day, one line per variant.

    ``series`` maps a variant name to (its timeseries table, its replica count if the
    fleet is fixed and the table has no ``replicas_billed`` column).
    """
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    ax_rep, ax_over = fig.subplots(2, 1, sharex=True)
    for i, (name, (table, fixed)) in enumerate(series.items()):
        hours, billed, overflow = _fleet_profile(table, fixed)
        color = COLORS[i % len(COLORS)]
        ax_rep.plot(hours, billed, color=color, linewidth=1.8, label=name)
        ax_over.plot(hours, overflow, color=color, linewidth=1.5, label=name)
    ax_rep.set_ylabel("Replicas billed (mean)")
    ax_rep.set_ylim(bottom=0)
    handles, labels = ax_rep.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=9, loc="outside lower center", ncols=min(len(labels), 3),
               title="variant", title_fontsize=9)
    ax_rep.grid(alpha=0.3)
    ax_rep.set_title("Replicas billed over the day", fontsize=10, loc="left")
    ax_over.set_ylabel("Share sent to the API (%)")
    ax_over.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_over.set_ylim(bottom=0)
    ax_over.grid(alpha=0.3)
    ax_over.set_title("Overflow share over the day", fontsize=10, loc="left")
    _time_of_day_axis(ax_over)
    fig.suptitle("Same traffic, different fleets: an average day (all days and "
                 "replications folded)", fontsize=12)
    return save_figure(fig, path)


# ---------------------------------------------------------------------- latency CDFs


def plot_latency_cdfs(cdfs: Mapping[str, tuple[np.ndarray, np.ndarray]],
                      path: str | os.PathLike[str]) -> Path:
    """TTFT CDF per ``class/destination`` label (x in seconds, log scale).

    Curves are named in a legend beside the axes (direct labels at the median collided
    with the p50 line and with each other); dotted lines mark the 50th and 99th
    percentiles, labelled just outside the right edge of the axes.
    """
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for i, (label, (x, f)) in enumerate(sorted(cdfs.items())):
        x = np.asarray(x, dtype=float)
        f = np.asarray(f, dtype=float)
        keep = np.isfinite(x) & np.isfinite(f) & (x > 0)
        x, f = x[keep], f[keep]
        if x.size == 0:
            continue
        order = np.argsort(x, kind="stable")
        x, f = x[order], f[order]
        ax.step(x, f, where="post", color=COLORS[i % len(COLORS)], linewidth=1.6,
                label=label)
        drawn += 1
    if drawn == 0:
        ax.text(0.5, 0.5, "no TTFT data", transform=ax.transAxes, ha="center",
                va="center")
    else:
        ax.set_xscale("log")
        fig.legend(loc="outside right upper", fontsize=9,
                   title="class / destination", title_fontsize=9)
    for level in (0.5, 0.99):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
        ax.text(1.0, level, f" p{level * 100:g}", transform=ax.get_yaxis_transform(),
                va="center", ha="left", fontsize=8, color="grey")
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("Time to first token (seconds, log scale)")
    ax.set_ylabel("Requests with TTFT ≤ x (%)")
    ax.set_title("Time to first token by traffic class and destination (CDF)")
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


# ---------------------------------------------------------------------- cost breakdown


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    values = [row.get(key, math.nan) for row in rows]
    out = np.asarray([float(v) if isinstance(v, int | float) else math.nan for v in values],
                     dtype=float)
    return out[np.isfinite(out)]


def plot_cost_breakdown(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]
                        ) -> Path:
    """Mean monthly cost by layer (stacked) and total cost across replications (box).

    The API-only alternative is drawn as a bar next to the stack and as a dashed line on
    the distribution panel.
    """
    if not rows:
        raise ValueError("no replications to plot")
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    ax_stack, ax_dist = fig.subplots(1, 2, width_ratios=(1.3, 1))

    means = {layer: float(np.mean(v)) if (v := _column(rows, f"cost.{layer}_usd")).size
             else 0.0 for layer in COST_LAYERS}
    total = sum(means.values())
    bottom = 0.0
    small: list[tuple[str, float, float]] = []  # (layer, height, middle) labelled outside
    for layer in COST_LAYERS:
        height = means[layer]
        if height <= 0:
            continue
        ax_stack.bar(0, height, bottom=bottom, width=0.6, color=_LAYER_COLORS[layer])
        if height / total >= 0.06:
            label = f"{_LAYER_LABELS[layer]}\n{format_usd_short(height)}"
            ax_stack.text(0, bottom + height / 2, label,
                          ha="center", va="center", fontsize=9, color="white",
                          fontweight="bold")
        else:
            small.append((layer, height, bottom + height / 2))
        bottom += height
    # Thin layers: labels stacked beside the bar, top-down, each pointing at its segment.
    step = 0.07 * total
    for k, (layer, height, middle) in enumerate(reversed(small)):
        ax_stack.annotate(f"{_LAYER_LABELS[layer]} {format_usd_short(height)}", (0.3, middle),
                          xytext=(0.38, total - k * step), textcoords="data", va="center",
                          fontsize=8.5, color=_LAYER_COLORS[layer],
                          arrowprops={"arrowstyle": "-", "color": _LAYER_COLORS[layer],
                                      "linewidth": 0.8})
    ax_stack.text(0, total, f"total {format_usd_short(total)}", ha="center", va="bottom",
                  fontsize=10,
                  fontweight="bold")
    api_only = _column(rows, "cost.api_only_usd")
    ticks, labels = [0], ["Hybrid (mean)"]
    if api_only.size:
        api_only_mean = float(np.mean(api_only))
        ax_stack.bar(1, api_only_mean, width=0.6, color="#bbbbbb", hatch="//",
                     edgecolor="#777777")
        ax_stack.text(1, api_only_mean, f"API-only {format_usd_short(api_only_mean)}", ha="center",
                      va="bottom", fontsize=10)
        ticks.append(1)
        labels.append("API-only (mean)")
    ax_stack.set_xticks(ticks, labels)
    ax_stack.set_xlim(-0.6, len(ticks) - 0.4 + (0.4 if len(ticks) == 1 else 0))
    ax_stack.set_ylabel("USD per month")
    ax_stack.yaxis.set_major_formatter(usd_axis())
    ax_stack.set_title("Mean monthly cost by layer", fontsize=11)
    ax_stack.grid(axis="y", alpha=0.3)
    ax_stack.margins(y=0.12)

    totals = _column(rows, "cost.total_usd")
    if totals.size:
        # (no fliers: every replication is drawn as a dot beside the box)
        ax_dist.boxplot(totals, positions=[0], widths=0.5, whis=(5, 95), showmeans=True,
                        showfliers=False, patch_artist=True, boxprops={"facecolor": "#cfe2f3"},
                        medianprops={"color": "black"})
        jitter = np.linspace(-0.12, 0.12, totals.size) if totals.size > 1 else np.zeros(1)
        ax_dist.scatter(jitter, totals, s=10, color=COLORS[0], alpha=0.6, zorder=3)
    if api_only.size:
        level = float(np.mean(api_only))
        ax_dist.axhline(level, color="#555555", linestyle="--", linewidth=1.2)
        ax_dist.annotate(f"API-only mean {format_usd_short(level)}", (0.98, level), xytext=(0, -4),
                         textcoords="offset points", ha="right", va="top",
                         xycoords=ax_dist.get_yaxis_transform(), fontsize=9,
                         color="#555555")
    ax_dist.set_xticks([0], [f"Hybrid total\n({totals.size} replications)"])
    ax_dist.set_xlim(-0.5, 0.5)
    ax_dist.set_ylabel("USD per month")
    ax_dist.yaxis.set_major_formatter(usd_axis())
    ax_dist.set_title("Total monthly cost across replications\n(box: quartiles, whiskers: "
                      "p5–p95, ▲ mean)", fontsize=11)
    ax_dist.grid(axis="y", alpha=0.3)
    ax_dist.margins(y=0.08)
    fig.suptitle("Monthly cost of the hybrid plan vs serving everything from the API "
                 "(30-day month)", fontsize=12)
    return save_figure(fig, path)


# ----------------------------------------------------------------------- a workload


def plot_workload(stats: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Requests and tokens per hour over the horizon (``capsim workload --plot``); the
    format follows the file's extension. A file that cannot be written is a ConfigError."""
    edges_d = np.arange(len(stats["requests_per_hour"]) + 1) / 24.0
    fig = Figure(figsize=(10, 6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, key, label, color in zip(
            axes, ("requests_per_hour", "tokens_per_hour"),
            ("Requests per hour", "Tokens per hour (input + output)"),
            ("tab:blue", "tab:orange"), strict=True):
        ax.stairs(stats[key], edges_d, color=color)
        ax.set_ylim(bottom=0)
        ax.set_ylabel(label)
        ax.yaxis.set_major_formatter(count_axis())
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("Day of the horizon (from Monday 00:00)")
    fitted_title(fig, f"Workload {stats['name']}: arrivals per hour of the horizon")
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise ConfigError(f"cannot write plot: {exc.strerror}", file=str(path)) from None
    return Path(os.fspath(path))

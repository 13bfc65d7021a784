"""Plots for capacity plans: cost, service and utilization against the number of GPUs.

What they show, from a sweep's ``summary.parquet`` rows (one per configuration):

* ``cost_vs_gpus``: monthly cost split into the cost layers (stacked means) with the
  p5-p95 band of the total across replications and the API-only alternative, one panel
  per combination of the other grid fields (the cheapest first; at most nine panels);
* ``service_vs_gpus``: overflow share and p99 time to first token per traffic class, with
  95% CI bars, one line per combination of the other grid fields;
* ``utilization_vs_gpus``: GPU token utilization and busy fraction, likewise;
* ``pareto`` (``capsim plan``): monthly cost against p99 TTFT for every evaluated
  configuration, with CI bars, the cost/latency frontier, the recommendation, the API-only
  cost and the GPU-only extreme;
* ``breakeven`` (``capsim breakeven``): cost per 1M tokens against monthly volume for
  API-only, GPU-only and hybrid, with break-even volumes marked.

Assumptions: the GPU count of a configuration is its mean ``replicas`` times
``gpus_per_replica`` (a dynamic fleet's mean billed replicas). Several lines or layers
share one legend outside the panels (direct labels at the lines' ends ran into the
neighbouring panel); the few lines of the break-even plot are labelled at their right end.
Titles are wrapped to the figure's width (:func:`sim.report.plots.fitted_title`).
Figures are drawn with matplotlib's object API (no pyplot) and written atomically: PNG
through :func:`sim.report.plots.save_figure`, SVG (the ``svg`` flag) through
:func:`sim.core.files.atomic_write`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from sim.core.files import atomic_write
from sim.costs.model import COST_LAYERS
from sim.report.formats import format_count, format_usd_short
from sim.report.plots import count_axis, fitted_title, save_figure, usd_axis

__all__ = [
    "write_figure",
    "plot_capacity",
    "plot_cost_vs_gpus",
    "plot_service_vs_gpus",
    "plot_utilization_vs_gpus",
    "plot_pareto",
    "plot_breakeven",
]

Row = Mapping[str, Any]
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#7f7f7f", "#bcbd22")
_LAYER_STYLE = {"compute": ("#4c78a8", "GPU compute"), "engineering": ("#9d7ebd", "Engineering"),
                "infra": ("#a0785a", "Infrastructure"), "reliability": ("#e45756", "Reliability"),
                "api": ("#f58518", "API overflow")}
_MAX_PANELS = 9


def write_figure(fig: Figure, path: str | os.PathLike[str], *, svg: bool = False) -> Path:
    """Write ``fig`` atomically as PNG, or as SVG (suffix ``.svg``) when ``svg``."""
    target = Path(os.fspath(path))
    if not svg:
        return save_figure(fig, target.with_suffix(".png"))
    target = target.with_suffix(".svg")
    FigureCanvasAgg(fig)
    atomic_write(target, lambda p: fig.savefig(p, format="svg"))
    return target


def _num(row: Row, key: str) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _gpus(row: Row) -> float:
    return _num(row, "replicas.mean") * _num(row, "gpus_per_replica.mean")


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _series(rows: Sequence[Row], series_keys: Sequence[str]) -> dict[str, list[Row]]:
    """Rows grouped by the values of ``series_keys``, each group sorted by GPU count."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        if not math.isfinite(_gpus(row)):
            continue
        label = ", ".join(f"{_short(k)}={_fmt(row.get('grid.' + k))}" for k in series_keys)
        groups.setdefault(label, []).append(row)
    return {k: sorted(v, key=_gpus) for k, v in groups.items()}


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _xy(rows: Sequence[Row], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPU counts, means and CI errors (lower, upper) of ``key``, the interval cut at 0."""
    x = np.array([_gpus(r) for r in rows])
    mean = np.array([_num(r, f"{key}.mean") for r in rows])
    low = np.array([_num(r, f"{key}.ci95_low") for r in rows])
    high = np.array([_num(r, f"{key}.ci95_high") for r in rows])
    low = np.minimum(low, mean).clip(0, None)  # every plotted metric is non-negative
    err = np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)])
    return x, mean, np.clip(err, 0, None)


def _gpu_axis(ax: Axes) -> None:
    ax.set_xlabel("GPUs in the fleet")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.margins(x=0.05)


# ------------------------------------------------------------------------------ cost


def _total_cost(rows: Sequence[Row]) -> float:
    values = [_num(r, "cost.total_usd.mean") for r in rows]
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else math.inf


def plot_cost_vs_gpus(rows: Sequence[Row], path: str | os.PathLike[str], *,
                      series_keys: Sequence[str] = (), svg: bool = False) -> Path:
    """Monthly cost by layer vs GPU count, p5-p95 band of the total, API-only line; one
    legend for every panel below them, each panel's cheapest point named in its title."""
    groups = sorted(_series(rows, series_keys).items(), key=lambda kv: _total_cost(kv[1]))
    shown = groups[:_MAX_PANELS]
    cols = min(3, len(shown)) or 1
    nrows = math.ceil(len(shown) / cols) or 1
    fig = Figure(figsize=(4.8 * cols + 1.5, 3.8 * nrows + 1.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, sharey=True, squeeze=False)).ravel()
    layers: set[str] = set()
    for k, (label, group) in enumerate(shown):
        layers |= _cost_panel(axes[k], group, label=label, ylabel=(k % cols == 0))
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    handles = [Patch(color=_LAYER_STYLE[n][0], alpha=0.85, label=_LAYER_STYLE[n][1])
               for n in COST_LAYERS if n in layers]
    handles += [Line2D([], [], color="black", marker="o", markersize=3, linewidth=1.6,
                       label="total (mean)"),
                Patch(color="black", alpha=0.15, label="total p5-p95"),
                Line2D([], [], color="#f58518", linestyle="--", linewidth=1.4,
                       label="API-only"),
                Line2D([], [], color="black", marker="v", linestyle="none",
                       label="cheapest")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5),
               fontsize=8.5)
    more = f" (cheapest {len(shown)} of {len(groups)} shown)" if len(groups) > len(shown) else ""
    fitted_title(fig, "Monthly cost vs fleet size, by cost layer (mean; band: p5-p95 of the "
                 f"total across replications){more}")
    return write_figure(fig, path, svg=svg)


def _cost_panel(ax: Axes, rows: Sequence[Row], *, label: str, ylabel: bool) -> set[str]:
    """One panel; returns the cost layers drawn."""
    x = np.array([_gpus(r) for r in rows])
    layers = [(name, np.nan_to_num([_num(r, f"cost.{name}_usd.mean") for r in rows]))
              for name in COST_LAYERS]
    layers = [(n, v) for n, v in layers if np.any(v > 0)]
    if layers:
        ax.stackplot(x, *[v for _, v in layers], colors=[_LAYER_STYLE[n][0] for n, _ in layers],
                     alpha=0.85)
    total = np.array([_num(r, "cost.total_usd.mean") for r in rows])
    p5 = np.array([_num(r, "cost.total_usd.p5") for r in rows])
    p95 = np.array([_num(r, "cost.total_usd.p95") for r in rows])
    ax.fill_between(x, p5, p95, color="black", alpha=0.15, linewidth=0)
    ax.plot(x, total, color="black", linewidth=1.6, marker="o", markersize=3)
    api_only = np.array([_num(r, "cost.api_only_usd.mean") for r in rows])
    ax.plot(x, api_only, color="#f58518", linestyle="--", linewidth=1.4)
    title = label or "all configurations"
    if np.isfinite(total).any():
        best = int(np.nanargmin(total))
        ax.plot(x[best], total[best], marker="v", color="black", markersize=8,
                linestyle="none")
        title += f"\ncheapest {format_usd_short(total[best])}/month at {x[best]:g} GPUs"
    fitted_title(ax, title, fontsize=10)
    ax.yaxis.set_major_formatter(usd_axis())
    if ylabel:
        ax.set_ylabel("USD per month")
    _gpu_axis(ax)
    ax.set_ylim(bottom=0)
    return {n for n, _ in layers}


def _dodged_labels(ax: Axes, items: Sequence[tuple[float, float, str, str]]) -> None:
    """Labels ``(x, y, text, color)`` in a column right of the rightmost point, pushed
    apart (in screen space, so log axes work too) to stay readable, each tied to its own
    point by a thin leader."""
    items = sorted((i for i in items if math.isfinite(i[0]) and math.isfinite(i[1]) and i[2]),
                   key=lambda i: i[1])
    if not items:
        return
    # Lay the figure out first, so that the screen positions are the final ones (constrained
    # layout would otherwise move the points after the labels were spaced in points).
    ax.get_figure(root=True).draw_without_rendering()
    to_points = 72.0 / ax.figure.dpi
    screen = [ax.transData.transform((x, y)) * to_points for x, y, _, _ in items]
    column = max(pt[0] for pt in screen) + 14.0
    placed: list[float] = []
    for pt in screen:
        placed.append(max(pt[1], placed[-1] + 11.0) if placed else pt[1])
    for (x, y, text, color), pt, y_text in zip(items, screen, placed, strict=True):
        ax.annotate(text, (x, y), xytext=(column - pt[0], y_text - pt[1]),
                    textcoords="offset points", va="center", fontsize=8.5, color=color,
                    fontweight="bold", annotation_clip=False,
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6,
                                "shrinkA": 0, "shrinkB": 2})


# --------------------------------------------------------------------------- service


def _class_keys(rows: Sequence[Row], suffix: str) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for key in row:
            name = key.removesuffix(".mean")
            if key.endswith(".mean") and name.endswith(suffix) and name.count(".") == 1:
                keys.append(name)
    return list(dict.fromkeys(keys))


def _lines(ax: Axes, groups: Mapping[str, Sequence[Row]], key: str) -> None:
    """One line with CI bars per group, labelled with the group (for the legend)."""
    for i, (label, rows) in enumerate(groups.items()):
        color = _PALETTE[i % len(_PALETTE)]
        x, mean, err = _xy(rows, key)
        ax.errorbar(x, mean, yerr=err, color=color, marker="o", markersize=3, capsize=2,
                    linewidth=1.4, label=label or "all configurations")


def _series_legend(fig: Figure, ax: Axes, groups: Mapping[str, Sequence[Row]],
                   series_keys: Sequence[str]) -> None:
    """One legend for every panel, below them, when there is more than one line."""
    if len(groups) > 1:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8.5,
                   ncols=min(len(groups), 4), title_fontsize=9,
                   title=", ".join(_short(k) for k in series_keys) or None)


def plot_service_vs_gpus(rows: Sequence[Row], path: str | os.PathLike[str], *,
                         series_keys: Sequence[str] = (), svg: bool = False) -> Path:
    """Overflow share and p99 TTFT per traffic class vs GPU count (95% CI bars)."""
    groups = _series(rows, series_keys)
    ttft = _class_keys(rows, ".ttft_p99_s")
    fig = Figure(figsize=(4.6 * (1 + len(ttft)) + 2.5, 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 1 + len(ttft), squeeze=False)).ravel()
    axes[0].set_ylim(0, max(0.01, 1.1 * max(
        (v for r in rows if math.isfinite(v := _num(r, "overflow_share.ci95_high"))),
        default=0.0)))
    _lines(axes[0], groups, "overflow_share")
    axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))
    axes[0].set_ylabel("Requests sent to the API (%)")
    fitted_title(axes[0], "Overflow share")
    for ax, key in zip(axes[1:], ttft, strict=True):
        _log_if_wide(ax, [_num(r, f"{key}.mean") for r in rows])
        _lines(ax, groups, key)
        ax.set_ylabel("p99 TTFT (seconds)")
        fitted_title(ax, f"p99 time to first token: {key.split('.')[0]}")
    for ax in axes:
        _gpu_axis(ax)
    _series_legend(fig, axes[0], groups, series_keys)
    fitted_title(fig, "Service vs fleet size (mean and 95% CI across replications)")
    return write_figure(fig, path, svg=svg)


def _log_if_wide(ax: Axes, values: Sequence[float], *, axis: str = "y") -> None:
    """A log axis when values span more than 30x (symlog when some are zero)."""
    finite = [v for v in values if math.isfinite(v) and v >= 0]
    positive = [v for v in finite if v > 0]
    if not positive or max(positive) / min(positive) <= 30:
        return
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if len(positive) < len(finite):
        setter("symlog", linthresh=min(positive))
    else:
        setter("log")


def plot_utilization_vs_gpus(rows: Sequence[Row], path: str | os.PathLike[str], *,
                             series_keys: Sequence[str] = (), svg: bool = False) -> Path:
    """GPU token utilization and busy fraction vs GPU count (95% CI bars)."""
    groups = _series(rows, series_keys)
    fig = Figure(figsize=(11.5, 4.6), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = {"gpu_utilization": ("Token utilization (tokens served / capacity)",
                                  "Token utilization (%)"),
              "gpu_busy_fraction": ("Busy fraction (time prefilling or decoding)",
                                    "Busy (% of GPU time)")}
    for ax, (key, (title, ylabel)) in zip(axes, panels.items(), strict=True):
        top = max((v for r in rows if math.isfinite(v := _num(r, f"{key}.ci95_high"))),
                  default=1.0)
        ax.set_ylim(0, max(1.05, 1.05 * top))  # work draining after the horizon can pass 1
        _lines(ax, groups, key)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel(ylabel)
        fitted_title(ax, title)
        _gpu_axis(ax)
    _series_legend(fig, axes[0], groups, series_keys)
    fitted_title(fig, "GPU utilization vs fleet size (mean and 95% CI across replications)")
    return write_figure(fig, path, svg=svg)


def plot_capacity(rows: Sequence[Row], folder: str | os.PathLike[str], *,
                  grid_keys: Sequence[str], svg: bool = False) -> list[Path]:
    """The three capacity plots of a sweep summary (none if the GPU count never varies)."""
    gpus = {round(_gpus(r), 9) for r in rows if math.isfinite(_gpus(r))}
    if len(gpus) < 2:
        return []
    series_keys = [k for k in grid_keys if k != "fleet.replicas"]
    folder = Path(folder)
    return [plot_cost_vs_gpus(rows, folder / "cost_vs_gpus", series_keys=series_keys, svg=svg),
            plot_service_vs_gpus(rows, folder / "service_vs_gpus", series_keys=series_keys,
                                 svg=svg),
            plot_utilization_vs_gpus(rows, folder / "utilization_vs_gpus",
                                     series_keys=series_keys, svg=svg)]


# ---------------------------------------------------------------------------- pareto


def _frontier(points: Sequence[Row]) -> list[Row]:
    """Points not beaten on both mean cost and mean latency, by latency."""
    ok = sorted((p for p in points if math.isfinite(p["cost"]) and math.isfinite(p["latency"])),
                key=lambda p: (p["latency"], p["cost"]))
    out, best = [], math.inf
    for p in ok:
        if p["cost"] < best:
            out.append(p)
            best = p["cost"]
    return out


def _pareto_errorbars(ax: Axes, points: Sequence[Row], *, feasible: bool,
                      skip: Sequence[str] = ()) -> None:
    """The points (feasible or not) with 95% CI bars, each labelled unless in ``skip``
    (the recommended and GPU-only points, which have their own labels)."""
    pts = [p for p in points if bool(p["feasible"]) == feasible]
    if not pts:
        return
    x = np.array([p["latency"] for p in pts])
    y = np.array([p["cost"] for p in pts])
    # Latencies are non-negative: a t interval reaching below zero is drawn down to zero.
    xerr = np.clip(np.nan_to_num([[min(p["latency"] - p["latency_low"], p["latency"])
                                   for p in pts],
                                  [p["latency_high"] - p["latency"] for p in pts]]), 0, None)
    yerr = np.clip(np.nan_to_num([[p["cost"] - p["cost_low"] for p in pts],
                                  [p["cost_high"] - p["cost"] for p in pts]]), 0, None)
    color = "#1f77b4" if feasible else "#9e9e9e"
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=color, ecolor=color,
                markerfacecolor=color if feasible else "white", markersize=5, capsize=2,
                linewidth=1)
    for p in pts:
        if p["label"] in skip:
            continue
        # up and right of the point: clear of its vertical and horizontal error bars
        ax.annotate(p["label"], (p["latency"], p["cost"]), xytext=(3, 3), ha="left",
                    va="bottom", textcoords="offset points", fontsize=7.5, color=color)


def plot_pareto(points: Sequence[Row], path: str | os.PathLike[str], *,
                latency_key: str, recommended: Row | None = None,
                gpu_only: Row | None = None, api_only_usd: float = math.nan,
                slo_latency_s: float | None = None, svg: bool = False) -> Path:
    """Monthly cost vs p99 latency of every evaluated configuration (95% CI bars).

    Each point is a mapping with ``label``, ``cost``, ``cost_low``, ``cost_high``,
    ``latency``, ``latency_low``, ``latency_high`` (seconds) and ``feasible``;
    ``recommended`` and ``gpu_only`` are such mappings too.
    """
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.subplots()
    named = [p["label"] for p in (recommended, gpu_only) if p is not None]
    _pareto_errorbars(ax, points, feasible=False, skip=named)
    _pareto_errorbars(ax, points, feasible=True, skip=named)
    front = _frontier(points)
    if len(front) > 1:
        ax.plot([p["latency"] for p in front], [p["cost"] for p in front], color="#1f77b4",
                linewidth=1, alpha=0.5, linestyle="--")
    if recommended is not None:
        ax.plot(recommended["latency"], recommended["cost"], marker="*", markersize=18,
                color="#2ca02c", markeredgecolor="black", linestyle="none")
        ax.annotate(f"recommended: {recommended['label']}\n"
                    f"{format_usd_short(recommended['cost'])}/month",
                    (recommended["latency"], recommended["cost"]), xytext=(12, 12),
                    textcoords="offset points", fontsize=9, color="#2ca02c",
                    fontweight="bold")
    if gpu_only is not None and math.isfinite(gpu_only.get("cost", math.nan)) and (
            recommended is None or gpu_only["label"] != recommended["label"]):
        ax.plot(gpu_only["latency"], gpu_only["cost"], marker="s", markersize=9,
                color="#8c564b", linestyle="none")
        ax.annotate(f"GPU-only: {gpu_only['label']}\n{format_usd_short(gpu_only['cost'])}/month",
                    (gpu_only["latency"], gpu_only["cost"]), xytext=(10, -22),
                    textcoords="offset points", fontsize=8.5, color="#8c564b")
    if math.isfinite(api_only_usd):
        ax.axhline(api_only_usd, color="#f58518", linestyle="--", linewidth=1.3)
        ax.text(0.01, api_only_usd, f" API-only {format_usd_short(api_only_usd)}/month",
                transform=ax.get_yaxis_transform(), va="bottom", fontsize=9, color="#f58518")
    if slo_latency_s is not None:
        ax.axvline(slo_latency_s, color="#d62728", linestyle=":", linewidth=1.2)
        ax.text(slo_latency_s, 0.98, f" SLO {slo_latency_s:g} s", color="#d62728",
                transform=ax.get_xaxis_transform(), va="top", fontsize=9)
    _log_if_wide(ax, [p["latency"] for p in points], axis="x")
    ax.set_xlim(left=0 if ax.get_xscale() != "log" else None)
    ax.yaxis.set_major_formatter(usd_axis())
    ax.set_xlabel(f"{_latency_name(latency_key)} (seconds; mean and 95% CI)")
    ax.set_ylabel("Monthly cost (USD; mean and 95% CI)")
    ax.set_title("Cost vs latency of every configuration evaluated\n"
                 "filled: meets every SLO; hollow: misses one; line: cost/latency frontier",
                 fontsize=11)
    ax.grid(alpha=0.3, which="both")
    return write_figure(fig, path, svg=svg)


def _latency_name(key: str) -> str:
    """``interactive.ttft_p99_s`` -> ``p99 time to first token, interactive``."""
    cls, _, metric = key.rpartition(".")
    parts = metric.removesuffix("_s").split("_")
    what = {"ttft": "time to first token", "e2e": "end-to-end latency", "tpot":
            "time per output token", "wait": "wait for a GPU"}.get(parts[0])
    if what is None or len(parts) != 2:
        return key
    return f"{parts[1]} {what}" + (f", {cls}" if cls else "")


# ------------------------------------------------------------------------- breakeven


def plot_breakeven(curves: Mapping[str, Sequence[Row]], crossings: Sequence[Row],
                   path: str | os.PathLike[str], *, static: Sequence[Row] = (),
                   svg: bool = False) -> Path:
    """Cost per 1M tokens vs monthly volume (log-log), one line per plan.

    ``curves`` maps a plan name to points ``{volume, usd_per_1m, low, high}``;
    ``crossings`` are ``{name, volume, low, high}`` break-even volumes; ``static`` an
    optional ``{volume, usd_per_1m}`` line of the fixed-cost arithmetic.
    """
    colors = {"API-only": "#f58518", "GPU-only": "#4c78a8", "hybrid": "#2ca02c"}
    fig = Figure(figsize=(10, 6), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ends: list[tuple[float, float, str, str]] = []
    for i, (name, pts) in enumerate(curves.items()):
        color = colors.get(name, _PALETTE[i % len(_PALETTE)])
        x = np.array([p["volume"] for p in pts])
        y = np.array([p["usd_per_1m"] for p in pts])
        ax.fill_between(x, [p["low"] for p in pts], [p["high"] for p in pts], color=color,
                        alpha=0.18, linewidth=0)
        ax.plot(x, y, color=color, marker="o", markersize=3.5, linewidth=1.8)
        ends.append((float(x[-1]), float(y[-1]), name, color))
    if static:
        x = np.array([p["volume"] for p in static])
        y = np.array([p["usd_per_1m"] for p in static])
        ax.plot(x, y, color="grey", linestyle=":", linewidth=1.3)
        ends.append((float(x[-1]), float(y[-1]), "fixed cost / volume (static)", "grey"))
    for k, c in enumerate(crossings):
        color = colors.get(c["name"], "black")
        ax.axvspan(c.get("low", c["volume"]), c.get("high", c["volume"]), color=color,
                   alpha=0.08)
        ax.axvline(c["volume"], color=color, linestyle="--", linewidth=1)
        low, high = (format_count(c.get(end, c["volume"])) for end in ("low", "high"))
        ax.text(c["volume"], 0.97 - 0.06 * k,
                f" {c['name']} break-even {format_count(c['volume'])} (CI {low}-{high})",
                transform=ax.get_xaxis_transform(), color=color, fontsize=9, va="top")
    _dodged_labels(ax, ends)
    ax.xaxis.set_major_formatter(count_axis())
    ax.yaxis.set_major_formatter(usd_axis())
    ax.set_xlabel("Monthly token volume (tokens per month, input + output)")
    ax.set_ylabel("Fully loaded cost per 1M tokens (USD)")
    ax.set_title("Cost per token vs volume (bands: p5-p95 across replications)")
    ax.grid(alpha=0.3, which="both")
    return write_figure(fig, path, svg=svg)

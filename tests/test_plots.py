"""Layout of every PNG capsim draws, checked on the rendered figure (synthetic data).

For each plot function the figure is captured as it is saved, drawn again at the saved
resolution, and every piece of text measured with matplotlib's own renderer:

* every title, axis label, tick label, legend, annotation and note lies inside the
  figure (nothing clipped at an edge);
* no two of them overlap (a label on a title, a peak note on the panel title, two tick
  labels run together, a legend over a label);
* no text of one panel lies on another panel's plotting area (direct labels running into
  the neighbouring panel).

What this cannot check -- text over a data line, a legend over data inside its own axes
-- was checked by looking at the PNGs (see the report of issue #22).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from sim.report import capacity_plots, litellm, plots

# ------------------------------------------------------------------ the layout checks


def _ticklabels(ax: Axes, which: str = "xy") -> list[Text]:
    """The tick labels actually drawn: major ticks inside the view interval, non-empty."""
    out = []
    for name, axis, limits in (("x", ax.xaxis, ax.get_xlim()), ("y", ax.yaxis, ax.get_ylim())):
        if name not in which:
            continue
        low, high = sorted(limits)
        span = high - low
        for tick in axis.get_major_ticks():
            if not low - 1e-9 * span <= tick.get_loc() <= high + 1e-9 * span:
                continue
            for label in (tick.label1, tick.label2):
                if label.get_visible() and label.get_text():
                    out.append(label)
    return out


def _texts(fig: Figure) -> list[tuple[str, Axes | None, object]]:
    """(kind, owning axes, artist) of every visible piece of text; a legend is one box."""
    items: list[tuple[str, Axes | None, object]] = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        items.append(("suptitle", None, fig._suptitle))
    items += [("figure text", None, t) for t in fig.texts
              if t is not fig._suptitle and t.get_visible() and t.get_text()]
    items += [("figure legend", None, leg) for leg in fig.legends]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for t in (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label):
            if t.get_visible() and t.get_text():
                items.append(("title/label", ax, t))
        items += [("text", ax, t) for t in ax.texts if t.get_visible() and t.get_text()]
        items += [("tick", ax, t) for t in _ticklabels(ax)]
        if ax.get_legend() is not None:
            items.append(("legend", ax, ax.get_legend()))
    return items


def _box(artist, renderer) -> Bbox:
    """The text's own box (an annotation's leader line is not text: left out)."""
    if isinstance(artist, Text):
        return Text.get_window_extent(artist, renderer)
    return artist.get_window_extent(renderer)


def _twins(a: Axes, b: Axes) -> bool:
    return a.bbox.bounds == b.bbox.bounds


def _describe(kind: str, artist) -> str:
    text = artist.get_text() if isinstance(artist, Text) else type(artist).__name__
    return f"{kind} {text!r}"


def layout_problems(fig: Figure) -> list[str]:
    """Texts outside the figure, overlapping each other, or on another panel's area."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox.padded(1.0)
    items = [(k, ax, a, _box(a, renderer)) for k, ax, a in _texts(fig)]
    problems = []
    for kind, _ax, artist, box in items:
        if not (page.containsx(box.x0) and page.containsx(box.x1)
                and page.containsy(box.y0) and page.containsy(box.y1)):
            problems.append(f"{_describe(kind, artist)} leaves the figure: {box.bounds} "
                            f"vs {fig.bbox.bounds}")
    for (k1, ax1, a1, b1), (k2, ax2, a2, b2) in itertools.combinations(items, 2):
        if k1 == k2 == "tick" and ax1 is not ax2:
            continue  # (another panel's ticks: only their own collisions matter)
        if _overlap(b1, b2):
            problems.append(f"{_describe(k1, a1)} overlaps {_describe(k2, a2)}")
    for ax in fig.axes:  # two ticks of one axis with the same label: unreadable
        for axis in ("x", "y"):
            labels = [t.get_text() for t in _ticklabels(ax, axis)]
            if len(set(labels)) < len(labels):
                problems.append(f"{axis} tick labels repeat: {labels}")
    for kind, owner, artist, box in items:
        for ax in fig.axes:
            if (ax is owner or not ax.get_visible() or (owner is not None and _twins(ax, owner))
                    or kind == "legend"):
                continue
            if _overlap(box, ax.get_window_extent(renderer)):
                problems.append(f"{_describe(kind, artist)} lies on another panel")
    return problems


def _overlap(a: Bbox, b: Bbox, tolerance_px: float = 1.0) -> bool:
    """Whether two boxes overlap by more than ``tolerance_px`` in both directions."""
    dx = min(a.x1, b.x1) - max(a.x0, b.x0)
    dy = min(a.y1, b.y1) - max(a.y0, b.y0)
    return dx > tolerance_px and dy > tolerance_px


@pytest.fixture
def saved(monkeypatch) -> list[Figure]:
    """Every figure saved while the test runs (PNG, SVG, through any path)."""
    figures: list[Figure] = []
    original = Figure.savefig

    def recording(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return figures


def check(saved: list[Figure], draw: Callable[[], object]) -> None:
    draw()
    assert saved, "the plot function saved no figure"
    for fig in saved:
        problems = layout_problems(fig)
        assert not problems, "\n".join(problems)
    saved.clear()


# --------------------------------------------------------------------- synthetic data


def _timeseries(days: int = 2, replications: int = 3, bin_s: float = 300.0,
                pools: tuple[str, ...] = (), api_scale: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(0.0, days * 86400.0, bin_s)
    hour = (t % 86400.0) / 3600.0
    load = 0.5 + 0.45 * np.sin((hour - 8) / 24 * 2 * np.pi)  # peak near the top of the axes
    frames = []
    for rep in range(replications):
        arrivals = rng.poisson(100 * load)
        frame = {"replication": rep, "t_s": t, "bin_s": bin_s, "arrivals": arrivals,
                 "to_api": rng.binomial(arrivals, api_scale * np.clip(load - 0.6, 0, 1)),
                 "failed": np.zeros_like(arrivals),
                 "utilization": np.clip(load + rng.normal(0, 0.03, t.size), 0, 1),
                 "replicas_up": 2 + np.round(2 * load), "replicas_billed": 3 + np.round(2 * load)}
        for i, pool in enumerate(pools):
            frame[f"replicas_billed.{pool}"] = (i + 1) * (1 + np.round(load))
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def _cost_rows(n: int = 12) -> list[dict]:
    rng = np.random.default_rng(2)
    rows = []
    for _ in range(n):
        row = {"cost.compute_usd": 23_040.0, "cost.engineering_usd": rng.uniform(9_375, 12_500),
               "cost.infra_usd": rng.uniform(250, 1_000), "cost.reliability_usd": 12.0,
               "cost.api_usd": rng.uniform(30, 60), "cost.api_only_usd": rng.normal(3_200, 50)}
        row["cost.total_usd"] = sum(row[f"cost.{k}_usd"] for k in
                                    ("compute", "engineering", "infra", "reliability", "api"))
        rows.append(row)
    return rows


def _entry(key: str, mean: float, half: float) -> dict:
    return {f"{key}.mean": mean, f"{key}.ci95_low": max(mean - half, 0.0),
            f"{key}.ci95_high": mean + half}


def _summary_rows(thresholds=(0.5, 2.0, 8.0), scales=(1, 2, 4)) -> list[dict]:
    """A sweep's summary rows: replicas 1..6 x the other grid fields."""
    rows = []
    for thr, scale, replicas in itertools.product(thresholds, scales, range(1, 7)):
        gpus = 2 * replicas
        compute = 2_250.0 * gpus
        api = 400.0 * scale / replicas * (1 + thr)
        total = compute + 10_900 + 600 + api
        row = {"grid.fleet.replicas": replicas, "grid.overflow.interactive.threshold_s": thr,
               "grid.workload.scale": scale, "replicas.mean": float(replicas),
               "gpus_per_replica.mean": 2.0, "cost.compute_usd.mean": compute,
               "cost.engineering_usd.mean": 10_900.0, "cost.infra_usd.mean": 600.0,
               "cost.api_usd.mean": api, "cost.total_usd.mean": total,
               "cost.total_usd.p5": 0.9 * total, "cost.total_usd.p95": 1.1 * total,
               "cost.api_only_usd.mean": 3_200.0 * scale}
        row.update(_entry("overflow_share", 0.2 * scale / replicas / (1 + thr), 0.01))
        row.update(_entry("interactive.ttft_p99_s", 8.0 / replicas + thr, 0.5))
        row.update(_entry("batch.ttft_p99_s", 20_000.0 * scale / replicas ** 2, 300.0))
        row.update(_entry("gpu_utilization", 0.45 * scale / replicas, 0.02))
        row.update(_entry("gpu_busy_fraction", min(0.99, 0.8 * scale / replicas), 0.02))
        rows.append(row)
    return rows


def _pareto_points() -> list[dict]:
    points = []
    for gpus, latency, cost in ((2, 9.0, 15_800.0), (4, 4.7, 20_000.0), (6, 3.2, 24_200.0),
                                (12, 2.0, 36_900.0)):
        points.append({"label": f"{gpus} GPUs", "cost": cost, "cost_low": 0.8 * cost,
                       "cost_high": 1.2 * cost, "latency": latency,
                       "latency_low": 0.85 * latency, "latency_high": 1.1 * latency,
                       "feasible": latency <= 5.0})
    return points


def _litellm_tables(outage: tuple[float, float] | None) -> tuple[pa.Table, pa.Table]:
    names = ("vllm-a", "vllm-b", "openai-mini", "azure-mini")
    rng = np.random.default_rng(3)
    rows, cooldowns = [], []
    for name in names:
        for t in np.arange(0.0, 2 * 3600.0, 60.0):
            down = outage is not None and outage[0] <= t < outage[1] and name == "vllm-b"
            rows.append({"deployment": name, "bin_start_s": float(t),
                         "ok": 0 if down else int(rng.poisson(20)),
                         "rate_limit": 0, "unavailable": int(rng.poisson(8)) if down else 0,
                         "timeout": 0})
        if name == "vllm-b" and outage is not None:
            cooldowns.append({"deployment": name, "start_s": outage[0],
                              "end_s": outage[0] + 30.0})
    if not cooldowns:
        cooldowns.append({"deployment": "vllm-a", "start_s": 100.0, "end_s": 130.0})
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(cooldowns)


# ------------------------------------------------------------------------------ tests


def test_the_checker_sees_an_overlap_and_a_clipped_title(saved, tmp_path):
    """The layout check fails where it should: a note on a title, a title past the edge."""
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1])
    ax.set_title("A title")
    ax.annotate("on the title", (0.5, 1.0), xycoords="axes fraction", xytext=(0, 8),
                textcoords="offset points", ha="center")
    fig.suptitle("x" * 200)
    plots.save_figure(fig, tmp_path / "bad.png")
    problems = layout_problems(fig)
    assert any("overlaps" in p and "on the title" in p for p in problems), problems
    assert any("leaves the figure" in p and "suptitle" in p for p in problems), problems


@pytest.mark.parametrize("replications, api_scale", [(1, 1.0), (3, 1.0), (3, 0.02)])
def test_day_profile(saved, tmp_path, replications, api_scale):
    """(api_scale 0.02: an overflow share below 1%, whose ticks must still differ)"""
    ts = _timeseries(replications=replications, api_scale=api_scale)
    check(saved, lambda: plots.plot_day_profile(ts, tmp_path / "day.png"))


@pytest.mark.parametrize("api_scale", [1.0, 0.02])
def test_fleet_day_and_comparison(saved, tmp_path, api_scale):
    ts = _timeseries(pools=("base", "spot-burst", "reserved"), api_scale=api_scale)
    check(saved, lambda: plots.plot_fleet_day(ts, tmp_path / "fleet_day.png"))
    series = {"trough-hybrid": (_timeseries(), None), "peak-fixed": (_timeseries(), 4.0),
              "autoscaled-with-a-long-name": (ts, None)}
    check(saved, lambda: plots.plot_fleet_comparison(series, tmp_path / "comparison.png"))


def test_latency_cdfs(saved, tmp_path):
    rng = np.random.default_rng(1)
    cdfs = {}
    for label, scale in (("interactive/gpu", 0.3), ("interactive/api", 2.5),
                         ("batch/gpu", 9_000.0), ("batch/api", 3.0)):
        x = np.sort(rng.lognormal(np.log(scale), 0.6, 500))
        cdfs[label] = (x, np.arange(1, x.size + 1) / x.size)
    check(saved, lambda: plots.plot_latency_cdfs(cdfs, tmp_path / "ttft.png"))


@pytest.mark.parametrize("n", [3, 20])
def test_cost_breakdown(saved, tmp_path, n):
    check(saved, lambda: plots.plot_cost_breakdown(_cost_rows(n), tmp_path / "cost.png"))


def test_workload(saved, tmp_path):
    hours = np.arange(7 * 24)
    stats = {"name": "spiky-chat", "requests_per_hour": 3_000 + 1_000 * np.sin(hours / 4),
             "tokens_per_hour": 4e6 + 1e6 * np.sin(hours / 4)}
    check(saved, lambda: plots.plot_workload(stats, tmp_path / "workload.png"))


@pytest.mark.parametrize("grid", ["one", "nine"])
def test_capacity_plots(saved, tmp_path, grid):
    """Nine panels (three columns) and a single one (the narrowest figure)."""
    rows = _summary_rows() if grid == "nine" else _summary_rows((2.0,), (1,))
    keys = ["fleet.replicas", "overflow.interactive.threshold_s", "workload.scale"]
    check(saved, lambda: capacity_plots.plot_capacity(rows, tmp_path, grid_keys=keys))


def test_pareto(saved, tmp_path):
    points = _pareto_points()
    check(saved, lambda: capacity_plots.plot_pareto(
        points, tmp_path / "pareto", latency_key="interactive.ttft_p99_s",
        recommended=points[2], gpu_only=points[3], api_only_usd=3_170.0, slo_latency_s=5.0))


def test_pareto_names_the_latency_with_its_unit(saved, tmp_path):
    points = _pareto_points()
    capacity_plots.plot_pareto(points, tmp_path / "pareto", latency_key="interactive.ttft_p99_s")
    xlabel = saved[0].axes[0].get_xlabel()
    assert "p99 time to first token, interactive" in xlabel and "seconds" in xlabel


def test_breakeven(saved, tmp_path):
    volumes = np.geomspace(1e8, 1e10, 6)
    curves = {name: [{"volume": v, "usd_per_1m": c, "low": 0.9 * c, "high": 1.1 * c}
                     for v, c in zip(volumes, cost, strict=True)]
              for name, cost in (("API-only", np.full(6, 4.4)),
                                 ("GPU-only", 2.6e4 / (volumes / 1e6)),
                                 ("hybrid", np.minimum(4.4, 2.0e4 / (volumes / 1e6)) + 0.2))}
    crossings = [{"name": "GPU-only", "volume": 5.9e9, "low": 4.8e9, "high": 7.1e9},
                 {"name": "hybrid", "volume": 4.6e9, "low": 3.9e9, "high": 5.5e9}]
    static = [{"volume": v, "usd_per_1m": 2.4e4 / (v / 1e6)} for v in volumes]
    check(saved, lambda: capacity_plots.plot_breakeven(curves, crossings,
                                                       tmp_path / "breakeven", static=static))


@pytest.mark.parametrize("outage", [(3600.0, 4800.0), None])
def test_incident(saved, tmp_path, outage):
    timeline, cooldowns = _litellm_tables(outage)
    window = litellm.incident_window([outage] if outage else [], timeline)
    check(saved, lambda: litellm.plot_incident(timeline, cooldowns, window,
                                               tmp_path / "incident.png",
                                               title="litellm-spiky-hybrid"))


def test_every_plot_function_is_checked():
    """A new plot function must get a layout test here."""
    tested = {"plot_day_profile", "plot_fleet_day", "plot_fleet_comparison",
              "plot_latency_cdfs", "plot_cost_breakdown", "plot_workload", "plot_capacity",
              "plot_cost_vs_gpus", "plot_service_vs_gpus", "plot_utilization_vs_gpus",
              "plot_pareto", "plot_breakeven", "plot_incident"}
    public = {name for module in (plots, capacity_plots, litellm)
              for name in module.__all__ if name.startswith("plot_")}
    assert public <= tested, sorted(public - tested)

"""The text summary and the PNG plots of ``capsim run``, from hand-built data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from rich.console import Console

from sim.core.stats import summarize
from sim.report.formats import format_count, format_seconds, format_usd
from sim.report.plots import plot_cost_breakdown, plot_day_profile, plot_latency_cdfs
from sim.report.summary import render_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _entry(mean, half=0.0, **extra):
    return {"mean": mean, "ci95_low": mean - half, "ci95_high": mean + half, "std": half,
            "n": 20, **extra}


def _cost(mean, half, p5, p50, p95):
    return _entry(mean, half, p5=p5, p50=p50, p95=p95)


SUMMARY = {
    "requests_arrived": _entry(1_200_000, 5_000),
    "tokens_per_month": _entry(2.5e9, 1e7),
    "gpu_utilization": _entry(0.631, 0.004),
    "gpu_busy_fraction": _entry(0.82, 0.01),
    "overflow_share": _entry(0.12, 0.002),
    "failure_share": _entry(0.001, 0.0002),
    "chat.requests": _entry(1_000_000, 4_000),
    "chat.overflow_share": _entry(0.10, 0.002),
    "chat.failure_share": _entry(0.0, 0.0),
    "chat.slo_attainment": _entry(0.987, 0.001),
    "chat.ttft_p50_s": _entry(0.085, 0.002),
    "chat.ttft_p99_s": _entry(1.24, 0.05),
    "chat.e2e_p50_s": _entry(6.5, 0.1),
    "chat.e2e_p99_s": _entry(21.0, 0.5),
    "chat.wait_mean_s": _entry(0.031, 0.001),
    "chat.gpu.ttft_p99_s": _entry(0.9, 0.02),
    "chat.api.ttft_p99_s": _entry(2.2, 0.1),
    "chat.gpu.e2e_p99_s": _entry(19.0, 0.4),
    "chat.api.e2e_p99_s": _entry(25.0, 0.6),
    "batch.requests": _entry(200_000, 1_000),
    "batch.overflow_share": _entry(0.0),
    "batch.slo_attainment": _entry(1.0),
    "batch.ttft_p50_s": _entry(12.0, 0.5),
    "batch.ttft_p99_s": _entry(240.0, 10.0),
    "batch.e2e_p99_s": {"mean": math.nan, "ci95_low": math.nan, "ci95_high": math.nan,
                        "std": math.nan, "n": 0},
    "batch.gpu.ttft_p99_s": _entry(240.0, 10.0),
    "cost.compute_usd": _cost(23_040, 0, 23_040, 23_040, 23_040),
    "cost.engineering_usd": _cost(10_937.5, 120, 9_500, 10_900, 12_300),
    "cost.infra_usd": _cost(625, 30, 290, 620, 960),
    "cost.reliability_usd": _cost(12.5, 1.0, 8.0, 12.0, 17.0),
    "cost.api_usd": _cost(1_430, 45, 1_200, 1_420, 1_700),
    "cost.fixed_usd": _cost(34_602.5, 130, 33_200, 34_600, 36_000),
    "cost.total_usd": _cost(36_045, 140, 34_500, 36_000, 37_600),
    "cost.usd_per_1m_tokens": _cost(14.42, 0.1, 13.8, 14.4, 15.0),
    "cost.api_only_usd": _cost(11_000, 60, 10_500, 11_000, 11_500),
    "cost.savings_usd": _cost(-25_045, 150, -26_500, -25_000, -23_600),
    "cost.breakeven_tokens_per_month": _cost(7.86e9, 4e7, 7.5e9, 7.9e9, 8.2e9),
}

META = {"name": "chat-hybrid", "profile": "h100-llama3-70b", "replicas": 4,
        "gpus_per_replica": 2, "pricing": "on_demand", "horizon_s": 7 * 86400.0,
        "replications": 20, "seed": 7, "classes": ["chat", "batch"],
        "notes": ["trace cut to the first 7 days"], "api_only_model": "gpt-4o"}


def _render(summary, meta) -> str:
    console = Console(record=True, width=120)
    render_summary(summary, meta, console)
    return console.export_text()


def test_summary_shows_the_key_figures():
    text = _render(SUMMARY, META)
    for expected in [
        "chat-hybrid", "7d horizon", "20 replications", "seed 7",
        "h100-llama3-70b", "4 replicas × 2 GPUs = 8 GPUs", "on-demand pricing",
        "5.14 ± 0.02 M requests/month",  # 1.2 M in 7 days, scaled to 30 days
        "2.50 ± 0.01 B tokens/month",
        "utilization 63.1 ± 0.4%", "12.0 ± 0.2% of requests served by the API",
        "85±2 ms", "1.24±0.05 s", "21.0±0.5 s", "98.7±0.1%", "4.29±0.02 M",
        "GPU fleet", "900±20 ms", "2.20±0.10 s", "4.0±0.2 min",
        "$23,040", "$10,938 ± 120", "$36,045 ± 140", "$34,500", "$37,600",
        "$14.42 ± 0.10", "API-only alternative (gpt-4o)", "$11,000 ± 60",
        "-$25,045 ± 150", "7.86 ± 0.04 B",
        "Hybrid costs $25,045/month more than API-only (gpt-4o)",
        "break-even of 7.86 B",
        "scaled from the 7d horizon", "trace cut to the first 7 days",
    ]:
        assert expected in text, expected


def test_missing_and_nan_figures_show_a_dash():
    text = _render(SUMMARY, META)
    batch_line = next(line for line in text.splitlines() if line.strip().startswith("batch"))
    assert batch_line.split()[-2:] == ["-", "-"]  # e2e p50 missing, e2e p99 NaN
    assert "nan" not in text.lower()
    # batch never went to the API: no API row for it, only chat's
    api_rows = [line for line in text.splitlines() if line.split()[:1] == ["API"]]
    assert len(api_rows) == 1


def test_one_replication_says_there_is_no_interval():
    rows = [{"requests_arrived": 100, "tokens_per_month": 1e6, "cost.total_usd": 5_000.0,
             "cost.savings_usd": 1_000.0, "cost.api_only_usd": 6_000.0}]
    meta = {**META, "replications": 1, "horizon_s": 30 * 86400.0, "notes": []}
    text = _render(summarize(rows), meta)
    assert "no confidence intervals" in text
    assert "Hybrid saves $1,000/month" in text
    assert "±" not in text.split("\n", 2)[2]  # nothing after the header has an interval


def test_savings_straddling_zero_is_no_clear_difference():
    summary = {**SUMMARY, "cost.savings_usd": _cost(100, 400, -500, 100, 700)}
    assert "no clear difference" in _render(summary, META)


def test_formatters():
    assert format_usd(13_225) == "$13,225" and format_usd(2.154) == "$2.15"
    assert format_usd(-250) == "-$250" and format_usd(math.nan) == "-"
    assert format_seconds(0.0042) == "4.2 ms" and format_seconds(0.25) == "250 ms"
    assert format_seconds(3.0) == "3.00 s" and format_seconds(600) == "10.0 min"
    assert format_count(3.006e9) == "3.01 B" and format_count(812) == "812"


# ---------------------------------------------------------------------------- plots


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    assert not path.with_name(path.name + ".tmp").exists()


def _timeseries(days=3, replications=3, bin_s=300.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frames = []
    t = np.arange(0.0, days * 86400.0, bin_s)
    hour = (t % 86400.0) / 3600.0
    load = 0.5 + 0.4 * np.sin((hour - 8) / 24 * 2 * np.pi)
    for rep in range(replications):
        arrivals = rng.poisson(100 * load)
        to_api = rng.binomial(arrivals, np.clip(load - 0.6, 0, 1))
        frames.append(pd.DataFrame({
            "replication": rep, "t_s": t, "bin_s": bin_s, "arrivals": arrivals,
            "to_api": to_api, "failed": np.zeros_like(arrivals),
            "utilization": np.clip(load + rng.normal(0, 0.03, t.size), 0, 1),
            "running_mean": 10 * load, "queue_mean": np.maximum(load - 0.8, 0) * 5}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("as_arrow", [False, True])
def test_day_profile_writes_a_png(tmp_path, as_arrow):
    ts = _timeseries()
    if as_arrow:
        ts = pa.Table.from_pandas(ts)
    path = tmp_path / "day.png"
    plot_day_profile(ts, path)
    _assert_png(path)


def test_day_profile_with_one_replication_and_empty_bins(tmp_path):
    ts = _timeseries(days=1, replications=1)
    ts.loc[ts.index[:20], "arrivals"] = 0
    ts.loc[ts.index[:20], "to_api"] = 0
    path = tmp_path / "day1.png"
    plot_day_profile(ts, str(path))
    _assert_png(path)


def test_latency_cdfs_write_a_png(tmp_path):
    rng = np.random.default_rng(1)
    cdfs = {}
    for label, scale in (("chat/gpu", 0.2), ("chat/api", 0.8), ("batch/gpu", 5.0)):
        x = np.sort(rng.lognormal(np.log(scale), 0.6, 500))
        cdfs[label] = (x, np.arange(1, x.size + 1) / x.size)
    cdfs["empty/api"] = (np.array([]), np.array([]))
    path = tmp_path / "ttft.png"
    plot_latency_cdfs(cdfs, path)
    _assert_png(path)


def test_cost_breakdown_writes_a_png(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for _ in range(20):
        api = float(rng.uniform(1_000, 2_000))
        rows.append({"cost.compute_usd": 23_040.0, "cost.engineering_usd":
                     float(rng.uniform(9_375, 12_500)), "cost.infra_usd":
                     float(rng.uniform(250, 1_000)), "cost.reliability_usd": 12.0,
                     "cost.api_usd": api, "cost.api_only_usd": float(rng.normal(40_000, 500))})
        rows[-1]["cost.total_usd"] = sum(rows[-1][f"cost.{k}_usd"] for k in
                                         ("compute", "engineering", "infra", "reliability",
                                          "api"))
    path = tmp_path / "cost.png"
    plot_cost_breakdown(rows, path)
    _assert_png(path)

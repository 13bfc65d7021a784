"""Monte Carlo summaries: exact values on tiny cases and CI coverage on a known normal."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.histogram import LogHistogram
from sim.core.intervals import key_kind
from sim.core.stats import half_width, summarize, summarize_values


def test_exact_values_on_a_tiny_case():
    rows = [{"x": 11.0, "cost.total_usd": 10.0, "name": "a"},
            {"x": 12.0, "cost.total_usd": 20.0, "name": "b"},
            {"x": 13.0, "cost.total_usd": 30.0, "name": "c"}]
    out = summarize(rows)
    assert set(out) == {"x", "cost.total_usd"}  # the string key is ignored
    x = out["x"]
    assert x["mean"] == 12.0 and x["std"] == 1.0 and x["n"] == 3
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * std / sqrt(n)
    assert x["ci95_low"] == pytest.approx(12.0 - half)
    assert x["ci95_high"] == pytest.approx(12.0 + half)
    assert half_width(x) == pytest.approx(half)
    assert "p5" not in x
    cost = out["cost.total_usd"]
    assert (cost["p5"], cost["p50"], cost["p95"]) == pytest.approx((11.0, 20.0, 29.0))


def test_nan_is_left_out_and_counted():
    rows = [{"lat": 1.0}, {"lat": math.nan}, {"lat": 3.0}, {"other": 1}]
    out = summarize(rows)
    assert out["lat"]["n"] == 2 and out["lat"]["mean"] == 2.0
    assert out["other"]["n"] == 1


def test_all_nan_key_is_reported_empty():
    out = summarize([{"y": math.nan}, {"y": math.nan}])
    assert out["y"]["n"] == 0 and math.isnan(out["y"]["mean"])


def test_one_replication_has_no_interval():
    out = summarize([{"x": 5, "cost.api_usd": 7.0}])
    assert out["x"]["mean"] == 5.0 and out["x"]["n"] == 1
    assert math.isnan(out["x"]["std"])
    assert math.isnan(out["x"]["ci95_low"]) and math.isnan(out["x"]["ci95_high"])
    assert out["cost.api_usd"]["p50"] == 7.0


def test_constant_metric_has_a_zero_width_interval():
    out = summarize_values([4.0, 4.0, 4.0])
    assert out["ci95_low"] == out["ci95_high"] == 4.0 and out["std"] == 0.0


def test_booleans_and_strings_are_ignored():
    out = summarize([{"flag": True, "model": "gpt-4o", "n": np.int64(3)},
                     {"flag": False, "model": "gpt-4o", "n": np.int64(5)}])
    assert set(out) == {"n"} and out["n"]["mean"] == 4.0


def test_ci_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(12345)
    experiments, per_experiment, mu, sigma = 2000, 10, 3.0, 2.0
    covered = 0
    for _ in range(experiments):
        out = summarize([{"x": float(v)} for v in rng.normal(mu, sigma, per_experiment)])
        covered += out["x"]["ci95_low"] <= mu <= out["x"]["ci95_high"]
    coverage = covered / experiments
    se = math.sqrt(0.95 * 0.05 / experiments)
    assert abs(coverage - 0.95) < 4 * se


# ---------------------------------------------------------------- ranges and ties (#22)

def _rows(columns: dict[str, list[float]]) -> list[dict[str, float]]:
    n = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1e7), st.floats(0.0, 50.0)),
                min_size=2, max_size=30))
def test_summarize_keeps_shares_in_zero_one_and_non_negatives_above_zero(values):
    rows = [{"failure_share": f, "interactive.overflow_share": f,
             "batch.slo_attainment": 1.0 - f, "gpu_utilization": f, "cost.api_usd": c,
             "requests_arrived": c, "interactive.ttft_p99_s": q, "chat.wait_mean_s": q}
            for f, c, q in values]
    out = summarize(rows)
    for key, entry in out.items():
        assert entry["ci95_low"] <= entry["mean"] * (1 + 1e-12) + 1e-300, key
        assert entry["ci95_high"] >= entry["mean"] * (1 - 1e-12), key
        assert entry["ci95_low"] >= 0.0, key
        if key_kind(key) == "share":
            assert entry["ci95_high"] <= 1.0, key


def test_summarize_seeded_shares_near_the_bounds():
    # the case: a rare failure whose t interval would start below 0
    rng = np.random.default_rng(7)
    for _ in range(500):
        n = int(rng.integers(2, 25))
        f = rng.binomial(400, rng.uniform(0, 0.01), n) / 400
        out = summarize([{"failure_share": x, "batch.slo_attainment": 1 - x} for x in f])
        for entry in out.values():
            assert 0.0 <= entry["ci95_low"] <= entry["mean"] <= entry["ci95_high"] <= 1.0


def test_histogram_ties_give_an_interval_through_summarize():
    # 20 replications whose batch TTFT medians differ (9,280 to 9,330 s) but fall in one
    # histogram bucket: summarize sees 20 equal values and must not report a zero width
    rng = np.random.default_rng(11)
    rows, exact = [], []
    for _ in range(20):
        values = rng.uniform(9000, 9600, 3000) + rng.uniform(-25, 25)
        h = LogHistogram()
        h.add(values)
        rows.append({"batch.ttft_p50_s": float(h.quantile(0.5)),
                     "batch.e2e_p50_s": float(h.quantile(0.5))})
        exact.append(float(np.median(values)))
    assert len({r["batch.ttft_p50_s"] for r in rows}) == 1  # the ties
    entry = summarize(rows)["batch.ttft_p50_s"]
    assert entry["ci95_high"] > entry["ci95_low"]
    assert entry["ci95_low"] <= np.mean(exact) <= entry["ci95_high"]


def test_truly_identical_replications_keep_a_zero_width_interval():
    out = summarize([{"batch.ttft_p50_s": 0.0, "cost.compute_usd": 23_040.0}] * 5)
    assert out["batch.ttft_p50_s"]["ci95_low"] == out["batch.ttft_p50_s"]["ci95_high"] == 0
    assert out["cost.compute_usd"]["ci95_low"] == out["cost.compute_usd"]["ci95_high"]


def test_sweep_point_summaries_respect_the_ranges():
    import pyarrow as pa

    from sim.study.sweep import Point, summarize_points
    point = Point.of({"fleet.replicas": 2})
    rows = [{"point_id": point.id, "error": None, "failure_share": x,
             "overflow_share": x, "cost.total_usd": 1000 * x}
            for x in (0.0, 0.0, 0.0, 0.012, 0.003)]
    out = summarize_points(pa.Table.from_pylist(rows), [point]).to_pylist()[0]
    for key in ("failure_share", "overflow_share", "cost.total_usd"):
        assert 0 < out[f"{key}.ci95_low"] < out[f"{key}.mean"] < out[f"{key}.ci95_high"]
    assert out["failure_share.ci95_high"] < 1

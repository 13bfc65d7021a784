"""Monte Carlo summaries: exact values on tiny cases and CI coverage on a known normal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.core.stats import half_width, summarize, summarize_values


def test_exact_values_on_a_tiny_case():
    rows = [{"x": 1.0, "cost.total_usd": 10.0, "name": "a"},
            {"x": 2.0, "cost.total_usd": 20.0, "name": "b"},
            {"x": 3.0, "cost.total_usd": 30.0, "name": "c"}]
    out = summarize(rows)
    assert set(out) == {"x", "cost.total_usd"}  # the string key is ignored
    x = out["x"]
    assert x["mean"] == 2.0 and x["std"] == 1.0 and x["n"] == 3
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * std / sqrt(n)
    assert x["ci95_low"] == pytest.approx(2.0 - half)
    assert x["ci95_high"] == pytest.approx(2.0 + half)
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

"""Intervals of a mean over replications that stay in the quantity's range, and histogram
quantiles whose interval is never zero-width from bucket ties (issue #22)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.histogram import LogHistogram
from sim.core.intervals import key_kind, mean_interval, t975

shares = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=40)


@settings(max_examples=400, deadline=None)
@given(shares)
def test_no_share_interval_leaves_zero_one(values):
    mean, low, high, _ = mean_interval(np.asarray(values), "share")
    assert 0.0 <= low <= mean <= high <= 1.0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.0, 1e9, allow_nan=False), min_size=2, max_size=40))
def test_non_negative_intervals_never_go_below_zero(values):
    mean, low, high, _ = mean_interval(np.asarray(values), "nonnegative")
    assert 0.0 <= low <= mean * (1 + 1e-12) and high >= mean * (1 - 1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=40))
def test_summarize_keeps_every_share_key_in_range(values):
    x = np.asarray(values)
    for key, col in (("failure_share", x), ("interactive.slo_attainment", 1 - x),
                     ("gpu_utilization", x), ("retry_rate", x)):
        _, low, high, _ = mean_interval(col, key_kind(key))
        assert 0.0 <= low <= high <= 1.0, key


def test_t_interval_is_kept_where_it_fits():
    x = np.array([0.40, 0.45, 0.50, 0.55, 0.60])
    mean, low, high, std = mean_interval(x, "share")
    half = t975(4) * x.std(ddof=1) / math.sqrt(5)
    assert (low, high) == pytest.approx((mean - half, mean + half))


def test_the_issue_case_of_a_negative_failure_interval():
    # mean 0.3% with a t half-width of 0.5%: the t interval would start at -0.2%
    x = np.array([0.0, 0.0, 0.0, 0.012, 0.003])
    _, t_low_check, _, _ = mean_interval(x, "signed")
    assert t_low_check < 0
    mean, low, high, _ = mean_interval(x, "share")
    assert 0 < low < mean < high < 1
    # the delta-method logit interval: same centre on the logit scale, t * se / (m (1-m))
    h = t975(4) * x.std(ddof=1) / math.sqrt(5) / (mean * (1 - mean))
    assert math.log(high / (1 - high)) - math.log(mean / (1 - mean)) == pytest.approx(h)


def test_key_kinds():
    assert key_kind("interactive.ttft_p99_s") == "quantile"
    assert key_kind("interactive.gpu.e2e_p50_s") == "quantile"
    assert key_kind("e2e_s_p95") == "quantile"
    assert key_kind("overflow_share") == "share"
    assert key_kind("batch.slo_attainment") == "share"
    assert key_kind("cost.savings_usd") == "signed"
    assert key_kind("cost.total_usd") == "nonnegative"
    assert key_kind("interactive.ttft_mean_s") == "nonnegative"


def _replication_quantiles(samples: list[np.ndarray], q: float) -> list[float]:
    out = []
    for values in samples:
        h = LogHistogram()
        h.add(values)
        out.append(float(h.quantile(q)))
    return out


def test_histogram_ties_do_not_give_a_zero_width_quantile_interval():
    # 20 replications whose batch waits differ (medians 9,280 to 9,330 s) but whose
    # medians all fall in one 2%-wide bucket: the histogram reports the same centre
    # 20 times. The interval must still cover the exact medians and not be zero-width.
    rng = np.random.default_rng(3)
    samples = [rng.uniform(9000, 9600, 3500) + rng.uniform(-25, 25) for _ in range(20)]
    per_rep = _replication_quantiles(samples, 0.5)
    assert len(set(per_rep)) == 1  # the ties the issue saw
    _, low, high, _ = mean_interval(np.asarray(per_rep), key_kind("batch.ttft_p50_s"))
    assert high > low
    exact = np.mean([np.median(s) for s in samples])
    assert low <= exact <= high
    # the same values under a key that is not a histogram quantile: truly identical
    _, low2, high2, _ = mean_interval(np.asarray(per_rep), key_kind("batch.ttft_mean_s"))
    assert low2 == high2


def test_distinct_replications_give_the_t_interval_widened_by_the_resolution():
    # each reported quantile is within rel_err of the exact one: a bounded bias added to
    # the sampling interval on both sides
    per_rep = [1.0, 1.5, 2.0, 2.5, 3.0]
    _, low, high, _ = mean_interval(np.asarray(per_rep), key_kind("chat.ttft_p99_s"))
    half = t975(4) * np.std(per_rep, ddof=1) / math.sqrt(5)
    assert (low, high) == pytest.approx((2.0 - half - 0.02, 2.0 + half + 0.02))

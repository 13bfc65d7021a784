"""The log-bucketed histogram: quantiles within its relative error, exact means, and the
shared-bucket path used by the metrics (one pass of logarithms for several histograms)."""

from __future__ import annotations

import numpy as np

from sim.core.histogram import LogHistogram


def _exact_quantile(values: np.ndarray, q: float) -> float:
    """The order statistic the histogram targets: the smallest value with at least a
    q share of the values at or below it."""
    v = np.sort(values)
    return float(v[max(int(np.ceil(q * v.size)) - 1, 0)])


def test_quantiles_within_the_relative_error_and_exact_mean():
    rng = np.random.default_rng(5)
    values = rng.lognormal(0.0, 1.5, 50_000)  # spans ~1e-3 .. 1e3 s
    h = LogHistogram(rel_err=0.01)
    h.add(values[:20_000])
    h.add(values[20_000:])
    for q in (0.01, 0.5, 0.9, 0.99, 0.999):
        exact = _exact_quantile(values, q)
        assert abs(h.quantile(q) - exact) <= 0.01 * exact * (1 + 1e-9), q
    assert h.n == values.size
    assert np.isclose(h.mean(), values.mean(), rtol=1e-12)


def test_non_finite_values_are_ignored_and_tiny_ones_read_as_zero():
    h = LogHistogram(lo_s=1e-4)
    h.add(np.array([np.nan, np.inf, -np.inf, 0.0, 5e-5, 2.0]))
    assert h.n == 3
    assert h.total == 2.0 + 5e-5
    assert h.quantile(0.5) == 0.0  # two of three below lo_s
    assert abs(h.quantile(1.0) - 2.0) <= 0.01 * 2.0


def test_shared_buckets_give_the_same_histograms_as_adding_each_subset():
    rng = np.random.default_rng(8)
    values = np.concatenate([rng.exponential(0.3, 5_000), [np.nan] * 50, [0.0] * 30])
    rng.shuffle(values)
    subsets = [rng.random(values.size) < p for p in (0.2, 0.5, 0.9)]
    layout = LogHistogram()
    buckets = layout.buckets_of(values)
    finite = buckets >= 0
    for sel in subsets:
        direct, shared = LogHistogram(), LogHistogram()
        direct.add(values[sel])
        keep = sel & finite
        shared.add_buckets(buckets[keep], float(values[keep].sum()))
        assert np.array_equal(direct.counts, shared.counts)
        assert (direct.n, direct.total) == (shared.n, shared.total)


def test_merge_adds_counts_and_sums():
    a, b, both = LogHistogram(), LogHistogram(), LogHistogram()
    x, y = np.linspace(0.01, 5, 300), np.linspace(1, 90, 200)
    a.add(x)
    b.add(y)
    both.add(np.concatenate([x, y]))
    a.merge(b)
    assert np.array_equal(a.counts, both.counts) and a.n == both.n
    assert np.isclose(a.total, both.total, rtol=1e-12)

"""interval_integral against a brute-force sum over bins, on equal and unequal bins."""

import numpy as np
import pytest

from sim.serving.metrics import _interval_integral_sorted, interval_integral


def brute(edges, start, end, weight):
    lo, hi = edges[:-1][:, None], edges[1:][:, None]
    overlap = np.clip(np.minimum(hi, end) - np.maximum(lo, start), 0.0, None)
    return (overlap * weight).sum(axis=1)


@pytest.mark.parametrize("edges", [np.arange(25) * 300.0, np.array([0.0, 1.0, 5.0, 5.5, 40.0])],
                         ids=["equal", "unequal"])
def test_matches_brute_force(edges):
    rng = np.random.default_rng(3)
    span = edges[-1] - edges[0]
    # Intervals inside, straddling either end and wholly outside the bins, some empty.
    start = rng.uniform(edges[0] - 0.2 * span, edges[-1] + 0.1 * span, 2000)
    end = start + rng.exponential(0.2 * span, 2000) * (rng.random(2000) > 0.05)
    weight = rng.uniform(0.5, 2.0, 2000)
    expected = brute(edges, start, end, weight)
    np.testing.assert_allclose(interval_integral(edges, start, end, weight), expected,
                               rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(_interval_integral_sorted(edges, start, end, weight), expected,
                               rtol=1e-9, atol=1e-6)
    # No weight: every interval counts once.
    np.testing.assert_allclose(interval_integral(edges, start, end),
                               brute(edges, start, end, np.ones(start.size)), rtol=1e-9, atol=1e-6)


def test_empty_and_scalar_weight():
    edges = np.arange(4) * 10.0
    assert interval_integral(edges, np.array([]), np.array([]), np.array([])).tolist() == [0, 0, 0]
    got = interval_integral(edges, np.array([5.0]), np.array([25.0]), np.ones(1))
    assert got.tolist() == [5.0, 10.0, 5.0]

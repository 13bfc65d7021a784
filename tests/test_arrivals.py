"""Statistical tests of the arrival processes against their theory (fixed seeds).

Tolerances come from the sampling distribution, never from tuning: z-scores within 4
standard errors, chi-square / KS p-values above 1e-3, and for many simultaneous z-scores
a Bonferroni bound at a family-wise level of 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim.workload.streams import iter_blocks, parse_workload

DAY = 86400.0
HOUR = 3600.0
FIXED = {"kind": "fixed", "value": 1}


def arrival_times(arrivals: dict, horizon_s: float, seed: int = 0, block_s: float = DAY,
                  scale: float = 1.0) -> np.ndarray:
    wl = parse_workload({"scale": scale, "streams": [
        {"name": "s", "arrivals": arrivals, "input_tokens": FIXED, "output_tokens": FIXED}]})
    blocks = list(iter_blocks(wl, horizon_s, seed, block_s))
    return np.concatenate([b.arrival_s for b in blocks])


def hourly_counts(t_s: np.ndarray, horizon_s: float) -> np.ndarray:
    return np.bincount((t_s // HOUR).astype(int), minlength=int(horizon_s // HOUR))


def assert_poisson_counts(observed: np.ndarray, expected: np.ndarray) -> None:
    """Independent Poisson counts: chi-square p > 1e-3 and every |z| under a Bonferroni
    bound at family-wise level 1e-4."""
    z = (observed - expected) / np.sqrt(expected)
    p = stats.chi2.sf(np.sum(z**2), df=z.size)
    bound = stats.norm.isf(1e-4 / (2 * z.size))
    assert p > 1e-3, f"chi-square p = {p:.2e}"
    assert np.max(np.abs(z)) < bound, f"max |z| = {np.max(np.abs(z)):.2f} >= {bound:.2f}"


def assert_within(estimate: float, truth: float, se: float, k: float = 4.0) -> None:
    assert abs(estimate - truth) < k * se, f"{estimate} vs {truth} (se {se:.3g})"


# -- poisson -----------------------------------------------------------------------------

def test_poisson_gaps_are_exponential_across_windows():
    rate = 3.0
    t_s = arrival_times({"kind": "poisson", "rate_per_s": rate}, 2 * DAY, seed=1)
    assert np.all(np.diff(t_s) >= 0) and t_s[0] >= 0 and t_s[-1] < 2 * DAY
    gaps = np.diff(np.concatenate([[0.0], t_s]))
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 1e-3
    assert_poisson_counts(hourly_counts(t_s, 2 * DAY), np.full(48, rate * HOUR))


def test_workload_scale_multiplies_the_rate():
    t_s = arrival_times({"kind": "poisson", "rate_per_s": 0.5}, DAY, seed=2, scale=3.0)
    assert_within(t_s.size, 1.5 * DAY, math.sqrt(1.5 * DAY))


# -- diurnal -----------------------------------------------------------------------------

def diurnal_integral(hour_starts_s, mean, peak_hour, ratio, weekend) -> np.ndarray:
    """Exact integral of the documented diurnal rate over each hour."""
    a = (ratio - 1) / (ratio + 1)
    w = 2 * np.pi / DAY
    p = peak_hour * HOUR
    t0, t1 = hour_starts_s, hour_starts_s + HOUR
    weekday = 7 / (5 + 2 * weekend)
    factor = np.where((t0 // DAY) % 7 < 5, weekday, weekday * weekend)
    return mean * factor * (HOUR + a / w * (np.sin(w * (t1 - p)) - np.sin(w * (t0 - p))))


def test_diurnal_hourly_counts_follow_the_integrated_rate():
    cfg = {"kind": "diurnal", "mean_rate_per_s": 0.8, "peak_hour": 14, "peak_to_trough": 4,
           "weekend_factor": 0.5}
    t_s = arrival_times(cfg, 14 * DAY, seed=3)
    expected = diurnal_integral(np.arange(14 * 24) * HOUR, 0.8, 14, 4, 0.5)
    assert_poisson_counts(hourly_counts(t_s, 14 * DAY), expected)


def harmonic_fit(counts24: np.ndarray) -> np.ndarray:
    """(peak hour, peak/trough ratio) of the first harmonic of hour-of-day counts, the
    amplitude corrected for hourly binning (a cosine averaged over an hour shrinks by
    sinc = sin(w h/2) / (w h/2))."""
    w = 2 * np.pi / DAY
    centres = (np.arange(24) + 0.5) * HOUR
    b0 = counts24.mean()
    b1 = 2 * np.mean(counts24 * np.cos(w * centres))
    b2 = 2 * np.mean(counts24 * np.sin(w * centres))
    peak_h = (math.atan2(b2, b1) / w % DAY) / HOUR
    sinc = math.sin(w * HOUR / 2) / (w * HOUR / 2)
    a = math.hypot(b1, b2) / (b0 * sinc)
    return np.array([peak_h, (1 + a) / (1 - a)])


def delta_method_se(fn, counts: np.ndarray) -> np.ndarray:
    """Standard errors of fn(counts) for independent Poisson counts (numerical Jacobian)."""
    jac = np.empty((fn(counts).size, counts.size))
    for i in range(counts.size):
        step = np.zeros(counts.size)
        step[i] = 1.0
        jac[:, i] = (fn(counts + step) - fn(counts - step)) / 2
    return np.sqrt(np.einsum("ij,j,ij->i", jac, counts.astype(float), jac))


def test_diurnal_peak_hour_and_ratio_are_recovered():
    cfg = {"kind": "diurnal", "mean_rate_per_s": 0.5, "peak_hour": 9.5, "peak_to_trough": 3}
    t_s = arrival_times(cfg, 28 * DAY, seed=4)
    counts = np.bincount((t_s % DAY // HOUR).astype(int), minlength=24)
    peak_h, ratio = harmonic_fit(counts)
    se_peak, se_ratio = delta_method_se(harmonic_fit, counts)
    assert_within(peak_h, 9.5, se_peak)
    assert_within(ratio, 3.0, se_ratio)


def test_weekend_factor_and_weekly_mean():
    cfg = {"kind": "diurnal", "mean_rate_per_s": 1.0, "weekend_factor": 0.4}
    t_s = arrival_times(cfg, 14 * DAY, seed=5)
    assert_within(t_s.size, 14 * DAY, math.sqrt(14 * DAY))  # weekly mean = mean_rate_per_s
    weekend = (t_s // DAY) % 7 >= 5
    n_we, n_wd = weekend.sum(), (~weekend).sum()
    ratio = (n_we / 4) / (n_wd / 10)
    assert_within(ratio, 0.4, ratio * math.sqrt(1 / n_we + 1 / n_wd))
    assert_within(n_wd, 10 * DAY * 7 / 5.8, math.sqrt(10 * DAY * 7 / 5.8))


def test_hourly_weights_override_the_curve():
    weights = [1.0] * 6 + [4.0] * 6 + [2.0] * 6 + [0.0] * 6
    cfg = {"kind": "diurnal", "mean_rate_per_s": 0.5, "hourly_weights": weights}
    t_s = arrival_times(cfg, 7 * DAY, seed=6)
    per_hour = 0.5 * np.tile(np.array(weights) / np.mean(weights), 7) * HOUR
    counts = hourly_counts(t_s, 7 * DAY)
    assert counts[per_hour == 0].sum() == 0
    assert_poisson_counts(counts[per_hour > 0], per_hour[per_hour > 0])


# -- flash spikes ------------------------------------------------------------------------

@pytest.mark.parametrize("base", [
    {"kind": "poisson", "rate_per_s": 2.0},
    {"kind": "diurnal", "mean_rate_per_s": 2.0, "peak_to_trough": 1.0},
])
def test_flash_spike_multiplies_the_rate_across_a_window_boundary(base):
    spike = {"start": "23h30m", "duration": "1h", "multiplier": 5}
    t_s = arrival_times({**base, "spikes": [spike]}, 2 * DAY, seed=7)
    inside = (t_s >= 23.5 * HOUR) & (t_s < 24.5 * HOUR)
    assert_within(inside.sum(), 2.0 * 5 * HOUR, math.sqrt(2.0 * 5 * HOUR))
    outside = 2.0 * (2 * DAY - HOUR)
    assert_within((~inside).sum(), outside, math.sqrt(outside))


# -- MMPP --------------------------------------------------------------------------------

def mmpp_theory(l1, l2, mean1_s, mean2_s, t_s):
    """Mean rate and index of dispersion of counts IDC(t) = Var N(t) / E N(t) of a
    stationary two-state MMPP (Fischer & Meier-Hellstern 1993).

    With r_i = 1 / mean_i the rate of leaving state i, s = r1 + r2, stationary
    probabilities pi1 = r2 / s, pi2 = r1 / s and mean rate m = (l1 r2 + l2 r1) / s. The
    rate process has covariance C(u) = pi1 pi2 (l1 - l2)^2 exp(-s u), and for a doubly
    stochastic Poisson process Var N(t) = m t + 2 int_0^t (t - u) C(u) du
    = m t + 2 pi1 pi2 (l1 - l2)^2 [t / s - (1 - exp(-s t)) / s^2], hence
    IDC(t) = 1 + 2 r1 r2 (l1 - l2)^2 / ((l1 r2 + l2 r1) s^2) * [1 - (1 - exp(-s t)) / (s t)].
    """
    r1, r2 = 1 / mean1_s, 1 / mean2_s
    s = r1 + r2
    mean = (l1 * r2 + l2 * r1) / s
    idc = 1 + 2 * r1 * r2 * (l1 - l2) ** 2 / ((l1 * r2 + l2 * r1) * s**2) * (
        1 - (1 - math.exp(-s * t_s)) / (s * t_s))
    return mean, idc


def test_mmpp_mean_rate_and_index_of_dispersion():
    cfg = {"kind": "spiky", "base_rate_per_s": 1.0, "burst_rate_per_s": 6.0,
           "mean_calm_s": 60, "mean_burst_s": 20}
    horizon, window, reps = 6 * HOUR, 60.0, 30
    mean, idc_window = mmpp_theory(1.0, 6.0, 60.0, 20.0, window)
    _, idc_horizon = mmpp_theory(1.0, 6.0, 60.0, 20.0, horizon)
    totals, idcs = [], []
    for seed in range(reps):  # blocks of one hour: the chain spans generation windows
        t_s = arrival_times(cfg, horizon, seed=100 + seed, block_s=HOUR)
        counts = np.bincount((t_s // window).astype(int), minlength=int(horizon / window))
        totals.append(t_s.size)
        idcs.append(counts.var(ddof=1) / counts.mean())
    # Var N(T) = IDC(T) E N(T) for each replication
    assert_within(np.sum(totals), reps * mean * horizon,
                  math.sqrt(reps * idc_horizon * mean * horizon))
    assert_within(np.mean(idcs), idc_window, np.std(idcs, ddof=1) / math.sqrt(reps))
    assert idc_window > 20  # far from Poisson, so the test has power


def test_mmpp_with_an_outage_spike():
    cfg = {"kind": "spiky", "base_rate_per_s": 0.5, "burst_rate_per_s": 4.0,
           "mean_calm_s": "10m", "mean_burst_s": "1m",
           "spikes": [{"start": "5h", "duration": "10m", "multiplier": 0}]}
    t_s = arrival_times(cfg, DAY, seed=9)
    assert not np.any((t_s >= 5 * HOUR) & (t_s < 5 * HOUR + 600))
    # the two sides of the outage are 600 s apart, 11 correlation times: independent
    expected, variance = 0.0, 0.0
    for length_s in (5 * HOUR, DAY - 5 * HOUR - 600):
        mean, idc = mmpp_theory(0.5, 4.0, 600.0, 60.0, length_s)
        expected += mean * length_s
        variance += idc * mean * length_s
    assert_within(t_s.size, expected, math.sqrt(variance))


# -- batch -------------------------------------------------------------------------------

def test_batch_exact_counts_and_windows():
    cfg = {"kind": "batch", "at": "23:30", "every": "1d", "count": 1000, "spread_s": "1h",
           "start_day": 1}
    horizon = 4 * DAY
    t_s = arrival_times(cfg, horizon, seed=10)
    starts = DAY + 23.5 * HOUR + np.arange(3) * DAY
    assert t_s.min() >= starts[0] and t_s.max() < horizon
    for k, start in enumerate(starts):
        n = np.sum((t_s >= start) & (t_s < start + HOUR))
        if k < 2:
            assert n == 1000
        else:  # the last one runs past the horizon
            assert 0 < n < 1000
    assert np.sum(t_s >= starts[2]) == np.sum((t_s >= starts[2]) & (t_s < horizon))
    first = t_s[t_s < starts[0] + HOUR] - starts[0]
    assert stats.kstest(first / HOUR, "uniform").pvalue > 1e-3
    # each occurrence has its own stream: the block size does not matter at all
    np.testing.assert_array_equal(t_s, arrival_times(cfg, horizon, seed=10, block_s=HOUR / 3))


def test_batch_without_spread_every_six_hours_and_scaled():
    cfg = {"kind": "batch", "at": "02:00", "every": "6h", "count": 10}
    t_s = arrival_times(cfg, DAY, seed=11, scale=2.5)
    expected = np.repeat(2 * HOUR + np.arange(4) * 6 * HOUR, 25)
    np.testing.assert_array_equal(t_s, expected)


def test_generation_window_shrinks_with_the_traffic_not_below_a_day_otherwise():
    """Memory is bounded by a window's requests: a day's window while a day holds at
    most BLOCK_REQUESTS at peak rate, halved as often as needed above that."""
    from sim.workload.streams import BLOCK_REQUESTS, block_window_s

    assert block_window_s(BLOCK_REQUESTS / DAY) == DAY
    assert block_window_s(1.01 * BLOCK_REQUESTS / DAY) == DAY / 2
    assert block_window_s(40.0) == DAY / 4  # 3.46M a day
    cfg = {"kind": "poisson", "rate_per_s": 40.0}
    wl = parse_workload({"streams": [{"name": "s", "arrivals": cfg, "input_tokens": FIXED,
                                      "output_tokens": FIXED}]})
    sizes = [len(b) for b in iter_blocks(wl, 1.5 * DAY, seed=4)]
    assert len(sizes) == 6
    # each window holds Poisson(40 x 6 h = 864,000): 5 sigma is ~4,650
    assert all(abs(n - 864_000) < 5 * math.sqrt(864_000) for n in sizes), sizes

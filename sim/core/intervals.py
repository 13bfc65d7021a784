"""95% intervals of a mean over replications that respect what the quantity is.

Replications are i.i.d., so the Student t interval ``mean +- t(0.975, n-1) s / sqrt(n)``
is the interval of the expected value. Two kinds of metric need more care:

* **Bounded quantities.** A share (overflow, failures, SLO attainment, utilization) lies in
  [0, 1] and a cost, a latency or a count is never negative; a t interval near the bound
  can leave the range (``failed 0.3% (-0.2% to 0.7%)``). Where it would, the interval is
  computed on the logit (shares) or log (non-negative) scale by the delta method and
  mapped back: ``g^-1(g(m) +- t s g'(m) / sqrt(n))``. It agrees with the t interval to
  first order, is asymmetric, and stays inside the range by construction. Where the t
  interval already fits, it is kept. A quantity whose values leave the assumed range (a
  negative value for a key presumed non-negative) is treated as unbounded.
* **Histogram quantiles.** Per-request percentiles (``*.ttft_p99_s``) come from the
  log-bucketed histogram of :mod:`sim.core.histogram`, which reports a bucket's centre:
  within ``rel_err`` of the exact order statistic. When every replication lands in the
  same bucket the values tie and the t interval has zero width, which is not a
  statement about the quantile but about the estimator. Each replication's value is
  within ``rel_err`` (relative) of its exact quantile, so the mean of the exact quantiles
  is within ``mean * rel_err`` of the mean of the reported ones: a bounded bias, not a
  random error. The interval of a histogram quantile is therefore the t interval of the
  reported values widened by ``mean * rel_err`` on each side; it has zero width only when
  the quantile is 0 in every replication (below the histogram's lowest bucket).

:func:`key_kind` says which kind a metric key is, from its name. :func:`precise_enough`
says whether an interval is tight enough for the decision it serves (the stopping rule of
sequential replication, ``--precision``).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy import stats as _scipy_stats

DEFAULT_REL_ERR = 0.01
"""The relative error of the histograms behind the per-request quantiles
(:class:`sim.core.histogram.LogHistogram`'s default ``rel_err``)."""

__all__ = ["key_kind", "mean_interval", "t975", "Kind", "half_width", "decision_scale",
           "precise_enough"]

Kind = Literal["share", "nonnegative", "quantile", "signed"]

_QUANTILE = re.compile(r"(^|\.)(wait|ttft|e2e|tpot|latency)_p\d+(\.\d+)?_s$|_s_p\d+$")
_SHARE = re.compile(r"(_share|slo_attainment|utilization|_fraction|_met|retry_rate|fallback_rate)$")
_SIGNED = re.compile(r"(savings|delta|diff|error|residual|minus_baseline|^replication$)")


def key_kind(key: str) -> Kind:
    """What a metric is, from its key: a share in [0, 1], a histogram quantile (seconds,
    non-negative), a signed quantity (savings, differences) or a non-negative one (the
    rest: costs, counts, latencies, tokens)."""
    if _SIGNED.search(key):
        return "signed"
    if _QUANTILE.search(key):
        return "quantile"
    if _SHARE.search(key):
        return "share"
    return "nonnegative"


@lru_cache(maxsize=256)
def t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom."""
    return float(_scipy_stats.t.ppf(0.975, dof))


def mean_interval(x: np.ndarray, kind: Kind = "signed",
                  rel_err: float = DEFAULT_REL_ERR) -> tuple[float, float, float, float]:
    """(mean, low, high, std) of finite values ``x`` (NaN interval for n < 2), for a
    quantity of ``kind`` (see the module docstring)."""
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    lo_bound, hi_bound = -math.inf, math.inf
    if kind == "share" and x.min() >= 0.0 and x.max() <= 1.0:
        lo_bound, hi_bound = 0.0, 1.0
    elif kind in ("nonnegative", "quantile", "share") and x.min() >= 0.0:
        lo_bound = 0.0
    if std == 0.0:
        low = high = mean
    else:
        half = t975(n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
        if low < lo_bound or high > hi_bound:
            se = std / math.sqrt(n)
            if hi_bound == 1.0 and 0.0 < mean < 1.0:
                h = t975(n - 1) * se / (mean * (1.0 - mean))
                logit = math.log(mean / (1.0 - mean))
                low = 1.0 / (1.0 + math.exp(-(logit - h)))
                high = 1.0 / (1.0 + math.exp(-(logit + h)))
            elif mean > 0.0:
                h = t975(n - 1) * se / mean
                low, high = mean * math.exp(-h), mean * math.exp(h)
                if high > hi_bound:  # a share below its logit rule's reach (mean 0 or 1)
                    high = hi_bound
            low, high = max(low, lo_bound), min(high, hi_bound)
    if kind == "quantile" and mean > 0.0:
        low = max(low - mean * rel_err, 0.0)
        high = high + mean * rel_err
    return mean, low, high, std


def half_width(low: float, high: float) -> float:
    """Half the width of an interval (NaN when an end is missing)."""
    return (high - low) / 2.0 if math.isfinite(low) and math.isfinite(high) else math.nan


def decision_scale(threshold: float, kind: Kind) -> float:
    """What a half-width is relative to when an interval is compared with ``threshold``:
    ``|threshold|``; for a share threshold inside (0, 1), its distance to the nearer
    bound (``slo_attainment >= 0.999`` needs a half-width small against 0.001, not 0.999)."""
    if kind == "share" and 0.0 < threshold < 1.0:
        return min(threshold, 1.0 - threshold)
    return abs(threshold)


def precise_enough(mean: float, low: float, high: float, precision: float, *,
                   threshold: float | None = None, kind: Kind = "nonnegative") -> bool:
    """Whether an interval is tight enough for the decision it serves (sequential
    replication stops adding replications when every decision-relevant interval is).

    Without a ``threshold``: the relative half-width ``half / |mean|`` is within
    ``precision``. With one (an SLO target, a break-even 0): the decision is made (the
    interval lies wholly on one side), or the half-width is within ``precision`` of the
    :func:`decision_scale` (the mean is then practically at the threshold, and more
    replications would not change what a planner does). An undefined mean (NaN) is
    never made more precise by more replications of the same configuration: True.
    """
    if not math.isfinite(mean):
        return True
    half = half_width(low, high)
    if not math.isfinite(half):
        return False  # fewer than two replications
    if threshold is None:
        return half <= precision * abs(mean) or (mean == 0.0 and half == 0.0)
    if low > threshold or high < threshold or (low == high == threshold):
        return True
    return half <= precision * decision_scale(threshold, kind)

"""Fitting a workload to a request log: the inverse of generation.

:func:`fit_trace` reads a trace (any format :mod:`sim.workload.traces` detects) and returns
a one-stream workload as plain data that :func:`sim.workload.streams.parse_workload`
accepts: Poisson arrivals for less than a day of data, else diurnal hourly weights (and a
weekend factor from a week on), and lognormal input and output lengths fitted by the
moments of log tokens. Assumption: one stream, one traffic class (``interactive``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sim.core.errors import ConfigError
from sim.workload.arrivals import DAY_S, HOUR_S
from sim.workload.traces import Trace, read_trace, resolve_trace_path

__all__ = ["fit_trace"]

MAX_FIT_SPAN_S = 3650 * 86400.0
"""The longest trace a fit reads (ten years: 87,600 hourly bins)."""
_LENGTH_CAP = 128_000  # the lognormal default max, kept out of fitted files when it fits


def fit_trace(path: str | Path, fmt: str = "auto") -> dict[str, Any]:
    """A one-stream workload (a plain dict that :func:`~sim.workload.streams.parse_workload`
    accepts) fitted to a trace: arrival rate (see :func:`_fit_arrivals`) and lognormal lengths."""
    resolved = resolve_trace_path(path)
    trace = read_trace(resolved, fmt)
    return {
        "name": f"{resolved.stem}-fit",
        "streams": [{
            "name": resolved.stem,
            "class": "interactive",
            "arrivals": _fit_arrivals(trace),
            "input_tokens": _fit_lognormal(trace.input_tokens),
            "output_tokens": _fit_lognormal(trace.output_tokens),
        }],
    }


def _fit_arrivals(trace: Trace) -> dict[str, Any]:
    """Poisson or diurnal arrivals. With less than a day of data the hour-of-day profile
    cannot be told from noise, so the fit is a homogeneous Poisson rate (gaps / span).
    With a day or more: hourly weights (rate in each hour of day, per second of the trace
    spent in that hour); with a week or more also the weekend factor. Traces with
    date-times use their own clock; others are taken to start on a Monday at 00:00."""
    n, span_s = len(trace), trace.span_s
    if n < 2 or span_s <= 0:
        raise ConfigError("cannot fit an arrival rate: the trace needs two distinct arrival "
                          "times", file=trace.path)
    if not span_s <= MAX_FIT_SPAN_S:  # hourly bins over the span: bounded before allocating
        raise ConfigError(f"the trace spans {span_s / DAY_S:.3g} days; a fit takes at most "
                          f"{MAX_FIT_SPAN_S / DAY_S:g} days (cut the trace or check its time "
                          "column's unit)", file=trace.path)
    if span_s < DAY_S:
        return {"kind": "poisson", "rate_per_s": round(float((n - 1) / span_s), 6)}
    t_s = trace.arrival_s + trace.origin_of_week_s
    start_s, end_s = trace.origin_of_week_s, trace.origin_of_week_s + span_s
    hourly = _periodic_counts(t_s, HOUR_S, 24) / _periodic_exposure_s(start_s, end_s, HOUR_S, 24)
    fitted = {"kind": "diurnal", "mean_rate_per_s": round(float(hourly.mean()), 6),
              "hourly_weights": _rounded(hourly / hourly.mean())}
    weekday_rate, weekend_rate = _day_type_rates(t_s, start_s, end_s)
    if span_s >= 7 * DAY_S and weekday_rate > 0:
        fitted["mean_rate_per_s"] = round((5 * weekday_rate + 2 * weekend_rate) / 7, 6)
        fitted["weekend_factor"] = round(weekend_rate / weekday_rate, 4)
    return fitted


def _day_type_rates(t_s: np.ndarray, start_s: float, end_s: float) -> tuple[float, float]:
    counts = _periodic_counts(t_s, DAY_S, 7)
    exposure = _periodic_exposure_s(start_s, end_s, DAY_S, 7)
    rate = [counts[days].sum() / max(exposure[days].sum(), 1e-300)
            for days in (slice(0, 5), slice(5, 7))]
    return float(rate[0]), float(rate[1])


def _periodic_counts(t_s: np.ndarray, bin_s: float, n_bins: int) -> np.ndarray:
    return np.bincount((t_s // bin_s).astype(np.int64) % n_bins, minlength=n_bins)


def _periodic_exposure_s(start_s: float, end_s: float, bin_s: float, n_bins: int) -> np.ndarray:
    """Seconds of ``[start_s, end_s)`` in each bin of a grid repeating every ``n_bins``."""
    k = np.arange(math.floor(start_s / bin_s), math.ceil(end_s / bin_s))
    overlap_s = np.minimum(end_s, (k + 1) * bin_s) - np.maximum(start_s, k * bin_s)
    return np.bincount(k % n_bins, weights=overlap_s, minlength=n_bins)


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def _fit_lognormal(tokens: np.ndarray) -> dict[str, Any]:
    """Median and sigma from the moments of log tokens (lengths below 1 count as 1)."""
    logs = np.log(np.maximum(tokens, 1.0))
    fitted: dict[str, Any] = {"kind": "lognormal", "median": round(float(np.exp(logs.mean())), 2),
                              "sigma": round(float(logs.std()), 4)}
    if tokens.max() > _LENGTH_CAP:
        fitted["max"] = int(tokens.max())
    return fitted

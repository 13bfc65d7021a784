"""Quantiles over millions of values in bounded memory: a log-bucketed histogram.

Buckets are geometric with ratio ``1 + 2*rel_err`` between ``lo_s`` and ``hi_s``; a
quantile is reported as the geometric centre of its bucket, so its relative error is at
most ``rel_err`` (1% by default) for values in range. Values below ``lo_s`` (0.1 ms, e.g.
zero queue waits) form one bucket reported as 0; values above ``hi_s`` are clamped.
The mean is exact (kept as a sum). Histograms with the same layout merge by addition.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LogHistogram"]


class LogHistogram:
    """Counts of non-negative values in geometric buckets."""

    __slots__ = ("lo", "hi", "ratio", "counts", "total", "n", "_log_lo", "_log_ratio")

    def __init__(self, lo_s: float = 1e-4, hi_s: float = 1e7, rel_err: float = 0.01):
        self.lo, self.hi = lo_s, hi_s
        self.ratio = 1.0 + 2.0 * rel_err
        self._log_lo = np.log(lo_s)
        self._log_ratio = np.log(self.ratio)
        nbins = int(np.ceil((np.log(hi_s) - self._log_lo) / self._log_ratio)) + 1
        self.counts = np.zeros(nbins + 1, np.int64)  # [0] = below lo
        self.total = 0.0
        self.n = 0

    def add(self, values: np.ndarray) -> None:
        """Add finite values (NaNs are ignored)."""
        v = np.asarray(values, np.float64)
        buckets = self.buckets_of(v)
        finite = buckets >= 0
        self.add_buckets(buckets[finite], float(v[finite].sum()))

    def buckets_of(self, values: np.ndarray) -> np.ndarray:
        """Each value's bucket in this layout (-1 for NaN or infinite values), so one
        pass of logarithms can feed several histograms of the same layout."""
        v = np.asarray(values, np.float64)
        idx = np.full(v.size, -1, np.int64)
        finite = np.isfinite(v)
        idx[finite & (v < self.lo)] = 0
        pos = finite & (v >= self.lo)
        idx[pos] = 1 + np.minimum(
            ((np.log(v[pos]) - self._log_lo) / self._log_ratio).astype(np.int64),
            self.counts.size - 2)
        return idx

    def add_buckets(self, buckets: np.ndarray, total: float) -> None:
        """Add values given by their buckets (from :meth:`buckets_of` of a histogram of
        the same layout, none -1) and their sum."""
        if not buckets.size:
            return
        self.total += total
        self.n += int(buckets.size)
        self.counts += np.bincount(buckets, minlength=self.counts.size)

    def merge(self, other: LogHistogram) -> None:
        self.counts += other.counts
        self.total += other.total
        self.n += other.n

    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

    def _centre(self, k: np.ndarray) -> np.ndarray:
        centre = self.lo * self.ratio ** (k - 1 + 0.5)
        return np.where(k == 0, 0.0, centre)

    def quantile(self, q: float | np.ndarray) -> float | np.ndarray:
        """The q-quantile (q in [0, 1]); NaN when empty."""
        qs = np.atleast_1d(np.asarray(q, np.float64))
        if not self.n:
            out = np.full(qs.shape, np.nan)
        else:
            cum = np.cumsum(self.counts)
            k = np.searchsorted(cum, np.maximum(qs * self.n, 1e-12), side="left")
            out = self._centre(k)
        return float(out[0]) if np.ndim(q) == 0 else out

    def cdf_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(value, cumulative fraction) at the non-empty buckets, for CDF plots."""
        nz = np.flatnonzero(self.counts)
        if not self.n:
            return np.empty(0), np.empty(0)
        cum = np.cumsum(self.counts)[nz] / self.n
        upper = np.where(nz == 0, self.lo, self.lo * self.ratio ** nz)
        return upper, cum

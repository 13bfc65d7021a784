"""Monte Carlo summaries: mean and 95% confidence interval of each metric over replications.

Each replication is one independent sample of every metric (its own traffic, its own draw
of the uncertain cost inputs), so the replications' values are i.i.d. and the interval of
the expected value is the Student t interval ``mean +- t(0.975, n-1) * std / sqrt(n)``,
adjusted to what the metric is (:mod:`sim.core.intervals`, chosen from the key's name by
:func:`sim.core.intervals.key_kind`): a share's interval stays in [0, 1], a non-negative
quantity's above 0, and a histogram quantile's interval includes the histogram's
resolution, so it is never zero-width from bucket ties. Assumptions and edges:

* The interval is about the *expected* value of the metric, not the spread of single
  months; for cost keys (``cost.*``) the 5th/50th/95th percentiles across replications are
  also given, which describe that spread (traffic randomness plus cost-input uncertainty).
* With one replication there is no estimate of the variance: ``std`` and both interval
  ends are NaN. Run at least two replications (ten or more for usable intervals).
* NaN values (a metric undefined in a replication, e.g. a p99 latency with no requests) are
  left out per key; ``n`` reports how many replications were used. Non-numeric values and
  booleans are ignored; a key with no numeric value in any row is not reported.
* :func:`summarize_values` alone knows no key: its interval is the plain t interval
  (``kind="signed"``) unless a kind is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

import numpy as np

from sim.core.intervals import Kind, key_kind, mean_interval

__all__ = ["summarize", "summarize_values", "half_width", "PERCENTILE_PREFIXES"]

PERCENTILE_PREFIXES = ("cost.",)
"""Keys with these prefixes also get p5, p50 and p95 across replications."""


def _is_number(value: Any) -> bool:
    return isinstance(value, Real | np.number) and not isinstance(value, bool | np.bool_)


def summarize_values(values: Iterable[float], *, percentiles: bool = False,
                     kind: Kind = "signed") -> dict[str, float]:
    """Mean, 95% CI for a quantity of ``kind`` (see :mod:`sim.core.intervals`), std and
    n of ``values`` (NaN and infinities left out); optionally p5/p50/p95."""
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    nan = math.nan
    mean, low, high, std = mean_interval(x, kind)
    out = {"mean": mean, "ci95_low": low, "ci95_high": high, "std": std, "n": n}
    if percentiles:
        if n:
            p5, p50, p95 = np.percentile(x, [5.0, 50.0, 95.0])
            out.update(p5=float(p5), p50=float(p50), p95=float(p95))
        else:
            out.update(p5=nan, p50=nan, p95=nan)
    return out


def summarize(rows: list[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Summary per numeric key across replications: ``{key: {mean, ci95_low, ...}}``.

    Keys come out in first-seen order; each key's interval respects its kind
    (:func:`sim.core.intervals.key_kind`). ``cost.*`` keys also carry ``p5``, ``p50``,
    ``p95``.
    """
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if _is_number(value):
                columns.setdefault(key, []).append(float(value))
    return {key: summarize_values(values, percentiles=key.startswith(PERCENTILE_PREFIXES),
                                  kind=key_kind(key))
            for key, values in columns.items()}


def half_width(entry: Mapping[str, float]) -> float:
    """Half-width of an entry's 95% interval (NaN when there is none)."""
    low, high = entry.get("ci95_low", math.nan), entry.get("ci95_high", math.nan)
    return (float(high) - float(low)) / 2.0

"""Monte Carlo summaries: mean and 95% confidence interval of each metric over replications.

Each replication is one independent sample of every metric (its own traffic, its own draw
of the uncertain cost inputs), so the replications' values are i.i.d. and the interval is
the Student t interval ``mean +- t(0.975, n-1) * std / sqrt(n)``. Assumptions and edges:

* The interval is about the *expected* value of the metric, not the spread of single
  months; for cost keys (``cost.*``) the 5th/50th/95th percentiles across replications are
  also given, which describe that spread (traffic randomness plus cost-input uncertainty).
* With one replication there is no estimate of the variance: ``std`` and both interval
  ends are NaN. Run at least two replications (ten or more for usable intervals).
* NaN values (a metric undefined in a replication, e.g. a p99 latency with no requests) are
  left out per key; ``n`` reports how many replications were used. Non-numeric values and
  booleans are ignored; a key with no numeric value in any row is not reported.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from numbers import Real
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

__all__ = ["summarize", "summarize_values", "half_width", "PERCENTILE_PREFIXES"]

PERCENTILE_PREFIXES = ("cost.",)
"""Keys with these prefixes also get p5, p50 and p95 across replications."""


def _is_number(value: Any) -> bool:
    return isinstance(value, Real | np.number) and not isinstance(value, bool | np.bool_)


@lru_cache(maxsize=256)
def _t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom."""
    return float(_scipy_stats.t.ppf(0.975, dof))


def summarize_values(values: Iterable[float], *, percentiles: bool = False
                     ) -> dict[str, float]:
    """Mean, t-based 95% CI, std and n of ``values`` (NaN left out); optionally p5/p50/p95."""
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    x = x[~np.isnan(x)]
    n = int(x.size)
    nan = math.nan
    mean = float(x.mean()) if n else nan
    if n >= 2:
        std = float(x.std(ddof=1))
        half = _t975(n - 1) * std / math.sqrt(n)
        low, high = mean - half, mean + half
        if std == 0.0:
            low = high = mean  # avoid inf - inf style artefacts for constant metrics
    else:
        std = low = high = nan
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

    Keys come out in first-seen order. ``cost.*`` keys also carry ``p5``, ``p50``, ``p95``.
    """
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if _is_number(value):
                columns.setdefault(key, []).append(float(value))
    return {key: summarize_values(values, percentiles=key.startswith(PERCENTILE_PREFIXES))
            for key, values in columns.items()}


def half_width(entry: Mapping[str, float]) -> float:
    """Half-width of an entry's 95% interval (NaN when there is none)."""
    low, high = entry.get("ci95_low", math.nan), entry.get("ci95_high", math.nan)
    return (float(high) - float(low)) / 2.0

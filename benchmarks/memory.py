"""Case ``memory``: peak RSS of the pipeline at ~1M and ~10M requests.

Each size runs in a fresh interpreter (:mod:`benchmarks.memory_child`) so that neither
sees the other's heap; per-request records are off, so memory should be bounded by the
blocks in flight and not grow with the horizon. The quick mode measures ~100k and ~1M
instead (the ~10M run takes minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys

from .common import ROOT, Settings
from .report import Row, check
from .scenario import Unavailable

__all__ = ["run"]

CASE = "memory"
# Horizons (seconds) giving ~1M and ~10M requests of the scenario (from Monday 00:00).
SMALL_S, LARGE_S = 1.5 * 86400, 16 * 86400
QUICK_SMALL_S = 6 * 3600


def measure(horizon_s: float) -> dict:
    """Run one replication of ``horizon_s`` in a fresh process; its JSON report."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory_child", repr(horizon_s)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed (rc {proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unavailable" in out:
        raise Unavailable(out["unavailable"])
    return out


def _label(n: int) -> str:
    return f"~{n / 1e6:.1f}M" if n >= 1e6 else f"~{n / 1e3:.0f}k"


def run(settings: Settings) -> list[Row]:
    small_s, large_s = settings.pick((SMALL_S, LARGE_S), (QUICK_SMALL_S, SMALL_S))
    small, large = measure(small_s), measure(large_s)
    rows = []
    for m in (small, large):
        rows.append(Row(CASE, f"peak RSS at {_label(m['requests'])} requests",
                        m["peak_rss_mb"], "MB",
                        note=f"{m['requests']:,} requests, {m['requests'] / m['seconds']:,.0f} "
                             "req/s, fresh process, per-request records off"))
    ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
    if settings.quick:
        rows.append(Row(CASE, "RSS ratio (quick: ~1M / ~100k)", ratio, "x",
                        note="targets apply to ~10M / ~1M (full run only)"))
        return rows
    rows.append(check(CASE, "RSS ratio ~10M / ~1M", ratio, "x", le=1.2))
    rows.append(check(CASE, "peak RSS at ~10M", large["peak_rss_mb"], "MB", le=500.0))
    return rows

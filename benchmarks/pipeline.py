"""Cases ``pipeline`` and ``montecarlo``: the whole simulator on the benchmark scenario.

``pipeline`` times ``sim.experiment.replication.run_replication(exp, 0)`` on a month of the scenario
(:mod:`benchmarks.scenario`): workload generation, engine, metrics (histograms, 5-minute
time series, SLOs) and costs; per-request records off. ``montecarlo`` runs 8
replications of a day of it through ``sim.experiment.montecarlo.run_replications`` on one worker
and on every core. A day, not a few hours: a real replication is a month, and on runs of
a few hours the pool's fixed costs (forking, copy-on-write of the parent's heap, shipping
results back: on 8 x 6 h the 2-worker run took ~0.7 s more than half the serial time)
are a visible share that a month amortizes (8 x 1 d: 1.85x and 1.87x measured).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import numpy as np

from .common import ROOT, Settings, median_time, timed
from .machine import cpu_cores
from .report import Row, check
from .scenario import REPLICAS, build_experiment

__all__ = ["run_pipeline", "run_montecarlo"]

MC_REPLICATIONS = 8


def _peak_hour_utilization(res) -> float:
    """Highest hourly mean of the run's utilization series (decode tokens / saturated)."""
    ts = res.timeseries
    util, bin_s = np.asarray(ts["utilization"]), float(ts["bin_s"][0])
    per_hour = max(1, round(3600.0 / bin_s))
    usable = util.size - util.size % per_hour
    if usable == 0:
        return float(util.mean()) if util.size else float("nan")
    return float(util[:usable].reshape(-1, per_hour).mean(axis=1).max())


def run_pipeline(settings: Settings) -> list[Row]:
    horizon = settings.pick("30d", "6h")
    exp = build_experiment(horizon)
    from sim.experiment.replication import run_replication

    dt, res = median_time(lambda: timed(lambda: run_replication(exp, 0)), settings.repeat)
    n = res.totals.arrived
    row = res.row
    note = (f"{n:,} requests over {horizon} on {REPLICAS} replicas, "
            f"median of {max(1, settings.repeat)}")
    return [
        check("pipeline", "run_replication", n / dt, "req/s", ge=100_000, note=note),
        Row("pipeline", "time per request", dt / n * 1e6, "µs/request",
            note=f"{dt:.1f} s per run"),
        check("pipeline", "events/request", res.totals.events / n, "", le=3.0,
              note="SimPy events; design bound"),
        Row("pipeline", "peak-hour utilization", _peak_hour_utilization(res), "",
            note=f"sized for ~0.65; run mean {row.get('gpu_utilization', float('nan')):.2f}, "
                 f"overflow {row.get('overflow_share', float('nan')):.1%}"),
        *_core_rows(settings),
    ]


_CHILD = """
import json, sys, time
from benchmarks.scenario import build_experiment
from sim.experiment.replication import run_replication
from sim.serving.step_core import IMPLEMENTATION
exp = build_experiment(sys.argv[1])
t0 = time.perf_counter()
res = run_replication(exp, 0)
print(json.dumps({"s": time.perf_counter() - t0, "n": res.totals.arrived,
                  "core": IMPLEMENTATION}))
"""


def _child_rate(horizon: str, pure: bool) -> tuple[float, str]:
    """Simulated requests/s of one replication in a fresh process with either core."""
    env = {k: v for k, v in os.environ.items() if k != "CAPSIM_PURE_PYTHON"}
    if pure:
        env["CAPSIM_PURE_PYTHON"] = "1"
    out = subprocess.run([sys.executable, "-c", _CHILD, horizon], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return got["n"] / got["s"], got["core"]


def _core_rows(settings: Settings) -> list[Row]:
    """The baseline in the same run: the step replica's Python module against the core
    in use (compiled where it was built), on a shorter horizon of the same scenario,
    alternated and paired (the machine's speed drifts over minutes)."""
    horizon = settings.pick("1d", "2h")
    fast, slow, core = [], [], ""
    for _ in range(max(1, settings.repeat)):
        rate, core = _child_rate(horizon, pure=False)
        fast.append(rate)
        slow.append(_child_rate(horizon, pure=True)[0])
    ratios = [a / b for a, b in zip(fast, slow, strict=True)]
    note = f"{horizon}, median of {len(ratios)} paired runs"
    return [
        Row("pipeline", "Python step replica", statistics.median(slow), "req/s",
            note=f"CAPSIM_PURE_PYTHON=1, {note}"),
        Row("pipeline", f"{core.split(' ')[0]} / Python", statistics.median(ratios), "x",
            note=f"step core: {core}; pairs {', '.join(f'{r:.2f}' for r in ratios)}"),
    ]


def run_montecarlo(settings: Settings) -> list[Row]:
    horizon = settings.pick("1d", "2h")
    exp = build_experiment(horizon, replications=MC_REPLICATIONS)
    from sim.experiment.montecarlo import run_replications

    cores = cpu_cores()
    # Alternate the two (1 worker, then all, repeat) and take the median of each pair's
    # ratio: the machine's speed drifts over minutes, and runs far apart in time would
    # carry that drift into the speed-up.
    t1s, tns, res = [], [], None
    for _ in range(max(1, settings.repeat)):
        t1, res = timed(lambda: run_replications(exp, workers=1))
        t1s.append(t1)
        tns.append(timed(lambda: run_replications(exp, workers=cores))[0])
    ratios = [a / b for a, b in zip(t1s, tns, strict=True)]
    t1, tn = statistics.median(t1s), statistics.median(tns)
    n = sum(r.totals.arrived for r in res)
    note = (f"{MC_REPLICATIONS} replications x {horizon} ({n:,} requests), "
            f"median of {max(1, settings.repeat)}")
    rows = [Row("montecarlo", "1 worker", t1, "s", note=f"{n / t1:,.0f} req/s; {note}"),
            Row("montecarlo", f"{cores} workers", tn, "s", note=f"{n / tn:,.0f} req/s")]
    if cores >= 2:
        rows.append(check("montecarlo", "speed-up", statistics.median(ratios), "x", ge=1.8,
                          note=f"on {cores} cores; median of paired runs "
                               f"({', '.join(f'{r:.2f}' for r in ratios)})"))
    else:
        rows.append(Row("montecarlo", "speed-up", statistics.median(ratios), "x", ">= 1.8", "n/a",
                        "one core: no parallel speed-up possible"))
    return rows

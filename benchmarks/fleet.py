"""Case ``fleet-scale``: engine cost per request from 8 to 1,024 replicas.

The scenario's chat traffic at its weekday peak (~65% of capacity on 16 replicas), as a
homogeneous Poisson stream scaled by ``replicas / 16`` so every fleet size sees the same
per-replica load; the same number of requests per size, so the runs differ only in fleet
size (and horizon). Lengths are the scenario's lognormals, rounded to whole tokens. The
replicas come from the shipped ``llama-70b-2xa100`` profile; chat overflows to an
unlimited API after 2 s of waiting, as in the pipeline. Only ``Engine.run`` is timed.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from .common import Settings
from .report import Row, check
from .scenario import (
    CHAT_INPUT,
    CHAT_MEAN_RATE,
    CHAT_OUTPUT,
    PEAK_FACTOR,
    PROFILE,
    REPLICAS,
    Unavailable,
)

__all__ = ["run", "SIZES"]

CASE = "fleet-scale"
SIZES = (8, 16, 64, 256, 1024)
BLOCK = 50_000
PEAK_RATE = CHAT_MEAN_RATE * PEAK_FACTOR  # req/s on REPLICAS replicas


def _lognormal(rng: np.random.Generator, cfg: dict, n: int) -> np.ndarray:
    sigma = cfg["sigma"]
    x = rng.lognormal(math.log(cfg["mean"]) - sigma**2 / 2, sigma, n)
    return np.clip(np.rint(x), 1, cfg.get("max", np.inf))


def draw(replicas: int, n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrivals at the scaled peak rate, input and output tokens."""
    rng = np.random.default_rng([seed, replicas])
    rate = PEAK_RATE * replicas / REPLICAS
    return (np.cumsum(rng.exponential(1.0 / rate, n)), _lognormal(rng, CHAT_INPUT, n),
            _lognormal(rng, CHAT_OUTPUT, n))


def _spec():
    try:
        from sim.profiles.schema import load_profile
        from sim.serving.replica import replica_spec

        return replica_spec(load_profile(PROFILE))
    except ImportError as exc:
        raise Unavailable(f"cannot build the replica from the profile: {exc}") from exc


def _api():
    from sim.serving.engine import ApiEndpoint

    def latency(rng: np.random.Generator, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ttft = np.full(out.shape, 0.5)
        return ttft, ttft + out / 50.0

    return ApiEndpoint("api", lambda t, tokens: True, 0, lambda k: 1.0, latency)


def run_once(spec, replicas: int, arrays: tuple[np.ndarray, ...]) -> tuple[float, object]:
    """One engine run on ``replicas`` replicas; returns (seconds in Engine.run, totals)."""
    from sim.serving.engine import Engine, StreamPolicy
    from sim.workload.requests import RequestBlock

    arrival, inp, out = arrays
    blocks = [RequestBlock.from_arrays(arrival[lo:lo + BLOCK], inp[lo:lo + BLOCK],
                                       out[lo:lo + BLOCK]) for lo in range(0, arrival.size, BLOCK)]
    engine = Engine(replicas=replicas, spec=spec, apis=[_api()], seed=0,
                    streams=[StreamPolicy("wait_exceeds", api_index=0, threshold_s=2.0)])
    t0 = time.perf_counter()
    totals = engine.run(blocks, lambda fb: None)
    return time.perf_counter() - t0, totals


def run(settings: Settings) -> list[Row]:
    spec = _spec()
    n = settings.pick(300_000, 40_000)
    arrays = {size: draw(size, n) for size in SIZES}
    # Rounds over every size (not every size's runs back to back), and the ratio per
    # round: this machine's speed drifts over minutes, by as much as the effect measured,
    # and sizes timed minutes apart would carry the drift into the ratio. (The same as
    # the Monte Carlo case's pairs.)
    us: dict[int, list[float]] = {size: [] for size in SIZES}
    totals = {}
    for _ in range(max(1, settings.repeat)):
        for size in SIZES:
            dt, totals[size] = run_once(spec, size, arrays[size])
            us[size].append(dt / n * 1e6)
    rows = []
    for size in SIZES:
        med = statistics.median(us[size])
        api_share = totals[size].served_api / max(totals[size].arrived, 1)
        rows.append(Row(CASE, f"{size:,} replicas", med, "µs/request",
                        note=f"{1e6 / med:,.0f} req/s; {totals[size].events / n:.2f} "
                             f"events/request; {api_share:.1%} to API; "
                             f"{arrays[size][0][-1]:,.0f} s simulated"))
    ratios = [a / b for a, b in zip(us[1024], us[16], strict=True)]
    rows.append(check(CASE, "µs/request 1,024 / 16 replicas", statistics.median(ratios), "x",
                      le=1.5,
                      note=f"{n:,} requests per size at {PEAK_RATE:.2f} req/s per 16 replicas; "
                           f"median of {len(ratios)} rounds: "
                           + ", ".join(f"{r:.2f}" for r in ratios)))
    return rows

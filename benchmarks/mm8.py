"""Case ``mm8``: the bare engine on M/M/8 beside an idiomatic SimPy model.

Eight replicas with batch cap 1 and one token/s serve requests of exponential length
(mean 1 token, so service ~ Exp(1) s); Poisson arrivals at 6.4/s (load 0.8), unbounded
FCFS queue, overflow ``never``. Both models get the same pre-drawn arrays (the SimPy one
a prefix, as it is much slower); the mean wait of each is checked against the other and
against Erlang C.
"""

from __future__ import annotations

import time

import numpy as np

from .baseline_simpy import run_simpy_mmc
from .common import Settings, median_time
from .report import Row, check
from .theory import agree, batch_means, mmc_mean_wait

__all__ = ["run"]

SERVERS = 8
LAMBDA = 6.4
BLOCK = 100_000  # requests per RequestBlock (a workload window's worth)
CASE = "mm8"


def draw(n: int, seed: int = 2024) -> tuple[np.ndarray, np.ndarray]:
    """Poisson arrival times and Exp(1) service times (= output tokens at 1 token/s)."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.exponential(1.0 / LAMBDA, n)), rng.exponential(1.0, n)


def run_engine(arrival_s: np.ndarray, service_s: np.ndarray
               ) -> tuple[float, tuple[np.ndarray, object]]:
    """One engine run; returns (seconds in Engine.run, (waits in arrival order, totals))."""
    from sim.serving.engine import Engine, StreamPolicy
    from sim.serving.replica import ReplicaSpec
    from sim.workload.requests import RequestBlock

    n = arrival_s.size
    zeros = np.zeros(n)
    blocks = [RequestBlock.from_arrays(arrival_s[lo:lo + BLOCK], zeros[lo:lo + BLOCK],
                                       service_s[lo:lo + BLOCK]) for lo in range(0, n, BLOCK)]
    engine = Engine(replicas=SERVERS, spec=ReplicaSpec(rate_table=[0.0, 1.0], max_batch=1),
                    streams=[StreamPolicy("never")], seed=0)
    waits: dict[int, np.ndarray] = {}

    def on_block(fb) -> None:
        waits[fb.index] = fb.start_s - fb.requests.arrival_s

    t0 = time.perf_counter()
    totals = engine.run(blocks, on_block)
    elapsed = time.perf_counter() - t0
    return elapsed, (np.concatenate([waits[k] for k in sorted(waits)]), totals)


def _simpy_once(arrival_s: np.ndarray, service_s: np.ndarray):
    res = run_simpy_mmc(arrival_s, service_s, SERVERS)
    return res.elapsed_s, res


def run(settings: Settings) -> list[Row]:
    n = settings.pick(1_000_000, 100_000)
    n_simpy = settings.pick(200_000, 50_000)
    arrival_s, service_s = draw(n)
    t_eng, (wait_eng, totals) = median_time(lambda: run_engine(arrival_s, service_s),
                                               settings.repeat)
    t_sp, sp = median_time(lambda: _simpy_once(arrival_s[:n_simpy], service_s[:n_simpy]),
                           settings.repeat)
    eng_rate, sp_rate = n / t_eng, n_simpy / t_sp
    runs = f"median of {max(1, settings.repeat)}"
    rows = [
        Row(CASE, "engine", eng_rate, "req/s",
            note=f"{n:,} requests, {runs}; {t_eng / n * 1e6:.2f} µs/request"),
        Row(CASE, "SimPy baseline (process per request)", sp_rate, "req/s",
            note=f"{n_simpy:,} requests, {runs}; {t_sp / n_simpy * 1e6:.2f} µs/request"),
        check(CASE, "engine / SimPy", eng_rate / sp_rate, "x", ge=3.0,
              note="speed-up per request (instructions case: the same, noise-free)"),
    ]
    rows += _wait_rows(wait_eng, sp.wait_s)
    rows.append(check(CASE, "engine events/request", totals.events / n, "", le=2.05,
                      note="SimPy events; design: <= 1 arrival + 1 wake-up per request"))
    if sp.events is not None:
        rows.append(Row(CASE, "SimPy baseline events/request", sp.events / n_simpy, "",
                        note="SimPy events scheduled"))
    return rows


def _wait_rows(wait_eng: np.ndarray, wait_sp: np.ndarray) -> list[Row]:
    m_e, se_e = batch_means(wait_eng)
    m_s, se_s = batch_means(wait_sp)
    exact = mmc_mean_wait(SERVERS, LAMBDA, 1.0)
    ok = agree(m_e, se_e, exact) and agree(m_s, se_s, exact) and agree(m_e, se_e, m_s, se_s)
    return [
        Row(CASE, "mean wait: engine", m_e, "s", note=f"± {1.96 * se_e:.4f} (95%, batch means)"),
        Row(CASE, "mean wait: SimPy baseline", m_s, "s",
            note=f"± {1.96 * se_s:.4f} (95%, batch means)"),
        Row(CASE, "mean wait: Erlang C", exact, "s", note="M/M/8, a = 6.4"),
        Row(CASE, "mean waits agree", "yes" if ok else "no", "", "within 3 SE",
            "PASS" if ok else "MISS", "engine vs SimPy vs Erlang C, pairwise"),
    ]

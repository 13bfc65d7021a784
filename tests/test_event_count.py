"""SimPy events per request stay within the engine's design bound.

The engine schedules no process per request: arrivals with nothing else between them
share one event (<= 1 arrival event per request), each completion costs at most one
replica wake-up, and an admission that delays a replica's pending completion (a longer
prefill stall, a lower per-request rate) re-arms it at most once. Hence

* M/M/8 with batch cap 1, where an admission never delays a pending completion (it only
  ever lands on an idle replica): <= 2 events per request (2.05 allows for rounding);
* continuous batching with prefill: <= 3 events per request.

An accidental extra process or timeout per request adds >= 1 event per request and fails
these (fast, fixed-seed) checks.
"""

from __future__ import annotations

import numpy as np

from sim.serving.replica import ReplicaSpec
from tests.enginekit import poisson_exp, run_engine

N = 20_000


def _events_per_request(totals) -> float:
    assert totals.arrived == N
    assert totals.served_gpu + totals.served_api + totals.failed == N
    return totals.events / totals.arrived


def test_mm8_events_per_request():
    arrival, service = poisson_exp(np.random.default_rng(8), 6.4, 1.0, N)
    spec = ReplicaSpec(rate_table=[0.0, 1.0], max_batch=1)
    _, totals, _ = run_engine(arrival, service, spec=spec, replicas=8, block_size=5_000)
    assert totals.served_gpu == N
    assert _events_per_request(totals) <= 2.05


def _batching_spec() -> ReplicaSpec:
    # Step time 20 ms + 1 ms per extra running request; per-request rate = 1 / step.
    rates = [0.0] + [1.0 / (0.020 + 0.001 * (b - 1)) for b in range(1, 17)]
    return ReplicaSpec(rate_table=rates, max_batch=16, kv_capacity_tokens=20_000.0,
                       prefill_tokens_per_s=10_000.0)


def test_continuous_batching_with_prefill_events_per_request():
    rng = np.random.default_rng(16)
    # ~0.05 s prefill + ~100 decode tokens per request on 4 replicas: batches fill up, so
    # about a quarter of the requests wait for a slot.
    arrival = np.cumsum(rng.exponential(1 / 14.0, N))
    inp = np.rint(rng.lognormal(np.log(500) - 0.5**2 / 2, 0.5, N))
    out = np.maximum(1, np.rint(rng.lognormal(np.log(100) - 0.6**2 / 2, 0.6, N)))
    fb, totals, _ = run_engine(arrival, out, input_tokens=inp, spec=_batching_spec(),
                               replicas=4, block_size=5_000)
    assert totals.served_gpu == N
    assert np.mean(fb.start_s > fb.requests.arrival_s) > 0.05  # the waiting room is used
    assert _events_per_request(totals) <= 3.0

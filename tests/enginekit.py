"""Helpers for engine tests: run the bare engine on given arrays."""

from __future__ import annotations

import numpy as np

from sim.profiles.steptime import StepModel
from sim.serving.engine import ApiEndpoint, Engine, FinishedBlock, StreamPolicy
from sim.serving.replica import ReplicaSpec
from sim.workload.requests import RequestBlock, concat_blocks


def unlimited_api(name: str = "api", ttft_s: float = 0.5, tokens_per_s: float = 50.0):
    def latency(rng, out):
        ttft = np.full(out.shape, ttft_s)
        return ttft, ttft + out / tokens_per_s
    return ApiEndpoint(name, lambda t, tok: True, 0, lambda k: 1.0, latency)


def run_engine(arrival_s, output_tokens, *, spec: ReplicaSpec | StepModel, replicas: int = 1,
               input_tokens=None, policy: StreamPolicy | None = None, apis=None,
               queue_limit=None, router="least_loaded", seed=0, block_size=None):
    """Run the engine on one stream; returns (FinishedBlock of all requests, totals, engine)."""
    arrival_s = np.asarray(arrival_s, float)
    n = arrival_s.size
    inp = np.zeros(n) if input_tokens is None else np.asarray(input_tokens, float)
    blocks = []
    step = block_size or max(n, 1)
    for lo in range(0, n, step):
        sl = slice(lo, lo + step)
        blocks.append(RequestBlock.from_arrays(arrival_s[sl], inp[sl],
                                               np.asarray(output_tokens, float)[sl]))
    policy = policy or StreamPolicy()
    apis = apis if apis is not None else ([unlimited_api()] if policy.api_index is not None
                                          else [])
    eng = Engine(replicas=replicas, spec=spec, streams=[policy], apis=apis, router=router,
                 queue_limit=queue_limit, seed=seed)
    got: list[FinishedBlock] = []
    totals = eng.run(blocks, got.append)
    got.sort(key=lambda fb: fb.index)
    fb = FinishedBlock(
        0, concat_blocks([g.requests for g in got]),
        *(np.concatenate([getattr(g, f) for g in got]) for f in
          ("outcome", "reason", "replica", "api", "attempts", "restarts", "start_s",
           "first_token_s", "end_s", "preemptions")))
    return fb, totals, eng


def poisson_exp(rng, lam, mean_tokens, n):
    return np.cumsum(rng.exponential(1 / lam, n)), rng.exponential(mean_tokens, n)

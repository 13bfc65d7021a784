"""The engine against closed-form queueing results.

Each test configures the engine so that a textbook model applies, runs independent
replications (fixed seeds) and checks the replication mean within 4 standard errors of
the formula. The first 10% of each replication is discarded as warm-up (the system
starts empty).
"""

from math import factorial

import numpy as np
import pytest

from sim.serving.engine import OUTCOME_API, OUTCOME_GPU, StreamPolicy
from sim.serving.replica import ReplicaSpec
from tests.enginekit import poisson_exp, run_engine

REPS = 10
N = 20000


def erlang_b(c: int, a: float) -> float:
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    s = sum(a**k / factorial(k) for k in range(c))
    top = a**c / factorial(c) * c / (c - a)
    return top / (s + top)


def within(samples, expected, k=4.0):
    samples = np.asarray(samples)
    se = samples.std(ddof=1) / np.sqrt(samples.size)
    assert abs(samples.mean() - expected) <= k * se, (samples.mean(), expected, se)


def _replications(fn):
    return [fn(np.random.default_rng(1000 + r)) for r in range(REPS)]


def test_erlang_b_overflow_share():
    c, lam, mean = 5, 4.0, 1.0  # a = 4 Erlang on 5 single-slot replicas, no waiting room
    spec = ReplicaSpec(rate_table=[0.0, 1.0], max_batch=1)

    def one(rng):
        arr, out = poisson_exp(rng, lam, mean, N)
        fb, *_ = run_engine(arr, out, spec=spec, replicas=c, queue_limit=0,
                            policy=StreamPolicy("queue_full", api_index=0))
        return (fb.outcome[N // 10:] == OUTCOME_API).mean()

    within(_replications(one), erlang_b(c, lam / mean))


def test_erlang_c_wait_probability_and_mean():
    c, lam = 8, 6.0
    spec = ReplicaSpec(rate_table=[0.0, 1.0], max_batch=1)
    pw, ew = [], []
    for r in range(REPS):
        arr, out = poisson_exp(np.random.default_rng(2000 + r), lam, 1.0, N)
        fb, *_ = run_engine(arr, out, spec=spec, replicas=c)
        wait = (fb.start_s - fb.requests.arrival_s)[N // 10:]
        pw.append((wait > 0).mean())
        ew.append(wait.mean())
    cc = erlang_c(c, lam)
    within(pw, cc)
    within(ew, cc / (c - lam))


def test_mm1_processor_sharing_mean_sojourn():
    lam, total_rate, mean_tokens = 0.7, 20.0, 20.0  # mu = 1 request/s
    spec = ReplicaSpec(rate_table=[0.0], rate_fn=lambda b: total_rate / b)

    def one(rng):
        arr, out = poisson_exp(rng, lam, mean_tokens, N)
        fb, *_ = run_engine(arr, out, spec=spec)
        return (fb.end_s - fb.requests.arrival_s)[N // 10:].mean()

    within(_replications(one), 1.0 / (1.0 - lam))


def llm_curve(r1: float, alpha: float):
    return lambda b: r1 / (1.0 + alpha * (b - 1))  # per-request rate: curve(b) / b


@pytest.mark.parametrize("lengths", ["exponential", "lognormal"])
def test_llm_shaped_curve_processor_sharing_is_insensitive(lengths):
    lam, r1, alpha, mean_tokens = 1.5, 40.0, 0.1, 100.0
    rho = lam * mean_tokens * alpha / r1
    expected = rho / (alpha * lam * (1 - rho))
    spec = ReplicaSpec(rate_table=[0.0], rate_fn=llm_curve(r1, alpha))

    def one(rng):
        arr = np.cumsum(rng.exponential(1 / lam, N))
        if lengths == "exponential":
            out = rng.exponential(mean_tokens, N)
        else:
            sigma = 1.0
            out = rng.lognormal(np.log(mean_tokens) - sigma**2 / 2, sigma, N)
        fb, *_ = run_engine(arr, out, spec=spec)
        return (fb.end_s - fb.requests.arrival_s)[N // 10:].mean()

    within(_replications(one), expected)


def birth_death_mean_sojourn(lam, mean_tokens, curve, cap, nmax=4000):
    """E[T] of the chain with departure rate curve(min(n, cap)) / mean_tokens."""
    logp = [0.0]
    for n in range(1, nmax):
        logp.append(logp[-1] + np.log(lam * mean_tokens / curve(min(n, cap))))
    p = np.exp(np.array(logp) - max(logp))
    p /= p.sum()
    return float((np.arange(nmax) * p).sum() / lam)


def test_batch_cap_with_waiting_room_matches_birth_death_chain():
    lam, r1, alpha, cap, mean_tokens = 1.1, 30.0, 0.15, 4, 60.0  # load 0.8 of curve(cap)
    per_req = llm_curve(r1, alpha)
    spec = ReplicaSpec(rate_table=[0.0] + [per_req(b) for b in range(1, cap + 1)],
                       max_batch=cap)
    expected = birth_death_mean_sojourn(lam, mean_tokens, lambda b: b * per_req(b), cap)

    def one(rng):
        arr, out = poisson_exp(rng, lam, mean_tokens, N)
        fb, *_ = run_engine(arr, out, spec=spec)
        return (fb.end_s - fb.requests.arrival_s)[N // 10:].mean()

    within(_replications(one), expected)


def test_every_request_ends_once_and_littles_law_holds():
    rng = np.random.default_rng(7)
    arr, out = poisson_exp(rng, 3.0, 50.0, 5000)
    spec = ReplicaSpec(rate_table=[0.0, 40.0, 30.0, 25.0], max_batch=3,
                       kv_capacity_tokens=600.0, prefill_tokens_per_s=3000.0)
    inp = rng.integers(10, 300, arr.size)
    fb, tot, _ = run_engine(arr, out, spec=spec, replicas=2, input_tokens=inp, queue_limit=20,
                            policy=StreamPolicy("wait_exceeds", 0, threshold_s=2.0),
                            block_size=700)
    assert np.all(np.isin(fb.outcome, [1, 2, 3]))
    assert tot.arrived == arr.size == tot.served_gpu + tot.served_api + tot.failed
    assert tot.served_api > 0 and tot.served_gpu > 0
    assert np.isclose(tot.gpu_area, tot.gpu_sojourn_s, rtol=1e-9)
    gpu = fb.outcome == OUTCOME_GPU
    # ordering of each GPU request's milestones
    assert np.all(fb.start_s[gpu] >= fb.requests.arrival_s[gpu])
    assert np.all(fb.first_token_s[gpu] >= fb.start_s[gpu])
    assert np.all(fb.end_s[gpu] >= fb.first_token_s[gpu])
    wait = fb.start_s - fb.requests.arrival_s
    api = fb.outcome == OUTCOME_API
    assert np.all(wait[api] <= 2.0 + 1e-9)  # moved to the API by its threshold

"""The fleet engine and the router deployments with step-level replicas.

* Per replica, the engine's records equal a standalone step replica fed the same
  admissions (the engine adds only routing): first-token and completion times to 1e-12.
* Every request ends once, Little's law holds on the sample path, busy time is at most
  the replica-time, requests too long for ``max_model_len`` fail as ``too_large``.
* KV pressure preempts (counted per request and in the totals), a failed replica's
  requests are retried elsewhere, and events per request stay flat in output length.
* The router deployments' server (StepPool) serves, aborts and fails like the fleet.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from sim.profiles.steptime import StepModel
from sim.serving.engine import FAIL_REASONS, OUTCOME_FAILED, OUTCOME_GPU, StreamPolicy
from sim.serving.step_server import StepPool
from tests.enginekit import run_engine
from tests.stepkit import run_fast


def _model(kv_tokens: int = 4000, seqs: int = 8, pre_s: float = 0.01) -> StepModel:
    return StepModel(
        max_num_seqs=seqs, kv_capacity_tokens=kv_tokens,
        scheduler={"max_num_batched_tokens": 512, "watermark": 0.01, "max_model_len": 3000},
        step_time={"per_step_s": 0.003, "tokens": [1, 512], "linear_s": [1e-4, 0.01],
                   "per_seq_s": 1e-4, "decode_attention_s_per_token": 1e-6,
                   "prefill_attention_s_per_token2": 1e-9},
        overheads={"pre_s": pre_s, "pre_s_per_input_token": 1e-6, "post_s": 0.003})


def _traffic(seed: int, n: int, mean_gap_s: float):
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(mean_gap_s, n))
    inp = rng.integers(1, 800, n).astype(float)
    out = rng.integers(1, 300, n).astype(float)
    return arr, inp, out


@pytest.mark.parametrize("n_rep,router,kv", [(1, "least_loaded", 20000), (3, "least_loaded", 2000),
                                             (3, "round_robin", 20000), (3, "power_of_two", 2000)])
def test_engine_records_equal_standalone_replicas(n_rep, router, kv):
    model = _model(kv)
    arr, inp, out = _traffic(n_rep, 2000, 0.12 / n_rep)
    fb, tot, _ = run_engine(arr, out, input_tokens=inp, spec=model, replicas=n_rep,
                            router=router, block_size=700)
    assert np.all(fb.outcome == OUTCOME_GPU)
    for r in range(n_rep):
        sel = np.flatnonzero(fb.replica == r)
        first, end, pre, _ = run_fast(model, fb.start_s[sel], inp[sel], out[sel])
        np.testing.assert_allclose(fb.first_token_s[sel], first, rtol=1e-12)
        np.testing.assert_allclose(fb.end_s[sel], end, rtol=1e-12)
        np.testing.assert_array_equal(fb.preemptions[sel], pre)
    assert tot.preemptions == int(fb.preemptions.sum())
    assert (tot.preemptions > 0) == (kv == 2000)  # a small cache preempts
    assert np.isclose(tot.gpu_area, tot.gpu_sojourn_s, rtol=1e-9)
    assert 0 < tot.busy_s <= n_rep * tot.end_s
    assert np.all(fb.first_token_s > fb.start_s) and np.all(fb.end_s > fb.first_token_s)


def test_too_large_requests_fail_and_the_rest_is_served():
    model = _model()
    arr, inp, out = _traffic(9, 500, 0.05)
    inp[::50] = 2900.0  # input + output > max_model_len = 3000 for most of them
    fb, tot, _ = run_engine(arr, out, input_tokens=inp, spec=model, replicas=2)
    big = inp + out > 3000
    assert big.sum() > 0
    assert np.all(fb.outcome[big] == OUTCOME_FAILED)
    assert np.all(fb.reason[big] == FAIL_REASONS.index("too_large"))
    assert np.all(fb.outcome[~big] == OUTCOME_GPU)
    assert tot.arrived == tot.served_gpu + tot.failed


def test_failed_replica_requests_are_retried_elsewhere():
    model = _model()
    arr, inp, out = _traffic(4, 1500, 0.02)
    from sim.serving.engine import Engine
    from sim.workload.requests import RequestBlock
    eng = Engine(replicas=3, spec=model, streams=[StreamPolicy()])
    eng._schedule(10.0, lambda ev: eng.fail_replica(1), None)
    got = []
    tot = eng.run([RequestBlock.from_arrays(arr, inp, out)], got.append)
    fb = got[0]
    assert tot.arrived == tot.served_gpu == arr.size  # none lost
    assert fb.restarts.sum() > 0
    assert np.all(fb.replica[fb.restarts > 0] != 1)  # served after the failure elsewhere
    assert not np.any((fb.replica == 1) & (fb.end_s > 10.0))


def test_events_per_request_do_not_grow_with_output_length():
    model = _model(kv_tokens=400_000, seqs=64)
    rng = np.random.default_rng(5)
    n = 6000
    arr = np.cumsum(rng.exponential(0.05, n))
    inp = rng.integers(10, 600, n).astype(float)
    out = rng.integers(5, 60, n).astype(float)
    per_request = []
    for scale in (1, 10):
        _, tot, _ = run_engine(arr, out * scale, input_tokens=inp, spec=model, replicas=2,
                               block_size=3000)
        assert tot.served_gpu == n
        per_request.append(tot.events / n)
    assert per_request[1] <= 1.3 * per_request[0], per_request
    # About one arrival, one wake-up at its completion and one move of its replica's
    # calendar entry per request (joins run the replica ahead: no wake-up of their own).
    assert max(per_request) <= 3.0, per_request


class _Item:
    def __init__(self, key: int):
        self.key = key


def test_step_pool_serves_aborts_and_fails():
    model = _model()
    env = simpy.Environment()
    firsts, dones = {}, {}
    pool = StepPool(env, model, 2, on_admit=lambda it, t: firsts.__setitem__(it.key, t),
                    on_done=lambda it, t: dones.__setitem__(it.key, t))
    arr, inp, out = _traffic(3, 300, 0.05)
    items = [_Item(i) for i in range(arr.size)]

    def feed():
        for i, t in enumerate(arr):
            yield env.timeout(t - env.now)
            pool.submit(items[i], inp[i], out[i])
            if i % 10 == 5:
                env.timeout(0.05).callbacks.append(lambda _e, it=items[i]: pool.abort(it))
        yield env.timeout(5.0)
        left = pool.fail_all()
        assert all(it.key not in dones for it in left)

    env.process(feed())
    env.run()
    aborted = {i for i in range(arr.size) if i % 10 == 5}
    for i in aborted & set(dones):  # done only if it completed before its client gave up
        assert dones[i] <= arr[i] + 0.05 + model.overheads.post_s + 1e-12
    served = set(dones) - aborted
    assert len(served) > 200
    for i in served:
        assert arr[i] < firsts[i] < dones[i]
    pool.finish()
    assert pool.busy_s > 0

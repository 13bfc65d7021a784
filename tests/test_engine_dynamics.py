"""Replicas that fail, drain and come back: nothing is lost, nothing is served twice."""

import numpy as np

from sim.serving.engine import OUTCOME_API, OUTCOME_GPU, Engine, FinishedBlock, StreamPolicy
from sim.serving.replica import ReplicaSpec
from sim.workload.requests import RequestBlock
from tests.enginekit import unlimited_api

SPEC = ReplicaSpec(rate_table=[0.0, 20.0, 18.0, 16.0, 15.0], max_batch=4,
                   prefill_tokens_per_s=5000.0)


def make(policy, n=3000, seed=1, up=None, replicas=3):
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(0.25, n))
    blk = RequestBlock.from_arrays(arr, rng.integers(10, 500, n), rng.integers(5, 100, n))
    eng = Engine(specs=[SPEC] * replicas, streams=[policy], apis=[unlimited_api()],
                 up=up, seed=seed)
    return eng, blk


def run(eng, blk):
    got: list[FinishedBlock] = []
    tot = eng.run([blk], got.append)
    return got[0], tot


def failures(eng, schedule):
    """A SimPy process: at each (t, action, replica) call the engine's primitive."""
    def proc():
        for t, action, idx in schedule:
            yield eng.env.timeout(t - eng.env.now)
            if action == "fail":
                eng.fail_replica(idx)
            elif action == "start":
                eng.start_replica(idx)
    eng.env.process(proc())


def test_failed_replica_requests_restart_elsewhere_and_end_once():
    eng, blk = make(StreamPolicy("never"))
    failures(eng, [(100.0, "fail", 0), (160.0, "start", 0), (300.0, "fail", 1),
                   (301.0, "fail", 2), (340.0, "start", 1), (345.0, "start", 2)])
    fb, tot = run(eng, blk)
    assert tot.arrived == len(blk) == tot.served_gpu
    assert np.all(fb.outcome == OUTCOME_GPU)
    assert fb.restarts.sum() > 0
    restarted = fb.restarts > 0
    # a restarted request started (again) after its failure and kept its arrival time
    assert np.all(fb.start_s[restarted] >= 100.0)
    assert np.all(fb.end_s >= fb.first_token_s) and np.all(fb.first_token_s >= fb.start_s)
    assert np.isclose(tot.gpu_area, tot.gpu_sojourn_s, rtol=1e-9)
    # nothing ran on a replica while it was down
    on0 = (fb.replica == 0) & (fb.start_s > 100.0) & (fb.start_s < 160.0)
    assert not on0.any()


def test_evicted_requests_overflow_when_their_wait_passed_the_threshold():
    eng, blk = make(StreamPolicy("wait_exceeds", 0, threshold_s=5.0), replicas=1)
    failures(eng, [(200.0, "fail", 0), (400.0, "start", 0)])
    fb, tot = run(eng, blk)
    assert tot.arrived == tot.served_gpu + tot.served_api
    during = (fb.requests.arrival_s > 200.0) & (fb.requests.arrival_s < 390.0)
    assert np.all(fb.outcome[during] == OUTCOME_API)
    assert ((fb.restarts > 0) & (fb.outcome == OUTCOME_API)).any()
    assert np.isclose(tot.gpu_area, tot.gpu_sojourn_s, rtol=1e-9)


def test_draining_replica_finishes_its_work_and_takes_no_more():
    eng, blk = make(StreamPolicy("never"))
    drained = []

    def proc():
        yield eng.env.timeout(50.0)
        eng.drain_replica(2, lambda idx, t: drained.append((idx, t)))
    eng.env.process(proc())
    fb, tot = run(eng, blk)
    assert len(drained) == 1 and drained[0][0] == 2 and drained[0][1] >= 50.0
    assert not ((fb.replica == 2) & (fb.start_s > 50.0)).any()
    assert tot.served_gpu == len(blk) and fb.restarts.sum() == 0


def test_replicas_down_at_start_serve_only_once_started():
    eng, blk = make(StreamPolicy("never"), up=[True, False, False])
    failures(eng, [(120.0, "start", 1)])
    fb, tot = run(eng, blk)
    assert not ((fb.replica == 1) & (fb.start_s < 120.0)).any()
    assert not (fb.replica == 2).any()
    assert ((fb.replica == 1) & (fb.start_s >= 120.0)).any()
    assert tot.served_gpu == len(blk)


def test_mixed_fleet_a_full_small_replica_does_not_hide_a_larger_one():
    """Least-loaded placement skips full replicas: with a 1-slot replica (first in line)
    full and a 4-slot one at the same load, the next request starts on the 4-slot one
    instead of waiting."""
    small = ReplicaSpec(rate_table=[0.0, 1.0], max_batch=1)
    large = ReplicaSpec(rate_table=[0.0, 1.0, 1.0, 1.0, 1.0], max_batch=4)
    eng = Engine(specs=[small, large], streams=[StreamPolicy()])
    # 1000 output tokens at 1 token/s: nothing ends before the last arrival
    blk = RequestBlock.from_arrays(np.array([0.0, 0.1, 0.2, 0.3]), np.zeros(4),
                                   np.full(4, 1000.0))
    fb, _ = run(eng, blk)
    assert fb.replica.tolist() == [0, 1, 1, 1]
    np.testing.assert_allclose(fb.start_s, [0.0, 0.1, 0.2, 0.3])


def test_a_process_started_by_a_drain_callback_leaves_the_calendar_consistent():
    """The drain callback runs inside the replica's last wake-up, while that wake-up's
    calendar entry is still the head. A process it starts is an urgent event at this very
    time, which sorts in front of the entry; the entry must then be left behind as stale
    (not taken for the replica's next wake-up), and the replica, started again by that
    process, serves on. (A light load, so that nothing is waiting to be admitted then.)"""
    eng, blk = make(StreamPolicy("never"), replicas=8)
    restarted = []

    def restart(idx):
        eng.start_replica(idx)
        restarted.append(eng.env.now)
        yield eng.env.timeout(0.0)

    def proc():
        yield eng.env.timeout(50.0)
        eng.drain_replica(2, lambda idx, t: eng.env.process(restart(idx)))
    eng.env.process(proc())
    fb, tot = run(eng, blk)
    assert len(restarted) == 1
    assert ((fb.replica == 2) & (fb.start_s > restarted[0])).any()  # it serves again
    assert tot.served_gpu == len(blk) and not np.isnan(fb.end_s).any()
    assert np.isclose(tot.gpu_area, tot.gpu_sojourn_s, rtol=1e-9)

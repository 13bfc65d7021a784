"""Fleet dynamics without traffic: failures, preemptions, schedules and billing.

Each test drives the engine's replica slots with :class:`sim.serving.fleet.Fleet` and no requests,
so the fleet's own processes are all that happens; tolerances come from the theory of
the processes (alternating renewal, Poisson counts) or from hand computation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.costs.model import monthly_costs
from sim.profiles.schema import ColdStart
from sim.serving.autoscale import Observation, ReactiveScaling, ReactiveState
from sim.serving.engine import Engine, StreamPolicy
from sim.serving.fleet import Fleet, billed_seconds, layout, lognormal_from_quantiles
from sim.serving.fleet_config import FailureConfig, PoolConfig
from sim.serving.replica import ReplicaSpec

SPEC = ReplicaSpec(rate_table=[0.0, 20.0, 18.0], max_batch=2)
HOUR = 3600.0


def pool(**kw) -> PoolConfig:
    return PoolConfig.model_validate(kw)


def idle_fleet(pools, *, horizon_s, seed=1, failures=None, cold_s=100.0, billing="per_second"):
    """Run ``pools`` with no traffic; returns the FleetResult and the Fleet."""
    ids, up = layout(pools)
    engine = Engine(specs=[SPEC] * len(ids), pools=ids, up=up, streams=[StreamPolicy()],
                    seed=seed)
    fleet = Fleet(engine, pools, seed=seed, horizon_s=horizon_s,
                  failures=None if failures is None else FailureConfig(**failures),
                  cold_start=ColdStart(median=cold_s, p95=cold_s), billing=billing)
    engine.run([], lambda fb: None)
    return fleet.result(300.0), fleet


# ------------------------------------------------------------------------ failures


def test_up_fraction_matches_the_alternating_renewal_process():
    """Up ~ Exp(MTBF), repair ~ Exp(MTTR), starting up: E[fraction of [0, T] up] is
    A + lam / (lam + mu)^2 (1 - exp(-(lam + mu) T)) / T with A = MTBF / (MTBF + MTTR).
    The 40 slots are independent replications: within 4 standard errors."""
    mtbf_h, mttr_h, horizon_h, n = 20.0, 5.0, 2000.0, 40
    res, _ = idle_fleet([pool(name="gpu", replicas=n)], horizon_s=horizon_h * HOUR,
                        failures={"mtbf_h": mtbf_h, "mttr_h": mttr_h})
    frac = res.slot_up_s / (horizon_h * HOUR)
    lam, mu = 1 / mtbf_h, 1 / mttr_h
    expected = mu / (lam + mu) + lam / (lam + mu) ** 2 * (
        1 - math.exp(-(lam + mu) * horizon_h)) / horizon_h
    se = frac.std(ddof=1) / math.sqrt(n)
    assert abs(frac.mean() - expected) < 4 * se
    assert 0.79 < frac.mean() < 0.81  # A = 0.8
    # failures are Poisson in up time: count within 4 sd of up-hours / MTBF
    up_h = res.up_replica_s / HOUR
    assert abs(res.row["fleet.failures"] - up_h / mtbf_h) < 4 * math.sqrt(up_h / mtbf_h)
    # a failed replica stays billed, so the fixed on-demand pool pays for all of it
    assert res.billed_replica_s == n * horizon_h * HOUR


def test_a_new_pool_does_not_change_another_pools_draws():
    a = pool(name="a", replicas=5)
    b = pool(name="b", tier="spot", replicas=3,
             spot={"preemptions_per_hour": 0.5, "warning_s": 60})
    kw = {"horizon_s": 200 * HOUR, "failures": {"mtbf_h": 10.0, "mttr_h": 1.0}}
    alone, _ = idle_fleet([a], **kw)
    both, _ = idle_fleet([a, b], **kw)
    assert np.array_equal(alone.slot_up_s, both.slot_up_s[:5])
    for key in ("pool.a.failures", "pool.a.up_replica_s"):
        assert alone.row[key] == both.row[key]


# ------------------------------------------------------------------------------ spot


def test_preemptions_are_poisson_in_up_time_and_replaced_after_a_cold_start():
    rate, n, horizon_h, cold_s = 0.2, 20, 500.0, 300.0
    res, _ = idle_fleet([pool(name="spot", tier="spot", replicas=n,
                              spot={"preemptions_per_hour": rate, "warning_s": 120})],
                        horizon_s=horizon_h * HOUR, cold_s=cold_s)
    k = res.row["pool.spot.preemptions"]
    mean = rate * res.up_replica_s / HOUR
    assert abs(k - mean) < 4 * math.sqrt(mean)
    # idle replicas drain at once: each preemption costs one cold start of down time
    assert res.row["pool.spot.cold_starts"] == k
    down_s = n * horizon_h * HOUR - res.up_replica_s
    assert down_s == pytest.approx(k * cold_s, abs=cold_s)  # the last may straddle the end


# --------------------------------------------------------------------------- billing


def test_billed_seconds_by_hand():
    intervals = [(0.0, 1800.0), (3600.0, 3601.0), (7000.0, math.inf), (20000.0, 1e9)]
    assert billed_seconds(intervals, 10000.0, "per_second") == 1800 + 1 + 3000
    # closed intervals round up to whole hours; the open one is billed to the horizon
    assert billed_seconds(intervals, 10000.0, "per_hour") == 3600 + 3600 + 3000


@pytest.mark.parametrize(("billing", "billed_s"), [("per_second", 14400 + 2 * 3900),
                                                   ("per_hour", 14400 + 2 * 7200)])
def test_schedule_billing_by_hand(billing, billed_s):
    """1 replica, 3 during hour 1 (requested 300 s early, cold start 100 s), 4 h horizon:
    the two extra replicas are billed from 3300 s to 7200 s (3900 s: two started hours)
    and up from 3400 s."""
    hourly = [1, 3] + [1] * 22
    res, _ = idle_fleet([pool(name="od", scaling={"policy": "schedule", "hourly": hourly,
                                                  "lead_s": 300})],
                        horizon_s=4 * HOUR, billing=billing)
    assert res.billed_replica_s == billed_s
    assert res.up_replica_s == pytest.approx(14400 + 2 * (7200 - 3400))
    assert res.row["pool.od.cold_starts"] == 2
    up = res.timeseries["replicas_up.od"]
    assert up[0] == 1 and up[12] == pytest.approx(3.0) and up[24] == 1  # 5-min bins
    billed = res.timeseries["replicas_billed.od"]
    assert billed[11] == 3 and billed[10] == 1


def test_monthly_compute_per_tier_by_hand():
    """Reserved: committed replicas all month whatever the horizon; on-demand and spot:
    billed GPU-hours in the horizon x price x 720 h / horizon."""
    day = 86400.0
    run = {"horizon_s": day, "replicas": 0, "gpus_per_replica": 2,
           "pool.r.tier": "reserved", "pool.r.committed_replicas": 2,
           "pool.r.billed_replica_s": 2 * day,
           "pool.o.tier": "on_demand", "pool.o.committed_replicas": 0,
           "pool.o.billed_replica_s": 12 * HOUR,
           "pool.s.tier": "spot", "pool.s.committed_replicas": 0,
           "pool.s.billed_replica_s": HOUR}
    inputs = {"input.usd_per_gpu_hour": 9.9, "input.engineering_fte": 0.0,
              "input.usd_per_fte_year": 0.0, "input.infra_usd_per_month": 0.0,
              "input.usd_per_failed_request": 0.0, "input.usd_per_slo_violation": 0.0,
              "input.pool.r.usd_per_gpu_hour": 1.5, "input.pool.o.usd_per_gpu_hour": 3.0,
              "input.pool.s.usd_per_gpu_hour": 1.0}
    c = monthly_costs(run, inputs, {})
    assert c["cost.pool.r.compute_usd"] == pytest.approx(2 * 2 * 1.5 * 720)  # 4320
    assert c["cost.pool.o.compute_usd"] == pytest.approx(12 * 2 * 3.0 * 30)  # 2160
    assert c["cost.pool.s.compute_usd"] == pytest.approx(1 * 2 * 1.0 * 30)  # 60
    assert c["cost.compute.reserved_usd"] == pytest.approx(4320)
    assert c["cost.compute_usd"] == pytest.approx(4320 + 2160 + 60)
    assert c["pool.o.gpu_hours_per_month"] == pytest.approx(12 * 2 * 30)


def test_reserved_pool_is_billed_all_horizon_even_when_failed():
    res, _ = idle_fleet([pool(name="r", tier="reserved", replicas=3)], horizon_s=100 * HOUR,
                        failures={"mtbf_h": 5.0, "mttr_h": 5.0})
    assert res.row["pool.r.billed_replica_s"] == 3 * 100 * HOUR
    assert res.row["pool.r.committed_replicas"] == 3
    assert res.up_replica_s < 0.7 * 3 * 100 * HOUR


def test_cold_start_lognormal_from_median_and_p95():
    mu, sigma = lognormal_from_quantiles(240.0, 480.0)
    x = np.exp(mu + sigma * np.random.default_rng(0).standard_normal(200_000))
    assert np.median(x) == pytest.approx(240, rel=0.01)
    assert np.quantile(x, 0.95) == pytest.approx(480, rel=0.02)


# ------------------------------------------------------------------ reactive policy


def reactive(**kw) -> ReactiveState:
    cfg = ReactiveScaling.model_validate({"policy": "reactive", "target": 0.5, **kw})
    return ReactiveState(cfg, lowest=1, highest=10)


def test_hpa_recommendation_tolerance_bounds_and_scale_from_zero():
    st = reactive()
    assert st.recommend(0, 4, Observation(0, 0, busy=2.1)) == 4  # 4.2 / 4: within 10%
    assert st.recommend(0, 4, Observation(0, 0, busy=2.5)) == 5  # ceil(5.0)
    assert st.recommend(0, 4, Observation(0, 0, busy=9.0)) == 10  # clamped to max
    assert st.recommend(0, 4, Observation(0, 0, busy=0.0)) == 1  # clamped to min
    q = ReactiveState(ReactiveScaling(policy="reactive", metric="queue_length", target=10),
                      lowest=0, highest=5)
    assert q.recommend(0, 0, Observation(0, 3, busy=0.0)) == 1  # scale from zero
    assert q.recommend(0, 2, Observation(0, 0, busy=0.0)) == 0


def test_hpa_stabilization_windows_and_steps():
    st = reactive(stabilization_down_s=300, step_up=2)
    assert st.desired(0, 2, Observation(0, 0, busy=4.0)) == 4  # wants 8: +2 per scrape
    assert st.desired(15, 4, Observation(0, 0, busy=4.0)) == 6
    # load gone: scale-down waits until the high recommendations leave the window
    assert st.desired(30, 6, Observation(0, 0, busy=0.5)) == 6
    assert st.desired(299, 6, Observation(0, 0, busy=0.5)) == 6  # 8 still in the window
    assert st.desired(316, 6, Observation(0, 0, busy=0.5)) == 1  # 0, 15 left the window


# ------------------------------------------------------------- with a little traffic


def run_with_requests(pools, arrivals, outputs, *, horizon_s, cold_s=30.0, spec=SPEC):
    from sim.workload.requests import RequestBlock

    ids, up = layout(pools)
    engine = Engine(specs=[spec] * len(ids), pools=ids, up=up, streams=[StreamPolicy()],
                    seed=2)
    fleet = Fleet(engine, pools, seed=2, horizon_s=horizon_s,
                  cold_start=ColdStart(median=cold_s, p95=cold_s))
    block = RequestBlock.from_arrays(np.asarray(arrivals, float), np.zeros(len(arrivals)),
                                     np.asarray(outputs, float))
    got = []
    totals = engine.run([block], got.append)
    return fleet.result(60.0), totals, got


def test_backlog_left_at_the_horizon_gets_a_replica():
    """A reactive pool at zero whose first scrape would come after the horizon: at the
    horizon one replica is requested, so the waiting requests are still served."""
    pools = [pool(name="r", min_replicas=0, max_replicas=2,
                  scaling={"policy": "reactive", "metric": "queue_length", "target": 5,
                           "scrape_interval_s": 1000})]
    res, totals, got = run_with_requests(pools, np.linspace(100, 200, 20), np.full(20, 50.0),
                                         horizon_s=500.0)
    assert totals.served_gpu == 20 and len(got) == 1
    assert got[0].start_s.min() >= 500.0 + 30.0  # horizon + cold start
    assert res.row["pool.r.cold_starts"] == 0  # requested after the horizon: not counted


def test_utilization_policy_sizes_the_pool_to_the_load():
    """M/G/infinity load: each request decodes at 10 tokens/s whatever the batch, so the
    mean number running is lambda x E[tokens] / 10 = 20, while a replica has 10 slots; at a
    60% target the pool settles near 20 / (10 x 0.6) = 3.3, i.e. 4 to 6 replicas (HPA's
    ceil and its 5-minute scale-down window keep it above the mean)."""
    spec = ReplicaSpec(rate_table=[0.0] + [10.0] * 10, max_batch=10)
    rng = np.random.default_rng(5)
    n = 20_000
    arrivals = np.cumsum(rng.exponential(1 / 4.0, n))  # 4 per second
    outputs = np.maximum(1.0, np.round(rng.exponential(50.0, n)))
    pools = [pool(name="r", min_replicas=1, max_replicas=10,
                  scaling={"policy": "reactive", "metric": "utilization", "target": 0.6})]
    res, totals, _ = run_with_requests(pools, arrivals, outputs, horizon_s=arrivals[-1],
                                       spec=spec)
    assert totals.served_gpu == n
    later = res.timeseries["replicas_up.r"][10:]  # after the first 10 minutes
    assert 3.5 < later.mean() < 6.5
    assert res.row["pool.r.cold_starts"] >= 3

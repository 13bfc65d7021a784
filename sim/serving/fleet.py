"""A fleet that changes over time: pools, autoscaling, cold starts, spot and failures.

:class:`Fleet` drives the engine's primitives (``start_replica``, ``drain_replica``,
``fail_replica``) from SimPy callbacks and processes. The engine's replica list is
preallocated: pool ``p`` owns ``max_replicas`` consecutive *slots*, and the first
``initial`` of them are up at time zero (warm). Each slot is in one state::

    off --request--> starting --cold start--> up --fail--> failed --repair--> up
                        |                      |--scale down--> draining --drained--> off
                        '--scale down--> off   '--spot warning--> draining --evict--> off

What it models:

* **Controller** (per pool): the replicas a pool holds (starting, up or failed) are kept
  equal to its target, which the pool's policy sets (:mod:`sim.serving.autoscale`). Scaling up
  requests a replica in the lowest free slot; scaling down removes, in this order,
  replicas still starting (the newest first: the request is cancelled), failed ones,
  then the up replicas with the fewest running requests, which **drain** (no new
  requests; billing stops when the last running one ends). A pool never holds more than
  its slots, draining ones included: a scale-up waits for a slot to free.
* **Cold start**: a requested replica serves only after a lognormal delay fitted to the
  profile's ``cold_start_s`` median and p95 (``fleet.cold_start_s`` overrides it); it is
  billed from the request.
* **Spot**: while up, a spot replica is preempted at the pool's Poisson rate. At the
  warning it stops taking requests (drains) and leaves the pool's count, so the
  controller requests a replacement at once if the target still wants it; at the end of
  the warning whatever still runs is evicted (``fail_replica``: the requests go back to
  the waiting room and are retried or overflow; none is lost) and billing stops (or
  earlier, if it drained first).
* **Failures** (every tier): an up replica fails after Exp(MTBF) of up time and is back
  after Exp(MTTR); its running requests are evicted like a preemption's. **A failed
  replica stays billed** (you pay for the instance while it is repaired) and counts
  towards its pool's target, so it is not replaced.
* **Billing**: ``on_demand`` and ``spot`` replicas are billed from request to release,
  per second or per started hour (each interval rounded up); an interval still open at
  the horizon is billed up to the horizon, unrounded (its hour goes on past the horizon).
  ``reserved`` pools are billed for all of their replicas all month
  (:mod:`sim.costs.model` does the money).

Randomness: slot ``k`` of pool ``name`` draws its cold starts, failures, repairs and
preemptions from ``stream(seed, "fleet", name, k, <purpose>)``, so adding a pool never
changes another pool's draws and traffic streams are untouched (common random numbers).

The horizon: scaling decisions, failures and preemptions happen only before it. After
it the fleet stays as it is while the backlog drains (transitions already under way
finish: cold starts, repairs, drains, spot evictions). If requests still wait at or after
the horizon while no pool holds a replica, one replica is requested in the first pool that
can have one, so every request ends. Failures and preemptions strike only up replicas
(not ones starting, draining or being repaired): a simplification.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sim.core.rng import stream
from sim.profiles.schema import ColdStart
from sim.serving.autoscale import Observation, ReactiveState
from sim.serving.engine import Engine
from sim.serving.fleet_config import FailureConfig, PoolConfig
from sim.serving.metrics import interval_integral

__all__ = ["Fleet", "FleetResult", "PoolStats", "layout", "billed_seconds",
           "lognormal_from_quantiles", "OFF", "STARTING", "UP", "DRAINING", "FAILED"]

OFF, STARTING, UP, DRAINING, FAILED = range(5)
_HOLDS = (STARTING, UP, FAILED)  # states that count towards a pool's target
_Z95 = 1.6448536269514722  # standard normal 95th percentile
HOUR_S = 3600.0


def layout(pools: Sequence[PoolConfig]) -> tuple[list[int], list[bool]]:
    """Engine slots: the pool index and whether it is up at time zero, for every slot."""
    pool_ids: list[int] = []
    up: list[bool] = []
    for p, pool in enumerate(pools):
        pool_ids += [p] * pool.highest
        up += [k < pool.initial for k in range(pool.highest)]
    return pool_ids, up


def lognormal_from_quantiles(median: float, p95: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with this median and 95th percentile."""
    if median <= 0:
        return -math.inf, 0.0
    return math.log(median), math.log(p95 / median) / _Z95


def billed_seconds(intervals: Sequence[tuple[float, float]], horizon_s: float,
                   billing: str) -> float:
    """Billed seconds within the horizon of ``[start, end)`` intervals (end may be inf).

    ``per_hour`` rounds each interval that closed within the horizon up to whole hours;
    an interval still open at the horizon is billed up to it, unrounded.
    """
    total = 0.0
    for start, end in intervals:
        if start >= horizon_s:
            continue
        if end <= horizon_s:
            length = end - start
            if billing == "per_hour" and length > 0:
                length = math.ceil(length / HOUR_S - 1e-9) * HOUR_S
        else:
            length = horizon_s - start
        total += length
    return total


@dataclass
class PoolStats:
    """Event counts of one pool (events before the horizon)."""

    cold_starts: int = 0
    preemptions: int = 0
    failures: int = 0
    evicted_preemption: int = 0  # requests running on a replica at its eviction
    evicted_failure: int = 0


@dataclass
class _Pool:
    cfg: PoolConfig
    index: int
    first: int  # engine index of slot 0
    target: int
    stats: PoolStats = field(default_factory=PoolStats)
    billed: list[tuple[float, float]] = field(default_factory=list)
    up: list[tuple[float, float, int]] = field(default_factory=list)  # (start, end, slot)
    reactive: ReactiveState | None = None
    busy: bool = False
    again: bool = False

    @property
    def slots(self) -> range:
        return range(self.first, self.first + self.cfg.highest)


@dataclass
class FleetResult:
    """What the fleet did during one replication (within the horizon)."""

    row: dict  # pool.<name>.* and fleet.* keys for the run row
    timeseries: dict  # replicas_up[.<pool>], replicas_billed[.<pool>] per bin (means)
    up_replica_s: float  # replica-seconds up (serving) within the horizon
    billed_replica_s: float  # replica-seconds billed (billing basis) within the horizon
    up_area: np.ndarray  # replica-seconds up per time-series bin
    slot_up_s: np.ndarray  # per slot, seconds up within the horizon
    # replica-seconds up until the run ended (the horizon, or later while work drained):
    # the denominator of shares of busy time, which also counts work after the horizon
    up_replica_s_span: float = 0.0


class Fleet:
    """Drives one replication's engine slots; create before ``engine.run``."""

    def __init__(self, engine: Engine, pools: Sequence[PoolConfig], *,
                 seed: np.random.SeedSequence | int, horizon_s: float,
                 failures: FailureConfig | None = None, cold_start: ColdStart | None = None,
                 billing: str = "per_second"):
        self.engine = engine
        self.env = engine.env
        self.horizon_s = horizon_s
        self.failures = failures
        self.billing = billing
        self.seed = seed
        self.cold = (lognormal_from_quantiles(cold_start.median, cold_start.p95)
                     if cold_start is not None else None)
        self.pools: list[_Pool] = []
        first = 0
        for p, cfg in enumerate(pools):
            self.pools.append(_Pool(cfg, p, first, cfg.initial))
            first += cfg.highest
        if first != len(engine.replicas):
            raise ValueError(f"the engine has {len(engine.replicas)} replicas, the pools "
                             f"{first} slots (build it with sim.serving.fleet.layout)")
        n = first
        self.state = [OFF] * n
        self.epoch = [0] * n
        self.bill_t0 = [0.0] * n
        self.up_t0 = [0.0] * n
        self.pool_of: list[_Pool] = [pool for pool in self.pools for _ in pool.slots]
        self._rngs: dict[tuple[int, str], np.random.Generator] = {}
        self.frozen = False
        for pool in self.pools:
            if pool.cfg.may_grow and self.cold is None:
                raise ValueError(f"pool '{pool.cfg.name}' can request replicas but no cold "
                                 "start is known")
            self._install(pool)
        self._at(horizon_s, self._on_horizon)

    # ---------------------------------------------------------------- set-up
    def _install(self, pool: _Pool) -> None:
        for idx in pool.slots:
            if self.engine.replicas[idx].up:
                self.state[idx] = UP
                self._arm(idx)
        scaling = pool.cfg.scaling
        if scaling.policy == "schedule":
            self.env.process(self._schedule_loop(pool))
        elif scaling.policy == "reactive":
            pool.reactive = ReactiveState(scaling, pool.cfg.lowest, pool.cfg.highest)
            self.env.process(self._reactive_loop(pool))

    def _schedule_loop(self, pool: _Pool):
        scaling = pool.cfg.scaling
        for t in scaling.change_times(self.horizon_s):
            yield self.env.timeout(t - self.env.now)
            self._set_target(pool, scaling.target_at(self.env.now))

    def _reactive_loop(self, pool: _Pool):
        every = pool.cfg.scaling.scrape_interval_s
        k = 1
        while k * every < self.horizon_s:
            yield self.env.timeout(k * every - self.env.now)
            self._set_target(pool, pool.reactive.desired(self.env.now, pool.target,
                                                         self._observe(pool)))
            k += 1

    def _observe(self, pool: _Pool) -> Observation:
        running, busy = 0, 0.0
        for i in pool.slots:
            if self.state[i] == UP:
                rep = self.engine.replicas[i]
                b = len(rep.running)
                running += b
                busy += max(b / rep.max_batch, rep.kv_used / rep.kv_cap)
        return Observation(running, self.engine.queued, busy)

    def _rng(self, idx: int, purpose: str) -> np.random.Generator:
        key = (idx, purpose)
        rng = self._rngs.get(key)
        if rng is None:
            pool = self.pool_of[idx]
            rng = self._rngs[key] = stream(self.seed, "fleet", pool.cfg.name,
                                           idx - pool.first, purpose)
        return rng

    def _at(self, t: float, fn: Callable[..., None], *args: object) -> None:
        ev = self.env.timeout(max(t - self.env.now, 0.0))
        ev.callbacks.append(lambda _ev: fn(*args))

    # ------------------------------------------------------------ controller
    def _set_target(self, pool: _Pool, target: int) -> None:
        pool.target = target
        self._reconcile(pool)

    def _holds(self, pool: _Pool) -> int:
        return sum(1 for i in pool.slots if self.state[i] in _HOLDS)

    def _reconcile(self, pool: _Pool) -> None:
        """Bring the replicas the pool holds to its target (re-entrant safe)."""
        if pool.busy:
            pool.again = True
            return
        pool.busy = True
        try:
            pool.again = True
            while pool.again:
                pool.again = False
                self._reconcile_once(pool)
        finally:
            pool.busy = False

    def _reconcile_once(self, pool: _Pool) -> None:
        held = self._holds(pool)
        while held < pool.target:
            free = next((i for i in pool.slots if self.state[i] == OFF), None)
            if free is None:
                return  # a slot frees when a draining replica is released
            self._provision(free)
            held += 1
        while held > pool.target:
            self._remove(self._victim(pool))
            held = self._holds(pool)

    def _victim(self, pool: _Pool) -> int:
        """Which replica to give up: starting (newest first), failed, then least loaded."""
        slots = list(pool.slots)
        starting = [i for i in slots if self.state[i] == STARTING]
        if starting:
            return max(starting, key=lambda i: (self.bill_t0[i], i))
        failed = [i for i in slots if self.state[i] == FAILED]
        if failed:
            return failed[-1]
        reps = self.engine.replicas
        up = [i for i in slots if self.state[i] == UP]
        return min(up, key=lambda i: (len(reps[i].running), -i))

    def _remove(self, idx: int) -> None:
        if self.state[idx] in (STARTING, FAILED):
            self._release(idx, self.env.now)
            return
        self._leave_up(idx, DRAINING)
        self.engine.drain_replica(idx, lambda i, t: self._drained(i, t))

    # ------------------------------------------------------------ transitions
    def _provision(self, idx: int) -> None:
        now = self.env.now
        self.state[idx] = STARTING
        self.epoch[idx] += 1
        self.bill_t0[idx] = now
        pool = self.pool_of[idx]
        if now < self.horizon_s:
            pool.stats.cold_starts += 1
        mu, sigma = self.cold
        delay = math.exp(mu + sigma * self._rng(idx, "cold_start").standard_normal())
        self._at(now + delay, self._started, idx, self.epoch[idx])

    def _started(self, idx: int, epoch: int) -> None:
        if self.epoch[idx] != epoch or self.state[idx] != STARTING:
            return  # cancelled
        self._become_up(idx)

    def _become_up(self, idx: int) -> None:
        self.state[idx] = UP
        self.up_t0[idx] = self.env.now
        self.engine.start_replica(idx)
        self._arm(idx)

    def _arm(self, idx: int) -> None:
        """Draw this up period's failure and preemption times (if before the horizon)."""
        now, epoch = self.env.now, self.epoch[idx]
        if self.failures is not None:
            t = now + self._rng(idx, "failures").exponential(self.failures.mtbf_h * HOUR_S)
            if t < self.horizon_s:
                self._at(t, self._fail, idx, epoch, now)
        spot = self.pool_of[idx].cfg.spot
        if spot is not None and spot.preemptions_per_hour > 0:
            mean_s = HOUR_S / spot.preemptions_per_hour
            t = now + self._rng(idx, "preemptions").exponential(mean_s)
            if t < self.horizon_s:
                self._at(t, self._preempt, idx, epoch, now)

    def _current_up(self, idx: int, epoch: int, since: float) -> bool:
        """Is ``idx`` still in the up period that started at ``since``?"""
        return (self.epoch[idx] == epoch and self.state[idx] == UP
                and self.up_t0[idx] == since)

    def _leave_up(self, idx: int, new_state: int) -> None:
        self.pool_of[idx].up.append((self.up_t0[idx], self.env.now, idx))
        self.state[idx] = new_state

    def _fail(self, idx: int, epoch: int, since: float) -> None:
        if not self._current_up(idx, epoch, since):
            return
        pool = self.pool_of[idx]
        self._leave_up(idx, FAILED)
        pool.stats.failures += 1
        pool.stats.evicted_failure += self.engine.fail_replica(idx)
        repair_s = self._rng(idx, "repairs").exponential(self.failures.mttr_h * HOUR_S)
        self._at(self.env.now + repair_s, self._repaired, idx, self.epoch[idx])
        self._after_change(pool)

    def _repaired(self, idx: int, epoch: int) -> None:
        if self.epoch[idx] == epoch and self.state[idx] == FAILED:
            self._become_up(idx)

    def _preempt(self, idx: int, epoch: int, since: float) -> None:
        if not self._current_up(idx, epoch, since):
            return
        pool = self.pool_of[idx]
        pool.stats.preemptions += 1
        self._leave_up(idx, DRAINING)
        self._at(self.env.now + pool.cfg.spot.warning_s, self._evict, idx, epoch)
        self.engine.drain_replica(idx, lambda i, t: self._drained(i, t))
        self._reconcile(pool)  # a replacement, if the target still wants one

    def _evict(self, idx: int, epoch: int) -> None:
        if self.epoch[idx] != epoch or self.state[idx] != DRAINING:
            return  # it drained (and was released) before the end of the warning
        pool = self.pool_of[idx]
        pool.stats.evicted_preemption += self.engine.fail_replica(idx)
        self._release(idx, self.env.now)

    def _drained(self, idx: int, t: float) -> None:
        if self.state[idx] == DRAINING:
            self._release(idx, t)

    def _release(self, idx: int, t: float) -> None:
        pool = self.pool_of[idx]
        pool.billed.append((self.bill_t0[idx], t))
        self.state[idx] = OFF
        self.epoch[idx] += 1
        self._reconcile(pool)  # a freed slot may let a waiting scale-up through
        self._after_change(pool)

    # ----------------------------------------------------------- the horizon
    def _on_horizon(self) -> None:
        self.frozen = True
        self._guard_backlog()

    def _after_change(self, pool: _Pool) -> None:
        if self.frozen:
            self._guard_backlog()

    def _guard_backlog(self) -> None:
        """After the horizon, make sure waiting requests have some replica to go to."""
        if not self.engine.queued:
            return
        if any(self.state[i] in _HOLDS for i in range(len(self.state))):
            return
        for pool in self.pools:
            if pool.cfg.highest > 0 and any(self.state[i] == OFF for i in pool.slots):
                pool.target = max(pool.target, 1)
                self._reconcile(pool)
                return

    # --------------------------------------------------------------- results
    def result(self, bin_s: float) -> FleetResult:
        """Billing, up time, counts and time series; call after ``engine.run``."""
        end = max(self.env.now, self.horizon_s)
        horizon = self.horizon_s
        nbins = max(1, int(np.ceil(horizon / bin_s)))
        edges = np.arange(nbins + 1, dtype=np.float64) * bin_s
        row: dict = {}
        series: dict = {}
        slot_up = np.zeros(len(self.state))
        tot = {"up": 0.0, "billed": 0.0, "billed_raw": 0.0}
        up_area = np.zeros(nbins)
        billed_area = np.zeros(nbins)
        up_span = 0.0
        for pool in self.pools:
            up_iv, bill_iv = self._closed_intervals(pool, end)
            for a, b, idx in up_iv:
                slot_up[idx] += min(b, horizon) - min(a, horizon)
                up_span += b - a
            pool_row, up_bins, billed_bins = self._pool_result(pool, up_iv, bill_iv, edges)
            row.update(pool_row)
            name = pool.cfg.name
            series[f"replicas_up.{name}"] = up_bins / bin_s
            series[f"replicas_billed.{name}"] = billed_bins / bin_s
            up_area += up_bins
            billed_area += billed_bins
            tot["up"] += pool_row[f"pool.{name}.up_replica_s"]
            tot["billed"] += pool_row[f"pool.{name}.billed_replica_s"]
            tot["billed_raw"] += pool_row[f"pool.{name}.replicas_billed_mean"] * horizon
        series["replicas_up"] = up_area / bin_s
        series["replicas_billed"] = billed_area / bin_s
        row.update(self._totals_row(tot))
        return FleetResult(row, series, tot["up"], tot["billed"], up_area, slot_up, up_span)

    def _closed_intervals(self, pool: _Pool, end: float):
        """Up intervals (with their slot) and billing intervals, open ones closed at end."""
        up = list(pool.up)
        billed = list(pool.billed)
        for idx in pool.slots:
            if self.state[idx] == UP:
                up.append((self.up_t0[idx], end, idx))
            if self.state[idx] != OFF:
                billed.append((self.bill_t0[idx], math.inf))
        return up, billed

    def _pool_result(self, pool: _Pool, up_iv, bill_iv, edges: np.ndarray):
        cfg, h = pool.cfg, self.horizon_s
        name = cfg.name
        ups = np.array([(a, b) for a, b, _ in up_iv], dtype=np.float64).reshape(-1, 2)
        bills = np.array(bill_iv, dtype=np.float64).reshape(-1, 2)
        ups, bills = np.minimum(ups, h), np.minimum(bills, h)
        up_bins = interval_integral(edges, ups[:, 0], ups[:, 1], np.ones(len(ups)))
        if cfg.tier == "reserved":
            bills = np.array([[0.0, h]] * cfg.initial).reshape(-1, 2)
            billed_s = cfg.initial * h
        else:
            billed_s = billed_seconds(bill_iv, h, self.billing)
        billed_bins = interval_integral(edges, bills[:, 0], bills[:, 1], np.ones(len(bills)))
        s = pool.stats
        up_s = float(np.sum(ups[:, 1] - ups[:, 0]))
        row = {
            f"pool.{name}.tier": cfg.tier,
            f"pool.{name}.policy": cfg.scaling.policy,
            f"pool.{name}.committed_replicas": cfg.initial if cfg.tier == "reserved" else 0,
            f"pool.{name}.billed_replica_s": billed_s,
            f"pool.{name}.up_replica_s": up_s,
            f"pool.{name}.replicas_billed_mean": float(np.sum(bills[:, 1] - bills[:, 0])) / h,
            f"pool.{name}.replicas_up_mean": up_s / h,
            f"pool.{name}.cold_starts": s.cold_starts,
            f"pool.{name}.preemptions": s.preemptions,
            f"pool.{name}.failures": s.failures,
            f"pool.{name}.requests_evicted_preemption": s.evicted_preemption,
            f"pool.{name}.requests_evicted_failure": s.evicted_failure,
        }
        return row, up_bins, billed_bins

    def _totals_row(self, tot: dict) -> dict:
        h = self.horizon_s
        stats = [p.stats for p in self.pools]
        return {
            "fleet.pools": ",".join(p.cfg.name for p in self.pools),
            "fleet.billing": self.billing,
            "fleet.slots": len(self.state),
            "fleet.up_replica_s": tot["up"],
            "fleet.billed_replica_s": tot["billed"],
            "fleet.replicas_up_mean": tot["up"] / h,
            "fleet.replicas_billed_mean": tot["billed_raw"] / h,
            "fleet.cold_starts": sum(s.cold_starts for s in stats),
            "fleet.preemptions": sum(s.preemptions for s in stats),
            "fleet.failures": sum(s.failures for s in stats),
            "fleet.requests_evicted": sum(s.evicted_preemption + s.evicted_failure
                                          for s in stats),
        }

"""Scaling policies of a pool: how many replicas it should have (its *target*).

A pool's controller (:mod:`sim.serving.fleet`) keeps the number of replicas it holds (starting,
up or failed; draining ones are leaving and do not count) equal to its target, like a
Kubernetes ReplicaSet; a policy only moves the target. Policies:

* ``fixed`` - the target is ``replicas`` for ever (a preempted spot replica is replaced
  at once by a new cold start).
* ``schedule`` - replicas per hour of day: ``hourly`` (24 integers) and optionally a
  separate ``weekend`` list for Saturday and Sunday (days 5 and 6; the horizon starts on
  a Monday at 00:00). ``lead_s`` moves every change earlier by that much, so capacity
  requested ahead of a rise has finished its cold start when the hour begins. A schedule
  that follows the workload's diurnal curve (replicas proportional to the hour's mean
  rate) keeps the load per replica flat over the day.
* ``reactive`` - Horizontal-Pod-Autoscaler semantics, evaluated every
  ``scrape_interval_s`` on an instantaneous reading of the metric:

  - ``utilization``: per up replica, the larger of its batch-slot occupancy
    (running / max_batch) and its KV-cache occupancy (reserved / capacity), what vLLM
    exports as ``num_requests_running`` and ``gpu_cache_usage_perc``, averaged over the
    pool's replicas against ``target`` in (0, 1]; replicas still cold-starting count as
    idle (HPA treats not-ready pods as 0% when scaling up), so the raw recommendation is
    ``sum of the up replicas' utilizations / target``;
  - ``concurrency``: (running on the pool + waiting in the fleet's queue) per replica
    against ``target`` requests (Knative's concurrency target);
  - ``queue_length``: requests waiting in the fleet's central queue per replica against
    ``target`` (a KEDA-style queue scaler). The queue is shared by every pool.

  The recommendation is ``ceil(raw)``, unless ``|raw / current - 1| <= tolerance`` (then
  no change; HPA's default tolerance 0.1), raised to 1 when the pool is empty and
  requests wait (scale from zero), and clamped to ``[min_replicas, max_replicas]``.
  Recommendations are stabilised as HPA does: a scale-up goes to the *smallest*
  recommendation of the last ``stabilization_up_s`` (default 0: at once), a scale-down to
  the *largest* of the last ``stabilization_down_s`` (default 300 s). Each scrape adds at
  most ``step_up`` replicas (default 4) and removes at most ``step_down`` (default: no
  limit). ``current`` is the pool's target (HPA's spec.replicas), not the replicas ready.

Assumptions: the metric is read instantly at each scrape (HPA averages over a short
metrics window; a short scrape interval plus the stabilisation windows play that role);
a pool scales only on its own reading, so two reactive pools that watch the shared
queue both react to it (give one of them the job).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, field_validator

from sim.core.schema import DurationS, Model, PositiveFloat, ReplicaCount

__all__ = [
    "FixedScaling",
    "ScheduleScaling",
    "ReactiveScaling",
    "Scaling",
    "Observation",
    "ReactiveState",
]

DAY_S = 86400.0
HOUR_S = 3600.0
PositiveInt = Annotated[int, Field(gt=0)]
PositiveDurationS = Annotated[DurationS, Field(gt=0)]


def _fixed_bounds_error(lo: int | None, hi: int | None, replicas: int) -> str | None:
    for name, value in (("min_replicas", lo), ("max_replicas", hi)):
        if value is not None and value != replicas:
            return (f"a fixed pool always has exactly 'replicas' ({replicas}); {name} is "
                    "for schedule and reactive pools")
    return None


class FixedScaling(Model):
    """A constant target: ``replicas``."""

    policy: Literal["fixed"] = "fixed"

    def check_bounds(self, replicas: int | None, lo: int | None, hi: int | None) -> None:
        if replicas is None:
            raise ValueError("a fixed pool needs 'replicas'")
        problem = _fixed_bounds_error(lo, hi, replicas)
        if problem:
            raise ValueError(problem)

    def initial(self, replicas: int | None, lo: int | None) -> int:
        return int(replicas or 0)

    def lowest(self, replicas: int | None, lo: int | None) -> int:
        return int(replicas or 0)

    def highest(self, replicas: int | None, hi: int | None) -> int:
        return int(replicas or 0)


class ScheduleScaling(Model):
    """Replicas per hour of day (weekdays, optionally a weekend list), ``lead_s`` early."""

    policy: Literal["schedule"]
    hourly: tuple[ReplicaCount, ...]
    weekend: tuple[ReplicaCount, ...] | None = None
    lead_s: DurationS = 0.0

    @field_validator("hourly", "weekend")
    @classmethod
    def _24(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and len(v) != 24:
            raise ValueError(f"needs 24 values (one per hour of day), got {len(v)}")
        return v

    @field_validator("lead_s")
    @classmethod
    def _lead(cls, v: float) -> float:
        if v >= DAY_S:
            raise ValueError(f"lead_s must be under a day, got {v:g} s")
        return v

    @property
    def values(self) -> tuple[int, ...]:
        return self.hourly + (self.weekend or ())

    def scheduled(self, t_s: float) -> int:
        """The value the schedule gives for the hour containing ``t_s``."""
        day = int(t_s // DAY_S) % 7
        hour = int(t_s % DAY_S // HOUR_S)
        table = self.weekend if (self.weekend is not None and day >= 5) else self.hourly
        return table[hour]

    def target_at(self, t_s: float) -> int:
        """The target at ``t_s``: this hour's value, or the coming hour's if larger and
        within ``lead_s`` (scale-ups are early, scale-downs on the hour)."""
        return max(self.scheduled(t_s), self.scheduled(t_s + self.lead_s))

    def change_times(self, horizon_s: float) -> list[float]:
        """Times in (0, horizon) when the target may change, in order: every hour, and
        ``lead_s`` before every hour."""
        hours = math.ceil((horizon_s + self.lead_s) / HOUR_S) + 1
        return sorted({t for k in range(1, hours + 1)
                       for t in (k * HOUR_S, k * HOUR_S - self.lead_s) if 0 < t < horizon_s})

    def check_bounds(self, replicas: int | None, lo: int | None, hi: int | None) -> None:
        low, high = self.lowest(replicas, lo), self.highest(replicas, hi)
        if low > high:
            raise ValueError(f"min_replicas ({low}) exceeds max_replicas ({high})")
        outside = sorted({v for v in self.values if not low <= v <= high})
        if outside:
            raise ValueError(f"scheduled value(s) {outside} outside [min_replicas, "
                             f"max_replicas] = [{low}, {high}]")
        if replicas is not None and not low <= replicas <= high:
            raise ValueError(f"replicas ({replicas}) outside [{low}, {high}]")

    def initial(self, replicas: int | None, lo: int | None) -> int:
        return self.target_at(0.0) if replicas is None else replicas

    def lowest(self, replicas: int | None, lo: int | None) -> int:
        return min(self.values) if lo is None else lo

    def highest(self, replicas: int | None, hi: int | None) -> int:
        return max(self.values) if hi is None else hi


class ReactiveScaling(Model):
    """Autoscaling on a load metric with HPA semantics (see the module docstring)."""

    policy: Literal["reactive"]
    metric: Literal["utilization", "concurrency", "queue_length"] = "utilization"
    target: PositiveFloat
    scrape_interval_s: PositiveDurationS = 15.0
    stabilization_up_s: DurationS = 0.0
    stabilization_down_s: DurationS = 300.0
    tolerance: float = Field(0.1, ge=0, lt=1)
    step_up: PositiveInt = 4
    step_down: PositiveInt | None = None

    def check_bounds(self, replicas: int | None, lo: int | None, hi: int | None) -> None:
        if self.metric == "utilization" and self.target > 1:
            raise ValueError(f"a utilization target is a fraction in (0, 1], got "
                             f"{self.target:g}")
        if hi is None:
            raise ValueError("a reactive pool needs 'max_replicas'")
        low = self.lowest(replicas, lo)
        if low > hi:
            raise ValueError(f"min_replicas ({low}) exceeds max_replicas ({hi})")
        if replicas is not None and not low <= replicas <= hi:
            raise ValueError(f"replicas ({replicas}) outside [min_replicas, max_replicas] "
                             f"= [{low}, {hi}]")

    def initial(self, replicas: int | None, lo: int | None) -> int:
        return self.lowest(replicas, lo) if replicas is None else replicas

    def lowest(self, replicas: int | None, lo: int | None) -> int:
        return 1 if lo is None else lo

    def highest(self, replicas: int | None, hi: int | None) -> int:
        return int(hi or 0)


Scaling = Annotated[FixedScaling | ScheduleScaling | ReactiveScaling,
                    Field(discriminator="policy")]
"""``scaling:`` of a pool: ``fixed`` (the default), ``schedule`` or ``reactive``."""


@dataclass(frozen=True)
class Observation:
    """What a reactive policy reads at a scrape."""

    running: int  # requests running on the pool's up replicas
    queued: int  # requests waiting in the fleet's central queue
    busy: float  # sum over the pool's up replicas of max(slot, KV-cache occupancy)


class ReactiveState:
    """The recommendation history of one reactive pool (HPA's stabilisation windows)."""

    def __init__(self, policy: ReactiveScaling, lowest: int, highest: int):
        self.policy = policy
        self.lowest = lowest
        self.highest = highest
        self.history: deque[tuple[float, int]] = deque()

    def raw(self, obs: Observation) -> float:
        """Replicas the metric asks for, before tolerance, bounds and stabilisation."""
        p = self.policy
        if p.metric == "utilization":
            return obs.busy / p.target
        if p.metric == "concurrency":
            return (obs.running + obs.queued) / p.target
        return obs.queued / p.target

    def recommend(self, t_s: float, current: int, obs: Observation) -> int:
        """This scrape's recommendation (before stabilisation), clamped to the bounds."""
        raw = self.raw(obs)
        if current > 0 and abs(raw / current - 1.0) <= self.policy.tolerance:
            rec = current
        else:
            rec = math.ceil(raw - 1e-9)
        if current == 0 and obs.queued > 0:
            rec = max(rec, 1)
        return min(max(rec, self.lowest), self.highest)

    def desired(self, t_s: float, current: int, obs: Observation) -> int:
        """The new target after stabilisation windows and step limits."""
        p = self.policy
        self.history.append((t_s, self.recommend(t_s, current, obs)))
        keep = max(p.stabilization_up_s, p.stabilization_down_s)
        while self.history and self.history[0][0] <= t_s - keep and len(self.history) > 1:
            self.history.popleft()
        up = min(r for ts, r in self.history if ts > t_s - p.stabilization_up_s
                 or ts == t_s)
        down = max(r for ts, r in self.history if ts > t_s - p.stabilization_down_s
                   or ts == t_s)
        new = current
        if up > current:
            new = min(up, current + p.step_up)
        elif down < current:
            new = down if p.step_down is None else max(down, current - p.step_down)
        return min(max(new, self.lowest), self.highest)

"""The ``fleet:`` section of an experiment: pools of replicas, scaling, spot and failures.

A fleet is one GPU profile served by one or more **pools** (a pool is a group of
identical replicas bought the same way and scaled by the same rule)::

    fleet:
      profile: llama-70b-2xa100
      billing: per_second            # or per_hour: each billed interval rounded up to hours
      failures: {mtbf_h: 1000, mttr_h: 2}
      pools:
        - {name: base, tier: reserved, replicas: 1}
        - name: burst
          tier: on_demand            # reserved | on_demand | spot
          min_replicas: 0
          max_replicas: 4
          scaling: {policy: reactive, metric: utilization, target: 0.6}
        - name: night
          tier: spot
          scaling: {policy: schedule, hourly: [0, 3, 3, 3, 0, ...24 values], lead_s: 600}
          spot: {preemptions_per_hour: 0.05, warning_s: 120}
          usd_per_gpu_hour: {low: 0.9, high: 1.3}

``fleet: {profile, replicas: N}`` (the original form) is one fixed on-demand pool of N
replicas. Tiers: ``reserved`` capacity is always on (scaling must be ``fixed``) and billed
for the whole month at the committed rate, like today's fleet; ``on_demand`` and ``spot``
are billed from the moment a replica is requested (its cold start included) until it is
released (drained, evicted or cancelled); ``spot`` is cheaper and preemptible. Scaling
policies are described in :mod:`sim.serving.autoscale`. A pool's defaults: ``fixed`` needs
``replicas`` (min = max = replicas); ``schedule`` runs between the smallest and largest
hourly value and starts at the value for Monday 00:00; ``reactive`` needs ``max_replicas``,
``min_replicas`` defaults to 1 and the pool starts at ``min_replicas``.

Prices per GPU-hour (``usd_per_gpu_hour``, a number or a range) may be set per pool;
otherwise a pool of the tier named by ``costs.pricing`` takes the experiment's GPU price
and the other tiers take the profile's price for that tier (reserved: the on-demand price
less ``costs.reserved_discount`` when the profile has none; spot must be given).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from sim.core.schema import DurationS, Model, PositiveFloat, ReplicaCount
from sim.core.uncertain import Uncertain
from sim.profiles.schema import ColdStartSpec
from sim.serving.autoscale import FixedScaling, Scaling

__all__ = [
    "TIERS",
    "SpotConfig",
    "FailureConfig",
    "PoolConfig",
    "FleetConfig",
]

TIERS = ("reserved", "on_demand", "spot")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class SpotConfig(Model):
    """How a spot pool's replicas are taken back: a Poisson process per running replica."""

    preemptions_per_hour: float = Field(ge=0, allow_inf_nan=False)
    warning_s: DurationS = 120.0


class FailureConfig(Model):
    """Replica failures in every pool: up time ~ Exp(mean mtbf_h), repair ~ Exp(mttr_h)."""

    mtbf_h: PositiveFloat
    mttr_h: PositiveFloat


def _scaling(value: Any) -> Any:
    return {"policy": value} if isinstance(value, str) else value


class PoolConfig(Model):
    """One pool of identical replicas (see the module docstring for defaults)."""

    name: str
    tier: Literal["reserved", "on_demand", "spot"] = "on_demand"
    replicas: ReplicaCount | None = None
    min_replicas: ReplicaCount | None = None
    max_replicas: ReplicaCount | None = None
    scaling: Annotated[Scaling, BeforeValidator(_scaling)] = FixedScaling()
    usd_per_gpu_hour: Uncertain | None = None
    spot: SpotConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> PoolConfig:
        if not _NAME.match(self.name):
            raise ValueError(f"pool name {self.name!r} may use only letters, digits, '_' "
                             "and '-'")
        if self.tier == "spot" and self.spot is None:
            raise ValueError("a spot pool needs 'spot: {preemptions_per_hour, warning_s}'")
        if self.tier != "spot" and self.spot is not None:
            raise ValueError(f"'spot' settings need tier: spot (this pool is {self.tier})")
        if self.tier == "reserved" and self.scaling.policy != "fixed":
            raise ValueError("a reserved pool is always on: its scaling must be 'fixed'")
        self.scaling.check_bounds(self.replicas, self.min_replicas, self.max_replicas)
        return self

    @property
    def initial(self) -> int:
        """Replicas running at time zero."""
        return self.scaling.initial(self.replicas, self.min_replicas)

    @property
    def lowest(self) -> int:
        return self.scaling.lowest(self.replicas, self.min_replicas)

    @property
    def highest(self) -> int:
        """The pool's slot count: it never holds more replicas (draining ones included)."""
        return self.scaling.highest(self.replicas, self.max_replicas)

    @property
    def may_grow(self) -> bool:
        """Can this pool ever request a new replica (and so need a cold start)?"""
        return self.tier == "spot" or self.highest > self.initial or self.scaling.policy != "fixed"


class FleetConfig(Model):
    """The self-hosted fleet: a GPU profile and either ``replicas`` or ``pools``."""

    profile: str | dict[str, Any]
    replicas: ReplicaCount | None = None
    pools: list[PoolConfig] | None = Field(default=None, min_length=1)
    failures: FailureConfig | None = None
    billing: Literal["per_second", "per_hour"] = "per_second"
    cold_start_s: ColdStartSpec = None
    """Overrides the profile's cold start: {median, p95} or one duration for both."""

    @model_validator(mode="after")
    def _one_form(self) -> FleetConfig:
        if (self.replicas is None) == (self.pools is None):
            raise ValueError("give either 'replicas' (one fixed on-demand pool) or 'pools', "
                             "not both" if self.pools else
                             "needs 'replicas' (one fixed pool) or 'pools'")
        names = [p.name for p in self.pools or ()]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"pool names must be unique; repeated: {', '.join(dup)}")
        return self

    @property
    def dynamic(self) -> bool:
        """True when the fleet is described by pools or has failures (driven by
        :class:`sim.serving.fleet.Fleet`)."""
        return self.pools is not None or self.failures is not None

    @property
    def pool_list(self) -> list[PoolConfig]:
        """The pools; ``replicas: N`` is one fixed on-demand pool called ``default``."""
        if self.pools is not None:
            return list(self.pools)
        return [PoolConfig(name="default", tier="on_demand", replicas=self.replicas)]

    @property
    def initial_replicas(self) -> int:
        """Replicas running at time zero, over all pools."""
        return sum(p.initial for p in self.pool_list)

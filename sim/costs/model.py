"""Monthly cost of a hybrid serving plan: four cost layers plus API spend.

What it models, per replication and per month:

* **compute**: the provisioned self-hosted fleet, ``replicas x gpus_per_replica x
  usd_per_gpu_hour x 720 h``. Idle GPUs cost the same as busy ones, and the fleet is
  billed for a *full* month whatever the simulated horizon (capacity is rented, not used).
  A fleet of pools (:mod:`sim.serving.fleet`) sums over its pools: a ``reserved`` pool exactly
  as above at its own price (committed all month); an ``on_demand`` or ``spot`` pool pays
  for the GPU-hours it was billed during the horizon, scaled to a month
  (``billed GPU-hours x usd_per_gpu_hour x 720 h / horizon_h``). Keys per pool
  ``cost.pool.<name>.compute_usd`` and per tier ``cost.compute.<tier>_usd``.
* **engineering**: ``engineering_fte x usd_per_fte_year / 12`` (people running the fleet).
* **infra**: everything else that is fixed per month (storage, networking, monitoring).
* **reliability**: ``usd_per_failed_request x failed + usd_per_slo_violation x violations``,
  a price put on bad outcomes. A failed request that also missed its SLO is charged both
  prices if both are set: choose them with that in mind.
* **API**: tokens sent to paid APIs, uncached input, cached input and output each at its
  own price per million tokens, times ``api_price_scale`` (a what-if for price changes).

Assumptions, stated once:

* A month is 720 hours (30 days), the arithmetic of the seed article.
* Usage-driven quantities (API tokens, failures, SLO violations, tokens served) are scaled
  from the simulated horizon to a month by ``720 h / horizon_h``; provisioned compute,
  engineering and infra are not scaled.
* The API-only alternative prices *every* arrived request (its input and output tokens) at
  the reference API model, with that model's cached-input share (the requests of streams
  that declare a prefix: their declared cached tokens), and has no reliability
  cost (rate-limit failures of an API-only plan are not simulated).
* Uncertain inputs (a number, ``{low, high}`` uniform or ``{mode, low, high}`` triangular)
  are drawn once per replication, so the spread of monthly cost across replications shows
  input uncertainty together with traffic randomness. :func:`sample_cost_inputs` draws one
  uniform number per input in a fixed order whether or not the input is uncertain, so
  making one input uncertain never changes another input's draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from sim.core.errors import ConfigError
from sim.core.schema import Model, Probability
from sim.core.uncertain import Range, Uncertain, mean_of, parse_uncertain, quantile, sample

__all__ = [
    "HOURS_PER_MONTH",
    "SECONDS_PER_MONTH",
    "Range",
    "Uncertain",
    "ReliabilityCosts",
    "CostConfig",
    "sample",
    "quantile",
    "mean_of",
    "resolve_usd_per_gpu_hour",
    "sample_cost_inputs",
    "pool_usd_per_gpu_hour",
    "pool_compute_usd",
    "monthly_costs",
    "COST_LAYERS",
]

HOURS_PER_MONTH = 720.0
"""Hours in the billing month (30 days)."""
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0

COST_LAYERS = ("compute", "engineering", "infra", "reliability", "api")
"""The layers that add up to ``cost.total_usd`` (keys ``cost.<layer>_usd``)."""


class ReliabilityCosts(Model):
    """Prices put on bad outcomes (USD per event)."""

    usd_per_failed_request: Uncertain = 0.0
    usd_per_slo_violation: Uncertain = 0.0


class CostConfig(Model):
    """The ``costs:`` section of an experiment file."""

    pricing: Literal["on_demand", "reserved", "spot"] = "on_demand"
    usd_per_gpu_hour: Uncertain | None = None
    """None: the GPU profile's price for the pricing tier."""
    reserved_discount: Probability = 0.0
    """Discount on the on-demand price when pricing=reserved and the profile has none."""
    engineering_fte: Uncertain = 0.0
    usd_per_fte_year: Uncertain = 175_000.0
    infra_usd_per_month: Uncertain = 0.0
    reliability: ReliabilityCosts = ReliabilityCosts()
    api_price_scale: Uncertain = 1.0


def resolve_usd_per_gpu_hour(cfg: CostConfig, gpu_prices: Mapping[str, Any]) -> float | Range:
    """The GPU price that applies: explicit, else the profile's price for the pricing tier.

    ``gpu_prices`` is ``{'on_demand': x, 'reserved': y | None, 'spot': z | None}`` (numbers
    or ranges). An explicit ``usd_per_gpu_hour`` is taken as the price of the chosen tier
    (no discount applied). ``reserved`` without a profile price is the on-demand price less
    ``reserved_discount``; ``spot`` without one is an error.
    """
    if cfg.usd_per_gpu_hour is not None:
        return cfg.usd_per_gpu_hour
    field = "costs.usd_per_gpu_hour"
    on_demand = gpu_prices.get("on_demand")
    tier_price = gpu_prices.get(cfg.pricing)
    if tier_price is not None:
        return _as_uncertain(tier_price, field)
    if cfg.pricing == "spot":
        raise ConfigError("the GPU profile has no spot price; set costs.usd_per_gpu_hour",
                          field=field)
    if on_demand is None:
        raise ConfigError("the GPU profile has no on-demand price; set costs.usd_per_gpu_hour",
                          field=field)
    base = _as_uncertain(on_demand, field)
    keep = 1.0 - cfg.reserved_discount  # pricing is 'reserved' here
    if isinstance(base, Range):
        return Range(low=base.low * keep, high=base.high * keep,
                     mode=None if base.mode is None else base.mode * keep)
    return base * keep


def _as_uncertain(value: Any, field: str) -> float | Range:
    try:
        return parse_uncertain(value)
    except ValueError as exc:
        raise ConfigError(f"bad GPU price in the profile: {exc}", field=field) from None


def sample_cost_inputs(cfg: CostConfig, rng: np.random.Generator,
                       gpu_prices: Mapping[str, Any]) -> dict[str, float]:
    """Draw every cost input once for a replication: ``{'input.<name>': value}``.

    One uniform number is drawn per input, in a fixed order, whether or not the input is
    uncertain (common random numbers across experiments that differ in one input).
    """
    sources: dict[str, float | Range] = {
        "input.usd_per_gpu_hour": resolve_usd_per_gpu_hour(cfg, gpu_prices),
        "input.engineering_fte": cfg.engineering_fte,
        "input.usd_per_fte_year": cfg.usd_per_fte_year,
        "input.infra_usd_per_month": cfg.infra_usd_per_month,
        "input.usd_per_failed_request": cfg.reliability.usd_per_failed_request,
        "input.usd_per_slo_violation": cfg.reliability.usd_per_slo_violation,
        "input.api_price_scale": cfg.api_price_scale,
    }
    uniforms = rng.random(len(sources))
    return {key: quantile(value, float(u))
            for (key, value), u in zip(sources.items(), uniforms, strict=True)}


def pool_usd_per_gpu_hour(tier: str, explicit: float | Range | None, cfg: CostConfig,
                          gpu_prices: Mapping[str, Any], experiment_price: float,
                          u: float) -> float:
    """The GPU price of one pool, drawn with the uniform ``u``.

    In order: the pool's own ``usd_per_gpu_hour``; for the tier named by
    ``costs.pricing``, the experiment's drawn price ``experiment_price``
    (``input.usd_per_gpu_hour``, so a one-pool fleet sees the same price as before); the
    profile's price for the tier; for ``reserved`` without one, the on-demand price (the
    experiment's if ``costs.pricing`` is on-demand, else the profile's) less
    ``costs.reserved_discount``. A spot pool without any price is a ConfigError.
    """
    if explicit is not None:
        return quantile(explicit, u)
    if tier == cfg.pricing:
        return float(experiment_price)
    field = "usd_per_gpu_hour"
    listed = gpu_prices.get(tier)
    if listed is not None:
        return quantile(_as_uncertain(listed, field), u)
    if tier == "reserved":
        if cfg.pricing == "on_demand":
            base = float(experiment_price)
        else:
            base = quantile(_as_uncertain(gpu_prices.get("on_demand"), field), u)
        return base * (1.0 - cfg.reserved_discount)
    raise ConfigError(f"the GPU profile has no {tier.replace('_', '-')} price; set the "
                      "pool's usd_per_gpu_hour", field=field)


def _pools_in(run: Mapping[str, Any]) -> list[str]:
    suffix = ".billed_replica_s"
    return [key[len("pool."):-len(suffix)] for key in run
            if key.startswith("pool.") and key.endswith(suffix)]


def pool_compute_usd(run: Mapping[str, Any], inputs: Mapping[str, float]) -> dict[str, float]:
    """Monthly compute of a fleet of pools: per pool, per tier and in all.

    ``reserved``: ``committed_replicas x gpus x price x 720 h``; ``on_demand``/``spot``:
    ``(billed_replica_s / horizon_s) x gpus x price x 720 h``.
    """
    horizon_s = float(run["horizon_s"])
    gpus = float(run["gpus_per_replica"])
    out: dict[str, float] = {}
    tiers = {"reserved": 0.0, "on_demand": 0.0, "spot": 0.0}
    for name in _pools_in(run):
        tier = str(run[f"pool.{name}.tier"])
        price = float(inputs[f"input.pool.{name}.usd_per_gpu_hour"])
        if tier == "reserved":
            replicas = float(run[f"pool.{name}.committed_replicas"])
        else:
            replicas = float(run[f"pool.{name}.billed_replica_s"]) / horizon_s
        gpu_hours = replicas * gpus * HOURS_PER_MONTH
        usd = replicas * gpus * price * HOURS_PER_MONTH
        out[f"pool.{name}.gpu_hours_per_month"] = gpu_hours
        out[f"cost.pool.{name}.compute_usd"] = usd
        tiers[tier] += usd
    for tier, usd in tiers.items():
        out[f"cost.compute.{tier}_usd"] = usd
    out["cost.compute_usd"] = sum(tiers.values())
    return out


def _api_usd(input_tokens: float, cached_input_tokens: float, output_tokens: float,
             prices: tuple[float, float, float]) -> float:
    usd_per_1m_input, usd_per_1m_cached_input, usd_per_1m_output = prices
    cached = min(max(cached_input_tokens, 0.0), input_tokens)
    return ((input_tokens - cached) * usd_per_1m_input + cached * usd_per_1m_cached_input
            + output_tokens * usd_per_1m_output) / 1e6


def _api_models_in(run: Mapping[str, Any]) -> set[str]:
    suffix = ".input_tokens"
    return {key[len("api."):-len(suffix)] for key in run
            if key.startswith("api.") and key.endswith(suffix)
            and not key.endswith(".cached_input_tokens")}


def _api_only_cached_tokens(run: Mapping[str, Any], model: str, input_tokens: float) -> float:
    """Cached input tokens of the API-only alternative: its ``api_only.cached_input_share``
    if given; else the streams that declare a prefix by their declaration
    (``prefix.*_tokens_total``) and the rest at the cached share seen on this model's
    traffic outside them."""
    if "api_only.cached_input_share" in run:
        return input_tokens * float(run["api_only.cached_input_share"])
    declared_in = float(run.get("prefix.input_tokens_total", 0.0))
    declared_cached = float(run.get("prefix.cached_input_tokens_total", 0.0))
    tin = (float(run.get(f"api.{model}.input_tokens", 0.0))
           - float(run.get(f"api.{model}.prefix_input_tokens", 0.0)))
    cached = (float(run.get(f"api.{model}.cached_input_tokens", 0.0))
              - float(run.get(f"api.{model}.prefix_cached_input_tokens", 0.0)))
    share = cached / tin if tin > 0 else 0.0
    return declared_cached + (input_tokens - declared_in) * share


def monthly_costs(run: Mapping[str, Any], inputs: Mapping[str, float],
                  api_prices: Mapping[str, tuple[float, float, float]]) -> dict[str, float]:
    """Monthly cost of one replication (keys ``cost.*``, USD per 30-day month).

    ``run`` is the engine's flat per-replication row, ``inputs`` the draw of
    :func:`sample_cost_inputs` and ``api_prices`` maps an API model name to
    ``(usd_per_1m_input, usd_per_1m_cached_input, usd_per_1m_output)``.
    """
    horizon_s = float(run["horizon_s"])
    if not horizon_s > 0:
        raise ValueError(f"horizon_s must be positive, got {horizon_s!r}")
    to_month = SECONDS_PER_MONTH / horizon_s
    price_scale = float(inputs.get("input.api_price_scale", 1.0))

    pools = pool_compute_usd(run, inputs) if _pools_in(run) else {}
    if pools:
        compute = pools["cost.compute_usd"]
    else:
        gpus = float(run["replicas"]) * float(run["gpus_per_replica"])
        compute = gpus * float(inputs["input.usd_per_gpu_hour"]) * HOURS_PER_MONTH
    engineering = float(inputs["input.engineering_fte"]) * float(
        inputs["input.usd_per_fte_year"]) / 12.0
    infra = float(inputs["input.infra_usd_per_month"])
    reliability = to_month * (
        float(run.get("requests_failed", 0)) * float(inputs["input.usd_per_failed_request"])
        + float(run.get("slo_violations", 0)) * float(inputs["input.usd_per_slo_violation"]))

    unpriced = _api_models_in(run) - set(api_prices)
    if unpriced:
        raise ValueError(f"no API prices for model(s) {sorted(unpriced)}")
    api = 0.0
    for model, prices in api_prices.items():
        api += _api_usd(float(run.get(f"api.{model}.input_tokens", 0.0)),
                        float(run.get(f"api.{model}.cached_input_tokens", 0.0)),
                        float(run.get(f"api.{model}.output_tokens", 0.0)), prices)
    api *= price_scale * to_month

    fixed = compute + engineering + infra
    total = fixed + reliability + api
    tokens_per_month = (float(run.get("input_tokens_total", 0.0))
                        + float(run.get("output_tokens_total", 0.0))) * to_month
    usd_per_1m_tokens = total / (tokens_per_month / 1e6) if tokens_per_month > 0 else math.nan

    api_only = math.nan
    model = run.get("api_only_model")
    if isinstance(model, str) and model in api_prices:
        tin = float(run.get("api_only.input_tokens_total", run.get("input_tokens_total", 0.0)))
        tout = float(run.get("api_only.output_tokens_total",
                             run.get("output_tokens_total", 0.0)))
        cached = _api_only_cached_tokens(run, model, tin)
        api_only = _api_usd(tin, cached, tout, api_prices[model]) * price_scale * to_month
    usd_per_token = api_only / tokens_per_month if tokens_per_month > 0 else math.nan
    breakeven = fixed / usd_per_token if usd_per_token > 0 else math.nan

    return {
        **pools,
        "cost.compute_usd": compute,
        "cost.engineering_usd": engineering,
        "cost.infra_usd": infra,
        "cost.reliability_usd": reliability,
        "cost.api_usd": api,
        "cost.fixed_usd": fixed,
        "cost.total_usd": total,
        "cost.usd_per_1m_tokens": usd_per_1m_tokens,
        "cost.api_only_usd": api_only,
        "cost.savings_usd": api_only - total,
        "cost.breakeven_tokens_per_month": breakeven,
    }

"""The cost model: the seed article's arithmetic, sampling, validation and API pricing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.core.errors import ConfigError
from sim.core.schema import validate
from sim.costs.model import (
    HOURS_PER_MONTH,
    CostConfig,
    Range,
    mean_of,
    monthly_costs,
    resolve_usd_per_gpu_hour,
    sample,
    sample_cost_inputs,
)

MONTH_S = 30 * 86400.0
GPT4O_BLENDED = 4.40  # USD per 1M tokens, the seed article's blended GPT-4o price
GPU_PRICES = {"on_demand": 4.0, "reserved": None, "spot": None}


def _run(**overrides) -> dict:
    """A hand-built engine row: one replica of two GPUs, no API traffic."""
    row = {
        "horizon_s": MONTH_S, "replicas": 1, "gpus_per_replica": 2,
        "requests_arrived": 1000, "requests_gpu": 1000, "requests_api": 0,
        "requests_failed": 0, "input_tokens_total": 3e6, "output_tokens_total": 1e6,
        "slo_violations": 0, "api_only_model": "gpt-4o",
        "api_only.input_tokens_total": 3e6, "api_only.output_tokens_total": 1e6,
    }
    row.update(overrides)
    return row


def _inputs(**overrides) -> dict:
    inputs = {"input.usd_per_gpu_hour": 4.0, "input.engineering_fte": 0.0,
              "input.usd_per_fte_year": 175000.0, "input.infra_usd_per_month": 0.0,
              "input.usd_per_failed_request": 0.0, "input.usd_per_slo_violation": 0.0,
              "input.api_price_scale": 1.0}
    inputs.update(overrides)
    return inputs


# ------------------------------------------------------------ the seed article's numbers


def _seed_config() -> CostConfig:
    # The article's "2 GPUs at $5-7/hour" is the price of the two-GPU node: $5-7 per hour
    # for both GPUs, i.e. $2.50-3.50 per GPU-hour (that is what makes $13,225-18,540).
    return validate(CostConfig, {
        "usd_per_gpu_hour": {"low": 2.5, "high": 3.5},
        "engineering_fte": 0.75,
        "usd_per_fte_year": {"low": 150_000, "high": 200_000},
        "infra_usd_per_month": {"low": 250, "high": 1_000},
    })


@pytest.mark.parametrize(("end", "fixed_usd", "breakeven_b"),
                         [("low", 13_225.0, 3.006), ("high", 18_540.0, 4.214)])
def test_seed_article_fixed_cost_and_breakeven(end, fixed_usd, breakeven_b):
    cfg = _seed_config()
    pick = {"low": lambda r: r.low, "high": lambda r: r.high}[end]
    inputs = _inputs(**{
        "input.usd_per_gpu_hour": pick(cfg.usd_per_gpu_hour),
        "input.engineering_fte": cfg.engineering_fte,
        "input.usd_per_fte_year": pick(cfg.usd_per_fte_year),
        "input.infra_usd_per_month": pick(cfg.infra_usd_per_month),
    })
    # A blended GPT-4o price of $4.40 per 1M tokens for every token of the traffic mix.
    prices = {"gpt-4o": (GPT4O_BLENDED, GPT4O_BLENDED, GPT4O_BLENDED)}
    costs = monthly_costs(_run(), inputs, prices)
    assert costs["cost.fixed_usd"] == pytest.approx(fixed_usd)
    # Compute: 2 GPUs x 720 h; engineering: 0.75 FTE / 12 months.
    assert costs["cost.compute_usd"] == pytest.approx(2 * pick(cfg.usd_per_gpu_hour) * 720)
    assert costs["cost.engineering_usd"] == pytest.approx(0.75 * pick(cfg.usd_per_fte_year) / 12)
    breakeven = costs["cost.breakeven_tokens_per_month"]
    assert breakeven == pytest.approx(fixed_usd / (GPT4O_BLENDED / 1e6))
    assert breakeven / 1e9 == pytest.approx(breakeven_b, abs=5e-4)
    assert 3.0e9 <= breakeven <= 4.25e9


def test_seed_article_sampled_fixed_cost_stays_in_range():
    cfg = _seed_config()
    rng = np.random.default_rng(7)
    fixed = [monthly_costs(_run(), sample_cost_inputs(cfg, rng, GPU_PRICES),
                           {"gpt-4o": (2.5, 1.25, 10.0)})["cost.fixed_usd"]
             for _ in range(500)]
    assert min(fixed) >= 13_225 and max(fixed) <= 18_540
    assert np.mean(fixed) == pytest.approx(2 * 3 * 720 + 0.75 * 175_000 / 12 + 625, rel=0.01)


def test_breakeven_with_list_prices_and_3_to_1_mix():
    # GPT-4o list prices $2.50 in / $10 out, 3:1 input:output -> $4.375 per 1M blended.
    costs = monthly_costs(_run(), _inputs(), {"gpt-4o": (2.5, 1.25, 10.0)})
    assert costs["cost.api_only_usd"] == pytest.approx(3 * 2.5 + 1 * 10.0)
    blended_usd_per_token = 4.375e-6
    assert costs["cost.breakeven_tokens_per_month"] == pytest.approx(
        costs["cost.fixed_usd"] / blended_usd_per_token)


# ------------------------------------------------------------------------ the layers


def test_layers_add_up_and_usage_scales_to_a_month():
    week_s = 7 * 86400.0
    run = _run(horizon_s=week_s, replicas=3, requests_failed=10, slo_violations=20,
               **{"api.gpt-4o.input_tokens": 2e6, "api.gpt-4o.cached_input_tokens": 5e5,
                  "api.gpt-4o.output_tokens": 1e6})
    inputs = _inputs(**{"input.usd_per_failed_request": 1.0,
                        "input.usd_per_slo_violation": 0.5,
                        "input.engineering_fte": 1.0, "input.usd_per_fte_year": 120_000.0,
                        "input.infra_usd_per_month": 300.0, "input.api_price_scale": 2.0})
    costs = monthly_costs(run, inputs, {"gpt-4o": (2.5, 1.25, 10.0)})
    scale = MONTH_S / week_s
    # Provisioned compute: full month whatever the horizon.
    assert costs["cost.compute_usd"] == pytest.approx(3 * 2 * 4.0 * HOURS_PER_MONTH)
    assert costs["cost.engineering_usd"] == pytest.approx(10_000.0)
    assert costs["cost.infra_usd"] == 300.0
    assert costs["cost.reliability_usd"] == pytest.approx((10 * 1.0 + 20 * 0.5) * scale)
    api_week = (1.5e6 * 2.5 + 0.5e6 * 1.25 + 1e6 * 10.0) / 1e6 * 2.0
    assert costs["cost.api_usd"] == pytest.approx(api_week * scale)
    layers = ("compute", "engineering", "infra", "reliability", "api")
    assert costs["cost.total_usd"] == pytest.approx(
        sum(costs[f"cost.{k}_usd"] for k in layers))
    assert costs["cost.fixed_usd"] == pytest.approx(
        costs["cost.compute_usd"] + costs["cost.engineering_usd"] + 300.0)
    tokens_month = 4e6 * scale
    assert costs["cost.usd_per_1m_tokens"] == pytest.approx(
        costs["cost.total_usd"] / (tokens_month / 1e6))
    # API-only: all traffic at gpt-4o, the cached share seen on gpt-4o (25%), price x2.
    api_only_week = (3e6 * 0.75 * 2.5 + 3e6 * 0.25 * 1.25 + 1e6 * 10.0) / 1e6 * 2.0
    assert costs["cost.api_only_usd"] == pytest.approx(api_only_week * scale)
    assert costs["cost.savings_usd"] == pytest.approx(
        costs["cost.api_only_usd"] - costs["cost.total_usd"])


def test_monthly_costs_edge_cases():
    no_api_model = monthly_costs(_run(api_only_model=None), _inputs(), {})
    assert math.isnan(no_api_model["cost.api_only_usd"])
    assert math.isnan(no_api_model["cost.breakeven_tokens_per_month"])
    idle = monthly_costs(_run(input_tokens_total=0, output_tokens_total=0,
                              **{"api_only.input_tokens_total": 0,
                                 "api_only.output_tokens_total": 0}),
                         _inputs(), {"gpt-4o": (2.5, 1.25, 10.0)})
    assert idle["cost.compute_usd"] > 0 and math.isnan(idle["cost.usd_per_1m_tokens"])
    with pytest.raises(ValueError, match="no API prices"):
        monthly_costs(_run(**{"api.claude.input_tokens": 1.0}), _inputs(), {})


# -------------------------------------------------------------------------- sampling


def test_plain_numbers_consume_no_randomness():
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    assert sample(3.5, rng) == 3.5
    assert rng.bit_generator.state == state


def test_sampling_is_reproducible_with_a_fixed_seed():
    cfg = _seed_config()
    a = [sample_cost_inputs(cfg, np.random.default_rng(42), GPU_PRICES) for _ in range(2)]
    b = sample_cost_inputs(cfg, np.random.default_rng(43), GPU_PRICES)
    assert a[0] == a[1]
    assert a[0] != b
    assert set(a[0]) == {"input.usd_per_gpu_hour", "input.engineering_fte",
                         "input.usd_per_fte_year", "input.infra_usd_per_month",
                         "input.usd_per_failed_request", "input.usd_per_slo_violation",
                         "input.api_price_scale"}


def test_one_input_becoming_uncertain_leaves_other_draws_alone():
    fixed_infra = validate(CostConfig, {"usd_per_gpu_hour": {"low": 1, "high": 9}})
    ranged_infra = validate(CostConfig, {"usd_per_gpu_hour": {"low": 1, "high": 9},
                                         "infra_usd_per_month": {"low": 0, "high": 10}})
    a = sample_cost_inputs(fixed_infra, np.random.default_rng(5), GPU_PRICES)
    b = sample_cost_inputs(ranged_infra, np.random.default_rng(5), GPU_PRICES)
    assert a["input.usd_per_gpu_hour"] == b["input.usd_per_gpu_hour"]


@pytest.mark.parametrize("spec", [{"low": 2.0, "high": 5.0},
                                  {"mode": 2.5, "low": 1.0, "high": 6.0},
                                  {"mode": 1.0, "low": 1.0, "high": 4.0}])
def test_sample_means_within_four_standard_errors(spec):
    value = validate(CostConfig, {"infra_usd_per_month": spec}).infra_usd_per_month
    assert isinstance(value, Range)
    low, high = value.low, value.high
    if value.mode is None:
        variance = (high - low) ** 2 / 12
    else:
        c = value.mode
        variance = (low**2 + high**2 + c**2 - low * high - low * c - high * c) / 18
    rng = np.random.default_rng(2024)
    n = 20_000
    draws = np.array([sample(value, rng) for _ in range(n)])
    assert draws.min() >= low and draws.max() <= high
    assert abs(draws.mean() - mean_of(value)) < 4 * math.sqrt(variance / n)


def test_gpu_price_from_the_profile_by_tier():
    prices = {"on_demand": 4.0, "reserved": None, "spot": 1.5}
    on_demand = validate(CostConfig, {})
    assert resolve_usd_per_gpu_hour(on_demand, prices) == 4.0
    reserved = validate(CostConfig, {"pricing": "reserved", "reserved_discount": 0.25})
    assert resolve_usd_per_gpu_hour(reserved, prices) == pytest.approx(3.0)
    assert resolve_usd_per_gpu_hour(reserved, {**prices, "reserved": 2.2}) == 2.2
    spot = validate(CostConfig, {"pricing": "spot"})
    assert resolve_usd_per_gpu_hour(spot, prices) == 1.5
    with pytest.raises(ConfigError, match="no spot price"):
        resolve_usd_per_gpu_hour(spot, {**prices, "spot": None})
    explicit = validate(CostConfig, {"pricing": "reserved", "usd_per_gpu_hour": 9,
                                     "reserved_discount": 0.5})
    assert resolve_usd_per_gpu_hour(explicit, prices) == 9.0


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"usd_per_gpu_hour": {"low": 7, "high": 5}}, "costs.usd_per_gpu_hour",
     "must not exceed high"),
    ({"engineering_fte": {"mode": 9, "low": 5, "high": 7}}, "costs.engineering_fte",
     "mode (9) must lie between"),
    ({"infra_usd_per_month": -250}, "costs.infra_usd_per_month", "non-negative"),
    ({"usd_per_fte_year": {"low": -1, "high": 5}}, "costs.usd_per_fte_year", "non-negative"),
    ({"api_price_scale": float("inf")}, "costs.api_price_scale", "finite"),
    ({"usd_per_gpu_hr": 3}, "costs.usd_per_gpu_hr", "did you mean 'usd_per_gpu_hour'"),
    ({"reliability": {"usd_per_slo_violaton": 1}}, "costs.reliability.usd_per_slo_violaton",
     "did you mean 'usd_per_slo_violation'"),
    ({"infra_usd_per_month": {"low": 1, "hihg": 2}}, "costs.infra_usd_per_month",
     "did you mean 'high'"),
    ({"infra_usd_per_month": {"low": 1}}, "costs.infra_usd_per_month", "needs 'high'"),
    ({"reserved_discount": 1.5}, "costs.reserved_discount", "less than or equal to 1"),
])
def test_bad_inputs_give_one_line_config_errors(data, field, words):
    with pytest.raises(ConfigError) as info:
        validate(CostConfig, data, file="exp.yaml", prefix="costs")
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"exp.yaml: {field}: ")
    assert words in text


def test_good_inputs_parse():
    cfg = validate(CostConfig, {"usd_per_gpu_hour": "3.5", "engineering_fte": 1,
                                "reliability": {"usd_per_failed_request": {"low": 0,
                                                                           "high": 0.1}}})
    assert cfg.usd_per_gpu_hour == 3.5
    assert cfg.reliability.usd_per_failed_request == Range(low=0, high=0.1)
    assert cfg.usd_per_fte_year == 175_000 and cfg.pricing == "on_demand"

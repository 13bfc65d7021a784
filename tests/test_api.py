"""Simulated APIs: built-in prices, rate limiting, outages, retries, latency, config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.errors import ConfigError
from sim.serving.api import (
    WINDOW_S,
    ApiModel,
    FixedTtft,
    LognormalTtft,
    RateLimiter,
    builtin_api_models,
    get_api_model,
    load_api_models,
)


def model(**changes) -> ApiModel:
    data = {"name": "m", "usd_per_1m_input": 1.0, "usd_per_1m_output": 2.0,
            "ttft_s": 0.5, "output_tokens_per_s": 100.0}
    data.update(changes)
    return load_api_models({"m": data})["m"]


def config_error(spec, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_api_models(spec, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


# --- built-ins --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, inp, cached, out", [
    ("gpt-4o", 2.50, 1.25, 10.00),
    ("gpt-4o-mini", 0.15, 0.075, 0.60),
    ("claude-sonnet", 3.00, 0.30, 15.00),
    ("claude-haiku", 0.25, 0.25, 1.25),
])
def test_builtin_prices(name, inp, cached, out):
    m = builtin_api_models()[name]
    assert (m.usd_per_1m_input, m.usd_per_1m_cached_input, m.usd_per_1m_output) == \
        (inp, cached, out)
    assert m.price_date and m.source
    assert m.cached_input_share == 0.0


def test_builtins_have_latency_and_tier_limits():
    models = load_api_models(None)
    assert set(models) == {"gpt-4o", "gpt-4o-mini", "claude-sonnet", "claude-haiku"}
    assert (models["gpt-4o"].rpm, models["gpt-4o"].tpm) == (500, 30_000)
    assert (models["gpt-4o-mini"].rpm, models["gpt-4o-mini"].tpm) == (500, 200_000)
    assert (models["claude-sonnet"].rpm, models["claude-sonnet"].tpm) == (50, 48_000)
    for m in models.values():
        assert isinstance(m.ttft_s, LognormalTtft) and m.ttft_s.p95 > m.ttft_s.median > 0
        assert m.output_tokens_per_s > 0
        assert (m.retry.max_retries, m.retry.backoff_s, m.retry.multiplier) == (3, 1.0, 2.0)


def test_cost_usd():
    gpt4o = builtin_api_models()["gpt-4o"]
    assert gpt4o.cost_usd(1e6, 1e6) == pytest.approx(12.5)
    assert isinstance(gpt4o.cost_usd(1000, 200), float)
    cached = load_api_models({"c": {"base": "gpt-4o", "cached_input_share": 0.4}})["c"]
    assert cached.cost_usd(1e6, 0) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)
    costs = cached.cost_usd(np.array([1e6, 2e6]), np.array([0.0, 1e6]))
    assert costs.shape == (2,)
    assert costs == pytest.approx([2.0, 4.0 + 10.0])


# --- overrides --------------------------------------------------------------------------------


def test_base_with_overrides_and_string_shorthand():
    models = load_api_models({"mine": {"base": "gpt-4o", "rpm": 10_000, "tpm": 2_000_000},
                              "alias": "gpt-4o-mini", "derived": {"base": "mine", "rpm": 5}})
    assert models["mine"].rpm == 10_000 and models["mine"].usd_per_1m_input == 2.5
    assert models["mine"].name == "mine"
    assert models["alias"].usd_per_1m_output == 0.60 and models["alias"].name == "alias"
    assert models["derived"].rpm == 5 and models["derived"].tpm == 2_000_000
    assert "gpt-4o" in models  # built-ins stay available


def test_cached_price_defaults_to_input_price():
    m = model(usd_per_1m_input=4.0)
    assert m.usd_per_1m_cached_input == 4.0
    m = load_api_models({"h": {"base": "claude-haiku", "usd_per_1m_input": 1.0}})["h"]
    assert m.usd_per_1m_cached_input == 1.0


def test_user_entry_may_replace_a_builtin():
    models = load_api_models({"gpt-4o": {"base": "gpt-4o", "rpm": 1}})
    assert models["gpt-4o"].rpm == 1
    assert builtin_api_models()["gpt-4o"].rpm == 500


# --- rate limiter -----------------------------------------------------------------------------


def test_rpm_limit_per_fixed_window():
    limiter = RateLimiter(model(rpm=3))
    assert [limiter.try_acquire(t, 10) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert limiter.try_acquire(59.999, 1) is False
    assert limiter.try_acquire(60.0, 1) is True  # next window
    assert limiter.peak_rpm_used == 3
    assert limiter.admitted == 4 and limiter.rejected_rate_limit == 2
    assert limiter.usage(30) == (3, 30.0) and limiter.usage(61) == (1, 1.0)


def test_tpm_limit_and_oversized_request():
    limiter = RateLimiter(model(tpm=1000))
    assert limiter.try_acquire(0, 600)
    assert not limiter.try_acquire(1, 500)  # 1100 > 1000
    assert limiter.try_acquire(2, 400)  # exactly 1000
    assert not limiter.try_acquire(3, 1)
    assert not limiter.try_acquire(120, 1001)  # larger than tpm: never admitted
    assert limiter.try_acquire(120, 1000)
    assert limiter.peak_tpm_used == 1000


def test_unlimited_model_always_admits():
    limiter = RateLimiter(model())
    assert all(limiter.try_acquire(t * 0.001, 1e9) for t in range(10_000))
    assert limiter.peak_rpm_used == 10_000


def test_earlier_window_is_still_counted():
    limiter = RateLimiter(model(rpm=2))
    assert limiter.try_acquire(10, 1) and limiter.try_acquire(70, 1)
    assert limiter.try_acquire(11, 1)  # back in window 0: second request there
    assert not limiter.try_acquire(12, 1)  # window 0 is full
    assert limiter.try_acquire(71, 1) and not limiter.try_acquire(72, 1)


def test_old_windows_are_pruned():
    limiter = RateLimiter(model(rpm=5), keep_windows=3)
    for w in range(100):
        limiter.try_acquire(w * WINDOW_S + 1, 1)
    assert len(limiter._windows) <= 3


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.floats(0, 400)),
                min_size=1, max_size=300),
       st.integers(1, 20), st.integers(100, 5000))
def test_limits_hold_in_every_window(steps, rpm, tpm):
    limiter = RateLimiter(model(rpm=rpm, tpm=tpm))
    t = 0.0
    per_window: dict[int, list[float]] = {}
    for gap, tokens in steps:
        t += gap
        if limiter.try_acquire(t, tokens):
            used = per_window.setdefault(math.floor(t / WINDOW_S), [0, 0.0])
            used[0] += 1
            used[1] += tokens
    for count, tokens in per_window.values():
        assert count <= rpm and tokens <= tpm + 1e-9
    if per_window:
        assert limiter.peak_rpm_used == max(c for c, _ in per_window.values())


# --- outages ----------------------------------------------------------------------------------


def test_outage_windows_fail_fast():
    m = model(outages=[{"start": "1h", "duration": "10m"}, {"start": 100, "duration": 50},
                       {"start": 120, "duration": 100}])
    limiter = RateLimiter(m)
    assert limiter.try_acquire(99, 1)
    assert not limiter.try_acquire(100, 1)  # first outage (merged 100..220)
    assert not limiter.try_acquire(219.9, 1)
    assert limiter.try_acquire(220, 1)
    assert not limiter.try_acquire(3600, 1) and not limiter.try_acquire(4199, 1)
    assert limiter.try_acquire(4200, 1)
    assert limiter.rejected_outage == 4 and limiter.rejected_rate_limit == 0
    assert [m.is_down(t) for t in (0, 150, 3599.9, 3600, 4200)] == \
        [False, True, False, True, False]


# --- retries ----------------------------------------------------------------------------------


def test_backoff_sequence():
    m = builtin_api_models()["gpt-4o"]
    assert [m.backoff_s(k) for k in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    m = model(retry={"max_retries": 5, "backoff_s": 0.5, "multiplier": 3})
    assert [m.backoff_s(k) for k in (1, 2, 3)] == [0.5, 1.5, 4.5]
    assert m.retry.max_retries == 5
    with pytest.raises(ValueError):
        m.backoff_s(0)


# --- latency ----------------------------------------------------------------------------------


def test_latency_is_vectorised_and_reproducible():
    m = builtin_api_models()["claude-sonnet"]
    out = np.array([0.0, 104.0, 208.0, 1040.0])
    ttft, e2e = m.sample_latency(np.random.default_rng(7), out)
    again, _ = m.sample_latency(np.random.default_rng(7), out)
    assert ttft.shape == e2e.shape == (4,)
    np.testing.assert_array_equal(ttft, again)
    np.testing.assert_allclose(e2e - ttft, out / 104.0)
    other, _ = m.sample_latency(np.random.default_rng(8), out)
    assert not np.array_equal(ttft, other)


def test_lognormal_median_and_p95_are_recovered():
    m = model(ttft_s={"kind": "lognormal", "median": 0.8, "p95": 2.0})
    ttft, _ = m.sample_latency(np.random.default_rng(1), np.zeros(200_000))
    assert np.median(ttft) == pytest.approx(0.8, rel=0.01)
    assert np.quantile(ttft, 0.95) == pytest.approx(2.0, rel=0.02)


def test_fixed_ttft_draws_nothing():
    m = model(ttft_s=0.25)
    assert isinstance(m.ttft_s, FixedTtft)
    rng = np.random.default_rng(3)
    ttft, e2e = m.sample_latency(rng, np.array([100.0, 50.0]))
    np.testing.assert_array_equal(ttft, [0.25, 0.25])
    np.testing.assert_allclose(e2e, [1.25, 0.75])
    assert rng.random() == np.random.default_rng(3).random()
    assert isinstance(model(ttft_s={"value": 1.0}).ttft_s, FixedTtft)
    assert isinstance(model(ttft_s={"median": 1.0, "p95": 2.0}).ttft_s, LognormalTtft)


# --- configuration errors ---------------------------------------------------------------------


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(ConfigError) as info:
        get_api_model(builtin_api_models(), "gpt4o", file="exp.yaml", field="overflow.chat.to")
    assert str(info.value) == ("exp.yaml: overflow.chat.to: unknown API model 'gpt4o' "
                               "(did you mean 'gpt-4o'?)")
    text = config_error({"x": {"base": "claude-sonet"}}, file="exp.yaml")
    assert text == ("exp.yaml: api.x.base: unknown API model 'claude-sonet' "
                    "(did you mean 'claude-sonnet'?)")


@pytest.mark.parametrize("entry, message", [
    ({"base": "gpt-4o", "rpmm": 3}, "api.x.rpmm: unknown field 'rpmm' (did you mean 'rpm'?)"),
    ({"base": "gpt-4o", "usd_per_1m_input": -1}, "api.x.usd_per_1m_input"),
    ({"base": "gpt-4o", "cached_input_share": 1.5}, "api.x.cached_input_share"),
    ({"base": "gpt-4o", "output_tokens_per_s": 0}, "api.x.output_tokens_per_s"),
    ({"base": "gpt-4o", "rpm": 0}, "api.x.rpm"),
    ({"base": "gpt-4o", "tpm": -5}, "api.x.tpm"),
    ({"base": "gpt-4o", "ttft_s": {"kind": "lognormall", "median": 1, "p95": 2}},
     "api.x.ttft_s: unknown kind 'lognormall' (did you mean 'lognormal'?)"),
    ({"base": "gpt-4o", "ttft_s": {"kind": "lognormal", "median": 2, "p95": 1}},
     "api.x.ttft_s.p95: p95 (1 s) is below median (2 s)"),
    ({"base": "gpt-4o", "ttft_s": -1}, "api.x.ttft_s.value"),
    ({"base": "gpt-4o", "retry": {"multiplier": 0.5}}, "api.x.retry.multiplier"),
    ({"base": "gpt-4o", "retry": {"max_retries": -1}}, "api.x.retry.max_retries"),
    ({"base": "gpt-4o", "outages": [{"start": "1h", "duration": 0}]},
     "api.x.outages[0].duration: an outage must last longer than 0 s"),
    ({"base": "gpt-4o", "outages": [{"start": "soon", "duration": 5}]},
     "api.x.outages[0].start: cannot parse duration"),
    ({"usd_per_1m_input": 1, "usd_per_1m_output": 1, "output_tokens_per_s": 5},
     "api.x.ttft_s: required field is missing"),
    (42, "api.x: an API model must be a mapping"),
    ({"base": "gpt-4o", "litellm_json": "x.json"}, "api.x.litellm_json"),
])
def test_bad_entries_give_one_line_errors(entry, message):
    text = config_error({"x": entry}, file="exp.yaml")
    assert text.startswith("exp.yaml: ") and message in text


def test_spec_must_be_a_mapping():
    assert "expected a mapping" in config_error(["gpt-4o"], file="exp.yaml")

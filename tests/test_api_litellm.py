"""Pricing API models from LiteLLM's model_prices_and_context_window.json format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.core.errors import ConfigError
from sim.serving.api import load_api_models, prices_from_litellm
from tests.shared_data import SHARED_DATA

SHARED_JSON = SHARED_DATA / "prices/litellm/model_prices_and_context_window.json"
needs_shared = pytest.mark.skipif(not SHARED_JSON.is_file(), reason="shared LiteLLM JSON absent")


@pytest.fixture
def tiny_json(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({
        "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
        "acme-large": {"input_cost_per_token": 4e-06, "output_cost_per_token": 1.6e-05,
                       "cache_read_input_token_cost": 1e-06, "litellm_provider": "acme",
                       "source": "https://acme.example/pricing"},
        "acme-small": {"input_cost_per_token": 1e-07, "output_cost_per_token": 4e-07},
        "acme-embed": {"input_cost_per_token": 1e-08},
    }))
    return path


def test_prices_from_tiny_json(tiny_json):
    prices = prices_from_litellm(tiny_json, "acme-large")
    assert prices["usd_per_1m_input"] == 4.0
    assert prices["usd_per_1m_output"] == 16.0
    assert prices["usd_per_1m_cached_input"] == 1.0
    assert "acme-large" in prices["source"] and "acme.example" in prices["source"]
    small = prices_from_litellm(tiny_json, "acme-small")
    assert (small["usd_per_1m_input"], small["usd_per_1m_output"]) == (0.1, 0.4)
    assert "usd_per_1m_cached_input" not in small


def test_unknown_or_incomplete_key(tiny_json):
    with pytest.raises(ConfigError, match=r"unknown LiteLLM model 'acme-larg' \(did you mean "
                                          r"'acme-large'\?\)"):
        prices_from_litellm(tiny_json, "acme-larg")
    with pytest.raises(ConfigError, match="no usable output_cost_per_token"):
        prices_from_litellm(tiny_json, "acme-embed")
    with pytest.raises(ConfigError, match="unknown LiteLLM model 'sample_spec'"):
        prices_from_litellm(tiny_json, "sample_spec")
    with pytest.raises(ConfigError, match="not found"):
        prices_from_litellm(tiny_json.parent / "missing.json", "acme-large")


def test_litellm_entry_with_base_and_relative_path(tiny_json, tmp_path):
    spec = {"acme": {"litellm": "acme-small", "litellm_json": "prices.json", "base": "gpt-4o",
                     "rpm": 60}}
    m = load_api_models(spec, file=str(tmp_path / "exp.yaml"))["acme"]
    assert (m.usd_per_1m_input, m.usd_per_1m_output) == (0.1, 0.4)
    assert m.usd_per_1m_cached_input == 0.1  # no cache price: not gpt-4o's 1.25
    assert m.rpm == 60 and m.ttft_s == load_api_models(None)["gpt-4o"].ttft_s
    assert "acme-small" in m.source


def test_litellm_entry_from_environment(tiny_json, monkeypatch):
    monkeypatch.setenv("CAPSIM_LITELLM_JSON", str(tiny_json))
    m = load_api_models({"big": {"litellm": "acme-large", "ttft_s": 0.3,
                                 "output_tokens_per_s": 50}})["big"]
    assert (m.usd_per_1m_input, m.usd_per_1m_cached_input) == (4.0, 1.0)
    assert m.cost_usd(1e6, 1e6) == pytest.approx(20.0)


def test_litellm_error_is_one_line_and_located(tiny_json, tmp_path):
    with pytest.raises(ConfigError) as info:
        load_api_models({"x": {"litellm": "nope-model", "litellm_json": str(tiny_json),
                               "base": "gpt-4o"}}, file="exp.yaml")
    assert "\n" not in str(info.value) and str(tiny_json) in str(info.value)


@needs_shared
@pytest.mark.parametrize("key, inp, out, cached", [
    ("gpt-4o", 2.5, 10.0, 1.25),
    ("gpt-4o-mini", 0.15, 0.6, 0.075),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.3),
    ("vertex_ai/claude-3-haiku", 0.25, 1.25, None),
])
def test_shared_litellm_snapshot_matches_the_builtins(key, inp, out, cached):
    prices = prices_from_litellm(SHARED_JSON, key)
    assert (prices["usd_per_1m_input"], prices["usd_per_1m_output"]) == (inp, out)
    assert prices.get("usd_per_1m_cached_input") == cached

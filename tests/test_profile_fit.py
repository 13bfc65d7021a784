"""The hand-fitted profile numbers (tests/data/profiles/) are reproducible from the public
data (tools/fit_profiles.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_tool():
    path = ROOT / "tools" / "fit_profiles.py"
    spec = importlib.util.spec_from_file_location("fit_profiles", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fit_profiles"] = module
    spec.loader.exec_module(module)
    return module


fit = _load_tool()
needs_data = pytest.mark.skipif(not (fit.DEFAULT_DATA_DIR / "profiles").is_dir(),
                                reason="shared/data not available")


def test_repair_curve_applies_cumulative_max_and_per_request_cap():
    fixed, changed = fit.repair_curve([1, 2, 4, 8], [10.0, 25.0, 24.0, 30.0])
    assert changed
    assert fixed == pytest.approx([10.0, 20.0, 24.0, 30.0])
    fixed, changed = fit.repair_curve([1, 2], [10.0, 15.0])
    assert not changed and fixed == [10.0, 15.0]


def test_kv_capacity_arithmetic():
    assert fit.kv_bytes_per_token("llama-2-70b") == 80 * 8 * 128 * 2 * 2 == 327_680
    tokens, lines = fit.kv_capacity("A100-80GB", 2, "llama-2-70b", 2)
    expected = (160 * 0.9 - 68_976_648_192 * 2 / 2**30 - 2) * 2**30 / 327_680
    assert tokens == int(expected) // 16 * 16
    assert "327,680 B" in lines[0]


@needs_data
def test_shipped_profiles_match_a_fresh_fit():
    # the hand-fitted curve profiles, kept as legacy examples since issue #20 item 4
    assert fit.check_dir(ROOT / "tests" / "data" / "profiles") == []


@needs_data
def test_api_ttft_fits_match_the_builtins():
    from sim.serving.api import builtin_api_models

    models = builtin_api_models()
    for name, derived in fit.api_latency_fits().items():
        ttft = models[name].ttft_s
        assert (ttft.median, ttft.p95) == (derived["median"], derived["p95"])

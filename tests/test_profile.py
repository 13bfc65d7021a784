"""GPU replica profiles: shipped files, curve interpolation and validation errors."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.errors import ConfigError
from sim.core.loader import builtin_dir
from sim.profiles.schema import GpuProfile, builtin_profiles, load_profile

SHIPPED = ["llama-405b-8xh100", "llama-70b-2xa100", "llama-70b-2xh100", "llama-8b-1xa10g",
           "llama-8b-1xh100"]


def profile_dict(**changes) -> dict:
    data = {
        "name": "test",
        "model": "m",
        "gpu": "g",
        "gpus_per_replica": 2,
        "max_batch": 16,
        "kv_capacity_tokens": 10_000,
        "prefill_tokens_per_s": 5_000,
        "curve": {"batch": [1, 2, 4, 8], "decode_tokens_per_s": [20, 38, 70, 120]},
        "prices": {"on_demand_usd_per_gpu_hour": 2.0, "source": "s", "date": "d"},
    }
    data.update(changes)
    return data


def curve(batch, values) -> dict:
    return {"batch": batch, "decode_tokens_per_s": values}


def config_error(data: dict, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_profile(data, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


# --- shipped profiles -------------------------------------------------------------------------


def test_shipped_profile_names():
    assert set(SHIPPED) <= set(builtin_profiles())


@pytest.mark.parametrize("name", builtin_profiles())
def test_shipped_profile_loads_and_is_consistent(name):
    p = load_profile(name)
    assert p.name == name
    assert p.source and p.prices.source and p.prices.date
    table = p.per_request_rate_table()
    assert len(table) == p.max_batch + 1 and table[0] == 0.0
    assert all(a >= b for a, b in zip(table[1:], table[2:], strict=False))
    assert p.saturated_tokens_per_s == pytest.approx(p.decode_tokens_per_s(p.max_batch))
    assert table[p.max_batch] * p.max_batch == pytest.approx(p.saturated_tokens_per_s)
    grid = np.linspace(0, p.max_batch * 1.5, 4001)
    agg = p.decode_tokens_per_s(grid)
    assert np.all(np.diff(agg) >= -1e-9)
    per_request = agg[grid >= 1] / grid[grid >= 1]
    assert np.all(np.diff(per_request) <= 1e-9)
    assert p.usd_per_replica_hour() == pytest.approx(
        p.gpus_per_replica * p.prices.on_demand_usd_per_gpu_hour)
    assert p.cold_start_s is not None and p.cold_start_s.p95 >= p.cold_start_s.median


def test_shipped_file_carries_its_sources():
    text = (builtin_dir("gpu_profiles") / "llama-8b-1xa10g.yaml").read_text()
    assert "2,000 tok/s" in text and "300-400" in text
    text = (builtin_dir("gpu_profiles") / "llama-70b-2xa100.yaml").read_text()
    assert "80 layers x 8 KV heads x 128 dim x 2 (K,V) x 2 bytes = 327,680 B" in text
    assert "Batch 64 is excluded" in text


def test_shipped_numbers_are_plausible():
    a10g = load_profile("llama-8b-1xa10g")
    assert 300 <= a10g.saturated_tokens_per_s <= 400
    h100_70b, a100_70b = load_profile("llama-70b-2xh100"), load_profile("llama-70b-2xa100")
    assert h100_70b.saturated_tokens_per_s > a100_70b.saturated_tokens_per_s
    assert h100_70b.prefill_tokens_per_s > a100_70b.prefill_tokens_per_s
    assert a100_70b.decode_tokens_per_s(32) == pytest.approx(32 / 0.07219, rel=0.01)


# --- interpolation ----------------------------------------------------------------------------


def test_curve_passes_through_table_points():
    p = load_profile(profile_dict())
    for b, v in zip(p.curve.batch, p.curve.decode_tokens_per_s, strict=True):
        assert p.decode_tokens_per_s(b) == pytest.approx(v)


def test_curve_below_one_is_linear_and_constant_beyond_last_point():
    p = load_profile(profile_dict())
    assert p.decode_tokens_per_s(0) == 0.0
    assert p.decode_tokens_per_s(0.25) == pytest.approx(5.0)
    assert p.decode_tokens_per_s(-1) == 0.0
    assert p.decode_tokens_per_s(8) == p.decode_tokens_per_s(16) == pytest.approx(120)
    assert p.saturated_tokens_per_s == pytest.approx(120)
    table = p.per_request_rate_table()
    assert table[16] == pytest.approx(120 / 16) and table[1] == pytest.approx(20)


def test_curve_accepts_scalars_and_arrays():
    p = load_profile(profile_dict())
    assert isinstance(p.decode_tokens_per_s(3), float)
    out = p.decode_tokens_per_s(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert isinstance(out, np.ndarray) and out.shape == (2, 2)
    assert out[0, 1] == pytest.approx(38)


def test_single_point_curve_is_flat():
    p = load_profile(profile_dict(curve=curve([1], [30.0]), max_batch=4))
    assert p.per_request_rate_table() == pytest.approx([0.0, 30.0, 15.0, 10.0, 7.5])


def test_interpolation_stays_in_the_per_request_band():
    # A linear stretch then a plateau: an unclipped PCHIP would overshoot the chord and let
    # a request run faster with 30 requests than with 1.
    p = load_profile(profile_dict(curve=curve([1, 64, 128], [10.0, 640.0, 650.0]), max_batch=128))
    grid = np.linspace(1, 128, 2000)
    assert np.all(p.decode_tokens_per_s(grid) / grid <= 10.0 + 1e-9)
    assert np.all(np.diff(p.decode_tokens_per_s(grid)) >= -1e-9)


@st.composite
def valid_curves(draw):
    n = draw(st.integers(1, 8))
    steps = draw(st.lists(st.integers(1, 40), min_size=n - 1, max_size=n - 1))
    batch = [1]
    for s in steps:
        batch.append(batch[-1] + s)
    rate = draw(st.floats(1.0, 500.0))
    values = [rate]
    for i in range(1, n):
        # per-request rate non-increasing, aggregate non-decreasing
        lo, hi = values[-1], values[-1] * batch[i] / batch[i - 1]
        values.append(lo + draw(st.floats(0.0, 1.0)) * (hi - lo))
    return batch, values


@settings(max_examples=60, deadline=None)
@given(valid_curves(), st.integers(1, 300))
def test_random_valid_curves_give_monotone_rates(c, max_batch):
    batch, values = c
    p = load_profile(profile_dict(curve=curve(batch, values), max_batch=max_batch))
    grid = np.linspace(0, batch[-1] + 10, 1500)
    agg = p.decode_tokens_per_s(grid)
    assert np.all(np.diff(agg) >= -1e-9 * max(values))
    per_request = agg[grid >= 1] / grid[grid >= 1]
    assert np.all(np.diff(per_request) <= 1e-9 * max(values))
    knots = p.decode_tokens_per_s(np.array(batch, float))
    assert knots == pytest.approx(values, rel=1e-9)
    table = p.per_request_rate_table()
    assert len(table) == max_batch + 1
    assert all(a >= b - 1e-12 for a, b in zip(table[1:], table[2:], strict=False))
    assert all(x > 0 for x in table[1:])


# --- validation errors ------------------------------------------------------------------------


def test_non_monotone_curve_is_rejected():
    text = config_error(profile_dict(curve=curve([1, 2, 4], [20, 38, 30])), file="exp.yaml")
    assert text.startswith("exp.yaml: fleet.profile.curve: decode_tokens_per_s[2] = 30")
    assert "must not fall" in text


def test_rising_per_request_rate_is_rejected():
    text = config_error(profile_dict(curve=curve([1, 2, 4], [20, 45, 60])))
    assert "per-request rate rises at index 1" in text and "45/2" in text


def test_negative_value_is_rejected():
    text = config_error(profile_dict(curve=curve([1, 2], [20, -5])))
    assert "fleet.profile.curve.decode_tokens_per_s[1]" in text and "greater than 0" in text


def test_length_mismatch_is_rejected():
    text = config_error(profile_dict(curve=curve([1, 2, 4], [20, 38])))
    assert "batch has 3 points but decode_tokens_per_s has 2" in text


@pytest.mark.parametrize("batch, message", [([2, 4], "must start at 1"),
                                            ([1, 4, 4], "batch[2] = 4 is not greater"),
                                            ([1, 0, 4], "curve.batch[1]")])
def test_bad_batch_axis_is_rejected(batch, message):
    assert message in config_error(profile_dict(curve=curve(batch, [20, 30, 40][:len(batch)])))


@pytest.mark.parametrize("changes, message", [
    ({"max_batch": 0}, "fleet.profile.max_batch"),
    ({"kv_capacity_tokens": -1}, "fleet.profile.kv_capacity_tokens"),
    ({"prefill_tokens_per_s": 0}, "fleet.profile.prefill_tokens_per_s"),
    ({"gpus_per_replica": 0}, "fleet.profile.gpus_per_replica"),
    ({"prices": {"on_demand_usd_per_gpu_hour": -1, "source": "s", "date": "d"}},
     "fleet.profile.prices.on_demand_usd_per_gpu_hour"),
    ({"cold_start_s": {"median": 60, "p95": 30}}, "fleet.profile.cold_start_s.p95: p95 (30 s)"),
])
def test_bad_scalar_fields_are_rejected(changes, message):
    assert message in config_error(profile_dict(**changes))


def test_unknown_field_gets_a_suggestion():
    data = profile_dict()
    data["kv_capacity_token"] = data.pop("kv_capacity_tokens")
    text = config_error(data)
    assert "unknown field 'kv_capacity_token' (did you mean 'kv_capacity_tokens'?)" in text


def test_unknown_profile_name_gets_a_suggestion():
    with pytest.raises(ConfigError) as info:
        load_profile("llama-70b-2xa10", file="exp.yaml")
    text = str(info.value)
    assert text == ("exp.yaml: fleet.profile: unknown gpu profile 'llama-70b-2xa10' "
                    "(did you mean 'llama-70b-2xa100'?)")


def test_errors_in_a_profile_file_name_that_file(tmp_path):
    data = profile_dict(curve=curve([1, 2], [20, 10]))
    del data["name"]
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_profile("mine", base_dir=tmp_path, file="exp.yaml")
    assert str(info.value).startswith(f"{path}: curve: decode_tokens_per_s[1] = 10")


def test_profile_file_by_path_takes_its_stem_as_name(tmp_path):
    data = profile_dict()
    del data["name"]
    path = tmp_path / "my-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_profile(str(path)).name == "my-gpu"
    assert load_profile("my-gpu", base_dir=tmp_path).name == "my-gpu"


def test_profile_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_profile(str(path))


def test_bad_spec_type():
    with pytest.raises(ConfigError, match="expected a profile name"):
        load_profile(42)  # type: ignore[arg-type]


# --- prices and cold start --------------------------------------------------------------------


def test_prices_per_replica_hour():
    p = load_profile(profile_dict(prices={"on_demand_usd_per_gpu_hour": 2.0,
                                          "spot_usd_per_gpu_hour": 0.8, "source": "s",
                                          "date": "d"}))
    assert p.usd_per_replica_hour() == 4.0
    assert p.usd_per_replica_hour("spot") == pytest.approx(1.6)
    with pytest.raises(ConfigError, match="no reserved price"):
        p.usd_per_replica_hour("reserved")


def test_cold_start_forms():
    assert load_profile(profile_dict()).cold_start_s is None
    p = load_profile(profile_dict(cold_start_s=90))
    assert (p.cold_start_s.median, p.cold_start_s.p95) == (90.0, 90.0)
    p = load_profile(profile_dict(cold_start_s={"median": "2m", "p95": "5m"}))
    assert (p.cold_start_s.median, p.cold_start_s.p95) == (120.0, 300.0)


def test_profiles_are_immutable():
    p = load_profile(profile_dict())
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        p.max_batch = 3
    assert isinstance(p, GpuProfile)

"""`capsim breakeven`: the seed article's static arithmetic, the search, the crossings."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from sim.cli import main
from sim.core.errors import ConfigError
from sim.experiment.config import load_experiment
from sim.study.breakeven import (
    DEFAULT_UTIL_CAP,
    VolumeResult,
    crossing,
    parse_tokens,
    parse_volume_range,
    run_breakeven,
    static_breakeven,
    volumes,
)
from sim.study.sweep import Point, PointStats

GPT4O_BLENDED = 4.40  # USD per 1M tokens, the seed article's blended GPT-4o price

# A fleet that never binds: one replica decodes 10^6 tokens/s and prefills 10^9, so the
# GPU-only and hybrid plans are one replica at every volume, and the cost is the fixed cost.
UNBOUNDED = """\
name: unbounded
horizon: 1h
replications: 2
seed: 3
workload:
  streams:
    - name: chat
      class: interactive
      arrivals: {kind: poisson, rate_per_s: 1.0}
      input_tokens: {kind: lognormal, mean: 400, sigma: 0.5, max: 4000}
      output_tokens: {kind: lognormal, mean: 150, sigma: 0.5, max: 2000}
fleet:
  replicas: 1
  profile:
    name: unbounded
    model: test
    gpu: test
    gpus_per_replica: 2
    max_batch: 1000
    kv_capacity_tokens: 1000000000000
    prefill_tokens_per_s: 1.0e9
    curve: {batch: [1, 1000], decode_tokens_per_s: [1000.0, 1000000.0]}
    prices: {on_demand_usd_per_gpu_hour: 2.0, source: test, date: "2024-01-01"}
overflow:
  interactive: {when: wait_exceeds, threshold_s: 2.0, to: gpt-4o}
costs: {usd_per_gpu_hour: 2.0, engineering_fte: 0.5, usd_per_fte_year: 120000,
        infra_usd_per_month: 500}
"""
FIXED_USD = 2 * 2.0 * 720 + 0.5 * 120_000 / 12 + 500  # compute + engineering + infra


# --------------------------------------------------------------------------- static


def test_static_mode_reproduces_the_seed_article():
    """1 replica of 2 GPUs at $2.50-3.50/GPU-h (the article's $5-7/h node), 0.75 FTE at
    $150k-200k, infra $250-1,000 and GPT-4o at $4.40/M blended: 3.0 B and 4.2 B."""
    seed = load_experiment(None, ["fleet.replicas=1"])  # the default runs 2 (it needs them)
    s = static_breakeven(seed, usd_per_1m_blended=GPT4O_BLENDED)
    assert (s.replicas, s.gpus) == (1, 2)
    assert s.fixed_usd_low == pytest.approx(13_225) and s.fixed_usd_high == pytest.approx(18_540)
    assert s.usd_per_1m_blended == pytest.approx(GPT4O_BLENDED)
    assert s.breakeven_low / 1e9 == pytest.approx(3.006, abs=1e-3)
    assert s.breakeven_high / 1e9 == pytest.approx(4.214, abs=1e-3)


def test_static_mode_default_blend_is_list_prices_at_three_to_one():
    s = static_breakeven(load_experiment(None, ["fleet.replicas=1"]))
    assert s.usd_per_1m_blended == pytest.approx(0.75 * 2.5 + 0.25 * 10.0)  # GPT-4o list
    assert s.breakeven_low == pytest.approx(13_225 / 4.375e-6)


def test_static_cli_prints_the_break_even_range():
    res = CliRunner().invoke(main, ["breakeven", "--static", "--blended-usd-per-1m", "4.40",
                                    "--set", "fleet.replicas=1"])
    assert res.exit_code == 0, res.output
    assert "3.01 B" in res.output and "4.21 B" in res.output and "$13,225" in res.output


def test_token_volumes_parse_and_space_logarithmically():
    assert parse_tokens("100M") == 1e8 and parse_tokens("3B") == 3e9
    assert parse_tokens("1.5e9") == 1.5e9 and parse_tokens("2k") == 2e3
    assert parse_volume_range("100M..10B") == (1e8, 1e10)
    assert volumes(1e8, 1e10, 3) == pytest.approx([1e8, 1e9, 1e10])
    for bad in ("", "ten", "-5M", "3X"):
        with pytest.raises(ConfigError):
            parse_tokens(bad)
    for bad in ("1B", "10B..100M", "1B..1B"):
        with pytest.raises(ConfigError):
            parse_volume_range(bad)


# ------------------------------------------------------------------- the search (stub)


class CapacityStub:
    """A fleet of replicas that each serve 10^9 tokens/month at $2,000/month; what they
    cannot serve overflows to an API at $4.40 per 1M tokens (plus $500 fixed)."""

    def __init__(self):
        self.calls = 0

    def evaluate(self, points):
        out = {}
        for p in points:
            self.calls += 1
            volume, r = p.get("workload.scale") * 1e9, p.get("fleet.replicas")
            served = min(1.0, r * 1e9 / volume)
            api_only = 4.4e-6 * volume
            rows = [{"replication": i, "tokens_per_month": volume,
                     "cost.api_only_usd": api_only + i,
                     "cost.total_usd": 500 + 2000 * r + (1 - served) * api_only + i,
                     "overflow_share": 1 - served, "failure_share": 0.0,
                     "gpu_utilization": min(1.0, volume / (r * 1e9))} for i in range(3)]
            out[p.id] = PointStats(p, rows)
        return out


def test_search_sizes_gpu_only_by_headroom_and_hybrid_by_cost():
    stub = CapacityStub()
    result = run_breakeven(stub, [0.5e9, 3e9, 7.7e9], base_tokens=1e9, base_scale=1.0,
                           replicas=list(range(1, 33)))
    for v in result.volumes:
        needed = math.ceil(v.volume / 1e9)  # replicas that leave nothing for the API
        assert v.gpu_only.point.get("fleet.replicas") == math.ceil(
            v.volume / (DEFAULT_UTIL_CAP * 1e9) - 1e-9)
        # Each replica ($2,000) saves $4,400 of API per 10^9 tokens: fill the fleet.
        assert v.hybrid.point.get("fleet.replicas") == needed
        assert v.hybrid.stat("cost.total_usd") <= v.gpu_only.stat("cost.total_usd")
    hybrid = next(c for c in result.crossings if c.name == "hybrid")
    assert 0.5e9 < hybrid.volume < 3e9 and hybrid.low <= hybrid.volume <= hybrid.high


def test_the_waiting_room_limit_scales_with_the_volume():
    # A limit sized for the base traffic would fail a scaled batch as queue_full on any
    # fleet; each point carries the base limit times its scale over the base scale.
    stub = CapacityStub()
    result = run_breakeven(stub, [0.5e9, 3e9], base_tokens=1e9, base_scale=1.0,
                           replicas=list(range(1, 9)), queue_limit=5000)
    for v in result.volumes:
        point = v.hybrid.point
        assert point.get("router.queue_limit") == math.ceil(5000 * point.get("workload.scale"))
    plain = run_breakeven(CapacityStub(), [3e9], base_tokens=1e9, base_scale=1.0,
                          replicas=list(range(1, 9)))
    assert plain.volumes[0].hybrid.point.get("router.queue_limit") is None


def _volume(volume: float, total: list[float], api: list[float]) -> VolumeResult:
    rows = [{"replication": i, "tokens_per_month": volume, "cost.total_usd": t,
             "cost.api_only_usd": a} for i, (t, a) in enumerate(zip(total, api, strict=True))]
    stats = PointStats(Point.of({"workload.scale": volume}), rows)
    return VolumeResult(volume, 1.0, stats, stats)


def test_crossing_interpolates_in_log_volume_with_a_ci_from_replications():
    results = [_volume(1e8, [10, 11], [1, 1]), _volume(1e9, [10, 11], [5, 6]),
               _volume(1e10, [10, 11], [30, 40])]
    c = crossing("hybrid", results, lambda v: v.hybrid)
    # Mean difference +5 at 10^9 and -24.5 at 10^10: 5 / 29.5 of the way in log10.
    assert math.log10(c.volume) == pytest.approx(9 + 5 / 29.5)
    assert c.replications_crossing == 2 and c.low < c.volume < c.high
    never = crossing("x", results[:2], lambda v: v.hybrid)
    assert math.isnan(never.volume) and never.side == "above"
    always = crossing("x", [_volume(1e9, [1, 1], [5, 5]), _volume(2e9, [1, 1], [9, 9])],
                      lambda v: v.hybrid)
    assert always.side == "below"


# ---------------------------------------------------------- simulated: a known answer


def test_simulated_break_even_is_the_static_one_when_capacity_never_binds(tmp_path):
    exp = tmp_path / "unbounded.yaml"
    exp.write_text(UNBOUNDED)
    out = tmp_path / "be"
    res = CliRunner().invoke(main, ["breakeven", str(exp), "--volume", "300M..30B",
                                    "--points", "9", "--replicas", "1..2", "--out", str(out),
                                    "-j", "2"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "breakeven.json").read_text())
    rows = data["volumes"]
    assert len(rows) == 9
    assert all(v["gpu_only"]["point"]["fleet.replicas"] == 1 for v in rows)
    assert all(v["hybrid"]["point"]["fleet.replicas"] == 1 for v in rows)
    total = [v["hybrid"]["metrics"]["cost.total_usd"]["mean"] for v in rows]
    assert total == pytest.approx([FIXED_USD] * 9)  # no API spend: the fixed cost only
    # Static arithmetic with the traffic's own blended API price per token:
    api = rows[-1]["hybrid"]["metrics"]["cost.api_only_usd"]["mean"]
    usd_per_token = api / rows[-1]["tokens_per_month"]
    hybrid = next(c for c in data["crossings"] if c["name"] == "hybrid")
    # (linear interpolation in log volume between grid points: within a few percent)
    assert hybrid["volume"] == pytest.approx(FIXED_USD / usd_per_token, rel=0.05)
    assert hybrid["low"] <= hybrid["high"]
    assert "hybrid break-even" in res.output
    assert (out / "breakeven.png").read_bytes()[:4] == b"\x89PNG"


def test_breakeven_cli_rejects_bad_input(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["breakeven", "--volume", "10B..1B"])
    assert res.exit_code == 2 and "LOW must be below HIGH" in res.output
    exp = tmp_path / "unbounded.yaml"
    exp.write_text(UNBOUNDED)
    res = runner.invoke(main, ["breakeven", str(exp), "--slo", "interactive.ttft_p9=1",
                               "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "did you mean" in res.output
    assert len(res.output.strip().splitlines()) == 1
    # a volume too large to simulate is refused up front, naming --volume
    res = runner.invoke(main, ["breakeven", str(exp), "--volume", "1B..1e30",
                               "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and res.output.startswith("capsim: error: --volume: 1e+30")
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "y").exists()

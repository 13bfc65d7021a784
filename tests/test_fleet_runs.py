"""Fleets that change, end to end: conservation, the old fleet form, schedules, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from sim.cli import main
from sim.core.errors import ConfigError
from sim.experiment.config import load_experiment
from sim.experiment.replication import run_replication

DYNAMICS = "fleet-dynamics"
PROFILE = "llama-70b-2xa100"


def fleet_set(fleet: dict) -> str:
    return f"fleet={json.dumps(fleet)}"


def test_one_fixed_pool_gives_the_same_run_as_replicas():
    """``pools: [one fixed on-demand pool]`` reproduces ``replicas: N`` (same requests,
    same outcomes, same costs); only the new fleet keys are added."""
    base = ["horizon=1d", "fleet.replicas=2"]
    legacy = run_replication(load_experiment(None, base), 0)
    pools = run_replication(load_experiment(None, ["horizon=1d", fleet_set(
        {"profile": PROFILE, "pools": [{"name": "default", "replicas": 2}]})]), 0)
    for key, value in legacy.row.items():
        other = pools.row[key]
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(other), key
        elif isinstance(value, float):
            assert other == pytest.approx(value, rel=1e-12, abs=0), key
        else:
            assert other == value, key
    for key, series in legacy.timeseries.items():
        assert np.allclose(pools.timeseries[key], series, rtol=1e-12, atol=0), key
    assert pools.row["cost.compute_usd"] == legacy.row["cost.compute_usd"]  # bit for bit
    assert pools.row["pool.default.billed_replica_s"] == 2 * 86400.0
    assert pools.row["paid_utilization"] == pytest.approx(legacy.row["gpu_utilization"])


def test_preemptions_and_failures_lose_nothing_and_serve_nothing_twice():
    """A day of the seed's traffic on a base replica plus a spot pool scaled on queue
    length, with frequent preemptions and failures: every request ends exactly once
    (the replication's invariants), and every eviction shows as one restart."""
    fleet = {"profile": PROFILE, "billing": "per_hour",
             "failures": {"mtbf_h": 6, "mttr_h": 0.5},
             "pools": [{"name": "base", "replicas": 1},
                       {"name": "spot", "tier": "spot", "min_replicas": 0,
                        "max_replicas": 4, "usd_per_gpu_hour": 1.2,
                        "spot": {"preemptions_per_hour": 1.0, "warning_s": 30},
                        "scaling": {"policy": "reactive", "metric": "queue_length",
                                    "target": 20, "scrape_interval_s": 30}}]}
    exp = load_experiment(None, ["horizon=1d", fleet_set(fleet)])
    res = run_replication(exp, 0, keep_requests=True)
    row = res.row
    assert row["fleet.preemptions"] > 0 and row["fleet.failures"] > 0
    assert row["fleet.cold_starts"] > 0
    assert row["fleet.requests_evicted"] > 0
    assert row["restarts_total"] == row["fleet.requests_evicted"]
    assert 0 < row["requests_restarted"] <= row["restarts_total"]
    arrived = row["requests_arrived"]
    assert arrived == row["requests_gpu"] + row["requests_api"] + row["requests_failed"]
    table = res.requests
    assert table.num_rows == arrived
    assert set(table.column("outcome").to_pylist()) <= {"gpu", "api", "failed"}
    gpu = np.array(table.column("outcome").to_pylist()) == "gpu"
    assert np.all(table.column("end_s").to_numpy()[gpu] >= table.column("start_s").to_numpy()[gpu])
    # spot billed at least while up, in whole hours; the scale-up followed the batch
    assert row["pool.spot.billed_replica_s"] >= row["pool.spot.up_replica_s"]
    assert res.timeseries["replicas_billed.spot"].max() > 1
    assert row["cost.compute.spot_usd"] > 0 and row["cost.compute.reserved_usd"] == 0


def test_a_schedule_that_follows_the_diurnal_rate_keeps_utilization_flat(tmp_path):
    """Replicas per hour proportional to the hour's arrival rate (1..4 replicas, rate
    1 request/s per replica, cold start = lead = 60 s, so capacity changes on the hour).

    Utilization of the replicas up in hour h is W_h / (c_h 3600) with W_h the work of a
    Poisson number of requests: its relative standard error is sqrt(E[s^2] / E[s]^2 /
    N_h). The 24 hourly values then differ only by sampling noise: max/min stays within
    1 + 6.5 SE of the trough hour (the range of 24 normals rarely exceeds 6.5 sd), far
    below the arrival rate's peak-to-trough of 4 that a fixed fleet would show.
    """
    weights = [1, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1, 1]
    out_mean, out_sigma, inp = 100.0, 0.5, 200
    exp_data = {
        "name": "flat", "horizon": "1d", "replications": 1, "seed": 3,
        "workload": {"streams": [{
            "name": "chat", "class": "interactive",
            "arrivals": {"kind": "diurnal", "mean_rate_per_s": float(np.mean(weights)),
                         "hourly_weights": weights, "peak_to_trough": 1},
            "input_tokens": {"kind": "fixed", "value": inp},
            "output_tokens": {"kind": "lognormal", "mean": out_mean, "sigma": out_sigma}}]},
        "fleet": {"profile": PROFILE, "cold_start_s": 60,
                  "pools": [{"name": "od", "scaling": {
                      "policy": "schedule", "hourly": weights, "lead_s": 60}}]},
    }
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(exp_data))
    exp = load_experiment(path)
    res = run_replication(exp, 0)
    ts = res.timeseries
    hour = (ts["t_s"] // 3600).astype(int)
    work = np.nan_to_num(ts["utilization"]) * ts["replicas_up"]
    util = np.bincount(hour, work) / np.bincount(hour, ts["replicas_up"])
    # theory: s = inp / prefill + X / saturated, X lognormal(mean 100, sigma 0.5)
    prof = exp.profile
    a, b = inp / prof.prefill_tokens_per_s, 1.0 / prof.saturated_tokens_per_s
    ex, vx = out_mean, out_mean**2 * math.expm1(out_sigma**2)
    es, es2 = a + b * ex, (a + b * ex) ** 2 + b * b * vx
    rho = es * 1.0  # 1 request/s per replica
    se_trough = math.sqrt(es2 / es**2 / (3600 * min(weights)))
    assert util.mean() == pytest.approx(rho, rel=0.05)
    assert util.max() / util.min() < 1 + 6.5 * se_trough
    assert max(weights) / min(weights) == 4
    assert res.row["pool.od.cold_starts"] == sum(max(0, weights[h + 1] - weights[h])
                                                 for h in range(23))


@pytest.mark.parametrize(("override", "needle"), [
    ("fleet.replicas=2", "either 'replicas'"),
    ("fleet.pools.1.tier=reserved", "reserved pool is always on"),
    ("fleet.pools.1.tier=spot", "needs 'spot"),
    ("fleet.pools.1.scaling.policy=reactve", "reactve"),
    ("fleet.pools.1.max_replicas=null", "needs 'max_replicas'"),
    ("fleet.pools.1.scaling.metric=utilization", "fraction in (0, 1]"),
    ("fleet.pools.1.name=base", "unique"),
    ("fleet.pools.1.name=a.b", "letters, digits"),
    ("fleet.failures.mtbf_h=0", "fleet.failures.mtbf_h"),
    ('fleet.pools.1={"name": "s", "tier": "spot", "replicas": 1, "spot": '
     '{"preemptions_per_hour": 1}}', "no spot price"),
    ('fleet.pools.1.scaling={"policy": "schedule", "hourly": [1, 2]}', "24 values"),
    ('fleet.pools.0={"name": "b", "replicas": 1, "max_replicas": 3}', "exactly 'replicas'"),
])
def test_bad_fleet_is_one_line_config_error(override, needle):
    with pytest.raises(ConfigError) as err:
        load_experiment(DYNAMICS, [override])
    text = str(err.value)
    assert needle in text and "\n" not in text and "fleet-dynamics.yaml" in text


def test_a_growing_pool_needs_a_cold_start():
    with pytest.raises(ConfigError, match="no cold_start_s; set fleet.cold_start_s"):
        load_experiment(DYNAMICS, ["fleet.profile.cold_start_s=null"])


def test_run_writes_fleet_columns_and_plot_and_compare_runs_variants(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", DYNAMICS, "--set", "horizon=1d", "-n", "2",
                                    "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "Fleet pools" in res.output and "paid for" in res.output
    assert (out / "fleet_day.png").read_bytes()[:4] == b"\x89PNG"
    ts = pq.read_table(out / "timeseries.parquet")
    for col in ("replicas_up.base", "replicas_billed.burst", "replicas_billed"):
        assert col in ts.column_names
    runs = pq.read_table(out / "runs.parquet")
    for col in ("cost.pool.burst.compute_usd", "paid_utilization", "fleet.cold_starts"):
        assert col in runs.column_names
    cmp_out = tmp_path / "cmp"
    res = CliRunner().invoke(main, ["compare", DYNAMICS, "--set", "horizon=1d", "-n", "2",
                                    "--variant", "peak-fixed", "--variant", "trough-hybrid",
                                    "--out", str(cmp_out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    data = json.loads((cmp_out / "comparison.json").read_text())
    v = data["variants"]
    assert set(v) == {"peak-fixed", "trough-hybrid"}
    peak, trough = v["peak-fixed"], v["trough-hybrid"]
    assert peak["cost.compute_usd"]["mean"] > trough["cost.compute_usd"]["mean"]
    assert peak["paid_utilization"]["mean"] < trough["paid_utilization"]["mean"]
    # paired with the first variant (the baseline), replication by replication
    assert data["baseline"] == "peak-fixed"
    assert peak["cost.total_usd.minus_baseline"]["mean"] == 0
    diff = trough["cost.total_usd.minus_baseline"]
    assert diff["ci95_high"] < 0
    assert diff["mean"] == pytest.approx(trough["cost.total_usd"]["mean"]
                                         - peak["cost.total_usd"]["mean"])
    assert (cmp_out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(main, ["compare", DYNAMICS, "--variant", "nope"])
    assert bad.exit_code == 2 and "no variant 'nope'" in bad.output


def test_shares_stay_within_one_when_work_outlasts_a_short_horizon():
    # Two hours of the default workload: the nightly batch (3,500 long requests from
    # 01:00) on one replica is a backlog served long after the horizon, so shares of the
    # horizon alone would exceed 1.
    exp = load_experiment(None, ["horizon=2h", "replications=1", "fleet.replicas=1"])
    res = run_replication(exp, 0)
    row = res.row
    assert res.totals.end_s > 2 * 7200  # the run outlasts the horizon
    assert row["requests_gpu"] > 0
    assert res.totals.busy_s > 1.5 * 7200  # busy far longer than the horizon
    assert 0.5 < row["gpu_busy_fraction"] <= 1.0
    assert row["gpu_utilization"] <= 1.0
    assert row["gpu_decode_utilization"] <= 1.0


def test_dynamic_fleet_shares_stay_within_one_when_work_outlasts_the_horizon():
    # fleet-dynamics over 2 hours: work drains long after the horizon; busy time after it
    # must be set against up time after it too (the fuzz suite found 1.0038 before).
    exp = load_experiment(DYNAMICS, ["horizon=2h", "replications=2"])
    for i in range(2):
        res = run_replication(exp, i)
        row = res.row
        assert res.totals.end_s > 7200  # the run outlasts the horizon
        for key in ("gpu_busy_fraction", "gpu_utilization", "gpu_decode_utilization",
                    "paid_utilization"):
            assert 0.0 <= row[key] <= 1.0, (i, key, row[key])

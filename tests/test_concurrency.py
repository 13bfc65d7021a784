"""The ``concurrency`` arrival kind: a closed loop of clients (issue #21, item 1).

Checked against closed-network theory (the machine-repairman model: N clients with
exponential think times in front of one exponential server), end to end through
``capsim run`` on an llmperf-style experiment, and for one-line errors on bad input.
"""

from math import factorial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from sim.cli import main
from sim.serving.engine import OUTCOME_GPU, Engine, FinishedBlock, StreamPolicy
from sim.serving.replica import ReplicaSpec
from sim.workload.arrivals import MIN_CYCLE_S, ExponentialThink, FixedThink
from sim.workload.lengths import ExponentialLength, FixedLength
from sim.workload.streams import (
    ClosedLoopStream,
    client_chunk,
    expected_requests,
    parse_workload,
)

ROOT = Path(__file__).resolve().parents[1]
REPS = 10


def machine_repairman(n: int, think_s: float, service_s: float) -> tuple[float, float]:
    """Throughput and mean response time of N clients (exponential think time Z) and one
    exponential server (mean S): p0 from the finite-source M/M/1//N chain, X = (1 - p0)/S,
    R = N/X - Z (the interactive response-time law)."""
    r = service_s / think_s
    p0 = 1.0 / sum(factorial(n) / factorial(n - k) * r**k for k in range(n + 1))
    x = (1.0 - p0) / service_s
    return x, n / x - think_s


def run_closed_loop(source: ClosedLoopStream, spec: ReplicaSpec):
    eng = Engine(replicas=1, spec=spec, streams=[StreamPolicy()], seed=source.seed)
    got: list[FinishedBlock] = []
    totals = eng.run([], got.append, [source])
    return got, totals


def one_replication(seed: int, n: int, think_s: float, service_s: float, horizon_s: float):
    src = ClosedLoopStream("clients", 0, 0, n, ExponentialThink(kind="exponential", mean=think_s),
                           FixedLength(kind="fixed", value=1),
                           ExponentialLength(kind="exponential", mean=service_s), horizon_s,
                           np.random.SeedSequence(seed), client_chunk(n))
    # batch cap 1, one token a second, no prefill time: an exponential server of mean S
    got, totals = run_closed_loop(src, ReplicaSpec(rate_table=[0.0, 1.0], max_batch=1))
    arrival = np.concatenate([fb.requests.arrival_s for fb in got])
    end = np.concatenate([fb.end_s for fb in got])
    assert all((fb.outcome == OUTCOME_GPU).all() for fb in got)
    assert arrival.size == totals.arrived == totals.closed_loop_sent["clients"]
    return arrival.size / horizon_s, float(np.mean(end - arrival))


def test_machine_repairman_throughput_and_response_time():
    n, think_s, service_s, horizon_s = 5, 5.0, 1.0, 20_000.0
    x_theory, r_theory = machine_repairman(n, think_s, service_s)
    xs, rs = zip(*(one_replication(3000 + k, n, think_s, service_s, horizon_s)
                   for k in range(REPS)), strict=True)
    for samples, expected in ((xs, x_theory), (rs, r_theory)):
        samples = np.asarray(samples)
        se = samples.std(ddof=1) / np.sqrt(samples.size)
        # 4 standard errors of the mean of independent replications (t_9 two-sided:
        # a false alarm well under 0.5%)
        assert abs(samples.mean() - expected) <= 4 * se, (samples.mean(), expected, se)
    # theory is not trivially met: ~0.71 requests/s, not the 1/S of a saturated server
    assert abs(x_theory - 1 / service_s) > 0.2


def test_at_most_one_request_per_client_in_flight_and_reproducible():
    src = ClosedLoopStream("c", 0, 0, 3, FixedThink(kind="fixed", value=0.5),
                           FixedLength(kind="fixed", value=1),
                           ExponentialLength(kind="exponential", mean=2.0), 500.0,
                           np.random.SeedSequence(5), 16)  # small chunks: many blocks
    spec = ReplicaSpec(rate_table=[0.0, 1.0, 0.8], max_batch=2)  # a waiting room too
    a, _ = run_closed_loop(src, spec)
    b, _ = run_closed_loop(src, spec)
    arr = np.concatenate([fb.requests.arrival_s for fb in a])
    end = np.concatenate([fb.end_s for fb in a])
    assert np.array_equal(arr, np.concatenate([fb.requests.arrival_s for fb in b]))
    assert np.array_equal(end, np.concatenate([fb.end_s for fb in b]))
    assert in_flight_max(arr, end) == 3
    assert arr.max() < 500.0 and np.all(end > arr)
    # each next request is sent exactly its think time after the previous one ended
    gaps = np.sort(arr)[3:]
    ends_plus_think = np.sort(end + 0.5)
    assert np.allclose(gaps, ends_plus_think[: gaps.size])


def in_flight_max(arrival: np.ndarray, end: np.ndarray) -> int:
    """Most requests between their send and their end at once (an end before a send at
    the same instant)."""
    t = np.concatenate([arrival, end])
    step = np.concatenate([np.ones(arrival.size), -np.ones(end.size)])
    order = np.lexsort((step, t))
    return int(np.cumsum(step[order]).max())


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def test_llmperf_style_run_end_to_end(tmp_path):
    out = tmp_path / "r"
    exp = ROOT / "experiments" / "llmperf-closed-loop.yaml"
    res = run_cli(str(exp), "--set", "horizon=5m", "-n", "2", "--no-plots", "--requests",
                  "--out", str(out))
    assert res.exit_code == 0, res.output
    clients = yaml.safe_load(exp.read_text())["workload"]["streams"][0]["arrivals"]["clients"]
    runs = pq.read_table(out / "runs.parquet").to_pandas()
    req = pq.read_table(out / "requests.parquet").to_pandas()
    horizon_s = 300.0
    for rep, g in req.groupby("replication"):
        row = runs[runs.replication == rep].iloc[0]
        assert len(g) == row.requests_arrived
        assert in_flight_max(g.arrival_s.to_numpy(), g.end_s.to_numpy()) == clients
        assert row.achieved_rate_per_s == pytest.approx(len(g) / horizon_s)
        assert row["stream.llmperf.achieved_rate_per_s"] == row.achieved_rate_per_s
        # no think time: every client is always waiting for an answer, so the summed
        # response times are clients x horizon plus the last answers' overshoot
        e2e = g.e2e_s.to_numpy()
        overshoot = g.end_s.max() - horizon_s
        assert clients * horizon_s <= e2e.sum() <= clients * (horizon_s + overshoot)
    assert (req.outcome == "gpu").all()


@pytest.mark.parametrize("arrivals, field, words", [
    ({"kind": "concurrency", "clients": 0}, "arrivals.clients", "greater than 0"),
    ({"kind": "concurrency", "clients": 4, "think_s": -1}, "arrivals.think_s", ">= 0"),
    ({"kind": "concurrency", "clients": 4, "think_s": {"kind": "exponential", "mean": -2}},
     "arrivals.think_s.mean", "greater than 0"),
    ({"kind": "concurrency", "clients": 2.5}, "arrivals.clients", "integer"),
    ({"kind": "concurrency", "clients": 20_000}, "arrivals.clients", "10000"),
])
def test_bad_input_is_one_line_naming_the_field(tmp_path, arrivals, field, words):
    exp = yaml.safe_load((ROOT / "experiments" / "llmperf-closed-loop.yaml").read_text())
    exp["workload"]["streams"][0]["arrivals"] = arrivals
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(exp))
    res = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert str(path) in lines[0] and f"workload.streams[0].{field}" in lines[0], lines[0]
    assert words in lines[0], lines[0]


def test_open_loop_only_paths_refuse_a_closed_loop(tmp_path):
    stream = yaml.safe_load((ROOT / "experiments" / "llmperf-closed-loop.yaml").read_text())[
        "workload"]["streams"][0]
    wl = tmp_path / "wl.yaml"
    wl.write_text(yaml.safe_dump({"streams": [stream]}))
    res = CliRunner().invoke(main, ["workload", str(wl), "--horizon", "1h"])
    assert res.exit_code == 2 and "streams[0].arrivals.kind" in res.output, res.output
    assert "closed loop" in res.output and len(res.output.strip().splitlines()) == 1
    exp = yaml.safe_load((ROOT / "experiments" / "litellm-hybrid.yaml").read_text())
    exp["workload"] = {"streams": [stream]}
    exp["router"]["litellm_config"] = str(ROOT / "experiments" / "litellm" / "spiky-hybrid.yaml")
    path = tmp_path / "lite.yaml"
    path.write_text(yaml.safe_dump(exp))
    res = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "workload.streams[0].arrivals.kind" in res.output and "LiteLLM" in res.output


# A small step-level replica (8 sequences at most), so that 200 clients overflow.
SMALL_PROFILE = {
    "name": "small-test", "model": "test", "gpu": "test", "gpus_per_replica": 1,
    "max_batch": 8, "kv_capacity_tokens": 200_000,
    "scheduler": {"max_num_batched_tokens": 4096, "max_model_len": 32_768},
    "step_time": {"per_step_s": 0.006, "tokens": [1, 4096], "linear_s": [0.0, 0.13],
                  "per_seq_s": 1e-4},
    "prices": {"on_demand_usd_per_gpu_hour": 3.0, "source": "a test price", "date": "2026-01"},
}


def small_experiment(streams, overflow=None, replicas=1):
    exp = yaml.safe_load((ROOT / "experiments" / "llmperf-closed-loop.yaml").read_text())
    exp["workload"] = {"streams": streams}
    exp["fleet"] = {"profile": SMALL_PROFILE, "replicas": replicas}
    exp["horizon"] = "10m"
    if overflow is not None:
        exp["overflow"] = {"interactive": overflow}
        # limits far above this load: no 429s, so every request has an end time
        exp["api"] = {"gpt-4o-mini": {"base": "gpt-4o-mini", "rpm": 1_000_000,
                                      "tpm": 1_000_000_000}}
    return exp


def run_yaml(tmp_path, name, exp):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(exp))
    out = tmp_path / name
    res = run_cli(str(path), "-n", "2", "--no-plots", "--requests", "--out", str(out))
    assert res.exit_code == 0, res.output
    return (pq.read_table(out / "runs.parquet").to_pandas(),
            pq.read_table(out / "requests.parquet").to_pandas())


LENGTHS = {"input_tokens": {"kind": "lognormal", "mean": 800, "sigma": 0.5, "max": 8000},
           "output_tokens": {"kind": "lognormal", "mean": 300, "sigma": 0.5, "max": 4000}}


def test_closed_loop_beside_open_loop_with_overflow(tmp_path):
    """A closed loop and a Poisson stream share a small fleet that overflows to the API:
    the open-loop stream's requests are the same as without the closed loop (common random
    numbers), each client has at most one request in flight, whatever its fate, and a
    client's next request follows its previous one's end (GPU or API) by its think time."""
    poisson = {"name": "chat", "arrivals": {"kind": "poisson", "rate_per_s": 2.0}, **LENGTHS}
    loop = {"name": "bench", "arrivals": {"kind": "concurrency", "clients": 200,
                                          "think_s": {"kind": "exponential", "mean": 1.0}},
            **LENGTHS}
    overflow = {"when": "wait_exceeds", "threshold_s": 0.2, "to": "gpt-4o-mini"}
    _, alone = run_yaml(tmp_path, "alone", small_experiment([poisson], overflow))
    runs, both = run_yaml(tmp_path, "both", small_experiment([poisson, loop], overflow))
    mine = both[both.stream == 0].sort_values(["replication", "arrival_s"])
    ref = alone.sort_values(["replication", "arrival_s"])
    for col in ("arrival_s", "input_tokens", "output_tokens"):
        assert np.array_equal(mine[col].to_numpy(), ref[col].to_numpy())
    bench = both[both.stream == 1]
    assert set(bench.outcome) == {"gpu", "api"}  # both fates occur
    for rep, g in bench.groupby("replication"):
        assert in_flight_max(g.arrival_s.to_numpy(), g.end_s.to_numpy()) <= 200
        row = runs[runs.replication == rep].iloc[0]
        assert row["stream.bench.achieved_rate_per_s"] == pytest.approx(len(g) / 600.0)
        assert row.achieved_rate_per_s == pytest.approx(
            (len(g) + (mine.replication == rep).sum()) / 600.0)


def test_instant_failures_do_not_loop_at_one_instant(tmp_path):
    """Prompts no replica can hold, no API: every request fails at once; with no think
    time a client still sends at most one request per MIN_CYCLE_S."""
    loop = {"name": "huge", "arrivals": {"kind": "concurrency", "clients": 2},
            "input_tokens": {"kind": "fixed", "value": 200_000},
            "output_tokens": {"kind": "fixed", "value": 10}}
    exp = small_experiment([loop])
    exp["horizon"] = "2s"
    runs, req = run_yaml(tmp_path, "huge", exp)
    assert (req.outcome == "failed").all() and (req.fail_reason == "too_large").all()
    per_client = 2.0 / MIN_CYCLE_S  # (+1: sums of MIN_CYCLE_S round down, or the one at 0)
    assert (runs.requests_arrived <= 2 * (per_client + 1)).all()
    assert (runs.requests_arrived >= 2 * (per_client - 1)).all()
    # the size estimate made before the run is an upper bound of what it sent
    estimate = expected_requests(parse_workload([loop]), 2.0)
    assert (runs.requests_arrived <= estimate).all() and estimate <= 2 * (per_client + 1)

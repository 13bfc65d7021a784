"""Prefix caching declared in an experiment stream (issue #19 item 4): validation, the
TTFT it saves on a step-level replica, and the cached-input billing of overflowed requests.
"""

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from sim.cli import main
from sim.serving.api import load_api_models

K_S_PER_TOKEN = 1.0 / 30_000  # the profile's prefill time per token (linear step time)
PER_STEP_S = 0.006
PER_SEQ_S = 1e-4
BUDGET = 8192
BLOCK = 16

# A step-level replica whose step time is exactly linear in the step's tokens, with no
# attention terms and no per-request overheads: skipping C prompt tokens shortens the
# step that computes the prompt by exactly K_S_PER_TOKEN * C, whatever else is in it.
PROFILE = {
    "name": "linear-test", "model": "test", "gpu": "test", "gpus_per_replica": 1,
    "max_batch": 64, "kv_capacity_tokens": 400_000,
    "scheduler": {"max_num_batched_tokens": BUDGET, "block_size": BLOCK,
                  "max_model_len": 32_768, "prefix_caching": True},
    "step_time": {"per_step_s": PER_STEP_S, "tokens": [1, BUDGET],
                  "linear_s": [0.0, (BUDGET - 1) * K_S_PER_TOKEN], "per_seq_s": PER_SEQ_S},
    "prices": {"on_demand_usd_per_gpu_hour": 3.0, "source": "a test price",
               "date": "2026-01"},
}
RATE_PER_S = 0.5
INPUT, OUTPUT, PREFIX = 2000, 2000, 1500


def experiment(prefix=None, *, overflow=None, profile=PROFILE, input_tokens=None):
    stream = {"name": "chat", "class": "interactive",
              "arrivals": {"kind": "poisson", "rate_per_s": RATE_PER_S},
              "input_tokens": input_tokens or {"kind": "fixed", "value": INPUT},
              "output_tokens": {"kind": "fixed", "value": OUTPUT}}
    if prefix is not None:
        stream["prefix"] = prefix
    return {"name": "prefix-test", "horizon": "1h", "replications": 5, "seed": 5,
            "workload": {"streams": [stream]}, "fleet": {"profile": profile, "replicas": 1},
            "overflow": {"interactive": overflow or {"when": "never"}},
            "api": {"gpt-4o-mini": {"base": "gpt-4o-mini"}},
            "api_only_reference": "gpt-4o-mini",
            "costs": {"pricing": "on_demand", "engineering_fte": 0.1,
                      "usd_per_fte_year": 100_000, "infra_usd_per_month": 100}}


def run(tmp_path, name, exp, *extra):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(exp))
    out = tmp_path / name
    res = CliRunner().invoke(main, ["run", str(path), "--out", str(out), "--no-plots",
                                    "--requests", *extra], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return (pq.read_table(out / "runs.parquet").to_pandas(),
            pq.read_table(out / "requests.parquet").to_pandas())


def test_declared_prefix_cuts_ttft_by_the_skipped_prefill(tmp_path):
    _, none = run(tmp_path, "none", experiment())
    _, hit = run(tmp_path, "hit", experiment({"tokens": PREFIX, "groups": 1}))
    # Same seed, same stream: the same requests (the prefix changes no random draw).
    assert np.array_equal(none.arrival_s, hit.arrival_s)
    delta = (none.ttft_s - hit.ttft_s).groupby(none.replication).mean().to_numpy()
    # vLLM hits the prefix's full blocks (at most input - 1 tokens)
    cached = PREFIX // BLOCK * BLOCK
    expected = K_S_PER_TOKEN * cached  # 49.6 ms
    se = delta.std(ddof=1) / math.sqrt(delta.size)
    # Departures from exactly K*C, bounded from the model:
    # - a request hits only while another request of its group runs; requests run for at
    #   least OUTPUT decode steps of PER_STEP_S, so (M/G/inf) no one runs with probability
    #   at most exp(-rate * OUTPUT * PER_STEP_S) (~0.25%): those save nothing;
    # - a request that becomes ready during another's prefill step, or shares its own
    #   prefill step, also waits less for that one: more saving, with probability at most
    #   2 * rate * (the longest prefill step).
    no_holder = math.exp(-RATE_PER_S * OUTPUT * PER_STEP_S)
    longest_prefill_step_s = PER_STEP_S + (64 + INPUT) * K_S_PER_TOKEN + 64 * PER_SEQ_S
    extra = 2 * RATE_PER_S * longest_prefill_step_s
    low, high = expected * (1 - no_holder), expected * (1 + extra)
    assert low - 4 * se <= delta.mean() <= high + 4 * se, (delta, expected, se)
    assert delta.mean() > 0.9 * expected  # not a vacuous interval: [~49.5, ~53] ms


def test_prefix_only_changes_gpu_timing_not_the_workload(tmp_path):
    runs_a, a = run(tmp_path, "a", experiment({"tokens": PREFIX, "groups": 4}))
    runs_b, _ = run(tmp_path, "b", experiment({"tokens": PREFIX, "groups": 4}))
    assert runs_a.equals(runs_b)  # reproducible
    assert (a.outcome == "gpu").all()


def api_prices():
    m = load_api_models({"gpt-4o-mini": {"base": "gpt-4o-mini"}})["gpt-4o-mini"]
    return m.usd_per_1m_input, m.usd_per_1m_cached_input, m.usd_per_1m_output, m


@pytest.mark.parametrize("prefix", [{"tokens": PREFIX, "groups": 3}, {"hit_share": 0.3},
                                    {"tokens": PREFIX, "hit_share": 0.25}, None])
def test_overflowed_requests_bill_cached_input_by_the_declaration(tmp_path, prefix):
    lengths = {"kind": "lognormal", "median": 1800, "sigma": 0.4, "max": 8000}
    exp = experiment(prefix, overflow={"when": "always", "to": "gpt-4o-mini"},
                     input_tokens=lengths)
    exp["horizon"], exp["replications"] = "10m", 2
    runs, req = run(tmp_path, "api", exp)
    p_in, p_cached, p_out, model = api_prices()
    assert p_cached < p_in  # the cached price is a real discount
    to_month = 30 * 86400 / 600
    for rep, g in req.groupby("replication"):
        row = runs[runs.replication == rep].iloc[0]
        assert (g.outcome == "api").all()
        inp = g.input_tokens.to_numpy()
        if prefix is None:
            cached = inp * model.cached_input_share
        elif "hit_share" in prefix:
            cached = prefix["hit_share"] * inp
        else:  # the prefix, for every prompt longer than it
            cached = np.where(inp > PREFIX, PREFIX, 0.0)
            assert 0 < (inp <= PREFIX).sum() < inp.size  # both cases occur
        assert row["api.gpt-4o-mini.cached_input_tokens"] == pytest.approx(cached.sum())
        usd = ((inp.sum() - cached.sum()) * p_in + cached.sum() * p_cached
               + g.output_tokens.sum() * p_out) / 1e6 * to_month
        assert row["cost.api_usd"] == pytest.approx(usd, rel=1e-9)
        # every request went to the API: the API-only alternative bills the same tokens
        assert row["cost.api_only_usd"] == pytest.approx(usd, rel=1e-9)


@pytest.mark.parametrize("prefix, input_tokens, field, words", [
    ({"tokens": 2000}, None, "prefix", "less than the longest prompt"),
    ({"tokens": 900}, {"kind": "lognormal", "mean": 500, "sigma": 0.5, "max": 900}, "prefix",
     "(900)"),
    ({"groups": 4}, None, "prefix", "give tokens"),
    ({"hit_share": 0.3, "groups": 2}, None, "prefix", "groups needs tokens"),
    ({"hit_share": 1.5}, None, "prefix.hit_share", "less than or equal to 1"),
    ({"tokens": 0}, None, "prefix.tokens", "greater than 0"),
    ({"tokens": 100, "groups": 0}, None, "prefix.groups", "greater than 0"),
])
def test_bad_prefix_is_one_line_naming_the_field(tmp_path, prefix, input_tokens, field, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(experiment(prefix, input_tokens=input_tokens)))
    res = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert f"workload.streams[0].{field}" in lines[0] and words in lines[0], lines[0]


# ---------------------------------------------------------------- hit_share on GPU replicas
HIT = 0.3
# vLLM hits whole blocks and recomputes the last prompt token: 16 x floor(600 / 16) = 592
HIT_CACHED = BLOCK * (min(int(HIT * INPUT), INPUT - 1) // BLOCK)


def test_hit_share_cuts_ttft_by_the_skipped_prefill(tmp_path):
    """Every request of a stream with ``hit_share`` h finds 592 of its 2,000 prompt tokens
    cached (no holder needed, unlike a group prefix): its prefill step is K x 592 = 19.7
    ms shorter. Bounds from the model as in the group case above: never less on average,
    more when another's (also shorter) prefill step is in progress or shares its step."""
    _, none = run(tmp_path, "none", experiment())
    _, hit = run(tmp_path, "hit", experiment({"hit_share": HIT}))
    assert np.array_equal(none.arrival_s, hit.arrival_s)
    delta = (none.ttft_s - hit.ttft_s).groupby(none.replication).mean().to_numpy()
    expected = K_S_PER_TOKEN * HIT_CACHED
    se = delta.std(ddof=1) / math.sqrt(delta.size)
    longest_prefill_step_s = PER_STEP_S + (64 + INPUT) * K_S_PER_TOKEN + 64 * PER_SEQ_S
    extra = 2 * RATE_PER_S * longest_prefill_step_s
    assert expected - 4 * se <= delta.mean() <= expected * (1 + extra) + 4 * se, (
        delta, expected, se)
    assert delta.mean() > 0.9 * expected  # not a vacuous interval: [~19.7, ~20.8] ms


def test_shared_prefix_with_hit_share_runs_the_groups_on_gpus(tmp_path):
    """With both ``tokens`` and ``hit_share`` the GPU replicas use the shared prefix's
    groups (the share bills the API only): the same times as ``tokens`` alone."""
    _, groups = run(tmp_path, "g", experiment({"tokens": PREFIX, "groups": 2}))
    _, both = run(tmp_path, "b", experiment({"tokens": PREFIX, "groups": 2,
                                             "hit_share": HIT}))
    assert np.array_equal(groups.ttft_s, both.ttft_s)
    assert np.array_equal(groups.e2e_s, both.e2e_s)


def _completions_per_s(req) -> float:
    """Completions per second between the first completion after the start-up ramp (60 s)
    and the last one: both step boundaries (no post_s)."""
    end = np.sort(req.end_s.to_numpy())
    end = end[end >= 60.0]
    return float((end > end[0]).sum() / (end[-1] - end[0]))


def test_hit_share_raises_saturated_gpu_throughput(tmp_path):
    """96 closed-loop clients with no think time keep a replica's 64 sequence slots full
    (a slot freed at a step's end is refilled in the next step; at most 4 prompts of
    2,000 tokens join a step: 60 + 8,000 <= 8,192). Then every step has B = 64 sequences,
    and a request's share of the time is O steps' constant split B ways plus K per token
    it computes:
        c(C) = O ((per_step_s - K) / B + per_seq_s) + K (P - C + O - 1)
    (linear(N) = K (N - 1) in this profile), so the throughput is 1 / c(C): 8.93 req/s
    without the hit, 10.85 req/s with 592 cached tokens (+21%). Between two step
    boundaries t1 < t2: t2 - t1 = c (completions) + (the running requests' partial work
    at t2 minus at t1), which is less than B c: relative error below B c / (t2 - t1)."""
    out_tokens, b = 200, PROFILE["max_batch"]
    stream = {"arrivals": {"kind": "concurrency", "clients": 96},
              "output_tokens": {"kind": "fixed", "value": out_tokens}}
    rates = {}
    for name, prefix, cached in (("none", None, 0), ("hit", {"hit_share": HIT}, HIT_CACHED)):
        exp = experiment(prefix)
        exp["workload"]["streams"][0].update(stream)
        exp["horizon"], exp["replications"] = "20m", 1
        _, req = run(tmp_path, name, exp)
        assert (req.outcome == "gpu").all() and (req.kv_preemptions == 0).all()
        c = (out_tokens * ((PER_STEP_S - K_S_PER_TOKEN) / b + PER_SEQ_S)
             + K_S_PER_TOKEN * (INPUT - cached + out_tokens - 1))
        window_s = 1200.0 - 60.0 - c * out_tokens  # (at least: the last ends by ~1,200 s)
        rates[name] = _completions_per_s(req)
        assert rates[name] == pytest.approx(1.0 / c, rel=b * c / window_s), name
    assert rates["hit"] / rates["none"] > 1.2


def test_hit_share_bills_api_requests_as_before_when_gpus_serve_some(tmp_path):
    """An overloaded replica (12 req/s against the 8.9-10.9 req/s it serves, see above)
    overflows requests that wait over 1 s to the API: the faster GPUs serve more of them,
    and the API still bills ``hit_share x input`` of each request it serves at the
    cached-input price (the stream's billing rule is unchanged by the GPUs' use of it)."""
    served = {}
    for name, prefix in (("none", None), ("hit", {"hit_share": HIT})):
        exp = experiment(prefix, overflow={"when": "wait_exceeds", "to": "gpt-4o-mini",
                                           "threshold_s": 1.0})
        exp["workload"]["streams"][0]["arrivals"]["rate_per_s"] = 12.0
        exp["workload"]["streams"][0]["output_tokens"] = {"kind": "fixed", "value": 200}
        exp["horizon"], exp["replications"] = "10m", 1
        runs, req = run(tmp_path, name, exp)
        served[name] = (req.outcome == "gpu").sum()
        api = req[req.outcome == "api"]
        assert 0 < len(api) < len(req)
        p_in, p_cached, p_out, model = api_prices()
        share = HIT if prefix else model.cached_input_share
        cached = share * api.input_tokens.to_numpy()
        row = runs.iloc[0]
        assert row["api.gpt-4o-mini.cached_input_tokens"] == pytest.approx(cached.sum())
        usd = ((api.input_tokens.sum() - cached.sum()) * p_in + cached.sum() * p_cached
               + api.output_tokens.sum() * p_out) / 1e6 * (30 * 86400 / 600)
        assert row["cost.api_usd"] == pytest.approx(usd, rel=1e-9)
    assert served["hit"] > served["none"]

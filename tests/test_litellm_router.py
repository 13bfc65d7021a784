"""The LiteLLM router model: hand-worked cases for each strategy and for retry -> fallback
-> cooldown sequences, the weighted split against its binomial CI, rate limits per minute,
the outage/cooldown hand computation of the issue, server timeouts and conservation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.litellm.config import RouterSettings
from sim.litellm.router import DeploymentModel, LitellmRouterSim
from sim.serving.api import ApiModel
from sim.serving.replica import ReplicaSpec
from sim.workload.requests import RequestBlock

# ---------------------------------------------------------------------------- helpers


def api(ttft_s: float = 0.5, tokens_per_s: float = 100.0, *, rpm: int | None = None,
        outages: tuple = (), price_in: float = 1.0, price_out: float = 4.0) -> ApiModel:
    """An API with a fixed TTFT (deterministic latency)."""
    return ApiModel.model_validate({
        "name": "test-api", "usd_per_1m_input": price_in, "usd_per_1m_output": price_out,
        "ttft_s": {"kind": "fixed", "value": ttft_s}, "output_tokens_per_s": tokens_per_s,
        "rpm": rpm, "outages": [{"start": a, "duration": d} for a, d in outages]})


def dep(name: str, group: str = "g", **kw) -> DeploymentModel:
    if "spec" not in kw:
        kw.setdefault("api", api())
    return DeploymentModel(name=name, group=group, kind="gpu" if "spec" in kw else "api", **kw)


def run(deps, settings=None, *, arrivals, out=100.0, inp=100.0, groups=("g",), horizon=None,
        keep=True, **kw):
    arrivals = np.asarray(arrivals, float)
    n = arrivals.size
    block = RequestBlock.from_arrays(arrivals, np.broadcast_to(np.asarray(inp, float), n).copy(),
                                     np.broadcast_to(np.asarray(out, float), n).copy())
    sim = LitellmRouterSim(deps, settings or RouterSettings(), stream_groups=list(groups),
                           horizon_s=horizon or (float(arrivals.max()) + 1 if n else 1.0),
                           keep_requests=keep, **kw)
    return sim.run([block])


def rows(res):
    """Per-request records in arrival order."""
    return sorted(res.requests.to_pylist(), key=lambda r: r["request"])


def by_name(res):
    return {d["deployment"]: d for d in res.deployments}


# ------------------------------------------------------------------------- strategies


def test_weighted_shuffle_splits_by_weight_within_binomial_ci():
    n = 20000
    res = run([dep("a", weight=3), dep("b", weight=1)], arrivals=np.arange(n) * 0.01,
              keep=False, seed=3)
    share = by_name(res)["a"]["ok"] / n
    se = math.sqrt(0.75 * 0.25 / n)
    assert abs(share - 0.75) < 4 * se, (share, se)


def test_shuffle_weights_by_rpm_when_no_weights():
    n = 20000
    res = run([dep("a", rpm=100), dep("b", rpm=400)], arrivals=np.arange(n) * 0.01,
              keep=False, seed=4)
    share = by_name(res)["b"]["ok"] / n
    assert abs(share - 0.8) < 4 * math.sqrt(0.8 * 0.2 / n)


def test_least_busy_hand_worked():
    # e2e = 0.5 + 100/100 = 1.5 s on both. t=0 -> a (tie, first listed); t=0.5 -> b (a busy);
    # t=1.0 -> a and b both busy (1 each): tie -> a; t=2.0 -> a busy until 2.5, b free -> b.
    res = run([dep("a"), dep("b")], RouterSettings(routing_strategy="least-busy"),
              arrivals=[0.0, 0.5, 1.0, 2.0])
    assert [r["path"] for r in rows(res)] == ["a", "b", "a", "b"]


def test_latency_based_tries_unknown_deployments_then_the_fastest():
    slow, fast = api(ttft_s=2.0), api(ttft_s=0.2)
    settings = RouterSettings(routing_strategy="latency-based-routing")
    # Neither has answered by t=0 or 0.1: both count 0, the tie goes to the first listed
    # (slow, answering at 3.0 and 3.1: 3 s / 100 tokens). At t=5 fast has no history (0)
    # -> fast, answering at 6.2 (1.2 s / 100 tokens); at t=6 still none -> fast; at t=7
    # fast's 0.012 s/token beats slow's 0.03.
    res = run([dep("slow", api=slow), dep("fast", api=fast)], settings,
              arrivals=[0.0, 0.1, 5.0, 6.0, 7.0])
    assert [r["path"] for r in rows(res)] == ["slow", "slow", "fast", "fast", "fast"]


def test_cost_based_takes_the_cheapest_and_skips_it_while_cooling_down():
    cheap = api(price_in=0.1, price_out=0.4, outages=((0.0, 1.0),))
    dear = api(price_in=5.0, price_out=15.0)
    settings = RouterSettings(routing_strategy="cost-based-routing", allowed_fails=0,
                              cooldown_time=10.0)
    deps = [dep("dear", api=dear, usd_per_input_token=5e-6, usd_per_output_token=15e-6),
            dep("cheap", api=cheap, usd_per_input_token=0.1e-6, usd_per_output_token=0.4e-6)]
    # t=0: cheap is down -> 503 at 0.1, cooled down until 10.1 -> the request fails (no
    # retries); t=2: cheap cooling -> dear; t=12: cheap again.
    res = run(deps, settings, arrivals=[0.0, 2.0, 12.0], error_latency_s=0.1)
    got = rows(res)
    assert [r["path"] for r in got] == ["cheap", "dear", "cheap"]
    assert got[0]["failure"] == "unavailable"
    assert [r["failure"] for r in got[1:]] == ["", ""]


def test_usage_based_never_exceeds_rpm_in_any_minute():
    rpms = {"a": 30, "b": 60, "c": 90}
    deps = [dep(k, rpm=v) for k, v in rpms.items()]
    rng = np.random.default_rng(5)
    arrivals = np.sort(rng.uniform(0, 1800, 7000))  # ~233/min against 180/min of limits
    res = run(deps, RouterSettings(routing_strategy="usage-based-routing-v2"),
              arrivals=arrivals, keep=False)
    tl = res.timeline.to_pydict()
    for name, rpm in rpms.items():
        per_minute = [a for d, a in zip(tl["deployment"], tl["attempts"], strict=True)
                      if d == name]
        assert max(per_minute) == rpm  # saturated, never exceeded
    assert res.reasons["no_deployment"] > 0
    assert res.served + res.failed == res.arrived == 7000


def test_usage_based_picks_the_lowest_tokens_this_minute():
    res = run([dep("a"), dep("b")], RouterSettings(routing_strategy="usage-based-routing"),
              arrivals=[0.0, 1.0, 2.0, 61.0], inp=[900.0, 100.0, 100.0, 100.0], out=100.0)
    # a gets 1000 tokens; b then has 0 -> b (200), b again (400 < 1000); new minute -> a.
    assert [r["path"] for r in rows(res)] == ["a", "b", "b", "a"]


# ------------------------------------------------------- retries, fallbacks, cooldowns


def test_retry_then_fallback_then_cooldown_hand_worked():
    down = ((0.0, 100.0),)
    deps = [dep("p1", "primary", api=api(outages=down)),
            dep("p2", "primary", api=api(outages=down)),
            dep("b1", "backup", api=api(ttft_s=0.5, tokens_per_s=100.0))]
    settings = RouterSettings(routing_strategy="least-busy", num_retries=1, allowed_fails=0,
                              cooldown_time=5.0, fallbacks=[{"primary": ["backup"]}])
    res = run(deps, settings, arrivals=[0.0], groups=("primary",), error_latency_s=0.1,
              horizon=10.0)
    (r,) = rows(res)
    # t=0 p1 -> 503 at 0.1, cooled to 5.1; one healthy deployment left -> back-off 0.5 s;
    # t=0.6 p2 -> 503 at 0.7, cooled to 5.7; retries spent -> backup at 0.7, answer after
    # 0.5 + 100/100 s.
    assert r["path"] == "p1>p2>b1" and r["attempts"] == 3 and r["fallbacks"] == 1
    assert r["final_group"] == "backup" and r["failure"] == ""
    assert r["e2e_s"] == pytest.approx(0.7 + 1.5)
    assert r["ttft_s"] == pytest.approx(0.7 + 0.5)
    cd = res.cooldowns.to_pydict()
    assert cd["deployment"] == ["p1", "p2"]
    assert cd["start_s"] == pytest.approx([0.1, 0.7])
    assert cd["end_s"] == pytest.approx([5.1, 5.7])


def test_retry_is_immediate_while_other_deployments_are_healthy():
    deps = [dep("x", api=api(outages=((0.0, 50.0),))), dep("y"), dep("z")]
    settings = RouterSettings(routing_strategy="least-busy", num_retries=2, allowed_fails=5)
    res = run(deps, settings, arrivals=[0.0], error_latency_s=0.1)
    (r,) = rows(res)
    assert r["path"] == "x>y"
    assert r["e2e_s"] == pytest.approx(0.1 + 1.5)  # no back-off: y was healthy


def test_rate_limit_cools_down_at_once_and_the_retry_moves_on():
    deps = [dep("tight", api=api(rpm=1)), dep("roomy")]
    settings = RouterSettings(routing_strategy="least-busy", num_retries=1, allowed_fails=3,
                              cooldown_time=30.0)
    # t=0 tight (1 of 1 rpm); t=0.1: tight and roomy both idle?  tight is busy (1 in
    # flight) -> roomy; t=2 (tight idle again) -> tight -> 429 -> cooled at once despite
    # allowed_fails 3 -> retry on roomy; t=10 -> tight still cooling -> roomy.
    res = run(deps, settings, arrivals=[0.0, 0.1, 2.0, 10.0], error_latency_s=0.1)
    assert [r["path"] for r in rows(res)] == ["tight", "roomy", "tight>roomy", "roomy"]
    assert by_name(res)["tight"]["cooldowns"] == 1
    assert by_name(res)["tight"]["fail_rate_limit"] == 1


def test_one_api_deployment_down_ten_minutes_allowed_fails_one_hand_computation():
    # A (order 1) is down for [60, 660); B (order 2) is always up. One request a second,
    # no retries, failures answered at once, allowed_fails 1, cooldown 30 s.
    # In each clock minute A takes a request and fails (1 of 1 allowed), takes the next
    # second's and fails again (2 > 1: cooled 30 s), and fails the first request after
    # the cooldown (3 > 1: cooled again, as the minute has not turned). The next minute
    # starts when that second cooldown ends, 61 s after the cycle began:
    # cycles at 60, 121, ..., 609 -> 10 cycles x (3 failed requests, 2 cooldowns).
    deps = [dep("A", api=api(outages=((60.0, 600.0),)), order=1), dep("B", order=2)]
    settings = RouterSettings(allowed_fails=1, cooldown_time=30.0)
    res = run(deps, settings, arrivals=np.arange(900.0), error_latency_s=0.0, horizon=900.0)
    a = by_name(res)["A"]
    assert res.failed == 30 and a["fail_unavailable"] == 30
    assert a["cooldowns"] == 20
    assert a["cooldown_s"] == pytest.approx(20 * 30.0)
    failed_at = [r["arrival_s"] for r in rows(res) if r["failure"]]
    assert failed_at[:6] == [60.0, 61.0, 91.0, 121.0, 122.0, 152.0]
    assert failed_at[-3:] == [609.0, 610.0, 640.0]
    assert res.served == 870


def test_the_only_deployment_of_a_group_is_never_cooled_down():
    res = run([dep("solo", api=api(outages=((0.0, 30.0),)))],
              RouterSettings(allowed_fails=0), arrivals=np.arange(60.0))
    assert by_name(res)["solo"]["cooldowns"] == 0
    assert res.failed == 30


def test_no_deployment_available_fails_the_group_at_once():
    deps = [dep("a", api=api(outages=((0.0, 100.0),))),
            dep("b", api=api(outages=((0.0, 100.0),)))]
    settings = RouterSettings(routing_strategy="least-busy", allowed_fails=0,
                              cooldown_time=60.0, num_retries=3)
    res = run(deps, settings, arrivals=[0.0, 0.1, 10.0], error_latency_s=0.0)
    # #0 fails on a at 0 (a cooled; one healthy left -> back-off 0.5 s); #1 at 0.1 fails
    # on b (b cooled; none healthy -> back-off); both retries then find no deployment and
    # fail at once, without their remaining retries; #2 finds none at all.
    got = rows(res)
    assert [r["path"] for r in got] == ["a", "b", ""]
    assert [r["attempts"] for r in got] == [1, 1, 0]
    assert all(r["failure"] == "no_deployment" for r in got)
    assert got[0]["e2e_s"] == pytest.approx(0.5)


def test_context_window_fallback():
    deps = [dep("small", "short", max_input_tokens=1000.0), dep("big", "long")]
    settings = RouterSettings(context_window_fallbacks=[{"short": ["long"]}])
    res = run(deps, settings, arrivals=[0.0, 1.0], inp=[500.0, 5000.0], groups=("short",))
    got = rows(res)
    assert [r["path"] for r in got] == ["small", "big"]
    res = run(deps, RouterSettings(), arrivals=[0.0], inp=5000.0, groups=("short",))
    assert rows(res)[0]["failure"] == "context_window"


# ------------------------------------------------------------------ self-hosted servers

SPEC = ReplicaSpec(rate_table=[0.0, 100.0], max_batch=1, kv_capacity_tokens=1e6,
                   prefill_tokens_per_s=math.inf)


def test_server_timeout_aborts_and_frees_the_slot():
    # One slot, 400 tokens at 100 tok/s = 4 s each, timeout 5 s. #0 runs 0-4; #1 waits,
    # starts at 4 and would end at 8 > 5: aborted at 5, freeing the slot; #2 at 5.5 starts
    # at once and takes 4 s.
    d = dep("vllm", spec=SPEC, replicas=1, timeout_s=5.0)
    res = run([d], arrivals=[0.0, 0.0, 5.5], out=400.0, inp=0.0)
    got = rows(res)
    assert [r["failure"] for r in got] == ["", "timeout", ""]
    assert got[0]["e2e_s"] == pytest.approx(4.0)
    assert got[2]["e2e_s"] == pytest.approx(4.0)


def test_server_stream_timeout_on_the_first_token():
    # #1 queues behind #0 for 4 s; its first token would come at 4 > stream timeout 3.
    d = dep("vllm", spec=SPEC, replicas=1, stream_timeout_s=3.0)
    res = run([d], arrivals=[0.0, 0.0], out=400.0, inp=0.0)
    assert [r["failure"] for r in rows(res)] == ["", "timeout"]


def test_server_outage_fails_running_requests_which_retry_elsewhere():
    deps = [dep("vllm", spec=SPEC, replicas=1, outages=((2.0, 10.0),)), dep("api")]
    settings = RouterSettings(routing_strategy="least-busy", num_retries=1, allowed_fails=5)
    res = run(deps, settings, arrivals=[0.0], out=400.0, inp=0.0)
    (r,) = rows(res)
    assert r["path"] == "vllm>api" and r["failure"] == ""
    assert r["e2e_s"] == pytest.approx(2.0 + 0.5 + 4.0)  # failed at 2, API takes 4.5 s


# ------------------------------------------------------------------------ conservation


@pytest.mark.parametrize("strategy", ["simple-shuffle", "least-busy", "usage-based-routing",
                                      "latency-based-routing", "cost-based-routing"])
def test_every_request_ends_exactly_once(strategy):
    rng = np.random.default_rng(9)
    spec = ReplicaSpec(rate_table=[0.0] + [30.0] * 8, max_batch=8, kv_capacity_tokens=20000,
                       prefill_tokens_per_s=5000.0)
    deps = [dep("v1", "llm", spec=spec, replicas=2, timeout_s=20.0, rpm=200),
            dep("v2", "llm", spec=spec, replicas=1, stream_timeout_s=2.0,
                outages=((600.0, 300.0 + 600.0),), rpm=100),
            dep("o1", "api", api=api(rpm=40, outages=((1000.0, 1200.0),)), rpm=40),
            dep("o2", "api", api=api(ttft_s=0.3), rpm=200)]
    settings = RouterSettings(routing_strategy=strategy, num_retries=2, allowed_fails=2,
                              cooldown_time=20.0, fallbacks=[{"llm": ["api"]}])
    n = 3000
    arrivals = np.sort(rng.uniform(0, 1800, n))
    res = run(deps, settings, arrivals=arrivals, out=rng.integers(1, 400, n).astype(float),
              inp=rng.integers(1, 4000, n).astype(float), groups=("llm",))
    got = rows(res)
    assert len(got) == n and sorted(r["request"] for r in got) == list(range(n))
    assert res.served + res.failed == n
    assert sum(r["attempts"] for r in got) == sum(d["attempts"] for d in res.deployments)
    assert sum(d["ok"] for d in res.deployments) == res.served
    fails = sum(d["failures"] for d in res.deployments)
    assert fails == sum(r["attempts"] for r in got) - res.served
    for r in got:  # a served request ends on the last deployment it tried
        assert r["deployment"] == ("" if r["failure"] else r["path"].split(">")[-1])


def test_latency_history_older_than_ttl_is_forgotten():
    slow, fast = api(ttft_s=2.0), api(ttft_s=0.2)
    settings = RouterSettings(routing_strategy="latency-based-routing",
                              routing_strategy_args={"ttl": 10.0})
    # As above, fast has the better history by t=7; by t=100 both histories are older
    # than 10 s: both count 0 again and the tie goes to the first listed.
    res = run([dep("slow", api=slow), dep("fast", api=fast)], settings,
              arrivals=[0.0, 0.1, 5.0, 7.0, 100.0])
    assert [r["path"] for r in rows(res)] == ["slow", "slow", "fast", "fast", "slow"]

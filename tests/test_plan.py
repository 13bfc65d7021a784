"""`capsim plan`: SLO syntax, the bisection search, and Erlang-C sizing as a known answer."""

from __future__ import annotations

import json
import math
import re
from math import factorial
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim.cli import main
from sim.core.errors import ConfigError
from sim.study.plan import (
    PlanResult,
    SearchSpace,
    Slo,
    check_metrics,
    drive,
    make_plan,
    parse_slo,
    search_space,
    smallest_feasible,
)
from sim.study.reports import plan_outcome, plan_report
from sim.study.sweep import Point, PointStats

# An M/M/c queue: Poisson arrivals (lambda = 4/s), one request at a time per replica
# (max_batch 1, a flat curve of 100 tokens/s) and exponential output lengths of mean 100
# tokens, so service is exponential with mu = 1/s; prefill is instantaneous.
LAM, MU, T_S = 4.0, 1.0, 0.6
ERLANG = """\
name: erlang-c
horizon: 2h
replications: 4
seed: 5
workload:
  streams:
    - name: calls
      class: interactive
      arrivals: {kind: poisson, rate_per_s: 4.0}
      input_tokens: {kind: fixed, value: 1}
      output_tokens: {kind: exponential, mean: 100}
fleet:
  replicas: 1
  profile:
    name: one-slot
    model: test
    gpu: test
    gpus_per_replica: 1
    max_batch: 1
    kv_capacity_tokens: 1000000000
    prefill_tokens_per_s: 1.0e12
    curve: {batch: [1], decode_tokens_per_s: [100.0]}
    prices: {on_demand_usd_per_gpu_hour: 1.0, source: test, date: "2024-01-01"}
overflow:
  interactive: {when: never}
costs: {usd_per_gpu_hour: 1.0}
"""


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load a < c."""
    s = sum(a**k / factorial(k) for k in range(c))
    top = a**c / factorial(c) * c / (c - a)
    return top / (s + top)


def wait_exceeds(c: int, t: float) -> float:
    """P(W > t) = C(c, a) exp(-(c mu - lambda) t) (1 for an unstable queue)."""
    a = LAM / MU
    return 1.0 if c <= a else erlang_c(c, a) * math.exp(-(c * MU - LAM) * t)


def wait_p95(c: int) -> float:
    """The 95th percentile of the wait in M/M/c (0 when fewer than 5% wait)."""
    cc = erlang_c(c, LAM / MU)
    return math.log(cc / 0.05) / (c * MU - LAM) if cc > 0.05 else 0.0


# ---------------------------------------------------------------------------- syntax


@pytest.mark.parametrize(("text", "slo"), [
    ("interactive.ttft_p99_s=2", Slo("interactive.ttft_p99_s", "<=", 2.0)),
    ("interactive.gpu.ttft_p99_s<=1.5", Slo("interactive.gpu.ttft_p99_s", "<=", 1.5)),
    ("batch.deadline_met=0.999", Slo("batch.deadline_met", ">=", 0.999)),
    ("batch.slo_attainment=99.9%", Slo("batch.slo_attainment", ">=", 0.999)),
    ("min:gpu_utilization=0.5", Slo("gpu_utilization", ">=", 0.5)),
    ("max:slo_attainment=1", Slo("slo_attainment", "<=", 1.0)),
    ("overflow_share >= 0.01", Slo("overflow_share", ">=", 0.01)),
])
def test_slo_syntax_and_default_directions(text, slo):
    assert parse_slo(text) == slo


@pytest.mark.parametrize("text", ["ttft", "a.b<2", "min:x<=3", "x=fast", "x=nan", "=2"])
def test_bad_slo_is_a_config_error(text):
    with pytest.raises(ConfigError):
        parse_slo(text)


def test_slo_is_judged_on_the_right_ci_end():
    rows = [{"replication": i, "m": v} for i, v in enumerate([1.0, 1.2, 0.8, 1.0])]
    stats = PointStats(Point.of({}), rows)
    high, low = stats.stat("m", "ci95_high"), stats.stat("m", "ci95_low")
    assert low < 1.0 < high
    assert Slo("m", "<=", high + 1e-9).met(stats) and not Slo("m", "<=", 1.0).met(stats)
    assert Slo("m", ">=", low - 1e-9).met(stats) and not Slo("m", ">=", 1.0).met(stats)
    assert not Slo("missing", "<=", 1e9).met(stats)  # undefined never meets an SLO


def test_unknown_metric_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'interactive.ttft_p99_s'"):
        check_metrics([parse_slo("interactive.ttft_p99=2")],
                      ["interactive.ttft_p99_s", "interactive.ttft_p95_s", "cost.total_usd"])


def test_search_space_defaults_and_errors():
    space = search_space(["fleet.profile=a,b"])
    assert space.replicas == list(range(1, 33)) and len(space.combos) == 2
    assert search_space(["fleet.replicas=4,2,2,8"]).replicas == [2, 4, 8]
    with pytest.raises(ConfigError, match="whole numbers"):
        search_space(["fleet.replicas=1,2.5"])


# ---------------------------------------------------------------- search, with a stub


class StubEvaluator:
    """Evaluates a point as metric ``m = 100 / replicas`` and cost ``replicas x price``."""

    def __init__(self, price_by_profile: dict[str, float] | None = None):
        self.calls: list[str] = []
        self.prices = price_by_profile or {}
        self._seen: dict[str, PointStats] = {}
        self.base = self

    def load(self, *_args):  # evaluator.base.load(): no overflow rules to switch off
        return type("Exp", (), {"config": type("Cfg", (), {"overflow": {}})()})()

    def known(self) -> set[str]:
        return set(self._seen)

    def evaluate(self, points):
        out = {}
        for p in points:
            if p.id not in self._seen:
                self.calls.append(p.label)
                r = p.get("fleet.replicas")
                price = self.prices.get(p.get("fleet.profile"), 1.0)
                rows = [{"replication": i, "m": 100.0 / max(r, 1e-9) + 0.01 * i,
                         "cost.total_usd": r * price} for i in range(3)]
                self._seen[p.id] = PointStats(p, rows)
            out[p.id] = self._seen[p.id]
        return out


@pytest.mark.parametrize("limit", [150.0, 100.5, 40.0, 10.0, 3.4, 3.1])
def test_bisection_finds_the_smallest_feasible_fleet(limit):
    stub = StubEvaluator()
    values = list(range(1, 33))
    slo = Slo("m", "<=", limit)
    search = smallest_feasible(values, lambda r: Point.of({"fleet.replicas": r}),
                               lambda s: slo.met(s))
    found = drive(stub, {"only": search})["only"]
    brute = StubEvaluator()
    feasible = [r for r in values if slo.met(next(iter(brute.evaluate(
        [Point.of({"fleet.replicas": r})]).values())))]
    assert (found[0] if found else None) == (feasible[0] if feasible else None)
    assert len(stub.calls) <= 2 + math.ceil(math.log2(len(values)))


def test_plan_picks_the_cheapest_combination():
    stub = StubEvaluator({"cheap-slow": 1.0, "fast-dear": 3.0})
    space = SearchSpace(list(range(1, 17)),
                        [Point.of({"fleet.profile": "cheap-slow"}),
                         Point.of({"fleet.profile": "fast-dear"})])
    result = make_plan(stub, [Slo("m", "<=", 20.0)], space)
    best = result.recommended
    assert best.point.get("fleet.replicas") == 6 and best.point.get("fleet.profile") == (
        "cheap-slow")
    assert result.runners_up and all(s.stat("cost.total_usd") >= best.stat("cost.total_usd")
                                     for s in result.runners_up)
    assert result.gpu_only is best  # no overflow rules: the plan is already GPU-only


# ------------------------------------------------------------ Erlang C: a known answer


def test_plan_matches_erlang_c_sizing(tmp_path):
    """The smallest c with P(W > t) <= 5% is the smallest fleet whose p95 wait is <= t."""
    expected = next(c for c in range(5, 20) if wait_exceeds(c, T_S) <= 0.05)
    assert expected == 7  # parameters chosen so that neighbours are far apart:
    assert wait_exceeds(expected - 1, T_S) > 0.08 and wait_exceeds(expected, T_S) < 0.025
    exp = tmp_path / "erlang.yaml"
    exp.write_text(ERLANG)
    out = tmp_path / "plan"
    res = CliRunner().invoke(main, ["plan", str(exp), "--slo", f"interactive.wait_p95_s={T_S}",
                                    "--over", "fleet.replicas=1..16", "--out", str(out),
                                    "-j", "2"])
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "plan.json").read_text())
    assert plan["recommended"]["point"] == {"fleet.replicas": expected}
    evaluated = {e["point"]["fleet.replicas"]: e for e in plan["evaluated"]}
    assert not evaluated[expected - 1]["feasible"] and evaluated[expected]["feasible"]
    for c in (expected - 1, expected):  # the simulated p95 wait is the formula's
        p95 = evaluated[c]["metrics"]["interactive.wait_p95_s"]["mean"]
        assert p95 == pytest.approx(wait_p95(c), rel=0.2)
    # the cheapest fleet (API-only may still be cheaper: its own line says so)
    assert re.search(r"(Recommended|Cheapest self-hosted): 7 replicas \(7 GPUs\)", res.output)
    assert "API-only on gpt-4o" in res.output
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_plan_cli_errors_and_infeasible_search(tmp_path):
    exp = tmp_path / "erlang.yaml"
    exp.write_text(ERLANG)
    runner = CliRunner()
    bad = runner.invoke(main, ["plan", str(exp), "--slo", "interactive.wait_p95=1",
                               "--out", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "did you mean 'interactive.wait_p95_s'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "a").exists()
    bad = runner.invoke(main, ["plan", str(exp), "--slo", "interactive.wait_p95_s~1"])
    assert bad.exit_code == 2 and "bad SLO" in bad.output
    one = runner.invoke(main, ["plan", str(exp), "-n", "1", "--slo", "slo_attainment=0.9"])
    assert one.exit_code == 2 and "at least 2 replications" in one.output
    # fewer replicas than the offered load (4): unstable, no fleet meets the SLO even on
    # the mean; the API-only alternative is barred by an overflow bound
    none = runner.invoke(main, ["plan", str(exp), "-n", "2", "--slo",
                                "interactive.wait_p95_s=0.6", "--slo", "overflow_share=0.5",
                                "--over", "fleet.replicas=1..3",
                                "--out", str(tmp_path / "b"), "-j", "1"])
    assert none.exit_code == 1, none.output
    assert "Self-hosted: infeasible: no fleet in the search space" in none.output
    assert "API-only on gpt-4o" in none.output and "misses overflow_share" in none.output
    assert Path(tmp_path / "b" / "plan.json").is_file()


# ------------------------------------------------------- too few replications (#22)


def _stats(replicas: int, values: list[float], cost: float) -> PointStats:
    rows = [{"replication": i, "m": v, "cost.total_usd": cost, "replicas": replicas,
             "gpus_per_replica": 1, "failure_share": 0.0, "overflow_share": 0.0}
            for i, v in enumerate(values)]
    return PointStats(Point.of({"fleet.replicas": replicas}), rows)


def test_too_few_replications_is_undecided_not_infeasible():
    """Two replications whose mean meets m <= 1 but whose 95% interval (t = 12.7) does
    not: the plan must say the interval is too wide, not that the plan is infeasible."""
    slo = Slo("m", "<=", 1.0)
    two = _stats(4, [0.80, 0.95], 400.0)
    assert not slo.met(two) and two.stat("m") < 1.0
    result = PlanResult([slo], SearchSpace([4], [Point.of({})]), [two], None, [], None)
    assert plan_outcome(result) == "undecided"
    text = "\n".join(x.text for x in plan_report(result, name="t").lines)
    assert "undecided, not infeasible" in text and "Self-hosted: infeasible" not in text
    assert "warning: the 95% interval of m is too wide to decide the plan." in text
    # the same values, more replications: decided
    ten = _stats(4, [0.80, 0.95] * 5, 400.0)
    assert slo.met(ten)
    worse = _stats(4, [1.10, 1.30], 400.0)  # even the mean misses: infeasible
    result = PlanResult([slo], SearchSpace([4], [Point.of({})]), [worse], None, [], None)
    assert plan_outcome(result) == "infeasible"


def test_api_only_cheapest_and_feasible_is_the_recommendation():
    slo = Slo("m", "<=", 1.0)
    fleet = _stats(4, [0.5, 0.5, 0.5], 400.0)
    api = PointStats(Point.of({"fleet.replicas": 0}), [
        {"replication": i, "m": 0.2, "cost.api_only_usd": 300.0 + i, "replicas": 0,
         "gpus_per_replica": 1, "failure_share": 0.0, "overflow_share": 1.0}
        for i in range(3)])
    result = PlanResult([slo], SearchSpace([4], [Point.of({})]), [fleet], fleet, [], fleet,
                        api_only=api)
    assert plan_outcome(result) == "api-only"
    text = "\n".join(x.text for x in plan_report(result, name="t",
                                                 api_only_model="gpt-4o").lines)
    assert "Recommended: API-only on gpt-4o: $301 ± 2/month" in text
    assert "Cheapest self-hosted: 4 replicas (4 GPUs)" in text
    result.api_only = PointStats(api.point, [dict(r, m=2.0) for r in api.rows])
    assert plan_outcome(result) == "fleet"

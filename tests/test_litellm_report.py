"""The LiteLLM report (#22): intervals that stay in their range, units and the horizon
stated, and an incident plot that says where it looks when the outage is not in the run."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from rich.console import Console

from sim.cli import main
from sim.core.intervals import t975
from sim.report.litellm import (
    horizon_label,
    incident_window,
    render_litellm_summary,
    wilson_share_interval,
)

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "litellm-hybrid.yaml"

# ---------------------------------------------------------------- the share interval


@pytest.mark.parametrize("seed", range(20))
def test_wilson_interval_stays_in_range_and_holds_the_mean(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    shares = rng.beta(0.3, 30.0, n) * rng.integers(0, 2, n)  # many zeros, some outliers
    requests = float(rng.integers(1, 10**6)) * n
    low, high = wilson_share_interval(shares.mean(), shares.std(ddof=1), n, requests)
    assert 0.0 <= low <= shares.mean() <= high <= 1.0


def test_wilson_interval_of_a_share_that_is_zero_everywhere_has_an_upper_bound():
    """0 failures in N requests: [0, z^2 / (N + z^2)], not the zero-width [0, 0]."""
    n, requests = 4, 4 * 500_000
    low, high = wilson_share_interval(0.0, 0.0, n, requests)
    z = t975(n - 1)
    assert low == 0.0
    assert high == pytest.approx(z * z / (requests + z * z), rel=1e-12)


def test_wilson_interval_is_the_t_interval_far_from_the_bounds():
    """With many effective requests and a share far from 0 and 1, Wilson's interval is
    the t interval to first order (relative difference O(1/n_eff))."""
    mean, std, n = 0.3, 0.02, 10
    low, high = wilson_share_interval(mean, std, n, 10**7)
    half = t975(n - 1) * std / math.sqrt(n)
    assert low == pytest.approx(mean - half, rel=1e-2)
    assert high == pytest.approx(mean + half, rel=1e-2)


def test_wilson_interval_is_never_narrower_than_for_independent_requests():
    """The effective number of requests is at most the requests simulated."""
    requests = 1_000.0
    low, high = wilson_share_interval(0.02, 1e-9, 5, requests)  # (std ~ 0: n_eff capped)
    z = t975(4)
    p, m = 0.02, requests
    half = z / (1 + z * z / m) * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m))
    assert high - low == pytest.approx(2 * half, rel=1e-9)


@pytest.mark.parametrize("p_true", [0.05, 0.01])
def test_wilson_interval_covers_a_clustered_share_95_percent_of_the_time(p_true):
    """Failures that come in clusters (each replication's rate drawn from a Beta, then
    binomial requests): the interval covers the true share in 95% of 2000 trials, within
    3 binomial standard errors of the coverage estimate."""
    rng = np.random.default_rng(7)
    trials, n, requests, a = 2000, 10, 20_000, 20.0
    b = a * (1 - p_true) / p_true
    hits = 0
    for _ in range(trials):
        shares = rng.binomial(requests, rng.beta(a, b, n)) / requests
        low, high = wilson_share_interval(shares.mean(), shares.std(ddof=1), n, requests * n)
        hits += low <= p_true <= high
    assert abs(hits / trials - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / trials)


# ----------------------------------------------------------------------- the tables


def _stats() -> dict:
    """A summary as summarize writes it, with the t intervals of an older summary.json
    that reach below 0 (the bug of #22)."""
    def entry(mean, low, high, std=0.0, n=4):
        return {"mean": mean, "ci95_low": low, "ci95_high": high, "std": std, "n": n}
    stats = {
        "requests_arrived": entry(600_000, 590_000, 610_000, 6_000),
        "failure_share": entry(0.003, -0.002, 0.007, 0.003),
        "failed.no_deployment": entry(1_800, -500, 4_100, 1_400),
        "retry_rate": entry(0.01, -0.001, 0.021, 0.007),
        "fallback_rate": entry(0.0, 0.0, 0.0, 0.0),
        "overflow_share": entry(0.007, 0.001, 0.013, 0.004),
        "attempts_per_request": entry(1.0, 0.99, 1.01, 0.006),
        "ttft_s_p95": entry(0.149, 0.10, 0.195, 0.03),
        "retry_added_s_mean": entry(0.022, -0.010, 0.054, 0.02),
        "retry_added_s_p99": entry(0.0, 0.0, 0.0),
        "e2e_s_p50": entry(1.1, 1.0, 1.2), "e2e_s_p95": entry(4.9, 4.5, 5.3),
        "dep.vllm-a.share": entry(0.66, 0.6, 0.7), "dep.vllm-a.attempts": entry(4e5, 3e5, 5e5),
        "dep.vllm-a.cost_usd": entry(4738.0, 4738.0, 4738.0),
    }
    for layer in ("compute", "engineering", "infra", "api", "total", "api_only"):
        stats[f"cost.{layer}_usd"] = {**entry(1000.0, 900.0, 1100.0), "p5": 900.0, "p95": 1100.0}
    return stats


def _meta(horizon_s: float = 3 * 86400.0) -> dict:
    return {"name": "litellm-spiky-hybrid", "router_config": "spiky-hybrid.yaml",
            "routing_strategy": "simple-shuffle", "replications": 4, "seed": 11,
            "horizon_s": horizon_s, "notes": [],
            "deployments": [{"name": "vllm-a", "group": "llama-8b", "kind": "gpu",
                             "replicas": 2}]}


def _render(stats: dict, meta: dict) -> str:
    console = Console(width=200, record=True, force_terminal=False)
    render_litellm_summary(stats, meta, console)
    return console.export_text()


def test_no_interval_in_the_report_goes_below_zero():
    text = _render(_stats(), _meta())
    # every "(low to high)" interval: neither end negative
    for low, high in re.findall(r"\((\S+)[^()]*? to (\S+)[^()]*?\)", text):
        assert not low.startswith("-") and not high.startswith("-"), text
    failed = next(line for line in text.splitlines() if line.lstrip("│ ").startswith("failed"))
    lo, hi = wilson_share_interval(0.003, 0.003, 4, 600_000 * 4)
    assert f"0.3% ({100 * lo:.1f}% to {100 * hi:.1f}%)" in failed
    added = next(line for line in text.splitlines() if "added by retries (mean)" in line)
    assert "22 ms (0.0 ms to 54 ms)" in added  # cut at 0


def test_the_report_states_the_horizon_and_the_units():
    text = _render(_stats(), _meta(2 * 3600.0))
    assert "2-hour horizon" in text.splitlines()[0] + text.splitlines()[1]
    text = " ".join(text.split())  # (table titles wrap at the table's width)
    assert "Requests in the 2-hour horizon" in text
    assert "count per 2-hour horizon" in text
    assert "counts and time in cooldown per 2-hour horizon, cost per 30-day month" in text
    assert "cost (USD/month)" in text and "mean (USD/month)" in text
    assert "the 2-hour horizon's API spend scaled to 30 days" in text


@pytest.mark.parametrize("seconds, label", [(3 * 86400, "3-day"), (7200, "2-hour"),
                                            (5400, "1.5-hour"), (90, "1.5-minute"),
                                            (45, "45-second")])
def test_horizon_label(seconds, label):
    assert horizon_label(seconds) == label


# ------------------------------------------------------------------ the incident window


def _timeline(hours: float = 2.0, fail_at_s: float | None = None) -> pa.Table:
    rows = []
    for name in ("vllm-a", "openai-mini"):
        for t in np.arange(0.0, hours * 3600.0, 60.0):
            rows.append({"deployment": name, "bin_start_s": float(t), "ok": 10,
                         "rate_limit": 0, "timeout": 0,
                         "unavailable": 5 if fail_at_s == t and name == "vllm-a" else 0})
    return pa.Table.from_pylist(rows)


def test_window_around_an_outage_inside_the_horizon():
    w = incident_window([(5400.0, 6000.0), (9000.0, 9600.0)], _timeline())
    assert (w.start_s, w.end_s) == (5400.0 - 1200.0, 7200.0)  # cut at the horizon's end
    assert "first outage, day 0 01:30 to day 0 01:40" in w.why


def test_an_outage_after_the_horizon_is_named_and_the_window_stays_inside():
    late = (2 * 86400.0 + 36300.0, 2 * 86400.0 + 37500.0)
    w = incident_window([late], _timeline(fail_at_s=1800.0))
    assert 0.0 <= w.start_s < w.end_s <= 7200.0
    assert w.why.startswith("no outage inside the horizon (the first starts at day 2 10:05")
    assert "most failed attempts" in w.why
    quiet = incident_window([late], _timeline())
    assert (quiet.start_s, quiet.end_s) == (0.0, 3600.0)
    assert "no failed attempt in replication 0" in quiet.why


def test_capsim_run_warns_when_the_outages_lie_after_the_horizon(tmp_path):
    """litellm-hybrid's outages are on day 2: a 2-hour run says so, once per outage, and
    its incident plot says where it looks instead (never an empty plot without a word)."""
    out = tmp_path / "o"
    res = CliRunner().invoke(main, ["run", str(EXPERIMENT), "--set", "horizon=2h", "-n", "2",
                                    "-j", "1", "--out", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    late = [line for line in res.output.splitlines()
            if line.startswith("warning:") and "never happens" in line]
    assert len(late) == 2 and all("after the 2-hour horizon" in line for line in late)
    assert (out / "incident.png").stat().st_size > 10_000
    assert "2-hour horizon" in res.output
    for low, high in re.findall(r"\((\S+)[^()]*? to (\S+)[^()]*?\)", res.output):
        assert not low.startswith("-") and not high.startswith("-")

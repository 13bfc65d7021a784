"""Sequential replication (``--precision``, issue #22): replications are added in batches
while a decision-relevant 95% interval is too wide, up to a cap; the same seed gives the
same numbers whatever the workers."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import sim
from sim.cli import main
from sim.core.intervals import decision_scale, precise_enough
from sim.experiment.run import wide_metrics
from sim.study.plan import Slo, too_wide
from sim.study.sweep import Point, PointStats


def test_precise_enough_without_a_threshold_is_a_relative_half_width():
    assert precise_enough(100.0, 96.0, 104.0, 0.05)
    assert not precise_enough(100.0, 94.0, 106.0, 0.05)
    assert not precise_enough(100.0, math.nan, math.nan, 0.05)  # one replication
    assert precise_enough(math.nan, math.nan, math.nan, 0.05)  # undefined: more won't help


def test_precise_enough_with_a_threshold_is_the_decision():
    # decided (the interval lies on one side of the target): enough, however wide
    assert precise_enough(1.0, 0.2, 1.8, 0.05, threshold=2.0)
    assert precise_enough(3.0, 2.2, 3.8, 0.05, threshold=2.0)
    # open, and wider than 5% of the target: more replications
    assert not precise_enough(1.9, 1.7, 2.1, 0.05, threshold=2.0)
    # open but within 5% of the target: the mean is at the target
    assert precise_enough(1.99, 1.94, 2.04, 0.05, threshold=2.0)
    # a share target near 1 is judged against its distance to 1
    assert decision_scale(0.999, "share") == pytest.approx(0.001)
    assert not precise_enough(0.998, 0.996, 1.0, 0.05, threshold=0.999, kind="share")


def test_plan_wants_more_only_where_a_decision_is_open():
    slo = Slo("m", "<=", 2.0)
    wide = too_wide([slo], 0.05)

    def stats(values, costs):
        return PointStats(Point.of({"fleet.replicas": 2}), [
            {"replication": i, "m": v, "cost.total_usd": c}
            for i, (v, c) in enumerate(zip(values, costs, strict=True))])
    assert wide(stats([1.8, 2.2, 2.0], [100, 100, 100])) == ["m"]
    assert wide(stats([5.0, 5.1, 5.2], [50, 150, 100])) == []  # clearly missed: cost moot
    assert wide(stats([1.0, 1.01, 1.02], [50, 150, 100])) == ["cost.total_usd"]
    assert wide(stats([1.0, 1.01, 1.02], [100, 101, 102])) == []


@pytest.fixture(scope="module")
def sequential_runs():
    exp = sim.load_experiment("default", ["horizon=2h"], replications=2)
    a = sim.run(exp, workers=1, precision=0.05, max_replications=8)
    b = sim.run(exp, workers=2, precision=0.05, max_replications=8)
    return exp, a, b


def test_sequential_replication_adds_batches_up_to_the_cap(sequential_runs):
    exp, a, _ = sequential_runs
    n = len(a.replications)
    assert n in (2, 4, 6, 8)  # batches of the starting 2
    assert [r.index for r in a.replications] == list(range(n))
    assert a.summary["replications"] == n
    left = wide_metrics(a.metrics, a.experiment, 0.05)
    if n < 8:  # stopped early: because every decision-relevant interval is tight
        assert left == []
    first = sim.run(exp, workers=1)  # the first batch alone is too wide, or it stopped
    assert n == 2 or wide_metrics(first.metrics, exp, 0.05)
    assert any("Sequential replication (--precision 5%)" in x for x in a.summary["meta"][
        "notes"])


def test_sequential_replication_is_reproducible(sequential_runs):
    _, a, b = sequential_runs
    assert a.runs.to_pandas().equals(b.runs.to_pandas())


def test_capsim_run_precision_option(tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["run", "--set", "horizon=2h", "-n", "2", "--precision",
                                    "5%", "--max-replications", "4", "--no-plots", "--out",
                                    str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert pq.read_table(out / "runs.parquet").num_rows in (2, 4)
    bad = CliRunner().invoke(main, ["run", "--precision", "150%"])
    assert bad.exit_code == 2 and "--precision" in bad.output

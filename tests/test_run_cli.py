"""`capsim run` end to end: files, reproducibility, JSON, errors, interruption."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from sim.cli import main
from sim.core.loader import builtin_dir
from tests.procs import default_sigint, wait_for_children

SMALL = ["--set", "horizon=1d", "-n", "3", "--no-plots"]


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def test_run_writes_readable_results(tmp_path):
    out = tmp_path / "r"
    res = run_cli("--set", "horizon=1d", "-n", "2", "--out", str(out), "--requests")
    assert res.exit_code == 0, res.output
    runs = pq.read_table(out / "runs.parquet")
    assert runs.num_rows == 2
    for col in ("cost.total_usd", "cost.api_only_usd", "interactive.ttft_p99_s",
                "overflow_share", "gpu_utilization", "input.usd_per_gpu_hour"):
        assert col in runs.column_names
    ts = pq.read_table(out / "timeseries.parquet")
    assert ts.num_rows == 2 * 288  # 5-minute bins over a day, per replication
    req = pq.read_table(out / "requests.parquet")
    assert req.num_rows == sum(runs.column("requests_arrived").to_pylist())
    outcomes = set(req.column("outcome").to_pylist())
    assert outcomes <= {"gpu", "api", "failed"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 7 and summary["replications"] == 2
    m = summary["metrics"]["cost.total_usd"]
    assert m["ci95_low"] <= m["mean"] <= m["ci95_high"]
    for png in ("day_profile.png", "ttft_cdf.png", "cost_breakdown.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Monthly cost" in res.output


def test_same_seed_gives_identical_runs_whatever_the_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert run_cli(*SMALL, "--out", str(a), "-j", "1").exit_code == 0
    assert run_cli(*SMALL, "--out", str(b), "-j", "2").exit_code == 0
    assert run_cli(*SMALL, "--out", str(c), "-j", "2", "--set", "seed=8").exit_code == 0
    ta, tb = (pq.read_table(d / "runs.parquet").to_pandas() for d in (a, b))
    assert ta.equals(tb)  # bit-identical (pandas treats NaN == NaN here)
    assert not ta.equals(pq.read_table(c / "runs.parquet").to_pandas())


def test_json_summary_on_stdout(tmp_path):
    res = run_cli(*SMALL, "--out", str(tmp_path / "j"), "--json")
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["metrics"]["requests_arrived"]["n"] == 3


@pytest.mark.parametrize("override,needle", [
    ("fleet.replicas=-1", "fleet.replicas"),
    ("fleet.profile=nope", "unknown gpu profile"),
    ("horizon=soon", "horizon"),
    ("router.polcy=x", "did you mean 'policy'"),
    # too large to build: refused at load, not a MemoryError or OverflowError later
    ("fleet.replicas=100000000000000000000", "fleet.replicas: Input should be less than"),
    ("horizon=1.0e+20", "at most 3650 days"),
    ("output.timeseries_bin_s=0.001", "bins over the horizon"),
    ("workload.streams.0.arrivals.mean_rate_per_s=1.0e+9", "requests per replication"),
    ("api.gpt-4o.rpm=yes", "api.gpt-4o.rpm: expected a number, not true/false"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, override, needle):
    res = CliRunner().invoke(main, ["run", "--set", override, "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.output
    assert not (tmp_path / "x").exists()


def test_a_broken_variant_is_an_error_for_run_too(tmp_path):
    """The whole file is validated on load: variants are only run by `capsim compare`,
    but a broken one fails `capsim run` as well, naming it."""
    exp = tmp_path / "exp.yaml"
    data = yaml.safe_load((builtin_dir("experiments") / "default.yaml").read_text())
    data["variants"] = {"bigger": {"fleet.replicas": 2}, "broken": {"fleet.replicas": -3}}
    exp.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(main, ["run", str(exp), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "fleet.replicas: variant 'broken':" in lines[0], lines
    assert not (tmp_path / "x").exists()


def test_missing_experiment_file(tmp_path):
    res = CliRunner().invoke(main, ["run", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "file not found" in res.output
    (tmp_path / "folder.yaml").mkdir()
    res = CliRunner().invoke(main, ["run", str(tmp_path / "folder.yaml")])
    assert res.exit_code == 2 and "folder.yaml: a folder, not a file" in res.output


def test_interrupted_run_leaves_no_half_written_results(tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "run", "--set", "horizon=30d", "-n", "6", "-j", "2",
         "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1], preexec_fn=default_sigint)
    assert wait_for_children(proc.pid), "the run never started its workers"
    time.sleep(1.0)  # the replications are under way
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial*"))

"""The README's "Calibrate from your own benchmark" example, run as written (shorter run).

The benchmark is real: llmperf-bench's TGI 2.0.1 concurrency sweep of Llama-3-8B-Instruct
on one 24 GB GPU (tests/data/bench/README.md: source and MIT licence). The commands are the
README's: the first fit is refused in one line (one prompt length cannot separate decode
attention from the token-proportional cost), fitting the step cost too drives it to its
bound (lengths vary within each load point, so these measurements do not separate it from
the token table), so the worked example fits the token table and the overheads and writes
the token table's spread as step_time.uncertainty, and a run with the fitted profile draws
the step time per replication, which `--set uncertainty.profile=false` turns off (same traffic).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from sim.cli import main
from sim.profiles.steptime import StepUncertainty

BENCH = Path(__file__).parent / "data" / "bench" / "llmperf-bench_llama3-8b_tgi_results.json"

EXPERIMENT = """\
name: chat-a10g-fitted
horizon: 1d
replications: 10
seed: 7
workload:
  streams:
    - name: chat
      class: interactive
      arrivals: {kind: diurnal, mean_rate_per_s: 0.25, peak_hour: 14, peak_to_trough: 4}
      input_tokens: {kind: lognormal, mean: 600, sigma: 0.5, max: 4000}
      output_tokens: {kind: lognormal, mean: 175, sigma: 0.5, max: 1000}
      slo: {ttft_s: 2.0}
fleet: {profile: llama3-8b-a10g-tgi.yaml, replicas: 2}
overflow:
  interactive: {when: never}
costs: {pricing: on_demand}
"""


def _fit(args: list[str]):
    return CliRunner().invoke(main, ["profile", "fit", str(BENCH), "--model", "llama-3.1-8b",
                                     "--gpu", "a10g", "--tp", "1", *args])


def test_the_worked_example_runs_as_the_readme_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused = _fit(["-o", "llama3-8b-a10g-tgi.yaml"])
    assert refused.exit_code == 2
    line = refused.output.strip()
    assert "\n" not in line and "(decode_attention_s_per_token) is not identified" in line
    assert "--fit-params linear_scale,per_step_s,pre_s,post_s" in line
    assert not Path("llama3-8b-a10g-tgi.yaml").exists()

    fitted = _fit(["--fit-params", "linear_scale,pre_s,post_s", "-o", "llama3-8b-a10g-tgi.yaml"])
    assert fitted.exit_code == 0, fitted.output
    rows = [ln for ln in fitted.output.splitlines() if "[concurrency=" in ln]
    assert len(rows) == 8 * 3  # 8 load points x (TTFT, TPOT, E2E)
    doc = yaml.safe_load(Path("llama3-8b-a10g-tgi.yaml").read_text())
    unc = StepUncertainty.model_validate(doc["step_time"]["uncertainty"])
    assert set(unc.terms) == {"linear_s"}  # the overheads are held: one prompt length
    assert 0 < unc.terms["linear_s"] < 0.5
    assert not any(ln.split()[:1] == ["per_step_s"] for ln in fitted.output.splitlines())
    # the derived A10G profile was too slow in TPOT at every load point: the fit speeds it up
    scale = next(ln.split() for ln in fitted.output.splitlines()
                 if ln.split()[:1] == ["linear_scale"])
    assert 0 < float(scale[1]) < 1

    Path("chat-a10g.yaml").write_text(EXPERIMENT)
    short = ["--set", "horizon=3h", "-n", "4", "--no-plots"]
    drawn = CliRunner().invoke(main, ["run", "chat-a10g.yaml", *short, "--out", "drawn"])
    assert drawn.exit_code == 0, drawn.output
    assert "Profile uncertainty is in these intervals" in " ".join(drawn.output.split())
    fixed = CliRunner().invoke(main, ["run", "chat-a10g.yaml", *short, "--out", "fixed",
                                      "--set", "uncertainty.profile=false"])
    assert fixed.exit_code == 0, fixed.output
    assert "Profile uncertainty" not in fixed.output
    a = pq.read_table("drawn/runs.parquet").to_pydict()
    b = pq.read_table("fixed/runs.parquet").to_pydict()
    assert "input.profile.linear_s_factor" in a and "input.profile.linear_s_factor" not in b
    assert len(set(a["input.profile.linear_s_factor"])) == 4
    assert a["requests_arrived"] == b["requests_arrived"]  # the same traffic
    assert a["interactive.e2e_mean_s"] != pytest.approx(b["interactive.e2e_mean_s"])

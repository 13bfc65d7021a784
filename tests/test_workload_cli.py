"""The `capsim workload` commands (sim.cli.workload)."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from sim.cli.workload import workload_group
from sim.core.loader import builtin_dir
from sim.workload.streams import parse_workload

SHIPPED_AZURE = builtin_dir("workloads") / "data" / "AzureLLMInferenceTrace_conv.csv"


def run(*args: str):
    return CliRunner().invoke(workload_group, list(args))


def test_show_builtin_by_default_and_explicitly():
    implicit = run("steady", "--horizon", "6h", "--seed", "1")
    assert implicit.exit_code == 0, implicit.output
    for words in ("workload steady", "by hour of day", "p99", "class mix", "interactive",
                  "tokens per 30-day month"):
        assert words in implicit.stdout
    explicit = run("show", "steady", "--horizon", "6h", "--seed", "1")
    assert explicit.stdout == implicit.stdout


def test_show_experiment_file_uses_its_horizon_and_seed(tmp_path):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"workload": "nightly-batch", "horizon": "2d", "seed": 4,
                                   "fleet": {"ignored": True}}))
    result = run(str(exp))
    assert result.exit_code == 0, result.output
    assert "2d, 40,000 requests" in result.stdout and "batch" in result.stdout
    assert "1d, 20,000 requests" in run(str(exp), "--horizon", "1d").stdout


def test_show_workload_file_and_plot(tmp_path):
    wl = tmp_path / "w.yaml"
    wl.write_text(yaml.safe_dump([{"name": "a", "arrivals": {"kind": "poisson", "rate_per_s": 1},
                                   "input_tokens": {"kind": "fixed", "value": 3},
                                   "output_tokens": {"kind": "fixed", "value": 4}}]))
    png = tmp_path / "out.png"
    result = run(str(wl), "--horizon", "3h", "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert "workload w" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def assert_fails_one_line(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_exits_2_with_one_line(tmp_path):
    assert_fails_one_line(run("stedy"), "unknown workload 'stedy'", "steady")
    assert_fails_one_line(run("steady", "--horizon", "7x"), "--horizon", "7x")
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"workload": [{"name": "a", "arrivals": {
        "kind": "poisson", "rate_per_s": 0}}], "horizon": "1d"}))
    assert_fails_one_line(run(str(exp)), str(exp), "workload[0].arrivals.rate_per_s")
    exp.write_text(yaml.safe_dump({"workload": "steady", "horizon": "soon"}))
    assert_fails_one_line(run(str(exp)), str(exp), "horizon", "soon")
    assert_fails_one_line(run("fit", str(tmp_path / "none.csv")), "none.csv", "not found")
    # work that would not end (or not fit in memory) is refused before it starts
    assert_fails_one_line(run("steady", "--horizon", "100000d"), "--horizon", "3650 days")
    exp.write_text(yaml.safe_dump({"workload": [{"name": "a", "arrivals": {
        "kind": "poisson", "rate_per_s": 1e7}, "input_tokens": {"kind": "fixed", "value": 1},
        "output_tokens": {"kind": "fixed", "value": 1}}], "horizon": "30d"}))
    assert_fails_one_line(run(str(exp)), str(exp), "workload", "requests per replication")


def test_fit_prints_or_writes_a_loadable_workload(tmp_path):
    printed = run("fit", str(SHIPPED_AZURE))
    assert printed.exit_code == 0, printed.output
    assert printed.stdout.startswith("# Fitted by")
    fitted = parse_workload(yaml.safe_load(printed.stdout))
    assert fitted.streams[0].arrivals.kind == "poisson"
    out = tmp_path / "fit.yaml"
    written = run("fit", str(SHIPPED_AZURE), "-o", str(out))
    assert written.exit_code == 0 and written.stdout == ""
    assert parse_workload(str(out)).streams == fitted.streams
    shown = run(str(out), "--horizon", "1h")
    assert shown.exit_code == 0 and "AzureLLMInferenceTrace_conv-fit" in shown.stdout

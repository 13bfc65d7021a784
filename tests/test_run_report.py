"""`capsim run`'s report (issue #22): every number in full at 80 and 200 columns and when
piped, units in every header, a verdict that names SLOs, failures, overflow and the API-only
model, strict JSON files, and report.json/report.html in the results folder."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

import sim
from sim.cli import main
from sim.report.document import format_cell, render_terminal
from sim.report.run_report import build_run_report


def _raise(const: str) -> None:
    raise ValueError(f"non-strict JSON constant {const}")


@pytest.fixture(scope="module")
def hybrid():
    exp = sim.load_experiment("default", ["horizon=6h"], replications=3)
    return sim.run(exp, workers=1)


@pytest.fixture(scope="module")
def no_gpus():
    exp = sim.load_experiment("default", ["horizon=6h", "fleet.replicas=0"], replications=3)
    return sim.run(exp, workers=1)


def _numbers(report) -> list[str]:
    return [format_cell(row.get(c.key), c.kind) for t in report.tables for row in t.rows
            for c in t.columns if c.numeric]


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("width,tty", [(80, True), (200, True), (80, False), (200, False)])
def test_every_number_of_a_real_run_is_whole(hybrid, width, tty):
    report = hybrid.report
    console = Console(width=width, record=True, force_terminal=tty, color_system=None)
    render_terminal(report, console, tty=tty)
    out = console.export_text()
    assert "…" not in out
    for cell in _numbers(report):
        assert cell in out, (cell, width, tty)
    for line in report.lines:
        assert _squash(line.text) in _squash(out)
    if tty:
        assert max(len(x.rstrip()) for x in out.splitlines()) <= width
    else:
        for line in report.lines:  # piped: each line whole, on one line
            assert line.text in out.splitlines() or line.text.strip() in (
                x.strip() for x in out.splitlines())


def test_every_numeric_header_states_its_unit(hybrid, no_gpus):
    for result in (hybrid, no_gpus):
        for table in result.report.tables:
            for col in table.columns:
                if col.numeric:
                    assert col.unit_text, (table.key, col.key)


def test_the_verdict_names_slos_overflow_and_the_api_only_model(hybrid):
    verdict = [x.text for x in hybrid.report.lines]
    text = "\n".join(verdict)
    meta = hybrid.summary["meta"]
    assert meta["api_only_model"] == "gpt-4o"
    assert meta["slos"]["interactive"] == {"ttft_s": 2.0}
    assert "interactive SLO (TTFT <= 2s): met by" in text
    assert re.search(r"batch SLO \(deadline <= 6h\): met by .*: (MET|MISSED|UNDECIDED)", text)
    assert "Overflow: " in text and "API-only on gpt-4o" in text
    assert "(the API)" not in text and "1 GPUs" not in text
    # the price per GPU-hour actually used
    assert re.search(r"\$\d+\.\d\d to \$\d+\.\d\d per GPU-hour", text)
    att = hybrid.metrics["interactive.slo_attainment"]
    if att["ci95_high"] < 0.99:  # a missed SLO says what to change
        assert "To meet the interactive SLO: add replicas" in text


def test_a_run_that_fails_requests_is_never_no_clear_difference(no_gpus):
    report = no_gpus.report
    text = "\n".join(x.text for x in report.lines)
    fail = no_gpus.metrics["failure_share"]["mean"]
    assert fail > 0.5
    assert "no clear difference" not in text
    assert re.search(r"Failures: [\d.]+ ± [\d.]+% of requests failed \(no_capacity", text)
    assert "fails requests" in text
    assert "GPUs: none in the fleet" in text and "0 GPUs" in text
    assert any(t.key == "failures" for t in report.tables)
    assert any(x.level == "bad" and x.text.startswith("Failures") for x in report.lines)


def test_results_folder_holds_strict_json_and_the_reports(no_gpus, tmp_path):
    out = no_gpus.write(tmp_path / "r", plots=False)
    text = (out / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text, parse_constant=_raise)
    assert summary["metrics"]["gpu_utilization"]["mean"] is None  # no GPUs: null
    report = json.loads((out / "report.json").read_text(), parse_constant=_raise)
    assert report["command"] == "run" and "service" in report["tables"]
    page = (out / "report.html").read_text()
    assert "Verdict" in page and "API-only on gpt-4o" in page
    meta = summary["meta"]
    assert meta["usd_per_gpu_hour"] == {"low": 2.5, "high": 3.5, "mode": None} or \
        isinstance(meta["usd_per_gpu_hour"], float | dict)
    assert meta["api_only_model"] == "gpt-4o" and "interactive" in meta["slos"]


@pytest.mark.parametrize("columns", ["80", "200"])
def test_capsim_run_piped_prints_every_line_whole(tmp_path, columns):
    out = tmp_path / "r"
    res = CliRunner(env={"COLUMNS": columns}).invoke(
        main, ["run", "--set", "horizon=6h", "-n", "2", "--no-plots", "--out", str(out)],
        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    lines = res.output.splitlines()
    assert any(x.startswith("Cost: ") and x.rstrip().endswith("tokens/month.")
               for x in lines)  # one whole line, not wrapped at COLUMNS
    summary = json.loads((out / "summary.json").read_text(), parse_constant=_raise)
    report = build_run_report(
        {k: {p: (float("nan") if v is None else v) for p, v in e.items()}
         for k, e in summary["metrics"].items()}, summary["meta"])
    for cell in _numbers(report):
        assert cell in res.output


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
def test_capsim_run_formats(tmp_path, fmt):
    res = CliRunner().invoke(main, ["run", "--set", "horizon=6h", "-n", "2", "--no-plots",
                                    "--out", str(tmp_path / "r"), "--format", fmt],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    if fmt == "json":
        doc = json.loads(res.stdout, parse_constant=_raise)
        assert doc["command"] == "run" and doc["data"]["verdict"]
    elif fmt == "csv":
        assert res.stdout.startswith("table,row,label,column,unit,value,ci95_low,ci95_high")
    else:
        assert "| Class | Requests (/month) |" in res.stdout

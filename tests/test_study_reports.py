"""The reports of sweep, plan, breakeven and compare (issue #22): --format on every command,
failures in every table, strict JSON, report.json and report.html in every folder; the
command line's discoverability (list, report, --version, --help of every command)."""

from __future__ import annotations

import csv
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from sim.cli import main
from sim.cli.listing import KINDS
from sim.report.document import format_cell, from_dict, render_terminal

ROOT = Path(__file__).resolve().parents[1]


def _raise(const: str) -> None:
    raise ValueError(f"non-strict JSON constant {const}")


def _invoke(*args: str, env: dict | None = None):
    return CliRunner(env=env).invoke(main, list(args), catch_exceptions=False)


def _cells(doc: dict) -> list[str]:
    report = from_dict(doc)
    return [format_cell(row.get(c.key), c.kind) for t in report.tables for row in t.rows
            for c in t.columns if c.numeric]


def _whole_at_80(folder: Path) -> None:
    """The folder's report printed on an 80-column terminal holds every number whole."""
    doc = json.loads((folder / "report.json").read_text(), parse_constant=_raise)
    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    render_terminal(from_dict(doc), console, tty=True)
    out = console.export_text()
    assert "…" not in out and max(len(x.rstrip()) for x in out.splitlines()) <= 80
    for cell in _cells(doc):
        assert cell in out


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sweep") / "s"
    res = _invoke("sweep", "--set", "horizon=2h", "-n", "2", "--grid", "fleet.replicas=0,1",
                  "--out", str(out), "-j", "1", "--no-plots", env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    return out, res.output


def test_sweep_names_the_points_that_fail_and_prints_them_in_full(sweep_folder):
    out, output = sweep_folder
    doc = json.loads((out / "report.json").read_text(), parse_constant=_raise)
    rows = doc["tables"]["points"]["rows"]
    failed = {r["grid.fleet.replicas"]: r["failed"] for r in rows}
    assert failed["0"]["mean"] > 0.5  # no GPUs: the batch class fails
    k = sum(1 for f in failed.values() if f["mean"] > 0)
    assert f"{k} of 2 points fail requests (worst:" in output
    assert "Failed (%)" in output and "…" not in output
    for cell in _cells(doc):  # piped: every number whole
        assert cell in output
    assert (out / "report.html").is_file()
    _whole_at_80(out)


@pytest.mark.parametrize("fmt", ["json", "csv", "markdown"])
def test_sweep_formats(sweep_folder, fmt):
    out, _ = sweep_folder  # resumes: every run is on disk
    res = _invoke("sweep", "--set", "horizon=2h", "-n", "2", "--grid", "fleet.replicas=0,1",
                  "--out", str(out), "-j", "1", "--no-plots", "--format", fmt)
    assert res.exit_code == 0, res.output
    if fmt == "json":
        doc = json.loads(res.stdout, parse_constant=_raise)
        assert doc["command"] == "sweep" and "failed" in doc["tables"]["points"]["rows"][0]
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(res.stdout)))
        failed = [r for r in rows if r["column"] == "failed"]
        assert len(failed) == 2 and all(r["unit"] == "fraction" for r in failed)
        assert float(failed[0]["value"]) > 0.5
    else:
        assert ("| fleet.replicas | Runs ok (of runs) | Runs failed (of runs) | "
                "Cost (95% CI) ($/month) |") in res.stdout


def test_plan_evaluates_api_only_and_says_when_it_is_cheapest(tmp_path):
    out = tmp_path / "p"
    res = _invoke("plan", "--set", "horizon=2h", "-n", "3", "--slo",
                  "interactive.ttft_p99_s=30", "--over", "fleet.replicas=1..2", "--out",
                  str(out), "-j", "1", "--format", "json")
    doc = json.loads(res.stdout, parse_constant=_raise)
    rows = doc["tables"]["candidates"]["rows"]
    api = next(r for r in rows if r["role"] == "API-only")
    assert api["gpus"] == 0 and api["overflow"]["mean"] == 1.0
    text = "\n".join(x["text"] for x in doc["lines"])
    plan = json.loads((out / "plan.json").read_text(), parse_constant=_raise)
    api_cost = plan["api_only"]["metrics"]["cost.api_only_usd"]["mean"]
    best = plan["recommended"]
    if plan["api_only"]["feasible"] and (best is None or api_cost < best["metrics"][
            "cost.total_usd"]["mean"]):
        assert "Recommended: API-only on gpt-4o" in text
        assert "self-hosting does not pay" in text and res.exit_code == 0
    else:
        assert "Recommended: API-only" not in text
    assert (out / "report.html").is_file() and (out / "report.json").is_file()
    _whole_at_80(out)


def test_breakeven_writes_its_report(tmp_path):
    out = tmp_path / "b"
    res = _invoke("breakeven", "--set", "horizon=2h", "-n", "2", "--volume", "300M..3B",
                  "--points", "2", "--replicas", "1..2", "--out", str(out), "-j", "1",
                  "--format", "markdown")
    assert res.exit_code == 0, res.output
    assert "| Volume (tokens/month) | API-only ($/month) |" in res.stdout
    assert "Hybrid failed (%)" in res.stdout
    assert (out / "report.html").is_file()
    _whole_at_80(out)
    res = _invoke("breakeven", "--static", "--format", "json")
    assert res.exit_code == 0 and json.loads(res.stdout, parse_constant=_raise)["data"]


def test_compare_writes_its_report_and_names_failures(tmp_path):
    out = tmp_path / "c"
    res = _invoke("compare", "fleet-dynamics", "--set", "horizon=2h", "-n", "2", "--variant",
                  "peak-fixed", "--variant", "trough-hybrid", "--out", str(out), "-j", "1",
                  "--no-plots", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{"):], parse_constant=_raise)
    cols = [c["key"] for c in doc["tables"]["variants"]["columns"]]
    assert "failed" in cols and "delta" in cols
    assert json.loads((out / "comparison.json").read_text(), parse_constant=_raise)
    assert (out / "report.html").is_file()
    _whole_at_80(out)


# ------------------------------------------------------------------ discoverability


def test_python_m_sim_cli_help_lists_every_command_and_version_works():
    res = subprocess.run([sys.executable, "-m", "sim.cli", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0
    for cmd in ("run", "sweep", "plan", "breakeven", "compare", "workload", "profile",
                "list", "report"):
        assert f"\n  {cmd} " in res.stdout, cmd
    version = _invoke("--version")
    assert version.exit_code == 0 and "version" in version.output


def _examples(help_text: str) -> list[str]:
    """The example command lines of a --help text (continuations joined)."""
    lines, out, cont = help_text.splitlines(), [], ""
    for line in lines:
        s = line.strip()
        if cont:
            cont += " " + s.rstrip("\\").strip()
            if not s.endswith("\\"):
                out.append(cont)
                cont = ""
        elif s.startswith("capsim "):
            if s.endswith("\\"):
                cont = s.rstrip("\\").strip()
            else:
                out.append(s)
    return out


COMMANDS = [["run"], ["sweep"], ["plan"], ["breakeven"], ["compare"], ["list"], ["report"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_every_help_has_shell_safe_examples(cmd):
    res = _invoke(*cmd, "--help")
    assert res.exit_code == 0
    examples = _examples(res.output)
    assert examples, f"capsim {' '.join(cmd)} --help has no example"
    for ex in examples:
        lex = shlex.shlex(ex, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        tokens = list(lex)
        for i, tok in enumerate(tokens):
            if set(tok) <= set("<>|;&()"):  # an operator the shell would act on
                # only a final "> FILE" redirection is meant; an unquoted >= or <= is not
                assert tok == ">" and i == len(tokens) - 2, (ex, tok)
        args = tokens[1:tokens.index(">")] if ">" in tokens else tokens[1:]
        parsed = _invoke(*args, "--help")  # click accepts the options as written
        assert parsed.exit_code == 0, (ex, parsed.output)


@pytest.mark.parametrize("kind", KINDS)
def test_capsim_list(kind):
    res = _invoke("list", kind, "--format", "json")
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout, parse_constant=_raise)["data"]["items"]
    assert items and all(i["name"] for i in items)
    if kind in ("experiments", "workloads", "profiles"):
        assert all(i["description"] and i["description"] != "-" for i in items)
    if kind == "apis":
        assert any(i["name"] == "gpt-4o" for i in items)
    table = _invoke("list", kind)
    assert table.exit_code == 0 and items[0]["name"] in table.output


def test_capsim_report_reprints_a_run_folder(tmp_path):
    out = tmp_path / "r"
    res = _invoke("run", "--set", "horizon=1h", "-n", "2", "--out", str(out), "--no-plots")
    assert res.exit_code == 0, res.output
    (out / "report.html").unlink()
    again = _invoke("report", str(out))
    assert again.exit_code == 0, again.output
    assert "Verdict" in again.output and (out / "report.html").is_file()
    md = _invoke("report", str(out), "--format", "markdown", "--no-html")
    assert md.stdout.startswith("# capsim run:")
    bad = _invoke("report", str(tmp_path / "nope"))
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1


def test_no_command_says_1_gpus(sweep_folder):
    from sim.report.run_report import _gpus_text
    from sim.study.reports import _gpus_text as study_gpus
    assert _gpus_text(1) == "1 GPU" and study_gpus(1.0) == "1 GPU"
    assert _gpus_text(2) == "2 GPUs"
    out, output = sweep_folder
    assert "1 GPUs" not in output

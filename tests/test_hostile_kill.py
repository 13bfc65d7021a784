"""SIGKILL while results are written (issue #23): a rerun leaves the old or the new
results whole and no partial folder, for ``run``, ``sweep`` and ``plan``.

Each test starts the real command in a subprocess, kills it (SIGKILL: no cleanup runs)
at a random moment of its run -- drawn from a seeded generator over the time an
unkilled run takes, so some kills land while the folder is written -- and then checks
what is on disk, reruns the command and checks again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tests.fuzz.corpus import base_experiment

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "COLUMNS": "120", "PYTHONPATH": str(REPO)}


def _capsim(*args: str) -> list[str]:
    return [sys.executable, "-m", "sim.cli", *args]


def _kill_at(cmd: list[str], cwd: Path, delay_s: float) -> int | None:
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None
    return proc.returncode


def _timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.perf_counter() - t0


def _no_leftovers(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    assert not left, left


def _whole_run(out: Path) -> int:
    """The seed of the complete results folder ``out`` (every file readable)."""
    summary = json.loads((out / "summary.json").read_text())
    pq.read_table(out / "runs.parquet")
    pq.read_table(out / "timeseries.parquet")
    return int(summary["seed"])


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    exp = base_experiment()
    exp["replications"] = 2
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))
    return tmp_path / "exp.yaml"


def test_sigkill_while_writing_a_run(tmp_path: Path, experiment: Path) -> None:
    rng = np.random.default_rng(23)
    run = _capsim("run", "exp.yaml", "-j1", "--out", "out", "--overwrite")
    full_s = _timed([*run, "--set", "seed=1"], tmp_path)
    assert _whole_run(tmp_path / "out") == 1
    for k, delay in enumerate(rng.uniform(0.6 * full_s, 1.1 * full_s, size=3), start=2):
        code = _kill_at([*run, "--set", f"seed={k}"], tmp_path, float(delay))
        if (tmp_path / "out").exists() or code is None:
            # killed (or done): the folder is the previous results or the new ones, whole
            assert _whole_run(tmp_path / "out") in (k - 1, k)
        _timed([*run, "--set", f"seed={k}"], tmp_path)  # the rerun
        assert _whole_run(tmp_path / "out") == k
        _no_leftovers(tmp_path)


@pytest.mark.parametrize("command", ["sweep", "plan"])
def test_sigkill_during_a_study_then_resume(tmp_path: Path, experiment: Path,
                                            command: str) -> None:
    rng = np.random.default_rng(7)
    args = (["sweep", "exp.yaml", "--grid", "fleet.replicas=1..3"] if command == "sweep" else
            ["plan", "exp.yaml", "--slo", "interactive.ttft_p99_s<=30", "--over",
             "fleet.replicas=1..3"])
    cmd = _capsim(*args, "-j1", "--no-plots" if command == "sweep" else "--svg",
                  "--out", "study")
    full_s = _timed(cmd, tmp_path)
    reference = _result(tmp_path / "study", command)
    for delay in rng.uniform(0.5 * full_s, 1.0 * full_s, size=2):
        subprocess.run(["rm", "-rf", str(tmp_path / "study")], check=True)
        _kill_at(cmd, tmp_path, float(delay))
        _timed(cmd, tmp_path)  # resume
        assert _result(tmp_path / "study", command) == reference
        assert not list((tmp_path / "study").rglob("*.tmp"))
        _no_leftovers(tmp_path)


def _result(folder: Path, command: str) -> object:
    """What the study found, read whole: the sweep's summary rows, the plan's answer."""
    if command == "sweep":
        table = pq.read_table(folder / "summary.parquet")
        return (table.num_rows, sorted(table.column_names))
    plan = json.loads((folder / "plan.json").read_text())
    return sorted(plan)

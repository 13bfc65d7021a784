"""`capsim sweep`: grid syntax, common random numbers, executors, failures, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import sim.study.sweep
from sim.cli import main
from sim.core.errors import ConfigError
from sim.core.executors import SerialExecutor, bounded_map, open_executor
from sim.study.sweep import (
    Point,
    RunProgress,
    parse_grid,
    parse_values,
    prepare_sweep,
    read_runs,
    run_sweep,
)
from tests.procs import default_sigint

TINY = """\
name: tiny-sweep
horizon: {horizon}
replications: 2
seed: 11
workload:
  streams:
    - name: chat
      class: interactive
      arrivals: {{kind: poisson, rate_per_s: {rate}}}
      input_tokens: {{kind: lognormal, mean: 400, sigma: 0.5, max: 4000}}
      output_tokens: {{kind: lognormal, mean: 150, sigma: 0.5, max: 2000}}
      slo: {{ttft_s: 2.0}}
fleet: {{profile: llama-8b-1xa10g, replicas: 1}}
overflow:
  interactive: {{when: wait_exceeds, threshold_s: 1.0, to: gpt-4o}}
costs: {{usd_per_gpu_hour: {{low: 1.0, high: 1.5}}, engineering_fte: 0.1,
        infra_usd_per_month: 100}}
"""
SMALL_GRID = ["fleet.replicas=1..2", "overflow.interactive.threshold_s=0.5,1"]
# Long enough to interrupt mid-way: 8 points x 2 replications of ~0.4 s each.
KILL_GRID = ["fleet.replicas=1..4", "overflow.interactive.threshold_s=0.5,2"]
KILL_RUNS = 16


def write_tiny(folder: Path, *, horizon: str = "2h", rate: float = 2.0) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(TINY.format(horizon=horizon, rate=rate))
    return path


def sweep_into(exp: Path, out: Path, grid: list[str], *, kind: str = "local",
               workers: int = 2, **kwargs):
    sweep = prepare_sweep(str(exp), grid=grid)
    with open_executor(kind, workers=workers) as pool:
        return run_sweep(sweep, out, pool, max_in_flight=2 * workers, **kwargs)


def sorted_rows(folder: Path) -> list[dict]:
    rows = read_runs(folder / "runs").to_pylist()
    return sorted(rows, key=lambda r: (r["point_id"], r["replication"]))


def same_rows(a: list[dict], b: list[dict]) -> bool:
    """Equal row by row, NaN equal to NaN (bit-identical floats otherwise)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        if ra.keys() != rb.keys():
            return False
        for key, va in ra.items():
            vb = rb[key]
            if va != vb and not (va != va and vb != vb):  # NaN != NaN
                return False
    return True


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep of KILL_GRID (the values interrupted sweeps must match)."""
    folder = tmp_path_factory.mktemp("reference")
    exp = write_tiny(folder, horizon="3h", rate=3.0)
    outcome = sweep_into(exp, folder / "out", KILL_GRID)
    return exp, folder / "out", outcome


# ------------------------------------------------------------------------------ grid


def test_grid_values_ranges_steps_and_lists():
    assert parse_values("2..5", field="f") == [2, 3, 4, 5]
    assert parse_values("2..16:4", field="f") == [2, 6, 10, 14]
    assert parse_values("0.5,1,2", field="f") == [0.5, 1, 2]
    assert parse_values("llama-8b-1xa10g, llama-8b-1xh100", field="f") == [
        "llama-8b-1xa10g", "llama-8b-1xh100"]
    for bad in ("5..2", "1..x", "1..4:0", "1,,2", "1...3"):
        with pytest.raises(ConfigError):
            parse_values(bad, field="f")


def test_grid_from_file_with_command_line_winning_per_field():
    grid = parse_grid(["fleet.replicas=3"],
                      {"fleet.replicas": "1..2", "overflow.interactive.threshold_s": [0.5, 1]})
    assert grid == {"fleet.replicas": [3], "overflow.interactive.threshold_s": [0.5, 1]}
    for bad in (["fleet.replicas"], ["=1,2"], ["replications=1..3"], ["a b=1"]):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def test_experiment_grid_section_is_used(tmp_path):
    exp = write_tiny(tmp_path)
    text = exp.read_text() + "grid:\n  fleet.replicas: 1..3\n  workload.scale: [1, 2]\n"
    exp.write_text(text)
    sweep = prepare_sweep(str(exp), grid=["workload.scale=0.5"])
    assert [p.label for p in sweep.points] == [
        f"fleet.replicas={r}, workload.scale=0.5" for r in (1, 2, 3)]


def test_point_ids_are_stable_hashes_of_the_overrides():
    a = Point.of({"fleet.replicas": 2, "overflow.interactive.threshold_s": 0.5})
    b = Point.of({"overflow.interactive.threshold_s": 0.5, "fleet.replicas": 2})
    assert a.id == b.id and len(a.id) == 12
    assert a.id != Point.of({"fleet.replicas": 3}).id


@pytest.mark.parametrize(("grid", "needle"), [
    ("fleet.replicass=1,2", "did you mean 'replicas'"),
    ("fleet.replicas=1,-1", "fleet.replicas"),
    ("fleet.replicas=1..", "bad range"),
    # too many points: refused before anything is built (was an OverflowError)
    ("fleet.replicas=1..100000000000000000000", "at most 100,000 points"),
    ("workload.scale=1e308", "less than or equal to 1000000"),
])
def test_bad_grid_fails_up_front_with_one_line(tmp_path, grid, needle):
    exp = write_tiny(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["sweep", str(exp), "--grid", grid, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.output
    assert not out.exists()  # nothing ran


# ----------------------------------------------------------------- runs and executors


def test_common_random_numbers_across_points(reference):
    _, out, _ = reference
    rows = read_runs(out / "runs").to_pylist()
    by_rep: dict[int, set] = {}
    for row in rows:
        if row["grid.overflow.interactive.threshold_s"] != 0.5:
            continue
        key = (row["requests_arrived"], row["tokens_total"], row["input.usd_per_gpu_hour"])
        by_rep.setdefault(row["replication"], set()).add(key)
    assert sorted(by_rep) == [0, 1]
    assert all(len(keys) == 1 for keys in by_rep.values())  # same traffic at 1..4 replicas
    assert by_rep[0] != by_rep[1]  # replications differ from each other


def test_sweep_writes_dataset_summary_and_plots(reference):
    _, out, outcome = reference
    assert outcome.ran == KILL_RUNS and outcome.skipped == 0 and not outcome.failures
    assert len(list((out / "runs").glob("*.parquet"))) == KILL_RUNS
    summary = pq.read_table(out / "summary.parquet").to_pylist()
    assert len(summary) == 8 and all(r["n_ok"] == 2 for r in summary)
    for key in ("cost.total_usd.ci95_low", "cost.total_usd.p95", "overflow_share.mean",
                "interactive.ttft_p99_s.ci95_high", "grid.fleet.replicas"):
        assert key in summary[0]
    costs = {r["grid.fleet.replicas"]: r["cost.compute_usd.mean"] for r in summary}
    assert costs[1] < costs[2] < costs[3] < costs[4]
    for name in ("cost_vs_gpus.png", "service_vs_gpus.png", "utilization_vs_gpus.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert (out / "sweep.json").is_file()


def test_executors_give_identical_rows(tmp_path):
    exp = write_tiny(tmp_path)
    sweep_into(exp, tmp_path / "serial", SMALL_GRID, workers=1, plots=False)
    sweep_into(exp, tmp_path / "local", SMALL_GRID, workers=2, plots=False)
    serial, local = sorted_rows(tmp_path / "serial"), sorted_rows(tmp_path / "local")
    assert len(serial) == 8 and same_rows(serial, local)
    pytest.importorskip("distributed")
    sweep_into(exp, tmp_path / "dask", SMALL_GRID, kind="dask", workers=2, plots=False)
    assert same_rows(serial, sorted_rows(tmp_path / "dask"))


def test_missing_dask_is_a_one_line_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ConfigError, match=r"pip install 'capsim\[dask\]'"), \
            open_executor("dask", workers=1):
        pass


def test_bounded_map_keeps_a_bounded_number_in_flight():
    running, peak = [0], [0]

    def work(x):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        running[0] -= 1
        return x * x

    with ThreadPoolExecutor(8) as pool:
        out = {i: f.result() for i, f in bounded_map(pool, work, range(30), max_in_flight=3)}
    assert out == {i: i * i for i in range(30)} and peak[0] <= 3
    serial = dict((i, f.result()) for i, f in bounded_map(SerialExecutor(), work, [2, 3],
                                                         max_in_flight=4))
    assert serial == {2: 4, 3: 9}


def test_ctrl_c_while_waiting_on_workers_is_raised_between_waits():
    """A Ctrl-C during the wait is deferred to a point where no future's lock is held
    (raised asynchronously inside concurrent.futures it could leave one held, and the
    pool's manager thread then hung the process at exit): it arrives as KeyboardInterrupt
    from the wait loop within a poll, the pending runs are cancelled, and SIGINT's
    handler is the default again afterwards."""
    def slow(x):
        time.sleep(0.5)
        return x

    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    with ThreadPoolExecutor(2) as pool:
        started = time.monotonic()
        timer.start()
        with pytest.raises(KeyboardInterrupt) as exc:
            for _ in bounded_map(pool, slow, range(50), max_in_flight=2):
                pass
        assert time.monotonic() - started < 2.0  # not after all 50 runs
    assert exc.traceback[-1].name == "check"  # raised at the safe point, not inside a wait
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_after_the_last_wait_is_raised_on_leaving_the_block():
    from sim.core.executors import interrupt_at_safe_points

    with pytest.raises(KeyboardInterrupt), interrupt_at_safe_points():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run by now: it only set the flag
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_failed_runs_are_recorded_and_retried(tmp_path, monkeypatch):
    exp = write_tiny(tmp_path)
    real = sim.study.sweep.run_replication  # (sweep's own name for it: the seam to patch)

    def flaky(e, index, **kw):
        if e.config.fleet.replicas == 2 and index == 1:
            raise RuntimeError("GPU on fire\nsecond line")
        return real(e, index, **kw)

    monkeypatch.setattr(sim.study.sweep, "run_replication", flaky)
    outcome = sweep_into(exp, tmp_path / "out", ["fleet.replicas=1..2"], workers=1,
                         plots=False, progress=RunProgress("t", enabled=False))
    assert outcome.ran == 4
    assert outcome.failures == [("fleet.replicas=2", 1, "RuntimeError: GPU on fire second line")]
    summary = {r["grid.fleet.replicas"]: r for r in outcome.summary.to_pylist()}
    assert summary[2]["n_failed"] == 1 and summary[2]["n_ok"] == 1
    monkeypatch.setattr(sim.study.sweep, "run_replication", real)
    again = sweep_into(exp, tmp_path / "out", ["fleet.replicas=1..2"], workers=1,
                       plots=False)
    assert again.ran == 0 and again.failures  # plain resume keeps the failure
    fixed = sweep_into(exp, tmp_path / "out", ["fleet.replicas=1..2"], workers=1,
                       plots=False, retry_failed=True)
    assert fixed.ran == 1 and not fixed.failures


def test_resume_refuses_a_different_sweep_and_ignores_partial_files(tmp_path):
    exp = write_tiny(tmp_path)
    out = tmp_path / "out"
    sweep_into(exp, out, ["fleet.replicas=1..2"], workers=1, plots=False)
    (out / "runs" / ".deadbeef-r0000.parquet.x1y2.tmp").write_bytes(b"PAR1 half")
    again = sweep_into(exp, out, ["fleet.replicas=1..2"], workers=1, plots=False)
    assert again.ran == 0 and again.skipped == 4
    assert read_runs(out / "runs").num_rows == 4
    res = CliRunner().invoke(main, ["sweep", str(exp), "--grid", "fleet.replicas=1..3",
                                    "--out", str(out)])
    assert res.exit_code == 2 and "sweep.json" in res.output and "grid" in res.output
    assert len(res.output.strip().splitlines()) == 1


# ------------------------------------------------------------------- interruptions


def _start_sweep(exp: Path, out: Path) -> subprocess.Popen:
    code = "import sys; from sim.cli import main; sys.exit(main())"
    args = [sys.executable, "-c", code, "sweep", str(exp), "--out", str(out), "-j", "2",
            "--no-plots"]
    for item in KILL_GRID:
        args += ["--grid", item]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[1], preexec_fn=default_sigint)


def _wait_for_files(out: Path, n: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(list((out / "runs").glob("*.parquet"))) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the sweep wrote no run files")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        kids += [int(k) for k in text.split()]
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _resume_and_compare(reference, out: Path) -> None:
    exp, ref_out, _ = reference
    done = len(list((out / "runs").glob("*.parquet")))
    assert 0 < done < KILL_RUNS, done  # really interrupted mid-way
    outcome = sweep_into(exp, out, KILL_GRID, plots=False)
    assert outcome.ran == KILL_RUNS - done and outcome.skipped == done
    rows = sorted_rows(out)
    assert len({(r["point_id"], r["replication"]) for r in rows}) == KILL_RUNS == len(rows)
    assert same_rows(rows, sorted_rows(ref_out))


def test_sigint_mid_sweep_then_resume(reference, tmp_path):
    exp = reference[0]
    out = tmp_path / "out"
    proc = _start_sweep(exp, out)
    _wait_for_files(out, 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert not (out / "summary.parquet").exists()
    _resume_and_compare(reference, out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_sigkill_mid_sweep_then_resume_and_workers_die(reference, tmp_path):
    exp = reference[0]
    out = tmp_path / "out"
    proc = _start_sweep(exp, out)
    _wait_for_files(out, 3, proc)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not any(_alive(w) for w in workers)
    _resume_and_compare(reference, out)

"""`capsim run`'s products: runs.parquet, timeseries.parquet, summary.json, plots.

One row per replication in ``runs.parquet`` (every metric and every sampled cost
input), 5-minute bins per replication in ``timeseries.parquet``, the experiment as
resolved with versions, seed and each metric's mean and 95% CI in ``summary.json``,
optionally one row per request in ``requests.parquet``, and PNG plots. The folder is
written atomically (see :mod:`sim.results`).
"""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .config import Experiment
from .montecarlo import default_workers, run_replications
from .results import OutputDir, write_json, write_parquet
from .runner import ReplicationResult

__all__ = ["run_and_write", "runs_table", "timeseries_table", "versions"]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("capsim", "simpy", "numpy", "scipy", "pyarrow", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def runs_table(results: list[ReplicationResult]) -> pa.Table:
    rows = [r.row for r in results]
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return pa.table({k: [row.get(k) for row in rows] for k in keys})


def timeseries_table(results: list[ReplicationResult]) -> pa.Table:
    parts = []
    for r in results:
        cols = {"replication": np.full(r.timeseries["t_s"].size, r.index, np.int32)}
        cols.update(r.timeseries)
        parts.append(pa.table(cols))
    return pa.concat_tables(parts)


def _meta(exp: Experiment) -> dict:
    cfg = exp.config
    fleet = cfg.fleet
    meta = {"name": cfg.name, "profile": exp.profile.name,
            "replicas": fleet.replicas if fleet.replicas is not None else fleet.initial_replicas,
            "gpus_per_replica": exp.profile.gpus_per_replica, "pricing": exp.costs.pricing,
            "horizon_s": cfg.horizon, "replications": cfg.replications, "seed": cfg.seed,
            "classes": list(exp.workload.class_names), "notes": []}
    if fleet.dynamic:
        meta["billing"] = fleet.billing
        meta["failures"] = fleet.failures.model_dump() if fleet.failures else None
        meta["pools"] = [{"name": p.name, "tier": p.tier, "policy": p.scaling.policy,
                          "initial": p.initial, "min": p.lowest, "max": p.highest}
                         for p in fleet.pool_list]
    return meta


def run_and_write(exp: Experiment, out: Path, *, workers: int | None = None,
                  keep_requests: bool | None = None, plots: bool = True,
                  quiet: bool = False) -> dict:
    """Run every replication with a progress bar, write the results folder, print."""
    if exp.litellm is not None:
        from .litellm_report import run_and_write_litellm

        return run_and_write_litellm(exp, out, workers=workers, keep_requests=keep_requests,
                                     plots=plots, quiet=quiet)
    from rich.console import Console

    from .report import render_summary
    from .stats import summarize

    console = Console(stderr=True)
    n = exp.config.replications
    results, wall_s, workers = run_all(exp, workers=workers, keep_requests=keep_requests,
                                       console=console, quiet=quiet)
    rows = [r.row for r in results]
    summary_stats = summarize(rows)
    meta = _meta(exp)
    meta["notes"].append(speed_note(results, wall_s, workers))
    summary = {"experiment": exp.raw, "resolved": _resolved(exp), "source": exp.source,
               "seed": exp.config.seed, "replications": n, "versions": versions(),
               "wall_s": wall_s, "workers": workers, "metrics": summary_stats, "meta": meta}
    with OutputDir(out) as od:
        write_parquet(od.path / "runs.parquet", runs_table(results))
        write_parquet(od.path / "timeseries.parquet", timeseries_table(results))
        req = requests_table(results)
        if req is not None:
            write_parquet(od.path / "requests.parquet", req)
        if plots:
            _plots(od.path, results, dynamic=exp.config.fleet.dynamic)
        write_json(od.path / "summary.json", summary)
    if not quiet:
        render_summary(summary_stats, meta, Console())
        Console().print(f"[dim]results written to {out}/[/dim]")
    return summary


def run_all(exp: Experiment, *, workers: int | None, keep_requests: bool | None,
            console: Any, quiet: bool) -> tuple[list, float, int]:
    """Every replication, with a progress bar: (results, wall seconds, workers used)."""
    workers = min(workers or default_workers(), exp.config.replications)
    t0 = time.perf_counter()
    results = _run_with_progress(exp, workers, keep_requests, console, quiet)
    return results, time.perf_counter() - t0, workers


def speed_note(results: list, wall_s: float, workers: int) -> str:
    arrived = sum(r.totals.arrived for r in results)
    return (f"{arrived:,} simulated requests in {wall_s:.1f} s on {workers} worker(s) "
            f"({arrived / max(wall_s, 1e-9):,.0f} requests/s)")


def requests_table(results: list) -> pa.Table | None:
    """Every replication's per-request records (with a ``replication`` column), if kept."""
    tables = [r.requests.append_column("replication", pa.array(
        np.full(r.requests.num_rows, r.index, np.int32))) for r in results
        if r.requests is not None]
    return pa.concat_tables(tables) if tables else None


def progress_columns(*extra: str) -> tuple:
    """The progress-bar layout shared by `capsim run` and `capsim sweep`: description,
    bar, done/total, any ``extra`` text columns, elapsed time and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            *(TextColumn(t) for t in extra), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn())


def _run_with_progress(exp, workers, keep_requests, console, quiet):
    from rich.progress import Progress

    columns = progress_columns()
    with Progress(*columns, console=console, disable=quiet or not sys.stderr.isatty(),
                  transient=True) as progress:
        task = progress.add_task(f"{exp.name}: replications", total=exp.config.replications)
        return run_replications(exp, workers=workers, keep_requests=keep_requests,
                                on_done=lambda _r: progress.advance(task))


def _plots(folder: Path, results: list[ReplicationResult], *, dynamic: bool = False) -> None:
    from .plots import plot_cost_breakdown, plot_day_profile, plot_fleet_day, plot_latency_cdfs

    series = timeseries_table(results)
    plot_day_profile(series, folder / "day_profile.png")
    if dynamic:
        plot_fleet_day(series, folder / "fleet_day.png")
    cdfs = results[0].cdfs
    if cdfs:
        plot_latency_cdfs(cdfs, folder / "ttft_cdf.png")
    plot_cost_breakdown([r.row for r in results], folder / "cost_breakdown.png")


def _resolved(exp: Experiment) -> dict:
    return {"workload": exp.workload.model_dump(mode="json"),
            "profile": exp.profile.model_dump(mode="json"),
            "apis": {k: v.model_dump(mode="json") for k, v in exp.apis.items()},
            "costs": exp.costs.model_dump(mode="json"),
            "config": exp.config.model_dump(mode="json", exclude={"workload", "api", "costs"})}

"""A whole run of one experiment: every replication, its results, and its output folder.

:func:`run` runs the replications (:mod:`sim.experiment.montecarlo`) and returns a
:class:`RunResult`: one flat row per replication as an Arrow table (``runs``; pandas with
:meth:`RunResult.to_pandas`), the Monte Carlo summary (``summary``: the experiment as given
and as resolved, versions, seed, and each metric's mean and 95% CI) and
:meth:`RunResult.write`, which writes the results folder atomically (see
:mod:`sim.core.files`): ``runs.parquet``, ``summary.json`` and, for a GPU fleet,
``timeseries.parquet`` (5-minute bins per replication) and PNG plots; for an experiment
routed by a LiteLLM config, ``deployments.parquet``, ``timeline.parquet``,
``cooldowns.parquet`` and ``incident.png`` (see :mod:`sim.report.litellm`); with kept
per-request records, ``requests.parquet``. :func:`run_and_write` is ``capsim run``: run,
write, print the report (``fmt``: table, json, csv or markdown).

Assumption: the results of a run fit in memory (one small row and a few binned series per
replication; per-request records only when asked for).
"""

from __future__ import annotations

import functools
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.progress import Progress

from sim.core.errors import ConfigError
from sim.core.executors import bounded_map, default_workers, open_executor
from sim.core.files import OutputDir, atomic_write, write_parquet
from sim.core.intervals import precise_enough
from sim.core.stats import summarize
from sim.core.uncertain import Range
from sim.costs.model import resolve_usd_per_gpu_hour
from sim.experiment.config import Experiment
from sim.experiment.montecarlo import profile_note, run_replications
from sim.experiment.replication import LitellmResult, ReplicationResult, run_replication
from sim.profiles.schema import gpu_prices
from sim.report.document import Column, Report, Table, Value, dumps, render, to_dict
from sim.report.folder import plots_in
from sim.report.html import write_html
from sim.report.litellm import incident_window, plot_incident, render_litellm_summary
from sim.report.plots import (
    plot_cost_breakdown,
    plot_day_profile,
    plot_fleet_day,
    plot_latency_cdfs,
)
from sim.report.progress import progress_columns
from sim.report.run_report import SLO_GOAL, build_run_report

__all__ = ["RunResult", "run", "run_and_write", "runs_table", "timeseries_table",
           "requests_table", "versions", "wide_metrics"]

AnyResult = ReplicationResult | LitellmResult


def versions() -> dict[str, str]:
    """Python's and the main packages' versions, for summary.json."""
    out = {"python": platform.python_version()}
    for pkg in ("capsim", "simpy", "numpy", "scipy", "pyarrow", "pydantic"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def runs_table(results: Sequence[AnyResult]) -> pa.Table:
    """One row per replication (columns in order of first appearance)."""
    rows = [r.row for r in results]
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return pa.table({k: [row.get(k) for row in rows] for k in keys})


def timeseries_table(results: Sequence[ReplicationResult]) -> pa.Table:
    """Every replication's binned series, with a ``replication`` column."""
    parts = []
    for r in results:
        cols = {"replication": np.full(r.timeseries["t_s"].size, r.index, np.int32)}
        cols.update(r.timeseries)
        parts.append(pa.table(cols))
    return pa.concat_tables(parts)


def requests_table(results: Sequence[AnyResult]) -> pa.Table | None:
    """Every replication's per-request records (with a ``replication`` column), if kept."""
    tables = [r.requests.append_column("replication", pa.array(
        np.full(r.requests.num_rows, r.index, np.int32))) for r in results
        if r.requests is not None]
    # (promote: a replication with no request of some kind has null-typed columns)
    return pa.concat_tables(tables, promote_options="default") if tables else None


@dataclass
class RunResult:
    """The replications of one experiment, sorted by index, and how long they took."""

    experiment: Experiment
    replications: list[AnyResult]
    wall_s: float
    workers: int
    precision: float | None = None
    """The ``--precision`` target of sequential replication (None: off)."""
    started_with: int | None = None
    """With sequential replication: the replications of the first batch."""

    @property
    def litellm(self) -> bool:
        """Whether the traffic went through a LiteLLM router config."""
        return self.experiment.litellm is not None

    @cached_property
    def runs(self) -> pa.Table:
        """One row per replication: every metric and every sampled cost input."""
        return runs_table(self.replications)

    def to_pandas(self) -> Any:
        """``runs`` as a pandas DataFrame (needs pandas installed)."""
        return self.runs.to_pandas()

    @cached_property
    def metrics(self) -> dict[str, dict[str, float]]:
        """Each metric's mean, 95% CI and spread across replications."""
        return summarize([r.row for r in self.replications])

    @cached_property
    def summary(self) -> dict[str, Any]:
        """What summary.json holds: the experiment, versions, seed, metrics and metadata."""
        exp = self.experiment
        summary: dict[str, Any] = {"experiment": exp.raw}
        if not self.litellm:
            summary["resolved"] = _resolved(exp)
        summary.update({"source": exp.source, "seed": exp.config.seed,
                        "replications": exp.config.replications, "versions": versions(),
                        "wall_s": self.wall_s, "workers": self.workers,
                        "metrics": self.metrics, "meta": self._meta()})
        return summary

    def speed_note(self) -> str:
        arrived = sum(r.totals.arrived for r in self.replications)
        return (f"{arrived:,} simulated requests in {self.wall_s:.1f} s on {self.workers} "
                f"worker(s) ({arrived / max(self.wall_s, 1e-9):,.0f} requests/s)")

    def _meta(self) -> dict[str, Any]:
        exp = self.experiment
        cfg = exp.config
        if exp.litellm is not None:
            setup = exp.litellm
            return {"name": exp.name, "horizon_s": cfg.horizon,
                    "replications": cfg.replications, "seed": cfg.seed,
                    "router_config": setup.config.file,
                    "routing_strategy": setup.config.settings.routing_strategy,
                    "deployments": [{"name": d.name, "group": d.group, "kind": d.kind,
                                     "replicas": d.replicas if d.kind == "gpu" else None}
                                    for d in setup.deployments],
                    "warnings": list(setup.warnings), "notes": [self.speed_note()]}
        fleet = cfg.fleet
        meta: dict[str, Any] = {
            "name": cfg.name, "profile": exp.profile.name,
            "replicas": fleet.replicas if fleet.replicas is not None else fleet.initial_replicas,
            "gpus_per_replica": exp.profile.gpus_per_replica, "pricing": exp.costs.pricing,
            "usd_per_gpu_hour": _price_given(exp), "api_only_model": exp.api_only_model,
            "horizon_s": cfg.horizon, "replications": cfg.replications, "seed": cfg.seed,
            "classes": list(exp.workload.class_names), "slos": _class_slos(exp),
            "notes": []}
        if fleet.dynamic:
            meta["billing"] = fleet.billing
            meta["failures"] = fleet.failures.model_dump() if fleet.failures else None
            meta["pools"] = [{"name": p.name, "tier": p.tier, "policy": p.scaling.policy,
                              "initial": p.initial, "min": p.lowest, "max": p.highest}
                             for p in fleet.pool_list]
        meta["notes"].append(self.speed_note())
        profile = profile_note(exp, [r.row for r in self.replications])
        if profile:
            meta["notes"].append(profile)
        if self.precision is not None:
            n = len(self.replications)
            wide = wide_metrics(self.metrics, exp, self.precision)
            meta["precision"] = self.precision
            meta["notes"].append(
                f"Sequential replication (--precision {self.precision:.0%}): {n} "
                f"replications, started with {self.started_with}; "
                + (f"the cap was reached with {', '.join(wide)} still wider than the "
                   "target." if wide else "every decision-relevant interval is within "
                   "the target."))
        return meta

    def write(self, out: str | Path, *, plots: bool = True, overwrite: bool = False) -> Path:
        """Write the results folder (atomically: it appears complete or not at all; an
        existing non-empty ``out`` is refused unless ``overwrite``, which replaces it
        whole)."""
        out = Path(out)
        results = self.replications
        with OutputDir(out, overwrite=overwrite) as od:
            write_parquet(od.path / "runs.parquet", self.runs)
            if self.litellm:
                self._write_litellm(od.path, plots=plots)
            else:
                write_parquet(od.path / "timeseries.parquet", timeseries_table(results))
            req = requests_table(results)
            if req is not None:
                write_parquet(od.path / "requests.parquet", req)
            if plots and not self.litellm:
                self._plots(od.path)
            _write_strict_json(od.path / "summary.json", self.summary)
            report = self.report
            report.plots = plots_in(od.path)
            _write_strict_json(od.path / "report.json", to_dict(report))
            write_html(report, od.path, self.summary)
        return out

    def _write_litellm(self, folder: Path, *, plots: bool) -> None:
        results = [r for r in self.replications if isinstance(r, LitellmResult)]
        for name in ("deployments", "timeline", "cooldowns"):
            write_parquet(folder / f"{name}.parquet",
                          pa.concat_tables([getattr(r, name) for r in results]))
        if plots:
            setup = self.experiment.litellm
            assert setup is not None
            window = incident_window(setup.outage_windows, results[0].timeline)
            plot_incident(results[0].timeline, results[0].cooldowns, window,
                          folder / "incident.png", title=self.experiment.name)

    def _plots(self, folder: Path) -> None:
        results = [r for r in self.replications if isinstance(r, ReplicationResult)]
        series = timeseries_table(results)
        plot_day_profile(series, folder / "day_profile.png")
        if self.experiment.config.fleet.dynamic:
            plot_fleet_day(series, folder / "fleet_day.png")
        cdfs = results[0].cdfs
        if cdfs:
            plot_latency_cdfs(cdfs, folder / "ttft_cdf.png")
        plot_cost_breakdown([r.row for r in results], folder / "cost_breakdown.png")

    @cached_property
    def report(self) -> Report:
        """The run's report (verdict and tables), see :mod:`sim.report.run_report`; for
        a LiteLLM-routed run, its metrics as one table (the terminal summary of
        :mod:`sim.report.litellm` is printed by :meth:`render`)."""
        if self.litellm:
            return _metrics_report(self.metrics, self.summary["meta"])
        return build_run_report(self.metrics, self.summary["meta"])

    def render(self, console: Console | None = None, fmt: str = "table") -> None:
        """Print the report in ``fmt`` (table, json, csv or markdown): every number in
        full, at any terminal width and when piped (see :mod:`sim.report.document`)."""
        console = console or Console()
        if self.litellm and fmt == "table":
            # Piped or redirected: don't squeeze the deployment table into 80 columns.
            if not console.is_terminal:
                console = Console(width=max(console.width, 140), file=console.file)
            render_litellm_summary(self.metrics, self.summary["meta"], console)
        else:
            render(self.report, fmt, console)


def _write_strict_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN and infinities as null), written atomically."""
    text = dumps(data) + "\n"
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _price_given(exp: Experiment) -> float | dict[str, Any] | None:
    """The price per GPU-hour the experiment uses (a number, or an uncertain range)."""
    price = exp.costs.usd_per_gpu_hour
    if price is None:
        try:
            from_profile = resolve_usd_per_gpu_hour(exp.costs, gpu_prices(exp.profile))
        except ConfigError:
            return None
        price = from_profile
    if isinstance(price, Range):
        return price.model_dump(mode="json")
    return float(price) if isinstance(price, int | float) else None


def _class_slos(exp: Experiment) -> dict[str, Any]:
    """Per traffic class, the SLO targets of its streams: one mapping when every stream
    of the class has the same targets, else a list of ``{stream, targets...}``."""
    out: dict[str, Any] = {}
    for cls in exp.workload.class_names:
        streams = [s for s in exp.workload.streams if s.traffic_class == cls]
        targets = [s.slo.model_dump(exclude_none=True) for s in streams]
        if all(t == targets[0] for t in targets):
            out[cls] = targets[0]
        else:
            out[cls] = [{"stream": s.name, **t} for s, t in zip(streams, targets, strict=True)]
    return out


def _metrics_report(metrics: dict[str, dict[str, float]], meta: dict[str, Any]) -> Report:
    """Every metric with its 95% interval, as one table (LiteLLM runs' other formats)."""
    report = Report("run", f"capsim run: {meta.get('name', 'experiment')}")
    table = Table("metrics", "Metrics (mean over replications, 95% CI)",
                  [Column("metric", "Metric"), Column("value", "Value", "number", "")])
    for key, entry in metrics.items():
        table.rows.append({"metric": key, "value": Value.of(entry)})
    report.table(table)
    report.data = {"meta": meta}
    return report


def run(exp: Experiment, *, replications: int | None = None, workers: int | None = None,
        keep_requests: bool | None = None, progress: bool = False,
        console: Console | None = None, precision: float | None = None,
        max_replications: int | None = None) -> RunResult:
    """Run ``replications`` (default: the experiment's) of ``exp`` on ``workers``
    processes (default: all cores; the results do not depend on it), keeping per-request
    records if ``keep_requests`` (default: the experiment's ``output.per_request``), with
    a progress bar if ``progress``.

    ``precision`` (e.g. 0.05) turns on sequential replication: batches of the starting
    number of replications are added while a decision-relevant interval is too wide
    (:func:`wide_metrics`), up to ``max_replications`` (default 4x the start).
    Replication i always has the same seed, so the same seed gives the same numbers."""
    if replications is not None and replications != exp.config.replications:
        if isinstance(replications, bool) or not isinstance(replications, int) \
                or replications < 1:
            raise ConfigError(f"replications must be a whole number >= 1, got "
                              f"{replications!r}", field="replications")
        exp = replace(exp, config=exp.config.model_copy(update={"replications": replications}),
                      raw={**exp.raw, "replications": replications})
    workers = min(workers or default_workers(), exp.config.replications)
    t0 = time.perf_counter()
    with Progress(*progress_columns(), console=console or Console(stderr=True),
                  disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{exp.name}: replications", total=exp.config.replications)
        results: list[AnyResult] = run_replications(
            exp, workers=workers, keep_requests=keep_requests,
            on_done=lambda _r: bar.advance(task))
        start = exp.config.replications
        if precision is not None:
            cap = max_replications if max_replications is not None else 4 * start
            while len(results) < cap and wide_metrics(
                    summarize([r.row for r in results]), exp, precision):
                more = range(len(results), min(len(results) + start, cap))
                bar.update(task, total=len(results) + len(more))
                results += _run_batch(exp, more, workers=workers,
                                      keep_requests=keep_requests,
                                      on_done=lambda _r: bar.advance(task))
            exp = replace(exp, config=exp.config.model_copy(
                update={"replications": len(results)}),
                raw={**exp.raw, "replications": len(results)})
    return RunResult(exp, results, time.perf_counter() - t0, workers, precision,
                     start if precision is not None else None)


def wide_metrics(metrics: dict[str, dict[str, float]], exp: Experiment,
                 precision: float) -> list[str]:
    """The metrics whose 95% intervals are too wide for the run's verdict
    (:func:`sim.core.intervals.precise_enough`): each class's SLO attainment against
    :data:`sim.report.run_report.SLO_GOAL` (classes with an SLO), and the hybrid's monthly
    cost (relative half-width) on which the comparison with API-only rests."""
    out = []
    slos = _class_slos(exp)
    for cls in exp.workload.class_names:
        targets = slos.get(cls)
        if not targets:
            continue
        key = f"{cls}.slo_attainment"
        e = metrics.get(key, {})
        if not precise_enough(e.get("mean", math.nan), e.get("ci95_low", math.nan),
                              e.get("ci95_high", math.nan), precision, threshold=SLO_GOAL,
                              kind="share"):
            out.append(key)
    e = metrics.get("cost.total_usd", {})
    if not precise_enough(e.get("mean", math.nan), e.get("ci95_low", math.nan),
                          e.get("ci95_high", math.nan), precision):
        out.append("cost.total_usd")
    return out


def _run_batch(exp: Experiment, indices: range, *, workers: int | None,
               keep_requests: bool | None, on_done: Any) -> list[AnyResult]:
    """Replications ``indices`` of ``exp`` (each a pure function of the experiment and
    its index, as in :func:`sim.experiment.montecarlo.run_replications`)."""
    workers = min(workers or default_workers(), len(indices))
    in_flight = 1 if workers == 1 else 2 * workers
    run_one = functools.partial(run_replication, keep_requests=keep_requests)
    out: list[AnyResult] = []
    with open_executor("local", workers=workers) as executor:
        for _i, future in bounded_map(executor, run_one, indices, max_in_flight=in_flight,
                                      args=lambda i: (exp, i)):
            out.append(future.result())
            on_done(out[-1])
    return sorted(out, key=lambda r: r.index)


def run_and_write(exp: Experiment, out: Path, *, workers: int | None = None,
                  keep_requests: bool | None = None, plots: bool = True,
                  quiet: bool = False, overwrite: bool = False, fmt: str = "table",
                  precision: float | None = None, max_replications: int | None = None
                  ) -> dict[str, Any]:
    """``capsim run``: run with a progress bar (on a terminal), write the folder, print
    the report in ``fmt`` (unless ``quiet``)."""
    err = Console(stderr=True)
    for line in exp.litellm.warnings if exp.litellm is not None else ():
        err.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)
    result = run(exp, workers=workers, keep_requests=keep_requests,
                 progress=not quiet and sys.stderr.isatty(), console=err,
                 precision=precision, max_replications=max_replications)
    result.write(out, plots=plots, overwrite=overwrite)
    if not quiet:
        result.render(Console(), fmt)
        where = f"results written to {out}/ (report.html to share)"
        if fmt == "table":
            Console().print(where, style="dim", soft_wrap=True, highlight=False)
        else:
            err.print(where, style="dim", soft_wrap=True, highlight=False)
    return result.summary


def _resolved(exp: Experiment) -> dict[str, Any]:
    return {"workload": exp.workload.model_dump(mode="json"),
            "profile": exp.profile.model_dump(mode="json"),
            "apis": {k: v.model_dump(mode="json") for k, v in exp.apis.items()},
            "costs": exp.costs.model_dump(mode="json"),
            "config": exp.config.model_dump(mode="json", exclude={"workload", "api", "costs"})}

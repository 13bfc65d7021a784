"""Command line for studies over many configurations: ``sweep``, ``plan``, ``breakeven``.

The three commands are registered on ``capsim``'s click group by :mod:`sim.cli`
(``add_command``). They share the run options: ``--set`` overrides, ``-n``
replications, ``--out`` folder (default ``results/<command>-<name>-<hash>/``: the hash is
that of the study, so rerunning the same command resumes it), ``--executor local|dask``,
``--scheduler`` (dask), ``--workers`` (1: in-process) and ``--svg`` for plots.

Bad input is one line on stderr and exit status 2 (:func:`sim.cli.common.handle_errors`); an
interrupt leaves every finished run on disk (rerun to resume) and exits with 130. A sweep
with failed runs, or a plan that finds no configuration meeting every SLO (API-only
included), exits with 1. Every command prints its report
(:mod:`sim.study.reports`; ``--format table|json|csv|markdown``) and writes it to its
folder as report.json and report.html.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from sim.cli.common import (
    FINITE_POSITIVE,
    format_option,
    handle_errors,
    out_option,
    precision_option,
    replications_option,
    set_option,
    workers_option,
)
from sim.core.files import write_json
from sim.report.document import strict

if TYPE_CHECKING:  # the modules themselves load lazily, when a command runs
    from sim.study.breakeven import BreakevenResult, Crossing, StaticBreakeven
    from sim.study.plan import PlanResult, Slo
    from sim.study.sweep import PointStats

__all__ = ["sweep_command", "plan_command", "breakeven_command"]


# --------------------------------------------------------------------- shared options


def _run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.argument("experiment", required=False),
        set_option("Override a field of the base experiment (repeatable)."),
        replications_option("Replications per configuration (default: the experiment's)."),
        out_option("Output folder; rerunning into it resumes (default: "
                   "results/<command>-<name>-<hash>/)."),
        click.option("--executor", type=click.Choice(["local", "dask"]), default="local",
                     show_default=True, help="Where runs execute."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Dask scheduler, e.g. tcp://127.0.0.1:8786 (default: "
                          "$DASK_SCHEDULER_ADDRESS, else a local cluster)."),
        workers_option("Worker processes (default: all cores; 1: in-process)."),
        click.option("--svg", is_flag=True, help="Write plots as SVG instead of PNG."),
        format_option(),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


# ----------------------------------------------------------------------------- sweep


@click.command("sweep")
@_run_options
@click.option("--grid", "grid", multiple=True, metavar="PATH=VALUES",
              help="A grid field: a..b, a..b:step or x,y,z (repeatable; also the "
                   "experiment's grid: section, which these override per field).")
@click.option("--retry-failed", is_flag=True, help="Also re-run runs that failed before.")
@click.option("--no-plots", is_flag=True, help="Skip the capacity plots.")
@handle_errors
def sweep_command(experiment: str | None, overrides: tuple[str, ...],
                  replications: int | None, out_dir: str | None, executor: str,
                  scheduler: str | None, workers: int | None, svg: bool,
                  fmt: str, grid: tuple[str, ...], retry_failed: bool, no_plots: bool
                  ) -> None:
    """Run EXPERIMENT at every point of a grid; results stream to DIR/runs/ (Parquet).

    \b
    Writes DIR/summary.parquet, plots and report.html, and prints one row per point with
    its cost, failures, latency and overflow (95% CIs).

    \b
    Examples:
      capsim sweep default --grid fleet.replicas=1..4 -n 5
      capsim sweep exp.yaml --grid fleet.replicas=2..16 \\
        --grid overflow.interactive.threshold_s=0.5,1,2 --format csv > sweep.csv
    """
    from sim.study.reports import sweep_report, write_reports  # (startup: see sim.cli)
    from sim.study.sweep import sweep

    console = Console(stderr=True)
    outcome = sweep(experiment, grid, overrides=overrides, replications=replications,
                    out=out_dir, executor=executor, scheduler=scheduler, workers=workers,
                    retry_failed=retry_failed, plots=not no_plots, svg=svg, progress=None,
                    log=lambda line: console.print(f"[dim]{line}[/dim]"))
    report = sweep_report(outcome, name=outcome.name)
    write_reports(report, outcome.folder)
    _show(report, fmt)
    if outcome.failures:
        raise click.exceptions.Exit(1)


def _show(report: Any, fmt: str) -> None:
    from sim.report.document import render

    render(report, fmt, Console())


# ------------------------------------------------------------------------------ plan


@click.command("plan")
@_run_options
@click.option("--slo", "slo_items", multiple=True, required=True, metavar="METRIC<=X",
              help="An SLO: METRIC<=X (CI upper end), METRIC>=X (CI lower end) or METRIC=X "
                   "(>= for *_met/*attainment, else <=); repeatable.")
@click.option("--over", "over", multiple=True, metavar="PATH=VALUES",
              help="Search dimension: fleet.replicas=1..32 (the default; bisected) or any "
                   "other field (every value tried).")
@precision_option("5%")
@handle_errors
def plan_command(experiment: str | None, overrides: tuple[str, ...],
                 replications: int | None, out_dir: str | None, executor: str,
                 scheduler: str | None, workers: int | None, svg: bool, fmt: str,
                 slo_items: tuple[str, ...], over: tuple[str, ...],
                 precision: float | None, max_replications: int | None) -> None:
    """Find the cheapest configuration of EXPERIMENT that meets every SLO with 95%
    confidence, and compare it with sending everything to the API.

    Quote an SLO that holds <= or >= (the shell reads > and < as redirections); METRIC=X
    needs no quotes.

    \b
    Examples:
      capsim plan default --slo interactive.ttft_p99_s=2 --over fleet.replicas=1..8
      capsim plan exp.yaml --slo 'interactive.ttft_p99_s<=2' \\
        --slo 'batch.slo_attainment>=0.999' --over fleet.replicas=1..32
    """
    from sim.study.plan import plan  # (startup speed: see sim.cli)
    from sim.study.reports import plan_outcome, plan_report, write_reports

    result = plan(experiment, slo_items, over=over, overrides=overrides,
                  replications=replications, out=out_dir, executor=executor,
                  scheduler=scheduler, workers=workers, progress=None,
                  precision=precision, max_replications=max_replications)
    assert result.folder is not None
    write_json(result.folder / "plan.json", strict(_plan_json(result)))
    _plan_figure(result, result.metric_names, result.folder, svg)
    report = plan_report(result, name=result.name, api_only_model=result.api_only_model,
                         precision=precision)
    write_reports(report, result.folder)
    _show(report, fmt)
    if plan_outcome(result) in ("undecided", "infeasible"):
        raise click.exceptions.Exit(1)


def _gpus(stats: PointStats) -> float:
    return stats.stat("replicas") * stats.stat("gpus_per_replica")


def _stats_json(stats: PointStats | None, slos: Sequence[Slo]) -> dict[str, Any] | None:
    if stats is None:
        return None
    keys = ["cost.total_usd", "cost.api_only_usd", "overflow_share", "gpu_utilization",
            *[s.metric for s in slos]]
    return {"point": dict(stats.point.values), "point_id": stats.point.id,
            "feasible": bool(stats.ok and all(s.met(stats) for s in slos)),
            "failed_replications": stats.errors,
            "metrics": {k: stats.summary.get(k) for k in dict.fromkeys(keys)}}


def _plan_json(result: PlanResult) -> dict[str, Any]:
    return {"slos": [str(s) for s in result.slos],
            "recommended": _stats_json(result.recommended, result.slos),
            "gpu_only": _stats_json(result.gpu_only, result.slos),
            "runners_up": [_stats_json(s, result.slos) for s in result.runners_up],
            "per_combination": {k: _stats_json(v, result.slos)
                                for k, v in result.per_combo.items()},
            "api_only": _stats_json(result.api_only, result.slos),
            "api_only_model": result.api_only_model,
            "evaluated": [_stats_json(s, result.slos) for s in result.evaluated]}


def _pareto_point(stats: PointStats, key: str, feasible: bool) -> dict[str, Any]:
    n = _gpus(stats)
    return {"label": f"{n:g} GPU{'' if n == 1 else 's'}", "feasible": feasible,
            "cost": stats.stat("cost.total_usd"),
            "cost_low": stats.stat("cost.total_usd", "ci95_low"),
            "cost_high": stats.stat("cost.total_usd", "ci95_high"),
            "latency": stats.stat(key), "latency_low": stats.stat(key, "ci95_low"),
            "latency_high": stats.stat(key, "ci95_high")}


def _plan_figure(result: PlanResult, names: Sequence[str], folder: Path, svg: bool) -> Path | None:
    from sim.report.capacity_plots import plot_pareto
    from sim.study.plan import latency_metric

    key = latency_metric(result.slos, names)
    if key is None or not result.evaluated:
        return None
    points = [_pareto_point(s, key, result.is_feasible(s)) for s in result.evaluated]
    best, gpu_only = result.recommended, result.gpu_only
    slo = next((s.target for s in result.slos if s.metric == key and s.op == "<="), None)
    return plot_pareto(
        points, folder / "pareto", latency_key=key, svg=svg, slo_latency_s=slo,
        recommended=_pareto_point(best, key, True) if best else None,
        gpu_only=(_pareto_point(gpu_only, key, True)
                  if gpu_only is not None and gpu_only is not best else None),
        api_only_usd=(result.api_only.stat("cost.api_only_usd") if result.api_only
                      else best.stat("cost.api_only_usd") if best else math.nan))


# ------------------------------------------------------------------------- breakeven


@click.command("breakeven")
@_run_options
@click.option("--volume", "volume_range", default="100M..10B", show_default=True,
              help="Monthly token volumes to cover, LOW..HIGH (k, M, B, T suffixes).")
@click.option("--points", type=click.IntRange(min=2, max=1000), default=12, show_default=True,
              help="Log-spaced volumes in the range.")
@click.option("--slo", "slo_items", multiple=True, metavar="METRIC<=X",
              help="SLOs the GPU-only and hybrid fleets must meet (as in plan).")
@click.option("--util-cap", type=click.FloatRange(0, 1, min_open=True), default=0.6,
              show_default=True, help="Without --slo: the GPU-only fleet's utilization cap.")
@click.option("--replicas", "replicas_spec", default="1..64", show_default=True,
              help="Fleet sizes searched (a..b or a list).")
@click.option("--static", is_flag=True,
              help="No simulation: fixed monthly cost / blended API price (the seed "
                   "article's arithmetic).")
@click.option("--blended-usd-per-1m", type=FINITE_POSITIVE,
              default=None, help="--static: the API price per 1M tokens, blended.")
@click.option("--input-share", type=click.FloatRange(0, 1), default=0.75, show_default=True,
              help="--static without a blended price: input share of the tokens.")
@precision_option("5%")
@handle_errors
def breakeven_command(experiment: str | None, overrides: tuple[str, ...],
                      replications: int | None, out_dir: str | None, executor: str,
                      scheduler: str | None, workers: int | None, svg: bool, fmt: str,
                      volume_range: str, points: int, slo_items: tuple[str, ...],
                      util_cap: float, replicas_spec: str, static: bool,
                      blended_usd_per_1m: float | None, input_share: float,
                      precision: float | None, max_replications: int | None) -> None:
    """The monthly token volume where self-hosting EXPERIMENT's model gets cheaper than
    the API: API-only vs GPU-only vs the cheapest hybrid, each fully loaded.

    Writes DIR/breakeven.json, the break-even plot and report.html.

    \b
    Examples:
      capsim breakeven default --volume 100M..10B --points 12
      capsim breakeven exp.yaml --slo 'interactive.ttft_p99_s<=2' --format markdown
      capsim breakeven exp.yaml --static --blended-usd-per-1m 4.40
    """
    from sim.experiment.config import load_experiment  # (startup speed: see sim.cli)
    from sim.study.breakeven import static_breakeven
    from sim.study.reports import breakeven_report, static_report, write_reports

    if static:
        exp = load_experiment(experiment, list(overrides), replications=replications)
        _show(static_report(static_breakeven(exp, usd_per_1m_blended=blended_usd_per_1m,
                                             input_share=input_share), name=exp.name), fmt)
        return
    from sim.study.breakeven import breakeven

    result = breakeven(experiment, volume=volume_range, points=points, slos=slo_items,
                       util_cap=util_cap, replicas=replicas_spec, overrides=overrides,
                       replications=replications, out=out_dir, executor=executor,
                       scheduler=scheduler, workers=workers, progress=None,
                       precision=precision, max_replications=max_replications)
    static_ref = _write_breakeven(result, svg)
    assert result.experiment is not None and result.folder is not None
    report = breakeven_report(result, static_ref, name=result.experiment.name,
                              precision=precision)
    write_reports(report, result.folder)
    _show(report, fmt)


def _write_breakeven(result: BreakevenResult, svg: bool) -> StaticBreakeven:
    """breakeven.json and the break-even plot; the static arithmetic for reference."""
    exp, folder = result.experiment, result.folder
    assert exp is not None and folder is not None
    from sim.report.capacity_plots import plot_breakeven
    from sim.study.breakeven import curves, static_breakeven

    static = static_breakeven(exp)
    lines = _static_line(static, [v.volume for v in result.volumes])
    plot_breakeven(curves(result), [_crossing_mark(c) for c in result.crossings
                                    if math.isfinite(c.volume)],
                   folder / "breakeven", static=lines, svg=svg)
    write_json(folder / "breakeven.json", strict(_breakeven_json(result)))
    return static


def _crossing_mark(c: Crossing) -> dict[str, Any]:
    low = c.low if math.isfinite(c.low) else c.volume
    high = c.high if math.isfinite(c.high) else c.volume
    return {"name": c.name, "volume": c.volume, "low": low, "high": high}


def _static_line(s: StaticBreakeven, vols: Sequence[float]) -> list[dict[str, Any]]:
    """The fixed monthly cost spread over the volume, per 1M tokens (mid of low/high)."""
    mid = (s.fixed_usd_low + s.fixed_usd_high) / 2
    return [{"volume": v, "usd_per_1m": mid / (v / 1e6)} for v in vols if v > 0]


def _breakeven_json(result: BreakevenResult) -> dict[str, Any]:
    vols = []
    for v in result.volumes:
        vols.append({"target_tokens_per_month": v.target_volume, "scale": v.scale,
                     "tokens_per_month": v.volume,
                     "gpu_only": _stats_json(v.gpu_only, []),
                     "hybrid": _stats_json(v.hybrid, [])})
    return {"slos": [str(s) for s in result.slos], "util_cap": result.util_cap,
            "crossings": [vars(c) for c in result.crossings], "volumes": vols}

"""Command line for studies over many configurations: ``sweep``, ``plan``, ``breakeven``.

The three commands are registered on ``capsim``'s click group by :mod:`sim.cli`
(``add_command``). They share the run options: ``--set`` overrides, ``-n``
replications, ``--out`` folder (default ``results/<command>-<name>-<hash>/``: the hash is
that of the study, so rerunning the same command resumes it), ``--executor local|dask``,
``--scheduler`` (dask), ``--workers`` (1: in-process) and ``--svg`` for plots.

Bad input is one line on stderr and exit status 2 (:func:`sim.cli.common.handle_errors`); an
interrupt leaves every finished run on disk (rerun to resume) and exits with 130. A sweep
with failed runs, or a plan that finds no configuration meeting every SLO, exits with 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from sim.cli.common import (
    FINITE_POSITIVE,
    handle_errors,
    out_option,
    replications_option,
    set_option,
    workers_option,
)
from sim.core.files import write_json
from sim.report.formats import format_count, format_percent, format_usd

if TYPE_CHECKING:  # the modules themselves load lazily, when a command runs
    from sim.study.breakeven import BreakevenResult, Crossing, StaticBreakeven
    from sim.study.plan import PlanResult, Slo
    from sim.study.sweep import PointStats, SweepOutcome

__all__ = ["sweep_command", "plan_command", "breakeven_command"]

_MAX_TABLE_ROWS = 40


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
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _ci(stats: PointStats, key: str, fmt: Callable[[float], str]) -> str:
    mean, low, high = (stats.stat(key, p) for p in ("mean", "ci95_low", "ci95_high"))
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(high):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def _num(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "-"


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
                  grid: tuple[str, ...], retry_failed: bool, no_plots: bool) -> None:
    """Run EXPERIMENT at every point of a grid; results stream to DIR/runs/ (Parquet).

    \b
    Example:
      capsim sweep exp.yaml --grid fleet.replicas=2..16 \\
        --grid overflow.interactive.threshold_s=0.5,1,2
    """
    from sim.study.sweep import sweep  # (startup speed: see sim.cli)

    console = Console(stderr=True)
    outcome = sweep(experiment, grid, overrides=overrides, replications=replications,
                    out=out_dir, executor=executor, scheduler=scheduler, workers=workers,
                    retry_failed=retry_failed, plots=not no_plots, svg=svg, progress=None,
                    log=lambda line: console.print(f"[dim]{line}[/dim]"))
    _print_sweep(outcome, outcome.grid)
    if outcome.failures:
        raise click.exceptions.Exit(1)


def _print_sweep(outcome: SweepOutcome, grid_keys: Sequence[str]) -> None:
    rows = outcome.summary.to_pylist()
    console = Console()
    table = Table(title="Sweep summary (mean [95% CI] across replications)")
    for key in grid_keys:
        table.add_column(key.rsplit(".", 1)[-1], justify="right")
    columns = _sweep_columns(rows[0] if rows else {})
    for title in ("runs", "cost / month", "$ / 1M tok", *(c[0] for c in columns)):
        table.add_column(title, justify="right")
    for row in rows[:_MAX_TABLE_ROWS]:
        table.add_row(*_sweep_cells(row, grid_keys, columns))
    console.print(table)
    if len(rows) > _MAX_TABLE_ROWS:
        console.print(f"... and {len(rows) - _MAX_TABLE_ROWS} more points in summary.parquet")
    for label, rep, error in outcome.failures[:10]:
        console.print(f"[red]failed:[/red] {label}, replication {rep}: {error}")
    if len(outcome.failures) > 10:
        console.print(f"[red]... {len(outcome.failures) - 10} more failed runs[/red]")
    console.print(f"[dim]{outcome.ran} runs done, {outcome.skipped} already on disk, "
                  f"{len(outcome.failures)} failed, in {outcome.wall_s:.1f} s; results in "
                  f"{outcome.folder}/[/dim]")


def _sweep_columns(row: dict) -> list[tuple[str, str, Any]]:
    """(title, metric, format) of the metric columns: a LiteLLM router sweep shows what
    the router did; a fleet sweep its latency, overflow and utilization."""
    if "fallback_rate.mean" in row:
        return [("failed", "failure_share", format_percent),
                ("retried", "retry_rate", format_percent),
                ("fell back", "fallback_rate", format_percent), ("p95 e2e", "e2e_s_p95", _num),
                ("overflow", "overflow_share", format_percent)]
    ttft = next((k.removesuffix(".mean") for k in row
                 if k.endswith(".ttft_p99_s.mean") and k.count(".") == 2), None)
    return [(ttft or "p99 TTFT", ttft, _num), ("overflow", "overflow_share", format_percent),
            ("utilization", "gpu_utilization", format_percent)]


def _sweep_cells(row: dict, grid_keys: Sequence[str],
                 columns: Sequence[tuple[str, str | None, Any]]) -> list[str]:
    def get(key: str) -> float:
        value = row.get(key)
        return float(value) if isinstance(value, int | float) else math.nan

    cells = [str(row.get(f"grid.{k}")) for k in grid_keys]
    n = row["n_ok"] + row["n_failed"]
    cost, low = get("cost.total_usd.mean"), get("cost.total_usd.ci95_low")
    half = f" ± {format_usd(cost - low)}" if math.isfinite(low) else ""
    cells += [f"{row['n_ok']}/{n}", format_usd(cost) + half,
              f"${get('cost.usd_per_1m_tokens.mean'):.2f}"]
    cells += [fmt(get(f"{metric}.mean")) if metric else "-" for _, metric, fmt in columns]
    return cells


# ------------------------------------------------------------------------------ plan


@click.command("plan")
@_run_options
@click.option("--slo", "slo_items", multiple=True, required=True, metavar="METRIC<=X",
              help="An SLO: METRIC<=X (CI upper end), METRIC>=X (CI lower end) or METRIC=X "
                   "(>= for *_met/*attainment, else <=); repeatable.")
@click.option("--over", "over", multiple=True, metavar="PATH=VALUES",
              help="Search dimension: fleet.replicas=1..32 (the default; bisected) or any "
                   "other field (every value tried).")
@handle_errors
def plan_command(experiment: str | None, overrides: tuple[str, ...],
                 replications: int | None, out_dir: str | None, executor: str,
                 scheduler: str | None, workers: int | None, svg: bool,
                 slo_items: tuple[str, ...], over: tuple[str, ...]) -> None:
    """Find the cheapest configuration of EXPERIMENT that meets every SLO with 95%
    confidence.

    \b
    Example:
      capsim plan exp.yaml --slo interactive.ttft_p99_s=2 \\
        --slo batch.slo_attainment>=0.999 --over fleet.replicas=1..32
    """
    from sim.study.plan import plan  # (startup speed: see sim.cli)

    result = plan(experiment, slo_items, over=over, overrides=overrides,
                  replications=replications, out=out_dir, executor=executor,
                  scheduler=scheduler, workers=workers, progress=None)
    _report_plan(result, svg)
    if result.recommended is None:
        raise click.exceptions.Exit(1)


def _gpus(stats: PointStats) -> float:
    return stats.stat("replicas") * stats.stat("gpus_per_replica")


def _config_label(stats: PointStats) -> str:
    others = [f"{k}={v}" for k, v in stats.point.values if k != "fleet.replicas"]
    return ", ".join([f"{stats.point.get('fleet.replicas')} replicas ({_gpus(stats):g} GPUs)",
                      *others])


def _report_plan(result: PlanResult, svg: bool) -> None:
    names, folder = result.metric_names, result.folder
    assert folder is not None
    console = Console()
    best = result.recommended
    if best is None:
        console.print("[red]No configuration in the search space meets every SLO[/red] "
                      f"({', '.join(map(str, result.slos))}); widen --over fleet.replicas "
                      "or relax an SLO.")
    else:
        _print_config(console, "Recommended", best, result.slos)
        if result.gpu_only is not None and result.gpu_only is not best:
            _print_config(console, "GPU-only (no overflow)", result.gpu_only, result.slos)
        console.print(f"API-only: {format_usd(best.stat('cost.api_only_usd'))}/month")
        _print_runners_up(console, result)
    write_json(folder / "plan.json", _plan_json(result))
    figure = _plan_figure(result, names, folder, svg)
    console.print(f"[dim]{len(result.evaluated)} configurations evaluated; results in "
                  f"{folder}/ ({figure.name if figure else 'no plot'})[/dim]")


def _print_config(console: Console, title: str, stats: PointStats, slos: Sequence[Slo]
                  ) -> None:
    p5, p50, p95 = (stats.stat("cost.total_usd", p) for p in ("p5", "p50", "p95"))
    console.print(f"[bold]{title}:[/bold] {_config_label(stats)}: "
                  f"[bold]{format_usd(stats.stat('cost.total_usd'))}/month[/bold] mean "
                  f"(p5 {format_usd(p5)}, p50 {format_usd(p50)}, p95 {format_usd(p95)})")
    for slo in slos:
        mark = "[green]met[/green]" if slo.met(stats) else "[red]missed[/red]"
        console.print(f"  {slo}: {_ci(stats, slo.metric, _num)} {mark}")


def _print_runners_up(console: Console, result: PlanResult) -> None:
    if not result.runners_up:
        return
    table = Table(title="Runners-up (feasible, by mean monthly cost)")
    for title in ("configuration", "cost / month", "p5", "p95", "overflow"):
        table.add_column(title, justify="right")
    for stats in result.runners_up:
        table.add_row(_config_label(stats), format_usd(stats.stat("cost.total_usd")),
                      format_usd(stats.stat("cost.total_usd", "p5")),
                      format_usd(stats.stat("cost.total_usd", "p95")),
                      format_percent(stats.stat("overflow_share")))
    console.print(table)


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
            "evaluated": [_stats_json(s, result.slos) for s in result.evaluated]}


def _pareto_point(stats: PointStats, key: str, feasible: bool) -> dict[str, Any]:
    return {"label": f"{_gpus(stats):g} GPUs", "feasible": feasible,
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
        api_only_usd=best.stat("cost.api_only_usd") if best else math.nan)


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
@handle_errors
def breakeven_command(experiment: str | None, overrides: tuple[str, ...],
                      replications: int | None, out_dir: str | None, executor: str,
                      scheduler: str | None, workers: int | None, svg: bool,
                      volume_range: str, points: int, slo_items: tuple[str, ...],
                      util_cap: float, replicas_spec: str, static: bool,
                      blended_usd_per_1m: float | None, input_share: float) -> None:
    """The monthly token volume where self-hosting EXPERIMENT's model gets cheaper than
    the API: API-only vs GPU-only vs the cheapest hybrid, each fully loaded.

    \b
    Example:
      capsim breakeven exp.yaml --volume 100M..10B --points 12
      capsim breakeven exp.yaml --static --blended-usd-per-1m 4.40
    """
    from sim.experiment.config import load_experiment
    from sim.study.breakeven import static_breakeven

    if static:
        exp = load_experiment(experiment, list(overrides), replications=replications)
        _print_static(static_breakeven(exp, usd_per_1m_blended=blended_usd_per_1m,
                                       input_share=input_share))
        return
    from sim.study.breakeven import breakeven  # (startup speed: see sim.cli)

    result = breakeven(experiment, volume=volume_range, points=points, slos=slo_items,
                       util_cap=util_cap, replicas=replicas_spec, overrides=overrides,
                       replications=replications, out=out_dir, executor=executor,
                       scheduler=scheduler, workers=workers, progress=None)
    _report_breakeven(result, svg)


def _print_static(s: StaticBreakeven) -> None:
    console = Console()
    console.print("[bold]Static break-even[/bold] (no simulation: fixed monthly cost / "
                  "blended API price per token)")
    console.print(f"  fleet: {s.replicas} replica(s), {s.gpus} GPUs, billed all month")
    console.print(f"  fixed monthly cost (compute + engineering + infra): "
                  f"{format_usd(s.fixed_usd_low)} (low inputs) to {format_usd(s.fixed_usd_high)} "
                  "(high inputs)")
    console.print(f"  API price: ${s.usd_per_1m_blended:.2f} per 1M tokens blended "
                  f"({s.api_model})")
    console.print(f"  break-even: [bold]{format_count(s.breakeven_low)}[/bold] to "
                  f"[bold]{format_count(s.breakeven_high)}[/bold] tokens/month")


def _report_breakeven(result: BreakevenResult, svg: bool) -> None:
    exp, folder = result.experiment, result.folder
    assert exp is not None and folder is not None
    from sim.report.capacity_plots import plot_breakeven
    from sim.study.breakeven import curves, static_breakeven

    console = Console()
    table = Table(title="Monthly cost by volume (mean; fully loaded)")
    for title in ("tokens / month", "API-only", "GPU-only", "GPU-only fleet", "hybrid",
                  "hybrid fleet", "hybrid overflow"):
        table.add_column(title, justify="right")
    for v in result.volumes:
        table.add_row(format_count(v.volume), format_usd(v.any.stat("cost.api_only_usd") if v.any
                                              else math.nan),
                      format_usd(v.gpu_only.stat("cost.total_usd") if v.gpu_only else math.nan),
                      _fleet(v.gpu_only),
                      format_usd(v.hybrid.stat("cost.total_usd") if v.hybrid else math.nan),
                      _fleet(v.hybrid),
                      format_percent(v.hybrid.stat("overflow_share") if v.hybrid else math.nan))
    console.print(table)
    for c in result.crossings:
        console.print(_crossing_line(c))
    static = static_breakeven(exp)
    lines = _static_line(static, [v.volume for v in result.volumes])
    figure = plot_breakeven(curves(result), [_crossing_mark(c) for c in result.crossings
                                             if math.isfinite(c.volume)],
                            folder / "breakeven", static=lines, svg=svg)
    write_json(folder / "breakeven.json", _breakeven_json(result))
    console.print(f"[dim]results in {folder}/ ({figure.name})[/dim]")


def _fleet(stats: PointStats | None) -> str:
    return f"{_gpus(stats):g} GPUs" if stats is not None else "none in range"


def _crossing_line(c: Crossing) -> str:
    if math.isfinite(c.volume):
        ci = (f" (95% CI {format_count(c.low)} to {format_count(c.high)}, "
              f"{c.replications_crossing} replications)" if math.isfinite(c.low) else "")
        return f"[bold]{c.name} break-even: {format_count(c.volume)} tokens/month[/bold]{ci}"
    where = {"below": "cheaper than the API at every volume in range",
             "above": "never cheaper than the API in range",
             "none": "no clean crossing in range"}[c.side]
    return f"[bold]{c.name}:[/bold] {where}"


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

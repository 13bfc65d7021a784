"""``capsim run``: one experiment, N replications, a results folder and a summary.

A thin layer over :func:`sim.load_experiment` and :func:`sim.experiment.run.run_and_write`
(:func:`sim.run`, then :meth:`sim.RunResult.write` and the printed summary).
The library is imported when the command runs, not when ``capsim`` starts (see
:mod:`sim.cli`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from sim.cli.common import (
    format_option,
    handle_errors,
    out_option,
    overwrite_option,
    precision_option,
    replications_option,
    set_option,
    workers_option,
)

__all__ = ["run_command"]


@click.command("run")
@click.argument("experiment", required=False)
@set_option("Override any experiment field, e.g. --set fleet.replicas=6")
@replications_option("Number of Monte Carlo replications (default: the experiment's).")
@workers_option("Worker processes (default: all cores). Results do not depend on it.")
@out_option("Output folder (default: results/<name>-<timestamp>/).")
@overwrite_option()
@format_option()
@click.option("--json", "as_json", is_flag=True,
              help="Print summary.json (every metric, strict JSON) on stdout.")
@click.option("--requests/--no-requests", "keep_requests", default=None,
              help="Also write requests.parquet (one row per request; small runs).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--router-config", type=click.Path(dir_okay=False), default=None,
              metavar="LITELLM.yaml",
              help="Route the traffic through this LiteLLM proxy config "
                   "(sets router.litellm_config).")
@precision_option(None)
@handle_errors
def run_command(experiment: str | None, overrides: tuple[str, ...], replications: int | None,
                workers: int | None, out_dir: str | None, overwrite: bool, fmt: str,
                as_json: bool,
                keep_requests: bool | None, no_plots: bool, router_config: str | None,
                precision: float | None, max_replications: int | None) -> None:
    """Run EXPERIMENT (a YAML file or built-in name; the built-in default if omitted).

    Writes a results folder (runs.parquet, summary.json, report.html, plots) and prints
    the verdict: SLOs per class, failures, overflow and cost against API-only.

    \b
    Examples:
      capsim run
      capsim run default -n 10 --set fleet.replicas=3
      capsim run default --set horizon=7d --format markdown > report.md
      capsim run default -n 10 --precision 5% --max-replications 80
    """
    from sim.core.files import check_out_dir, default_out  # (startup speed: see sim.cli)
    from sim.experiment.config import load_experiment
    from sim.experiment.run import run_and_write
    from sim.report.document import dumps

    if router_config is not None:
        overrides = (*overrides, f"router.litellm_config={Path(router_config).resolve()}")
    exp = load_experiment(experiment, list(overrides), replications=replications)
    out = Path(out_dir) if out_dir else default_out(
        Path("results"), f"{exp.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    check_out_dir(out, overwrite=overwrite)  # before the simulation, not after it
    summary = run_and_write(exp, out, workers=workers, keep_requests=keep_requests,
                            plots=not no_plots, quiet=as_json, overwrite=overwrite, fmt=fmt,
                            precision=precision, max_replications=max_replications)
    if as_json:
        click.echo(dumps(summary))

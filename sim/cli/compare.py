"""``capsim compare``: every variant of an experiment on the same traffic, side by side.

A thin layer over :func:`sim.compare`; bad input is one line and exit status 2, Ctrl-C
exit status 130 (completed variants stay on disk).
"""

from __future__ import annotations

import click

from sim.cli.common import (
    format_option,
    out_option,
    overwrite_option,
    replications_option,
    set_option,
    workers_option,
)
from sim.core.errors import ConfigError

__all__ = ["compare_command"]


@click.command("compare")
@click.argument("experiment", required=False)
@click.option("--variant", "names", multiple=True, metavar="NAME",
              help="Run only these variants (default: all).")
@set_option("Override a field of every variant, e.g. --set horizon=7d")
@replications_option("Monte Carlo replications per variant (default: the experiment's).")
@workers_option("Worker processes (default: all cores).")
@out_option("Output folder (default: results/<name>-compare-<timestamp>/).")
@overwrite_option()
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@format_option()
def compare_command(experiment: str | None, names: tuple[str, ...], overrides: tuple[str, ...],
                    replications: int | None, workers: int | None, out_dir: str | None,
                    overwrite: bool, no_plots: bool, fmt: str) -> None:
    """Run every variant of EXPERIMENT on the same traffic and compare them.

    Writes one results folder per variant, comparison.json and report.html.

    \b
    Examples:
      capsim compare fleet-dynamics -n 5
      capsim compare fleet-dynamics --variant peak-fixed --variant trough-hybrid \\
        --set horizon=7d --format markdown
    """
    from sim.study.compare import compare  # (startup speed: see sim.cli)

    try:
        compare(experiment, names, overrides=overrides, replications=replications,
                workers=workers, out=out_dir, plots=not no_plots, quiet=False,
                overwrite=overwrite, fmt=fmt)
    except ConfigError as exc:
        click.echo(f"capsim: error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    except KeyboardInterrupt:
        click.echo("capsim: interrupted; completed variants are intact", err=True)
        raise click.exceptions.Exit(130) from None

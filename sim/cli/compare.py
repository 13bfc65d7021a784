"""``capsim compare``: every variant of an experiment on the same traffic, side by side.

A thin layer over :func:`sim.study.compare.load_variants` and
:func:`sim.study.compare.run_comparison`; bad input is one line and exit status 2, Ctrl-C
exit status 130 (completed variants stay on disk).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from sim.core.errors import ConfigError

__all__ = ["compare_command"]


@click.command("compare")
@click.argument("experiment", required=False)
@click.option("--variant", "names", multiple=True, metavar="NAME",
              help="Run only these variants (default: all).")
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override a field of every variant, e.g. --set horizon=7d")
@click.option("--replications", "-n", type=click.IntRange(min=1), default=None,
              help="Monte Carlo replications per variant (default: the experiment's).")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: all cores).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: results/<name>-compare-<timestamp>/).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
def compare_command(experiment: str | None, names: tuple[str, ...], overrides: tuple[str, ...],
                    replications: int | None, workers: int | None, out_dir: str | None,
                    no_plots: bool) -> None:
    """Run every variant of EXPERIMENT on the same traffic and compare them."""
    from sim.study.compare import load_variants, run_comparison  # (startup: see sim.cli)

    try:
        variants = load_variants(experiment, list(overrides), names=names,
                                 replications=replications)
        first = next(iter(variants.values()))
        out = Path(out_dir) if out_dir else Path("results") / (
            f"{first.name}-compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        run_comparison(variants, out, workers=workers, plots=not no_plots)
    except ConfigError as exc:
        click.echo(f"capsim: error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    except KeyboardInterrupt:
        click.echo("capsim: interrupted; completed variants are intact", err=True)
        raise click.exceptions.Exit(130) from None

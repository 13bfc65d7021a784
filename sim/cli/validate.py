"""``capsim validate``: why to trust the numbers, on the user's own machine.

Runs the queueing-theory self-checks and the fidelity checks of
:mod:`sim.study.validate` (derived profiles replayed against published measurements of
real vLLM servers, ``validation/measurements.csv`` of the source checkout, plus profiles
fitted on some load points and scored on held-back ones) and prints the table: quick by
default (a representative subset, about a minute on 2 cores), ``--full`` for every set.
Progress goes to stderr. The exit status is 0 whatever the errors are (the command
reports, it does not judge); 2 for bad input (an unknown ``--set``, a missing
measurements file), one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from sim.cli.common import handle_errors

__all__ = ["validate_command"]


@click.command("validate")
@click.option("--full", is_flag=True, help="Every representable set and a longer theory run "
              "(several minutes); default: a representative quick subset.")
@click.option("--set", "set_ids", multiple=True, metavar="SET_ID",
              help="Only this measurement set (repeatable); see validation/README.md.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]),
              default="table", show_default=True, help="Output format.")
@click.option("--measurements", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The measurements table (default: the checkout's "
                   "validation/measurements.csv).")
@click.option("--no-theory", is_flag=True, help="Skip the queueing-theory self-checks.")
@click.option("--no-fit", is_flag=True, help="Skip the fitted-profile (held-back) checks.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the replayed lengths and arrivals.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@handle_errors
def validate_command(full: bool, set_ids: tuple[str, ...], fmt: str,
                     measurements: Path | None, no_theory: bool, no_fit: bool, seed: int,
                     quiet: bool) -> None:
    """Queueing-theory self-checks and fidelity against published vLLM measurements."""
    from sim.study.validate import run_validation
    from sim.study.validate_text import to_data, to_markdown, to_text

    def progress(message: str) -> None:
        if not quiet:
            click.echo(f"capsim validate: {message}", err=True)

    report = run_validation(full=full, sets=list(set_ids) or None, measurements=measurements,
                            seed=seed, progress=progress, theory=not no_theory,
                            fits=not no_fit)
    if fmt == "json":
        text = json.dumps(to_data(report), indent=1, allow_nan=False)
    elif fmt == "markdown":
        text = to_markdown(report)
    else:
        text = to_text(report)
    sys.stdout.write(text + "\n")

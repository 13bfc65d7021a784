"""The ``capsim`` command line: thin wrappers over the library.

Every command turns a ConfigError (bad input) into one line on stderr and exit status 2,
and an interrupt into a short message and status 130; results are written atomically.
"""

from __future__ import annotations

import functools
import json
import sys
from datetime import datetime
from pathlib import Path

import click

from .errors import ConfigError

__all__ = ["main"]


def handle_errors(fn):
    """Bad input -> one line + exit 2; Ctrl-C -> exit 130; never a traceback for either."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"capsim: error: {exc}", err=True)
            raise click.exceptions.Exit(2) from None
        except KeyboardInterrupt:
            click.echo("capsim: interrupted; completed files are intact, partial ones were "
                       "discarded", err=True)
            raise click.exceptions.Exit(130) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capsim")
def main() -> None:
    """capsim: how many GPUs, at what cost and latency, and how much API overflow?"""


@main.command()
@click.argument("experiment", required=False)
@click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
              help="Override any experiment field, e.g. --set fleet.replicas=6")
@click.option("--replications", "-n", type=click.IntRange(min=1), default=None,
              help="Number of Monte Carlo replications (default: the experiment's).")
@click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: all cores). Results do not depend on it.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: results/<name>-<timestamp>/).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary JSON on stdout.")
@click.option("--requests/--no-requests", "keep_requests", default=None,
              help="Also write requests.parquet (one row per request; small runs).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--router-config", type=click.Path(dir_okay=False), default=None,
              metavar="LITELLM.yaml",
              help="Route the traffic through this LiteLLM proxy config "
                   "(sets router.litellm_config).")
@handle_errors
def run(experiment, overrides, replications, workers, out_dir, as_json, keep_requests,
        no_plots, router_config):
    """Run EXPERIMENT (a YAML file or built-in name; the built-in default if omitted)."""
    from .config import load_experiment
    from .outputs import run_and_write

    if router_config is not None:
        overrides = (*overrides, f"router.litellm_config={Path(router_config).resolve()}")
    exp = load_experiment(experiment, list(overrides), replications=replications)
    out = Path(out_dir) if out_dir else Path("results") / (
        f"{exp.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    summary = run_and_write(exp, out, workers=workers, keep_requests=keep_requests,
                            plots=not no_plots, quiet=as_json)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=_num))


def _num(x):
    return x.item() if hasattr(x, "item") else str(x)


def _attach_optional_commands() -> None:
    """Commands that live in their own modules."""
    try:
        from .workload_cli import workload_group
    except ImportError:  # pragma: no cover - during development
        return
    main.add_command(workload_group)
    from .compare import compare_command

    main.add_command(compare_command)
    from . import sweep_cli  # noqa: F401 - registers sweep, plan and breakeven on main


_attach_optional_commands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

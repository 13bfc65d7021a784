"""Command line for workloads: inspect a workload, or fit one to a trace.

``workload_group`` is a click group named ``workload`` with two commands:

* ``capsim workload show SPEC [--horizon 7d] [--seed 0] [--plot out.png]`` - generate the
  workload and print requests and tokens per hour (as a text bar chart by hour of day),
  length percentiles, the class mix and tokens per 30-day month. ``SPEC`` is an
  experiment file (its ``workload``, ``horizon`` and ``seed`` keys are used, the rest is
  ignored; ``--horizon`` / ``--seed`` override them), a workload file or a built-in name.
* ``capsim workload fit TRACE [-o out.yaml]`` - fit Poisson/diurnal arrivals and
  lognormal lengths to a trace and write the workload YAML (stdout without ``-o``).

``show`` is the default command: when the first argument is not a command name,
``capsim workload SPEC ...`` means ``capsim workload show SPEC ...`` (so a workload file
literally named ``fit`` needs the explicit ``show``). Bad input prints one line to stderr
and exits with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from sim.core.errors import ConfigError
from sim.core.files import atomic_write
from sim.core.loader import read_yaml
from sim.core.units import format_duration, parse_duration_s
from sim.report.formats import format_count
from sim.report.progress import progress_columns
from sim.workload.fitting import fit_trace
from sim.workload.streams import (
    WorkloadConfig,
    check_volume,
    describe,
    horizon_problem,
    parse_workload,
)

__all__ = ["workload_group", "load_spec", "print_summary"]

_DEFAULT_HORIZON = "7d"
_BAR_WIDTH = 32


class _DefaultCommandGroup(click.Group):
    """A group that runs ``default_command`` when the first argument names no command."""

    def __init__(self, *args: Any, default_command: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default_command = default_command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group("workload", cls=_DefaultCommandGroup, default_command="show")
def workload_group() -> None:
    """Inspect a workload (`capsim workload SPEC`) or fit one to a trace (`fit`)."""


def _fail(exc: ConfigError) -> None:
    click.echo(f"capsim: error: {exc}", err=True)
    raise click.exceptions.Exit(2)


_PLOT_FORMATS = (".png", ".svg", ".pdf")


def _check_plot_path(plot: str) -> None:
    """``--plot``'s format and folder, before any work is done."""
    if Path(plot).suffix.lower() not in _PLOT_FORMATS:
        raise ConfigError(f"unknown plot format '{Path(plot).suffix or '(none)'}'; use "
                          f"{', '.join(_PLOT_FORMATS)}", file=plot, field="--plot")
    if Path(plot).is_symlink():
        raise ConfigError("is a symbolic link; capsim does not write through links",
                          file=plot, field="--plot")


@workload_group.command("show")
@click.argument("spec")
@click.option("--horizon", default=None, help="Duration to generate, e.g. 7d (default: the "
              "experiment's horizon, else 7d).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Root seed (default: the experiment's, else 0).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG of requests and tokens per hour.")
def show_command(spec: str, horizon: str | None, seed: int | None, plot: str | None) -> None:
    """Generate SPEC (experiment file, workload file or built-in name) and summarise it."""
    try:
        if plot:
            _check_plot_path(plot)
        wl, horizon_s, seed_value = load_spec(spec, horizon=horizon, seed=seed)
        stats = _describe_with_progress(wl, horizon_s, seed_value)
        if plot:
            from sim.report.plots import plot_workload  # matplotlib: ~0.35 s; see sim.cli

            plot_workload(stats, Path(plot))
    except ConfigError as exc:
        _fail(exc)
    print_summary(stats, Console())


def _describe_with_progress(wl: WorkloadConfig, horizon_s: float, seed: int) -> dict:
    with Progress(*progress_columns(), console=Console(stderr=True), transient=True,
                  disable=not sys.stderr.isatty()) as progress:
        task = progress.add_task(f"{wl.name or 'workload'}: days generated",
                                 total=horizon_s / 86400.0)
        return describe(wl, horizon_s, seed,
                        on_progress=lambda t_s: progress.update(task, completed=t_s / 86400.0))


@workload_group.command("fit")
@click.argument("trace")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the workload YAML here (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["auto", "azure", "vidur", "mooncake"]),
              default="auto", show_default=True, help="Trace format.")
def fit_command(trace: str, output: str | None, fmt: str) -> None:
    """Fit Poisson/diurnal arrivals and lognormal lengths to TRACE."""
    try:
        fitted = fit_trace(trace, fmt)
        parse_workload(fitted, field="")  # what we write must load again
        text = f"# Fitted by `capsim workload fit` to {trace}\n" + yaml.safe_dump(
            fitted, sort_keys=False, default_flow_style=None, width=100)
        if output is None:
            click.echo(text, nl=False)
        else:
            _write_text(Path(output), text)
    except ConfigError as exc:
        _fail(exc)


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole (a temporary file renamed into place), never
    through a symbolic link."""
    if path.is_symlink():
        raise ConfigError("is a symbolic link; capsim does not write through links (give "
                          "the file itself)", file=str(path), field="--output")
    if path.exists() and not path.is_file():
        raise ConfigError("exists and is not a regular file", file=str(path), field="--output")
    try:
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror or exc}", file=str(path),
                          field="--output") from None


# -- loading -----------------------------------------------------------------------------

def load_spec(spec: str, *, horizon: str | None = None,
              seed: int | None = None) -> tuple[WorkloadConfig, float, int]:
    """(workload, horizon in seconds, seed) from an experiment file, a workload file or a
    built-in name; ``horizon`` / ``seed`` override an experiment's own."""
    path = Path(spec)
    data = read_yaml(path) if path.is_file() else None
    if isinstance(data, dict) and "workload" in data:
        wl = parse_workload(data["workload"], base_dir=path.parent, file=str(path))
        if not wl.name:
            wl = wl.model_copy(update={"name": str(data.get("name") or path.stem)})
        horizon_s = _horizon_s(horizon, data.get("horizon"), str(path))
        check_volume(wl, horizon_s, file=str(path))
        return wl, horizon_s, _seed(seed, data.get("seed"), str(path))
    wl = parse_workload(spec, base_dir=None, field="")
    horizon_s = _horizon_s(horizon, None, None)
    check_volume(wl, horizon_s, file=spec)
    return wl, horizon_s, _seed(seed, None, None)



def _horizon_s(option: str | None, from_file: Any, file: str | None) -> float:
    value, file, field = ((option, None, "--horizon") if option is not None
                          else (from_file, file, "horizon") if from_file is not None
                          else (_DEFAULT_HORIZON, None, "--horizon"))
    try:
        horizon_s = parse_duration_s(value)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, field=field) from None
    problem = horizon_problem(horizon_s)
    if problem:
        raise ConfigError(problem, file=file, field=field)
    return horizon_s


def _seed(option: int | None, from_file: Any, file: str | None) -> int:
    if option is not None:
        return option
    if from_file is None:
        return 0
    if isinstance(from_file, bool) or not isinstance(from_file, int) or from_file < 0:
        raise ConfigError(f"expected a non-negative whole number (got {from_file!r})",
                          file=file, field="seed")
    return from_file


# -- output ------------------------------------------------------------------------------

def print_summary(stats: dict[str, Any], console: Console) -> None:
    """Text report of :func:`sim.workload.streams.describe` output."""
    console.print(f"[bold]workload {stats['name'] or '(unnamed)'}[/bold]: "
                  f"{format_duration(stats['horizon_s'])}, {stats['requests']:,} requests, "
                  f"{stats['mean_rate_per_s']:.3g} req/s on average")
    console.print(_hour_table(stats["hour_of_day"]))
    console.print(_length_table(stats))
    console.print(_class_table(stats["classes"]))
    tokens = format_count(stats["tokens_per_month"])
    console.print(f"tokens per 30-day month: [bold]{tokens}[/bold] "
                  f"(input {format_count(stats['input_tokens_per_month'])}, "
                  f"output {format_count(stats['output_tokens_per_month'])})")


def _hour_table(hod: dict[str, list[float]]) -> Table:
    table = Table(title="mean per hour, by hour of day", title_justify="left")
    for name in ("hour", "req/h", "", "tokens/h"):
        table.add_column(name, justify="left" if name in ("", "hour") else "right")
    top = max(max(hod["requests_per_hour"]), 1e-300)
    for h, (req, tok) in enumerate(zip(hod["requests_per_hour"], hod["tokens_per_hour"],
                                       strict=True)):
        bar = "█" * round(_BAR_WIDTH * req / top)
        table.add_row(f"{h:02d}:00", format_count(req), f"[cyan]{bar}[/cyan]", format_count(tok))
    return table


def _length_table(stats: dict[str, Any]) -> Table:
    table = Table(title="tokens per request", title_justify="left")
    for name in ("", "mean", "p50", "p90", "p99", "max"):
        table.add_column(name, justify="left" if not name else "right")
    for key in ("input_tokens", "output_tokens"):
        s = stats[key]
        table.add_row(key.removesuffix("_tokens"), *(f"{s[k]:,.0f}" for k in
                                                     ("mean", "p50", "p90", "p99", "max")))
    return table


def _class_table(classes: dict[str, dict[str, float]]) -> Table:
    table = Table(title="class mix", title_justify="left")
    for name in ("class", "requests", "share", "tokens"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for name, c in classes.items():
        table.add_row(name, f"{c['requests']:,}", f"{c['share']:.1%}", format_count(c["tokens"]))
    return table

"""What every ``capsim`` command shares: turning bad input and Ctrl-C into exit statuses.

The contract (README, "Bad input"): bad input -- a :class:`~sim.core.errors.ConfigError`
or a click usage error -- is one ``capsim: error:`` line on stderr and exit status 2; an
interrupt (Ctrl-C or SIGTERM) is a short message and status 130 after the partial output
is removed; anything else (a bug) is one ``capsim: error: internal error`` line and status
1. None of them prints a traceback unless ``--debug`` or ``CAPSIM_DEBUG=1`` asks for one
(:func:`guarded`, used by the top-level group).
"""

from __future__ import annotations

import functools
import math
import os
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from sim.core.errors import ConfigError

__all__ = ["handle_errors", "json_default", "set_option", "replications_option",
           "workers_option", "out_option", "overwrite_option", "guarded", "debug_wanted",
           "FINITE_FLOAT", "FINITE_POSITIVE", "MAX_REPLICATIONS", "MAX_WORKERS",
           "format_option", "FORMATS", "precision_option", "PRECISION"]

FORMATS = ("table", "json", "csv", "markdown")
"""The ``--format`` choices (:data:`sim.report.document.FORMATS`; repeated here so that
``capsim --help`` does not import the library)."""

MAX_REPLICATIONS = 100_000
"""The most Monte Carlo replications a command accepts (``-n``)."""
MAX_WORKERS = 4096

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Bad input -> one line + exit 2; Ctrl-C -> exit 130; never a traceback for either."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.echo(f"capsim: error: {exc}", err=True)
            raise click.exceptions.Exit(2) from None
        except KeyboardInterrupt:
            click.echo("capsim: interrupted; completed files are intact, partial ones were "
                       "discarded", err=True)
            raise click.exceptions.Exit(130) from None
    return wrapper  # type: ignore[return-value]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def debug_wanted(argv: list[str] | None) -> bool:
    """``--debug`` before the command, or ``CAPSIM_DEBUG=1``: show tracebacks."""
    return os.environ.get("CAPSIM_DEBUG", "") not in ("", "0") or "--debug" in (argv or [])


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: clean up like Ctrl-C


def guarded(invoke: Callable[[], Any], *, debug: bool = False) -> int:
    """Run ``invoke`` (a click ``main`` in non-standalone mode) and turn every way out
    into an exit status and at most a few lines on stderr (see the module docstring)."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        previous = None
    try:
        result = invoke()
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        where = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"capsim: error: {where}{_one_line(exc.format_message())}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"capsim: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except ConfigError as exc:
        if debug:
            raise
        click.echo(f"capsim: error: {exc}", err=True)
        return 2
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("capsim: interrupted; completed files are intact, partial ones were "
                   "discarded", err=True)
        return 130
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        if debug:
            raise
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        click.echo(f"capsim: error: internal error ({type(exc).__name__}: "
                   f"{_one_line(str(exc))[:200]}{where}); please report it with the command "
                   "line; --debug or CAPSIM_DEBUG=1 shows the traceback", err=True)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _FiniteFloat(click.ParamType):
    """A finite float, positive if asked (click's FLOAT takes 'nan' and 'inf')."""

    name = "number"

    def __init__(self, *, positive: bool = False):
        self.positive = positive

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or abs(number) > 1e15:
            self.fail(f"{value!r} is not a finite number (at most 1e15)", param, ctx)
        if self.positive and not number > 0:
            self.fail(f"{value!r} is not a positive number", param, ctx)
        return number


FINITE_FLOAT = _FiniteFloat()
FINITE_POSITIVE = _FiniteFloat(positive=True)


def json_default(x: Any) -> Any:
    """``json.dumps``'s fallback for numpy scalars (and anything else: its text)."""
    return x.item() if hasattr(x, "item") else str(x)


# The options that several commands share (each with its own help text).

def set_option(help: str) -> Callable[[F], F]:
    """``--set PATH=VALUE`` (repeatable): experiment overrides, as ``overrides``."""
    return click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=help)


def replications_option(help: str) -> Callable[[F], F]:
    """``--replications/-n N``: Monte Carlo replications (None: the experiment's)."""
    return click.option("--replications", "-n", type=click.IntRange(1, MAX_REPLICATIONS),
                        default=None, help=help)


def workers_option(help: str) -> Callable[[F], F]:
    """``--workers/-j N``: worker processes (None: all cores)."""
    return click.option("--workers", "-j", type=click.IntRange(1, MAX_WORKERS), default=None,
                        help=help)


def out_option(help: str) -> Callable[[F], F]:
    """``--out DIR``: the output folder, as ``out_dir``."""
    return click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                        help=help)


def overwrite_option() -> Callable[[F], F]:
    """``--overwrite``: replace an existing non-empty ``--out`` folder whole."""
    return click.option("--overwrite", is_flag=True,
                        help="Replace an existing non-empty --out folder (whole: the old "
                             "results stay until the new ones are complete).")


def format_option() -> Callable[[F], F]:
    """``--format table|json|csv|markdown``: how the report is printed, as ``fmt``."""
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table",
                        show_default=True,
                        help="How to print the report: a table for people (every number "
                             "in full at any width, and when piped), strict JSON (null "
                             "for missing values), CSV (one row per cell) or Markdown.")


class _Precision(click.ParamType):
    """A relative half-width: ``5%``, ``0.05`` or ``off``."""

    name = "precision"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float | None:
        if value is None or isinstance(value, float):
            return value
        text = str(value).strip().lower()
        if text in ("off", "none", "0", "0%"):
            return None
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            self.fail(f"{value!r} is not a precision (write e.g. 5% or 0.05, or off)",
                      param, ctx)
        if not (math.isfinite(number) and 0 < number < 1):
            self.fail(f"{value!r} is not a precision between 0% and 100%", param, ctx)
        return number


PRECISION = _Precision()


def precision_option(default: str | None) -> Callable[[F], F]:
    """``--precision 5%`` and ``--max-replications N``: sequential replication, as
    ``precision`` (None: off) and ``max_replications``."""
    def decorate(fn: F) -> F:
        fn = click.option(
            "--max-replications", type=click.IntRange(2, MAX_REPLICATIONS), default=None,
            help="With --precision: the most replications per configuration (default: "
                 "4x the starting number).")(fn)
        return click.option(
            "--precision", type=PRECISION, default=default, show_default=True,
            metavar="PCT|off",
            help="Sequential replication: add replications in batches (of the starting "
                 "number) until the 95% intervals that decide the verdict have relative "
                 "half-widths within PCT, or the cap is reached; same seed, same numbers.")(fn)
    return decorate

"""What every ``capsim`` command shares: turning bad input and Ctrl-C into exit statuses.

Bad input (a :class:`~sim.core.errors.ConfigError`) is one line on stderr and exit status 2;
an interrupt is a short message and status 130; neither ever prints a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from sim.core.errors import ConfigError

__all__ = ["handle_errors", "json_default", "set_option", "replications_option",
           "workers_option", "out_option"]

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


def json_default(x: Any) -> Any:
    """``json.dumps``'s fallback for numpy scalars (and anything else: its text)."""
    return x.item() if hasattr(x, "item") else str(x)


# The options that several commands share (each with its own help text).

def set_option(help: str) -> Callable[[F], F]:
    """``--set PATH=VALUE`` (repeatable): experiment overrides, as ``overrides``."""
    return click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE", help=help)


def replications_option(help: str) -> Callable[[F], F]:
    """``--replications/-n N``: Monte Carlo replications (None: the experiment's)."""
    return click.option("--replications", "-n", type=click.IntRange(min=1), default=None,
                        help=help)


def workers_option(help: str) -> Callable[[F], F]:
    """``--workers/-j N``: worker processes (None: all cores)."""
    return click.option("--workers", "-j", type=click.IntRange(min=1), default=None,
                        help=help)


def out_option(help: str) -> Callable[[F], F]:
    """``--out DIR``: the output folder, as ``out_dir``."""
    return click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                        help=help)

"""The ``capsim`` command line: thin wrappers over the library, one module per command group.

``main`` is the click group; each command lives in its own module and is registered here
with ``add_command`` (nothing else imports this package): ``run`` (:mod:`sim.cli.run`),
``workload`` (:mod:`sim.cli.workload`), ``compare`` (:mod:`sim.cli.compare`),
``sweep``, ``plan``, ``breakeven`` (:mod:`sim.cli.study`), ``list`` (:mod:`sim.cli.listing`)
and ``report`` (:mod:`sim.cli.report`). Every command turns a
ConfigError (bad input) into one line on stderr and exit status 2, and an interrupt into a
short message and status 130 (:mod:`sim.cli.common`); results are written atomically.

Startup speed (measured 2026-12-05 on the 2-core development machine): importing the
simulation library (pydantic schemas, scipy, matplotlib, pyarrow) takes ~2.0 s, click alone
~0.13 s, so the command modules import the library inside each command, and
``capsim --help`` or a mistyped option answers at once. These are the only function-level
imports besides the optional dask.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from sim.cli.common import debug_wanted, guarded
from sim.cli.compare import compare_command
from sim.cli.listing import list_command
from sim.cli.profile import profile_group
from sim.cli.report import report_command
from sim.cli.run import run_command
from sim.cli.study import breakeven_command, plan_command, sweep_command
from sim.cli.validate import validate_command
from sim.cli.workload import workload_group
from sim.serving.step_core import IMPLEMENTATION as STEP_CORE

__all__ = ["main"]


class _Capsim(click.Group):
    """The top-level group: every way out is an exit status and at most a few lines on
    stderr, never a traceback (:func:`sim.cli.common.guarded`); click's own usage errors
    follow the same ``capsim: error:`` form."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        code = guarded(lambda: super(_Capsim, self).main(
            argv, prog_name, complete_var, standalone_mode=False, **extra),
            debug=debug_wanted(argv))
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=_Capsim, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capsim",
                      message=f"%(prog)s, version %(version)s (step core: {STEP_CORE})")
@click.option("--debug", is_flag=True, expose_value=False,
              help="Show a traceback for an internal error (also CAPSIM_DEBUG=1).")
def main() -> None:
    """capsim: how many GPUs, at what cost and latency, and how much API overflow?"""


for _command in (run_command, workload_group, compare_command, sweep_command, plan_command,
                 breakeven_command):
    main.add_command(_command)
main.add_command(profile_group)  # capsim profile derive | list | show | fit
main.add_command(validate_command)  # capsim validate
main.add_command(list_command)  # capsim list [experiments|workloads|profiles|apis|gpus|models]
main.add_command(report_command)  # capsim report DIR

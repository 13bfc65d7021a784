"""The ``capsim`` command line: thin wrappers over the library, one module per command group.

``main`` is the click group; each command lives in its own module and is registered here
with ``add_command`` (nothing else imports this package): ``run`` (:mod:`sim.cli.run`),
``workload`` (:mod:`sim.cli.workload`), ``compare`` (:mod:`sim.cli.compare`) and
``sweep``, ``plan``, ``breakeven`` (:mod:`sim.cli.study`). Every command turns a
ConfigError (bad input) into one line on stderr and exit status 2, and an interrupt into a
short message and status 130 (:mod:`sim.cli.common`); results are written atomically.

Startup speed (measured 2026-12-05 on the 2-core development machine): importing the
simulation library (pydantic schemas, scipy, matplotlib, pyarrow) takes ~2.0 s, click alone
~0.13 s, so the command modules import the library inside each command, and
``capsim --help`` or a mistyped option answers at once. These are the only function-level
imports besides the optional dask.
"""

from __future__ import annotations

import click

from sim.cli.compare import compare_command
from sim.cli.profile import profile_group
from sim.cli.run import run_command
from sim.cli.study import breakeven_command, plan_command, sweep_command
from sim.cli.workload import workload_group

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="capsim")
def main() -> None:
    """capsim: how many GPUs, at what cost and latency, and how much API overflow?"""


for _command in (run_command, workload_group, compare_command, sweep_command, plan_command,
                 breakeven_command):
    main.add_command(_command)
main.add_command(profile_group)  # capsim profile derive | list | show | fit

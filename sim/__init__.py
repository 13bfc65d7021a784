"""capsim: a discrete-event capacity simulator for hybrid LLM serving (GPU fleet + paid API).

The public Python API (everything in ``__all__``; the subpackages are the implementation)::

    import sim

    exp = sim.load_experiment("default", ["fleet.replicas=2"], replications=4)
    result = sim.run(exp, workers=2)           # Monte Carlo replications, in parallel
    result.runs                                # one row per replication (pyarrow.Table)
    result.to_pandas()                         # the same, as a pandas DataFrame
    result.metrics["cost.total_usd"]["mean"]   # each metric's mean and 95% CI
    result.write("results/two-replicas")       # runs.parquet, summary.json, plots

Studies over many configurations: :func:`sweep`, :func:`plan`, :func:`breakeven`
(:func:`static_breakeven` without simulation) and :func:`compare`. Bad input raises
:class:`ConfigError` (one line naming the file, the field and the problem).

Names are imported on first use (PEP 562), so ``import sim`` and the ``capsim`` command
line start in a fraction of a second instead of loading the whole library (~2 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for type checkers and readers
    from sim.core.errors import ConfigError
    from sim.experiment.config import Experiment, load_experiment
    from sim.experiment.run import RunResult, run
    from sim.study.breakeven import BreakevenResult, breakeven, static_breakeven
    from sim.study.compare import compare
    from sim.study.plan import PlanResult, plan
    from sim.study.sweep import SweepOutcome, sweep

__all__ = [
    "ConfigError",
    "Experiment",
    "load_experiment",
    "RunResult",
    "run",
    "SweepOutcome",
    "sweep",
    "PlanResult",
    "plan",
    "BreakevenResult",
    "breakeven",
    "static_breakeven",
    "compare",
]

_WHERE = {
    "ConfigError": "sim.core.errors",
    "Experiment": "sim.experiment.config",
    "load_experiment": "sim.experiment.config",
    "RunResult": "sim.experiment.run",
    "run": "sim.experiment.run",
    "SweepOutcome": "sim.study.sweep",
    "sweep": "sim.study.sweep",
    "PlanResult": "sim.study.plan",
    "plan": "sim.study.plan",
    "BreakevenResult": "sim.study.breakeven",
    "breakeven": "sim.study.breakeven",
    "static_breakeven": "sim.study.breakeven",
    "compare": "sim.study.compare",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""Monte Carlo: N independent replications of one experiment, in parallel.

Replication ``i`` uses the i-th child of ``SeedSequence(seed).spawn(N)``; it is a pure
function of (experiment, i), so the results are identical whatever the number of
workers or the order in which they finish (they are returned sorted by index).
Replications run on the executors of :mod:`sim.core.executors` (the same pool and wait
loop as a sweep): one worker runs them in this process; more fork a process pool whose
workers die with this process, are terminated on an interrupt or a failed run, and see a
Ctrl-C only between waits.

Profile uncertainty (issue #21): a replication serves with one draw of the profile's
step-time uncertainty (:func:`sim.experiment.replication.replication_profile`), so the
intervals across replications include "how sure are we of this GPU's speed".
:func:`profile_note` says so in one line from the rows alone (free);
:func:`profile_share` shows how much of each interval comes from it by running the same
replications again with the profile fixed at its point estimate (the same seeds, so the
same traffic and cost draws: common random numbers; it costs one more run) and comparing
the interval widths.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from sim.core.executors import bounded_map, default_workers, open_executor
from sim.core.stats import summarize
from sim.experiment.config import Experiment
from sim.experiment.replication import ReplicationResult, run_replication

__all__ = ["run_replications", "profile_note", "profile_share", "ProfileShare",
           "FACTOR_KEY"]

FACTOR_KEY = "input.profile.step_time_factor"
"""The row column of a replication's drawn step-time factor (a full decode step's time
over the point estimate's)."""
SINGLE_KEY = "input.profile.single_step_time_factor"
"""The same for a decode step of one sequence."""


def run_replications(exp: Experiment, *, workers: int | None = None,
                     keep_requests: bool | None = None,
                     on_done: Callable[[ReplicationResult], None] | None = None
                     ) -> list[ReplicationResult]:
    """Run every replication of ``exp``; ``on_done`` is called as each one finishes."""
    n = exp.config.replications
    workers = min(workers or default_workers(), n)
    run = functools.partial(run_replication, keep_requests=keep_requests)
    in_flight = 1 if workers == 1 else 2 * workers  # serial: report each one as it ends
    results: list[ReplicationResult] = []
    with open_executor("local", workers=workers) as executor:
        for _index, future in bounded_map(executor, run, range(n), max_in_flight=in_flight,
                                          args=lambda i: (exp, i)):
            res = future.result()
            results.append(res)
            if on_done:
                on_done(res)
    return sorted(results, key=lambda r: r.index)


def profile_note(exp: Experiment, rows: Sequence[Mapping[str, object]]) -> str | None:
    """One line on the profile uncertainty in these rows' intervals (None if none drawn)."""
    factors = [float(r[FACTOR_KEY]) for r in rows  # type: ignore[arg-type]
               if isinstance(r.get(FACTOR_KEY), int | float)]
    unc = exp.profile.step_uncertainty
    if not factors or unc is None:
        return None
    stated = []
    if unc.rel_std:
        stated.append(f"{unc.rel_std:.0%} on the whole step")
    stated += [f"{name} {sd:.0%}" for name, sd in unc.terms.items() if sd]
    single = [float(r[SINGLE_KEY]) for r in rows  # type: ignore[arg-type]
              if isinstance(r.get(SINGLE_KEY), int | float)]
    steps = f"full decode step x{min(factors):.2f} to x{max(factors):.2f}"
    if single:
        steps = (f"decode step of 1 sequence x{min(single):.2f} to x{max(single):.2f}, "
                 f"of {exp.profile.max_batch} x{min(factors):.2f} to x{max(factors):.2f}")
    return (f"Profile uncertainty is in these intervals: each replication drew its step time "
            f"(1 sd {', '.join(stated)}; {steps}); "
            "--set uncertainty.profile=false runs the same replications at the point "
            "estimate")


@dataclass(frozen=True)
class ProfileShare:
    """Each metric's interval with the profile drawn and with it fixed, and the share of
    the interval's width that the profile's uncertainty adds (``1 - fixed / drawn``; 0 when
    fixing it does not narrow the interval)."""

    drawn: dict[str, dict[str, float]]
    fixed: dict[str, dict[str, float]]

    def share(self, key: str) -> float:
        width = self.drawn[key]["ci95_high"] - self.drawn[key]["ci95_low"]
        fixed = self.fixed[key]["ci95_high"] - self.fixed[key]["ci95_low"]
        if not (math.isfinite(width) and math.isfinite(fixed)) or width <= 0:
            return math.nan
        return max(0.0, 1.0 - fixed / width)

    def lines(self) -> list[str]:
        """``key: mean (low-high); profile fixed: mean (low-high): X% of the width``."""
        out = []
        for key in self.drawn:
            d, f = self.drawn[key], self.fixed[key]
            out.append(f"{key}: {d['mean']:.4g} ({d['ci95_low']:.4g} to {d['ci95_high']:.4g});"
                       f" profile fixed: {f['mean']:.4g} ({f['ci95_low']:.4g} to "
                       f"{f['ci95_high']:.4g}): {self.share(key):.0%} of the width comes "
                       "from the profile")
        return out


def profile_share(exp: Experiment, results: Sequence[ReplicationResult], keys: Sequence[str],
                  *, workers: int | None = None) -> ProfileShare:
    """Run ``exp``'s replications again with the profile fixed (``uncertainty.profile``
    off) and compare the intervals of ``keys`` (as the reports compute them,
    :func:`sim.core.stats.summarize`) with those of ``results`` (the run with it drawn).
    Raises ValueError for a key no replication has."""
    fixed_exp = replace(exp, config=exp.config.model_copy(update={
        "uncertainty": exp.config.uncertainty.model_copy(update={"profile": False})}))
    fixed = run_replications(fixed_exp, workers=workers, keep_requests=False)
    drawn = summarize([r.row for r in results])
    still = summarize([r.row for r in fixed])
    for key in keys:
        if key not in drawn or key not in still:
            raise ValueError(f"no replication has the metric {key!r}")
    return ProfileShare({k: drawn[k] for k in keys}, {k: still[k] for k in keys})

"""Monte Carlo: N independent replications of one experiment, in parallel.

Replication ``i`` uses the i-th child of ``SeedSequence(seed).spawn(N)``; it is a pure
function of (experiment, i), so the results are identical whatever the number of
workers or the order in which they finish (they are returned sorted by index).
Replications run on the executors of :mod:`sim.core.executors` (the same pool and wait
loop as a sweep): one worker runs them in this process; more fork a process pool whose
workers die with this process, are terminated on an interrupt or a failed run, and see a
Ctrl-C only between waits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from sim.core.executors import bounded_map, default_workers, open_executor
from sim.experiment.config import Experiment
from sim.experiment.replication import ReplicationResult, run_replication

__all__ = ["run_replications"]


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

"""Monte Carlo: N independent replications of one experiment, in parallel.

Replication ``i`` uses the i-th child of ``SeedSequence(seed).spawn(N)``; it is a pure
function of (experiment, i), so the results are identical whatever the number of
workers or the order in which they finish (they are returned sorted by index).
Workers are a process pool over the machine's cores; they are shut down (and pending
work cancelled) when the command ends or is interrupted.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait

from .config import Experiment
from .runner import ReplicationResult, run_replication

__all__ = ["run_replications", "default_workers", "make_pool", "terminate_pool"]


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def make_pool(workers: int) -> Executor:
    """A process pool whose workers are forked (fast start, inherit loaded modules)."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def run_replications(exp: Experiment, *, workers: int | None = None,
                     keep_requests: bool | None = None,
                     on_done: Callable[[ReplicationResult], None] | None = None
                     ) -> list[ReplicationResult]:
    """Run every replication of ``exp``; ``on_done`` is called as each one finishes."""
    n = exp.config.replications
    workers = min(workers or default_workers(), n)
    results: list[ReplicationResult] = []
    if workers <= 1:
        for i in range(n):
            res = run_replication(exp, i, keep_requests=keep_requests)
            results.append(res)
            if on_done:
                on_done(res)
        return results
    from .executors import POLL_S, interrupt_at_safe_points

    pool = make_pool(workers)
    clean = False
    try:
        pending = {pool.submit(run_replication, exp, i, keep_requests=keep_requests)
                   for i in range(n)}
        with interrupt_at_safe_points() as check:  # (see there: Ctrl-C could hang the pool)
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                check()
                for fut in done:
                    res = fut.result()
                    results.append(res)
                    if on_done:
                        on_done(res)
        clean = True
    finally:
        if clean:
            pool.shutdown(wait=True)
        else:  # an interrupt or a failed run: the other runs' results would be discarded
            terminate_pool(pool)
    return sorted(results, key=lambda r: r.index)


def terminate_pool(pool: Executor) -> None:
    """Cancel what has not started and kill the workers now."""
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()
    pool.shutdown(wait=True)

"""The router's least-loaded bookkeeping against a brute-force reference.

Least-loaded picks the up replica with a free slot and the fewest running requests; ties
go to the one that reached that load first. The router keeps lazy buckets with stale
entries and rebuilds them every ``compact_mask + 1`` moves; the reference scans every
replica. A long random sequence of admissions, completions, failures and restarts
crosses many rebuilds.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.serving.replica import Replica, ReplicaSpec
from sim.serving.router import Router


def _reference(reps: list[Replica], reached: dict[int, int]) -> int | None:
    """Index of the least-loaded up replica with a free slot (earliest to reach its load)."""
    free = [r for r in reps if r.up and len(r.running) < r.max_batch]
    if not free:
        return None
    return min(free, key=lambda r: (len(r.running), reached[r.idx])).idx


@pytest.mark.parametrize("n_replicas", [1, 5, 200])
def test_least_loaded_matches_a_full_scan(n_replicas: int) -> None:
    spec = ReplicaSpec(rate_table=[0.0] + [1.0] * 4, max_batch=4)
    reps = [Replica(i, spec) for i in range(n_replicas)]
    router = Router(reps)
    clock = 0
    reached = {r.idx: 0 for r in reps}  # when each replica reached its current load
    rng = np.random.default_rng(5)
    for _ in range(30_000):
        clock += 1
        op = rng.random()
        if op < 0.5:  # admit onto the router's choice
            rep = router.least_loaded()
            want = _reference(reps, reached)
            assert (rep.idx if len(rep.running) < rep.max_batch else None) == want
            if want is None:
                continue
            rep.running.append(clock)
            reached[rep.idx] = clock
            router.moved(rep.idx, len(rep.running) - 1, len(rep.running))
        elif op < 0.97:  # a request ends somewhere
            busy = [r for r in reps if r.running]
            if busy:
                rep = busy[rng.integers(len(busy))]
                rep.running.pop()
                reached[rep.idx] = clock
                router.moved(rep.idx, len(rep.running) + 1, len(rep.running))
        else:  # a replica fails (keeps its requests, takes no more) or comes back
            rep = reps[rng.integers(n_replicas)]
            if rep.up:
                rep.up = False
                router.deactivate(rep.idx)
            else:
                rep.up = True
                reached[rep.idx] = clock
                router.activate(rep.idx)
        # The buckets hold no more than the live entries plus one rebuild interval.
        assert sum(map(len, router.buckets)) <= n_replicas + router.compact_mask + 2
    assert router._tick // (router.compact_mask + 1) >= 5  # rebuilds crossed

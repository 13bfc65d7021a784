"""Placement of requests on replicas.

The fleet has one **central FCFS waiting room** (per-stream FIFO queues merged by arrival
order, bounded in total by ``queue_limit``). A request starts at once if the placement
policy finds a replica that can admit it (free batch slot and enough KV cache);
otherwise it waits, and each completion pulls the oldest waiting requests onto replicas
that have room. A central queue is what Erlang-C assumes and what a load balancer with a
global queue does; per-replica queues would add join-the-wrong-queue effects.

Policies (all O(1) or O(log n) per decision; none scans the fleet):

* ``least_loaded``: the replica with the fewest running requests (ties: the one that
  reached that load first). Loads are small integers, so replicas sit in buckets by load
  with a pointer to the lowest non-empty bucket.
* ``round_robin``: the next replica in turn that has a free slot.
* ``power_of_two``: two replicas drawn at random; the less loaded one that has room,
  else the least-loaded replica.

If the chosen replica lacks KV room for the request, it waits (no fleet-wide search):
under the least-loaded rule that replica is the likeliest to have room anyway.
"""

from __future__ import annotations

import numpy as np

from .replica import Replica

__all__ = ["Router", "POLICIES"]

POLICIES = ("least_loaded", "round_robin", "power_of_two")


class Router:
    """Tracks replica loads and picks a replica for a request."""

    __slots__ = ("replicas", "policy", "buckets", "min_load", "rr_next", "_rng", "_draws",
                 "_draw_i", "n")

    def __init__(self, replicas: list[Replica], policy: str = "least_loaded",
                 rng: np.random.Generator | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown router policy {policy!r}")
        self.replicas = replicas
        self.n = len(replicas)
        self.policy = policy
        # buckets[b]: replicas with b running requests, as an insertion-ordered set (dict).
        self.buckets: list[dict[int, None]] = [dict.fromkeys(range(self.n))]
        self.min_load = 0
        self.rr_next = 0
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self._draws: list[int] = []
        self._draw_i = 0

    def moved(self, idx: int, old: int, new: int) -> None:
        """Replica ``idx`` went from ``old`` to ``new`` running requests."""
        buckets = self.buckets
        del buckets[old][idx]
        if new >= len(buckets):
            buckets.append({})
        buckets[new][idx] = None
        if new < self.min_load:
            self.min_load = new
        elif old == self.min_load and not buckets[old]:
            m = old
            while not buckets[m]:
                m += 1
            self.min_load = m

    def pick(self, need_kv: float) -> Replica | None:
        """A replica that can admit a request needing ``need_kv`` KV tokens, or None."""
        if self.n == 0:
            return None
        if self.policy == "least_loaded":
            rep = self.replicas[next(iter(self.buckets[self.min_load]))]
        elif self.policy == "round_robin":
            rep = self._round_robin()
        else:
            rep = self._two_choices()
        if rep is None or len(rep.heap) >= rep.max_batch or rep.kv_used + need_kv > rep.kv_cap:
            return None
        return rep

    def _round_robin(self) -> Replica | None:
        reps = self.replicas
        if self.min_load >= reps[0].max_batch:
            return None  # every replica is full
        i = self.rr_next
        for _ in range(self.n):
            rep = reps[i]
            i = i + 1 if i + 1 < self.n else 0
            if len(rep.heap) < rep.max_batch:
                self.rr_next = i
                return rep
        return None

    def _two_choices(self) -> Replica | None:
        if self._draw_i + 2 > len(self._draws):
            self._draws = self._rng.integers(0, self.n, 8192).tolist()
            self._draw_i = 0
        a = self.replicas[self._draws[self._draw_i]]
        b = self.replicas[self._draws[self._draw_i + 1]]
        self._draw_i += 2
        best = a if len(a.heap) <= len(b.heap) else b
        if len(best.heap) < best.max_batch:
            return best
        return self.replicas[next(iter(self.buckets[self.min_load]))]

"""Placement of requests on replicas.

The fleet has one **central FCFS waiting room** (per-stream FIFO queues merged by arrival
order, bounded in total by ``queue_limit``). A request starts at once if the placement
policy finds a replica that can admit it (free batch slot and enough KV cache);
otherwise it waits, and each completion pulls the oldest waiting requests onto replicas
that have room. A central queue is what Erlang-C assumes and what a load balancer with a
global queue does; per-replica queues would add join-the-wrong-queue effects.

Policies (all O(1) or O(log n) per decision; none scans the fleet):

* ``least_loaded``: the replica with the fewest running requests among those with a
  free batch slot (ties: the one that reached that load first). Loads are small integers,
  so replicas sit in FIFO buckets by load, searched upwards from a lower bound on the
  least load.
  On a fleet of one profile this is the least-loaded replica; on a mixed fleet a full
  small replica does not hide a larger one that still has room.
* ``round_robin``: the next replica in turn that has a free slot.
* ``power_of_two``: two replicas drawn at random; the less loaded one that has room,
  else the least-loaded replica.

If the chosen replica lacks KV room for the request, it waits (no fleet-wide search):
under the least-loaded rule that replica is the likeliest to have room anyway.
"""

from __future__ import annotations

from collections import deque
from operator import attrgetter

import numpy as np

from sim.serving.replica import INF, Replica, ReplicaSpec

__all__ = ["Router", "POLICIES"]

POLICIES = ("least_loaded", "round_robin", "power_of_two")
_REP_TICK = attrgetter("tick")
# What least_loaded returns when every up replica is full (or none is up): no slot, no KV.
_FULL = Replica(-1, ReplicaSpec(rate_table=[0.0], max_batch=0, kv_capacity_tokens=0.0),
                up=False)
_FULL.tick = 0  # its entry is always live
_FULL.kv_cap = -INF  # no request fits, not even one needing no KV


class Router:
    """Tracks the loads of the replicas that are up and picks a replica for a request.

    Least-loaded bookkeeping: ``buckets[b]`` is a FIFO (deque) of ``(replica, tick)``
    entries for the up replicas with ``b`` running requests and a free slot, in the order
    they reached that load (a full replica has none: its ``tick`` is -1, as for one that is
    not up).
    A move appends a fresh entry and leaves the old one behind, stale (its tick is no
    longer the replica's ``tick``). ``min_load`` is a lower bound on the least load:
    picking drops stale heads and climbs past buckets with no live entry. Every
    ``compact_mask + 1`` moves (a power of two, at least 1,024 and at least 8 per
    replica), all buckets are rebuilt from the replicas' own state (``_compact_all``), so
    they never hold more than that many stale entries. Every operation is O(1) amortized
    whatever the fleet size. The buckets outnumber the longest rate table
    (no load reaches the last one), so a move needs no bounds check; the last bucket
    holds a sentinel that is always live and stands for an always-full replica, so
    picking needs no end check either.
    (There is no live count per bucket: keeping it cost ~30 bytecodes per request.)
    An insertion-ordered dict per bucket was O(1) on paper, but ``next(iter(d))`` scans
    the slots of every key deleted from the dict's front since its last resize: on 1,024
    replicas each pick walked hundreds of them.
    """

    __slots__ = ("replicas", "policy", "buckets", "_tick", "min_load", "compact_mask",
                 "rr_next", "_rng", "_draws", "_draw_i", "active", "_pos")

    def __init__(self, replicas: list[Replica], policy: str = "least_loaded",
                 rng: np.random.Generator | None = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown router policy {policy!r}")
        self.replicas = replicas
        self.policy = policy
        self.buckets: list[deque[tuple[Replica, int]]] = [deque([(_FULL, 0)])]
        self.fit(max((len(rep.rates) for rep in replicas), default=1))
        self.compact_mask = (1 << max(10, (8 * len(replicas)).bit_length())) - 1
        for rep in replicas:
            rep.tick = -1  # in no bucket (not up, or full)
        self._tick = 0
        self.min_load = 0
        self.active: list[int] = []  # up replicas, for round-robin and random choices
        self._pos: dict[int, int] = {}
        self.rr_next = 0
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self._draws: list[float] = []
        self._draw_i = 0
        for rep in replicas:
            if rep.up:
                self.activate(rep.idx)

    def fit(self, n_rates: int) -> None:
        """Make room for loads below ``n_rates`` (call when a replica's rate table grows),
        keeping the sentinel's bucket last."""
        if len(self.buckets) > n_rates:
            return
        sentinel = self.buckets.pop()
        while len(self.buckets) < n_rates:
            self.buckets.append(deque())
        self.buckets.append(sentinel)

    def _enter(self, idx: int, load: int) -> None:
        """Append replica ``idx`` to bucket ``load`` (it reached that load now)."""
        rep = self.replicas[idx]
        if load >= rep.max_batch:
            rep.tick = -1  # full: no candidate until a request ends
            return
        self._tick = tick = self._tick + 1
        rep.tick = tick
        self.fit(load + 1)
        self.buckets[load].append((rep, tick))
        if load < self.min_load:
            self.min_load = load
        if not tick & self.compact_mask:  # now and then, drop the stale entries
            self._compact_all()

    def _compact_all(self) -> None:
        """Rebuild the buckets with only their live entries: each replica with a live
        entry (tick >= 0) sits in the bucket of its load, and a bucket's FIFO order is the
        order of its replicas' ticks (when each reached that load). O(R log R) for R
        replicas, every ``compact_mask + 1 >= 8R`` moves: O(1) amortized. (Filtering the
        entries instead cost ~80 ns per entry, half of them stale between rebuilds.)"""
        buckets = self.buckets
        for q in buckets[:-1]:  # the last one holds the sentinel
            q.clear()
        for rep in sorted((r for r in self.replicas if r.tick >= 0), key=_REP_TICK):
            buckets[len(rep.running)].append((rep, rep.tick))

    def activate(self, idx: int) -> None:
        """Replica ``idx`` starts taking requests."""
        self._enter(idx, len(self.replicas[idx].running))
        self._pos[idx] = len(self.active)
        self.active.append(idx)

    def deactivate(self, idx: int) -> None:
        """Replica ``idx`` stops taking requests (draining, failed, preempted)."""
        self.replicas[idx].tick = -1  # its entry goes stale
        k = self._pos.pop(idx)
        last = self.active.pop()
        if last != idx:
            self.active[k] = last
            self._pos[last] = k

    def moved(self, idx: int, old: int, new: int) -> None:
        """Replica ``idx`` went from ``old`` to ``new`` running requests."""
        if self.replicas[idx].up:  # else draining: not a candidate
            self._enter(idx, new)

    def least_loaded(self) -> Replica:
        """The up replica with a free slot and the fewest running requests (the first to
        reach that load), or, if there is none, a stand-in that is always full (no slot,
        no KV): callers test the replica they get for room either way."""
        buckets = self.buckets
        m = self.min_load
        while True:
            q = buckets[m]
            while q:
                rep, tick = q[0]
                if rep.tick == tick:
                    self.min_load = m
                    return rep
                q.popleft()  # a stale head
            m += 1  # no live entry at this load: the least load is higher

    def pick(self, need_kv: float) -> Replica | None:
        """A replica that can admit a request needing ``need_kv`` KV tokens, or None."""
        if not self.active:
            return None
        if self.policy == "least_loaded":
            rep = self.least_loaded()
        elif self.policy == "round_robin":
            rep = self._round_robin()
        else:
            rep = self._two_choices()
        if rep is None or len(rep.running) >= rep.max_batch or rep.kv_used + need_kv > rep.kv_cap:
            return None
        return rep

    def _round_robin(self) -> Replica | None:
        active, reps = self.active, self.replicas
        n = len(active)
        i = self.rr_next % n
        for _ in range(n):
            rep = reps[active[i]]
            i = i + 1 if i + 1 < n else 0
            if len(rep.running) < rep.max_batch:
                self.rr_next = i
                return rep
        return None

    def _two_choices(self) -> Replica | None:
        if self._draw_i + 2 > len(self._draws):
            self._draws = self._rng.random(8192).tolist()
            self._draw_i = 0
        n = len(self.active)
        a = self.replicas[self.active[int(self._draws[self._draw_i] * n)]]
        b = self.replicas[self.active[int(self._draws[self._draw_i + 1] * n)]]
        self._draw_i += 2
        best = a if len(a.running) <= len(b.running) else b
        if len(best.running) < best.max_batch:
            return best
        return self.least_loaded()

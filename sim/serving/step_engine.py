"""The engine's side of step-level replicas: what the fleet engine and its router see.

What it models: a fleet replica that is a :class:`~sim.serving.step_replica.StepReplica`
(vLLM V1 engine steps: chunked prefill, paged KV, recompute preemption, prefix caching)
instead of the fluid processor-sharing :class:`~sim.serving.replica.Replica`.

The central waiting room and the placement policies are unchanged: the router sends a
request to a replica when it has a free *sequence slot* (fewer than ``max_num_seqs``
requests assigned: running, waiting inside the replica after a preemption, or in their
pre-step overhead) and *KV room for its prompt blocks* (blocks held plus blocks promised to
the prompts of its waiting requests, plus this prompt's, within the cache). Output blocks
are not reserved: they are allocated as tokens are generated, and a replica that runs out
preempts (vLLM's recompute), which the request's ``preemptions`` record counts. A request
of a stream with a prefix ``hit_share`` needs the same room: the blocks of its cached
tokens are its own (vLLM's hit blocks are held by the request), so only its prefill work
is smaller (see :mod:`sim.serving.step_replica`). The
router's view of a replica's KV (``kv_used``) is refreshed at its wake-ups and after each
join; a join that runs the replica ahead (see :mod:`sim.serving.step_replica`) shows the
blocks held at the step boundary it joins, which may be a step ahead of the clock.

A replica's records: the first token is written when the step that computes the prompt's
last token ends, the end when the step that emits the last token ends plus
``overheads.post_s``. Its wake-up is the end of its current segment of identical steps
(see :mod:`sim.serving.step_replica`), so events per request do not grow with output
length.

The mixin :class:`StepServing` holds the engine methods for step replicas; the engine
uses them in place of its fluid ones when its replicas are built from a
:class:`~sim.profiles.steptime.StepModel`.
"""

from __future__ import annotations

from heapq import heappop, heappush, heapreplace
from typing import Any

import numpy as np

from sim.profiles.steptime import StepModel
from sim.serving.step_core import StepReplica
from sim.serving.step_replica import INF

__all__ = ["StepServer", "StepServing", "step_need"]

NORMAL = 1  # SimPy's priority of ordinary events (calendar entries sort by it after time)


class StepServer(StepReplica):
    """A step replica with the fields the engine and the router use.

    ``running`` holds the requests *assigned* to it (the router's load, at most
    ``max_batch``); ``kv_used`` / ``kv_cap`` are in tokens of whole blocks (held plus
    promised to waiting prompts, and the cache size).
    """

    def __init__(self, idx: int, model: StepModel, *, up: bool = True, pool: int = 0,
                 prefix_tokens: list[int] | tuple[int, ...] = ()):
        super().__init__(model, prefix_tokens)
        self.idx = idx
        self.up = up
        self.pool = pool
        self.spec = model
        self.on_drained = None
        self.tick = -1  # the router's stamp of its live bucket entry
        self.entry: tuple | None = None  # its current calendar entry
        self.due = INF
        self.version = 0
        self.running: dict[Any, None] = {}
        self.max_batch = model.max_num_seqs
        self.kv_cap = float(self.n_blocks * self.bs)
        self.kv_used = 0.0
        # The router sizes its load buckets from the rate list's length; loads never
        # exceed max_num_seqs. One list per size, shared (a fleet of large batch caps
        # would hold a copy per replica).
        self.rates = _dummy_rates(model.max_num_seqs + 2)
        self.rates_top = len(self.rates)

    def sync_kv(self) -> None:
        """Refresh ``kv_used`` (call after a change of the replica's state)."""
        self.kv_used = float((self.n_blocks - self.free + self.promised) * self.bs)

    def advance(self, t: float) -> None:
        """(The fluid replica's clock update: a step replica needs none.)"""

    def evict(self, t: float) -> list[tuple[float, Any, Any]]:  # type: ignore[override]
        """Every assigned request leaves (failure, spot preemption): ``(0, block, j)``
        entries, in the order they were assigned."""
        seqs = StepReplica.evict(self, t)
        seqs.sort(key=lambda s: s.order)
        self.running.clear()
        self.kv_used = 0.0
        self.entry = None
        self.due = INF
        self.version += 1
        return [(0.0, *s.handle) for s in seqs]


_RATES: dict[int, list[float]] = {}


def _dummy_rates(n: int) -> list[float]:
    """A shared, never-modified list of ``n`` zeros (see StepServer.rates)."""
    if n not in _RATES:
        _RATES[n] = [0.0] * n
    return _RATES[n]


def step_need(input_tokens: np.ndarray, output_tokens: np.ndarray, block_size: int,
              max_len: int) -> np.ndarray:
    """KV tokens a request needs free to be routed to a step replica: its prompt's whole
    blocks; INF where it can never be served (input + output above ``max_len``)."""
    inp = np.maximum(np.asarray(input_tokens, np.float64), 1.0)
    need = np.ceil(inp / block_size) * block_size
    need[inp + np.asarray(output_tokens, np.float64) > max_len] = INF
    return need


class StepServing:
    """Engine methods for step replicas (mixed into the engine; see the module doc)."""

    # Provided by the engine.
    router: Any
    queued: int
    _queue: list
    _eid: Any
    _area: float
    totals: Any
    _prefix_offset: list[int]
    _prefix_groups: list[int]
    _prefix_hit: list[float]

    def _step_group(self, blk: Any, j: int) -> int:
        """The prefix group of request ``j`` of ``blk``: one of its stream's groups, spread
        evenly by position (groups of equal popularity; no random draw needed)."""
        s = blk.stream[j]
        groups = self._prefix_groups[s]
        if not groups:
            return -1
        return self._prefix_offset[s] + (blk.index * 7919 + j) % groups

    def _admit_step(self, rep: StepServer, blk: Any, j: int, t: float, need: float) -> None:
        running = rep.running
        b = len(running)
        s = blk.stream[j]
        grp = self._step_group(blk, j) if self._prefix_groups[s] else -1
        seq = rep.add((blk, j), t, blk.inp[j], blk.out[j], grp, self._prefix_hit[s])
        running[seq] = None
        rep.kv_used = (rep.n_blocks - rep.free + rep.promised) * rep.bs  # sync_kv, inlined
        if rep.up:
            # Router.moved(idx, b, b + 1), inlined (see the fluid Engine._admit)
            router = self.router
            if b + 1 < rep.max_batch:
                router._tick = tick = router._tick + 1
                rep.tick = tick
                router.buckets[b + 1].append((rep, tick))
                if not tick & router.compact_mask:
                    router._compact_all()
            else:
                rep.tick = -1  # full: no candidate until a request ends
        blk.replica[j] = rep.idx
        w = rep.wake_t
        rep.due = w
        entry = rep.entry
        if entry is None or w < entry[0]:
            rep.entry = entry = (w, NORMAL, next(self._eid), rep)
            heappush(self._queue, entry)

    def _wake_step(self, rep: StepServer, t: float) -> None:
        """Replica ``rep``'s wake-up at ``t``: end its segment, record the requests that
        completed, let the waiting room fill the freed slots, re-arm."""
        running, queue = rep.running, self._queue
        b0 = len(running)
        entry0 = rep.entry
        rep.end_segment()
        done = rep.done
        if done:
            for s in done:
                blk, j = s.handle
                del running[s]
                end = s.end_s
                blk.end[j] = end
                blk.first[j] = s.first_s
                if s.preemptions:
                    blk.preempted[j] = s.preemptions
                self._area += end  # it leaves the GPU system
                if blk.all_arrived:
                    blk.outstanding -= 1
                    if not blk.outstanding:
                        self._maybe_finish(blk)  # type: ignore[attr-defined]
            done.clear()
        b = len(running)
        if b != b0:
            if rep.up:
                # Router.moved(idx, b0, b), inlined: a load going down (completions only;
                # its bucket exists, as b < max_batch).
                router = self.router
                router._tick = tick = router._tick + 1
                rep.tick = tick
                router.buckets[b].append((rep, tick))
                if b < router.min_load:
                    router.min_load = b
                if not tick & router.compact_mask:
                    router._compact_all()
            if not b and rep.on_drained is not None:
                callback, rep.on_drained = rep.on_drained, None
                callback(rep.idx, t)
        if self.queued:  # (the router reads the replicas' KV: sync_kv, inlined)
            rep.kv_used = float((rep.n_blocks - rep.free + rep.promised) * rep.bs)
            self._dispatch(t)  # type: ignore[attr-defined]
        if rep.entry is not entry0:  # evicted meanwhile (a drain callback failed it)
            return
        rep.replan()  # nobody else joins it at t now
        rep.kv_used = float((rep.n_blocks - rep.free + rep.promised) * rep.bs)  # sync_kv
        # Re-arm in place: this wake-up's entry is still the calendar's head, unless an
        # urgent SimPy event came in front of it at this very time (then it stays, stale).
        entry = rep.entry
        w = rep.wake_t
        rep.due = w
        if w == INF:
            if queue and queue[0] is entry:
                heappop(queue)
            rep.entry = None
            return
        new = (w, NORMAL, next(self._eid), rep)
        rep.entry = new
        if queue and queue[0] is entry:
            heapreplace(queue, new)
        else:
            heappush(queue, new)


def prefix_offsets(group_counts: list[int]) -> list[int]:
    """First global group id of each stream, given its number of prefix groups."""
    out, acc = [], 0
    for g in group_counts:
        out.append(acc)
        acc += g
    return out

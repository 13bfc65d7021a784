"""A self-hosted inference server of step-level replicas, for router deployments.

What it models: the same endpoint as :class:`sim.serving.server.Server` (one FIFO queue in
front of replicas; a request starts on the least-loaded replica with a free sequence slot
and KV room for its prompt blocks; a client may abort; an outage fails everything), with
each replica a :class:`~sim.serving.step_replica.StepReplica` (vLLM V1 engine steps).

Differences from the fluid server, each what a vLLM server does: the first token is known
only when the step that computes the prompt's last token ends (``on_admit(item, t)`` is
called then, not at admission); the answer completes ``overheads.post_s`` after the step
that emits the last token (``on_done`` is called at that time); an aborted running request
keeps its blocks until the end of the step in progress (vLLM frees them between steps).

Driven by SimPy timeouts, one pending wake-up per replica (superseded ones are ignored by
version): this path serves router studies, not the month-long fleet runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import simpy

from sim.profiles.steptime import StepModel
from sim.serving.router import Router
from sim.serving.step_engine import StepServer
from sim.serving.step_replica import INF

__all__ = ["StepPool"]


class StepPool:
    """Step replicas of one model behind one FIFO queue (the interface of ``Server``)."""

    def __init__(self, env: simpy.Environment, model: StepModel, replicas: int, *,
                 on_admit: Callable[[Any, float], None],
                 on_done: Callable[[Any, float], None]):
        self.env = env
        self.replicas = [StepServer(i, model) for i in range(replicas)]
        for rep in self.replicas:
            rep.track_first = True
        self.router = Router(self.replicas, "least_loaded")  # type: ignore[arg-type]
        self.bs = model.scheduler.block_size
        self.max_len = model.max_len_tokens
        self.post_s = model.overheads.post_s
        self.kv_cap = float(model.num_blocks * self.bs)
        self.queue: deque = deque()
        self.where: dict[int, tuple[StepServer, Any]] = {}  # key -> (replica, its seq)
        self.tokens: dict[int, tuple[float, float]] = {}  # key -> (input, output)
        self.on_admit = on_admit
        self.on_done = on_done
        self.busy_s = 0.0

    @property
    def running(self) -> int:
        return len(self.where)

    def fits(self, input_tokens: float, output_tokens: float) -> bool:
        """Whether a request of this size can ever run here (``max_model_len``)."""
        return bool(self.replicas) and input_tokens + output_tokens <= self.max_len

    def _need(self, input_tokens: float) -> float:
        return float(-(-max(int(input_tokens), 1) // self.bs) * self.bs)

    def submit(self, item: Any, input_tokens: float, output_tokens: float) -> None:
        """Start ``item`` now if a replica has room, else queue it (FIFO)."""
        self.tokens[item.key] = (input_tokens, output_tokens)
        queue = self.queue
        while queue and queue[0].key not in self.tokens:
            queue.popleft()  # aborted while waiting
        if not queue:
            rep = self.router.pick(self._need(input_tokens))
            if rep is not None:
                self._admit(rep, item, self.env.now)  # type: ignore[arg-type]
                return
        queue.append(item)

    def abort(self, item: Any) -> None:
        """The client gave up on ``item``: drop it from the queue or from its replica."""
        t = self.env.now
        self.tokens.pop(item.key, None)
        x = self.where.pop(item.key, None)
        if x is None:
            return  # still queued: dropped lazily when it reaches the head
        rep, seq = x
        b = len(rep.running)
        del rep.running[seq]
        rep.abort(seq, t)
        rep.sync_kv()
        self.router.moved(rep.idx, b, b - 1)
        self._rearm(rep)
        self._dispatch(t)

    def fail_all(self) -> list[Any]:
        """An outage: every queued and running request fails now; returns them."""
        t = self.env.now
        items = [item for item in self.queue if item.key in self.tokens]
        self.queue.clear()
        for rep in self.replicas:
            b = len(rep.running)
            items.extend(entry[2] for entry in rep.evict(t))  # (busy time is kept)
            self.router.moved(rep.idx, b, 0)
        self.where.clear()
        self.tokens.clear()
        return items

    def finish(self) -> None:
        """Bring busy time up to now (call once at the end)."""
        self.busy_s = sum(rep.busy_time(self.env.now) for rep in self.replicas)

    # ----------------------------------------------------------------- internals
    def _admit(self, rep: StepServer, item: Any, t: float) -> None:
        inp, out = self.tokens[item.key]
        b = len(rep.running)
        seq = rep.add((item.key, item), t, int(max(inp, 1)), int(max(out, 1)))
        rep.running[seq] = None
        rep.sync_kv()
        self.where[item.key] = (rep, seq)
        self.router.moved(rep.idx, b, b + 1)
        self._rearm(rep)

    def _rearm(self, rep: StepServer) -> None:
        """Schedule the replica's next wake-up (superseding any pending one)."""
        rep.version += 1
        w = rep.wake_t
        if w < INF:
            version = rep.version
            self.env.timeout(max(w - self.env.now, 0.0)).callbacks.append(
                lambda _ev: self._wake(rep, version))

    def _wake(self, rep: StepServer, version: int) -> None:
        if version != rep.version:
            return
        t = self.env.now
        b = len(rep.running)
        rep.end_segment()
        where = self.where
        for s in rep.firsts:
            key, item = s.handle
            if key in where and where[key][1] is s:
                self.on_admit(item, s.first_s)
        rep.firsts.clear()
        finished = []
        for s in rep.done:
            key, item = s.handle
            if key in where and where[key][1] is s:
                del where[key]
                self.tokens.pop(key, None)
                finished.append(item)
            rep.running.pop(s, None)
        rep.done.clear()
        self.router.moved(rep.idx, b, len(rep.running))
        self._dispatch(t)
        rep.replan()
        rep.sync_kv()
        self._rearm(rep)
        for item in finished:
            if self.post_s > 0.0:
                self.env.timeout(self.post_s).callbacks.append(
                    lambda _ev, item=item: self.on_done(item, self.env.now))
            else:
                self.on_done(item, t)

    def _dispatch(self, t: float) -> None:
        queue = self.queue
        while queue:
            item = queue[0]
            sizes = self.tokens.get(item.key)
            if sizes is None:  # aborted while waiting
                queue.popleft()
                continue
            rep = self.router.pick(self._need(sizes[0]))
            if rep is None:
                return
            queue.popleft()
            self._admit(rep, item, t)  # type: ignore[arg-type]

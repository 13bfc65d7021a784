"""A self-hosted inference server (vLLM-like): one FIFO queue in front of its replicas.

What it models: the endpoint a router deployment such as ``hosted_vllm/...`` with an
``api_base`` points at. Requests join one first-come-first-served queue and start on the
least-loaded replica that has a free batch slot and KV room; each replica serves with
continuous batching exactly as in the fleet engine (:mod:`sim.serving.replica`: prefill stalls
decode, per-request decode rate from the batching throughput curve, KV reserved for
input + output from admission to completion).

Unlike the fleet engine, a request here can be **aborted** by its client (the router's
timeout): it leaves the queue, or its replica frees its batch slot and KV at once (vLLM
aborts a request whose client disconnects). Prefill time it already used stays spent.
An **outage** of the server fails every queued and running request at once.

Every GPU profile is served by step-level replicas (issue #19): ``Server(env, spec, ...)``
with a :class:`~sim.profiles.steptime.StepModel` spec (what
:func:`~sim.serving.replica.replica_spec` returns for a profile) builds a
:class:`~sim.serving.step_server.StepPool`, the same interface over vLLM-like engine steps;
the fluid replica below stays for hand-made :class:`ReplicaSpec` specs.

Assumptions: no queue bound (vLLM accepts every request; overload shows as queueing and
then as client timeouts); a request larger than a replica's KV cache is rejected at once.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from typing import Any

import simpy

from sim.profiles.steptime import StepModel
from sim.serving.replica import INF, Replica, ReplicaSpec
from sim.serving.router import Router
from sim.serving.step_server import StepPool

__all__ = ["Server"]


class Server:
    """Replicas of one spec behind one FIFO queue, driven by a SimPy environment.

    ``on_admit(item, first_token_s)`` is called when a request starts on a replica, with
    the time its first token will come (known then: prefill is FCFS), and
    ``on_done(item, t)`` when it completes; ``item`` is the caller's object, which must
    have an int ``key`` attribute unique among the server's live requests.
    """

    def __new__(cls, env: simpy.Environment, spec: ReplicaSpec | StepModel, replicas: int,
                **kw: Any) -> Any:
        if isinstance(spec, StepModel):
            return StepPool(env, spec, replicas, **kw)  # (not a Server: no __init__ here)
        return super().__new__(cls)

    def __init__(self, env: simpy.Environment, spec: ReplicaSpec, replicas: int, *,
                 on_admit: Callable[[Any, float], None],
                 on_done: Callable[[Any, float], None]):
        self.env = env
        self.replicas = [Replica(i, spec) for i in range(replicas)]
        self.router = Router(self.replicas, "least_loaded")
        self.kv_cap = self.replicas[0].kv_cap if self.replicas else 0.0
        self.queue: deque = deque()
        self.where: dict[int, Replica] = {}  # key -> replica running it
        self.tokens: dict[int, tuple[float, float]] = {}  # key -> (input, output)
        self.on_admit = on_admit
        self.on_done = on_done
        self.busy_s = 0.0

    @property
    def running(self) -> int:
        return len(self.where)

    def fits(self, input_tokens: float, output_tokens: float) -> bool:
        """Whether a request of this size can ever run here."""
        return bool(self.replicas) and input_tokens + output_tokens <= self.kv_cap

    def submit(self, item: Any, input_tokens: float, output_tokens: float) -> None:
        """Start ``item`` now if a replica has room, else queue it (FIFO)."""
        self.tokens[item.key] = (input_tokens, output_tokens)
        queue = self.queue
        while queue and queue[0].key not in self.tokens:
            queue.popleft()  # aborted while waiting (see abort)
        if not queue:
            rep = self.router.pick(input_tokens + output_tokens)
            if rep is not None:
                self._admit(rep, item, self.env.now)
                return
        self.queue.append(item)

    def abort(self, item: Any) -> None:
        """The client gave up on ``item``: drop it from the queue or from its replica."""
        t = self.env.now
        rep = self.where.pop(item.key, None)
        inp, out = self.tokens.pop(item.key)
        if rep is None:
            return  # still queued: dropped lazily when it reaches the head

        rep.advance(t)
        running = rep.running
        b = len(running)
        k = next(i for i, entry in enumerate(running) if entry[1] == item.key)
        del running[k]  # (the list stays sorted)
        if running:
            rep.kv_used -= inp + out
        else:
            rep.kv_used = 0.0
            rep.idle_from(t)
        self.router.moved(rep.idx, b, len(running))
        self._rearm(rep)
        self._dispatch(t)

    def fail_all(self) -> list[Any]:
        """An outage: every queued and running request fails now; returns them."""
        t = self.env.now
        items = [item for item in self.queue if item.key in self.tokens]
        self.queue.clear()
        for rep in self.replicas:
            b = len(rep.running)
            items.extend(entry[2] for entry in rep.evict(t))
            self.router.moved(rep.idx, b, 0)
        self.where.clear()
        self.tokens.clear()
        return items

    def finish(self) -> None:
        """Bring busy time up to now (call once at the end)."""
        self.busy_s = sum(rep.busy_time(self.env.now) for rep in self.replicas)

    # ----------------------------------------------------------------- internals
    def _admit(self, rep: Replica, item: Any, t: float) -> None:
        inp, out = self.tokens[item.key]
        rep.advance(t)
        first = max(rep.stall_until, t) + inp * rep.prefill_s_per_token
        rep.stall_until = first
        rep.kv_used += inp + out
        b = len(rep.running)
        if not b:
            rep.busy_from(t)
        bisect.insort(rep.running, (rep.v + out, item.key, item))
        if b + 1 >= len(rep.rates):
            rep.grow_rates()
        self.router.moved(rep.idx, b, b + 1)
        self.where[item.key] = rep
        self._rearm(rep)
        self.on_admit(item, first)

    def _rearm(self, rep: Replica) -> None:
        """Schedule the replica's next completion (superseding any pending wake-up)."""
        rep.version += 1
        t_next = rep.next_completion_t()
        rep.wake_t = t_next
        if t_next < INF:
            version = rep.version
            self.env.timeout(max(t_next - self.env.now, 0.0)).callbacks.append(
                lambda _ev: self._wake(rep, version))

    def _wake(self, rep: Replica, version: int) -> None:
        if version != rep.version:
            return
        t = self.env.now
        rep.advance(t)
        b = len(rep.running)
        done = rep.pop_finished(t)
        for _, key, _item in done:
            inp, out = self.tokens.pop(key)
            del self.where[key]
            rep.kv_used -= inp + out
        if done and not rep.running:
            rep.kv_used = 0.0
            rep.idle_from(t)
        self.router.moved(rep.idx, b, len(rep.running))
        self._rearm(rep)
        for _, _, item in done:
            self.on_done(item, t)
        self._dispatch(t)

    def _dispatch(self, t: float) -> None:
        queue = self.queue
        while queue:
            item = queue[0]
            sizes = self.tokens.get(item.key)
            if sizes is None:  # aborted while waiting
                queue.popleft()
                continue
            inp, out = sizes
            rep = self.router.pick(inp + out)
            if rep is None:
                return
            queue.popleft()
            self._admit(rep, item, t)

"""A fluid GPU replica: continuous batching as processor sharing (virtual-clock formulation).

Since issue #19 every GPU profile is served by the step-level replica
(:mod:`sim.serving.step_replica`, vLLM V1 engine steps); this fluid model stays as its
continuous-time limit, which the queueing-theory tests use (they feed continuous
exponential token counts and need the M/M/c, processor-sharing and birth-death results
that hold only for it). :func:`replica_spec` returns a profile's step model.

Model
-----
A replica runs up to ``max_batch`` requests at once, bounded also by its KV cache: a
request reserves ``input + output`` tokens of KV from admission to completion.

* **Prefill** of an admitted request processes its input tokens at
  ``prefill_tokens_per_s``. Prefills run first-come-first-served and take the whole GPU:
  while any prefill is in progress, decoding of the running requests stalls (the
  prefill-priority scheduling of vLLM without chunked prefill). A burst of long prompts
  therefore slows decoding down. The first output token is emitted when the request's
  prefill completes (``ttft``); decoding then produces ``output_tokens`` tokens.
* **Decode**: with ``b`` requests decoding, the replica's aggregate decode rate is the
  batching throughput curve ``curve(b)`` and each request advances at
  ``r(b) = curve(b) / b`` tokens/s (processor sharing with a batch-dependent rate).

Virtual clock
-------------
All decoding requests advance at the same rate, so one number ``v`` (tokens attained by
any request decoding since time zero) describes them all. A request admitted when the
clock reads ``v0`` finishes when ``v`` reaches ``v0 + output_tokens``; finish points sit in
``running``, a list kept sorted (insertion by bisection, the next to finish popped from
the front: at batch sizes of tens to hundreds the list's memmove costs less than a
heap's sift, and touches fewer scattered entries). ``v`` advances at ``r(b)`` outside
prefill stalls and is frozen during them, so a request admitted during a stall starts
decoding exactly when the stall ends. Every event (admission or completion) is O(log b)
comparisons; the replica needs one pending wake-up: the time the first finish point will
be reached.

Assumptions: no preemption or KV swapping (KV is reserved up front, so admitted requests
always complete); decode rate depends only on the number of running requests, not their
context lengths; prefill and decode do not overlap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sim.profiles.schema import GpuProfile
from sim.profiles.steptime import StepModel

__all__ = ["ReplicaSpec", "Replica", "INF", "replica_spec"]

INF = float("inf")


@dataclass(frozen=True)
class ReplicaSpec:
    """What the engine needs to know about one replica (built from a GPU profile).

    ``rate_table[b]`` is the per-request decode rate with ``b`` requests running
    (index 0 unused). ``rate_fn`` extends it beyond the table for uncapped replicas.
    """

    rate_table: Sequence[float]
    max_batch: int | None = None
    kv_capacity_tokens: float = INF
    prefill_tokens_per_s: float = INF
    rate_fn: Callable[[int], float] | None = None
    saturated_tokens_per_s: float = field(default=0.0)

    def rates(self, upto: int) -> list[float]:
        """The per-request rate list for b = 0..upto."""
        table = list(self.rate_table)
        if self.rate_fn is not None:
            table += [self.rate_fn(b) for b in range(len(table), upto + 1)]
        return table


class Replica:
    """State of one replica; the engine drives it and reads its fields directly."""

    __slots__ = ("idx", "v", "last_t", "stall_until", "running", "kv_used", "wake_t", "due",
                 "version", "busy_s", "busy_since", "rates", "spec", "prefill_s_per_token",
                 "kv_cap", "max_batch", "up", "pool", "on_drained", "tick", "entry", "rates_top")

    def __init__(self, idx: int, spec: ReplicaSpec, *, up: bool = True, pool: int = 0):
        self.idx = idx
        self.up = up  # accepting new requests (False: provisioning, draining, failed)
        self.pool = pool
        self.on_drained = None  # called when a draining replica's last request completes
        self.tick = -1  # the router's stamp of its live bucket entry; -1: in none
        self.spec = spec
        self.v = 0.0
        self.last_t = 0.0
        self.stall_until = 0.0
        # (finish point, then a tie-break and the request: the engine's (block, position),
        # the single server's (key, item))
        self.running: list[tuple[float, Any, Any]] = []
        self.kv_used = 0.0
        self.wake_t = INF
        self.due = INF  # when the next completion is due (>= wake_t while one is armed)
        self.version = 0
        self.entry = None  # the engine's current calendar entry for its wake-up
        self.busy_s = 0.0  # closed busy periods (see busy_time)
        self.busy_since = 0.0  # start of the current busy period, while requests run
        cap = spec.max_batch if spec.max_batch is not None else 256
        self.rates = spec.rates(cap)
        self.rates_top = len(self.rates) - 1  # a load this high outgrows the rate list
        p = spec.prefill_tokens_per_s
        self.prefill_s_per_token = 0.0 if p == INF else 1.0 / p
        self.kv_cap = spec.kv_capacity_tokens
        self.max_batch = spec.max_batch if spec.max_batch is not None else 1 << 62

    def rate(self, b: int) -> float:
        """Per-request decode rate with ``b`` running (the table covers every b reached)."""
        return self.rates[b]

    def advance(self, t: float) -> None:
        """Bring the virtual clock up to wall time ``t``."""
        running = self.running
        if running:
            start = self.last_t if self.last_t > self.stall_until else self.stall_until
            if t > start:
                self.v += (t - start) * self.rates[len(running)]
        self.last_t = t

    def busy_time(self, t: float) -> float:
        """Seconds with at least one request running, up to ``t``.

        Busy time is booked when a busy period ends, not at every event (cheaper on the
        hot path): whoever admits to an idle replica calls :meth:`busy_from`, and
        whoever empties it calls :meth:`idle_from` (the engine inlines both).
        """
        return self.busy_s + (t - self.busy_since if self.running else 0.0)

    def busy_from(self, t: float) -> None:
        """A busy period starts at ``t`` (call before admitting to an idle replica)."""
        self.busy_since = t

    def idle_from(self, t: float) -> None:
        """The busy period ends at ``t`` (call once its last request has ended)."""
        self.busy_s += t - self.busy_since

    def grow_rates(self) -> None:
        """An uncapped replica outgrew its rate table: extend it."""
        self.rates = self.spec.rates(2 * len(self.running) + 2)
        self.rates_top = len(self.rates) - 1

    def next_completion_t(self) -> float:
        running = self.running
        if not running:
            return INF
        start = self.last_t if self.last_t > self.stall_until else self.stall_until
        left = running[0][0] - self.v
        return start + left / self.rates[len(running)] if left > 0.0 else start

    def evict(self, t: float) -> list[tuple[float, Any, Any]]:
        """Drop every running request at ``t`` (failure or preemption); returns them."""
        self.advance(t)
        evicted = sorted(self.running)
        if evicted:
            self.idle_from(t)
        self.running.clear()
        self.kv_used = 0.0
        self.stall_until = t
        self.version += 1  # invalidates any pending wake-up
        self.entry = None
        self.wake_t = INF
        return evicted

    def pop_finished(self, t: float) -> list[tuple[float, Any, Any]]:
        """Remove and return the requests whose finish point the clock has reached by ``t``.

        Nothing finishes inside a prefill stall: decoding (and so completion) waits for it.
        """
        running = self.running
        if t < self.stall_until:
            return []
        # Tolerance for float rounding of v: far below one token.
        limit = self.v + 1e-9 * (1.0 + abs(self.v))
        done = []
        while running and running[0][0] <= limit:
            done.append(running.pop(0))
        return done


def replica_spec(profile: GpuProfile) -> StepModel:
    """The engine's view of a GPU profile: its step-level model (every profile is served
    by :mod:`sim.serving.step_replica`; a legacy curve profile is converted when loaded).
    The fluid :class:`ReplicaSpec` of this module is built directly by the queueing-theory
    tests, as the continuous-time limit."""
    return profile.step_model()

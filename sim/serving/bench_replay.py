"""Replay a benchmark load point on one step-level replica, with the client around it.

What it models: the load generator of a serving benchmark in front of one
:class:`~sim.serving.step_replica.StepReplica` (vLLM V1 scheduling, chunked prefill, paged
KV with watermark and preemption; see that module). Requests become ready to send at
their arrival times (:class:`~sim.profiles.fit.ReplayLoad`); with client slots (a
concurrency, ``--max-concurrency``) a ready request waits until one of the slots is free
and is sent at once when one frees (a closed loop without think time when all arrive at
0); without slots it is sent on arrival. Latencies are measured from the send, as the
benchmark clients do: TTFT to the end of the step that emits the first token, end-to-end
to the last token plus ``overheads.post_s``. No prefix caching (benchmark files do not say
which prompts share a prefix). :func:`replay` is the replay engine that
:func:`sim.profiles.fit.fit_profile` takes.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from sim.core.errors import ConfigError
from sim.profiles.fit import ReplayLoad, ReplayOutcome, StepTerms
from sim.serving.step_core import StepReplica
from sim.serving.step_replica import INF

__all__ = ["replay"]


def replay(terms: StepTerms, load: ReplayLoad) -> ReplayOutcome:
    """Replay one load point on :class:`sim.serving.step_replica.StepReplica` (the step
    model of issue #19: paged KV with watermark and preemption, chunked prefill, runs of
    steps in closed form). A request the replica can never hold is refused."""
    rep = StepReplica(terms.to_step_model())
    n = len(load.input_lens)
    for i, (p, o) in enumerate(zip(load.input_lens, load.output_lens, strict=True)):
        if not rep.fits(p, max(o, 1)):
            raise ConfigError(f"request {i} ({p} + {o} tokens) is longer than the profile's "
                              f"max_model_len or KV cache ({rep.max_len} tokens): this "
                              "profile cannot have served the benchmark")
    slots = load.max_in_flight if load.max_in_flight else n
    joins: list[tuple[float, int]] = [(load.arrival_s[i], i) for i in range(min(slots, n))]
    heapq.heapify(joins)
    next_send = len(joins)
    sent = np.full(n, math.nan)
    seqs: list[Any] = [None] * n
    seen = 0
    while joins or rep.wake_t < INF:
        if joins and joins[0][0] <= rep.wake_t:
            t, i = heapq.heappop(joins)
            sent[i] = t
            seqs[i] = rep.add(i, t, load.input_lens[i], load.output_lens[i])
            continue
        rep.wake()
        for s in rep.done[seen:]:  # each completion frees a client slot
            if next_send < n:
                heapq.heappush(joins, (max(s.end_s, load.arrival_s[next_send]), next_send))
                next_send += 1
        seen = len(rep.done)
        if not joins or joins[0][0] > rep.t:
            rep.settle()
    first = np.array([s.first_s for s in seqs])
    end = np.array([s.end_s for s in seqs])
    return ReplayOutcome(ttft_s=first - sent, e2e_s=end - sent,
                         output_lens=np.maximum(np.array(load.output_lens), 1), sent_s=sent)

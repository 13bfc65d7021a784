"""A plain step-by-step reference simulator of one vLLM-style replica (tests only).

One loop iteration per engine step, no shortcuts: every step rebuilds the batch from the
scheduler rules, allocates KV blocks request by request, and advances every scheduled
request explicitly. It is written independently of :mod:`sim.serving.step_replica` (which
skips runs of identical steps in closed form) and is slow on purpose; the tests check that
the fast model gives the same per-request first-token and completion times.

Rules (vLLM V1 ``Scheduler.schedule``, read at vllm-project/vllm commit 00024d31):
1. Running requests in admission order each get ``min(tokens left to compute, budget)``
   (1 for a decoding request). If a request's new KV blocks do not fit, the most recently
   admitted running request is preempted (its blocks freed, its computed tokens reset to
   zero, put at the front of the waiting queue) until they fit or the request preempted
   itself.
2. Only if nobody was preempted: waiting requests FCFS while budget and the sequence cap
   allow; each takes its prefix-cache hit, then ``min(tokens to compute, budget)``; it is
   admitted if the blocks of that chunk fit with the watermark kept free (the watermark
   applies when some request is already scheduled in the step), else admission stops.
3. The step lasts ``StepTime.step_s``; at its end each scheduled request has computed its
   chunk; one that has computed all its tokens (prompt + generated) emits a token. The
   first token ends TTFT; the request completes when it has emitted all its output tokens
   (plus ``post_s``). A recomputed request (after a preemption) must prefill its prompt and
   the tokens it had generated.
4. Async scheduling (``scheduler.async_scheduling``, vLLM ``--async-scheduling``): the
   step that starts when the previous step ends was scheduled when that previous step
   started, so it takes only the requests ready by then; a request ready during a step
   first runs in the step after the next. An idle engine (nothing running or waiting when
   the previous step ends, or no previous step) schedules at once: the next step takes
   every request ready by its start. Without async scheduling a step takes every request
   ready by its start.
Prefix caching: a request of prefix group g (prefix of ``pb`` full blocks, ``pb*bs <= P-1``)
hits those blocks if a running request holds them; the holder of a miss starts holding them
at the end of the step in which it has computed them. The group's blocks are counted once
while any request holds them.
Hit share (a request of no group, ``hits[i] = h``): the first ``bs * floor(min(h * P, P - 1)
/ bs)`` prompt tokens are in the cache at every admission (after a preemption too); the
request computes the rest (its chunks start at that offset) and holds blocks for all of
its tokens, the cached ones included (its own, not shared).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from sim.profiles.steptime import StepModel, prefill_pairs


@dataclass
class _R:
    i: int
    ready: float
    P: int
    O: int
    grp: int
    hit: int = 0  # prompt tokens cached at each admission (hit share)
    g: int = 0  # tokens emitted
    comp: int = 0  # tokens whose KV is computed
    own: int = 0  # blocks held (excluding the shared prefix blocks once registered)
    reg: bool = False
    decoding: bool = False
    first: float = math.nan
    end: float = math.nan
    preemptions: int = 0

    @property
    def total(self) -> int:
        return self.P + self.g


@dataclass
class RefResult:
    first_s: list[float]
    end_s: list[float]
    preemptions: list[int]
    steps: int = 0
    step_log: list[tuple] = field(default_factory=list)


def simulate(model: StepModel, join_s, input_tokens, output_tokens, groups=None,
             prefix_tokens=(), log: bool = False, hits=None) -> RefResult:
    """Serve requests that join the replica at ``join_s`` (sorted or not); ``hits``: each
    request's hit share (used where it has no group)."""
    sch, st, ov = model.scheduler, model.step_time, model.overheads
    bs, budget0 = sch.block_size, sch.max_num_batched_tokens
    n_blocks = model.num_blocks
    wm = int(sch.watermark * n_blocks)
    pb = [s // bs for s in prefix_tokens]
    reqs = []
    for i, (t, p, o) in enumerate(zip(join_s, input_tokens, output_tokens, strict=True)):
        named = -1 if groups is None else int(groups[i])
        g = named
        if g >= 0 and not (sch.prefix_caching and pb[g] >= 1 and pb[g] * bs <= p - 1):
            g = -1
        h = float(hits[i]) if hits is not None and named < 0 else 0.0
        hit = 0
        if h > 0 and sch.prefix_caching:
            # whole blocks of h * P (1e-9 token allowance for decimal shares), <= P - 1
            hit = math.floor(min(math.floor(h * p + 1e-9), p - 1) / bs) * bs
        ready = t + ov.pre_s + ov.pre_s_per_input_token * p
        reqs.append(_R(i, ready, int(p), int(o), g, int(hit)))
    pending = sorted(reqs, key=lambda r: (r.ready, r.i))
    holders = [0] * len(pb)
    waiting: deque[_R] = deque()
    running: list[_R] = []
    free = n_blocks
    t = 0.0
    res = RefResult([math.nan] * len(reqs), [math.nan] * len(reqs), [0] * len(reqs))

    def unregister(r: _R) -> int:
        """Drop r's hold on its prefix; returns blocks freed."""
        if not r.reg:
            return 0
        r.reg = False
        holders[r.grp] -= 1
        return pb[r.grp] if holders[r.grp] == 0 else 0

    lag = sch.async_scheduling
    start = t  # start of the previous step: the cutoff of the next one under async
    while pending or waiting or running:
        cutoff = start if lag else t
        while pending and pending[0].ready <= cutoff:
            waiting.append(pending.pop(0))
        if not running and not waiting:  # idle: the next request starts a step at once
            t = max(t, pending[0].ready)
            while pending and pending[0].ready <= t:
                waiting.append(pending.pop(0))
        budget = budget0
        sched: list[tuple[_R, int, bool]] = []  # (request, tokens, decoding)
        preempted = False
        i = 0
        while i < len(running) and budget > 0:
            r = running[i]
            n = min(r.total - r.comp, budget)
            need = math.ceil((r.comp + n) / bs) - (pb[r.grp] if r.reg else 0) - r.own
            self_out = False
            while need > free:
                v = running.pop()
                free += v.own + unregister(v)
                v.own, v.comp, v.decoding = 0, 0, False
                v.preemptions += 1
                waiting.appendleft(v)
                preempted = True
                if v is r:
                    self_out = True
                    break
            if self_out:
                break
            free -= need
            r.own += need
            sched.append((r, n, r.decoding))
            budget -= n
            i += 1
        if not preempted:
            while waiting and budget > 0 and len(running) < model.max_num_seqs:
                r = waiting[0]
                hit = r.grp >= 0 and holders[r.grp] > 0
                cached = pb[r.grp] * bs if hit else r.hit
                n = min(r.total - cached, budget)
                need = math.ceil((cached + n) / bs) - (pb[r.grp] if hit else 0)
                if need + (wm if sched else 0) > free:
                    break
                waiting.popleft()
                if hit:
                    r.reg = True
                    holders[r.grp] += 1
                r.comp, r.own = cached, need
                free -= need
                running.append(r)
                sched.append((r, n, False))
                budget -= n
        if not sched:
            if not pending:
                raise RuntimeError("reference replica stalled with work left")
            t = max(t, pending[0].ready)
            continue
        n_tok = sum(n for _, n, _ in sched)
        kv = sum(r.comp + 1 for r, _, dec in sched if dec)
        pairs = sum(prefill_pairs(n, r.comp) for r, n, dec in sched if not dec)
        dt = st.step_s(n_tok, len(sched), kv, pairs)
        if log:
            res.step_log.append((t, n_tok, len(sched), kv, pairs, dt))
        start = t
        t += dt
        res.steps += 1
        for r, n, _ in sched:
            r.comp += n
            g = r.grp
            if g >= 0 and not r.reg and r.comp >= pb[g] * bs:
                # It has computed the prefix blocks: they become the group's (shared).
                r.own -= pb[g]
                if holders[g] > 0:
                    free += pb[g]  # someone else holds them already: ours are duplicates
                holders[g] += 1
                r.reg = True
            if r.comp == r.total:
                r.g += 1
                r.decoding = True
                if math.isnan(r.first):
                    r.first = t
                if r.g == r.O:
                    r.end = t + ov.post_s
                    running.remove(r)
                    free += r.own + unregister(r)
                    r.own = 0
    for r in reqs:
        res.first_s[r.i], res.end_s[r.i], res.preemptions[r.i] = r.first, r.end, r.preemptions
    return res

"""A replica that runs engine steps like a vLLM V1 server, without simulating every step.

What it models
--------------
A replica executes *steps* back to back while it has work (see
:mod:`sim.profiles.steptime` for the step time)::

    step k:  | decode: 1 token for each of D running sequences | prefill chunk(s) |
             |<-------------- at most max_num_batched_tokens tokens ---------->|
             duration T = per_step + linear(N) + per_seq*S + a_dec*K + a_pre*A

Scheduling follows vLLM V1's ``Scheduler.schedule`` (read at vllm-project/vllm commit
00024d31, ``vllm/v1/core/sched/scheduler.py`` and ``kv_cache_manager.py``):

* running requests, in admission order, get one token each if decoding, and the rest of
  the budget if still prefilling (a prompt longer than the budget is prefilled over several
  steps: chunked prefill); then waiting requests FCFS while budget, ``max_num_seqs`` and KV
  blocks allow (chunked too);
* paged KV: a request holds ``ceil(computed tokens / block_size)`` blocks, allocated as its
  chunks are scheduled and as it decodes; admitting a waiting request needs its chunk's
  blocks plus the watermark (``int(watermark * blocks)``, applied when some request is
  already in the step) free;
* when a running request's new blocks do not fit, the most recently admitted running
  request is preempted (recompute: blocks freed, back to the front of the waiting queue,
  later prefills prompt + generated tokens again); no admission in a step with a preemption;
* the step that computes a request's last prompt token emits its first token (TTFT ends at
  the end of that step); each later step emits one token; the request completes at the end
  of the step that emits its last token, plus ``overheads.post_s``;
* a request that joins at time t can be scheduled from ``t + pre_s + pre_s_per_input_token
  * input`` (overheads), at the first step boundary from then on (an idle replica starts a
  step at once);
* async scheduling (``scheduler.async_scheduling``, vLLM ``--async-scheduling``: the
  ``AsyncScheduler`` with the engine core's ``step_with_batch_queue``, two batches in
  flight): the engine core schedules step n+1 as soon as step n is launched, from the state
  step n will leave (its scheduled tokens counted as computed, and a token placeholder for
  each request that samples in it, so a prefill that ends in step n decodes in step n+1),
  and adds new requests only between steps. So the step starting at a boundary takes the
  requests ready by the *start of the step before it*: a request ready during step n first
  runs in step n+2, one step later than without. An engine with nothing to run (the step
  scheduled at the start of the last one is empty) schedules at once when it next has
  work: the step takes every request ready by its start. Outputs are handled when their
  step ends, as without async scheduling (first tokens and completions keep their times);
  the CPU time this hides is left out of ``per_step_s`` by the profile
  (:func:`sim.profiles.derive.derive`);
* prefix caching: a request of a prefix group (a shared prefix of ``pb`` full blocks,
  ``pb * block_size <= input - 1`` as vLLM always recomputes the last prompt token) skips
  those tokens if a running request holds the group's blocks; the first request computes
  them and holds them from the end of the step in which it has computed them; the blocks
  are counted once while any request holds them;
* hit share (a stream's ``prefix.hit_share`` h, for a request of no prefix group): the
  first ``cached = bs * floor(min(h * P, P - 1) / bs)`` of its P prompt tokens are in the
  prefix cache whenever it is admitted (the declared share taken at face value, e.g. a
  conversation's earlier turns kept by automatic prefix caching). Whole blocks, as vLLM
  hits only full blocks (``find_longest_cache_hit``), and at most P - 1 tokens, as it always
  computes the last prompt token. Its prefill computes the rest: its chunks start at
  offset ``cached`` (fewer prefill tokens, and prefill attention over the cached keys too,
  as for a group hit). It holds blocks for its whole prompt: vLLM's hit blocks are
  referenced by the request (``get_computed_blocks``, taken out of the free queue) until
  it ends; here they are its own, shared with no other request, so its KV room (and the
  router's need) is that of a request without a hit. A recompute after a preemption hits
  the same ``cached`` tokens again (vLLM keeps freed blocks cached until they are evicted).

How it stays fast
-----------------
Between events (a request becomes schedulable, a prefill completes, a request finishes, a
preemption, a prefix is registered) the composition of the steps is fixed: D decoding
sequences and at most one partial prefill taking the rest of the budget, c tokens a step.
Then N and S are constant and K, A grow by D and c^2 per step, so step times are an
arithmetic sequence: n steps take ``n*T1 + g*n(n-1)/2`` and the steps that end by a time
are a quadratic's root. Decoding sequences are data: each has a finish step on a step
clock (a heap); their KV blocks are tracked by a histogram over ``block_size`` residues of
(context - step clock), so the first step at which blocks run out is found by counting, not
stepping. The replica plans one *segment* at a time and needs one wake-up at its end:
events per request do not depend on output length. A segment is a run of identical
steps, or a step that admits requests (or ends a prefill) followed by the run of identical
steps after it, foreseen from the state that step will leave (a *two-part* segment).

When a request joins during a segment, the segment ends at the first step boundary b at
or after the time the request is ready (async scheduling: at the boundary after that one,
the step starting at b having been scheduled before the request was ready). The steps
before b are final once none of them can still be joined by a later request (each took
its requests, at its start or with async scheduling at the previous step's start, before
the earliest time a request joining from now on can be ready: always so without a
per-input-token overhead), and then they are applied at once and the next segment is
planned from b: the join costs no wake-up of its own. A request that joins later but is
in time for the step at b still joins it (the plan from b is redone, FCFS by ready time).
The replica's state may thus run ahead of the caller's clock, never past a step whose
composition could still change.

Assumptions and simplifications (each stands for a vLLM behaviour, or is what is not
modelled): chunked prefill on, FCFS policy, no ``long_prefill_token_threshold``; prefix
blocks stay cached only while a running request holds them (vLLM also keeps freed blocks
until evicted: hits after every holder finished are not counted); a recompute after
preemption hits only the group prefix or its hit share (not the rest of its own freed
blocks); a hit share is taken as given (whether the blocks it stands for survived eviction
is not modelled); no speculative decoding,
no disaggregated prefill/decode, no pipeline parallelism, no CPU swap; the engine loop has
no gap between steps (scheduling overhead belongs in ``per_step_s``). Async scheduling:
a request that emits its last token in step n frees its sequence slot and KV blocks for
step n+1 here, while vLLM frees them when step n's output is processed, after step n+1
was scheduled (one step later: it matters only where admissions wait for a slot or for
blocks); an abort takes effect at the next boundary as without async scheduling (vLLM:
one step later); vLLM versions whose scheduler still gave a request that had reached its
``max_tokens`` one more decode token in the next step (before ``Scheduler.schedule``
skipped such requests) are not modelled.

Depends only on the standard library and :mod:`sim.profiles.steptime`.
"""

from __future__ import annotations

import math
from collections import deque
from heapq import heapify, heappop, heappush
from typing import Any

from sim.profiles.steptime import (
    StepModel,
    StepTime,
    prefill_pairs,
    run_time_s,
)

__all__ = ["StepReplica", "Seq", "INF", "cached_prompt_tokens"]

INF = float("inf")
_NEVER = 1 << 62  # a step count no bound reaches
_NONE: list = []  # shared empty plan list (never appended to)


class Seq:
    """One request on a step replica (data only; the replica updates it)."""

    __slots__ = ("handle", "P", "O", "grp", "hit", "ready", "g", "comp", "own", "reg",
                 "decoding", "k0", "c0", "g0", "key", "finish_k", "gen", "first_s", "end_s",
                 "preemptions", "order")

    def __init__(self, handle: Any, input_tokens: int, output_tokens: int, grp: int,
                 ready: float, order: int, hit: int = 0):
        self.handle = handle
        self.P = input_tokens
        self.O = output_tokens
        self.grp = grp  # prefix group, -1: none
        # Prompt tokens already in the prefix cache at each admission (whole blocks of its
        # own, from a stream's hit share; 0 for a request of a prefix group).
        self.hit = hit
        self.ready = ready  # schedulable from then on
        self.g = 0  # tokens emitted (decoders: as of step k0, see tokens_at)
        self.comp = 0  # tokens computed (decoders: as of step k0)
        self.own = 0  # KV blocks held, beyond the group's shared prefix (non-decoders only)
        self.reg = False  # holds its group's prefix blocks
        self.decoding = False
        self.k0 = 0  # decoders: step clock at which comp/g were taken
        self.c0 = 0
        self.g0 = 0
        self.key = 0  # decoders: (c0 - k0) mod block_size
        self.finish_k = 0  # decoders: the step clock at which its last token is emitted
        self.gen = 0  # bumped on preemption: stale finish-heap entries
        self.first_s = float("nan")
        self.end_s = float("nan")
        self.preemptions = 0
        self.order = order


class StepReplica:
    """One replica. Driving it: :meth:`add` when a request joins (at the current time);
    at ``wake_t``, :meth:`end_segment`, then the joins of that instant, then
    :meth:`replan` (or :meth:`wake`, which ends the segment and plans at once, then
    :meth:`settle` when nothing else joins at that instant).
    Requests that complete are appended to ``done`` (``end_s`` and ``first_s`` set), and
    those whose first token came to ``firsts`` if ``track_first``. :meth:`abort` and
    :meth:`evict` take requests out early. ``prefix_tokens[g]`` is the shared prefix of
    prefix group g (a request names its group in :meth:`add`)."""

    def __init__(self, model: StepModel, prefix_tokens: list[int] | tuple[int, ...] = ()):
        sch, ov = model.scheduler, model.overheads
        self.model = model
        self.st = model.step_time
        self.bs = bs = sch.block_size
        self.budget = sch.max_num_batched_tokens
        self.max_seqs = model.max_num_seqs
        self.n_blocks = model.num_blocks
        self.wm = int(sch.watermark * model.num_blocks)
        self.max_len = model.max_len_tokens
        st = self.st
        self._lin = _linear_table(st, self.budget)
        self._per_step, self._per_seq = st.per_step_s, st.per_seq_s
        self._a_dec = st.decode_attention_s_per_token
        self._a_pre = st.prefill_attention_s_per_token2
        self.pre_s, self.pre_tok_s, self.post_s = ov.pre_s, ov.pre_s_per_input_token, ov.post_s
        self.caching = sch.prefix_caching
        # vLLM --async-scheduling: a step is scheduled when the previous one starts, so it
        # takes the requests ready by then (one step of admission delay; module doc).
        self.lag = 1 if sch.async_scheduling else 0
        self.pb = [s // bs for s in prefix_tokens]  # prefix blocks per group
        self.holders = [0] * len(self.pb)
        self._order = 0
        self.steps = 0  # engine steps executed
        self.segments = 0  # segments executed
        self.wakes = 0  # wake-ups (the events this replica costs)
        self.preemptions = 0
        self.busy_s = 0.0  # time spent executing steps (closed segments)
        self.track_first = False  # list first tokens as they come (in ``firsts``)
        self._reset(0.0)

    def _reset(self, t: float) -> None:
        """An empty replica at time ``t`` (new, or after every request was evicted)."""
        # State at the current step boundary (time t, step clock k).
        self.t = t
        self.cut = t  # async: the step at t takes the requests ready by then (module doc)
        self.k = 0
        self.batch: dict[Seq, None] = {}  # admission order; the partial prefill is last
        self.prefill: Seq | None = None  # the running request still prefilling, if any
        self.D = 0  # decoding requests
        self.ksum = 0  # sum of their computed tokens at clock k
        self.hist = [0] * self.bs  # decoders by (computed - clock) mod bs
        self.finish: list[tuple[int, int, int, Seq]] = []  # (finish_k, order, gen, seq)
        self.free = self.n_blocks
        self.holders = [0] * len(self.pb)
        self.waiting: deque[Seq] = deque()
        self.pending: list[tuple[float, int, Seq]] = []  # (ready, order, seq)
        # Blocks the prompts of waiting and pending requests will need (for a router that
        # admits only where a prompt's blocks are free).
        self.promised = 0
        self.done: list[Seq] = []
        self.firsts: list[Seq] = []  # first tokens since the last wake (if track_first)
        self._aborting: list[Seq] = []
        # The planned segment (valid while planned): n steps from (t, k).
        self.planned = False
        self.seg_n = 0
        self.seg_first = 0.0
        self.seg_growth = 0.0
        self.wake_t = INF
        self._victims: list[Seq] = []
        self._admits: list[tuple[Seq, int, int, int]] = []  # (seq, cached, tokens, blocks)
        self._free1 = 0  # free blocks after the segment's first step
        self._chunk = 0  # the partial prefill's tokens per step (0: none scheduled)
        self._dec_s = 0  # decoders scheduled in the first step
        self._silent = False  # the planned segment is one step in which nobody completes
        # A two-part segment: its first step (admissions or a prefill's end), then _m
        # identical steps of another composition (step time _t2, growth _g2, the partial
        # prefill's chunk _chunk2, _dec2 decoders, _free2 blocks free after the first of
        # them), foreseen by _lookahead.
        self._two = False
        self._m = 0
        self._t2 = self._g2 = 0.0
        self._chunk2 = self._dec2 = self._free2 = 0

    # ------------------------------------------------------------------ requests
    def fits(self, input_tokens: int, output_tokens: int) -> bool:
        """Can this replica ever serve the request (``max_model_len`` and KV size)?"""
        return input_tokens + output_tokens <= self.max_len and input_tokens >= 1

    def add(self, handle: Any, t: float, input_tokens: int, output_tokens: int,
            grp: int = -1, hit_share: float = 0.0) -> Seq:
        """Request ``handle`` joins at time ``t`` (>= the last event handled), of prefix
        group ``grp`` (-1: none) or, with no group, with a share ``hit_share`` of its
        prompt already in the prefix cache (see the module doc)."""
        # Whole tokens; a prompt has at least one (vLLM computes the last prompt token to
        # sample the first output token).
        p, o = max(int(input_tokens), 1), max(int(output_tokens), 1)
        hit = 0
        if grp >= 0:
            pb = self.pb[grp]
            if not (self.caching and pb >= 1 and pb * self.bs <= p - 1):
                grp = -1
        elif hit_share > 0.0 and self.caching:
            hit = cached_prompt_tokens(hit_share, p, self.bs)
        ready = t + self.pre_s + self.pre_tok_s * p
        self._order += 1
        s = Seq(handle, p, max(o, 1), grp, ready, self._order, hit)
        heappush(self.pending, (ready, s.order, s))
        self.promised += -(-p // self.bs)
        if not self.planned:
            if self.wake_t > ready:
                self.wake_t = ready  # idle: start when it is ready
        elif ready <= (self.cut if self.lag else self.t):
            self._plan()  # in time for the step the plan starts with: plan again
        elif ready < self.wake_t:
            self._run_to(ready, t)
        return s

    def _run_to(self, ready: float, t: float) -> None:
        """A request joining at ``t`` is ready at ``ready``, inside the planned segment:
        end the segment at the boundary b of the step that admits it (the first step
        boundary at or after ``ready``; with async scheduling the one after it, see
        :meth:`_cut`) and, where nothing can still change the steps before b, run them now
        and plan from b (the step that admits it and the run after it: one segment, one
        wake-up, instead of a wake-up at b). The steps before b are final when each took
        its requests before the earliest time a request joining from now on can be ready
        (``t + pre_s + pre_s_per_input_token`` for a one-token prompt): each step's start,
        or with async scheduling the start of the step before it. Not for a replica that
        reports first tokens as they come (``track_first``): its server aborts requests at
        the time they give up."""
        lag = self.lag
        if self._two or self.track_first:
            n0 = self.seg_n
            self._cut(ready, lag)
            j = self.seg_n
            if j == n0 or self.track_first:
                return
            i = j - 1 - lag  # the boundary by which the last step before b took its requests
            x = (self.cut if i < 0 else self.t if i == 0
                 else self.t + self.seg_first + run_time_s(i - 1, self._t2, self._g2))
        else:  # _cut, inlined: one run of identical steps
            first, growth, t0 = self.seg_first, self.seg_growth, self.t
            j = _join_steps(ready - t0, first, growth, lag)
            if j >= self.seg_n:
                return
            self.seg_n = j
            self.wake_t = t0 + (j * first + growth * j * (j - 1) / 2.0)  # run_time_s
            i = j - 1 - lag
            x = self.cut if i < 0 else t0 + (i * first + growth * i * (i - 1) / 2.0)
        if x < t + self.pre_s + self.pre_tok_s:  # before any later join can be ready
            self._execute()
            self._plan()

    def _cut(self, ready: float, later: int) -> None:
        """End the planned segment at the first step boundary at or after ``ready`` (the
        step in progress then keeps its composition), or with ``later`` (async scheduling,
        for a request ready at ``ready``) one boundary after that: the step starting at
        the first boundary was scheduled when the step before it started, before
        ``ready`` (a request ready by the plan's start, but after the step it starts with
        took its requests, ends the segment after that first step)."""
        t0 = self.t
        if self._two:
            t1 = t0 + self.seg_first
            j = 1 if ready <= t1 else 1 + _steps_until(ready - t1, self._t2, self._g2)
            if later and ready > t0:
                j += 1
            if j < self.seg_n:
                self.seg_n = j
                if j == 1:
                    self._two = False
                    self.wake_t = t1
                else:
                    self.wake_t = t1 + run_time_s(j - 1, self._t2, self._g2)
            return
        j = _join_steps(ready - t0, self.seg_first, self.seg_growth, later)
        if j < self.seg_n:
            self.seg_n = j
            self.wake_t = t0 + run_time_s(j, self.seg_first, self.seg_growth)

    # ------------------------------------------------------------------ planning
    def _plan(self) -> None:
        """Plan the next segment from the boundary (t, k): the first step's composition by
        the scheduler rules (nothing is changed until the segment ends), then how many
        identical steps follow it. The usual case, D decoders and nobody else (none
        waiting, no prefill), is planned here; the rest in :meth:`_plan_step`."""
        t = self.t
        pending, waiting = self.pending, self.waiting
        c = self.cut if self.lag else t  # the first step takes the requests ready by c
        if pending and pending[0][0] <= c:
            self._pop_ready(c)
        D = self.D
        if self.prefill is not None:
            self._plan_step()
            return
        if waiting:
            if len(waiting) > 1 or not self._plan_admit1(waiting[0]):
                self._plan_step()
            return
        if not D:
            self._plan_step()
            return
        k, bs = self.k, self.bs
        free = self.free - self.hist[-k % bs]
        if free < 0:  # a decoder's new block does not fit: preemption
            self._plan_step()
            return
        self.planned = True
        # StepTime.step_s and growth_s, inlined (no prefill: its terms are zero)
        a_dec = self._a_dec
        first = self._per_step + self._lin[D] + self._per_seq * D + a_dec * (self.ksum + D)
        growth = a_dec * D
        fk = self.finish
        while fk[0][2] != fk[0][3].gen:  # drop stale entries
            heappop(fk)
        n = fk[0][0] - k
        if n > 1:
            if ((n - 1) // bs + 1) * D > free:  # (else plenty of room: see _kv_steps)
                n = 1 + self._kv_steps(n - 1, free, 0, self.hist, k, D, -1)
            if pending and n > 1:
                n = min(n, _join_steps(pending[0][0] - t, first, growth, self.lag))
        self._victims = self._admits = _NONE
        self._free1 = free
        self._chunk, self._dec_s = 0, D
        self._silent = self._two = False
        self.seg_n = n
        self.seg_first, self.seg_growth = first, growth
        self.wake_t = t + (n * first + growth * n * (n - 1) / 2.0)  # run_time_s, inlined

    def _plan_admit1(self, r: Seq) -> bool:
        """:meth:`_plan_step` for the usual admission: D decoders (no prefill in progress)
        and one waiting request, of no prefix group, whose whole prompt fits in this step.
        False (nothing planned) where that is not the case."""
        D = self.D
        total = r.P + r.g
        cached = r.hit  # (its own cached blocks are among the need below)
        n = total - cached
        if r.grp >= 0 or n > self.budget - D or len(self.batch) >= self.max_seqs:
            return False
        k, bs = self.k, self.bs
        free = self.free - (self.hist[-k % bs] if D else 0)
        need = -(-total // bs)
        if free < 0 or need + (self.wm if D else 0) > free:
            return False
        free -= need
        self.planned = True
        admits = [(r, cached, n, need)]
        self._victims, self._admits = _NONE, admits
        self._free1 = free
        self._chunk, self._dec_s = 0, D
        # StepTime.step_s, inlined (as in _plan_step; prefill_pairs(n, cached) inlined)
        first = (self._per_step + self._lin[D + n] + self._per_seq * (D + 1)
                 + self._a_dec * (self.ksum + D)
                 + self._a_pre * (n * cached + n * (n + 1) // 2))
        t = self.t
        loud = r.g + 1 >= r.O
        if D:
            fk = self.finish
            while fk[0][2] != fk[0][3].gen:  # drop stale entries
                heappop(fk)
            if fk[0][0] == k + 1:
                loud = True
        self._silent = not loud
        if (not loud and not self.track_first
                and self._plan_after(t + first, D, 1, total, k + r.O - r.g,
                                     1 if total % bs == 0 else 0, None, 0, admits, free)):
            self._arm_two_part(t, first)
            return True
        self._two = False
        self.seg_n = 1
        self.seg_first, self.seg_growth = first, 0.0
        self.wake_t = t + (first + 0.0)  # run_time_s of one step
        return True

    def _arm_two_part(self, t: float, first: float) -> None:
        """Arm a two-part segment: the planned step of ``first`` seconds, then the run of
        ``_m`` identical steps :meth:`_plan_after` foresaw (``_t2`` each, growing by
        ``_g2``); the wake-up is the end of both."""
        self._silent = False
        self._two = True
        self.seg_first, self.seg_growth = first, 0.0
        m = self._m
        self.seg_n = 1 + m
        self.wake_t = t + first + (m * self._t2 + self._g2 * m * (m - 1) / 2.0)

    def _pop_ready(self, t: float) -> None:
        """Requests ready by ``t`` join the waiting queue, FCFS by ready time."""
        pending, waiting = self.pending, self.waiting
        while pending and pending[0][0] <= t:
            r = heappop(pending)[2]
            if waiting and waiting[-1].ready > r.ready:
                # It joined after the plan ran ahead to t (see _run_to) but was ready
                # before some that are waiting since t.
                i = len(waiting) - 1
                while i > 0 and waiting[i - 1].ready > r.ready:
                    i -= 1
                waiting.insert(i, r)
            else:
                waiting.append(r)

    def _plan_step(self) -> None:
        """:meth:`_plan` where the first step is not one of D decoders alone: it has a
        prefill chunk, admissions or a preemption. A first step in which nobody completes
        is planned together with the run of identical steps after it where that run is
        foreseen here (see :meth:`_plan_after`)."""
        t, k, bs = self.t, self.k, self.bs
        pending, waiting = self.pending, self.waiting
        self.planned = True
        victims: list[Seq] = _NONE
        admits: list[tuple[Seq, int, int, int]] = _NONE
        budget = self.budget
        D = self.D
        pf = self.prefill
        dec_need = self.hist[-k % bs] if D else 0
        chunk = pf_need = pf_pairs = 0
        if pf is not None:
            left = pf.P + pf.g - pf.comp
            chunk = min(left, budget - D)
            pf_need = -(-(pf.comp + chunk) // bs) - (-(-pf.comp // bs))
        free = self.free
        dec_s, ksum_s = D, self.ksum
        if dec_need + pf_need <= free:
            free -= dec_need + pf_need
            budget -= D + chunk
            if pf is not None:
                pf_pairs = prefill_pairs(chunk, pf.comp)
        else:  # someone must be preempted: go through the running requests in order
            victims, free, budget, dec_s, ksum_s, chunk, pf_pairs = self._plan_preemption()
        seqs = dec_s + (1 if chunk else 0)
        # What the first step leaves, for _plan_after: requests that finish their prompt
        # in it (new decoders: how many, their computed tokens, the earliest last step,
        # how many need a block in the next step), the one left prefilling, and whether
        # one completes (loud) or will register a prefix (then no look-ahead).
        new_n = new_comp = new_blk = 0
        new_fin = _NEVER
        loud = mixed = False
        pf2: Seq | None = None
        c2 = 0
        if pf is not None and chunk:
            c = pf.comp + chunk
            if c == pf.P + pf.g:
                loud = pf.g + 1 >= pf.O
                mixed = pf.grp >= 0 and not pf.reg
                new_n, new_comp, new_fin = 1, c, k + pf.O - pf.g
                new_blk = 1 if c % bs == 0 else 0
        if not victims and waiting:
            n_run = len(self.batch)
            max_seqs, wm = self.max_seqs, self.wm
            holders_hit: dict[int, int] | None = None
            for r in waiting:
                if budget <= 0 or n_run >= max_seqs:
                    break
                g = r.grp
                if g >= 0:
                    hit = self.holders[g] + (holders_hit.get(g, 0) if holders_hit else 0) > 0
                    cached = self.pb[g] * bs if hit else 0
                else:  # its own cached blocks (a hit share), if any: held like the rest
                    hit, cached = False, r.hit
                total = r.P + r.g
                n = total - cached
                if n > budget:
                    n = budget
                c = cached + n
                need = -(-c // bs) - (self.pb[g] if hit else 0)
                if need + (wm if seqs else 0) > free:
                    break
                if admits is _NONE:
                    admits = []
                admits.append((r, cached, n, need))
                if hit:
                    if holders_hit is None:
                        holders_hit = {}
                    holders_hit[g] = holders_hit.get(g, 0) + 1
                elif g >= 0:
                    mixed = True
                free -= need
                budget -= n
                n_run += 1
                seqs += 1
                pf_pairs += n * cached + n * (n + 1) // 2  # prefill_pairs, inlined
                if c == total:
                    if r.g + 1 >= r.O:
                        loud = True
                    new_n += 1
                    new_comp += c
                    f = k + r.O - r.g
                    if f < new_fin:
                        new_fin = f
                    if c % bs == 0:
                        new_blk += 1
                else:
                    pf2, c2 = r, c
        if not seqs:  # nothing to run: idle until the next request is ready
            if self.lag and self.cut < t and pending and pending[0][0] <= t:
                # Async: the step scheduled when the last one started is empty, so the
                # engine schedules again now, taking the requests ready by now.
                self.cut = t
                self._plan()
                return
            self.planned = False
            self.seg_n = 0
            self.wake_t = pending[0][0] if pending else INF
            return
        self._victims, self._admits = victims, admits
        self._free1 = free
        self._chunk, self._dec_s = chunk, dec_s
        n_tok = self.budget - budget
        # StepTime.step_s, inlined (linear(N) from the replica's table)
        first = (self._per_step + self._lin[n_tok] + self._per_seq * seqs
                 + self._a_dec * (ksum_s + dec_s) + self._a_pre * pf_pairs)
        self._two = False
        if not victims and not admits and (pf is None or chunk < pf.P + pf.g - pf.comp):
            # Repeatable: D decoders and a prefill chunk, as long as nothing changes.
            growth = self.st.growth_s(D, chunk * chunk)
            n = _NEVER
            if D:
                fk = self.finish
                while fk[0][2] != fk[0][3].gen:  # drop stale entries
                    heappop(fk)
                n = fk[0][0] - k
            if pf is not None:
                left = pf.P + pf.g - pf.comp
                n = min(n, left // chunk)
                g = pf.grp
                if g >= 0 and not pf.reg:
                    n = min(n, -(-(self.pb[g] * bs - pf.comp) // chunk))
            if n > 1:
                n = 1 + self._kv_steps(n - 1, free, chunk, self.hist, k, D,
                                       pf.comp + chunk if pf is not None else -1)
            if pending and n > 1:
                n = min(n, _join_steps(pending[0][0] - t, first, growth, self.lag))
            self._silent = False
        else:
            # One step of its own. Silent if nobody completes at its end.
            if D:
                fk = self.finish
                while fk[0][2] != fk[0][3].gen:
                    heappop(fk)
                if fk[0][0] == k + 1:
                    loud = True
            self._silent = not loud
            if (not loud and not mixed and not victims and not self.track_first
                    and self._plan_after(t + first, dec_s, new_n, new_comp, new_fin, new_blk,
                                         pf2, c2, admits, free)):
                self._arm_two_part(t, first)
                return
            growth, n = 0.0, 1
        self.seg_n = n
        self.seg_first, self.seg_growth = first, growth
        self.wake_t = t + (n * first + growth * n * (n - 1) / 2.0)  # run_time_s, inlined

    def settle(self) -> None:
        """Nothing else joins at this instant: if the planned segment is a single step in
        which no request completes (one whose run after it was not foreseen, see
        :meth:`_plan_after`), run it now and plan from its end (one wake-up for the step
        that admits a request and the run of identical steps after it). Only at a real
        boundary (the caller's time is ``self.t``): a request that joins later during that
        step is ready after its start, so it could not have joined it anyway."""
        if self.planned and self.seg_n == 1 and self._silent and not self.track_first:
            self._execute()
            self._plan()
            self._silent = False  # (never twice from one boundary)

    def _plan_preemption(self):
        """The first step when a running request's blocks do not fit: vLLM's loop over
        the running requests in order, preempting from the back (planned on copies)."""
        bs, k = self.bs, self.k
        order = list(self.batch)
        n_run = len(order)
        free, budget = self.free, self.budget
        victims: list[Seq] = []
        released: dict[int, int] = {}  # group -> holders released by victims
        dec_s = ksum_s = chunk = pairs = 0
        i = 0
        while i < n_run and budget > 0:
            r = order[i]
            if r.decoding:
                comp = r.c0 + k - r.k0
                n = 1
                need = 1 if comp % bs == 0 else 0
            else:
                comp = r.comp
                n = min(r.P + r.g - comp, budget)
                need = -(-(comp + n) // bs) - (-(-comp // bs))
            out = False
            while need > free:
                n_run -= 1
                v = order[n_run]
                victims.append(v)
                held = (-(-(v.c0 + k - v.k0) // bs) - (self.pb[v.grp] if v.reg else 0)
                        if v.decoding else v.own)
                if v.reg:
                    g = v.grp
                    released[g] = released.get(g, 0) + 1
                    if self.holders[g] == released[g]:
                        held += self.pb[g]
                free += held
                if v is r:
                    out = True
                    break
            if out:
                break
            free -= need
            budget -= n
            if r.decoding:
                dec_s += 1
                ksum_s += comp
            else:
                chunk = n
                pairs = prefill_pairs(n, comp)
            i += 1
        return victims, free, budget, dec_s, ksum_s, chunk, pairs

    def _plan_after(self, t1: float, D: int, new_n: int, new_comp: int, new_fin: int,
                    new_blk: int, pf2: Seq | None, c2: int,
                    admits: list[tuple[Seq, int, int, int]], free: int) -> bool:
        """The planned first step (from clock k, ending at ``t1``; ``D`` decoders in it,
        ``free`` blocks left after its allocations) admits requests or ends a prefill,
        and nobody completes or registers a prefix in it: plan the run of identical steps
        after it too, from the state it will leave, as :meth:`_plan` would from there.
        ``new_*``: the requests that finish their prompt in it (how many, their computed
        tokens, their earliest last step, how many need a block in the next step);
        ``pf2`` the one left prefilling (``c2`` tokens computed). Sets ``_m`` (>= 1) and
        the run's composition and returns True; False where that run is not foreseen
        here (a request left waiting that the next step could take; a request ready by
        ``t1``; a prefill that ends in the next step; a preemption in it): then the
        segment is the first step alone."""
        bs, k1 = self.bs, self.k + 1
        D2 = D + new_n
        ksum2 = self.ksum + D + new_comp
        fmin = self.finish[0][0] if D else _NEVER  # (stale entries were dropped)
        if new_fin < fmin:
            fmin = new_fin
        budget = self.budget - D2
        chunk2 = left2 = pf_need = pairs = 0
        if pf2 is not None:
            left2 = pf2.P + pf2.g - c2
            chunk2 = min(left2, budget)
            if chunk2 >= left2:
                return False
            budget -= chunk2
            pf_need = -(-(c2 + chunk2) // bs) - (-(-c2 // bs))
            pairs = chunk2 * c2 + chunk2 * (chunk2 + 1) // 2  # prefill_pairs, inlined
        if (budget > 0 and len(self.waiting) > len(admits)
                and len(self.batch) + len(admits) < self.max_seqs):
            return False
        pending = self.pending
        if pending and pending[0][0] <= (self.t if self.lag else t1):
            return False  # the step at t1 takes it (async: it takes those ready by t)
        need = (self.hist[-k1 % bs] if D else 0) + new_blk + pf_need
        if need > free:
            return False
        free -= need
        if chunk2:
            first = (self._per_step + self._lin[D2 + chunk2] + self._per_seq * (D2 + 1)
                     + self._a_dec * (ksum2 + D2) + self._a_pre * pairs)
            growth = self.st.growth_s(D2, chunk2 * chunk2)
        else:  # StepTime.step_s and growth_s, inlined (no prefill: its terms are zero)
            first = (self._per_step + self._lin[D2] + self._per_seq * D2
                     + self._a_dec * (ksum2 + D2))
            growth = self._a_dec * D2
        n = fmin - k1
        if pf2 is not None:
            n = min(n, left2 // chunk2)
        if n > 1:
            m_max = n - 1
            bound = (m_max // bs + 1) * D2 + (m_max * chunk2 // bs + 1 if pf2 is not None else 0)
            if bound > free:  # (else plenty of room: see _kv_steps)
                hist2 = self.hist[:]
                for r, cached, tokens, _ in admits:
                    if cached + tokens == r.P + r.g:
                        hist2[(cached + tokens - k1) % bs] += 1
                pf = self.prefill
                if pf is not None and self._chunk and pf.comp + self._chunk == pf.P + pf.g:
                    hist2[(pf.comp + self._chunk - k1) % bs] += 1
                n = 1 + self._kv_steps(m_max, free, chunk2, hist2, k1, D2,
                                       c2 + chunk2 if pf2 is not None else -1)
        if pending and n > 1:
            n = min(n, _join_steps(pending[0][0] - t1, first, growth, self.lag))
        self._m, self._t2, self._g2 = n, first, growth
        self._chunk2, self._dec2, self._free2 = chunk2, D2, free
        return True

    def _kv_steps(self, m_max: int, free: int, chunk: int, hist: list[int], k: int, D: int,
                  comp1: int) -> int:
        """How many of the next ``m_max`` steps after the first (from clock ``k``) can
        allocate their blocks from ``free``: ``D`` decoders by the residue histogram
        ``hist``, the prefill (if ``comp1`` >= 0: its computed tokens after the first
        step, ``chunk`` more each step) by its offset."""
        bs = self.bs
        has_pf = comp1 >= 0
        # Plenty of room (the usual case): an upper bound of what m_max steps take fits.
        bound = (m_max // bs + 1) * D + (m_max * chunk // bs + 1 if has_pf else 0)
        if bound <= free:
            return m_max
        base_pf = -(-comp1 // bs)
        # cum[r] = decoder blocks over the first r steps after the first (r < bs)
        cum = [0] * (bs + 1)
        for i in range(1, bs + 1):
            cum[i] = cum[i - 1] + hist[-(k + i) % bs]

        if _kv_need(m_max, bs, D, cum, has_pf, comp1, chunk, base_pf) <= free:
            return m_max
        lo, hi = 0, m_max  # need(lo) <= free < need(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _kv_need(mid, bs, D, cum, has_pf, comp1, chunk, base_pf) <= free:
                lo = mid
            else:
                hi = mid
        return lo

    # ------------------------------------------------------------------ execution
    def wake(self) -> None:
        """Handle the event at ``wake_t`` and plan the next segment (for a driver with no
        other joins at that instant; see :meth:`end_segment` for one with some)."""
        self.end_segment()
        self._plan()

    def end_segment(self) -> None:
        """Handle the event at ``wake_t``: end the planned segment (or, idle, come to the
        time work becomes ready). Requests that complete are in ``done``; call
        :meth:`replan` once every request joining at this instant has been added (a join
        in between is only queued: planning once saves the plan it would discard)."""
        self.wakes += 1
        if self.planned:
            self._execute()
        else:
            self.t = self.cut = self.wake_t  # idle: the step now takes what is ready now

    def replan(self) -> None:
        """After :meth:`wake` and the joins of the same instant: plan the next segment,
        and run a silent single first step at once (see :meth:`settle`)."""
        self._plan()
        self.settle()

    def _execute(self) -> None:
        """Apply the planned segment: its steps have run."""
        if self._two:
            self._two = False
            m = self.seg_n - 1
            self._apply_head(self.seg_first)
            self._chunk, self._dec_s, self._free1 = self._chunk2, self._dec2, self._free2
            if self.prefill is None:
                self._apply_run(m, self._t2, self._g2)
            else:
                self._apply(m, self._t2, self._g2)
        elif self._admits or self._victims or self.prefill is not None:
            self._apply(self.seg_n, self.seg_first, self.seg_growth)
        else:
            self._apply_run(self.seg_n, self.seg_first, self.seg_growth)
        self.segments += 1
        self.planned = False
        if self._aborting:
            for s in self._aborting:
                if s in self.batch:
                    self._drop(s)
            self._aborting = []

    def _apply_head(self, first: float) -> None:
        """:meth:`_apply` for the first step of a two-part segment (see _plan_after): no
        preemption, nobody completes or registers a prefix; the prefill in progress (if
        scheduled) and the admitted requests that finish their prompt start decoding."""
        bs = self.bs
        self.k = k = self.k + 1
        self.busy_s += first
        self.cut = self.t  # (async: the next step took the requests ready at this one's start)
        self.t = t = self.t + first  # (run_time_s of one step)
        self.steps += 1
        self.ksum += self.D
        self.free = self._free1
        pf = self.prefill
        chunk = self._chunk
        if pf is not None and chunk:  # its prefill ends in this step
            c = pf.comp + chunk
            pf.own += -(-c // bs) - (-(-pf.comp // bs))
            pf.comp = c
            self.prefill = None
            self._start_decoding(pf, k, t)
        waiting, batch = self.waiting, self.batch
        for r, cached, tokens, need in self._admits:
            waiting.popleft()
            self.promised -= -(-(r.P + r.g) // bs)
            r.comp = c = cached + tokens
            r.own = need
            if cached and r.grp >= 0:
                r.reg = True
                self.holders[r.grp] += 1
            batch[r] = None
            if c < r.P + r.g:
                self.prefill = r
            else:
                self._start_decoding(r, k, t)
        self._admits = _NONE

    def _start_decoding(self, r: Seq, k: int, t: float) -> None:
        """``r`` computed its whole prompt at step clock ``k`` (time ``t``): its token of
        that step, then one a step as data on the step clock (it does not complete yet)."""
        r.g = g = r.g + 1
        if r.first_s != r.first_s:  # NaN: its first token
            r.first_s = t
            if self.track_first:
                self.firsts.append(r)
        comp = r.comp
        r.decoding = True
        r.k0, r.c0, r.g0 = k, comp, g
        r.key = key = (comp - k) % self.bs
        r.finish_k = f = k + r.O - g
        self.hist[key] += 1
        self.D += 1
        self.ksum += comp
        heappush(self.finish, (f, r.order, r.gen, r))

    def _apply_run(self, n: int, first: float, growth: float) -> None:
        """:meth:`_apply` for n steps of the D decoders alone (the usual case)."""
        bs, k, D = self.bs, self.k, self.D
        free = self._free1
        if n > 1:
            # Blocks of steps 2..n: D per bs steps, and the decoders whose residue comes
            # up in the last rem steps (a cyclic slice of the histogram).
            q, rem = divmod(n - 1, bs)
            free -= q * D
            if rem:
                hist = self.hist
                lo = -(k + rem) % bs
                hi = lo + rem
                free -= sum(hist[lo:hi]) if hi <= bs else sum(hist[lo:]) + sum(hist[:hi - bs])
        self.free = free
        self._advance(n, first, growth, D)

    def _advance(self, n: int, first: float, growth: float, decoders: int) -> tuple[int, float]:
        """The clock after ``n`` steps of a segment (``decoders`` add one KV token a step
        each): step count, KV sum, busy time; then the decoders whose last token came in
        them. Returns the new step clock and time."""
        self.ksum += decoders * n
        self.k = k = self.k + n
        dt = n * first + growth * n * (n - 1) / 2.0  # run_time_s, inlined
        self.busy_s += dt
        if self.lag:  # the next step took the requests ready at the start of the last one
            m = n - 1
            self.cut = self.t + (m * first + growth * m * (m - 1) / 2.0)
        self.t = t = self.t + dt
        self.steps += n
        fk = self.finish
        if fk and fk[0][0] <= k:
            self._finish_decoders(k, t)
        return k, t

    def _finish_decoders(self, k: int, t: float) -> None:
        """Decoders whose last token was emitted by step clock ``k`` (at time ``t``)."""
        bs, fk, hist, batch = self.bs, self.finish, self.hist, self.batch
        while fk and fk[0][0] <= k:
            _, _, gen, s = heappop(fk)
            if gen != s.gen:
                continue
            comp = s.c0 + k - s.k0
            self.D -= 1
            self.ksum -= comp
            hist[s.key] -= 1
            del batch[s]
            self.free += -(-comp // bs) - (self.pb[s.grp] if s.reg else 0) + self._unregister(s)
            s.g, s.comp, s.decoding = s.O, comp, False
            self._finished(s, t)

    def _apply(self, n: int, first: float, growth: float) -> None:
        """Apply ``n`` steps of the planned composition (the first as planned, then
        identical ones; step times ``first``, ``first + growth``, ...)."""
        bs = self.bs
        k = self.k
        batch, hist = self.batch, self.hist
        admits = self._admits
        # 1. Preemptions decided at the first step (from the back of the running order).
        if self._victims:
            for v in self._victims:
                self._preempt(v)
        # 2. Admissions: they head the waiting queue, in order.
        if admits:
            waiting = self.waiting
            for r, cached, tokens, need in admits:
                waiting.popleft()
                self.promised -= -(-(r.P + r.g) // bs)
                r.comp, r.own = cached + tokens, need
                if cached and r.grp >= 0:
                    r.reg = True
                    self.holders[r.grp] += 1
                batch[r] = None
        free = self._free1  # (the plan counted the victims' blocks as freed)
        # 3. The steps after the first: decoders' and the prefill's new blocks.
        pf = self.prefill
        chunk = self._chunk
        if n > 1:
            q, rem = divmod(n - 1, bs)
            blocks = q * self.D
            for i in range(1, rem + 1):
                blocks += hist[-(k + i) % bs]
            if pf is not None:
                c1 = pf.comp + chunk
                blocks += -(-(c1 + (n - 1) * chunk) // bs) - (-(-c1 // bs))
            free -= blocks
        if pf is not None and chunk:
            new = pf.comp + n * chunk
            pf.own += -(-new // bs) - (-(-pf.comp // bs))
            pf.comp = new
        self.free = free
        # 4. The clock, and decoders that emitted their last token.
        k, t = self._advance(n, first, growth, self._dec_s)
        # 5. Prefilling requests scheduled in this segment.
        self.prefill = None
        if admits:
            touched = [r for r, _, _, _ in admits]
            if pf is not None and chunk:
                touched.insert(0, pf)
        elif pf is not None and chunk:
            touched = (pf,)
        else:
            touched = ()
        for r in touched:
            g = r.grp
            if g >= 0 and not r.reg and r.comp >= self.pb[g] * bs:
                r.own -= self.pb[g]
                if self.holders[g] > 0:
                    self.free += self.pb[g]
                self.holders[g] += 1
                r.reg = True
            if r.comp < r.P + r.g:
                self.prefill = r
            elif r.g + 1 < r.O:
                self._start_decoding(r, k, t)
            else:  # its only (or last) token: it completes
                r.g += 1
                if r.first_s != r.first_s:  # NaN: its first token
                    r.first_s = t
                    if self.track_first:
                        self.firsts.append(r)
                del batch[r]
                self.free += r.own + self._unregister(r)
                r.own = 0
                self._finished(r, t)
        self._victims = self._admits = _NONE

    def _finished(self, s: Seq, t: float) -> None:
        s.end_s = t + self.post_s
        self.done.append(s)

    def _unregister(self, s: Seq) -> int:
        """Drop ``s``'s hold on its group prefix; the blocks freed (the last holder's)."""
        if not s.reg:
            return 0
        s.reg = False
        self.holders[s.grp] -= 1
        return self.pb[s.grp] if self.holders[s.grp] == 0 else 0

    def _preempt(self, v: Seq) -> None:
        """Recompute preemption: free ``v``'s blocks, back to the front of the queue."""
        bs = self.bs
        if v.decoding:
            v.g = v.g0 + self.k - v.k0  # tokens generated so far: recomputed with the prompt
        self._drop(v)
        v.comp = v.own = 0
        v.decoding = False
        v.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(v)
        self.promised += -(-(v.P + v.g) // bs)

    def _drop(self, v: Seq) -> None:
        """Remove running request ``v`` (aborted, or preempted by _preempt): free its blocks."""
        bs, k = self.bs, self.k
        if v.decoding:
            comp = v.c0 + k - v.k0
            self.D -= 1
            self.ksum -= comp
            self.hist[v.key] -= 1
            held = -(-comp // bs) - (self.pb[v.grp] if v.reg else 0)
            v.gen += 1  # its finish entry goes stale
        else:
            held = v.own
            if v is self.prefill:
                self.prefill = None
        self.free += held + self._unregister(v)
        del self.batch[v]

    # ------------------------------------------------------------------ interruptions
    def abort(self, s: Seq, t: float) -> None:
        """The client of ``s`` gives up at time ``t`` (vLLM aborts the request): a waiting
        one leaves at once; a running one (or one the planned step admits) is freed at the
        next step boundary, the step in progress keeping its composition."""
        for i, (_, _, x) in enumerate(self.pending):
            if x is s:
                self.pending[i] = self.pending[-1]
                self.pending.pop()
                heapify(self.pending)
                self.promised -= -(-(s.P + s.g) // self.bs)
                if not self.planned:
                    self.wake_t = self.pending[0][0] if self.pending else INF
                return
        if s in self.waiting and not any(a[0] is s for a in self._admits):
            self.waiting.remove(s)
            self.promised -= -(-(s.P + s.g) // self.bs)
            return
        if s in self.batch or any(a[0] is s for a in self._admits):
            self._aborting.append(s)
            if t <= self.t:
                # Nothing of the planned segment has run: drop it now and plan again.
                if s in self.batch:
                    self._drop(s)
                    self._aborting.remove(s)
                else:
                    self._aborting.remove(s)
                    self.waiting.remove(s)
                    self.promised -= -(-(s.P + s.g) // self.bs)
                self._plan()
            elif t < self.wake_t:
                self._cut(t, 0)

    def evict(self, t: float) -> list[Seq]:
        """Every request leaves at ``t`` (failure or preemption of the replica): returns
        them (running in admission order, then waiting, then pending) and empties it."""
        if self.planned:
            self.busy_s += min(t, self.wake_t) - self.t
        if t < self.t:  # a settled step had not ended yet
            self.busy_s -= self.t - t
        out = list(self.batch) + list(self.waiting)
        out += [x[2] for x in sorted(self.pending)]
        self._reset(t)
        return out

    def busy_time(self, t: float) -> float:
        """Seconds spent executing steps up to ``t``."""
        if self.planned and t > self.t:
            return self.busy_s + min(t, self.wake_t) - self.t
        return self.busy_s - max(0.0, self.t - t)

    # ------------------------------------------------------------------ queries
    @property
    def load(self) -> int:
        """Requests on the replica (running, waiting or in their pre-step overhead)."""
        return len(self.batch) + len(self.waiting) + len(self.pending)

    @property
    def kv_used_blocks(self) -> int:
        """Blocks held, plus those the prompts of waiting and pending requests need."""
        return self.n_blocks - self.free + self.promised

    def idle(self) -> bool:
        return not (self.batch or self.waiting or self.pending)


_LINEAR: dict[int, tuple[StepTime, list[float]]] = {}
_LINEAR_KEPT = 32  # tables kept: a process running many replications, each with its own
# drawn step time (profile uncertainty), would otherwise keep one per replication


def _linear_table(st: StepTime, budget: int) -> list[float]:
    """``st.linear(n)`` for n = 0..budget, shared by the replicas of one profile (a list
    index instead of a bisection per step composition); the most recent tables kept."""
    hit = _LINEAR.get(id(st))
    if hit is None or hit[0] is not st or len(hit[1]) <= budget:
        hit = (st, [st.linear(n) for n in range(budget + 1)])
        _LINEAR.pop(id(st), None)
        _LINEAR[id(st)] = hit
        while len(_LINEAR) > _LINEAR_KEPT:
            del _LINEAR[next(iter(_LINEAR))]  # the oldest entry
    return hit[1]


def cached_prompt_tokens(hit_share: float, prompt: int, block_size: int) -> int:
    """Prompt tokens found in the prefix cache when a share ``hit_share`` of a prompt of
    ``prompt`` tokens hits it: ``hit_share x prompt`` in whole blocks, at most ``prompt -
    1`` (vLLM always computes the last prompt token). The product is rounded down with a
    1e-9 token allowance, so a share that makes it a whole number in decimal (0.1 x 160)
    is not cut by binary round-off."""
    c = int(hit_share * prompt + 1e-9)
    if c > prompt - 1:
        c = prompt - 1
    return c - c % block_size if c > 0 else 0


def _kv_need(m: int, bs: int, D: int, cum: list[int], has_pf: bool, comp1: int, chunk: int,
             base_pf: int) -> int:
    """Blocks the steps 2..m+1 of a run allocate (see StepReplica._kv_steps): ``D``
    decoders by the cumulative residue counts ``cum``, and the prefill if ``has_pf``."""
    q, r = divmod(m, bs)
    blocks = q * D + cum[r]
    if has_pf:
        blocks += -(-(comp1 + m * chunk) // bs) - base_pf
    return blocks


def _join_steps(x: float, first: float, growth: float, lag: int) -> int:
    """Steps of a run before the one that admits a request ready ``x`` after the run's
    start: the first step ending at or after it (the step starting there admits it), or
    with ``lag`` (async scheduling) one more: the step starting there was scheduled at the
    start of the step before it (at once, 1, when ``x`` <= 0: ready by the run's start but
    not by the time its first step took its requests)."""
    j = _steps_until(x, first, growth)
    if lag and x > 0.0:
        j += 1
    return j


def _steps_until(x: float, first: float, growth: float) -> int:
    """The first step (1-based) of a run that ends at or after ``x`` from its start: the
    least n >= 1 with ``run_time_s(n, first, growth) >= x`` (a guess from the quadratic,
    corrected against the sum itself, as in ``steps_ending_by``)."""
    if x <= first:
        return 1
    if growth <= 0.0:
        n = int(x / first)
    else:
        b = first - growth / 2.0
        n = int((-b + math.sqrt(b * b + 2.0 * growth * x)) / growth)
    if n < 1:
        n = 1
    while n * first + growth * n * (n - 1) / 2.0 < x:
        n += 1
    while n > 1 and (n - 1) * first + growth * (n - 1) * (n - 2) / 2.0 >= x:
        n -= 1
    return n

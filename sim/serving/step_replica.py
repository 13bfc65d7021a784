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
* prefix caching: a request of a prefix group (a shared prefix of ``pb`` full blocks,
  ``pb * block_size <= input - 1`` as vLLM always recomputes the last prompt token) skips
  those tokens if a running request holds the group's blocks; the first request computes
  them and holds them from the end of the step in which it has computed them; the blocks
  are counted once while any request holds them.

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
stepping. The replica plans one *segment* of identical steps at a time and needs one
wake-up at its end: events per request do not depend on output length.

Assumptions and simplifications (each stands for a vLLM behaviour, or is what is not
modelled): chunked prefill on, FCFS policy, no ``long_prefill_token_threshold``; prefix
blocks stay cached only while a running request holds them (vLLM also keeps freed blocks
until evicted: hits after every holder finished are not counted); a recompute after
preemption hits only the group prefix (not its own freed blocks); no speculative decoding,
no disaggregated prefill/decode, no pipeline parallelism, no CPU swap; the engine loop has
no gap between steps (scheduling overhead belongs in ``per_step_s``).

Depends only on the standard library and :mod:`sim.profiles.steptime`.
"""

from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush
from typing import Any

from sim.profiles.steptime import (
    StepModel,
    StepTime,
    prefill_pairs,
    run_time_s,
    steps_ending_by,
)

__all__ = ["StepReplica", "Seq", "INF"]

INF = float("inf")
_NEVER = 1 << 62  # a step count no bound reaches
_NONE: list = []  # shared empty plan list (never appended to)


class Seq:
    """One request on a step replica (data only; the replica updates it)."""

    __slots__ = ("handle", "P", "O", "grp", "ready", "g", "comp", "own", "reg", "decoding",
                 "k0", "c0", "g0", "key", "finish_k", "gen", "first_s", "end_s",
                 "preemptions", "order")

    def __init__(self, handle: Any, input_tokens: int, output_tokens: int, grp: int,
                 ready: float, order: int):
        self.handle = handle
        self.P = input_tokens
        self.O = output_tokens
        self.grp = grp  # prefix group, -1: none
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

    # ------------------------------------------------------------------ requests
    def fits(self, input_tokens: int, output_tokens: int) -> bool:
        """Can this replica ever serve the request (``max_model_len`` and KV size)?"""
        return input_tokens + output_tokens <= self.max_len and input_tokens >= 1

    def add(self, handle: Any, t: float, input_tokens: int, output_tokens: int,
            grp: int = -1) -> Seq:
        """Request ``handle`` joins at time ``t`` (>= the last event handled)."""
        # Whole tokens; a prompt has at least one (vLLM computes the last prompt token to
        # sample the first output token).
        p, o = max(int(input_tokens), 1), max(int(output_tokens), 1)
        if grp >= 0:
            pb = self.pb[grp]
            if not (self.caching and pb >= 1 and pb * self.bs <= p - 1):
                grp = -1
        ready = t + self.pre_s + self.pre_tok_s * p
        self._order += 1
        s = Seq(handle, p, max(o, 1), grp, ready, self._order)
        heappush(self.pending, (ready, s.order, s))
        self.promised += -(-p // self.bs)
        if not self.planned:
            if self.wake_t > ready:
                self.wake_t = ready  # idle: start when it is ready
        elif ready <= self.t:
            self._plan()  # ready at the boundary the plan starts from: plan again
        elif ready < self.wake_t:
            self._cut(ready)
        return s

    def _cut(self, ready: float) -> None:
        """End the planned segment at the first step boundary at or after ``ready`` (the
        step in progress then keeps its composition)."""
        x = ready - self.t
        j = _steps_until(x, self.seg_first, self.seg_growth)
        if j < self.seg_n:
            self.seg_n = j
            self.wake_t = self.t + run_time_s(j, self.seg_first, self.seg_growth)

    # ------------------------------------------------------------------ planning
    def _plan(self) -> None:
        """Plan the next segment from the boundary (t, k): the first step's composition by
        the scheduler rules (nothing is changed until the segment ends), then how many
        identical steps follow it."""
        t, k, bs = self.t, self.k, self.bs
        pending, waiting = self.pending, self.waiting
        while pending and pending[0][0] <= t:
            waiting.append(heappop(pending)[2])
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
        holders_hit: dict[int, int] = {}
        seqs = dec_s + (1 if chunk else 0)
        if not victims and waiting:
            n_run = len(self.batch)
            adm_pairs = 0
            for r in waiting:
                if budget <= 0 or n_run >= self.max_seqs:
                    break
                g = r.grp
                hit = g >= 0 and self.holders[g] + holders_hit.get(g, 0) > 0
                cached = self.pb[g] * bs if hit else 0
                n = min(r.P + r.g - cached, budget)
                need = -(-(cached + n) // bs) - (self.pb[g] if hit else 0)
                if need + (self.wm if seqs else 0) > free:
                    break
                if admits is _NONE:
                    admits = []
                admits.append((r, cached, n, need))
                if hit:
                    holders_hit[g] = holders_hit.get(g, 0) + 1
                free -= need
                budget -= n
                n_run += 1
                seqs += 1
                adm_pairs += prefill_pairs(n, cached)
            pf_pairs += adm_pairs
        if not seqs:  # nothing to run: idle until the next request is ready
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
        growth = 0.0
        n = 1
        repeatable = (not victims and not admits
                      and (pf is None or chunk < pf.P + pf.g - pf.comp))
        if repeatable:
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
                n = 1 + self._kv_steps(n - 1, free, chunk)
            if pending and n > 1:
                n = min(n, _steps_until(pending[0][0] - t, first, growth))
            self._silent = False
        else:
            self._silent = self._first_step_silent(pf, chunk, admits)
        self.seg_n = n
        self.seg_first, self.seg_growth = first, growth
        self.wake_t = t + run_time_s(n, first, growth)

    def _first_step_silent(self, pf: Seq | None, chunk: int,
                           admits: list[tuple[Seq, int, int, int]]) -> bool:
        """Does no request complete at the end of the planned first step?"""
        if self.D:
            fk = self.finish
            while fk[0][2] != fk[0][3].gen:
                heappop(fk)
            if fk[0][0] == self.k + 1:
                return False
        if pf is not None and chunk and pf.comp + chunk == pf.P + pf.g and pf.g + 1 >= pf.O:
            return False
        # An admission that completes its prompt in this step and needs one token only.
        return not any(cached + n == r.P + r.g and r.g + 1 >= r.O for r, cached, n, _ in admits)

    def settle(self) -> None:
        """Nothing else joins at this instant: if the planned segment is a single step in
        which no request completes, run it now and plan from its end (one wake-up for the
        step that admits a request and the run of identical steps after it). Only at a real
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

    def _kv_steps(self, m_max: int, free: int, chunk: int) -> int:
        """How many of the next ``m_max`` steps after the first can allocate their blocks
        from ``free`` (decoders by the residue histogram, the prefill by its offset)."""
        bs, k, hist, D = self.bs, self.k, self.hist, self.D
        pf = self.prefill
        comp1 = pf.comp + chunk if pf is not None else 0
        # Plenty of room (the usual case): an upper bound of what m_max steps take fits.
        bound = (m_max // bs + 1) * D + (m_max * chunk // bs + 1 if pf is not None else 0)
        if bound <= free:
            return m_max
        base_pf = -(-comp1 // bs)
        # cum[r] = decoder blocks over the first r steps after the first (r < bs)
        cum = [0] * (bs + 1)
        for i in range(1, bs + 1):
            cum[i] = cum[i - 1] + hist[-(k + i) % bs]

        def need(m: int) -> int:
            q, r = divmod(m, bs)
            blocks = q * D + cum[r]
            if pf is not None:
                blocks += -(-(comp1 + m * chunk) // bs) - base_pf
            return blocks

        if need(m_max) <= free:
            return m_max
        lo, hi = 0, m_max  # need(lo) <= free < need(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if need(mid) <= free:
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
            self.t = self.wake_t

    def replan(self) -> None:
        """After :meth:`wake` and the joins of the same instant: plan the next segment,
        and run a silent single first step at once (see :meth:`settle`)."""
        self._plan()
        self.settle()

    def _execute(self) -> None:
        """Apply the planned segment: its n steps have run."""
        bs, n = self.bs, self.seg_n
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
                if cached:
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
        self.ksum += self._dec_s * n
        self.k = k = k + n
        dt = run_time_s(n, self.seg_first, self.seg_growth)
        self.busy_s += dt
        self.t = t = self.t + dt
        self.steps += n
        self.segments += 1
        self.planned = False
        # 4. Decoders that emitted their last token.
        fk = self.finish
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
                continue
            r.g += 1
            if r.first_s != r.first_s:  # NaN: its first token
                r.first_s = t
                if self.track_first:
                    self.firsts.append(r)
            if r.g >= r.O:
                del batch[r]
                self.free += r.own + self._unregister(r)
                r.own = 0
                self._finished(r, t)
                continue
            # It decodes from now on: data on the step clock.
            r.decoding = True
            r.k0, r.c0, r.g0 = k, r.comp, r.g
            r.key = (r.comp - k) % bs
            r.finish_k = k + r.O - r.g
            hist[r.key] += 1
            self.D += 1
            self.ksum += r.comp
            heappush(fk, (r.finish_k, r.order, r.gen, r))
        self._victims = self._admits = _NONE
        if self._aborting:
            for s in self._aborting:
                if s in batch:
                    self._drop(s)
            self._aborting = []

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
                self._cut(t)

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


def _linear_table(st: StepTime, budget: int) -> list[float]:
    """``st.linear(n)`` for n = 0..budget, shared by the replicas of one profile (a list
    index instead of a bisection per step composition)."""
    hit = _LINEAR.get(id(st))
    if hit is None or hit[0] is not st or len(hit[1]) <= budget:
        hit = (st, [st.linear(n) for n in range(budget + 1)])
        _LINEAR[id(st)] = hit
    return hit[1]


def _steps_until(x: float, first: float, growth: float) -> int:
    """The first step (1-based) of a run that ends at or after ``x`` from its start."""
    if x <= 0.0:
        return 1
    m = steps_ending_by(x, first, growth)
    if m >= 1 and run_time_s(m, first, growth) == x:
        return m
    return m + 1

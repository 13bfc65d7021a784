"""The serving engine: a SimPy model of a GPU fleet, its router and paid-API overflow.

Requests are data (rows of :class:`~sim.workload.requests.RequestBlock`), never SimPy processes.
SimPy events occur only at arrivals (several arrivals with no other event between them
share one), replica wake-ups (the next completion on a fluid replica; the end of a segment
of identical engine steps on a step replica), queue-expiry timers (one per stream queue,
for its oldest request) and API retries. Each event is a bare ``simpy.Event`` with one
callback. The serving model of every GPU profile is the step-level vLLM V1 replica
(:mod:`sim.serving.step_replica`, driven through :mod:`sim.serving.step_engine`); the fluid
processor-sharing replica of :mod:`sim.serving.replica` is its continuous-time limit, used
with hand-made :class:`ReplicaSpec` specs by the queueing-theory tests. See
:mod:`sim.serving.router` for placement and the central queue.

Every request ends exactly once, as served on a GPU, served by an API, or failed with a
reason. Outcomes are written into per-block record lists; when every request of a block
has ended, the block is handed to the ``on_block`` callback as a
:class:`FinishedBlock` of numpy arrays and dropped, so memory is bounded by the blocks in
flight, not by the horizon.

Overflow modes per stream (from its traffic class):
``always`` (to the API), ``never`` (wait for a GPU; fail if still waiting at the stream's
``deadline_s``), ``queue_full`` (to the API when the waiting room is full) and
``wait_exceeds`` (to the API when the waiting room is full or after waiting
``threshold_s``). An API attempt over the rate limit or during an outage is retried with
backoff up to ``max_retries`` times, then the request fails.

Closed-loop streams (``arrivals: {kind: concurrency}``, passed to :meth:`Engine.run` as
:class:`~sim.workload.streams.ClosedLoopStream`, a
:class:`~sim.workload.requests.ClientSource`) are clients, not pre-generated arrivals:
every client sends its first request at time 0 and its next one when the previous one
ends (its end on a GPU, which includes ``overheads.post_s``; the end of an accepted API
call, whose latency is then drawn at once from the client's own stream; or the moment it
failed) plus its think time, while that is before the horizon (and at least ``MIN_CYCLE_S``
after its previous send). Each client's requests live in blocks of their own (a chunk of
its requests, drawn ahead; see :mod:`sim.workload.streams`), whose single request in
flight is tracked by the block's ``outstanding`` count: when it drops to zero the engine
sends the client's next request, by a calendar event. With closed-loop streams, waiting
requests of different streams are ordered by arrival time (blocks are no longer in time
order); without them nothing of this runs and open-loop runs are unchanged.
"""

from __future__ import annotations

import contextlib
import gc
from bisect import insort
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush, heapreplace

import numpy as np
import simpy
from simpy.events import Event

from sim.core.rng import stream
from sim.profiles.steptime import StepModel
from sim.serving.replica import INF, Replica, ReplicaSpec
from sim.serving.router import Router
from sim.serving.simclock import NORMAL, calendar, triggered_event
from sim.serving.step_engine import StepServer, StepServing, prefix_offsets, step_need
from sim.workload.requests import MIN_CYCLE_S, ClientSource, RequestBlock

__all__ = [
    "Engine",
    "StreamPolicy",
    "ApiEndpoint",
    "FinishedBlock",
    "EngineTotals",
    "OUTCOME_GPU",
    "OUTCOME_API",
    "OUTCOME_FAILED",
    "FAIL_REASONS",
]

OUTCOME_GPU, OUTCOME_API, OUTCOME_FAILED = 1, 2, 3
FAIL_REASONS = ("", "queue_full", "deadline", "too_large", "api_unavailable", "no_capacity")
_QUEUE_FULL, _DEADLINE, _TOO_LARGE, _API_UNAVAILABLE, _NO_CAPACITY = 1, 2, 3, 4, 5
MODES = ("always", "never", "queue_full", "wait_exceeds")


@dataclass(frozen=True)
class StreamPolicy:
    """How one workload stream is routed (derived from its class's overflow rule)."""

    mode: str = "never"
    api_index: int | None = None
    threshold_s: float = INF
    deadline_s: float = INF
    priority: int = 0  # lower goes first out of the waiting room; FCFS within a level
    # Prefix caching on step replicas: the stream's prompts start with one of
    # ``prefix_groups`` shared prefixes of ``prefix_tokens`` tokens (groups spread evenly);
    # or, with no such prefix, a share ``prefix_hit_share`` of each prompt is in the cache
    # when it is admitted (see sim.serving.step_replica).
    prefix_tokens: int = 0
    prefix_groups: int = 0
    prefix_hit_share: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown overflow mode {self.mode!r}")
        if self.mode in ("always", "queue_full", "wait_exceeds") and self.api_index is None:
            raise ValueError(f"overflow mode {self.mode!r} needs an API")

    @property
    def expire_after_s(self) -> float:
        """How long a request of this stream may wait before it leaves the queue."""
        return self.threshold_s if self.mode == "wait_exceeds" else self.deadline_s


class ApiEndpoint:
    """The engine's view of one simulated API: a rate limiter and a retry rule.

    ``try_acquire(t_s, tokens) -> bool`` admits or rejects one attempt; ``backoff_s(k)`` is
    the wait before retry ``k`` (1-based); ``sample_latency(rng, output_tokens)`` returns
    (ttft_s, e2e_s) arrays measured from the accepted attempt.
    """

    def __init__(self, name: str, try_acquire: Callable[[float, float], bool], max_retries: int,
                 backoff_s: Callable[[int], float],
                 sample_latency: Callable[[np.random.Generator, np.ndarray],
                                          tuple[np.ndarray, np.ndarray]]):
        self.name = name
        self.try_acquire = try_acquire
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.sample_latency = sample_latency


@dataclass
class FinishedBlock:
    """Outcome of every request of one block (numpy arrays, one entry per request).

    Times are absolute seconds from the start of the horizon; NaN where not applicable.
    ``start_s`` is the GPU admission time or the accepted API attempt's time.
    """

    index: int
    requests: RequestBlock
    outcome: np.ndarray  # int8: OUTCOME_*
    reason: np.ndarray  # int8: index into FAIL_REASONS
    replica: np.ndarray  # int32, -1 if not on a GPU
    api: np.ndarray  # int16, -1 if not on an API
    attempts: np.ndarray  # int16 API attempts
    restarts: np.ndarray  # int16: times evicted from a failed or preempted replica
    start_s: np.ndarray
    first_token_s: np.ndarray
    end_s: np.ndarray
    # int16: times a step replica preempted it for KV (recompute); zeros on fluid replicas
    preemptions: np.ndarray | None = None


@dataclass
class EngineTotals:
    """Whole-run counters, including the sample-path integrals used for Little's law."""

    arrived: int = 0
    served_gpu: int = 0
    served_api: int = 0
    failed: int = 0
    events: int = 0  # SimPy calendar entries plus runs of arrivals
    end_s: float = 0.0
    busy_s: float = 0.0  # summed over replicas
    gpu_area: float = 0.0  # integral over time of the number of requests in the GPU system
    gpu_sojourn_s: float = 0.0  # summed time requests spent in the GPU system
    max_queue: int = 0
    preemptions: int = 0  # KV preemptions on step replicas (each recomputes a prefill)
    # Requests sent by each closed-loop stream (by stream name) before the horizon.
    closed_loop_sent: dict[str, int] = field(default_factory=dict)


class _Block:
    """Per-block request data and records, as memoryviews over numpy arrays.

    A memoryview indexes at about the speed of a list but stores raw 8-, 4-, 2- or 1-byte
    values: a day's block of ~600k requests takes ~45 MB here instead of ~250 MB of lists
    of float objects, and the record arrays *are* the :class:`FinishedBlock`'s arrays (no
    conversion when the block ends). The inputs are views of the block's own arrays.
    """

    __slots__ = ("index", "block", "n", "arrival", "need", "inp", "out", "stream",
                 "outcome", "reason", "replica", "api", "attempts", "restarts", "start", "first",
                 "end", "preempted", "records", "outstanding", "all_arrived", "client")

    def __init__(self, index: int, block: RequestBlock,
                 need: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None):
        n = len(block)
        self.index = index
        self.block = block
        self.n = n
        f64 = np.float64
        inp = np.ascontiguousarray(block.input_tokens, f64)
        out = np.ascontiguousarray(block.output_tokens, f64)
        self.arrival = memoryview(np.ascontiguousarray(block.arrival_s, f64))
        # KV tokens a replica must have free to take it: input + output on a fluid replica
        # (reserved from admission to completion), the prompt's blocks on a step replica.
        self.need = memoryview(inp + out if need is None else need(inp, out))
        self.inp = memoryview(inp)
        self.out = memoryview(out)
        self.stream = memoryview(np.ascontiguousarray(block.stream_id, np.int16))
        # Records, written in place. A request served on a GPU is recognised at the end by
        # its replica (>= 0), so completions do not write its outcome. A request starts on
        # arrival unless it waits (then the dispatch writes its start) or goes to an API
        # (its accepted attempt does); a failed one's start is cleared when the block ends.
        rec = {"outcome": np.zeros(n, np.int8), "reason": np.zeros(n, np.int8),
               "replica": np.full(n, -1, np.int32), "api": np.full(n, -1, np.int16),
               "attempts": np.zeros(n, np.int16), "restarts": np.zeros(n, np.int16),
               "start": np.array(block.arrival_s, f64), "first": np.full(n, np.nan),
               "end": np.full(n, np.nan), "preempted": np.zeros(n, np.int16)}
        self.records = rec
        for name, arr in rec.items():
            setattr(self, name, memoryview(arr))
        self.outstanding = n  # counted down only once all have arrived (see close)
        self.all_arrived = False
        self.client: _Client | None = None  # the closed-loop client whose requests these are

    def close(self) -> None:
        """Every request of the block has been routed: count those still in flight (no
        final outcome, no end time), to be counted down as they end. Until now no end was
        counted: most requests end while their block is still arriving, and a test per
        end is cheaper than a decrement."""
        r = self.records
        self.outstanding = int(np.count_nonzero((r["outcome"] == 0) & np.isnan(r["end"])))
        self.all_arrived = True

    def __lt__(self, other: _Block) -> bool:
        # A replica's running entries are (finish point, block, position): on equal finish points
        # the older block goes first (the same block compares equal, by identity, and its
        # positions decide): arrival order, without building an integer key per request.
        return self.index < other.index

    def release(self) -> None:
        """Drop the views once the block has ended (its arrays live on in the records)."""
        for name in ("arrival", "need", "inp", "out", "stream", *self.records):
            getattr(self, name).release()

    def truncate(self, m: int) -> None:
        """Keep the first ``m`` requests only (a client's last block: the rest were never
        sent). The views keep their size; positions from ``m`` on are never read."""
        b = self.block
        self.block = RequestBlock(b.arrival_s[:m], b.input_tokens[:m], b.output_tokens[:m],
                                  b.class_id[:m], b.stream_id[:m])
        self.records = {k: v[:m] for k, v in self.records.items()}
        self.n = m


_CLIENT_BLOCKS = 1 << 40
"""Block indices of closed-loop clients start here (open-loop blocks count from 0)."""


class _ClosedLoop:
    """The engine's closed-loop state: the next client block index and the horizon."""

    __slots__ = ("seq", "horizon_s")

    def __init__(self) -> None:
        self.seq = _CLIENT_BLOCKS
        self.horizon_s = INF


class _Client:
    """One closed-loop client: its current block of requests and the next to send."""

    __slots__ = ("source", "number", "chunk_k", "block", "think", "pos", "api_rngs")

    def __init__(self, source: ClientSource, number: int):
        self.source = source
        self.number = number
        self.chunk_k = 0  # chunks drawn so far
        self.block: _Block | None = None
        self.think = np.empty(0)
        self.pos = 0  # position in the block of the request in flight / to send next
        self.api_rngs: dict[int, np.random.Generator] = {}


class Engine(StepServing):
    """One replication of the fleet; call :meth:`run` once."""

    def __init__(self, *, replicas: int = 0, spec: ReplicaSpec | StepModel | None = None,
                 streams: Sequence[StreamPolicy], apis: Sequence[ApiEndpoint] = (),
                 router: str = "least_loaded", queue_limit: int | None = None,
                 seed: np.random.SeedSequence | int = 0,
                 specs: Sequence[ReplicaSpec | StepModel] | None = None,
                 pools: Sequence[int] | None = None, up: Sequence[bool] | None = None):
        """``replicas`` copies of ``spec``, or one replica per entry of ``specs`` (with its
        ``pools`` id and whether it is ``up`` at time zero, for fleets that change).

        A :class:`~sim.profiles.steptime.StepModel` spec gives step-level replicas (every
        GPU profile: :mod:`sim.serving.step_engine`); a :class:`ReplicaSpec` the fluid
        processor-sharing replica (its continuous-time limit, for queueing theory). One
        engine holds one kind; step replicas of one engine share block size and
        ``max_model_len``."""
        self.env = simpy.Environment()
        self._queue, self._eid = calendar(self.env)  # see the calendar in run()
        specs = list(specs) if specs is not None else [spec] * replicas
        self.streams = list(streams)
        self._step = bool(specs) and isinstance(specs[0], StepModel)
        if self._step:
            if not all(isinstance(s, StepModel) for s in specs):
                raise ValueError("an engine's replicas are all step models or all fluid")
            first = specs[0]
            bs, max_len = first.scheduler.block_size, first.max_len_tokens
            if any(s.scheduler.block_size != bs or s.max_len_tokens != max_len
                   for s in specs):
                raise ValueError("step replicas of one engine must share block_size and "
                                 "max_model_len")
            groups = [p.prefix_groups if p.prefix_tokens > 0 else 0 for p in self.streams]
            self._prefix_groups = groups
            self._prefix_offset = prefix_offsets(groups)
            # A stream with a shared prefix uses its groups on the replicas, not a share.
            self._prefix_hit = [0.0 if g else float(p.prefix_hit_share)
                                for p, g in zip(self.streams, groups, strict=True)]
            prefix = [p.prefix_tokens for p, g in zip(self.streams, groups, strict=True)
                      for _ in range(g)]
            self.replicas = [StepServer(i, s, up=True if up is None else bool(up[i]),
                                        pool=0 if pools is None else pools[i],
                                        prefix_tokens=prefix)
                             for i, s in enumerate(specs)]
            self._rep_cls = StepServer
            self._need = lambda inp, out: step_need(inp, out, bs, max_len)
            self._admit = self._admit_step  # type: ignore[method-assign]
            self._wake = self._wake_step  # type: ignore[method-assign]
        else:
            self.replicas = [Replica(i, s, up=True if up is None else bool(up[i]),
                                     pool=0 if pools is None else pools[i])
                             for i, s in enumerate(specs)]
            # Replicas of one spec share one rate list (read-only; grow_rates replaces it):
            # on a large fleet, per-replica copies of the same table were a cache miss each.
            shared: dict[int, list[float]] = {}
            for rep in self.replicas:
                rep.rates = shared.setdefault(id(rep.spec), rep.rates)
            self._rep_cls = Replica
            self._need = None
        max_kv = max((r.kv_cap for r in self.replicas), default=0.0)
        self.router = Router(self.replicas, router, stream(seed, "router"))
        self._least_loaded = router == "least_loaded"
        self.apis = list(apis)
        self.queue_limit = INF if queue_limit is None else queue_limit
        self.seed = seed
        self.queues: list[deque] = [deque() for _ in self.streams]
        self.expire_after = [p.expire_after_s for p in self.streams]
        self.rank = [p.priority for p in self.streams]
        # The most KV a request of each stream may need to go to a GPU (-INF: it never does).
        self._gpu_kv = [-INF if p.mode == "always" else max_kv for p in self.streams]
        self._last_enqueued = -1
        self.timer_t = [INF] * len(self.streams)  # pending expiry timer per stream queue
        self.timer_version = [0] * len(self.streams)
        self.queued = 0
        self.totals = EngineTotals()
        # Exit times minus entry times of the GPU system (queued or running), summed: the
        # integral over time of the number of requests in it, once they have all left.
        # Two float operations per request where integrating the count took eight.
        self._area = 0.0
        self._blocks: Iterator[RequestBlock] | None = None
        self._cur: _Block | None = None
        self._seq = 0
        self._on_block: Callable[[FinishedBlock], None] | None = None
        # Closed-loop clients, if any (one attribute: CPython shares an instance dict's
        # keys, and specializes attribute loads on them, only up to 30 keys).
        self._closed: _ClosedLoop | None = None

    # ------------------------------------------------------------------ driver
    def run(self, blocks: Iterable[RequestBlock],
            on_block: Callable[[FinishedBlock], None],
            closed_loop: Sequence[ClientSource] = ()) -> EngineTotals:
        """Play every block, and the requests of the ``closed_loop`` clients, through the
        fleet until all requests have ended.

        The calendar is SimPy's event queue, run by this loop instead of
        ``Environment.run``. Besides SimPy's own ``(t, priority, id, event)`` entries
        (API retries, queue-expiry timers, the processes of :mod:`sim.serving.fleet`), the engine
        pushes bare ``(t, NORMAL, id, replica)`` tuples for replica wake-ups, which need
        no ``Event`` object; only the one a replica holds as its ``entry`` is current.
        Ids come from SimPy's counter, so the order of entries (time, priority, then
        scheduling order) is exactly SimPy's. Arrivals are a second, already sorted
        calendar merged in by time. Every calendar entry (all take an id) and each run of
        arrivals counts as one event in ``totals.events``. Only this loop may step the
        environment.
        """
        if closed_loop:
            self._start_clients(closed_loop)
        with _young_gc_threshold(_YOUNG_GC_THRESHOLD):
            return self._run(blocks, on_block)

    # ------------------------------------------------------ closed-loop clients
    def _start_clients(self, sources: Sequence[ClientSource]) -> None:
        """Every client sends its first request at time 0 (calendar events, so they come
        before any open-loop arrival at 0, as events scheduled earlier do)."""
        self._closed = closed = _ClosedLoop()
        for src in sources:
            closed.horizon_s = src.horizon_s
            self.totals.closed_loop_sent[src.name] = 0
            for c in range(src.clients):
                self._schedule(0.0, self._on_send, _Client(src, c))

    def _on_send(self, ev: Event) -> None:
        """Client ``ev.value`` sends its next request now."""
        client: _Client = ev.value
        t = self.env.now
        blk = client.block
        if blk is None:  # a new chunk of its requests
            requests, client.think = client.source.draw(client.number, client.chunk_k)
            client.chunk_k += 1
            closed = self._closed
            assert closed is not None
            blk = client.block = _Block(closed.seq, requests, self._need)
            closed.seq += 1
            blk.client = client
            blk.all_arrived = True  # its one request in flight is counted down as it ends
            client.pos = 0
            client.api_rngs = {}
        j = client.pos
        blk.arrival[j] = t
        blk.start[j] = t
        blk.outstanding = 1
        self.totals.arrived += 1
        self.totals.closed_loop_sent[client.source.name] += 1
        self._route(blk, j, t)

    def _client_done(self, client: _Client) -> None:
        """The client's request in flight has ended: schedule its next one (after its
        think time, if before the horizon), and hand its block on once it is complete."""
        blk = client.block
        assert blk is not None
        j = client.pos
        if blk.replica[j] >= 0:  # served on a GPU: ends when its last token is delivered
            end = blk.end[j]
        elif blk.outcome[j] == OUTCOME_API:
            end = self._client_api_latency(client, blk, j)
        else:  # failed, now
            end = self.env.now
        t_next = max(end + client.think[j], blk.arrival[j] + MIN_CYCLE_S)
        client.pos = j = j + 1
        assert self._closed is not None
        last = not t_next < self._closed.horizon_s
        if j == blk.n or last:
            if j < blk.n:
                blk.truncate(j)
            client.block = None
            self._emit(blk)
        if not last:
            self._schedule(t_next, self._on_send, client)

    def _client_api_latency(self, client: _Client, blk: _Block, j: int) -> float:
        """Draw the latency of a closed-loop request the API accepted (its client waits
        for the answer); returns its end."""
        a = blk.api[j]
        rng = client.api_rngs.get(a)
        if rng is None:
            src = client.source
            rng = client.api_rngs[a] = stream(self.seed, "api", self.apis[a].name, "client",
                                              src.name, client.number, client.chunk_k)
        ttft, e2e = self.apis[a].sample_latency(rng, np.array([blk.out[j]]))
        blk.first[j] = blk.start[j] + float(ttft[0])
        blk.end[j] = end = blk.start[j] + float(e2e[0])
        return end

    def _run(self, blocks: Iterable[RequestBlock],
             on_block: Callable[[FinishedBlock], None]) -> EngineTotals:
        self._blocks = iter(blocks)
        self._on_block = on_block
        env, queue, wake, route = self.env, self._queue, self._wake, self._route
        eid, rep_cls = self._eid, self._rep_cls
        first_id = next(eid)  # ids taken from here on count the calendar's entries
        # The next arrival is not a calendar entry: the workload is already sorted, so the
        # loop compares its time with the calendar's head (a calendar entry at the same
        # time goes first, as one scheduled earlier would in SimPy). The current block,
        # its arrival times and the next arrival's position are locals of this loop.
        blk = self._cur if self._next_block() else None
        arrival, n, j = (blk.arrival, blk.n, 0) if blk is not None else (None, 0, 0)
        arrival_t = arrival[0] if blk is not None else INF
        runs = 0  # runs of arrivals: each is one event
        while True:
            if queue and queue[0][0] <= arrival_t:
                entry = queue[0]
            elif arrival_t < INF:
                # Route this arrival and every later one that comes before the calendar's
                # next entry (one event in all). Inlined here: a call per run cost ~3%.
                env._now = arrival_t  # (simclock.set_now, inlined; see there)
                runs += 1
                while True:
                    route(blk, j, arrival_t)
                    j += 1
                    if j >= n:
                        if not self._next_block():
                            arrival_t = INF
                            break
                        blk, j = self._cur, 0
                        arrival, n = blk.arrival, blk.n
                    arrival_t = arrival[j]
                    if queue and arrival_t >= queue[0][0]:
                        break
                continue
            else:
                break
            x = entry[3]
            if x.__class__ is rep_cls:
                if entry is not x.entry:
                    heappop(queue)  # superseded by an earlier wake-up
                    continue
                t = x.due  # >= the entry's time while the entry is current
                if t > entry[0]:  # delayed by admissions since it was armed: move it
                    x.wake_t = t  # (in place: one sift instead of a pop and a push)
                    x.entry = entry = (t, NORMAL, next(eid), x)
                    heapreplace(queue, entry)
                    continue
                env._now = t  # (simclock.set_now, inlined)
                wake(x, t)  # (which replaces or drops this entry)
            else:  # a SimPy event (it is the calendar's head)
                env.step()
        tot = self.totals
        tot.events += runs + next(eid) - first_id - 1
        tot.end_s = self.env.now
        for rep in self.replicas:
            tot.busy_s += rep.busy_time(tot.end_s)
        # Requests still waiting (only where no replica ever came back) count to the end.
        tot.gpu_area = self._area + self.queued * tot.end_s
        return tot

    def _next_block(self) -> bool:
        """Advance to the next non-empty block; False when the workload is exhausted."""
        for block in self._blocks:
            if self._cur is not None:
                self._cur.close()
                self._maybe_finish(self._cur)
            self._cur = _Block(self._seq, block, self._need)
            self.totals.arrived += len(block)  # all of them are routed before the run ends
            self._seq += 1
            if len(block):
                return True
        if self._cur is not None:
            self._cur.close()
            self._maybe_finish(self._cur)
        return False

    def _schedule(self, t: float, callback: Callable[[Event], None], data: object) -> None:
        """A triggered bare SimPy event at absolute time ``t`` with one callback (for the
        rarer timers: API retries and queue expiry)."""
        heappush(self._queue, (t, NORMAL, next(self._eid),
                               triggered_event(self.env, callback, data)))

    # ---------------------------------------------------------------- arrivals
    def _route(self, blk: _Block, j: int, t: float) -> None:
        need = blk.need[j]
        s = blk.stream[j]
        if need > self._gpu_kv[s]:  # overflows always, or fits on no replica
            pol = self.streams[s]
            if pol.api_index is not None:
                self._to_api(blk, j, t, pol.api_index, 0)
            else:
                self._fail(blk, j, _NO_CAPACITY if not self.replicas else _TOO_LARGE)
            return
        if not self.queued:
            # The common case: nobody waiting, start on the router's choice if it has room.
            router = self.router
            if self._least_loaded:  # Router.pick and Router.least_loaded, inlined
                buckets, m = router.buckets, router.min_load
                while True:
                    q = buckets[m]
                    if q:
                        rep, tick = q[0]
                        if rep.tick == tick:
                            break
                        q.popleft()  # a stale head
                    else:
                        m += 1  # no live entry at this load: the least load is higher
                router.min_load = m
                # A live entry is a replica with a free slot (or the sentinel, which has
                # room for no KV), so only its KV needs checking.
                if rep.kv_used + need > rep.kv_cap:
                    rep = None
                else:  # its entry heads the bucket and goes stale now: drop it at once
                    q.popleft()
            else:
                rep = router.pick(need)
            if rep is not None:
                self._area -= t  # it enters the GPU system
                self._admit(rep, blk, j, t, need)
                return
        pol = self.streams[s]
        if self.queued >= self.queue_limit or self.expire_after[s] <= 0.0:
            if pol.mode == "never":
                self._fail(blk, j, _QUEUE_FULL)
            else:
                self._to_api(blk, j, t, pol.api_index, 0)
            return
        self._enqueue(blk, j, t)
        if len(self.queues) > 1 and pol.priority < self._best_waiting_rank():
            self._dispatch(t)  # it outranks everyone waiting: it may fit where they do not

    def _best_waiting_rank(self) -> int:
        """The best (lowest) priority among waiting requests, other than the newest."""
        best = 1 << 30
        for s, q in enumerate(self.queues):
            if len(q) > (1 if s == self._last_enqueued else 0) and self.rank[s] < best:
                best = self.rank[s]
        return best

    # ------------------------------------------------------------ GPU serving
    def _admit(self, rep: Replica, blk: _Block, j: int, t: float, need: float) -> None:
        # Hot path: Replica.advance and Replica.admit are inlined here.
        running = rep.running
        b = len(running)
        v, stall = rep.v, rep.stall_until
        if b:
            start = rep.last_t if rep.last_t > stall else stall
            if t > start:
                rep.v = v = v + (t - start) * rep.rates[b]
        else:
            rep.busy_since = t  # Replica.busy_from, inlined: a busy period starts
        rep.last_t = t
        # Prefill joins the FCFS stall, KV is reserved, and the request's finish point on
        # the virtual clock is v + output tokens.
        first = (stall if stall > t else t) + blk.inp[j] * rep.prefill_s_per_token
        rep.stall_until = first
        rep.kv_used += need
        insort(running, (v + blk.out[j], blk, j))
        if b >= rep.rates_top:
            rep.grow_rates()
            self.router.fit(len(rep.rates))
        if rep.up:
            # Router.moved(idx, b, b + 1), inlined: the replica's old bucket entry goes
            # stale; it reaches load b + 1 now, so it joins the back of that bucket (which
            # exists: the buckets outnumber the rates), unless it is full. A load going up
            # leaves min_load a valid lower bound.
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
        blk.first[j] = first
        # The next completion moves: an admission can only delay it (longer prefill
        # stall, lower per-request rate) unless the replica was idle or the newcomer
        # finishes first. A delayed wake-up stays in the calendar and the run loop moves it
        # to ``due`` when it comes up, so a burst of admissions costs one move. (wake_t is
        # -INF while the replica's wake-up is being handled: it re-arms itself at the end.)
        # Replica.next_completion_t, inlined: decoding resumes at ``first`` (>= t).
        left = running[0][0] - v
        t_next = first + left / rep.rates[b + 1] if left > 0.0 else first
        rep.due = t_next
        if t_next < rep.wake_t:
            rep.wake_t = t_next
            rep.entry = entry = (t_next, NORMAL, next(self._eid), rep)
            heappush(self._queue, entry)

    def _wake(self, rep: Replica, t: float) -> None:
        """Replica ``rep``'s wake-up at ``t``: end the requests whose finish point its
        clock has reached, then re-arm for the next one by replacing its calendar entry
        (the run loop leaves it at the head: one sift instead of a pop and a push).

        Hot path: Replica.advance, pop_finished and next_completion_t are inlined.
        """
        running, queue, router = rep.running, self._queue, self.router
        b0 = len(running)
        v, stall = rep.v, rep.stall_until
        start = rep.last_t if rep.last_t > stall else stall
        if t > start:
            rep.v = v = v + (t - start) * rep.rates[b0]
        rep.last_t = t
        # ``t`` is the head's due time (the calendar moved this wake-up to ``due``,
        # which admissions keep current, and due >= the prefill stall), so the head
        # ends now, with any others whose finish point the clock has reached.
        limit = v + 1e-9 * (1.0 + v)  # float tolerance: far below one token
        kv = rep.kv_used
        while True:
            _, blk, j = running.pop(0)
            kv -= blk.need[j]
            blk.end[j] = t  # its outcome (GPU) is read from blk.replica at the end
            self._area += t  # it leaves the GPU system
            if blk.all_arrived:  # self._ended(blk), inlined
                blk.outstanding -= 1
                if not blk.outstanding:
                    self._maybe_finish(blk)
            if not running or running[0][0] > limit:
                break
        b = len(running)
        if b:
            rep.kv_used = kv
        else:  # idle: drop accumulated float rounding; the busy period ends
            rep.kv_used = 0.0
            rep.busy_s += t - rep.busy_since  # Replica.idle_from, inlined
            if rep.on_drained is not None:
                rep.wake_t = -INF  # (see _dispatch below)
                callback, rep.on_drained = rep.on_drained, None
                callback(rep.idx, t)
        if rep.up:  # Router.moved(idx, b0, b), inlined (a load going down)
            router._tick = tick = router._tick + 1
            rep.tick = tick
            router.buckets[b].append((rep, tick))
            if b < router.min_load:
                router.min_load = b
            if not tick & router.compact_mask:
                router._compact_all()
        if self.queued:
            rep.wake_t = -INF  # admissions in here leave re-arming to the code below
            self._dispatch(t)
        # Re-arm in place: this wake-up's entry is still the calendar's head (nothing
        # that came in since can sort before it but an urgent SimPy event at this very
        # time; then the old entry is left behind, stale).
        entry = rep.entry
        if not running:
            rep.wake_t = INF
            if queue[0] is entry:
                heappop(queue)
            else:
                rep.entry = None  # left behind the urgent event: stale
            return
        stall = rep.stall_until
        start = t if t > stall else stall
        left = running[0][0] - rep.v
        t_next = start + left / rep.rates[len(running)] if left > 0.0 else start
        rep.wake_t = rep.due = t_next
        rep.entry = new = (t_next, NORMAL, next(self._eid), rep)
        if queue[0] is entry:
            heapreplace(queue, new)
        else:
            heappush(queue, new)

    # ---------------------------------------------------- a fleet that changes
    def start_replica(self, idx: int) -> None:
        """Replica ``idx`` is up (provisioned, loaded, repaired) and takes requests now."""
        rep = self.replicas[idx]
        if rep.up:
            return
        rep.advance(self.env.now)
        rep.up = True
        rep.on_drained = None
        self.router.activate(idx)
        if self.queued:
            self._dispatch(self.env.now)

    def drain_replica(self, idx: int, on_drained: Callable[[int, float], None]) -> None:
        """Stop sending requests to ``idx``; ``on_drained(idx, t)`` once its last one ends."""
        rep = self.replicas[idx]
        if rep.up:
            rep.up = False
            self.router.deactivate(idx)
        if rep.running:
            rep.on_drained = on_drained
        else:
            on_drained(idx, self.env.now)

    def fail_replica(self, idx: int) -> int:
        """Replica ``idx`` fails or is preempted now: its running requests go back to the
        waiting room (oldest first, ahead of younger requests) to be retried elsewhere,
        or leave it by their class's overflow or deadline rule. Returns how many."""
        rep = self.replicas[idx]
        t = self.env.now
        if rep.up:
            rep.up = False
            self.router.deactivate(idx)
        rep.on_drained = None
        evicted = rep.evict(t)
        for _, blk, j in evicted:
            self._requeue(blk, j, t)
        if self.queued:
            self._dispatch(t)
        return len(evicted)

    def _requeue(self, blk: _Block, j: int, t: float) -> None:
        blk.restarts[j] += 1
        blk.replica[j] = -1
        blk.start[j] = blk.first[j] = float("nan")
        s = blk.stream[j]
        q = self.queues[s]
        k = 0
        older = _older if self._closed is None else _older_by_time
        while k < len(q) and older(q[k], (blk, j)):
            k += 1
        q.insert(k, (blk, j))  # still in the GPU system: its sojourn goes on
        self.queued += 1
        if self.expire_after[s] < INF:
            self._arm_timer(s, max(t, q[0][0].arrival[q[0][1]] + self.expire_after[s]))

    # ------------------------------------------------------------ waiting room
    def _enqueue(self, blk: _Block, j: int, t: float) -> None:
        s = blk.stream[j]
        self._last_enqueued = s
        self._area -= t  # it enters the GPU system
        self.queues[s].append((blk, j))
        self.queued += 1
        if self.queued > self.totals.max_queue:
            self.totals.max_queue = self.queued
        if self.timer_t[s] == INF and self.expire_after[s] < INF:
            self._arm_timer(s, t + self.expire_after[s])

    def _arm_timer(self, s: int, t_fire: float) -> None:
        """Make sure stream ``s``'s queue is checked for expired requests at ``t_fire``."""
        if t_fire < self.timer_t[s]:
            self.timer_t[s] = t_fire
            self.timer_version[s] += 1
            self._schedule(t_fire, self._on_expiry, (s, self.timer_version[s]))

    def _dispatch(self, t: float) -> None:
        """Start waiting requests (by priority, then oldest first) while a replica has room."""
        queues, rank, router = self.queues, self.rank, self.router
        older = _older if self._closed is None else _older_by_time
        single = queues[0] if len(queues) == 1 else None
        while self.queued:
            head_q = single
            if head_q is None:
                best = 0
                for s, q in enumerate(queues):
                    if q and (head_q is None or rank[s] < best
                              or (rank[s] == best and older(q[0], head_q[0]))):
                        head_q, best = q, rank[s]
            blk, j = head_q[0]
            need = blk.need[j]
            if self._least_loaded:  # Router.pick, inlined
                rep = router.least_loaded()
                if rep.kv_used + need > rep.kv_cap:  # (a slot is certain: see _route)
                    return
                router.buckets[router.min_load].popleft()
            else:
                rep = router.pick(need)
                if rep is None:
                    return
            head_q.popleft()
            self.queued -= 1
            self._admit(rep, blk, j, t, need)
            blk.start[j] = t  # it waited: it starts now, not on arrival

    def _on_expiry(self, ev: Event) -> None:
        s, version = ev.value
        if version != self.timer_version[s]:
            return  # superseded by an earlier timer
        self.timer_t[s] = INF
        t = self.env.now
        q = self.queues[s]
        after = self.expire_after[s]
        pol = self.streams[s]
        while q and q[0][0].arrival[q[0][1]] + after <= t:
            blk, j = q.popleft()
            self.queued -= 1
            self._area += t  # it leaves the GPU system
            self.totals.gpu_sojourn_s += t - blk.arrival[j]
            if pol.mode == "never" or pol.api_index is None:
                self._fail(blk, j, _DEADLINE)
            else:
                self._to_api(blk, j, t, pol.api_index, 0)
        if q:
            blk, j = q[0]
            self._arm_timer(s, blk.arrival[j] + after)

    # --------------------------------------------------------------- the API
    def _to_api(self, blk: _Block, j: int, t: float, api_index: int, attempt: int) -> None:
        api = self.apis[api_index]
        if api.try_acquire(t, blk.inp[j] + blk.out[j]):
            blk.outcome[j] = OUTCOME_API
            blk.api[j] = api_index
            blk.attempts[j] = attempt + 1
            blk.start[j] = t
            self.totals.served_api += 1
            self._ended(blk)
        elif attempt < api.max_retries:
            self._schedule(t + api.backoff_s(attempt + 1), self._on_retry,
                           (blk, j, api_index, attempt + 1))
        else:
            blk.attempts[j] = attempt + 1
            blk.api[j] = api_index
            self._fail(blk, j, _API_UNAVAILABLE)

    def _on_retry(self, ev: Event) -> None:
        blk, j, api_index, attempt = ev.value
        self._to_api(blk, j, self.env.now, api_index, attempt)

    def _fail(self, blk: _Block, j: int, reason: int) -> None:
        blk.outcome[j] = OUTCOME_FAILED
        blk.reason[j] = reason
        self.totals.failed += 1
        self._ended(blk)

    # ------------------------------------------------------------- records
    def _ended(self, blk: _Block) -> None:
        """One request of ``blk`` has its final outcome. A block still arriving is not
        counted down: it counts what is still in flight when it closes."""
        if blk.all_arrived:
            blk.outstanding -= 1
            if not blk.outstanding:
                self._maybe_finish(blk)

    def _maybe_finish(self, blk: _Block) -> None:
        if blk.outstanding or not blk.all_arrived or blk.block is None:
            return
        if blk.client is not None:  # a closed-loop client's request ended
            self._client_done(blk.client)
            return
        self._emit(blk)

    def _emit(self, blk: _Block) -> None:
        """Hand a block whose requests have all ended to ``on_block``, once."""
        fb = self._finished(blk)
        blk.release()
        blk.block = None  # finish once
        if self._on_block is not None:
            self._on_block(fb)

    def _finished(self, blk: _Block) -> FinishedBlock:
        r = blk.records
        outcome, api, replica = r["outcome"], r["api"], r["replica"]
        start, first, end = r["start"], r["first"], r["end"]
        block = blk.block
        # Every request still holding a replica when its block ends was served there
        # (an evicted one is given back -1); completions skip writing the outcome and
        # counting it.
        on_gpu = replica >= 0
        outcome[on_gpu] = OUTCOME_GPU
        start[outcome == OUTCOME_FAILED] = np.nan
        self.totals.served_gpu += int(np.count_nonzero(on_gpu))
        # Their time in the GPU system, for Little's law (requests that left the waiting
        # room unserved were counted when they left it).
        arrival = np.asarray(block.arrival_s, np.float64)
        self.totals.gpu_sojourn_s += float(np.sum(end[on_gpu] - arrival[on_gpu]))
        # (a closed-loop client's API latencies were drawn as they were accepted)
        for a, endpoint in enumerate(self.apis if blk.client is None else ()):
            sel = np.flatnonzero((outcome == OUTCOME_API) & (api == a))
            if sel.size:
                rng = stream(self.seed, "api", endpoint.name, blk.index)
                ttft, e2e = endpoint.sample_latency(rng, block.output_tokens[sel])
                first[sel] = start[sel] + ttft
                end[sel] = start[sel] + e2e
        preempted = r["preempted"]
        if self._step:
            self.totals.preemptions += int(preempted.sum())
        return FinishedBlock(blk.index, block, outcome, r["reason"], replica, api,
                             r["attempts"], r["restarts"], start, first, end, preempted)


# The run loop allocates calendar and running-list entries (tuples) by the million. Those still
# in flight when the cyclic GC's youngest generation fills up (every 700 allocations by
# default) are traversed, promoted and traversed again, though they never form cycles; on
# a large fleet the referents they point at are cache misses. Callgrind with a 512 KB
# last-level cache, 1,024 replicas: 43% fewer LL read misses with a threshold of 50,000
# (16 replicas: unchanged). Cyclic garbage is still collected, only less often.
_YOUNG_GC_THRESHOLD = 50_000


@contextlib.contextmanager
def _young_gc_threshold(young: int) -> Iterator[None]:
    """Raise the GC's youngest-generation threshold for a block (unless the GC is off)."""
    old = gc.get_threshold()
    if old[0] and old[0] < young:
        gc.set_threshold(young, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _older(a: tuple, b: tuple) -> bool:
    """Is queue entry ``a`` older than ``b``? (Block order, then position.)"""
    return a[0].index < b[0].index or (a[0].index == b[0].index and a[1] < b[1])


def _older_by_time(a: tuple, b: tuple) -> bool:
    """Is queue entry ``a`` older than ``b``? (Arrival time, then block order and position:
    with closed-loop clients, blocks are not in time order.)"""
    ba, bb = a[0], b[0]
    if ba is bb:
        return a[1] < b[1]
    ta, tb = ba.arrival[a[1]], bb.arrival[b[1]]
    return ta < tb or (ta == tb and ba.index < bb.index)

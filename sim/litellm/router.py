"""The LiteLLM Router in front of self-hosted servers and paid APIs, as a SimPy model.

What it models: every request names a model group; the router sends **attempts** to the
group's deployments until one answers, following the semantics of LiteLLM's Router as we
read its documentation (our own code; see :mod:`sim.litellm.strategies` for the pick):

* **An attempt fails** when its deployment is down (an outage of an API or of a
  self-hosted server: HTTP 503, answered after ``error_latency_s``), over the provider's
  rate limit (429, API deployments only, after ``error_latency_s``), or past the router's
  ``timeout`` (whole answer) or ``stream_timeout`` (first token) -- a self-hosted server
  then aborts the request, freeing its slot. Self-hosted servers queue rather than refuse
  (:mod:`sim.serving.server`), so under overload they fail by timeout.
* **Retries**: after a failed attempt the group is tried again, up to ``num_retries``
  times, preferring deployments this request has not yet failed on. The retry is
  immediate when the group still has more than one deployment out of cooldown; otherwise
  it waits ``max(retry_after, min(0.5 x 2^(k-1), 8))`` s before retry k (LiteLLM's
  exponential back-off, without its jitter).
* **Fallbacks**: when a group is exhausted (retries spent, or no deployment available),
  the request moves to the next group of ``fallbacks[group]`` (else ``default_fallbacks``),
  at most ``max_fallbacks`` of them, each with its own retries. A request larger than
  every deployment of its group can take goes to ``context_window_fallbacks`` instead.
* **Cooldowns**: each deployment counts its failures per clock minute (windows aligned to
  the start of the horizon). A 429 cools it down at once; otherwise it cools down when the
  minute's failures exceed ``allowed_fails``. A cooldown lasts ``cooldown_time`` s (a
  failure during one extends it) and takes the deployment out of every pick. As in
  LiteLLM, the only deployment of a group is never cooled down, and ``disable_cooldowns``
  turns cooldowns off.
* **No deployment available** (all cooling down, over their rpm/tpm under usage-based
  routing, or too small): the group fails at once, with no retry. Context windows
  (``max_input_tokens``, a server's KV cache) are always checked before the pick, as with
  LiteLLM's ``enable_pre_call_checks``.

Every request ends exactly once, served or failed, and its attempts, deployments tried
and fallbacks are recorded. Per deployment and per ``bin_s`` (default one minute) the
model records attempts, answers, failures by kind, tokens sent and time in cooldown.

Assumptions: an API answer's latency is drawn when the attempt is sent (the API model's
TTFT and output speed) and an outage that starts mid-answer does not cut it; failed and
timed-out API attempts are not billed; the router is one process (no shared Redis state
between proxy replicas) and the rpm/tpm it tracks count attempts when sent.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import simpy

from sim.core.rng import stream
from sim.litellm.config import RouterSettings
from sim.litellm.strategies import has_headroom, pick, shuffle_weights
from sim.serving.api import WINDOW_S, ApiModel, RateLimiter
from sim.serving.replica import INF, ReplicaSpec
from sim.serving.server import Server
from sim.workload.requests import RequestBlock

__all__ = ["DeploymentModel", "LitellmRouterSim", "RouterResult", "FAIL_KINDS", "REASONS",
           "WINDOW_S"]

FAIL_KINDS = ("rate_limit", "unavailable", "timeout")
_RATE_LIMIT, _UNAVAILABLE, _TIMEOUT = 0, 1, 2
REASONS = ("", "rate_limit", "unavailable", "timeout", "no_deployment", "context_window")
_NO_DEPLOYMENT, _CONTEXT = 4, 5
_BACKOFF_S, _MAX_BACKOFF_S = 0.5, 8.0
_TIMEOUT_LATENCY_S = 1000.0  # what a timeout adds to latency-based routing's history


@dataclass(frozen=True)
class DeploymentModel:
    """One deployment as the simulation sees it (built from the config and experiment)."""

    name: str
    group: str
    kind: str  # "gpu" (a self-hosted server) or "api"
    weight: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    order: int | None = None
    timeout_s: float | None = None
    stream_timeout_s: float | None = None
    max_input_tokens: float = INF
    usd_per_input_token: float = 0.0
    usd_per_output_token: float = 0.0
    api: ApiModel | None = None  # kind "api": latency, provider limits, outages
    spec: ReplicaSpec | None = None  # kind "gpu"
    replicas: int = 0
    outages: tuple[tuple[float, float], ...] = ()  # extra (start_s, end_s) intervals


class _Dep:
    """Runtime state of one deployment."""

    def __init__(self, idx: int, m: DeploymentModel, settings: RouterSettings):
        self.idx, self.m = idx, m
        self.name, self.group, self.kind = m.name, m.group, m.kind
        self.weight, self.rpm, self.tpm = m.weight, m.rpm, m.tpm
        self.usd_per_input_token = m.usd_per_input_token
        self.usd_per_output_token = m.usd_per_output_token
        self.shuffle_weight = 1.0
        self.timeout_s = m.timeout_s if m.timeout_s is not None else settings.timeout
        self.stream_timeout_s = (m.stream_timeout_s if m.stream_timeout_s is not None
                                 else settings.stream_timeout)
        self.in_flight = 0
        self.cooldown_until = -INF
        self.cooldowns: list[list[float]] = []
        self._fail_minute, self._fails = -1, 0
        self._use_minute, self._use_rpm, self._use_tpm = -1, 0, 0.0
        args = settings.routing_strategy_args
        self.latencies: deque = deque(maxlen=args.max_latency_list_size)  # (t, s per token)
        self.latency_ttl_s = args.ttl if args.ttl is not None else INF
        # The provider's own per-minute limits (an API deployment's rpm/tpm)
        self.limiter = RateLimiter(m.api) if m.api is not None else None
        self.server: Server | None = None
        self.deadlines: list[_Deadlines] = []
        self.outages = sorted(m.outages)
        # totals
        self.attempts = 0
        self.ok = 0
        self.failures = [0, 0, 0]
        self.input_tokens = 0.0
        self.output_tokens = 0.0
        self.cost_usd = 0.0
        self.peak_rpm = 0
        # per-bin timeline (lists grow as time goes on)
        self.bin_attempts: list[int] = []
        self.bin_ok: list[int] = []
        self.bin_fail: list[list[int]] = [[], [], []]
        self.bin_tokens: list[float] = []

    def usage(self, minute: int) -> tuple[int, float]:
        """(attempts, tokens) sent in clock minute ``minute``."""
        return (self._use_rpm, self._use_tpm) if minute == self._use_minute else (0, 0.0)

    def add_usage(self, minute: int, tokens: float) -> None:
        if minute != self._use_minute:
            self._use_minute, self._use_rpm, self._use_tpm = minute, 0, 0.0
        self._use_rpm += 1
        self._use_tpm += tokens
        self.peak_rpm = max(self.peak_rpm, self._use_rpm)

    def count_failure(self, minute: int) -> int:
        """Count one failure in ``minute``; returns the minute's failures so far."""
        if minute != self._fail_minute:
            self._fail_minute, self._fails = minute, 0
        self._fails += 1
        return self._fails

    def mean_latency(self, t: float) -> float:
        """Mean latency per output token of the recent answers still within ``ttl``."""
        fresh = [v for at, v in self.latencies if t - at <= self.latency_ttl_s]
        return sum(fresh) / len(fresh) if fresh else 0.0

    def is_down(self, t: float) -> bool:
        if self.m.api is not None and self.m.api.is_down(t):
            return True
        return any(a <= t < b for a, b in self.outages)

    def cooling(self, t: float) -> bool:
        return t < self.cooldown_until


class _Req:
    """A request in flight through the router."""

    __slots__ = ("seq", "arrival", "inp", "out", "stream", "first_group", "group", "fallbacks",
                 "retries_left", "retry_no", "tried", "path", "attempts", "groups_tried",
                 "last_reason")

    def __init__(self, seq: int, arrival: float, inp: float, out: float, stream_id: int,
                 group: str):
        self.seq, self.arrival, self.inp, self.out, self.stream = (seq, arrival, inp, out,
                                                                   stream_id)
        self.first_group = self.group = group
        self.fallbacks: list[str] = []
        self.retries_left = 0
        self.retry_no = 0
        self.tried: list[int] = []  # deployments failed on in the current group
        self.path: list[int] = []  # every deployment attempted, in order
        self.attempts = 0
        self.groups_tried = 0
        self.last_reason = 0


class _Attempt:
    __slots__ = ("key", "req", "dep", "t_start", "first_s", "done")

    def __init__(self, key: int, req: _Req, dep: _Dep, t_start: float):
        self.key, self.req, self.dep, self.t_start = key, req, dep, t_start
        self.first_s = math.nan
        self.done = False


class _Deadlines:
    """The attempts on one self-hosted deployment under one time limit (``timeout``, or
    ``stream_timeout`` for the first token), kept in the order sent -- which is deadline
    order, the limit being the same for all -- with one pending timer, for the oldest
    attempt still waiting. Shaped this way so a timeout costs no event per attempt."""

    def __init__(self, sim: LitellmRouterSim, limit_s: float, *, first_token: bool):
        self.sim, self.limit_s, self.first_token = sim, limit_s, first_token
        self.queue: deque = deque()
        self.timer_t = INF

    def add(self, att: _Attempt) -> None:
        deadline = att.t_start + self.limit_s
        self.queue.append((deadline, att))
        if self.timer_t == INF:
            self._arm(deadline)

    def _arm(self, t: float) -> None:
        self.timer_t = t
        self.sim._at(t, self._fire)

    def _met(self, deadline: float, att: _Attempt) -> bool:
        # A first token is known when the request starts: it meets the limit if it comes
        # by the deadline (NaN while still queued compares False).
        return att.done or (self.first_token and att.first_s <= deadline)

    def _fire(self) -> None:
        self.timer_t = INF
        t = self.sim.env.now
        queue = self.queue
        while queue:
            deadline, att = queue[0]
            if self._met(deadline, att):
                queue.popleft()
            elif deadline <= t:
                queue.popleft()
                self.sim._gpu_timeout(att)
            else:
                self._arm(deadline)
                return


@dataclass
class RouterResult:
    """What one simulated router run produced."""

    horizon_s: float
    bin_s: float
    arrived: int
    served: int
    failed: int
    deployments: list[dict]  # one summary dict per deployment
    timeline: pa.Table  # deployment x bin
    cooldowns: pa.Table  # deployment, start_s, end_s
    request_stats: dict  # flat aggregates over requests
    requests: pa.Table | None = None
    reasons: dict = field(default_factory=dict)


class LitellmRouterSim:
    """One run of a LiteLLM router config over a stream of request blocks."""

    def __init__(self, deployments: Sequence[DeploymentModel], settings: RouterSettings, *,
                 stream_groups: Sequence[str], seed: np.random.SeedSequence | int = 0,
                 horizon_s: float, bin_s: float = WINDOW_S, error_latency_s: float = 0.1,
                 immediate_cooldown_on_429: bool = True, keep_requests: bool = False):
        self.env = simpy.Environment()
        self.settings = settings
        self.strategy = settings.routing_strategy
        self.deps = [_Dep(i, m, settings) for i, m in enumerate(deployments)]
        self.groups: dict[str, list[_Dep]] = {}
        for d in self.deps:
            self.groups.setdefault(d.group, []).append(d)
        for members in self.groups.values():
            for d, w in zip(members, shuffle_weights(members), strict=True):
                d.shuffle_weight = w
        self.fallbacks = settings.fallback_map("fallbacks")
        self.cw_fallbacks = settings.fallback_map("context_window_fallbacks")
        self.stream_groups = list(stream_groups)
        self.horizon_s, self.bin_s = horizon_s, bin_s
        self.error_latency_s = error_latency_s
        self.immediate_429 = immediate_cooldown_on_429
        self.keep = keep_requests
        self.seed = seed
        self._rng = stream(seed, "litellm", "router")
        self._api_rng = {d.idx: stream(seed, "litellm", "api", d.name) for d in self.deps
                         if d.kind == "api"}
        self._key = 0
        self.arrived = self.served = self.failed = 0
        self._ok: dict[str, array] = {k: array("d") for k in ("e2e", "ttft", "retry_added")}
        self._req_counts = {"retried": 0, "fell_back": 0, "attempts": 0, "retried_ok": 0}
        self._reasons = [0] * len(REASONS)
        self._records: list[tuple] = []
        for d in self.deps:
            if d.kind == "gpu":
                d.server = Server(self.env, d.m.spec, d.m.replicas,
                                  on_admit=self._admitted, on_done=self._gpu_done)
                d.deadlines = [_Deadlines(self, limit, first_token=first)
                               for limit, first in ((d.timeout_s, False),
                                                    (d.stream_timeout_s, True))
                               if limit is not None]
            for start, _end in d.outages:
                self._at(start, lambda d=d: self._outage_starts(d))
        self._check_groups()

    def _check_groups(self) -> None:
        for g in self.stream_groups:
            if g not in self.groups:
                raise ValueError(f"unknown model group {g!r}")

    # ------------------------------------------------------------------ driver
    def run(self, blocks: Iterable[RequestBlock]) -> RouterResult:
        self.env.process(self._arrivals(blocks))
        self.env.run()
        return self._result()

    def _arrivals(self, blocks: Iterable[RequestBlock]):
        env = self.env
        seq = 0
        for block in blocks:
            arrival = block.arrival_s.tolist()
            inp = block.input_tokens.tolist()
            out = block.output_tokens.tolist()
            sid = block.stream_id.tolist()
            for j, t in enumerate(arrival):
                if t > env.now:
                    yield env.timeout(t - env.now)
                req = _Req(seq, t, inp[j], out[j], sid[j], self.stream_groups[sid[j]])
                seq += 1
                self.arrived += 1
                self._start_group(req, req.group, first=True)

    def _at(self, t: float, fn) -> None:
        self.env.timeout(max(t - self.env.now, 0.0)).callbacks.append(lambda _ev: fn())

    # ------------------------------------------------------------ the groups
    def _fits(self, d: _Dep, req: _Req) -> bool:
        if req.inp > d.m.max_input_tokens:
            return False
        return d.server is None or d.server.fits(req.inp, req.out)

    def _start_group(self, req: _Req, group: str, *, first: bool = False) -> None:
        members = self.groups[group]
        if first:
            req.fallbacks = list(self.fallbacks.get(group, self.settings.default_fallbacks))
            req.fallbacks = req.fallbacks[:self.settings.max_fallbacks]
        req.group = group
        req.groups_tried += 1
        req.tried = []
        req.retries_left = self.settings.num_retries
        req.retry_no = 0
        if not any(self._fits(d, req) for d in members):
            cw = self.cw_fallbacks.get(group, [])
            req.last_reason = _CONTEXT
            nxt = next((g for g in cw if any(self._fits(d, req) for d in self.groups[g])), None)
            if nxt is None:
                self._request_failed(req)
            else:
                req.fallbacks = []  # a context-window fallback does not chain on
                self._start_group(req, nxt)
            return
        self._attempt(req)

    def _candidates(self, req: _Req, t: float) -> list[_Dep]:
        minute = int(t // WINDOW_S)
        tokens = req.inp + req.out
        usage_based = self.strategy.startswith("usage-based-routing")
        ok = [d for d in self.groups[req.group]
              if not d.cooling(t) and self._fits(d, req)
              and (not usage_based or has_headroom(d, minute, tokens))]
        fresh = [d for d in ok if d.idx not in req.tried]
        ok = fresh or ok
        orders = [d.m.order for d in ok if d.m.order is not None]
        if orders:
            lowest = min(orders)
            ok = [d for d in ok if d.m.order is None or d.m.order == lowest]
        return ok

    def _attempt(self, req: _Req) -> None:
        t = self.env.now
        candidates = self._candidates(req, t)
        if not candidates:
            req.last_reason = _NO_DEPLOYMENT
            self._group_failed(req)
            return
        minute = int(t // WINDOW_S)
        dep = pick(self.strategy, candidates, t=t, rng=self._rng,
                   buffer=self.settings.routing_strategy_args.lowest_latency_buffer)
        self._key += 1
        att = _Attempt(self._key, req, dep, t)
        req.attempts += 1
        req.path.append(dep.idx)
        dep.attempts += 1
        dep.in_flight += 1
        dep.add_usage(minute, req.inp + req.out)
        b = self._bin(dep, t)
        dep.bin_attempts[b] += 1
        dep.bin_tokens[b] += req.inp + req.out
        if dep.is_down(t):
            self._at(t + self.error_latency_s, lambda: self._failed(att, _UNAVAILABLE))
        elif dep.kind == "api":
            self._send_api(att, t)
        else:
            self._send_gpu(att, t)

    def _send_api(self, att: _Attempt, t: float) -> None:
        dep, req = att.dep, att.req
        assert dep.limiter is not None  # every API deployment has one
        if not dep.limiter.try_acquire(t, req.inp + req.out):
            self._at(t + self.error_latency_s, lambda: self._failed(att, _RATE_LIMIT))
            return
        ttft, e2e = dep.m.api.sample_latency(self._api_rng[dep.idx], req.out)
        ttft, e2e = float(ttft), float(e2e)
        limit = min(_limit(dep.stream_timeout_s, ttft), _limit(dep.timeout_s, e2e))
        if limit < INF:
            self._at(t + limit, lambda: self._failed(att, _TIMEOUT))
            return
        att.first_s = t + ttft
        self._at(t + e2e, lambda: self._succeeded(att))

    def _send_gpu(self, att: _Attempt, t: float) -> None:
        dep, req = att.dep, att.req
        dep.server.submit(att, req.inp, req.out)
        for deadlines in dep.deadlines:
            deadlines.add(att)

    def _gpu_timeout(self, att: _Attempt) -> None:
        att.dep.server.abort(att)
        self._failed(att, _TIMEOUT)

    def _admitted(self, att: _Attempt, first_token_s: float) -> None:
        att.first_s = first_token_s

    def _gpu_done(self, att: _Attempt, _t: float) -> None:
        if not att.done:
            self._succeeded(att)

    def _outage_starts(self, dep: _Dep) -> None:
        if dep.server is not None:
            for att in dep.server.fail_all():
                self._failed(att, _UNAVAILABLE)

    # -------------------------------------------------------------- outcomes
    def _succeeded(self, att: _Attempt) -> None:
        att.done = True
        t = self.env.now
        dep, req = att.dep, att.req
        dep.in_flight -= 1
        dep.ok += 1
        dep.bin_ok[self._bin(dep, t)] += 1
        dep.input_tokens += req.inp
        dep.output_tokens += req.out
        cost = req.inp * dep.usd_per_input_token + req.out * dep.usd_per_output_token
        dep.cost_usd += cost
        dep.latencies.append((t, (t - att.t_start) / max(req.out, 1.0)))
        self.served += 1
        ok = self._ok
        ok["e2e"].append(t - req.arrival)
        ok["ttft"].append(att.first_s - req.arrival)
        ok["retry_added"].append(att.t_start - req.arrival)
        if req.attempts > 1:
            self._req_counts["retried_ok"] += 1
        self._finish(req, dep.idx, 0, t, att.first_s, cost)

    def _failed(self, att: _Attempt, kind: int) -> None:
        if att.done:
            return
        att.done = True
        t = self.env.now
        dep, req = att.dep, att.req
        dep.in_flight -= 1
        dep.failures[kind] += 1
        dep.bin_fail[kind][self._bin(dep, t)] += 1
        if kind == _TIMEOUT:
            dep.latencies.append((t, _TIMEOUT_LATENCY_S))
        self._maybe_cool_down(dep, t, kind)
        req.tried.append(dep.idx)
        req.last_reason = kind + 1
        if req.retries_left > 0:
            req.retries_left -= 1
            req.retry_no += 1
            self._at(t + self._retry_wait_s(req, t), lambda: self._attempt(req))
        else:
            self._group_failed(req)

    def _retry_wait_s(self, req: _Req, t: float) -> float:
        healthy = sum(not d.cooling(t) for d in self.groups[req.group])
        if healthy > 1:
            return 0.0
        backoff = min(_BACKOFF_S * 2 ** (req.retry_no - 1), _MAX_BACKOFF_S)
        return max(self.settings.retry_after, backoff)

    def _maybe_cool_down(self, dep: _Dep, t: float, kind: int) -> None:
        fails = dep.count_failure(int(t // WINDOW_S))
        if self.settings.disable_cooldowns or len(self.groups[dep.group]) < 2:
            return
        if (kind == _RATE_LIMIT and self.immediate_429) or fails > self.settings.allowed_fails:
            until = t + self.settings.cooldown_time
            if dep.cooling(t):
                dep.cooldown_until = max(dep.cooldown_until, until)
                dep.cooldowns[-1][1] = dep.cooldown_until
            else:
                dep.cooldown_until = until
                dep.cooldowns.append([t, until])

    def _group_failed(self, req: _Req) -> None:
        if req.fallbacks:
            self._start_group(req, req.fallbacks.pop(0))
        else:
            self._request_failed(req)

    def _request_failed(self, req: _Req) -> None:
        self.failed += 1
        self._finish(req, -1, req.last_reason, self.env.now, math.nan, 0.0)

    def _finish(self, req: _Req, dep_idx: int, reason: int, t: float, first_s: float,
                cost: float) -> None:
        self._reasons[reason] += 1
        c = self._req_counts
        c["attempts"] += req.attempts
        c["retried"] += req.attempts > req.groups_tried
        c["fell_back"] += req.groups_tried > 1
        if self.keep:
            final = self.deps[dep_idx] if dep_idx >= 0 else None
            self._records.append((req.seq, req.arrival, req.stream, req.inp, req.out,
                                  req.first_group, final.group if final else "",
                                  final.name if final else "", REASONS[reason], req.attempts,
                                  req.groups_tried - 1,
                                  ">".join(self.deps[i].name for i in req.path),
                                  first_s - req.arrival, t - req.arrival, cost))

    # ------------------------------------------------------------- bookkeeping
    def _bin(self, dep: _Dep, t: float) -> int:
        b = int(t // self.bin_s)
        grow = b + 1 - len(dep.bin_attempts)
        if grow > 0:
            for lst in (dep.bin_attempts, dep.bin_ok, *dep.bin_fail):
                lst.extend([0] * grow)
            dep.bin_tokens.extend([0.0] * grow)
        return b

    def _result(self) -> RouterResult:
        end = max(self.env.now, self.horizon_s)
        nbins = max(max(len(d.bin_attempts) for d in self.deps),
                    math.ceil(self.horizon_s / self.bin_s))
        cols: dict[str, list] = {k: [] for k in ("deployment", "group", "bin_start_s",
                                                  "attempts", "ok", *FAIL_KINDS, "tokens",
                                                  "cooldown_s")}
        summaries = []
        cd_rows = {"deployment": [], "start_s": [], "end_s": []}
        total_ok = max(self.served, 1)
        for d in self.deps:
            self._bin(d, (nbins - 1) * self.bin_s)
            if d.server is not None:
                d.server.finish()
            cooldown = _cooldown_per_bin(d.cooldowns, nbins, self.bin_s, end)
            cols["deployment"] += [d.name] * nbins
            cols["group"] += [d.group] * nbins
            cols["bin_start_s"] += (np.arange(nbins) * self.bin_s).tolist()
            cols["attempts"] += d.bin_attempts[:nbins]
            cols["ok"] += d.bin_ok[:nbins]
            for k, name in enumerate(FAIL_KINDS):
                cols[name] += d.bin_fail[k][:nbins]
            cols["tokens"] += d.bin_tokens[:nbins]
            cols["cooldown_s"] += cooldown.tolist()
            for a, b in d.cooldowns:
                cd_rows["deployment"].append(d.name)
                cd_rows["start_s"].append(a)
                cd_rows["end_s"].append(min(b, end))
            summaries.append(self._summary(d, total_ok, float(cooldown.sum())))
        requests = None
        if self.keep:
            requests = _records_table(self._records)
        return RouterResult(self.horizon_s, self.bin_s, self.arrived, self.served, self.failed,
                            summaries, pa.table(cols), pa.table(cd_rows),
                            self._request_stats(), requests,
                            {REASONS[i] or "ok": n for i, n in enumerate(self._reasons)})

    def _summary(self, d: _Dep, total_ok: int, cooldown_s: float) -> dict:
        out = {"deployment": d.name, "group": d.group, "kind": d.kind, "attempts": d.attempts,
               "ok": d.ok, "share": d.ok / total_ok,
               **{f"fail_{k}": d.failures[i] for i, k in enumerate(FAIL_KINDS)},
               "failures": sum(d.failures), "cooldowns": len(d.cooldowns),
               "cooldown_s": cooldown_s, "input_tokens": d.input_tokens,
               "output_tokens": d.output_tokens, "api_cost_usd": d.cost_usd,
               "peak_rpm": d.peak_rpm}
        if d.server is not None:
            out["replicas"] = d.m.replicas
            out["busy_s"] = d.server.busy_s
        return out

    def _request_stats(self) -> dict:
        n = max(self.arrived, 1)
        c = self._req_counts
        stats = {"requests": self.arrived, "served": self.served, "failed": self.failed,
                 "failed_share": self.failed / n, "retry_rate": c["retried"] / n,
                 "fallback_rate": c["fell_back"] / n, "attempts_per_request": c["attempts"] / n}
        for key, values in self._ok.items():
            arr = np.frombuffer(values, dtype=np.float64) if len(values) else np.zeros(0)
            for q in (50, 95, 99):
                stats[f"{key}_s_p{q}"] = float(np.percentile(arr, q)) if arr.size else math.nan
            stats[f"{key}_s_mean"] = float(arr.mean()) if arr.size else math.nan
        return stats


def _limit(limit_s: float | None, latency_s: float) -> float:
    """When an answer taking ``latency_s`` times out under ``limit_s`` (INF if it does not)."""
    return limit_s if limit_s is not None and latency_s > limit_s else INF


def _cooldown_per_bin(intervals: list[list[float]], nbins: int, bin_s: float,
                      end_s: float) -> np.ndarray:
    """Seconds of each bin spent in cooldown (intervals cut at ``end_s``: the end of the
    horizon, or of the run if later)."""
    out = np.zeros(nbins)
    for a, b in intervals:
        b = min(b, max(end_s, a))
        k = int(a // bin_s)
        while a < b and k < nbins:
            edge = min(b, (k + 1) * bin_s)
            out[k] += edge - a
            a, k = edge, k + 1
    return out


def _records_table(records: list[tuple]) -> pa.Table:
    names = ("request", "arrival_s", "stream", "input_tokens", "output_tokens", "group",
             "final_group", "deployment", "failure", "attempts", "fallbacks", "path",
             "ttft_s", "e2e_s", "api_cost_usd")
    cols = list(zip(*records, strict=True)) if records else [[] for _ in names]
    return pa.table({n: list(c) for n, c in zip(names, cols, strict=True)})

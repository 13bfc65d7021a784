"""Workloads: named streams of LLM requests, and their generation as request blocks.

A workload is a list of streams; each stream has a traffic class (a free label such as
``interactive`` or ``batch``), an arrival process (:mod:`sim.workload.arrivals`), input and output
token-length models (:mod:`sim.workload.lengths`; optional for trace replay, which then keeps the
trace's own lengths) and optional SLOs. ``scale`` multiplies every stream's rate, batch
count and trace rate.

Generation is windowed: :func:`iter_blocks` yields one :class:`~sim.workload.requests.RequestBlock`
per ``block_s`` window, so memory is bounded by a window, not the horizon. The window is
a day, halved until the streams' peak rates (spikes aside; a batch counts as its count
over its period) bring at most ``BLOCK_REQUESTS`` requests into it: memory stays flat in
the traffic too (a batch occurrence still lands whole in its window). Randomness:
window ``w`` of stream ``name`` draws its arrivals from ``stream(seed, "workload", name,
w)`` and its lengths from the same path plus ``"input_tokens"`` / ``"output_tokens"``; an
MMPP chain and each batch occurrence have their own streams (see :mod:`sim.workload.arrivals`).
Hence a stream's requests depend only on (its own config, the workload scale, horizon,
seed, block_s): adding a stream never changes another stream's requests, and changing
one length model never moves arrivals. Streams in a window are merged by a stable sort on
arrival time (ties keep stream order).

A ``concurrency`` stream (a closed loop of clients) has no arrival times of its own: the
engine sends each client's next request when its previous one ends. Its requests come from
:func:`closed_loop_streams`: client ``c`` draws its requests in chunks of
:func:`client_chunk` requests, chunk ``k`` from ``stream(seed, "workload", name, "client",
c, k)`` plus ``"input_tokens"`` / ``"output_tokens"`` / ``"think_s"``, so a client's
lengths and think times depend only on the stream's config and the seed, not on when the
server answers. :func:`iter_blocks` yields no request of such a stream.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from sim.core.errors import ConfigError, closest
from sim.core.loader import read_yaml, resolve_named
from sim.core.rng import stream
from sim.core.schema import Model, PositiveFloat, Probability, validate
from sim.workload.arrivals import (
    DAY_S,
    HOUR_S,
    MAX_CHAIN_SWITCHES,
    ArrivalProcess,
    ArrivalsConfig,
    ConcurrencyArrivals,
    PositiveDurationS,
    SpikyArrivals,
    ThinkConfig,
    TraceArrivals,
    WindowArrivals,
    build_process,
    chain_switches,
    draw_think_s,
    scaled_clients,
    trace_replay,
)
from sim.workload.lengths import (
    MAX_TOKENS,
    EmpiricalLength,
    ExponentialLength,
    FixedLength,
    LengthConfig,
    LognormalLength,
    draw_lengths,
)
from sim.workload.requests import RequestBlock, concat_blocks
from sim.workload.traces import Trace, read_length_column, read_trace, resolve_trace_path

__all__ = [
    "BLOCK_S",
    "BLOCK_REQUESTS",
    "MAX_REQUESTS",
    "MAX_REQUESTS_ENV",
    "max_requests",
    "expected_requests",
    "MAX_HORIZON_S",
    "MONTH_S",
    "SloConfig",
    "PrefixConfig",
    "longest_tokens",
    "StreamConfig",
    "WorkloadConfig",
    "parse_workload",
    "iter_blocks",
    "ClosedLoopStream",
    "closed_loop_streams",
    "client_chunk",
    "refuse_closed_loop",
    "block_window_s",
    "horizon_problem",
    "check_volume",
    "generate",
    "describe",
]

BLOCK_S = DAY_S
BLOCK_REQUESTS = 1_000_000  # ~300 MB of a replication's peak memory (see benchmarks/)
MAX_HORIZON_S = 3650 * DAY_S  # ten years
MAX_REQUESTS = 10**10  # per run: ~14 h at ~200,000 simulated requests per second
MAX_REQUESTS_ENV = "CAPSIM_MAX_REQUESTS"
"""The environment variable that lowers or raises ``MAX_REQUESTS``."""
REQUESTS_PER_S = 200_000.0
"""Simulated requests per second of one core, for the size estimates in messages."""
SPIKE_BLOCK_FACTOR = 4
"""A window holds at most this many times ``BLOCK_REQUESTS`` with spikes at their peak."""
MONTH_S = 30 * DAY_S  # "per month" in summaries means 30 days
T = TypeVar("T")


# -- configuration -----------------------------------------------------------------------

class SloConfig(Model):
    """Per-request service objectives (all optional; ``deadline_s`` counts from arrival)."""

    ttft_s: PositiveDurationS | None = None
    e2e_s: PositiveDurationS | None = None
    deadline_s: PositiveDurationS | None = None
    tpot_s: PositiveDurationS | None = None


MAX_PREFIX_GROUPS = 100_000
"""Most prefix groups of one stream (each is a counter on every replica)."""


class PrefixConfig(Model):
    """Prefix caching declared for a stream (issue #19 item 4).

    ``tokens`` (with ``groups``, default 1): every prompt starts with one of ``groups``
    shared prefixes of ``tokens`` tokens (a system prompt, a few-shot template), requests
    spread evenly over the groups. On a GPU replica (step-level model, vLLM's automatic
    prefix caching) a request skips the prefix's full blocks while a running request of
    its group holds them (:mod:`sim.serving.step_replica`); a prompt with no token beyond
    the prefix's full blocks computes everything.

    ``hit_share`` h: the share of a request's input tokens that hit the cache, taken at
    face value (for example a conversation's earlier turns, kept by automatic prefix
    caching). On a GPU replica (:mod:`sim.serving.step_replica`), given without
    ``tokens``, each request of the stream finds the first ``bs x floor(min(h x P, P - 1)
    / bs)`` of its P prompt tokens cached when it is admitted (whole KV blocks of the
    profile's ``block_size`` bs; vLLM always computes the last prompt token), and again
    after a recompute preemption: its prefill computes only the rest, while it holds KV
    blocks for its whole prompt (the cached blocks are its own, not shared with other
    requests), so its routing and KV room are unchanged. With ``tokens`` too, the GPU
    replicas use the groups and h only sets the API billing below. A profile with
    ``prefix_caching`` off caches nothing; LiteLLM router replays model no prefix caching
    on their GPU deployments (either form).

    Billing of the stream's requests on an API (:meth:`cached_tokens`): ``hit_share x
    input`` if given, else the prefix's ``tokens`` for every prompt longer than the prefix
    (a prompt of at most ``tokens`` tokens is taken not to hold it), instead of the API
    model's own ``cached_input_share``. Assumption: the provider's cache is warm, i.e.
    every overflowed request of a group hits it. Overflow happens under load, when the
    stream sends its few prefixes many times a minute, and providers keep a prefix for
    minutes (OpenAI 5-10 min of inactivity, Anthropic 5 min), so the misses (about one
    per group and cache lifetime) are neglected; so is the provider's own granularity
    (OpenAI caches from 1,024 tokens in steps of 128).
    """

    tokens: PositiveInt | None = Field(None, le=MAX_TOKENS)
    groups: PositiveInt = Field(1, le=MAX_PREFIX_GROUPS)
    hit_share: Probability | None = None

    @model_validator(mode="after")
    def _something_declared(self) -> PrefixConfig:
        if self.tokens is None and self.hit_share is None:
            raise ValueError("give tokens (a shared prefix, with groups) or hit_share (the "
                             "share of input tokens that hit the cache), or both")
        if self.tokens is None and "groups" in self.model_fields_set:
            raise ValueError("groups needs tokens (the length of each group's prefix)")
        return self

    def cached_tokens(self, input_tokens: np.ndarray) -> np.ndarray:
        """Input tokens of each request billed at the API's cached-input price."""
        inp = np.asarray(input_tokens, np.float64)
        if self.hit_share is not None:
            return self.hit_share * inp
        assert self.tokens is not None
        return np.where(inp > self.tokens, float(self.tokens), 0.0)


def longest_tokens(config: LengthConfig) -> float:
    """The longest length a length model can give (an empirical column's longest)."""
    if isinstance(config, FixedLength):
        return float(config.value)
    if isinstance(config, LognormalLength | ExponentialLength):
        return float(config.max)
    return float(read_length_column(resolve_trace_path(config.path), config.column).max())


def _prefix_problem(tokens: int, longest: float, where: str) -> str | None:
    if tokens < longest:
        return None
    return (f"tokens ({tokens}) must be less than the longest prompt {where} "
            f"({longest:g}): a prompt holds the prefix only if it has tokens of its own "
            "beyond it, so no request could ever hit the cache")


class StreamConfig(Model):
    name: str = Field(min_length=1)
    traffic_class: str = Field("interactive", alias="class", min_length=1)
    arrivals: ArrivalsConfig
    input_tokens: LengthConfig | None = None
    output_tokens: LengthConfig | None = None
    slo: SloConfig = SloConfig()
    prefix: PrefixConfig | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix_fits(cls, prefix: PrefixConfig | None, info: ValidationInfo
                     ) -> PrefixConfig | None:
        inp = info.data.get("input_tokens")
        if prefix is not None and prefix.tokens is not None and inp is not None \
                and not isinstance(inp, EmpiricalLength):  # (checked when it is read)
            problem = _prefix_problem(prefix.tokens, longest_tokens(inp),
                                      "input_tokens can give")
            if problem:
                raise ValueError(problem)
        return prefix

    @model_validator(mode="after")
    def _lengths_given(self) -> StreamConfig:
        if self.arrivals.kind != "trace":
            for key in ("input_tokens", "output_tokens"):
                if getattr(self, key) is None:
                    raise ValueError(f"'{key}' is required unless arrivals.kind is trace")
        return self


class WorkloadConfig(Model):
    name: str = ""
    scale: PositiveFloat = Field(1.0, le=1e6)  # far above any what-if, below float overflow
    streams: tuple[StreamConfig, ...]

    @field_validator("streams")
    @classmethod
    def _unique_names(cls, streams: tuple[StreamConfig, ...]) -> tuple[StreamConfig, ...]:
        # (not Field(min_length=1): pydantic would add a spurious "too short" error
        # whenever a stream fails validation)
        if not streams:
            raise ValueError("needs at least one stream")
        names = [s.name for s in streams]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"stream names must be unique; '{twice[0]}' appears twice")
        return streams

    @property
    def class_names(self) -> tuple[str, ...]:
        """Unique traffic classes in stream order (``class_id`` indexes this)."""
        return tuple(dict.fromkeys(s.traffic_class for s in self.streams))

    def check_class(self, name: str, *, file: str | None = None,
                    field: str | None = None) -> None:
        """A one-line ConfigError unless ``name`` is one of the workload's traffic classes."""
        if name not in self.class_names:
            raise ConfigError(f"no traffic class '{name}' in the workload"
                              f"{closest(name, self.class_names)}; classes: "
                              f"{', '.join(self.class_names)}", file=file, field=field)

    @property
    def class_ids(self) -> tuple[int, ...]:
        """The class id of every stream."""
        names = self.class_names
        return tuple(names.index(s.traffic_class) for s in self.streams)


# -- parsing -----------------------------------------------------------------------------

def parse_workload(value: Any, *, base_dir: Path | None = None, file: str | None = None,
                   field: str = "workload") -> WorkloadConfig:
    """A validated workload from a list of streams, a mapping with ``streams``, or a
    workload name / path (resolved like other named files; its errors name that file).

    Trace and empirical-length paths are resolved (against ``base_dir``, the current
    directory, then the shipped ``workloads/`` folder), stored absolute, and parsed now so
    that bad rows surface before any simulation.
    """
    if isinstance(value, WorkloadConfig):
        return value
    if isinstance(value, str | Path):
        path = resolve_named("workloads", str(value), base_dir=base_dir, field=field, file=file)
        return _parse_data(read_yaml(path), base_dir=path.parent, file=str(path), prefix="",
                           default_name=path.stem)
    return _parse_data(value, base_dir=base_dir, file=file, prefix=field, default_name="")


def _parse_data(data: Any, *, base_dir: Path | None, file: str | None, prefix: str,
                default_name: str) -> WorkloadConfig:
    is_list = isinstance(data, list)
    if not (is_list or isinstance(data, dict)):
        raise ConfigError("expected a list of streams, a mapping with 'streams', or a "
                          f"workload name (got {type(data).__name__})", file=file,
                          field=prefix or None)
    try:
        wl = validate(WorkloadConfig, {"streams": data} if is_list else data, file=file)
    except ConfigError as exc:
        field = exc.field or ""
        if is_list and field.startswith("streams"):
            field = field.removeprefix("streams").removeprefix(".")
        raise ConfigError(exc.message, file=exc.file, field=_join(prefix, field)) from None
    if not wl.name and default_name:
        wl = wl.model_copy(update={"name": default_name})
    streams = tuple(
        _resolve_stream(s, wl.scale, base_dir, file,
                        _join(prefix, f"[{i}]" if is_list else f"streams[{i}]"))
        for i, s in enumerate(wl.streams))
    return wl.model_copy(update={"streams": streams})


def _join(prefix: str, field: str) -> str | None:
    if not prefix or not field:
        return prefix or field or None
    return prefix + field if field.startswith("[") else f"{prefix}.{field}"


def _located(fn: Callable[[], T], file: str | None, field: str) -> T:
    """``fn()``, with any ConfigError placed at ``field`` (and in ``file`` if it has none)."""
    try:
        return fn()
    except ConfigError as exc:
        raise exc.at(file=file, field_prefix=field) from None


def _resolve_stream(s: StreamConfig, scale: float, base_dir: Path | None, file: str | None,
                    where: str | None) -> StreamConfig:
    """``s`` with absolute trace paths, after checking that each file parses."""
    where = where or ""
    updates: dict[str, Any] = {}
    trace: Trace | None = None
    arr = s.arrivals
    if isinstance(arr, TraceArrivals):
        field = _join(where, "arrivals.path") or ""
        path = _located(lambda: resolve_trace_path(arr.path, base_dir), file, field)
        trace = _located(lambda: read_trace(path, arr.format), file, field)
        arr = arr.model_copy(update={"path": str(path)})
        _located(lambda: trace_replay(arr, trace, scale), file, _join(where, "arrivals") or "")
        updates["arrivals"] = arr
    for key in ("input_tokens", "output_tokens"):
        cfg = getattr(s, key)
        if isinstance(cfg, EmpiricalLength):
            field = _join(where, f"{key}.path") or ""
            path = _located(lambda c=cfg: resolve_trace_path(c.path, base_dir), file, field)
            _located(lambda c=cfg, p=path: read_length_column(p, c.column), file,
                     _join(where, f"{key}.column") or "")
            updates[key] = cfg.model_copy(update={"path": str(path)})
    if s.prefix is not None and s.prefix.tokens is not None and (
            s.input_tokens is None or isinstance(s.input_tokens, EmpiricalLength)):
        if s.input_tokens is None:
            assert trace is not None  # (lengths may be left out only for trace replay)
            longest, what = float(trace.input_tokens.max()), "in the trace"
        else:
            longest = longest_tokens(updates["input_tokens"])
            what = "in the input_tokens column"
        problem = _prefix_problem(s.prefix.tokens, longest, what)
        if problem:
            raise ConfigError(problem, file=file, field=_join(where, "prefix.tokens"))
    return s.model_copy(update=updates) if updates else s


# -- generation --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Source:
    """One stream ready to generate window after window."""

    name: str
    stream_id: int
    class_id: int
    process: ArrivalProcess
    input_tokens: LengthConfig | None
    output_tokens: LengthConfig | None
    trace: Trace | None

    def window(self, seed: np.random.SeedSequence | int, index: int, start_s: float,
               end_s: float) -> RequestBlock:
        arrivals = self.process.window(start_s, end_s, stream(seed, "workload", self.name, index))
        n = arrivals.times_s.size
        return RequestBlock(
            arrivals.times_s,
            self._lengths("input_tokens", arrivals, seed, index),
            self._lengths("output_tokens", arrivals, seed, index),
            np.full(n, self.class_id, np.int16),
            np.full(n, self.stream_id, np.int16),
        )

    def _lengths(self, key: str, arrivals: WindowArrivals, seed: np.random.SeedSequence | int,
                 index: int) -> np.ndarray:
        config = getattr(self, key)
        if config is None:  # trace replay keeps the trace's own lengths
            assert self.trace is not None and arrivals.trace_rows is not None
            column = self.trace.input_tokens if key == "input_tokens" else self.trace.output_tokens
            return column[arrivals.trace_rows]
        rng = stream(seed, "workload", self.name, index, key)
        return draw_lengths(config, arrivals.times_s.size, rng)


def _sources(wl: WorkloadConfig, horizon_s: float,
             seed: np.random.SeedSequence | int) -> list[_Source]:
    sources = []
    for sid, (s, cid) in enumerate(zip(wl.streams, wl.class_ids, strict=True)):
        trace = None
        if isinstance(s.arrivals, TraceArrivals):
            trace = read_trace(resolve_trace_path(s.arrivals.path), s.arrivals.format)
        process = build_process(s.arrivals, scale=wl.scale, horizon_s=horizon_s, seed=seed,
                                name=s.name, trace=trace)
        sources.append(_Source(s.name, sid, cid, process, s.input_tokens, s.output_tokens,
                               trace))
    return sources


def horizon_problem(horizon_s: float) -> str | None:
    """What is wrong with a horizon (None if nothing): it must be positive, at most
    ``MAX_HORIZON_S``."""
    if 0 < horizon_s <= MAX_HORIZON_S:
        return None
    return f"must be positive and at most {MAX_HORIZON_S / DAY_S:g} days, got {horizon_s:g} s"


def block_window_s(peak_rate_per_s: float, spiked_peak_rate_per_s: float = 0.0) -> float:
    """The generation window: a day, halved until it holds ``BLOCK_REQUESTS`` at most at
    the peak rate (and ``SPIKE_BLOCK_FACTOR`` times that with spikes at their peak)."""
    block_s = BLOCK_S
    while block_s > 1.0 and (peak_rate_per_s * block_s > BLOCK_REQUESTS or spiked_peak_rate_per_s
                             * block_s > SPIKE_BLOCK_FACTOR * BLOCK_REQUESTS):
        block_s /= 2
    return block_s


def max_requests() -> float:
    """The most simulated requests one run may need: ``MAX_REQUESTS``, or the value of
    ``$CAPSIM_MAX_REQUESTS``."""
    text = os.environ.get(MAX_REQUESTS_ENV)
    if text is None or not text.strip():
        return float(MAX_REQUESTS)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 1 and math.isfinite(value)):
        raise ConfigError(f"expected a number of requests such as 1e11, got {text!r}",
                          field=MAX_REQUESTS_ENV)
    return value


def expected_requests(wl: WorkloadConfig, horizon_s: float) -> float:
    """An upper estimate of one replication's requests (spikes, chain states, batch
    occurrences and trace loops included), without generating any."""
    _check_structure(wl, horizon_s)
    return sum(src.process.expected_requests(horizon_s) for src in _sources(wl, horizon_s, 0))


def _check_structure(wl: WorkloadConfig, horizon_s: float) -> None:
    """What must be bounded before a process is even built (an MMPP chain is drawn
    whole for the horizon)."""
    for i, s in enumerate(wl.streams):
        if isinstance(s.arrivals, SpikyArrivals):
            n = chain_switches(s.arrivals, horizon_s)
            cycle_s = s.arrivals.mean_calm_s + s.arrivals.mean_burst_s
            if not n <= MAX_CHAIN_SWITCHES:
                raise ConfigError(f"mean_calm_s + mean_burst_s of {cycle_s:.3g} s makes "
                                  f"about {n:.2g} state "
                                  f"changes over the horizon (at most {MAX_CHAIN_SWITCHES:,}); "
                                  "lengthen the states or shorten the horizon",
                                  field=f"workload.streams[{i}].arrivals.mean_calm_s")


def check_volume(wl: WorkloadConfig, horizon_s: float, *, file: str | None = None,
                 replications: int = 1) -> float:
    """Refuse a workload too large to simulate: more than :func:`max_requests` requests
    over ``replications`` (estimated by :func:`expected_requests`), with the estimate and
    how to raise the limit. The error, or one from building the streams (a trace's offset
    or loop, an MMPP chain), names ``file``. Returns the estimate per replication."""
    try:
        per_replication = expected_requests(wl, horizon_s)
        limit = max_requests()
    except ConfigError as exc:
        raise exc.at(file=file) from None
    total = per_replication * replications
    if not total <= limit:
        hours = total / REQUESTS_PER_S / 3600.0
        speed = (f"about {hours / 24:.2g} days" if hours >= 48 else f"about {hours:.2g} hours")
        per = (f" ({per_replication:.2g} requests per replication x {replications:,} "
               f"replication{'s' if replications > 1 else ''})")
        raise ConfigError(f"about {total:.2g} simulated requests{per} over "
                          f"{horizon_s / DAY_S:g} days ({speed} at ~200,000 requests/s): more "
                          f"than the limit of {limit:.2g}; lower the rates, the horizon or "
                          f"the replications, or raise the limit with {MAX_REQUESTS_ENV}="
                          f"{_round_up(total):.0e}", file=file, field="workload")
    return per_replication


def _round_up(x: float) -> float:
    return 10.0 ** math.ceil(math.log10(x)) if math.isfinite(x) and x > 0 else 1e300


def iter_blocks(wl: WorkloadConfig, horizon_s: float, seed: np.random.SeedSequence | int,
                block_s: float | None = None) -> Iterator[RequestBlock]:
    """Request blocks covering ``[0, horizon_s)``, one per ``block_s`` window (by default
    :func:`block_window_s` of the streams' peak rates), in time order; each block is
    sorted by arrival (ties in stream order)."""
    if not horizon_s > 0:
        raise ConfigError(f"must be positive, got {horizon_s!r}", field="horizon")
    seed = int(seed) if isinstance(seed, np.integer) else seed
    sources = _sources(wl, horizon_s, seed)
    if block_s is None:
        block_s = block_window_s(
            sum(src.process.peak_rate_per_s for src in sources),
            sum(src.process.peak_rate_per_s * src.process.peak_spike_factor()
                for src in sources))
    if not block_s > 0:
        raise ValueError(f"block_s must be positive, got {block_s!r}")
    for index in range(math.ceil(horizon_s / block_s)):
        start_s, end_s = index * block_s, min(horizon_s, (index + 1) * block_s)
        parts = concat_blocks([src.window(seed, index, start_s, end_s) for src in sources])
        yield RequestBlock.from_arrays(parts.arrival_s, parts.input_tokens,
                                       parts.output_tokens, parts.class_id, parts.stream_id)


CLIENT_CHUNK_MAX = 1024
CLIENT_CHUNK_MIN = 16
CLIENT_CHUNK_TOTAL = 65_536
"""The requests all clients of a closed-loop stream hold drawn ahead, at most (unless
each client's minimum chunk makes it more)."""


def client_chunk(clients: int) -> int:
    """Requests one client draws at a time: ``CLIENT_CHUNK_TOTAL`` shared by the clients,
    within ``[CLIENT_CHUNK_MIN, CLIENT_CHUNK_MAX]``."""
    return max(CLIENT_CHUNK_MIN, min(CLIENT_CHUNK_MAX, CLIENT_CHUNK_TOTAL // clients))


@dataclass(frozen=True)
class ClosedLoopStream:
    """One ``concurrency`` stream, ready for the engine: ``clients`` clients that each send
    their next request when the previous one ends, plus a think time, until the horizon.

    :meth:`draw` gives client ``c``'s ``k``-th chunk of requests (arrival times NaN: the
    engine writes them as it sends them) and the think time after each."""

    name: str
    stream_id: int
    class_id: int
    clients: int
    think_s: ThinkConfig
    input_tokens: LengthConfig
    output_tokens: LengthConfig
    horizon_s: float
    seed: np.random.SeedSequence | int
    chunk: int

    def draw(self, client: int, k: int) -> tuple[RequestBlock, np.ndarray]:
        path = ("workload", self.name, "client", client, k)
        n = self.chunk
        block = RequestBlock(
            np.full(n, np.nan),
            draw_lengths(self.input_tokens, n, stream(self.seed, *path, "input_tokens")),
            draw_lengths(self.output_tokens, n, stream(self.seed, *path, "output_tokens")),
            np.full(n, self.class_id, np.int16), np.full(n, self.stream_id, np.int16))
        return block, draw_think_s(self.think_s, n, stream(self.seed, *path, "think_s"))


def closed_loop_streams(wl: WorkloadConfig, horizon_s: float,
                        seed: np.random.SeedSequence | int) -> tuple[ClosedLoopStream, ...]:
    """The workload's ``concurrency`` streams (empty if it has none)."""
    seed = int(seed) if isinstance(seed, np.integer) else seed
    out = []
    for sid, (s, cid) in enumerate(zip(wl.streams, wl.class_ids, strict=True)):
        arr = s.arrivals
        if isinstance(arr, ConcurrencyArrivals):
            assert s.input_tokens is not None and s.output_tokens is not None
            clients = scaled_clients(arr.clients, wl.scale)
            out.append(ClosedLoopStream(s.name, sid, cid, clients, arr.think_s,
                                        s.input_tokens, s.output_tokens, horizon_s, seed,
                                        client_chunk(clients)))
    return tuple(out)


def refuse_closed_loop(wl: WorkloadConfig, what: str, *, file: str | None = None,
                       prefix: str = "workload.") -> None:
    """A one-line ConfigError if the workload has a ``concurrency`` stream, for ``what``
    (a command or a path) that plays only open-loop arrivals."""
    for i, s in enumerate(wl.streams):
        if isinstance(s.arrivals, ConcurrencyArrivals):
            raise ConfigError(f"stream '{s.name}' is a closed loop of clients, whose "
                              "requests depend on the servers' response times: "
                              f"{what} cannot play it (run it with capsim run on a fleet)",
                              file=file, field=f"{prefix}streams[{i}].arrivals.kind")


def generate(wl: WorkloadConfig, horizon_s: float,
             seed: np.random.SeedSequence | int) -> RequestBlock:
    """Every request of the horizon in one block (for tests and the CLI)."""
    return concat_blocks(list(iter_blocks(wl, horizon_s, seed)))


# -- summaries ---------------------------------------------------------------------------

class _Summary:
    """Running totals over blocks: hourly counts, length histograms, class mix."""

    def __init__(self, wl: WorkloadConfig, horizon_s: float):
        self.n_hours = max(1, math.ceil(horizon_s / HOUR_S))
        self.requests = np.zeros(self.n_hours)
        self.tokens = np.zeros(self.n_hours)
        self.hist = {"input_tokens": np.zeros(1, np.int64), "output_tokens": np.zeros(1, np.int64)}
        self.class_requests = np.zeros(len(wl.class_names))
        self.class_tokens = np.zeros(len(wl.class_names))

    def add(self, block: RequestBlock) -> None:
        hour = np.minimum((block.arrival_s // HOUR_S).astype(np.int64), self.n_hours - 1)
        tokens = block.input_tokens + block.output_tokens
        self.requests += np.bincount(hour, minlength=self.n_hours)
        self.tokens += np.bincount(hour, weights=tokens, minlength=self.n_hours)
        k = self.class_requests.size
        self.class_requests += np.bincount(block.class_id, minlength=k)
        self.class_tokens += np.bincount(block.class_id, weights=tokens, minlength=k)
        for key, hist in self.hist.items():
            self.hist[key] = _add_histogram(hist, getattr(block, key))


def _add_histogram(hist: np.ndarray, values: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.rint(values).astype(np.int64), minlength=hist.size)
    counts[: hist.size] += hist
    return counts


def _length_stats(hist: np.ndarray) -> dict[str, float]:
    """Mean, max and nearest-rank percentiles from a histogram of whole token counts."""
    total = int(hist.sum())
    if total == 0:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    cdf = np.cumsum(hist)
    stats = {"mean": float(np.arange(hist.size) @ hist / total)}
    for q in (50, 90, 99):
        stats[f"p{q}"] = float(np.searchsorted(cdf, math.ceil(q / 100 * total)))
    stats["max"] = float(np.flatnonzero(hist)[-1])
    return stats


def _by_hour_of_day(per_hour: np.ndarray) -> list[float]:
    hod = np.arange(per_hour.size) % 24
    hours = np.bincount(hod, minlength=24)
    return list(np.bincount(hod, weights=per_hour, minlength=24) / np.maximum(hours, 1))


def describe(wl: WorkloadConfig, horizon_s: float, seed: np.random.SeedSequence | int,
             on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Statistics of one generated horizon (memory bounded by a block).

    Keys: ``name``, ``horizon_s``, ``streams``, ``requests``, ``mean_rate_per_s``,
    ``requests_per_hour`` / ``tokens_per_hour`` (one entry per hour of the horizon; tokens
    are input + output), ``hour_of_day`` (the same two, averaged by hour of day),
    ``input_tokens`` / ``output_tokens`` (``mean``, nearest-rank ``p50``, ``p90``, ``p99``,
    ``max``), ``classes`` (``{class: {requests, share, tokens}}``) and
    ``tokens_per_month``, ``input_tokens_per_month``, ``output_tokens_per_month`` (30 days).
    ``on_progress(t_s)`` is called after each block with its last arrival time.
    """
    refuse_closed_loop(wl, "capsim workload", prefix="")
    summary = _Summary(wl, horizon_s)
    for block in iter_blocks(wl, horizon_s, seed):
        summary.add(block)
        if on_progress is not None and len(block):
            on_progress(float(block.arrival_s[-1]))
    n = float(summary.requests.sum())
    tokens = float(summary.tokens.sum())
    per_month = MONTH_S / horizon_s
    inp = _length_stats(summary.hist["input_tokens"])
    out = _length_stats(summary.hist["output_tokens"])
    return {
        "name": wl.name,
        "horizon_s": float(horizon_s),
        "streams": [s.name for s in wl.streams],
        "requests": int(n),
        "mean_rate_per_s": n / horizon_s,
        "requests_per_hour": list(summary.requests),
        "tokens_per_hour": list(summary.tokens),
        "hour_of_day": {"requests_per_hour": _by_hour_of_day(summary.requests),
                        "tokens_per_hour": _by_hour_of_day(summary.tokens)},
        "input_tokens": inp,
        "output_tokens": out,
        "classes": {name: {"requests": int(summary.class_requests[i]),
                           "share": float(summary.class_requests[i] / n) if n else 0.0,
                           "tokens": float(summary.class_tokens[i])}
                    for i, name in enumerate(wl.class_names)},
        "tokens_per_month": tokens * per_month,
        "input_tokens_per_month": inp["mean"] * n * per_month,
        "output_tokens_per_month": out["mean"] * n * per_month,
    }

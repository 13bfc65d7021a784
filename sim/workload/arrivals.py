"""Arrival processes: when one workload stream's requests arrive.

Time is in seconds from the start of the horizon, which is a Monday at 00:00; days 5 and
6 of every week are the weekend. Kinds (``arrivals.kind`` in a workload file):

* ``poisson`` - a homogeneous Poisson process of ``rate_per_s``.
* ``diurnal`` - a non-homogeneous Poisson process. The daily shape is a raised cosine
  ``1 + a cos(2 pi (t - peak) / 1 day)`` with ``a = (r - 1) / (r + 1)`` so that max/min is
  ``r = peak_to_trough``, or the 24 ``hourly_weights`` (piecewise constant per hour).
  Either shape has mean 1 over a day. Normalisation: weekdays are multiplied by
  ``7 / (5 + 2 w)`` and weekend days by ``w`` times that (``w = weekend_factor``), so the
  mean rate over a whole week is exactly ``mean_rate_per_s``.
* ``spiky`` - a two-state Markov-modulated Poisson process (MMPP): calm periods at
  ``base_rate_per_s`` and bursts at ``burst_rate_per_s``, with exponential sojourns of means
  ``mean_calm_s`` and ``mean_burst_s``. The chain starts in its stationary distribution
  and is drawn once for the whole horizon from its own random stream.
* ``batch`` - exactly ``count`` requests per occurrence, uniform in ``[at, at + spread_s)``
  on day ``start_day`` and every ``every`` after it; each occurrence draws from its own
  stream (keyed by occurrence index), so a burst that straddles two generation windows
  still has an exact count. Requests past the horizon are dropped.
* ``concurrency`` - a closed loop of ``clients`` clients, as a load generator such as
  llmperf or ``vllm bench serve --max-concurrency`` applies it: every client sends its first
  request at time 0 and each next one when its previous request ends (served on a GPU,
  served by an API, or failed) plus a think time ``think_s`` (a number of seconds, default
  0, or ``{kind: exponential, mean}`` / ``{kind: fixed, value}``). Its arrival times
  depend on the servers' response times, so they are not generated here: the engine
  creates each client's next request when its previous one ends
  (:class:`sim.workload.streams.ClosedLoopStream` draws the lengths and think times).
  A client never sends two requests less than ``MIN_CYCLE_S`` apart (a request that
  fails at once with no think time would otherwise loop at one instant). Workload
  ``scale`` multiplies the number of clients (rounded, at least one).
* ``trace`` - replays a trace file (see :mod:`sim.workload.traces`): rows before ``offset_s``
  (trace clock) are skipped, the remaining times (measured from the offset) are divided by
  ``rate_scale`` times the workload scale, and with ``loop`` the trace repeats with period
  span + mean gap. Replay starts at the horizon start, whatever the trace's own clock.

``poisson``, ``diurnal`` and ``spiky`` also take ``spikes``: scheduled flash spikes that
multiply the rate by ``multiplier`` in ``[start, start + duration)`` (overlaps multiply).

Every process knows its size before it allocates: :meth:`ArrivalProcess.expected_requests`
is an upper estimate of its requests over a horizon (spikes, chain states, batch
occurrences and trace loops included), which :func:`sim.workload.streams.check_volume`
compares with the limit before anything is generated.

Generation of the Poisson family is exact and vectorised: the intensity is
``level(t) * shape(t)`` with ``level`` piecewise constant (rate, hour weight, weekday
factor, chain state, spikes) and ``shape`` the smooth cosine or 1. A window is cut into
pieces at every hour, level change and shape extremum, so the shape is monotone on each
piece; each piece draws a homogeneous Poisson process at its maximal rate and keeps each
point with probability ``lambda(t) / max`` (thinning). Workload ``scale`` multiplies every
rate and batch count (rounded to whole requests) and compresses trace time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import BeforeValidator, Field, NonNegativeInt, PositiveInt, field_validator

from sim.core.errors import ConfigError
from sim.core.rng import stream
from sim.core.schema import DurationS, Model, NonNegFloat, PositiveFloat, TimeOfDayS
from sim.workload.requests import MIN_CYCLE_S
from sim.workload.traces import Trace

__all__ = [
    "DAY_S",
    "WEEK_S",
    "HOUR_S",
    "PositiveDurationS",
    "Spike",
    "PoissonArrivals",
    "DiurnalArrivals",
    "SpikyArrivals",
    "BatchArrivals",
    "TraceArrivals",
    "ConcurrencyArrivals",
    "FixedThink",
    "ExponentialThink",
    "ThinkConfig",
    "MIN_CYCLE_S",
    "draw_think_s",
    "scaled_clients",
    "ArrivalsConfig",
    "WindowArrivals",
    "ArrivalProcess",
    "TraceReplay",
    "trace_replay",
    "build_process",
]

MAX_SPIKES = 1000
"""Most scheduled spikes one stream may have."""
MAX_CHAIN_SWITCHES = 10_000_000
"""Most MMPP state changes over the horizon (the chain is drawn whole)."""
HOUR_S = 3600.0
DAY_S = 86400.0
WEEK_S = 7 * DAY_S
_WEEKEND_DAYS = (5, 6)

PositiveDurationS = Annotated[DurationS, Field(gt=0)]
"""A duration that must be strictly positive."""


# -- configuration -----------------------------------------------------------------------

class Spike(Model):
    """A scheduled flash spike: the rate is multiplied in ``[start, start + duration)``."""

    start: DurationS
    duration: PositiveDurationS
    multiplier: NonNegFloat


Spikes = Annotated[tuple[Spike, ...], Field(max_length=MAX_SPIKES)]


class PoissonArrivals(Model):
    kind: Literal["poisson"]
    rate_per_s: PositiveFloat
    spikes: Spikes = ()


class DiurnalArrivals(Model):
    kind: Literal["diurnal"]
    mean_rate_per_s: PositiveFloat
    peak_hour: float = Field(14.0, ge=0, lt=24)
    peak_to_trough: float = Field(4.0, ge=1, allow_inf_nan=False)
    hourly_weights: tuple[NonNegFloat, ...] | None = None
    weekend_factor: NonNegFloat = 1.0
    spikes: Spikes = ()

    @field_validator("hourly_weights")
    @classmethod
    def _24_weights(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and (len(v) != 24 or sum(v) <= 0):
            raise ValueError(f"needs 24 non-negative numbers with a positive sum, got {len(v)}")
        return v


class SpikyArrivals(Model):
    kind: Literal["spiky"]
    base_rate_per_s: NonNegFloat
    burst_rate_per_s: PositiveFloat
    mean_burst_s: PositiveDurationS
    mean_calm_s: PositiveDurationS
    spikes: Spikes = ()


class BatchArrivals(Model):
    kind: Literal["batch"]
    count: PositiveInt = Field(le=10_000_000)  # one occurrence is generated at once
    at: TimeOfDayS = 2 * HOUR_S
    every: PositiveDurationS = DAY_S
    spread_s: DurationS = 0.0
    start_day: NonNegativeInt = 0


class TraceArrivals(Model):
    kind: Literal["trace"]
    path: str = Field(min_length=1)
    format: Literal["auto", "azure", "vidur", "mooncake"] = "auto"
    rate_scale: PositiveFloat = Field(1.0, le=1e6)
    loop: bool = True
    offset_s: DurationS = 0.0


MAX_CLIENTS = 10_000
"""Most clients of one closed-loop stream (each holds a block of at least 16 requests, a
few kB: 10,000 clients take tens of MB; load generators run hundreds)."""


class FixedThink(Model):
    kind: Literal["fixed"]
    value: NonNegFloat


class ExponentialThink(Model):
    kind: Literal["exponential"]
    mean: PositiveFloat


def _plain_think(value: object) -> object:
    """``think_s: 5`` means a fixed think time of 5 s; a negative number is refused here,
    so that the error names ``think_s`` itself."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not value >= 0:
            raise ValueError(f"must be a number of seconds >= 0, got {value:g}")
        return {"kind": "fixed", "value": value}
    return value


ThinkConfig = Annotated[FixedThink | ExponentialThink, Field(discriminator="kind"),
                        BeforeValidator(_plain_think)]


class ConcurrencyArrivals(Model):
    kind: Literal["concurrency"]
    clients: PositiveInt = Field(le=MAX_CLIENTS)
    think_s: ThinkConfig = FixedThink(kind="fixed", value=0.0)

    @property
    def mean_think_s(self) -> float:
        return self.think_s.value if isinstance(self.think_s, FixedThink) else self.think_s.mean


def scaled_clients(clients: int, scale: float) -> int:
    """The clients of a closed loop under a workload ``scale`` (rounded, at least one)."""
    return max(1, round(clients * scale))


def draw_think_s(config: ThinkConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` think times in seconds."""
    if isinstance(config, FixedThink):
        return np.full(n, float(config.value))
    return rng.exponential(config.mean, n)


ArrivalsConfig = Annotated[
    PoissonArrivals | DiurnalArrivals | SpikyArrivals | BatchArrivals | TraceArrivals
    | ConcurrencyArrivals,
    Field(discriminator="kind"),
]


# -- generation protocol -----------------------------------------------------------------

@dataclass(frozen=True)
class WindowArrivals:
    """Sorted arrival times in one window; ``trace_rows`` are the replayed trace rows."""

    times_s: np.ndarray
    trace_rows: np.ndarray | None = None


class ArrivalProcess(Protocol):
    peak_rate_per_s: float
    """The highest rate outside spikes (a batch: its count over its period); it sizes the
    generation windows, so it may overstate but should not understate."""

    def window(self, start_s: float, end_s: float, rng: np.random.Generator) -> WindowArrivals:
        """Arrivals in ``[start_s, end_s)`` drawn with ``rng`` (the window's own stream)."""
        ...

    def expected_requests(self, horizon_s: float) -> float:
        """An upper estimate of the requests in ``[0, horizon_s)`` (may be inf)."""
        ...

    def peak_spike_factor(self) -> float:
        """The largest factor by which spikes multiply the rate (1 without spikes)."""
        ...


def chain_switches(config: SpikyArrivals, horizon_s: float) -> float:
    """The expected number of MMPP state changes over ``horizon_s``."""
    return 2.0 * horizon_s / (config.mean_calm_s + config.mean_burst_s)


def spike_profile(spikes: Sequence[Spike], horizon_s: float) -> tuple[float, float]:
    """(extra rate-seconds per unit of base rate, largest factor) of ``spikes`` inside
    ``[0, horizon_s)``: overlapping spikes multiply."""
    if not spikes:
        return 0.0, 1.0
    start = np.array([s.start for s in spikes], np.float64)
    end = start + np.array([s.duration for s in spikes], np.float64)
    mult = np.array([s.multiplier for s in spikes], np.float64)
    edges = np.unique(np.clip(np.concatenate([[0.0, horizon_s], start, end]), 0.0, horizon_s))
    mid = 0.5 * (edges[:-1] + edges[1:])
    inside = (mid[:, None] >= start) & (mid[:, None] < end)
    with np.errstate(over="ignore", invalid="ignore"):
        factor = np.prod(np.where(inside, mult, 1.0), axis=1)
        extra = float(np.sum(np.maximum(factor - 1.0, 0.0) * np.diff(edges)))
    peak = float(factor.max()) if factor.size else 1.0
    return (extra if math.isfinite(extra) else math.inf), (peak if math.isfinite(peak)
                                                            else math.inf)


def build_process(config: ArrivalsConfig, *, scale: float, horizon_s: float,
                  seed: np.random.SeedSequence | int, name: str,
                  trace: Trace | None = None) -> ArrivalProcess:
    """The arrival process of one stream (``trace`` must be given for trace arrivals)."""
    if isinstance(config, PoissonArrivals):
        return _PoissonProcess(config, scale)
    if isinstance(config, DiurnalArrivals):
        return _DiurnalProcess(config, scale)
    if isinstance(config, SpikyArrivals):
        chain_rng = stream(seed, "workload", name, "mmpp")
        return _MmppProcess(config, scale, _mmpp_chain(config, horizon_s, chain_rng))
    if isinstance(config, BatchArrivals):
        return _BatchProcess(config, scale, seed, name)
    if isinstance(config, ConcurrencyArrivals):
        return _ClosedLoopProcess(config, scale)
    if trace is None:
        raise ValueError("trace arrivals need the parsed trace")
    return _TraceProcess(trace_replay(config, trace, scale))


# -- Poisson family: piecewise thinning --------------------------------------------------

class _IntensityProcess:
    """A Poisson process of intensity ``level(t) * shape(t)`` (see the module docstring)."""

    smooth = False  # True when _shape is not constant

    peak_rate_per_s: float

    def __init__(self, spikes: Sequence[Spike], scale: float):
        self._scale = scale
        self._spikes = tuple(spikes)
        self._spike_start = np.array([s.start for s in spikes], dtype=np.float64)
        self._spike_end = self._spike_start + np.array([s.duration for s in spikes])
        self._spike_mult = np.array([s.multiplier for s in spikes], dtype=np.float64)

    def window(self, start_s: float, end_s: float, rng: np.random.Generator) -> WindowArrivals:
        edges = self._edges(start_s, end_s)
        mid_s = 0.5 * (edges[:-1] + edges[1:])
        level = self._scale * self._level(mid_s) * self._spike_factor(mid_s)
        shape = self._shape if self.smooth else None
        return WindowArrivals(_thinned(edges, level, shape, rng))

    def expected_requests(self, horizon_s: float) -> float:
        extra_s, _ = spike_profile(self._spikes, horizon_s)
        return self.peak_rate_per_s * (horizon_s + extra_s)

    def peak_spike_factor(self) -> float:
        return spike_profile(self._spikes, math.inf)[1] if self._spikes else 1.0

    def _breaks(self, start_s: float, end_s: float) -> np.ndarray:
        return np.empty(0)

    def _level(self, t_s: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _shape(self, t_s: np.ndarray) -> np.ndarray:
        return np.ones_like(t_s)

    def _edges(self, start_s: float, end_s: float) -> np.ndarray:
        hours = np.arange(math.ceil(start_s / HOUR_S), math.ceil(end_s / HOUR_S)) * HOUR_S
        spikes = np.concatenate([self._spike_start, self._spike_end])
        edges = np.unique(np.concatenate([[start_s, end_s], hours, spikes,
                                          self._breaks(start_s, end_s)]))
        return edges[(edges >= start_s) & (edges <= end_s)]

    def _spike_factor(self, t_s: np.ndarray) -> np.ndarray:
        inside = (t_s[:, None] >= self._spike_start) & (t_s[:, None] < self._spike_end)
        return np.prod(np.where(inside, self._spike_mult, 1.0), axis=1)


def _thinned(edges: np.ndarray, level: np.ndarray,
             shape: Callable[[np.ndarray], np.ndarray] | None,
             rng: np.random.Generator) -> np.ndarray:
    """Sorted points of a Poisson process of rate ``level[k] * shape(t)`` on each piece
    ``[edges[k], edges[k+1])``; ``shape`` must be monotone on every piece."""
    length_s = np.diff(edges)
    shape_max = np.ones_like(level) if shape is None else np.maximum(shape(edges[:-1]),
                                                                      shape(edges[1:]))
    counts = rng.poisson(level * shape_max * length_s)
    piece = np.repeat(np.arange(length_s.size), counts)
    t_s = edges[piece] + rng.random(piece.size) * length_s[piece]
    if shape is not None:
        t_s = t_s[rng.random(t_s.size) * shape_max[piece] < shape(t_s)]
    t_s = np.minimum(t_s, np.nextafter(edges[-1], -np.inf))  # float rounding at the end
    return np.sort(t_s)


class _PoissonProcess(_IntensityProcess):
    def __init__(self, config: PoissonArrivals, scale: float):
        super().__init__(config.spikes, scale)
        self._rate_per_s = config.rate_per_s
        self.peak_rate_per_s = scale * config.rate_per_s

    def _level(self, t_s: np.ndarray) -> np.ndarray:
        return np.full_like(t_s, self._rate_per_s)


class _DiurnalProcess(_IntensityProcess):
    def __init__(self, config: DiurnalArrivals, scale: float):
        super().__init__(config.spikes, scale)
        self._mean_rate_per_s = config.mean_rate_per_s
        weekday = 7.0 / (5.0 + 2.0 * config.weekend_factor)
        self._day_factor = np.array([weekday] * 5 + [weekday * config.weekend_factor] * 2)
        self._peak_s = config.peak_hour * HOUR_S
        r = config.peak_to_trough
        self._amplitude = (r - 1.0) / (r + 1.0)
        weights = config.hourly_weights
        self.smooth = weights is None
        self._hour_weight = (np.ones(24) if weights is None
                             else np.asarray(weights, np.float64) / np.mean(weights))
        self.peak_rate_per_s = (scale * config.mean_rate_per_s * float(self._day_factor.max())
                                * float(self._hour_weight.max())
                                * (1.0 + self._amplitude if self.smooth else 1.0))

    def _level(self, t_s: np.ndarray) -> np.ndarray:
        day = (t_s // DAY_S).astype(np.int64) % 7
        hour = (t_s % DAY_S // HOUR_S).astype(np.int64)
        return self._mean_rate_per_s * self._day_factor[day] * self._hour_weight[hour]

    def _shape(self, t_s: np.ndarray) -> np.ndarray:
        return 1.0 + self._amplitude * np.cos(2.0 * np.pi * (t_s - self._peak_s) / DAY_S)

    def _breaks(self, start_s: float, end_s: float) -> np.ndarray:
        """Peaks and troughs (every half day from the peak), so pieces are monotone."""
        half = DAY_S / 2
        first = math.floor((start_s - self._peak_s) / half)
        last = math.ceil((end_s - self._peak_s) / half)
        return self._peak_s + np.arange(first, last + 1) * half


@dataclass(frozen=True)
class _Chain:
    """A two-state chain: state ``states[k]`` holds on ``[switch_s[k-1], switch_s[k])``."""

    switch_s: np.ndarray
    states: np.ndarray  # 0 = calm, 1 = burst; one more entry than switch_s


def _mmpp_chain(config: SpikyArrivals, horizon_s: float, rng: np.random.Generator) -> _Chain:
    """The modulating chain over the horizon, started in its stationary distribution."""
    means = np.array([config.mean_calm_s, config.mean_burst_s])
    first = int(rng.random() < config.mean_burst_s / means.sum())
    chunk = 2 * (int(horizon_s / means.sum()) + 8)  # even, so states keep alternating
    pattern = means[(first + np.arange(chunk)) % 2]
    parts, now_s = [], 0.0
    while now_s < horizon_s:
        ends = now_s + np.cumsum(rng.exponential(pattern))
        parts.append(ends)
        now_s = float(ends[-1])
    switch_s = np.concatenate(parts)
    switch_s = switch_s[: np.searchsorted(switch_s, horizon_s) + 1]
    return _Chain(switch_s, (first + np.arange(switch_s.size + 1)) % 2)


class _MmppProcess(_IntensityProcess):
    def __init__(self, config: SpikyArrivals, scale: float, chain: _Chain):
        super().__init__(config.spikes, scale)
        self._rates_per_s = np.array([config.base_rate_per_s, config.burst_rate_per_s])
        self._chain = chain
        self.peak_rate_per_s = scale * float(self._rates_per_s.max())

    def _level(self, t_s: np.ndarray) -> np.ndarray:
        segment = np.searchsorted(self._chain.switch_s, t_s, side="right")
        return self._rates_per_s[self._chain.states[segment]]

    def _breaks(self, start_s: float, end_s: float) -> np.ndarray:
        s = self._chain.switch_s
        return s[np.searchsorted(s, start_s):np.searchsorted(s, end_s)]


# -- batch -------------------------------------------------------------------------------

class _BatchProcess:
    def __init__(self, config: BatchArrivals, scale: float,
                 seed: np.random.SeedSequence | int, name: str):
        self._count = round(config.count * scale)
        self._first_s = config.start_day * DAY_S + config.at
        self._every_s = config.every
        self._spread_s = config.spread_s
        self._seed, self._name = seed, name
        self.peak_rate_per_s = self._count / self._every_s

    def expected_requests(self, horizon_s: float) -> float:
        if horizon_s <= self._first_s:
            return 0.0
        return self._count * (math.floor((horizon_s - self._first_s) / self._every_s) + 1.0)

    def peak_spike_factor(self) -> float:
        return 1.0

    def window(self, start_s: float, end_s: float, rng: np.random.Generator) -> WindowArrivals:
        parts = [self._occurrence(int(k)) for k in self._occurrences(start_s, end_s)]
        t_s = np.concatenate(parts) if parts else np.empty(0)
        return WindowArrivals(np.sort(t_s[(t_s >= start_s) & (t_s < end_s)]))

    def _occurrences(self, start_s: float, end_s: float) -> np.ndarray:
        """Indices of the occurrences with requests in ``[start_s, end_s)``."""
        lo = max(0, math.floor((start_s - self._spread_s - self._first_s) / self._every_s))
        hi = max(0, math.ceil((end_s - self._first_s) / self._every_s) + 1)
        k = np.arange(lo, hi)
        begin_s = self._first_s + k * self._every_s
        touches = (begin_s < end_s) & ((begin_s >= start_s) | (begin_s + self._spread_s > start_s))
        return k[touches]

    def _occurrence(self, k: int) -> np.ndarray:
        rng = stream(self._seed, "workload", self._name, "batch", k)
        begin_s = self._first_s + k * self._every_s
        return begin_s + rng.random(self._count) * self._spread_s


# -- closed loop -------------------------------------------------------------------------

class _ClosedLoopProcess:
    """A ``concurrency`` stream seen as an arrival process: it generates no open-loop
    arrivals (the engine issues its requests) and sizes itself by an upper estimate."""

    peak_rate_per_s = 0.0  # nothing in the generation windows

    def __init__(self, config: ConcurrencyArrivals, scale: float):
        self._config = config
        self._clients = scaled_clients(config.clients, scale)

    def expected_requests(self, horizon_s: float) -> float:
        """A client's requests are at least its think time and ``MIN_CYCLE_S`` apart, so
        it sends about horizon / max(mean think time, ``MIN_CYCLE_S``) at most, plus one."""
        cycle_s = max(self._config.mean_think_s, MIN_CYCLE_S)
        return self._clients * (horizon_s / cycle_s + 1.0)

    def peak_spike_factor(self) -> float:
        return 1.0

    def window(self, start_s: float, end_s: float, rng: np.random.Generator) -> WindowArrivals:
        return WindowArrivals(np.empty(0))


# -- trace replay ------------------------------------------------------------------------

@dataclass(frozen=True)
class TraceReplay:
    """One pass of a trace as replayed: sorted times from 0 and the rows they come from."""

    times_s: np.ndarray
    rows: np.ndarray
    period_s: float | None  # None: played once, no loop


def trace_replay(config: TraceArrivals, trace: Trace, scale: float) -> TraceReplay:
    """Apply ``offset_s``, ``rate_scale`` (times the workload scale) and ``loop``."""
    order = np.argsort(trace.arrival_s, kind="stable")
    t_s = trace.arrival_s[order]
    keep = t_s >= config.offset_s
    t_s = (t_s[keep] - config.offset_s) / (config.rate_scale * scale)
    rows = order[keep]
    if t_s.size == 0:
        raise ConfigError(f"offset_s skips the whole trace (it spans {trace.span_s:g} s)",
                          field="offset_s")
    if not config.loop:
        return TraceReplay(t_s, rows, None)
    if t_s[-1] <= t_s[0]:
        raise ConfigError("cannot loop a trace whose arrivals all share one time; "
                          "set loop: false", field="loop")
    mean_gap_s = (t_s[-1] - t_s[0]) / (t_s.size - 1)
    return TraceReplay(t_s, rows, float(t_s[-1] + mean_gap_s))


class _TraceProcess:
    def __init__(self, replay: TraceReplay):
        self._replay = replay
        t_s = replay.times_s
        span_s = replay.period_s if replay.period_s is not None else float(t_s[-1] - t_s[0])
        self.peak_rate_per_s = t_s.size / max(span_s, 1.0)

    def expected_requests(self, horizon_s: float) -> float:
        r = self._replay
        if r.period_s is None:
            return float(r.times_s.size)
        return r.times_s.size * (horizon_s / r.period_s + 1.0)

    def peak_spike_factor(self) -> float:
        return 1.0

    def window(self, start_s: float, end_s: float, rng: np.random.Generator) -> WindowArrivals:
        r = self._replay
        if r.period_s is None:
            shift_s = np.zeros(1)
        else:
            first = max(0, math.floor(start_s / r.period_s))
            shift_s = np.arange(first, math.floor(end_s / r.period_s) + 1) * r.period_s
        lo = np.searchsorted(r.times_s, start_s - shift_s, side="left")
        hi = np.searchsorted(r.times_s, end_s - shift_s, side="left")
        index = _concat_ranges(lo, hi)
        counts = hi - lo
        times_s = r.times_s[index] + np.repeat(shift_s, counts)
        return WindowArrivals(times_s, r.rows[index])


def _concat_ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``concatenate([arange(l, h) for l, h in zip(lo, hi)])`` without a Python loop."""
    counts = hi - lo
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total) - np.repeat(starts - lo, counts)

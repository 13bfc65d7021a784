"""Fit a replica's step-time coefficients to the user's own serving benchmarks.

Given several benchmark load points of one server (:mod:`sim.profiles.benchfiles`: the
same model and GPUs at different request rates or concurrencies) and a starting profile
(derived or shipped), :func:`fit_profile` finds the step-time terms of the agreed
step-level profile (notes/steptime-spec.md) that make a single-replica replay of every
load point reproduce its measured mean TTFT, TPOT and end-to-end latency.

What is fitted: few, physical parameters --

* ``linear_scale``: one factor on the token-proportional table ``step_time.linear_s``
  (its shape, from the derivation, is kept);
* ``per_step_s``: the constant cost of an engine step;
* ``decode_attention_s_per_token``: the cost per KV token read by decode attention;
* ``pre_s`` and ``post_s``: the per-request overheads outside the engine steps.

Everything else (scheduler limits, KV capacity, the per-sequence and prefill-attention
terms) stays as in the start. The objective is least squares on relative errors
(``scipy.optimize.least_squares``, bounded, parameters scaled by their start values, then
a Nelder-Mead polish of at most ``polish_evaluations`` replays: the replayed means jump a
little whenever an event changes order, which stalls a trust region), one residual per
load point and metric present. Identifiability is checked from the Jacobian
(finite differences, parameters scaled by their start values): each parameter's spread if
every measurement were off by ``noise_rel`` (2%). Before the fit, an overhead spread more
than ``hold_rel_std`` (30%) -- e.g. ``post_s`` when every request has the same output
length, since vLLM's TPOT already contains ``post_s / (output - 1)`` -- is held at its
start value and reported, and a step-time term spread more than ``max_rel_std`` (100%) is
refused in one line saying which measurement is missing (and one load point is refused
outright: it cannot separate ``per_step_s`` from the token-proportional cost); after the
fit the same check at the solution may hold one more overhead and refit. The result
carries each fitted value's relative spread (``rel_std``, from the final Jacobian and the
larger of ``noise_rel`` and the residuals' size) and their correlation (``correlation``,
from the same linearization); :meth:`FitResult.uncertainty` is them as the profile's
``step_time.uncertainty`` block (``linear_scale`` is the spread of ``linear_s``), which
``capsim profile fit`` writes so that a Monte Carlo run carries how sure the fit is. Held
and unfitted terms are written as certain (their start values; the fitted terms absorb
what they get wrong on the fitted load points).

Replay (assumptions): each load point is replayed as it was run -- a request rate as
gamma inter-arrivals with the file's burstiness (1 = Poisson; the vLLM client rescales
them to last ``n / rate``, so do we), or all at once for ``inf``; a concurrency as ``N``
closed-loop clients without think time (vLLM's ``--max-concurrency`` semaphore, llmperf,
GuideLLM ``concurrent``); both, as arrivals waiting client-side for one of ``N`` slots.
Latencies are measured from the moment a request is sent, as the clients do. Lengths are
the file's per-request lengths when saved; else, where the file says how its client drew
them (``random_range_ratio`` R of ``vllm bench serve``'s random dataset), drawn the same
way around the file's mean L (uniform integers on [int(L(1-R)), int(L(1+R))], seeded;
R = 0: every request the mean); else, where it gives their standard deviations (llmperf,
GuideLLM), rounded normal draws with those means and deviations (zero: the means); else,
where all clients start together (a concurrency, or
all requests at once), spread deterministically over +-``UNKNOWN_LENGTH_SPREAD`` (10%)
of the mean (evenly spaced values in a seeded order, the mean kept) and the fit says so in
a note: with identical lengths N clients stay in lock-step for the whole replay, every
prompt of a wave prefilled in the same step, and a fit would absorb that artefact into the
step-time terms; otherwise (random arrivals) the mean lengths. A
rate run without a concurrency cap that saved its send times replays them exactly; the
number of requests is the file's (else 200, or 10 per client if more). Every request
of a load point is replayed by default; ``max_requests`` replays only the file's first
ones, for speed. Cutting a run whose clients all start together biases its TTFT up: its
first wave (one request per client, all waiting for every prompt's prefill) is then a
larger share of the requests replayed than of those measured (64 clients, 640 requests
cut to 400: 16% instead of 10%, mean TTFT +37% on a 70B H200 replay), so the fit notes
the cut.

The replay engine is a parameter (:class:`Replay`), as the replica model lives in a layer
above this one: capsim's is :func:`sim.serving.bench_replay.replay`, which drives the
step-level replica of issue #19 (:class:`sim.serving.step_replica.StepReplica`: vLLM V1
scheduling, chunked prefill, paged KV with watermark and preemption) with the client side
(arrivals, slots) around it. Shared prompt prefixes are not replayed (prefix caching off):
benchmark files do not say which prompts share one.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.optimize import OptimizeResult, least_squares, minimize

from sim.core.errors import ConfigError
from sim.core.schema import validate
from sim.profiles.benchfiles import BenchRecord, check_fit_inputs, native_field
from sim.profiles.schema import load_profile
from sim.profiles.steptime import Overheads, Scheduler, StepModel, StepTime, from_curve

__all__ = [
    "StepTerms",
    "ReplayLoad",
    "ReplayOutcome",
    "Replay",
    "load_for",
    "simulate_metrics",
    "FIT_PARAMETERS",
    "KNOWN_PARAMETERS",
    "Residual",
    "FitResult",
    "fit_profile",
    "start_terms",
    "write_vllm_bench_json",
]

METRICS = ("ttft", "tpot", "e2e")
KNOWN_PARAMETERS = ("linear_scale", "per_step_s", "decode_attention_s_per_token", "pre_s",
                    "post_s", "per_seq_s", "prefill_attention_s_per_token2")
FIT_PARAMETERS = ("linear_scale", "per_step_s", "decode_attention_s_per_token", "pre_s",
                  "post_s")
_OVERHEADS = ("post_s", "pre_s")  # held (in this order) when not identifiable
_FLOORS = {"linear_scale": 1.0, "per_step_s": 1e-3, "decode_attention_s_per_token": 2e-8,
           "per_seq_s": 1e-5, "prefill_attention_s_per_token2": 1e-11,
           "pre_s": 1e-3, "post_s": 1e-3}


# ------------------------------------------------------------------------ the terms

@dataclass(frozen=True)
class StepTerms:
    """The step-level profile terms a replay needs (names and units as in the spec)."""

    tokens: tuple[float, ...]
    linear_s: tuple[float, ...]
    per_step_s: float
    per_seq_s: float = 0.0
    decode_attention_s_per_token: float = 0.0
    prefill_attention_s_per_token2: float = 0.0
    pre_s: float = 0.0
    pre_s_per_input_token: float = 0.0
    post_s: float = 0.0
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    kv_capacity_tokens: int = 1 << 40
    block_size: int = 16
    watermark: float = 0.01
    max_model_len: int = 1 << 30
    async_scheduling: bool = False  # vLLM --async-scheduling (scheduler block; not fitted)

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.linear_s) or not self.tokens:
            raise ValueError("tokens and linear_s must have the same, non-zero length")
        if any(b <= a for a, b in zip(self.tokens, self.tokens[1:], strict=False)):
            raise ValueError("tokens must be strictly increasing")
        if any(b < a for a, b in zip(self.linear_s, self.linear_s[1:], strict=False)):
            raise ValueError("linear_s must be non-decreasing")

    def linear(self, n: float) -> float:
        """Token-proportional time of a step of ``n`` tokens (spec's interpolation)."""
        k, v = self.tokens, self.linear_s
        if n <= k[0]:
            return v[0]
        i = bisect.bisect_right(k, n)
        if i >= len(k):  # beyond the last knot: the last segment's slope
            if len(k) == 1:
                return v[0]
            slope = (v[-1] - v[-2]) / (k[-1] - k[-2])
            return v[-1] + slope * (n - k[-1])
        a, b = k[i - 1], k[i]
        return v[i - 1] + (v[i] - v[i - 1]) * (n - a) / (b - a)

    def with_parameters(self, values: Mapping[str, float], start: StepTerms) -> StepTerms:
        """These terms with fitted ``values`` (``linear_scale`` multiplies ``start``'s)."""
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if name == "linear_scale":
                changes["linear_s"] = tuple(float(value * x) for x in start.linear_s)
            else:
                changes[name] = float(value)
        return replace(self, **changes)

    def parameter(self, name: str, start: StepTerms) -> float:
        if name == "linear_scale":
            base = max(start.linear_s[-1], 1e-30)
            return self.linear_s[-1] / base
        return float(getattr(self, name))

    @classmethod
    def from_profile(cls, doc: Mapping[str, Any], *, file: str = "profile") -> StepTerms:
        """Terms from a step-level profile mapping (the spec's YAML blocks), validated as
        :class:`~sim.profiles.steptime.StepModel` (one-line errors)."""
        if not isinstance(doc.get("step_time"), Mapping):
            raise ConfigError("missing: a step-level profile has a step_time block",
                              file=file, field="step_time")
        data = {"max_num_seqs": doc.get("max_batch", 256),
                "kv_capacity_tokens": doc.get("kv_capacity_tokens"),
                "scheduler": doc.get("scheduler") or {}, "step_time": doc["step_time"],
                "overheads": doc.get("overheads") or {}}
        try:
            model = validate(StepModel, data, file=file)
        except ConfigError as exc:
            fld = (exc.field or "").replace("max_num_seqs", "max_batch")
            raise ConfigError(exc.message, file=file, field=fld or None) from None
        return cls.from_step_model(model)

    @classmethod
    def from_step_model(cls, m: StepModel) -> StepTerms:
        st, sch, ov = m.step_time, m.scheduler, m.overheads
        return cls(tokens=tuple(float(x) for x in st.tokens), linear_s=tuple(st.linear_s),
                   per_step_s=st.per_step_s, per_seq_s=st.per_seq_s,
                   decode_attention_s_per_token=st.decode_attention_s_per_token,
                   prefill_attention_s_per_token2=st.prefill_attention_s_per_token2,
                   pre_s=ov.pre_s, pre_s_per_input_token=ov.pre_s_per_input_token,
                   post_s=ov.post_s, max_num_seqs=m.max_num_seqs,
                   max_num_batched_tokens=sch.max_num_batched_tokens,
                   kv_capacity_tokens=m.kv_capacity_tokens, block_size=sch.block_size,
                   watermark=sch.watermark, max_model_len=sch.max_model_len,
                   async_scheduling=sch.async_scheduling)

    def to_step_model(self) -> StepModel:
        """These terms as the step replica's model (no prefix caching: benchmark prompts
        are replayed without shared prefixes)."""
        return StepModel(
            max_num_seqs=self.max_num_seqs, kv_capacity_tokens=self.kv_capacity_tokens,
            scheduler=Scheduler(max_num_batched_tokens=self.max_num_batched_tokens,
                                block_size=self.block_size, watermark=self.watermark,
                                max_model_len=self.max_model_len, prefix_caching=False,
                                async_scheduling=self.async_scheduling),
            step_time=StepTime(tokens=[round(x) for x in self.tokens],
                               linear_s=list(self.linear_s), per_step_s=self.per_step_s,
                               per_seq_s=self.per_seq_s,
                               decode_attention_s_per_token=self.decode_attention_s_per_token,
                               prefill_attention_s_per_token2=(
                                   self.prefill_attention_s_per_token2)),
            overheads=Overheads(pre_s=self.pre_s, pre_s_per_input_token=self.pre_s_per_input_token,
                                post_s=self.post_s))

    def update_profile(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of profile ``doc`` with these terms written into its blocks."""
        out = json.loads(json.dumps(doc))  # deep copy of plain data
        st = out.setdefault("step_time", {})
        st.update(tokens=[int(x) if float(x).is_integer() else x for x in self.tokens],
                  linear_s=[float(x) for x in self.linear_s], per_step_s=float(self.per_step_s),
                  per_seq_s=float(self.per_seq_s),
                  decode_attention_s_per_token=float(self.decode_attention_s_per_token),
                  prefill_attention_s_per_token2=float(self.prefill_attention_s_per_token2))
        over = out.setdefault("overheads", {})
        over.update(pre_s=float(self.pre_s),
                    pre_s_per_input_token=float(self.pre_s_per_input_token),
                    post_s=float(self.post_s))
        return out


def start_terms(profile: Mapping[str, Any] | Any, *, file: str = "profile") -> StepTerms:
    """Start terms from a step-level profile mapping, or a legacy curve profile.

    A legacy profile (``curve`` + ``prefill_tokens_per_s``, e.g. a shipped one) is
    converted by :func:`sim.profiles.steptime.from_curve` (decode steps of ``b`` requests
    take ``b / curve(b)``, prefill tokens cost ``1 / prefill_tokens_per_s``; no
    ``per_step_s``, attention terms or overheads, which the fit then starts from zero).
    """
    if isinstance(profile, Mapping) and "step_time" in profile:
        return StepTerms.from_profile(profile, file=file)
    prof = load_profile(profile, file=file)
    steps = [b / float(prof.decode_tokens_per_s(float(b))) for b in range(1, prof.max_batch + 1)]
    return StepTerms.from_step_model(from_curve(
        steps, prof.prefill_tokens_per_s, max_num_seqs=prof.max_batch,
        kv_capacity_tokens=prof.kv_capacity_tokens, source=f"converted from {prof.name}"))


# ------------------------------------------------------------------------ the replay

@dataclass(frozen=True)
class ReplayLoad:
    """How one load point is replayed: client send pattern and request lengths."""

    input_lens: tuple[int, ...]
    output_lens: tuple[int, ...]
    arrival_s: tuple[float, ...]      # when each request is ready to be sent (client side)
    max_in_flight: int | None         # client slots (concurrency), None = unbounded
    note: str = ""                    # how lengths the file did not save were made up


@dataclass(frozen=True)
class ReplayOutcome:
    """Per-request client-side send times and latencies of one replay (seconds)."""

    ttft_s: np.ndarray
    e2e_s: np.ndarray
    output_lens: np.ndarray
    sent_s: np.ndarray | None = None


class Replay(Protocol):
    """A single-replica replay engine (capsim's: :func:`sim.serving.bench_replay.replay`)."""

    def __call__(self, terms: StepTerms, load: ReplayLoad) -> ReplayOutcome: ...


# Half-width, relative to the mean, of the stand-in length spread for clients that start
# together when the file saved neither the lengths nor how they were drawn (module doc).
UNKNOWN_LENGTH_SPREAD = 0.10


def _drawn(mean: float, ratio: float, n: int, rng: np.random.Generator) -> list[int]:
    """vLLM's random dataset: uniform integers on [int(L(1-R)), int(L(1+R))] around L."""
    low, high = int(mean * (1 - ratio)), int(mean * (1 + ratio))
    return [max(1, int(x)) for x in rng.integers(low, high + 1, n)]


def _normal(mean: float, std: float, n: int, rng: np.random.Generator) -> list[int]:
    """Rounded normal draws, at least 1 token (llmperf: ``int(random.gauss(mean, sd))``)."""
    return [max(1, int(round(x))) for x in rng.normal(mean, std, n)]


def _spread(mean: float, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` lengths evenly spaced over +-UNKNOWN_LENGTH_SPREAD of ``mean`` (their mean is
    ``mean`` up to rounding), in a seeded order."""
    q = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    values = np.rint(mean * (1.0 + UNKNOWN_LENGTH_SPREAD * q)).astype(int)
    return [max(1, int(x)) for x in rng.permutation(values)]


def _lengths(record: BenchRecord, n: int, seed: int,
             together: bool) -> tuple[list[int], list[int], str]:
    """Per-request lengths of a file that saved only their means (module doc), and a note
    saying how they were made (empty where nothing was made up)."""
    m_in = record.input_tokens_mean or 1.0
    m_out = record.output_tokens_mean or 1.0
    rng = np.random.default_rng((seed, 7))  # apart from the arrival draws
    ratio = record.random_range_ratio
    if ratio is not None and ratio > 0:
        return (_drawn(m_in, ratio, n, rng), _drawn(m_out, ratio, n, rng),
                f"lengths drawn as the benchmark drew them (random_range_ratio {ratio:g}: "
                "uniform on [L(1-R), L(1+R)] around the file's means, seeded)")
    s_in, s_out = record.input_tokens_std, record.output_tokens_std
    if ratio is None and s_in is not None and s_out is not None:
        if s_in == 0 and s_out == 0:
            return [max(1, round(m_in))] * n, [max(1, round(m_out))] * n, ""
        return (_normal(m_in, s_in, n, rng), _normal(m_out, s_out, n, rng),
                "lengths drawn from normal distributions with the file's means and standard "
                "deviations (as llmperf draws them), seeded")
    if ratio is None and together:
        return (_spread(m_in, n, rng), _spread(m_out, n, rng),
                "the file saved neither per-request lengths nor their spread: lengths "
                f"spread evenly over +-{UNKNOWN_LENGTH_SPREAD:.0%} of the file's means "
                "(an assumption), so that clients that start together are not replayed in "
                "lock-step; save --save-detailed (per-request lengths) or "
                "--metadata random_range_ratio=R to replay them as run")
    return [max(1, round(m_in))] * n, [max(1, round(m_out))] * n, ""


def load_for(record: BenchRecord, *, max_requests: int | None = None,
             seed: int = 0) -> ReplayLoad:
    """The replay of ``record``: its arrivals (or clients) and its lengths (module doc);
    its first ``max_requests`` requests only, if given."""
    rate = record.request_rate_per_s
    together = record.load_kind == "concurrency" or rate is None or math.isinf(rate)
    note = ""
    if record.input_lens is not None and record.output_lens is not None:
        ins = [max(1, int(x)) for x in record.input_lens]
        outs = [max(1, int(x)) for x in record.output_lens]
        measured = len(ins)
    else:
        clients = record.max_concurrency if record.load_kind == "concurrency" else None
        measured = record.completed or record.num_prompts or max(200, 10 * (clients or 0))
        ins, outs, note = _lengths(record, measured if max_requests is None
                                   else min(measured, max_requests), seed, together)
    n = len(ins) if max_requests is None else min(len(ins), max_requests)
    ins, outs = ins[:n], outs[:n]
    if together and n < measured:
        wave = record.max_concurrency or measured
        cut = (f"only the first {n} of {measured} requests replayed (--max-requests): the "
               f"first wave of {min(wave, n)} requests that start together is "
               f"{min(wave, n) / n:.0%} of them instead of {min(wave, measured) / measured:.0%}"
               ", which biases TTFT up")
        note = f"{note}; {cut}" if note else cut
    if together:
        arrivals = [0.0] * n
    elif (record.start_times_s is not None and len(record.start_times_s) >= n
          and not record.max_concurrency):
        # the saved send times are the arrivals when no client slot delayed a send
        first = min(record.start_times_s[:n])
        arrivals = [t - first for t in record.start_times_s[:n]]
    else:
        rng = np.random.default_rng(seed)
        shape = record.burstiness if record.burstiness else 1.0
        if math.isinf(shape):
            gaps = np.full(n, 1.0 / rate)
        else:
            gaps = rng.gamma(shape, 1.0 / (rate * shape), size=n)
        times = np.cumsum(gaps)
        times *= (n / rate) / times[-1]  # as the vLLM client: n requests in n / rate
        arrivals = list(times - times[0])
    return ReplayLoad(tuple(ins), tuple(outs), tuple(float(a) for a in arrivals),
                      record.max_concurrency, note)


def simulate_metrics(outcome: ReplayOutcome) -> dict[str, float]:
    """Mean TTFT, TPOT (vLLM's: over requests with more than one output token), E2E."""
    out = outcome.output_lens.astype(float)
    multi = out > 1
    tpot = ((outcome.e2e_s - outcome.ttft_s)[multi] / (out[multi] - 1))
    return {"ttft": float(np.mean(outcome.ttft_s)),
            "tpot": float(np.mean(tpot)) if tpot.size else math.nan,
            "e2e": float(np.mean(outcome.e2e_s))}


# --------------------------------------------------------------------------- the fit

@dataclass(frozen=True)
class Residual:
    """One load point's metric: measured, replayed, relative error."""

    label: str
    metric: str
    measured_s: float
    simulated_s: float

    @property
    def rel_error(self) -> float:
        return (self.simulated_s - self.measured_s) / self.measured_s


@dataclass(frozen=True)
class FitResult:
    """The fitted terms, what was fitted or held, and the residuals before and after."""

    terms: StepTerms
    start: StepTerms
    fitted: dict[str, float]
    held: dict[str, str]
    residuals: tuple[Residual, ...]
    start_residuals: tuple[Residual, ...]
    success: bool
    message: str
    evaluations: int
    rel_std: dict[str, float] = field(default_factory=dict)  # of each fitted value
    notes: tuple[str, ...] = field(default=())
    correlation: tuple[tuple[float, ...], ...] = field(default=())  # of rel_std's, its order

    def uncertainty(self) -> dict[str, Any]:
        """The fitted terms' spreads as a profile's ``step_time.uncertainty`` block (plain
        data; spreads above 100% are written as 100%, the schema's bound)."""
        names = list(self.rel_std)
        terms = {("linear_s" if n == "linear_scale" else n): _bounded_spread(self.rel_std[n])
                 for n in names}
        out: dict[str, Any] = {"terms": terms}
        if len(names) > 1 and len(self.correlation) == len(names):
            out["correlation"] = [[round(float(x), 3) for x in row]
                                  for row in self.correlation]
        out["source"] = ("capsim profile fit: 1 sd of each fitted term, linearized at the "
                         "fit (finite-difference Jacobian), for measurements off by the "
                         "larger of 2% and the residuals' root mean square; correlation "
                         "from the same linearization")
        return out

    def table(self) -> str:
        """Residuals per load point and metric, as printed by ``capsim profile fit``."""
        before = {(r.label, r.metric): r for r in self.start_residuals}
        lines = [f"{'load point':<48} {'metric':<6} {'measured':>10} {'fitted':>10} "
                 f"{'error':>8} {'at start':>9}"]
        for r in self.residuals:
            b = before.get((r.label, r.metric))
            label = r.label if len(r.label) <= 48 else "..." + r.label[-45:]
            lines.append(f"{label:<48} {r.metric:<6} {r.measured_s * 1e3:>8.1f}ms "
                         f"{r.simulated_s * 1e3:>8.1f}ms {r.rel_error:>+8.1%} "
                         f"{(b.rel_error if b else math.nan):>+9.1%}")
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {"fitted": self.fitted, "rel_std": self.rel_std,
                "correlation": [list(r) for r in self.correlation], "held": self.held,
                "success": self.success,
                "message": self.message, "evaluations": self.evaluations,
                "residuals": [{**asdict(r), "rel_error": r.rel_error} for r in self.residuals],
                "notes": list(self.notes)}


def _bounded_spread(rel_std: float) -> float:
    """A spread as the profile schema takes it: at most 100% (also for an undetermined,
    infinite or NaN one), 4 decimals."""
    return round(rel_std, 4) if math.isfinite(rel_std) and rel_std < 1.0 else 1.0


def _targets(record: BenchRecord) -> dict[str, float]:
    t = {"ttft": record.ttft_mean_s, "tpot": record.tpot_mean_s, "e2e": record.e2e_mean_s}
    return {k: v for k, v in t.items() if v is not None and v > 0}


def _point_key(r: BenchRecord) -> tuple[Any, ...]:
    return (r.load_kind, r.request_rate_per_s, r.max_concurrency,
            round(r.input_tokens_mean or 0), round(r.output_tokens_mean or 0))


def fit_profile(records: Sequence[BenchRecord], start: StepTerms, *,
                replay: Replay, parameters: Sequence[str] = FIT_PARAMETERS,
                max_requests: int | None = None, seed: int = 0, noise_rel: float = 0.02,
                hold_rel_std: float = 0.3, max_rel_std: float = 1.0,
                max_evaluations: int = 200, polish_evaluations: int = 200,
                progress: Callable[[int], None] | None = None) -> FitResult:
    """Fit ``parameters`` of ``start`` to ``records`` (module doc); refusals are one line."""
    if not records:
        raise ConfigError("no benchmark files given")
    unknown = [p for p in parameters if p not in KNOWN_PARAMETERS]
    if unknown:
        raise ConfigError(f"unknown fit parameter '{unknown[0]}' (known: "
                          f"{', '.join(KNOWN_PARAMETERS)})")
    for r in records:
        check_fit_inputs(r)
    if len({_point_key(r) for r in records}) < 2:
        r = records[0]
        what = "request_rate_per_s" if r.load_kind == "rate" else "max_concurrency"
        raise ConfigError(
            f"a single load point ({r.load}) cannot separate per_step_s from the "
            "token-proportional cost: add a benchmark of the same server at another request "
            "rate or concurrency", file=r.file, field=native_field(r, what))
    models = {r.model for r in records if r.model != "unknown"}
    notes: list[str] = []
    if len(models) > 1:
        notes.append(f"the files name several models ({', '.join(sorted(models))}); "
                     "fitted as one server")
    loads = [load_for(r, max_requests=max_requests, seed=seed + i)
             for i, r in enumerate(records)]
    for made_up in dict.fromkeys(load.note for load in loads if load.note):
        count = sum(load.note == made_up for load in loads)
        notes.append(f"{count} load point(s): {made_up}")
    longest_ok = min(start.max_model_len, start.kv_capacity_tokens // start.block_size
                     * start.block_size)
    for r, load in zip(records, loads, strict=True):
        longest = max(i + o for i, o in zip(load.input_lens, load.output_lens, strict=True))
        if longest > longest_ok:
            raise ConfigError(
                f"a request of {longest} tokens (input + output) is longer than the start "
                f"profile holds ({longest_ok} tokens: max_model_len or KV cache); this "
                "profile cannot be the server that ran the benchmark", file=r.file,
                field=native_field(r, "input_tokens_mean"))
    targets = [_targets(r) for r in records]
    scales = np.array([max(start.parameter(p, start), _FLOORS[p]) for p in KNOWN_PARAMETERS])
    evaluations = 0

    def terms_at(x: np.ndarray, names: Sequence[str]) -> StepTerms:
        full = {p: start.parameter(p, start) for p in KNOWN_PARAMETERS}
        for name, value in zip(names, x, strict=True):
            full[name] = float(value) * scales[KNOWN_PARAMETERS.index(name)]
        return start.with_parameters(full, start)

    def simulate(terms: StepTerms) -> list[dict[str, float]]:
        nonlocal evaluations
        evaluations += 1
        if progress is not None:
            progress(evaluations)
        return [simulate_metrics(replay(terms, load)) for load in loads]

    def residual_vector(sims: list[dict[str, float]]) -> np.ndarray:
        return np.array([(sim[m] - tgt[m]) / tgt[m] for sim, tgt in zip(sims, targets,
                                                                          strict=True)
                         for m in METRICS if m in tgt])

    def residual_list(terms: StepTerms, sims: list[dict[str, float]]) -> tuple[Residual, ...]:
        return tuple(Residual(r.label, m, tgt[m], sim[m])
                     for r, sim, tgt in zip(records, sims, targets, strict=True)
                     for m in METRICS if m in tgt)

    start_sims = simulate(start)
    start_res = residual_list(start, start_sims)
    f0 = residual_vector(start_sims)
    if not np.all(np.isfinite(f0)):
        raise ConfigError("the replay of the start profile gives no finite latency (a load "
                          "point completes no request)")

    # identifiability: Jacobian at the start, parameters scaled by their start values
    names = list(parameters)
    x0 = np.array([start.parameter(p, start) / scales[KNOWN_PARAMETERS.index(p)]
                   for p in names])
    cols = {}
    for j, name in enumerate(names):
        x = x0.copy()
        dx = 0.05 * max(x0[j], 1.0)
        x[j] += dx
        cols[name] = (residual_vector(simulate(terms_at(x, names))) - f0) / dx
    held: dict[str, str] = {}

    def spread(active: list[str]) -> dict[str, float]:
        """Each parameter's standard deviation relative to its start value if every
        measurement were off by ``noise_rel`` (linearized at the start): large = not
        identified, whether from a weak effect or from one that others mimic."""
        if len(active) > f0.size:
            return dict.fromkeys(active, math.inf)
        mat = np.column_stack([cols[a] for a in active])
        _, sv, vt = np.linalg.svd(mat, full_matrices=False)
        inv = np.where(sv > sv[0] * 1e-12, 1.0 / np.maximum(sv, 1e-300), math.inf)
        with np.errstate(invalid="ignore"):
            var = np.nansum((vt.T * inv) ** 2, axis=1)
        return {a: noise_rel * math.sqrt(v) for a, v in zip(active, var, strict=True)}

    while names:
        sd = spread(names)
        overheads = [o for o in _OVERHEADS if o in names and sd[o] > hold_rel_std]
        worst = max(names, key=lambda a: sd[a])
        if not overheads and sd[worst] <= max_rel_std:
            break
        if not overheads:
            raise _unidentified(worst, records, len(names) > f0.size)
        hold = max(overheads, key=lambda o: sd[o])
        held[hold] = (f"not identified by these measurements (+-{min(sd[hold], 99):.0%} "
                      f"for a {noise_rel:.0%} error); kept at the start value")
        names.remove(hold)
    if not names:
        raise _unidentified("per_step_s", records, True)

    def solve(active: list[str]) -> Any:
        x_start = np.array([start.parameter(p, start) / scales[KNOWN_PARAMETERS.index(p)]
                            for p in active])
        cache: dict[bytes, np.ndarray] = {}

        def fun(x: np.ndarray) -> np.ndarray:
            key = np.asarray(x, float).tobytes()
            if key not in cache:
                cache[key] = residual_vector(simulate(terms_at(x, active)))
            return cache[key]

        # The replay's means are piecewise smooth with small jumps everywhere (a request
        # lands in one step or the next; event order changes): a coarse finite-difference
        # pass, a finer one from its result, then a Nelder-Mead polish on a simplex of
        # +-10%, which steps over the jumps where the trust region of least squares stalls.
        best = None
        for diff_step in (0.02, 0.005):
            x_from = x_start if best is None else best.x
            trial = least_squares(fun, x_from, bounds=(np.zeros(len(active)),
                                                       np.full(len(active), np.inf)),
                                  diff_step=diff_step, max_nfev=max_evaluations,
                                  method="trf")
            if best is None or trial.cost <= best.cost:
                best = trial
        assert best is not None
        if polish_evaluations > 0:
            x0 = np.maximum(best.x, 0.0)
            simplex = np.vstack([x0] + [x0 + np.eye(len(active))[i] * max(0.1 * x0[i], 0.02)
                                        for i in range(len(active))])
            polish = minimize(lambda x: 0.5 * float(np.sum(fun(np.maximum(x, 0.0)) ** 2)), x0,
                              method="Nelder-Mead",
                              options={"initial_simplex": simplex, "maxfev": polish_evaluations,
                                       "xatol": 1e-4, "fatol": 1e-12})
            if polish.fun < best.cost:
                x = np.maximum(polish.x, 0.0)
                f0 = fun(x)
                jac = np.empty((f0.size, len(active)))
                for j in range(len(active)):
                    dx = 0.005 * max(abs(x[j]), 1.0)
                    xj = x.copy()
                    xj[j] += dx
                    jac[:, j] = (fun(xj) - f0) / dx
                best = OptimizeResult(x=x, cost=0.5 * float(np.sum(f0 ** 2)), jac=jac,
                                      success=True, message="least squares, then Nelder-Mead "
                                      f"polish ({polish.nfev} evaluations)")
        return best

    def spreads(sol: Any, active: list[str]
                ) -> tuple[dict[str, float], dict[str, float], tuple[tuple[float, ...], ...]]:
        """Each fitted value's standard deviation, linearized at the solution: (1) for
        measurements off by ``noise_rel``, relative to the value or to the parameter's
        floor if larger (identifiability: a value near zero may be well determined as
        zero); (2) for measurements off by the larger of ``noise_rel`` and the residuals,
        relative to the value (what the result reports); and (3) their correlation
        matrix."""
        jac = np.asarray(sol.jac)
        rms = math.sqrt(2 * sol.cost / max(jac.shape[0] - jac.shape[1], 1))
        _, sv, vt = np.linalg.svd(jac, full_matrices=False)
        inv = np.where(sv > sv[0] * 1e-12, 1.0 / np.maximum(sv, 1e-300), math.inf)
        with np.errstate(invalid="ignore"):
            unit = np.sqrt(np.nansum((vt.T * inv) ** 2, axis=1))
        corr = _correlation(vt, inv)
        ident, report = {}, {}
        for a, u, x in zip(active, unit, sol.x, strict=True):
            floor = _FLOORS[a] / scales[KNOWN_PARAMETERS.index(a)]
            ident[a] = float(noise_rel * u / max(x, floor))
            report[a] = float(max(noise_rel, rms) * u / max(x, 1e-12))
        return ident, report, corr

    sol = solve(names)
    ident, spread_at, corr = spreads(sol, names)
    weak = [o for o in _OVERHEADS if o in names and ident[o] > hold_rel_std]
    if weak:  # an overhead the solution leaves loose: keep it at the start instead
        hold = max(weak, key=lambda o: ident[o])
        held[hold] = (f"not identified by these measurements (+-{min(ident[hold], 99):.0%} "
                      f"for a {noise_rel:.0%} error, at the fit); kept at the start value")
        names.remove(hold)
        sol = solve(names)
        ident, spread_at, corr = spreads(sol, names)
    loose = [a for a in names if a not in _OVERHEADS and ident[a] > max_rel_std]
    if loose:
        raise _unidentified(max(loose, key=lambda a: ident[a]), records, False)
    fitted_terms = terms_at(sol.x, names)
    final_sims = simulate(fitted_terms)
    return FitResult(
        terms=fitted_terms, start=start,
        fitted={p: float(fitted_terms.parameter(p, start)) for p in names}, held=held,
        residuals=residual_list(fitted_terms, final_sims), start_residuals=start_res,
        success=bool(sol.success), message=str(sol.message), evaluations=evaluations,
        rel_std=spread_at, notes=tuple(notes), correlation=corr)


def _correlation(vt: np.ndarray, inv: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """The correlation of least-squares estimates whose covariance is proportional to
    ``V diag(inv^2) V^T`` (SVD of the Jacobian; an infinite ``inv``, a direction the data
    do not determine, gives no finite correlation: independent is written instead)."""
    if not np.all(np.isfinite(inv)):
        return tuple(tuple(float(i == j) for j in range(vt.shape[1]))
                     for i in range(vt.shape[1]))
    cov = (vt.T * inv ** 2) @ vt
    sd = np.sqrt(np.diag(cov))
    corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return tuple(tuple(float(x) for x in row) for row in corr)


def _unidentified(name: str, records: Sequence[BenchRecord], too_few: bool) -> ConfigError:
    files = sorted({x.file for x in records})
    where = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} more)"
    if too_few:
        why = (f"{len(records)} load points give too few measurements for the step-time "
               "terms: add benchmarks at other rates or concurrencies, with TTFT, TPOT and "
               "end-to-end latency")
    elif name == "decode_attention_s_per_token":
        why = ("the decode-attention cost (decode_attention_s_per_token) is not identified: "
               "TPOT is needed at clearly different context lengths for the same number of "
               "running requests (add a benchmark with other prompt or output lengths), or "
               "keep its start value (--fit-params linear_scale,per_step_s,pre_s,post_s)")
    else:
        why = (f"cannot separate per_step_s from the token-proportional cost ({name} is "
               "not identified): the load points do not vary the tokens per step enough; add "
               "a benchmark at a much higher concurrency or rate, or with other prompt lengths")
    return ConfigError(why, file=where)


# ---------------------------------------------------------- synthetic benchmark files

def write_vllm_bench_json(path: str | Path, terms: StepTerms, load: ReplayLoad, *,
                          request_rate: float | str, max_concurrency: int | None,
                          model: str = "synthetic/model", detailed: bool = False,
                          random_range_ratio: float | None = None,
                          replay: Replay) -> dict[str, Any]:
    """Replay ``load`` with ``terms`` and write what ``vllm bench serve`` would save.

    The summary fields follow ``vllm/benchmarks/serve.py`` (ms, mean/median/std/p99 of
    TTFT, TPOT, ITL -- here the per-request TPOT, a stand-in, as the replay keeps no
    per-token times -- and E2EL); ``detailed`` adds ``input_lens``, ``output_lens``,
    ``ttfts``, ``latencies`` and ``start_times``; ``random_range_ratio`` is saved as the
    client's ``--random-range-ratio`` (how ``load`` drew its lengths, when it did).
    """
    out = replay(terms, load)
    n = len(out.ttft_s)
    lens = out.output_lens.astype(float)
    multi = lens > 1
    tpots = (out.e2e_s - out.ttft_s)[multi] / (lens[multi] - 1)
    end = float(np.max(np.asarray(load.arrival_s[:n]) + out.e2e_s))
    doc: dict[str, Any] = {
        "date": "synthetic", "endpoint_type": "vllm", "backend": "vllm", "label": None,
        "model_id": model, "tokenizer_id": model, "num_prompts": n,
        "request_rate": request_rate, "burstiness": 1.0, "max_concurrency": max_concurrency,
        "duration": end, "completed": n, "failed": 0,
        "total_input_tokens": int(sum(load.input_lens[:n])),
        "total_output_tokens": int(lens.sum()), "request_throughput": n / end,
        "request_goodput": None, "output_throughput": float(lens.sum()) / end,
        "total_token_throughput": float(sum(load.input_lens[:n]) + lens.sum()) / end,
    }
    if random_range_ratio is not None:
        doc["random_range_ratio"] = random_range_ratio
    for name, values in (("ttft", out.ttft_s), ("tpot", tpots), ("itl", tpots),
                         ("e2el", out.e2e_s)):
        doc[f"mean_{name}_ms"] = float(np.mean(values)) * 1e3
        doc[f"median_{name}_ms"] = float(np.median(values)) * 1e3
        doc[f"std_{name}_ms"] = float(np.std(values)) * 1e3
        doc[f"p99_{name}_ms"] = float(np.percentile(values, 99)) * 1e3
    if detailed:
        doc.update(input_lens=list(load.input_lens[:n]), output_lens=[int(x) for x in lens],
                   ttfts=[float(x) for x in out.ttft_s], latencies=[float(x) for x in out.e2e_s],
                   start_times=[float(x) for x in load.arrival_s[:n]], errors=[""] * n)
    Path(path).write_text(json.dumps(doc))
    return doc

"""GPU replica profiles: what one copy of a model on some GPUs can do, and what it costs.

A profile describes one *replica* (a model served on ``gpus_per_replica`` GPUs) with:

* ``max_batch`` -- the cap on running (admitted, decoding) requests;
* ``kv_capacity_tokens`` -- the KV cache: the input + output tokens of all admitted
  requests must fit;
* ``prefill_tokens_per_s`` -- prompt processing speed;
* ``curve`` -- the aggregate decode rate (output tokens/s summed over all running
  requests) as a function of how many requests run. Every running request decodes at
  ``curve(b) / b`` tokens/s when ``b`` run (processor sharing).

Assumptions: the rate depends only on the number of running requests, not on their
context lengths (the shipped curves were measured at ~0.5-2k-token contexts); between
table points the curve is a monotone PCHIP-style cubic in log-log space whose slope is
kept in [0, 1], i.e. the aggregate never falls and the per-request rate never rises as
requests are added (exactly the two properties the table must have); below one request
it scales linearly from 0; beyond the last table point the aggregate stays constant (so
each extra request slows the others down). Prices are per GPU-hour; a replica costs
``gpus_per_replica`` times that.

Step level (issue #19): every profile also describes the replica as a vLLM V1 engine
(:mod:`sim.profiles.steptime`, the serving model of :mod:`sim.serving.step_replica`):
``scheduler`` (token budget, KV block size, watermark, ``max_model_len``, prefix caching),
``step_time`` (the duration of one engine step from its composition) and ``overheads``
(per-request time outside the steps); ``max_batch`` is vLLM's ``max_num_seqs``. A profile
gives either a ``step_time`` block or the legacy ``curve`` + ``prefill_tokens_per_s``; a
legacy profile is converted once, when it is loaded, by
:func:`~sim.profiles.steptime.from_curve` (decode steps keep their times exactly; prefill
tokens cost ``1 / prefill_tokens_per_s`` each). A step profile without a curve gets one
for the summaries that read it (utilization, reports): ``b / step time`` of a decode step
of b sequences at ``REF_CONTEXT_TOKENS`` tokens of context each, for b up to ``max_batch``
(an upper bound on the rate, so utilization against it stays within [0, 1]; with a small
KV cache the batch it holds is smaller and the bound loose), and
``prefill_tokens_per_s`` = a full-budget prefill step's tokens over its time.
:meth:`GpuProfile.step_model` is what the engine serves with.

Uncertainty (issue #21): ``step_time.uncertainty`` says how sure the profile is of its
step-time terms (:class:`~sim.profiles.steptime.StepUncertainty`)::

    step_time:
      per_step_s: 0.0021
      ...
      uncertainty:
        rel_std: 0.15        # one factor on the whole step, 1 sd relative (derived profiles)
        terms: {linear_s: 0.04, per_step_s: 0.09, pre_s: 0.2}   # per term (fitted profiles)
        correlation: [[1, -0.7, 0], [-0.7, 1, 0], [0, 0, 1]]    # of `terms`, in their order
        source: "..."

A profile without the block (every legacy profile, and every step profile written before
it) is certain and serves exactly as before. A Monte Carlo replication draws the factors
once (:meth:`GpuProfile.step_uncertainty`, :meth:`GpuProfile.with_step_factors`; the
experiment's ``uncertainty.profile`` switch turns the draw off). Derived profiles carry
a stated spread (:func:`~sim.profiles.steptime.derived_uncertainty`, written by
:func:`sim.profiles.derive.derive`, from the derivation's held-out errors); ``capsim profile fit``
writes the fit's per-term spreads and their correlation.

The shipped profiles live in ``gpu_profiles/*.yaml``, all derived (``capsim profile
derive``); the older hand-fitted curve profiles (``tools/fit_profiles.py``) are kept in
``tests/data/profiles/`` as legacy-format examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from scipy.interpolate import PchipInterpolator

from sim.core.errors import ConfigError
from sim.core.loader import builtin_names, read_yaml, resolve_named
from sim.core.schema import DurationS, Model, PositiveFloat, validate
from sim.profiles.catalog import DeriveError
from sim.profiles.derive import derive_from_mapping
from sim.profiles.steptime import (
    Overheads,
    Scheduler,
    StepModel,
    StepTime,
    StepUncertainty,
    from_curve,
    scaled_model,
)

__all__ = [
    "DecodeCurve",
    "GpuPrices",
    "ColdStart",
    "ColdStartSpec",
    "GpuProfile",
    "load_profile",
    "builtin_profiles",
    "gpu_prices",
]

Pricing = Literal["on_demand", "reserved", "spot"]

# The context length at which a step profile's decode curve is summarised (decode attention
# grows with context; the shipped curves were measured at ~0.5-2k-token contexts).
REF_CONTEXT_TOKENS = 1024


class DecodeCurve(Model):
    """Aggregate decode tokens/s against the number of running requests."""

    batch: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    decode_tokens_per_s: list[PositiveFloat] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_shape(self) -> DecodeCurve:
        b, v = self.batch, self.decode_tokens_per_s
        if len(b) != len(v):
            raise ValueError(f"batch has {len(b)} points but decode_tokens_per_s has {len(v)}; "
                             "they must have the same length")
        if b[0] != 1:
            raise ValueError(f"batch must start at 1, got batch[0] = {b[0]}")
        for i in range(1, len(b)):
            if b[i] <= b[i - 1]:
                raise ValueError(f"batch[{i}] = {b[i]} is not greater than batch[{i - 1}] = "
                                 f"{b[i - 1]}; batch sizes must be strictly increasing")
            if v[i] < v[i - 1]:
                raise ValueError(f"decode_tokens_per_s[{i}] = {v[i]:g} is below "
                                 f"decode_tokens_per_s[{i - 1}] = {v[i - 1]:g}; the aggregate "
                                 "rate must not fall as more requests run")
            if v[i] / b[i] > v[i - 1] / b[i - 1] * (1 + 1e-9):
                raise ValueError(f"per-request rate rises at index {i}: {v[i]:g}/{b[i]} = "
                                 f"{v[i] / b[i]:.4g} > {v[i - 1]:g}/{b[i - 1]} = "
                                 f"{v[i - 1] / b[i - 1]:.4g} tokens/s; a request must not "
                                 "decode faster when more requests share the replica")
        return self


class GpuPrices(Model):
    """Rental prices per GPU-hour, with where and when they were observed."""

    on_demand_usd_per_gpu_hour: PositiveFloat
    reserved_usd_per_gpu_hour: PositiveFloat | None = None
    spot_usd_per_gpu_hour: PositiveFloat | None = None
    source: str
    date: str


def _cold_start(value: Any) -> Any:
    """One duration means both quantiles; a mapping (or nothing) is taken as it is."""
    if isinstance(value, dict) or value is None:
        return value
    return {"median": value, "p95": value}


class ColdStart(Model):
    """Time to provision a replica and load the weights (a number = both quantiles)."""

    median: DurationS
    p95: DurationS

    @field_validator("p95")
    @classmethod
    def _ordered(cls, p95: float, info: ValidationInfo) -> float:
        median = info.data.get("median")
        if median is not None and p95 < median:
            raise ValueError(f"p95 ({p95:g} s) is below median ({median:g} s)")
        return p95


ColdStartSpec = Annotated[ColdStart | None, BeforeValidator(_cold_start)]
"""A cold start: ``{median, p95}``, one duration for both, or none."""


class GpuProfile(Model):
    """One replica of a model on ``gpus_per_replica`` GPUs (see the module docstring)."""

    name: str
    model: str
    gpu: str
    gpus_per_replica: int = Field(ge=1)
    max_batch: int = Field(ge=1, le=1_000_000)  # (bounded: per-batch tables are built)
    kv_capacity_tokens: int = Field(gt=0)
    prefill_tokens_per_s: PositiveFloat | None = None
    curve: DecodeCurve | None = None
    prices: GpuPrices
    cold_start_s: ColdStartSpec = None
    source: str = ""
    notes: str = ""
    scheduler: Scheduler | None = None
    step_time: StepTime | None = None
    overheads: Overheads | None = None

    _log_b: np.ndarray = PrivateAttr()
    _log_v: np.ndarray = PrivateAttr()
    _slope_left: np.ndarray = PrivateAttr()
    _slope_right: np.ndarray = PrivateAttr()
    _rate_table: list[float] = PrivateAttr()
    _step: StepModel = PrivateAttr()

    @model_validator(mode="after")
    def _step_or_curve(self) -> GpuProfile:
        if self.step_time is None and (self.curve is None or self.prefill_tokens_per_s is None):
            raise ValueError("a profile needs a step_time block, or a decode curve and "
                             "prefill_tokens_per_s (a legacy profile)")
        if self.step_time is not None:
            # Checked here so a bad combination is one line naming the profile.
            StepModel(max_num_seqs=self.max_batch, kv_capacity_tokens=self.kv_capacity_tokens,
                      scheduler=self.scheduler or Scheduler(), step_time=self.step_time,
                      overheads=self.overheads or Overheads())
        else:
            sch = self.scheduler or Scheduler()
            if self.scheduler is not None and sch.max_num_batched_tokens < self.max_batch:
                raise ValueError(f"scheduler.max_num_batched_tokens "
                                 f"({sch.max_num_batched_tokens}) is below max_batch "
                                 f"({self.max_batch})")
            if self.kv_capacity_tokens < sch.block_size:
                raise ValueError(f"kv_capacity_tokens ({self.kv_capacity_tokens}) holds no "
                                 f"KV block of {sch.block_size} tokens")
        return self

    def model_post_init(self, context: Any, /) -> None:
        if self.step_time is not None:
            self._step = StepModel(max_num_seqs=self.max_batch,
                                   kv_capacity_tokens=self.kv_capacity_tokens,
                                   scheduler=self.scheduler or Scheduler(),
                                   step_time=self.step_time,
                                   overheads=self.overheads or Overheads())
            self._summarise_steps()
        self._fit_curve()
        if self.step_time is None:
            decode_s = [1.0 / r for r in self._rate_table[1:]]
            self._step = from_curve(decode_s, float(self.prefill_tokens_per_s),
                                    max_num_seqs=self.max_batch,
                                    kv_capacity_tokens=self.kv_capacity_tokens,
                                    scheduler=self.scheduler, overheads=self.overheads,
                                    source=f"converted from the decode curve of {self.name}")

    def _summarise_steps(self) -> None:
        """A step profile's decode curve and prefill rate, for the summaries that read
        them (the engine serves with the step model itself)."""
        st, sch = self._step.step_time, self._step.scheduler
        if self.curve is None:
            batch = sorted({1, *(1 << i for i in range(self.max_batch.bit_length())),
                            self.max_batch})
            rates = [b / st.step_s(b, b, b * (REF_CONTEXT_TOKENS + 1), 0.0) for b in batch]
            for i in range(1, len(rates)):  # the curve's rules: rate up, per request down
                rates[i] = min(max(rates[i], rates[i - 1]), rates[i - 1] / batch[i - 1] * batch[i])
            object.__setattr__(self, "curve",
                               DecodeCurve(batch=batch, decode_tokens_per_s=rates))
        if self.prefill_tokens_per_s is None:
            n = sch.max_num_batched_tokens
            object.__setattr__(self, "prefill_tokens_per_s",
                               n / st.step_s(n, 1, 0.0, n * (n + 1) / 2))

    def step_model(self) -> StepModel:
        """The replica as the step-level engine serves it (converted once for a legacy
        profile; see the module docstring)."""
        return self._step

    @property
    def step_uncertainty(self) -> StepUncertainty | None:
        """The spread of the step-time terms, or None when the profile is certain."""
        unc = self.step_time.uncertainty if self.step_time is not None else None
        return None if unc is None or unc.certain else unc

    def with_step_factors(self, factors: dict[str, float]) -> GpuProfile:
        """This profile with its step-time terms (and ``pre_s``/``post_s``) times
        ``factors`` (one draw of its uncertainty, :func:`~sim.profiles.steptime.scaled_model`),
        its decode curve and prefill rate summarised again from the scaled steps (a curve
        or rate the file gave is kept as given). A legacy profile is returned unchanged."""
        if self.step_time is None:
            return self
        model = scaled_model(self._step, factors)
        data = self.model_dump(exclude={"curve", "prefill_tokens_per_s"}
                               - set(self.model_fields_set))
        data.update(step_time=model.step_time.model_dump(),
                    overheads=model.overheads.model_dump())
        return GpuProfile.model_validate(data)

    def _fit_curve(self) -> None:
        assert self.curve is not None
        u = np.log(np.asarray(self.curve.batch, dtype=np.float64))
        y = np.log(np.asarray(self.curve.decode_tokens_per_s, dtype=np.float64))
        self._log_b, self._log_v = u, y
        if u.size > 1:
            secant = np.clip(np.diff(y) / np.diff(u), 0.0, 1.0)
            d = PchipInterpolator(u, y).derivative()(u)
            # Per interval, limit the end slopes to [max(0, 3s-2), min(1, 3s)] (s = secant):
            # inside that box a cubic Hermite piece is monotone, and so is (u - piece), so
            # the log-log slope stays in [0, 1] everywhere.
            lo, hi = np.maximum(0.0, 3 * secant - 2), np.minimum(1.0, 3 * secant)
            self._slope_left = np.clip(d[:-1], lo, hi)
            self._slope_right = np.clip(d[1:], lo, hi)
        n = np.arange(1, self.max_batch + 1, dtype=np.float64)
        per_request = self._interpolate(n) / n
        # Guard against round-off: never faster with more requests.
        per_request = np.minimum.accumulate(per_request)
        self._rate_table = [0.0, *(float(x) for x in per_request)]

    # -- runtime helpers (the engine calls these) ------------------------------------------

    def _interpolate(self, b: np.ndarray) -> np.ndarray:
        u_k, y_k = self._log_b, self._log_v
        values = self.curve.decode_tokens_per_s
        out = np.full_like(b, np.nan)
        low = b < 1.0
        out[low] = np.clip(b[low], 0.0, None) * values[0]
        high = b >= self.curve.batch[-1]
        out[high] = values[-1]
        mid = ~(low | high | np.isnan(b))
        if mid.any():
            u = np.log(b[mid])
            i = np.searchsorted(u_k, u, side="right") - 1
            h = u_k[i + 1] - u_k[i]
            t = (u - u_k[i]) / h
            t2, t3 = t * t, t * t * t
            y = ((2 * t3 - 3 * t2 + 1) * y_k[i] + (t3 - 2 * t2 + t) * h * self._slope_left[i]
                 + (-2 * t3 + 3 * t2) * y_k[i + 1] + (t3 - t2) * h * self._slope_right[i])
            out[mid] = np.exp(y)
        return out

    def decode_tokens_per_s(self, b: float | np.ndarray) -> float | np.ndarray:
        """Aggregate decode tokens/s with ``b`` running requests (monotone in ``b``).

        Between table points: a monotone cubic (PCHIP slopes from scipy, then limited) of
        log(rate) against log(b) whose slope stays in [0, 1], so the aggregate never falls
        and the per-request rate never rises with ``b``. Linear from 0 on ``[0, 1]``,
        constant beyond the last table point. Accepts a scalar (returns a float) or an
        array.
        """
        arr = np.asarray(b, dtype=np.float64)
        out = self._interpolate(np.atleast_1d(arr).ravel()).reshape(arr.shape)
        return float(out) if out.ndim == 0 else out

    def per_request_rate_table(self) -> list[float]:
        """Tokens/s of one request when ``b`` run, for ``b = 0..max_batch`` (index 0 = 0.0).

        Non-increasing in ``b`` for ``b >= 1``. The list is shared: do not modify it.
        """
        return self._rate_table

    @property
    def saturated_tokens_per_s(self) -> float:
        """Aggregate decode tokens/s at ``max_batch`` running requests."""
        return float(self._interpolate(np.array([float(self.max_batch)]))[0])

    def usd_per_replica_hour(self, pricing: Pricing = "on_demand") -> float:
        """Price of one replica-hour (``gpus_per_replica`` x the per-GPU price)."""
        price = getattr(self.prices, f"{pricing}_usd_per_gpu_hour", None)
        if price is None:
            raise ConfigError(f"profile '{self.name}' has no {pricing} price",
                              field=f"prices.{pricing}_usd_per_gpu_hour")
        return float(price) * self.gpus_per_replica


def builtin_profiles() -> list[str]:
    """Names of the shipped profiles (``gpu_profiles/*.yaml``)."""
    return builtin_names("gpu_profiles")


def load_profile(spec: str | Path | dict[str, Any] | GpuProfile, *,
                 base_dir: Path | None = None, file: str | None = None,
                 field: str = "fleet.profile") -> GpuProfile:
    """A validated profile from a built-in name, a file path or an inline mapping.

    A name or path resolves like other named files (next to the experiment, then the
    shipped ``gpu_profiles/``); errors in a profile file name that file. A file without a
    ``name`` takes its file stem. Inline mappings are validated in place (errors name
    ``file`` and ``field``); an inline ``{derive: {model, gpu, tp, ...}}`` is derived
    (:func:`sim.profiles.derive.derive_from_mapping`) and its other keys override the
    derived fields.
    """
    if isinstance(spec, GpuProfile):
        return spec
    if isinstance(spec, dict):
        if "derive" in spec:  # {derive: {model, gpu, tp, ...}, other fields override}
            try:
                derived = derive_from_mapping(spec["derive"], base_dir)
            except DeriveError as exc:
                raise ConfigError(str(exc), file=file, field=f"{field}.derive") from None
            spec = {**derived, **{k: v for k, v in spec.items() if k != "derive"}}
        return validate(GpuProfile, spec, file=file, prefix=field)
    if not isinstance(spec, str | Path) or not str(spec).strip():
        raise ConfigError(f"expected a profile name, a path or a mapping, got {spec!r}",
                          file=file, field=field)
    path = resolve_named("gpu_profiles", str(spec), base_dir=base_dir, field=field, file=file)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("a GPU profile file must be a mapping of fields", file=str(path))
    data = {"name": path.stem, **data}
    return validate(GpuProfile, data, file=str(path))


def gpu_prices(profile: GpuProfile) -> dict[str, float | None]:
    """The profile's GPU prices per tier (None where it has none)."""
    p = profile.prices
    return {"on_demand": p.on_demand_usd_per_gpu_hour,
            "reserved": p.reserved_usd_per_gpu_hour,
            "spot": p.spot_usd_per_gpu_hour}

"""Simulated paid LLM APIs: prices, latency, rate limits, retries and outages.

An :class:`ApiModel` stands for one hosted model behind a metered API. The simulator
never calls a real API; it models one attempt as:

* **admission** -- :class:`RateLimiter` with fixed one-minute windows aligned to the start
  of the horizon (window = ``floor(t / 60)``): an attempt is admitted when the window has
  made fewer than ``rpm`` requests and its tokens fit in what is left of ``tpm``. A single
  request larger than ``tpm`` is never admitted. Vendors actually use rolling or
  token-bucket limits; fixed windows admit up to twice the rate across a window boundary,
  which is the usual simplification;
* **outages** -- during an outage interval every attempt fails at once (rejected by the
  limiter, so the caller retries or falls back);
* **latency** -- time to first token is fixed or lognormal (given by its median and 95th
  percentile), independent across attempts; after it, output streams at a constant
  ``output_tokens_per_s``, so ``e2e = ttft + output_tokens / output_tokens_per_s``. There
  is no queueing at the vendor: the API is treated as infinitely parallel below its limits;
* **retries** -- exponential back-off, ``backoff_s * multiplier ** (attempt - 1)`` before
  retry ``attempt`` (1 = the first retry), at most ``max_retries`` retries;
* **cost** -- list prices per million tokens; a ``cached_input_share`` of input tokens is
  billed at the cached-input price, except for the requests of a workload stream that
  declares a ``prefix`` (:class:`sim.workload.streams.PrefixConfig`): their cached input is
  the declared prefix or hit share (the provider's cache assumed warm; see there).
  Failed (rejected) attempts cost nothing.

Built-in models come from ``sim/data/api_models.yaml`` (sources and dates in that file);
experiments add their own, derive from a built-in (``base:``) or price one from LiteLLM's
``model_prices_and_context_window.json`` (``litellm:``).
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import math
import os
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

from sim.core.errors import ConfigError, closest
from sim.core.loader import read_json, read_yaml
from sim.core.schema import DurationS, Model, NonNegFloat, PositiveFloat, Probability, validate

__all__ = [
    "LognormalTtft",
    "FixedTtft",
    "RetryPolicy",
    "Outage",
    "ApiModel",
    "RateLimiter",
    "BUILTIN_API_MODELS_FILE",
    "WINDOW_S",
    "builtin_api_models",
    "load_api_models",
    "get_api_model",
    "prices_from_litellm",
    "read_litellm_prices",
    "litellm_price_path",
]

BUILTIN_API_MODELS_FILE = Path(__file__).resolve().parents[1] / "data" / "api_models.yaml"
WINDOW_S = 60.0
"""Length of a rate-limit window in seconds (limits are per minute)."""
_Z95 = 1.6448536269514722  # standard normal 95th percentile
_LITELLM_ENV = "CAPSIM_LITELLM_JSON"


# --- configuration --------------------------------------------------------------------------


class LognormalTtft(Model):
    """Lognormal time to first token, given by its median and 95th percentile (seconds)."""

    kind: Literal["lognormal"] = "lognormal"
    median: PositiveFloat
    p95: PositiveFloat

    @field_validator("p95")
    @classmethod
    def _ordered(cls, p95: float, info: ValidationInfo) -> float:
        median = info.data.get("median")
        if median is not None and p95 < median:
            raise ValueError(f"p95 ({p95:g} s) is below median ({median:g} s)")
        return p95

    @property
    def sigma(self) -> float:
        """Standard deviation of log(TTFT)."""
        return math.log(self.p95 / self.median) / _Z95


class FixedTtft(Model):
    """A constant time to first token (seconds)."""

    kind: Literal["fixed"] = "fixed"
    value: NonNegFloat


def _ttft(value: Any) -> Any:
    """A bare number means a fixed TTFT; a mapping without ``kind`` is inferred."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"kind": "fixed", "value": value}
    if isinstance(value, dict) and "kind" not in value:
        if "median" in value or "p95" in value:
            return {"kind": "lognormal", **value}
        if "value" in value:
            return {"kind": "fixed", **value}
    return value


TtftSpec = Annotated[LognormalTtft | FixedTtft, Field(discriminator="kind"),
                     BeforeValidator(_ttft)]


class RetryPolicy(Model):
    """Exponential back-off between attempts."""

    max_retries: int = Field(default=3, ge=0)
    backoff_s: NonNegFloat = 1.0
    multiplier: float = Field(default=2.0, ge=1.0, allow_inf_nan=False)


class Outage(Model):
    """An interval during which every attempt fails fast."""

    start: DurationS
    duration: DurationS

    @field_validator("duration")
    @classmethod
    def _positive(cls, duration: float) -> float:
        if duration <= 0:
            raise ValueError("an outage must last longer than 0 s")
        return duration


PositiveInt = Annotated[int, Field(gt=0)]


class ApiModel(Model):
    """One hosted model behind a metered API (see the module docstring)."""

    name: str
    usd_per_1m_input: NonNegFloat
    usd_per_1m_cached_input: NonNegFloat
    usd_per_1m_output: NonNegFloat
    cached_input_share: Probability = 0.0
    ttft_s: TtftSpec
    output_tokens_per_s: PositiveFloat
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    retry: RetryPolicy = RetryPolicy()
    outages: list[Outage] = Field(default_factory=list)
    price_date: str = ""
    source: str = ""
    notes: str = ""

    _usd_per_input_token: float = PrivateAttr()
    _usd_per_output_token: float = PrivateAttr()
    _outage_starts: list[float] = PrivateAttr()
    _outage_ends: list[float] = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _default_cached_price(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("usd_per_1m_cached_input") is None \
                and "usd_per_1m_input" in data:
            return {**data, "usd_per_1m_cached_input": data["usd_per_1m_input"]}
        return data

    def model_post_init(self, context: Any, /) -> None:
        share = self.cached_input_share
        blended = (1.0 - share) * self.usd_per_1m_input + share * self.usd_per_1m_cached_input
        self._usd_per_input_token = blended / 1e6
        self._usd_per_output_token = self.usd_per_1m_output / 1e6
        merged: list[list[float]] = []
        for o in sorted(self.outages, key=lambda o: o.start):
            end = o.start + o.duration
            if merged and o.start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([o.start, end])
        self._outage_starts = [s for s, _ in merged]
        self._outage_ends = [e for _, e in merged]

    # -- runtime helpers (the engine calls these) ------------------------------------------

    def is_down(self, t_s: float) -> bool:
        """Whether ``t_s`` falls in an outage (half-open ``[start, start + duration)``)."""
        if not self._outage_starts:
            return False
        i = bisect.bisect_right(self._outage_starts, t_s) - 1
        return i >= 0 and t_s < self._outage_ends[i]

    def backoff_s(self, attempt: int) -> float:
        """Wait before retry ``attempt`` (1 = first retry): backoff_s x multiplier^(attempt-1)."""
        if attempt < 1:
            raise ValueError(f"retry attempts count from 1, got {attempt}")
        return self.retry.backoff_s * self.retry.multiplier ** (attempt - 1)

    def sample_latency(self, rng: np.random.Generator,
                       output_tokens: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(ttft_s, e2e_s) from each attempt's start, one draw per element.

        A lognormal TTFT draws ``rng.standard_normal(shape)``; a fixed one draws nothing.
        """
        out = np.asarray(output_tokens, dtype=np.float64)
        spec = self.ttft_s
        if isinstance(spec, LognormalTtft):
            ttft = spec.median * np.exp(spec.sigma * rng.standard_normal(out.shape))
        else:
            ttft = np.full(out.shape, spec.value, dtype=np.float64)
        return ttft, ttft + out / self.output_tokens_per_s

    def cost_usd(self, input_tokens: np.ndarray | float,
                 output_tokens: np.ndarray | float) -> float | np.ndarray:
        """List price of successful calls (cached-input share applied); arrays broadcast."""
        cost = (np.asarray(input_tokens, dtype=np.float64) * self._usd_per_input_token
                + np.asarray(output_tokens, dtype=np.float64) * self._usd_per_output_token)
        return float(cost) if cost.ndim == 0 else cost

    @property
    def usd_per_input_token(self) -> float:
        """Effective input price per token (cached share blended in)."""
        return self._usd_per_input_token

    @property
    def usd_per_output_token(self) -> float:
        return self._usd_per_output_token


# --- rate limiting --------------------------------------------------------------------------


class RateLimiter:
    """Per-minute request and token limits of one :class:`ApiModel` (fixed windows).

    ``try_acquire(t_s, tokens)`` admits an attempt and records its usage, or returns False
    (limit reached, or the API is in an outage). Only the latest ``keep_windows`` windows
    are kept; an attempt in an older, already-forgotten window is counted against a fresh
    window (the engine's attempts arrive in non-decreasing time, so this does not arise).
    O(1) per call (O(log n) in the number of outages).
    """

    __slots__ = ("model", "rpm", "tpm", "keep_windows", "_windows", "_latest",
                 "peak_rpm_used", "peak_tpm_used", "admitted", "rejected_rate_limit",
                 "rejected_outage", "_has_outages")

    def __init__(self, model: ApiModel, *, keep_windows: int = 4):
        if keep_windows < 1:
            raise ValueError("keep_windows must be at least 1")
        self.model = model
        # Read once: the model's outage list is a pydantic private attribute, slow to reach.
        self._has_outages = bool(model._outage_starts)
        self.rpm: int | None = model.rpm
        self.tpm: int | None = model.tpm
        self.keep_windows = keep_windows
        self._windows: dict[int, list[float]] = {}
        self._latest: int | None = None
        self.peak_rpm_used = 0
        """Most requests admitted in any one window so far."""
        self.peak_tpm_used = 0.0
        """Most tokens admitted in any one window so far."""
        self.admitted = 0
        self.rejected_rate_limit = 0
        self.rejected_outage = 0

    def _slot(self, window: int) -> list[float]:
        slot = self._windows.get(window)
        if slot is None:
            slot = self._windows[window] = [0, 0.0]
            if self._latest is None or window > self._latest:
                self._latest = window
                if len(self._windows) > self.keep_windows:
                    oldest_kept = window - self.keep_windows + 1
                    for old in [w for w in self._windows if w < oldest_kept]:
                        del self._windows[old]
        return slot

    def try_acquire(self, t_s: float, tokens: float) -> bool:
        """Admit one attempt of ``tokens`` tokens at time ``t_s`` if the limits allow it."""
        if self._has_outages and self.model.is_down(t_s):
            self.rejected_outage += 1
            return False
        slot = self._slot(math.floor(t_s / WINDOW_S))
        if (self.rpm is not None and slot[0] >= self.rpm) or \
                (self.tpm is not None and slot[1] + tokens > self.tpm):
            self.rejected_rate_limit += 1
            return False
        slot[0] += 1
        slot[1] += tokens
        self.admitted += 1
        if slot[0] > self.peak_rpm_used:
            self.peak_rpm_used = int(slot[0])
        if slot[1] > self.peak_tpm_used:
            self.peak_tpm_used = float(slot[1])
        return True

    def usage(self, t_s: float) -> tuple[int, float]:
        """(requests, tokens) admitted so far in the window containing ``t_s``."""
        slot = self._windows.get(math.floor(t_s / WINDOW_S))
        return (0, 0.0) if slot is None else (int(slot[0]), float(slot[1]))


# --- loading --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def read_litellm_prices(path: str) -> dict[str, Any]:
    """A LiteLLM ``model_prices_and_context_window.json`` (cached; one-line errors:
    duplicate keys and deep nesting refused by :func:`sim.core.loader.read_json`)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError("LiteLLM price file must be a JSON object of models", file=path)
    return data


_MAX_USD_PER_TOKEN = 1.0  # $1M per million tokens: far above any list price


def _per_million(value: Any, what: str, key: str, path: str) -> float:
    """A per-token price from a price-table row, as USD per million tokens: a finite
    number from 0 to $1 per token, else a one-line error naming the row and field."""
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and 0 <= value <= _MAX_USD_PER_TOKEN)
    if not ok:
        shown = ("nothing" if value is None else repr(value)
                 if isinstance(value, int | float) else f"a {type(value).__name__}")
        raise ConfigError(f"LiteLLM model '{key}' has no usable {what}: expected a number "
                          f"from 0 to {_MAX_USD_PER_TOKEN:g} USD per token, got {shown}",
                          file=path, field=f"{key}.{what}")
    return round(float(value) * 1e6, 9)


def prices_from_litellm(json_path: str | Path, key: str) -> dict[str, Any]:
    """ApiModel price fields for ``key`` in a LiteLLM ``model_prices_and_context_window.json``.

    Per-token costs become per-million prices: ``input_cost_per_token`` ->
    ``usd_per_1m_input``, ``output_cost_per_token`` -> ``usd_per_1m_output``,
    ``cache_read_input_token_cost`` (when present) -> ``usd_per_1m_cached_input``; plus a
    ``source`` string naming the file, key and LiteLLM's pricing URL.
    """
    path = str(json_path)
    table = read_litellm_prices(path)
    entry = table.get(key)
    if key in table and key != "sample_spec" and not isinstance(entry, dict):
        raise ConfigError(f"LiteLLM model '{key}': the row must be a mapping of fields, got "
                          f"{type(entry).__name__}", file=path, field=key)
    if not isinstance(entry, dict) or key == "sample_spec":
        raise ConfigError(f"unknown LiteLLM model '{key}'{closest(key, table)}", file=path)
    prices: dict[str, Any] = {
        "usd_per_1m_input": _per_million(entry.get("input_cost_per_token"),
                                         "input_cost_per_token", key, path),
        "usd_per_1m_output": _per_million(entry.get("output_cost_per_token"),
                                          "output_cost_per_token", key, path),
    }
    cached = entry.get("cache_read_input_token_cost")
    if cached is not None:
        prices["usd_per_1m_cached_input"] = _per_million(
            cached, "cache_read_input_token_cost", key, path)
    origin = f" ({entry['source']})" if isinstance(entry.get("source"), str) else ""
    prices["source"] = f"LiteLLM {Path(path).name} key '{key}'{origin}"
    return prices


def litellm_price_path(entry: dict[str, Any], file: str | None, field: str) -> str:
    """The LiteLLM price file to use: ``entry['litellm_json']`` (popped; relative to
    ``file``), else ``$CAPSIM_LITELLM_JSON``, else the installed ``litellm`` package's."""
    given = entry.pop("litellm_json", None) or os.environ.get(_LITELLM_ENV)
    if given:
        p = Path(str(given)).expanduser()
        if not p.is_absolute() and file:
            p = Path(file).resolve().parent / p
        return str(p)
    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.origin:
        for candidate in ("model_prices_and_context_window_backup.json",
                          "model_prices_and_context_window.json"):
            p = Path(spec.origin).parent / candidate
            if p.is_file():
                return str(p)
    raise ConfigError(f"no LiteLLM price file: add 'litellm_json: <path>' or set {_LITELLM_ENV}",
                      file=file, field=f"{field}.litellm")


def _raw_entry(name: str, entry: Any, known: dict[str, dict[str, Any]], *,
               file: str | None, field: str) -> dict[str, Any]:
    """The full field mapping of one entry: base fields, LiteLLM prices, then overrides."""
    where = f"{field}.{name}" if field else name
    if isinstance(entry, str):
        entry = {"base": entry}
    if not isinstance(entry, dict):
        raise ConfigError("an API model must be a mapping of fields (or the name of a base "
                          "model)", file=file, field=where)
    entry = dict(entry)
    raw: dict[str, Any] = {}
    if "base" in entry:
        base = entry.pop("base")
        if not isinstance(base, str) or base not in known:
            raise ConfigError(f"unknown API model '{base}'{closest(str(base), known)}",
                              file=file, field=f"{where}.base")
        raw = dict(known[base])
    if "litellm" in entry:
        key = entry.pop("litellm")
        if not isinstance(key, str):
            raise ConfigError(f"expected a LiteLLM model key, got {key!r}", file=file,
                              field=f"{where}.litellm")
        path = litellm_price_path(entry, file, where)
        raw.pop("usd_per_1m_cached_input", None)
        raw.update(prices_from_litellm(path, key))
        raw["price_date"] = f"as of the LiteLLM price file {Path(path).name}"
    elif "litellm_json" in entry:
        raise ConfigError("litellm_json needs a 'litellm: <model key>' entry", file=file,
                          field=f"{where}.litellm_json")
    raw.update(entry)
    raw["name"] = name
    return raw


@functools.lru_cache(maxsize=1)
def _builtin_raw() -> dict[str, dict[str, Any]]:
    data = read_yaml(BUILTIN_API_MODELS_FILE)
    file = str(BUILTIN_API_MODELS_FILE)
    if not isinstance(data, dict):
        raise ConfigError("must be a mapping of model name -> fields", file=file)
    raw: dict[str, dict[str, Any]] = {}
    for name, entry in data.items():
        raw[str(name)] = _raw_entry(str(name), entry, raw, file=file, field="")
    return raw


@functools.lru_cache(maxsize=1)
def _builtin_models() -> dict[str, ApiModel]:
    file = str(BUILTIN_API_MODELS_FILE)
    return {name: validate(ApiModel, raw, file=file, prefix=name)
            for name, raw in _builtin_raw().items()}


def builtin_api_models() -> dict[str, ApiModel]:
    """The shipped API models (``sim/data/api_models.yaml``), as a fresh dict."""
    return dict(_builtin_models())


def load_api_models(spec: dict[str, Any] | None, *, file: str | None = None,
                    field: str = "api") -> dict[str, ApiModel]:
    """Built-in API models plus the experiment's entries in ``spec`` (name -> entry).

    An entry is a full model; ``{base: <known name>, ...overrides}`` (overrides replace
    whole fields; a string entry is shorthand for ``{base: ...}``); or
    ``{litellm: <key>, litellm_json: <path>?, ...}`` priced from a LiteLLM price file
    (``litellm_json`` relative to ``file``; default ``$CAPSIM_LITELLM_JSON`` or the
    installed ``litellm`` package's copy), usually together with ``base:`` for latency and
    limits. Entries may build on earlier ones; a user entry replaces a built-in of the same
    name. Errors are one-line ConfigErrors naming ``file`` and ``api.<name>.<field>``.
    """
    known = dict(_builtin_raw())
    models = builtin_api_models()
    if spec is None:
        return models
    if not isinstance(spec, dict):
        raise ConfigError("expected a mapping of API model name -> fields", file=file,
                          field=field)
    for name, entry in spec.items():
        raw = _raw_entry(str(name), entry, known, file=file, field=field)
        models[str(name)] = validate(ApiModel, raw, file=file, prefix=f"{field}.{name}")
        known[str(name)] = raw
    return models


def get_api_model(models: dict[str, ApiModel], name: str, *, file: str | None = None,
                  field: str | None = None) -> ApiModel:
    """``models[name]``, or a one-line ConfigError with the closest known name."""
    try:
        return models[name]
    except KeyError:
        hint = closest(name, models)
        listing = "" if hint else f"; known: {', '.join(sorted(models))}"
        raise ConfigError(f"unknown API model '{name}'{hint}{listing}", file=file,
                          field=field) from None

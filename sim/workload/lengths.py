"""Token-length models: how many prompt (input) and generated (output) tokens a request has.

Kinds (``input_tokens`` / ``output_tokens`` in a workload stream):

* ``fixed`` - every request has ``value`` tokens.
* ``lognormal`` - ``exp(N(mu, sigma^2))`` with ``mu`` set by exactly one of ``median``
  (``mu = ln median``) or ``mean`` (``mu = ln mean - sigma^2 / 2``), rounded to whole
  tokens and clipped to ``[min, max]`` (so the realised mean differs slightly from ``mean``
  when the clip bites).
* ``exponential`` - exponential with ``mean``, clipped to ``max``; not rounded, so that
  service times are exactly exponential in queueing-theory checks (the engine accepts
  fractional token counts).
* ``empirical`` - resampled with replacement from one column of a trace file (``input``,
  ``output`` or a raw column name; see :mod:`sim.workload.traces`).

Every length is at most ``MAX_TOKENS`` (10 million tokens, beyond any context window):
larger values are refused where they are given, so that per-token tables (the length
histograms of ``capsim workload``) stay small.

Assumptions: a request's input and output lengths are drawn independently of each other
and of its arrival time (trace replay keeps the recorded pairing instead).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, PositiveInt, ValidationInfo, field_validator

from sim.core.schema import Model, NonNegFloat, PositiveFloat
from sim.workload.traces import read_length_column, resolve_trace_path

__all__ = ["MAX_TOKENS", "FixedLength", "LognormalLength", "ExponentialLength", "EmpiricalLength",
           "LengthConfig", "draw_lengths"]


MAX_TOKENS = 10_000_000
"""The longest prompt or output a length model may give (tokens)."""


class FixedLength(Model):
    kind: Literal["fixed"]
    value: PositiveInt = Field(le=MAX_TOKENS)


class LognormalLength(Model):
    kind: Literal["lognormal"]
    mean: PositiveFloat | None = Field(None, le=MAX_TOKENS)
    median: PositiveFloat | None = Field(None, validate_default=True, le=MAX_TOKENS)
    sigma: NonNegFloat = Field(le=10)  # beyond ~3 a token-length model is degenerate
    max: PositiveInt = Field(128_000, le=MAX_TOKENS)
    min: PositiveInt = Field(1, le=MAX_TOKENS)

    # Field validators rather than a model validator, so that errors point at a field.
    @field_validator("median")
    @classmethod
    def _one_location(cls, median: float | None, info: ValidationInfo) -> float | None:
        if (info.data.get("mean") is None) == (median is None):
            raise ValueError("give exactly one of 'mean' or 'median'")
        return median

    @field_validator("min")
    @classmethod
    def _min_below_max(cls, low: int, info: ValidationInfo) -> int:
        high = info.data.get("max")
        if high is not None and low > high:
            raise ValueError(f"min ({low}) must not exceed max ({high})")
        return low

    @property
    def mu(self) -> float:
        """Mean of the underlying normal (log tokens)."""
        if self.median is not None:
            return math.log(self.median)
        return math.log(float(self.mean)) - self.sigma**2 / 2


class ExponentialLength(Model):
    kind: Literal["exponential"]
    mean: PositiveFloat = Field(le=MAX_TOKENS)
    max: PositiveFloat = Field(float(MAX_TOKENS), le=MAX_TOKENS)


class EmpiricalLength(Model):
    kind: Literal["empirical"]
    path: str = Field(min_length=1)
    column: str = Field(min_length=1)


LengthConfig = Annotated[FixedLength | LognormalLength | ExponentialLength | EmpiricalLength,
                         Field(discriminator="kind")]


def draw_lengths(config: LengthConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` token counts (float64 holding whole numbers)."""
    if isinstance(config, FixedLength):
        return np.full(n, float(config.value))
    if isinstance(config, LognormalLength):
        raw = rng.lognormal(config.mu, config.sigma, n)
        return np.clip(np.rint(raw), config.min, config.max)
    if isinstance(config, ExponentialLength):
        return np.minimum(rng.exponential(config.mean, n), config.max)
    values = read_length_column(resolve_trace_path(config.path), config.column)
    return values[rng.integers(0, values.size, n)]

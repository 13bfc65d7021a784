"""Uncertain inputs: a number, or a range sampled once per replication.

What it models: an input known only roughly (a GPU price, an engineer's cost) is written
``{low, high}`` (uniform) or ``{mode, low, high}`` (triangular) and drawn once per
replication by inverse CDF from one uniform number, so the same uniform gives the same
quantile whatever the range (common random numbers across a sweep). Assumptions: values
are finite and non-negative; a plain number is certain and consumes no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, model_validator

from sim.core.errors import closest
from sim.core.schema import Model, NonNegFloat

__all__ = ["Range", "Uncertain", "parse_uncertain", "quantile", "sample", "mean_of"]


class Range(Model):
    """An uncertain non-negative quantity: uniform on [low, high], or triangular with a mode."""

    low: NonNegFloat
    high: NonNegFloat
    mode: NonNegFloat | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low:g}) must not exceed high ({self.high:g})")
        if self.mode is not None and not self.low <= self.mode <= self.high:
            raise ValueError(f"mode ({self.mode:g}) must lie between low ({self.low:g}) "
                             f"and high ({self.high:g})")
        return self

    @property
    def kind(self) -> str:
        return "uniform" if self.mode is None else "triangular"


_RANGE_KEYS = ("low", "high", "mode")


def parse_uncertain(value: Any) -> float | Range:
    """Parse a number, ``{low, high}`` or ``{mode, low, high}`` into a float or a Range."""
    if isinstance(value, Range):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a number or {{low, high}}, got {value!r}")
    if isinstance(value, str):  # e.g. from a --set override
        try:
            value = float(value.replace("_", "").replace(",", ""))
        except ValueError:
            raise ValueError(f"expected a number, {{low, high}} or {{mode, low, high}}, "
                             f"got {value!r}") from None
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"must be a finite, non-negative number, got {value!r}")
        return number
    if isinstance(value, Mapping):
        for key in value:
            if key not in _RANGE_KEYS:
                raise ValueError(f"unknown field '{key}'{closest(str(key), _RANGE_KEYS)}; "
                                 "a range is {low, high} or {mode, low, high}")
        for key in ("low", "high"):
            if key not in value:
                raise ValueError(f"a range needs '{key}' (write {{low, high}} or "
                                 "{mode, low, high})")
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(
                    item, int | float | np.integer | np.floating):
                raise ValueError(f"'{key}' must be a number, got {item!r}")
            if not math.isfinite(float(item)) or float(item) < 0:
                raise ValueError(f"'{key}' must be a finite, non-negative number, got {item!r}")
        return Range(**{k: float(v) for k, v in value.items()})
    raise ValueError(f"expected a number, {{low, high}} or {{mode, low, high}}, got {value!r}")


Uncertain = Annotated[float | Range, BeforeValidator(parse_uncertain)]
"""A non-negative number, ``{low, high}`` (uniform) or ``{mode, low, high}`` (triangular)."""


def quantile(value: float | Range, u: float) -> float:
    """The ``u``-quantile (0 <= u < 1) of ``value``; a plain number is its own quantile."""
    if not isinstance(value, Range):
        return float(value)
    low, high = value.low, value.high
    width = high - low
    if width == 0:
        return low
    if value.mode is None:
        return low + u * width
    mode = value.mode
    split = (mode - low) / width
    if u < split:
        return low + math.sqrt(u * width * (mode - low))
    return high - math.sqrt((1.0 - u) * width * (high - mode))


def sample(value: float | Range, rng: np.random.Generator) -> float:
    """One draw of ``value``; a plain number returns itself and consumes no randomness."""
    if not isinstance(value, Range):
        return float(value)
    return quantile(value, float(rng.random()))


def mean_of(value: float | Range) -> float:
    """The expected value of ``value`` (uniform: midpoint; triangular: (low+mode+high)/3)."""
    if not isinstance(value, Range):
        return float(value)
    if value.mode is None:
        return (value.low + value.high) / 2.0
    return (value.low + value.mode + value.high) / 3.0

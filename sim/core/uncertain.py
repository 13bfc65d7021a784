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
from scipy.special import ndtri

from sim.core.errors import closest
from sim.core.schema import Model, NonNegFloat

__all__ = ["Range", "Uncertain", "parse_uncertain", "quantile", "sample", "mean_of",
           "normal_scores", "lognormal_factor", "correlated_scores", "correlation_problem"]


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


_U_CLIP = 1e-12  # keeps Phi^-1(u) finite (|z| <= 7) for a uniform of exactly 0


def normal_scores(uniforms: Any) -> np.ndarray:
    """Standard normal scores ``Phi^-1(u)`` of uniforms in [0, 1)."""
    u = np.clip(np.asarray(uniforms, dtype=np.float64), _U_CLIP, 1.0 - _U_CLIP)
    return np.asarray(ndtri(u), dtype=np.float64)


def lognormal_factor(rel_std: float, z: float) -> float:
    """A positive factor of mean 1 and standard deviation ``rel_std`` at normal score ``z``:
    ``exp(s z - s^2 / 2)`` with ``s^2 = ln(1 + rel_std^2)``."""
    if rel_std <= 0.0:
        return 1.0
    s2 = math.log1p(rel_std * rel_std)
    return math.exp(math.sqrt(s2) * z - s2 / 2.0)


def correlation_problem(matrix: Any, size: int) -> str | None:
    """What is wrong with ``matrix`` as a ``size`` x ``size`` correlation matrix, or None:
    square of that size, symmetric, ones on the diagonal, entries in [-1, 1], and positive
    semi-definite (no eigenvalue below -1e-3: a matrix written with 3 decimals may be a
    little off; :func:`correlated_scores` clips such eigenvalues to 0)."""
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        return "must be a square matrix (a list of rows) of numbers"
    if m.shape != (size, size):
        return f"must be {size} x {size} (one row and column per term), got shape {m.shape}"
    if not np.all(np.isfinite(m)):
        return "must hold finite numbers"
    if not np.allclose(m, m.T, atol=1e-9):
        return "must be symmetric"
    if not np.allclose(np.diag(m), 1.0, atol=1e-9):
        return "must have ones on the diagonal"
    if np.any(np.abs(m) > 1.0 + 1e-9):
        return "entries must lie in [-1, 1]"
    if size and float(np.linalg.eigvalsh(m).min()) < -1e-3:
        return "is not positive semi-definite (not a possible correlation matrix)"
    return None


def correlated_scores(z: Any, matrix: Any | None) -> np.ndarray:
    """Independent normal scores ``z`` made correlated by ``matrix`` (None: independent):
    ``R^(1/2) z`` with the symmetric square root of the correlation matrix, so each score
    stays standard normal and pairs have the given correlations."""
    z = np.asarray(z, dtype=np.float64)
    if matrix is None:
        return z
    vals, vecs = np.linalg.eigh(np.asarray(matrix, dtype=np.float64))
    root = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    return np.asarray(root @ z, dtype=np.float64)

"""The one set of number formats: money, durations, shares, counts, on screen and on axes.

Every printed figure carries its unit: ``$13,225`` / ``$2.15``, ``85 ms`` / ``1.24 s`` /
``3.5 min``, ``95.2%``, ``812`` / ``12.3 K`` / ``4.21 M``; ``-`` when a value is undefined
(NaN, infinite, missing). :func:`format_usd_short` is the compact money of plot labels
(``$12.3k``, ``$1.2M``); :func:`sim.report.plots.usd_axis` and
:func:`~sim.report.plots.count_axis` are the matplotlib tick formatters built on these
(kept there so that text output never loads matplotlib). Assumption: amounts are in US
dollars, durations in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["DASH", "UTILIZATION_BASIS", "format_usd", "format_usd_short", "format_seconds",
           "format_percent", "format_count", "STYLES", "Style", "finite"]

DASH = "-"
# What gpu_utilization is a share of. Busy time is printed before it: a replica whose KV
# cache holds fewer than max_num_seqs sequences never reaches that rate, so it reads low.
UTILIZATION_BASIS = ("of fleet capacity (prefill + decode at the best rate of max_num_seqs "
                     "sequences, which a small KV cache may never reach)")


def finite(x: Any) -> bool:
    return (isinstance(x, int | float) and not isinstance(x, bool)
            and math.isfinite(float(x)))


@dataclass(frozen=True)
class Style:
    """How to print one quantity: value x scale, with decimals, a prefix and a suffix."""

    scale: float
    decimals: int
    prefix: str = ""
    suffix: str = ""
    commas: bool = False

    def number(self, x: float) -> str:
        v = abs(x) * self.scale
        return f"{v:,.{self.decimals}f}" if self.commas else f"{v:.{self.decimals}f}"

    def half(self, h: float) -> str:
        text = self.number(h)
        if h > 0 and float(text.replace(",", "")) == 0:
            text = f"{h * self.scale:.1g}"  # tiny interval: one significant digit
        return text


def _usd_style(x: float) -> Style:
    return Style(1.0, 0 if abs(x) >= 100 else 2, prefix="$", commas=True)


def _seconds_style(x: float) -> Style:
    a = abs(x)
    if a < 0.01:
        return Style(1e3, 1, suffix=" ms")
    if a < 1:
        return Style(1e3, 0, suffix=" ms")
    if a < 10:
        return Style(1.0, 2, suffix=" s")
    if a < 100:
        return Style(1.0, 1, suffix=" s")
    return Style(1 / 60, 1, suffix=" min")


def _percent_style(x: float) -> Style:
    return Style(100.0, 1, suffix="%")


def _count_style(x: float) -> Style:
    a = abs(x)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if a >= size:
            v = a / size
            return Style(1 / size, 2 if v < 10 else 1 if v < 100 else 0, suffix=f" {suffix}")
    return Style(1.0, 0 if a >= 10 or float(x).is_integer() else 2)


def _format(x: float, style_of) -> str:
    if not finite(x):
        return DASH
    style = style_of(x)
    return f"{'-' if x < 0 else ''}{style.prefix}{style.number(x)}{style.suffix}"


def format_usd(x: float) -> str:
    """``$13,225``, ``$412``, ``$2.15``; ``-`` when undefined."""
    return _format(x, _usd_style)


def format_seconds(x: float) -> str:
    """``4.2 ms``, ``85 ms``, ``1.24 s``, ``3.5 min``; ``-`` when undefined."""
    return _format(x, _seconds_style)


def format_percent(x: float) -> str:
    """A fraction as ``95.2%``; ``-`` when undefined."""
    return _format(x, _percent_style)


def format_count(x: float) -> str:
    """``812``, ``12.3 K``, ``4.21 M``, ``3.01 B``; ``-`` when undefined."""
    return _format(x, _count_style)


STYLES = {format_usd: _usd_style, format_seconds: _seconds_style,
           format_percent: _percent_style, format_count: _count_style}


def format_usd_short(x: float) -> str:
    """Compact money for plot labels, three significant digits: ``$950``, ``$12.3k``,
    ``$1.2M``; ``-`` when undefined."""
    if not finite(x):
        return DASH
    size = abs(x)
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if size >= scale:
            return f"${x / scale:,.3g}{suffix}"
    return f"${x:,.0f}" if size >= 10 else f"${x:,.2g}"

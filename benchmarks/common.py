"""Shared pieces of the cases: run settings and timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

__all__ = ["ROOT", "Settings", "median_time", "timed"]

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent  # the checkout: cwd of child processes


@dataclass(frozen=True)
class Settings:
    """How hard to run: ``quick`` shrinks the cases (CI smoke), ``repeat`` runs to median."""

    quick: bool = False
    repeat: int = 3

    def pick(self, full: T, quick: T) -> T:
        return quick if self.quick else full


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Wall-clock seconds of one call, and its result."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median_time(fn: Callable[[], tuple[float, T]], repeat: int) -> tuple[float, T]:
    """Median over ``repeat`` calls of ``fn``, which returns (seconds, result); the last
    result is returned (the runs are deterministic)."""
    times, out = [], None
    for _ in range(max(1, repeat)):
        dt, out = fn()
        times.append(dt)
    return statistics.median(times), out

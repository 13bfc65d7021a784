"""Closed forms and sampling error for the M/M/c check."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["erlang_c", "mmc_mean_wait", "batch_means", "agree"]


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load ``a = lambda/mu`` < c."""
    term, total = 1.0, 1.0  # a^k / k!, summed for k < c
    for k in range(1, c):
        term *= a / k
        total += term
    top = term * a / c * c / (c - a)  # a^c / c! * c / (c - a)
    return top / (total + top)


def mmc_mean_wait(c: int, lam: float, mu: float) -> float:
    """Mean time in queue (before service) of M/M/c, FCFS."""
    return erlang_c(c, lam / mu) / (c * mu - lam)


def batch_means(x: np.ndarray, batches: int = 20, warmup: float = 0.01) -> tuple[float, float]:
    """Mean of a correlated series and its standard error by non-overlapping batch means.

    The first ``warmup`` fraction is dropped (the system starts empty).
    """
    x = np.asarray(x, np.float64)[int(len(x) * warmup):]
    usable = len(x) - len(x) % batches
    means = x[:usable].reshape(batches, -1).mean(axis=1)
    return float(x.mean()), float(means.std(ddof=1) / math.sqrt(batches))


def agree(m1: float, se1: float, m2: float, se2: float = 0.0, k: float = 3.0) -> bool:
    """Do two estimates (or an estimate and an exact value, ``se2 = 0``) agree within
    ``k`` standard errors of their difference?"""
    return abs(m1 - m2) <= k * math.hypot(se1, se2)

"""LiteLLM routing strategies: which deployment of a model group takes the next attempt.

Each strategy picks one of ``candidates`` -- the group's deployments that are not cooling
down, fit the request and (for ``usage-based-routing``) have rate-limit headroom, already
narrowed to the lowest ``order`` present. Ties go to the deployment listed first in the
config, so hand-worked cases are deterministic. Our reading of LiteLLM's documentation:

* ``simple-shuffle`` -- random, weighted by ``weight`` when any deployment of the group
  sets one (a missing weight counts 1), else by ``rpm`` when every deployment sets it, else
  by ``tpm`` likewise, else uniform;
* ``least-busy`` -- fewest attempts in flight (sent and not yet answered);
* ``usage-based-routing`` (and ``-v2``) -- lowest tokens used in the current minute, among
  deployments whose ``rpm``/``tpm`` would not be exceeded by this attempt (the filter is
  applied before the strategy, see :func:`has_headroom`);
* ``latency-based-routing`` -- lowest mean latency per output token over each
  deployment's last ``max_latency_list_size`` answers no older than ``ttl`` (a timeout
  counts 1000 s; a deployment with no history counts 0, so it is tried first); with
  ``lowest_latency_buffer`` b > 0, a random one of those within (1 + b) x the lowest;
* ``cost-based-routing`` -- lowest price per input + output token (self-hosted
  deployments cost 0 unless their ``litellm_params`` give a price).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pick", "has_headroom", "shuffle_weights"]


def has_headroom(dep: Any, minute: int, tokens: float) -> bool:
    """Would one more attempt of ``tokens`` stay within ``dep``'s rpm and tpm this minute?"""
    used_rpm, used_tpm = dep.usage(minute)
    if dep.rpm is not None and used_rpm + 1 > dep.rpm:
        return False
    return dep.tpm is None or used_tpm + tokens <= dep.tpm


def shuffle_weights(group: Sequence[Any]) -> list[float]:
    """The simple-shuffle weight of each deployment of a group (see the module doc)."""
    if any(d.weight is not None for d in group):
        return [1.0 if d.weight is None else float(d.weight) for d in group]
    for attr in ("rpm", "tpm"):
        if all(getattr(d, attr) is not None for d in group):
            return [float(getattr(d, attr)) for d in group]
    return [1.0] * len(group)


def pick(strategy: str, candidates: Sequence[Any], *, t: float, rng: np.random.Generator,
         buffer: float = 0.0) -> Any:
    """The deployment ``strategy`` sends the next attempt to (``candidates`` non-empty)."""
    if len(candidates) == 1:
        return candidates[0]
    if strategy == "simple-shuffle":
        weights = [d.shuffle_weight for d in candidates]
        total = sum(weights)
        if total <= 0:
            return candidates[int(rng.random() * len(candidates))]
        u = rng.random() * total
        for dep, w in zip(candidates, weights, strict=True):
            u -= w
            if u < 0:
                return dep
        return candidates[-1]
    if strategy == "least-busy":
        return min(candidates, key=lambda d: d.in_flight)
    if strategy.startswith("usage-based-routing"):
        minute = int(t // 60.0)
        return min(candidates, key=lambda d: d.usage(minute)[1])
    if strategy == "latency-based-routing":
        means = [d.mean_latency(t) for d in candidates]
        best = min(means)
        if buffer > 0:
            near = [d for d, m in zip(candidates, means, strict=True) if m <= best * (1 + buffer)]
            return near[int(rng.random() * len(near))]
        return candidates[means.index(best)]
    if strategy == "cost-based-routing":
        return min(candidates, key=lambda d: d.usd_per_input_token + d.usd_per_output_token)
    raise ValueError(f"unknown routing strategy {strategy!r}")

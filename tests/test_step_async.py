"""Async scheduling (``scheduler.async_scheduling``) on the compiled step core and the
Python model: the same numbers bit for bit (the invariant of tests/test_step_core.py, whose
randomized cases are synchronous), on cases where the one-step admission delay changes
the times (checked against the synchronous replica, so the comparison is not vacuous)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.serving import step_core, step_replica
from tests.step_reference import simulate
from tests.test_step_core import _drive
from tests.test_step_replica import _random_model


def _case(seed: int, asynch: bool):
    rng = np.random.default_rng(9100 + seed)
    model = _random_model(rng, bool(seed % 2), asynch)
    n = 40
    join = np.cumsum(rng.exponential(0.05, n))
    inp, out = rng.integers(1, 400, n), rng.integers(1, 120, n)
    keep = inp + out <= model.max_len_tokens
    groups = rng.integers(-1, 3, int(keep.sum()))
    prefix = [int(x) for x in rng.integers(0, 100, 3)]
    return model, join[keep], inp[keep], out[keep], groups, prefix


def test_compiled_core_matches_python_model_with_async_scheduling():
    if not step_core.COMPILED:
        pytest.skip(f"step core: {step_core.IMPLEMENTATION}")
    changed = 0
    for seed in range(30):
        model, join, inp, out, groups, prefix = _case(seed, True)
        fast = _drive(step_core.StepReplica, model, join, inp, out, groups, prefix)
        slow = _drive(step_replica.StepReplica, model, join, inp, out, groups, prefix)
        assert fast == slow, f"seed {seed}"
        ref = simulate(model, join, inp, out, groups, prefix)
        np.testing.assert_allclose([r[0] for r in fast[0]], ref.first_s, rtol=1e-9)
        sync = _drive(step_core.StepReplica, *_case(seed, False))
        changed += [r[0] for r in sync[0]] != [r[0] for r in fast[0]]
    assert changed > 20  # the delay moved first tokens in most cases

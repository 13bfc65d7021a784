"""Async scheduling (``scheduler.async_scheduling``) on the compiled step core and the
Python model: the same numbers bit for bit (the invariant of tests/test_step_core.py, whose
randomized cases are synchronous), on cases where the one-step admission delay changes
the times (checked against the synchronous replica, so the comparison is not vacuous)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.serving import step_core, step_replica
from tests.step_reference import simulate
from tests.stepkit import figures, random_case


def test_compiled_core_matches_python_model_with_async_scheduling():
    if not step_core.COMPILED:
        pytest.skip(f"step core: {step_core.IMPLEMENTATION}")
    changed = 0
    for seed in range(30):
        model, join, inp, out, groups, prefix = random_case(9100 + seed, bool(seed % 2), True)
        fast = figures(step_core.StepReplica, model, join, inp, out, groups, prefix)
        slow = figures(step_replica.StepReplica, model, join, inp, out, groups, prefix)
        assert fast == slow, f"seed {seed}"
        ref = simulate(model, join, inp, out, groups, prefix)
        np.testing.assert_allclose(fast[0], ref.first_s, rtol=1e-9)
        sync = figures(step_core.StepReplica, *random_case(9100 + seed, bool(seed % 2), False))
        changed += sync[0] != fast[0]
    assert changed > 20  # the delay moved first tokens in most cases

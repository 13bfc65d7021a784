"""A stream's prefix ``hit_share`` on the compiled step core and the Python model: the same
numbers bit for bit (the invariant of tests/test_step_core.py, whose randomized cases have
no hit shares), on randomized cases where the hits change the times (checked against the
same cases without them, so the comparison is not vacuous), synchronous and async."""

from __future__ import annotations

import numpy as np
import pytest

from sim.serving import step_core, step_replica
from tests.step_reference import simulate
from tests.stepkit import figures, random_case, random_hits


@pytest.mark.parametrize("asynch", [False, True])
def test_compiled_core_matches_python_model_with_hit_shares(asynch):
    if not step_core.COMPILED:
        pytest.skip(f"step core: {step_core.IMPLEMENTATION}")
    changed = 0
    for seed in range(30):
        case = random_case(9300 + seed, bool(seed % 2), asynch)
        hits = random_hits(3 * seed + 1, case[4])  # (a seed that is not 0 mod 3: some)
        fast = figures(step_core.StepReplica, *case, hits)
        slow = figures(step_replica.StepReplica, *case, hits)
        assert fast == slow, f"seed {seed}"
        ref = simulate(*case, hits=hits)
        np.testing.assert_allclose(fast[0], ref.first_s, rtol=1e-9)
        np.testing.assert_allclose(fast[1], ref.end_s, rtol=1e-9)
        plain = figures(step_core.StepReplica, *case, None)
        changed += plain[0] != fast[0]
    assert changed > 20  # the hits moved first tokens in most cases

"""A stream's prefix ``hit_share`` on the compiled step core and the Python model: the same
numbers bit for bit (the invariant of tests/test_step_core.py, whose randomized cases have
no hit shares), on randomized cases where the hits change the times (checked against the
same cases without them, so the comparison is not vacuous), synchronous and async."""

from __future__ import annotations

import numpy as np
import pytest

from sim.serving import step_core, step_replica
from tests.step_reference import simulate
from tests.test_step_replica import _random_model, random_hits, run_hits


def _case(seed: int, asynch: bool):
    rng = np.random.default_rng(9300 + seed)
    model = _random_model(rng, bool(seed % 2), asynch)
    n = 40
    join = np.cumsum(rng.exponential(0.05, n))
    inp, out = rng.integers(1, 400, n), rng.integers(1, 120, n)
    keep = inp + out <= model.max_len_tokens
    groups = rng.integers(-1, 3, int(keep.sum()))
    prefix = [int(x) for x in rng.integers(0, 100, 3)]
    return model, join[keep], inp[keep], out[keep], groups, prefix


def _figures(cls, model, join, inp, out, groups, prefix, hits):
    """Every figure the engine reads, per request and per replica."""
    first, end, pre, rep = run_hits(model, join, inp, out, groups, prefix, hits, cls)
    return (first.tolist(), end.tolist(), pre.tolist(),
            (rep.steps, rep.segments, rep.wakes, rep.preemptions, rep.busy_s))


@pytest.mark.parametrize("asynch", [False, True])
def test_compiled_core_matches_python_model_with_hit_shares(asynch):
    if not step_core.COMPILED:
        pytest.skip(f"step core: {step_core.IMPLEMENTATION}")
    changed = 0
    for seed in range(30):
        case = _case(seed, asynch)
        hits = random_hits(3 * seed + 1, case[4])  # (a seed that is not 0 mod 3: some)
        fast = _figures(step_core.StepReplica, *case, hits)
        slow = _figures(step_replica.StepReplica, *case, hits)
        assert fast == slow, f"seed {seed}"
        ref = simulate(*case, hits=hits)
        np.testing.assert_allclose(fast[0], ref.first_s, rtol=1e-9)
        np.testing.assert_allclose(fast[1], ref.end_s, rtol=1e-9)
        plain = _figures(step_core.StepReplica, *case, None)
        changed += plain[0] != fast[0]
    assert changed > 20  # the hits moved first tokens in most cases

"""The compiled step core (hatch_build.py, sim.serving.step_core) and the Python model.

Invariant: the Cython build of :mod:`sim.serving.step_replica` gives the same numbers as
the Python module, bit for bit (same IEEE double operations in the same order, 64-bit
integers that never overflow at these sizes); it runs only where it was built from the
current source; and the install builds it wherever a C compiler is present.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import types

import numpy as np
import pytest

from sim.serving import step_core, step_replica
from tests.step_reference import simulate
from tests.test_step_replica import _random_model


def _drive(cls, model, join, inp, out, groups, prefix):
    """tests.stepkit.run_fast on a given replica class; every figure the engine reads."""
    rep = cls(model, list(prefix))
    seqs, order, i, n = [None] * join.size, np.argsort(join, kind="stable"), 0, join.size
    while i < n or rep.wake_t < step_replica.INF:
        t_join = join[order[i]] if i < n else step_replica.INF
        if t_join <= rep.wake_t:
            j = int(order[i])
            seqs[j] = rep.add(j, t_join, int(inp[j]), int(out[j]), int(groups[j]))
            i += 1
        else:
            rep.end_segment()
            rep.replan()
    per_request = [(s.first_s, s.end_s, s.preemptions) for s in seqs]
    return per_request, (rep.steps, rep.segments, rep.wakes, rep.preemptions, rep.busy_s)


def test_install_built_the_compiled_core():
    """Where a C compiler is present the install compiles the core, and it is current
    (after editing step_replica.py or .pxd: python hatch_build.py)."""
    if os.environ.get("CAPSIM_PURE_PYTHON"):
        assert not step_core.COMPILED
        return
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}) here: the Python step replica runs")
    assert step_core.COMPILED, step_core.IMPLEMENTATION


def test_compiled_core_matches_python_model_bit_for_bit():
    """Randomized replicas (chunked prefill, tight KV with preemptions, prefix groups,
    per-token overheads): identical per-request times and counters, and both agree with
    the plain step-by-step reference."""
    if not step_core.COMPILED:
        pytest.skip(f"step core: {step_core.IMPLEMENTATION}")
    for seed in range(40):
        rng = np.random.default_rng(7000 + seed)
        model = _random_model(rng, tight_kv=bool(seed % 2))
        n = 40
        join = np.cumsum(rng.exponential(0.05, n))
        inp, out = rng.integers(1, 400, n), rng.integers(1, 120, n)
        keep = inp + out <= model.max_len_tokens
        join, inp, out = join[keep], inp[keep], out[keep]
        groups = rng.integers(-1, 3, join.size)
        prefix = [int(x) for x in rng.integers(0, 100, 3)]
        fast = _drive(step_core.StepReplica, model, join, inp, out, groups, prefix)
        slow = _drive(step_replica.StepReplica, model, join, inp, out, groups, prefix)
        assert fast == slow, f"seed {seed}"
        ref = simulate(model, join, inp, out, groups, prefix)
        np.testing.assert_allclose([r[1] for r in fast[0]], ref.end_s, rtol=1e-9)


def test_stale_or_missing_build_falls_back_to_python(monkeypatch):
    """A compiled module whose stamp is not the current source's is never used."""
    stale = types.ModuleType("sim.serving._step_replica_c")
    stale.SOURCE_SHA256 = "0" * 64
    monkeypatch.setitem(sys.modules, "sim.serving._step_replica_c", stale)
    module, why = step_core.compiled_module()
    assert module is None and why.startswith("stale")
    stale.SOURCE_SHA256 = step_core.source_sha256()
    assert step_core.compiled_module()[0] is stale
    monkeypatch.setitem(sys.modules, "sim.serving._step_replica_c", None)  # import fails
    assert step_core.compiled_module() == (None, "not built (no C compiler or Cython at "
                                           "install)")


_RUN = """
import json, math, sys
from benchmarks.scenario import build_experiment
from sim.experiment.replication import run_replication
from sim.serving.step_core import IMPLEMENTATION
row = run_replication(build_experiment("2h"), 0).row
print(json.dumps({"core": IMPLEMENTATION,
                  "row": {k: repr(v) for k, v in sorted(row.items())}}))
"""


def test_whole_run_is_identical_with_either_core():
    """The benchmark scenario (2 h, 16 replicas, overflow, batch): every output of the
    run row is the same with the compiled core and with CAPSIM_PURE_PYTHON=1."""
    if not step_core.COMPILED:
        pytest.skip(f"step core: {step_core.IMPLEMENTATION}")
    rows = {}
    for pure in ("", "1"):
        env = {**os.environ, "CAPSIM_PURE_PYTHON": pure}
        if not pure:
            env.pop("CAPSIM_PURE_PYTHON")
        done = subprocess.run([sys.executable, "-c", _RUN], env=env, capture_output=True,
                              text=True, check=True, cwd=os.path.dirname(os.path.dirname(
                                  os.path.abspath(__file__))))
        rows[pure] = json.loads(done.stdout.strip().splitlines()[-1])
    assert rows[""]["core"].startswith("compiled")
    assert rows["1"]["core"].startswith("python")
    assert rows[""]["row"] == rows["1"]["row"]

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

from sim.profiles.steptime import StepModel
from sim.serving import step_core, step_replica
from tests.step_reference import simulate
from tests.stepkit import figures, random_case


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
        case = random_case(7000 + seed, tight_kv=bool(seed % 2))
        fast = figures(step_core.StepReplica, *case)
        slow = figures(step_replica.StepReplica, *case)
        assert fast == slow, f"seed {seed}"
        ref = simulate(*case)
        np.testing.assert_allclose(fast[1], ref.end_s, rtol=1e-9)


def _server_sized_case(seed: int):
    """A server-sized replica (256 sequences, budgets of 2k-16k tokens, a KV cache of
    40k-400k tokens, so preemptions) under 600 lognormal requests of up to 30k prompt and
    8k output tokens, prefix groups, hit shares, async scheduling in odd seeds: step
    clocks, block counts and attention pairs far from the small cases' (64-bit range)."""
    rng = np.random.default_rng(seed)
    model = StepModel(
        max_num_seqs=256, kv_capacity_tokens=int(rng.integers(40_000, 400_000)) // 16 * 16,
        scheduler={"max_num_batched_tokens": int(rng.choice([2048, 8192, 16384])),
                   "block_size": 16, "watermark": 0.01, "max_model_len": 131072,
                   "async_scheduling": bool(seed % 2)},
        step_time={"per_step_s": 0.004, "tokens": [1, 64, 512, 8192, 16384],
                   "linear_s": [0.012, 0.013, 0.02, 0.25, 0.5], "per_seq_s": 2e-5,
                   "decode_attention_s_per_token": 3e-9,
                   "prefill_attention_s_per_token2": 2e-12},
        overheads={"pre_s": 0.02, "pre_s_per_input_token": 2e-6, "post_s": 0.005})
    n = 600
    join = np.cumsum(rng.exponential(0.1, n))
    inp = np.minimum(rng.lognormal(7.5, 1.2, n).astype(int) + 1, 30_000)
    out = np.minimum(rng.lognormal(5.5, 1.0, n).astype(int) + 1, 8_000)
    keep = inp + out <= model.max_len_tokens
    m = int(keep.sum())
    groups = rng.integers(-1, 4, m)
    prefix = [int(x) for x in rng.integers(100, 3000, 4)]
    hits = np.where(rng.random(m) < 0.3, rng.random(m), 0.0)
    return (model, join[keep], inp[keep], out[keep], groups, prefix), hits


def test_compiled_core_matches_python_model_on_server_sized_replicas():
    if not step_core.COMPILED:
        pytest.skip(f"step core: {step_core.IMPLEMENTATION}")
    preempted = 0
    for seed in range(8):
        case, hits = _server_sized_case(seed)
        fast = figures(step_core.StepReplica, *case, hits)
        slow = figures(step_replica.StepReplica, *case, hits)
        assert fast == slow, f"seed {seed}"
        preempted += fast[3][3] > 0
        if seed < 2:
            ref = simulate(*case, hits=hits)
            np.testing.assert_allclose(fast[1], ref.end_s, rtol=1e-9)
    assert preempted >= 6  # the KV caches are tight enough to preempt


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

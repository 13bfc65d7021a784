"""The fast step replica against the step-by-step reference, hand-computed cases and theory.

* Randomized small cases (fixed seeds): the segment-skipping replica
  (:mod:`sim.serving.step_replica`) and the plain one-iteration-per-step reference
  (``tests/step_reference.py``) give the same per-request first-token and completion times
  and preemption counts. Tolerance 1e-9 relative: both evaluate the same step times, the
  fast one as closed-form sums over runs of steps (a few float roundings per run), so they
  differ only by round-off; a one-step disagreement would be >= 1e-3 s here.
* Hand-computed cases from issue #19: chunked prefill of a 5,000-token prompt beside 20
  decoding requests, a preemption and recompute, a prefix-cache hit, a hit share (a
  request's own cached blocks: its prefill starts at their end).
* Queueing theory: with max_num_seqs = 1 a replica is an M/G/1 FCFS queue whose service
  time is the sum of the request's step times; the Pollaczek-Khinchine mean wait must hold.
* Events (segments) per request do not grow with the output length.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.profiles.steptime import Overheads, StepModel, StepTime, run_time_s, steps_ending_by
from sim.serving import step_replica
from sim.serving.step_core import StepReplica
from sim.serving.step_replica import INF, cached_prompt_tokens
from tests.step_reference import simulate
from tests.stepkit import random_case, random_hits, random_model, run_fast

# linear(N) = N * 1e-5 s exactly (the knots lie on that line).
LINEAR_1E5 = {"tokens": [1, 100_001], "linear_s": [1e-5, 1.00001]}


@pytest.mark.parametrize("async_scheduling", [False, True])
@pytest.mark.parametrize("tight_kv", [False, True])
@pytest.mark.parametrize("overheads", ["per_token", "none"])
def test_fast_replica_matches_step_reference(tight_kv, overheads, async_scheduling):
    """With a per-input-token overhead a join may be ready before an earlier join (a
    shorter prompt), so the replica may run ahead only to where no later join can be
    ready; without overheads every join runs it ahead to the step it joins. With async
    scheduling a join is admitted one step later, and the replica runs ahead accordingly."""
    seen = {"chunked": 0, "preempted": 0, "prefix": 0, "hit": 0, "hit_preempted": 0}
    cases = 60 if overheads == "per_token" else 30
    for seed in range(cases):
        model, join, inp, out, groups, prefix = random_case(100 * seed + tight_kv, tight_kv,
                                                            async_scheduling)
        if overheads == "none":
            model = model.model_copy(update={"overheads": Overheads()})
        hits = random_hits(seed, groups)
        ref = simulate(model, join, inp, out, groups, prefix, hits=hits)
        first, end, pre, rep = run_fast(model, join, inp, out, groups, prefix, hits)
        np.testing.assert_allclose(first, ref.first_s, rtol=1e-9, atol=0)
        np.testing.assert_allclose(end, ref.end_s, rtol=1e-9, atol=0)
        np.testing.assert_array_equal(pre, ref.preemptions)
        assert rep.steps == ref.steps
        seen["chunked"] += int(np.any(inp > model.scheduler.max_num_batched_tokens))
        seen["preempted"] += int(pre.sum() > 0)
        seen["prefix"] += int(any(p >= model.scheduler.block_size for p in prefix))
        if hits is not None:
            # requests of no group whose share covers at least one whole block
            own = (groups < 0) & (hits * inp >= model.scheduler.block_size)
            seen["hit"] += int(own.any())
            seen["hit_preempted"] += int((pre[own] > 0).any())
    # The cases exercise what they are meant to (preemptions need the tight KV cache).
    assert seen["chunked"] > cases // 3 and seen["prefix"] > cases // 3
    assert (seen["preempted"] > cases // 6) == tight_kv
    assert seen["hit"] > cases // 2
    assert (seen["hit_preempted"] > 0) == tight_kv


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_first_token_tracking_replica_matches_step_reference(async_scheduling):
    """A replica that reports first tokens as they come (``track_first``, the SimPy
    server's) never runs ahead of its caller nor plans two-part segments: a join only cuts
    the planned segment. Same times as the reference (hit shares in two cases of three)."""
    for seed in range(20):
        rng = np.random.default_rng(700 + seed)
        model = random_model(rng, bool(seed % 2), async_scheduling)
        n = 30
        join = np.cumsum(rng.exponential(0.05, n))
        inp, out = rng.integers(1, 400, n), rng.integers(1, 120, n)
        keep = inp + out <= model.max_len_tokens
        join, inp, out = join[keep], inp[keep], out[keep]
        hits = random_hits(seed, np.full(join.size, -1))
        ref = simulate(model, join, inp, out, hits=hits)
        rep = StepReplica(model)
        rep.track_first = True
        seqs, i = [], 0
        while i < join.size or rep.wake_t < INF:
            if i < join.size and join[i] <= rep.wake_t:
                h = 0.0 if hits is None else float(hits[i])
                seqs.append(rep.add(i, float(join[i]), int(inp[i]), int(out[i]), -1, h))
                i += 1
            else:
                rep.end_segment()
                rep.replan()
        np.testing.assert_allclose([s.first_s for s in seqs], ref.first_s, rtol=1e-9, atol=0)
        np.testing.assert_allclose([s.end_s for s in seqs], ref.end_s, rtol=1e-9, atol=0)
        assert rep.steps == ref.steps


def _both(model, join, inp, out, groups=None, prefix=(), hits=None):
    ref = simulate(model, join, inp, out, groups, prefix, log=True, hits=hits)
    first, end, pre, rep = run_fast(model, join, inp, out, groups, prefix, hits)
    np.testing.assert_allclose(first, ref.first_s, rtol=1e-12)
    np.testing.assert_allclose(end, ref.end_s, rtol=1e-12)
    return first, end, pre, ref


def test_chunked_prefill_beside_twenty_decoders_by_hand():
    """A 5,000-token prompt joins while 20 requests decode, budget 2,048 tokens: its prefill
    takes ceil(5000 / (2048 - 20)) = 3 steps (chunks 2,028, 2,028, 944) and the 20 decoders
    produce one token each per step meanwhile (60 tokens)."""
    model = StepModel(max_num_seqs=32, kv_capacity_tokens=1_000_000,
                      scheduler={"max_num_batched_tokens": 2048, "watermark": 0.0},
                      step_time={"per_step_s": 0.01, **LINEAR_1E5})
    join = [0.0] * 20 + [0.005]  # the long prompt arrives during the first step
    inp = [16] * 20 + [5000]
    out = [1000] * 20 + [2000]
    first, end, _, ref = _both(model, join, inp, out)
    t1 = 0.01 + 320e-5  # step 1: the 20 prompts of 16 tokens
    full = 0.01 + 2048e-5  # steps 2 and 3: 20 decode tokens + a 2,028-token chunk
    last = 0.01 + (20 + 944) * 1e-5  # step 4: 20 decode tokens + the last 944
    assert first[20] == pytest.approx(t1 + 2 * full + last, rel=1e-12)
    chunks = [s[1] - 20 for s in ref.step_log[1:4]]
    assert chunks == [2028, 2028, 944]
    # Decoders: first token at step 1, then one per step: 3 more during the prefill, and
    # their 1,000th at step 1,000 (steps 5..1,000 hold 21 decoding sequences).
    assert np.allclose(first[:20], t1)
    decode = 0.01 + 21e-5
    assert np.allclose(end[:20], t1 + 2 * full + last + 996 * decode, rtol=1e-12)


def test_preemption_and_recompute_by_hand():
    """Two requests (8-token prompts, 8 output tokens) on 6 KV blocks of 4 tokens: both
    prefill in step 1 (2 blocks each) and take a third block at step 2; at step 6 the
    first needs a fourth block with none free, so the most recent (B) is preempted (its 3
    blocks freed). B's 13 tokens (prompt + 5 generated) need 4 blocks, which come back when
    A completes at step 8; B recomputes them in step 9 (emitting its 6th token) and ends at
    step 11."""
    model = StepModel(max_num_seqs=2, kv_capacity_tokens=24,
                      scheduler={"max_num_batched_tokens": 64, "block_size": 4, "watermark": 0.0},
                      step_time={"per_step_s": 0.01, "tokens": [1, 1001],
                                 "linear_s": [0.001, 1.001]},
                      overheads={"post_s": 0.5})
    first, end, pre, ref = _both(model, [0.0, 0.0], [8, 8], [8, 8])
    s1, s2, s1tok = 0.026, 0.012, 0.011  # 16 tokens, 2 tokens, 1 token
    assert list(pre) == [0, 1]
    assert first[0] == pytest.approx(s1) and first[1] == pytest.approx(s1)
    a_end = s1 + 4 * s2 + 3 * s1tok  # steps 2-5 with both, 6-8 with A alone
    assert end[0] == pytest.approx(a_end + 0.5, rel=1e-12)
    assert end[1] == pytest.approx(a_end + 0.023 + 2 * s1tok + 0.5, rel=1e-12)
    assert [s[1] for s in ref.step_log] == [16, 2, 2, 2, 2, 1, 1, 1, 13, 1, 1]


def test_prefix_cache_hit_by_hand():
    """A 64-token shared prefix (4 blocks of 16): B joins while A (same group) decodes, so
    B prefills only 100 - 64 = 36 tokens; a request of another group prefills all 100."""
    model = StepModel(max_num_seqs=8, kv_capacity_tokens=16_000,
                      scheduler={"max_num_batched_tokens": 2048, "watermark": 0.0},
                      step_time={"per_step_s": 0.01, "tokens": [1, 10_001],
                                 "linear_s": [1e-4, 1.0001]})
    t1 = 0.01 + 100e-4  # step 1: A's 100 prompt tokens
    t2 = 0.01 + 1e-4  # step 2: A decodes; B joins at 0.025, during it
    for groups, b_tokens in (([0, 0], 36), ([0, 1], 100)):
        first, _, _, ref = _both(model, [0.0, 0.025], [100, 100], [50, 5], groups=groups,
                                 prefix=[64, 64])
        assert first[1] == pytest.approx(t1 + t2 + 0.01 + (1 + b_tokens) * 1e-4, rel=1e-12)
        assert ref.step_log[2][1] == 1 + b_tokens


def test_hit_share_by_hand():
    """A 1,000-token prompt with hit share 0.5, blocks of 16, budget 256: 16 x floor(500 /
    16) = 496 tokens are cached, so the prefill computes 504 in 2 steps (256 + 248, at
    offsets 496 and 752: 256 x 496 + 256 x 257 / 2 = 159,872 and 248 x 752 + 248 x 249 / 2
    = 217,372 attention pairs) instead of 4 (256, 256, 256, 232). The request still holds
    ceil(1000 / 16) = 63 blocks: on a cache of 64 blocks a second such request (47 blocks
    for its first chunk) waits for the first to complete, as without the hit."""
    model = StepModel(max_num_seqs=4, kv_capacity_tokens=64 * 16,
                      scheduler={"max_num_batched_tokens": 256, "block_size": 16,
                                 "watermark": 0.0},
                      step_time={"per_step_s": 0.01, **LINEAR_1E5,
                                 "prefill_attention_s_per_token2": 1e-8})
    for cls in (StepReplica, step_replica.StepReplica):  # compiled (if built) and Python
        rep = cls(model)
        a = rep.add("A", 0.0, 1000, 5, -1, 0.5)
        assert a.hit == 496
        rep.end_segment()  # idle until A is ready (at once: no overheads)
        rep.replan()  # plans A's first step, silent: runs it at once (see settle)
        assert rep.steps == 1
        assert rep.kv_used_blocks == 47  # its 31 cached blocks + 16 for its first chunk
    s1 = 0.01 + 256e-5 + 159_872e-8
    s2 = 0.01 + 248e-5 + 217_372e-8
    dec = 0.01 + 1e-5
    join, inp, out, hits = [0.0, 0.0], [1000, 1000], [5, 5], [0.5, 0.5]
    first, end, _, ref = _both(model, join, inp, out, hits=hits)
    assert [x[1] for x in ref.step_log[:2]] == [256, 248]
    assert [x[4] for x in ref.step_log[:2]] == [159_872, 217_372]
    assert first[0] == pytest.approx(s1 + s2, rel=1e-12)
    assert end[0] == pytest.approx(s1 + s2 + 4 * dec, rel=1e-12)
    # B: the same two prefill steps, from A's completion (63 + 47 blocks > 64)
    assert first[1] == pytest.approx(end[0] + s1 + s2, rel=1e-12)
    # Without the hit: 4 full-prompt steps (pairs from offset 0, 256, 512, 768).
    first0, *_ = _both(model, join, inp, out)
    pairs = [256 * 257 // 2 + 256 * o for o in (0, 256, 512)] + [232 * 233 // 2 + 232 * 768]
    no_hit = 0.04 + 1000e-5 + 1e-8 * sum(pairs)
    assert first0[0] == pytest.approx(no_hit, rel=1e-12)
    # A share whose whole blocks are none (h x P < 16) or all but the last token (h = 1)
    for h, cached in ((0.01, 0), (1.0, 992), (0.0, 0)):
        assert cached_prompt_tokens(h, 1000, 16) == cached
    assert cached_prompt_tokens(1.0, 1024, 16) == 1008  # vLLM recomputes the last token
    assert cached_prompt_tokens(0.1, 160, 16) == 16  # not lost to 0.1 x 160 round-off


def test_async_scheduling_admits_one_step_later_by_hand():
    """vLLM --async-scheduling: the step at a boundary was scheduled when the step before it
    started. A (100-token prompt) starts at once on the idle replica (step 1, 0 - 0.011 s);
    B, ready at 0.005 during step 1, misses step 2 (scheduled at 0) and prefills in step
    3; without async it prefills in step 2. Steps: 0.01 s + 1e-5 s per token."""
    def model(asynch: bool) -> StepModel:
        return StepModel(max_num_seqs=8, kv_capacity_tokens=100_000,
                         scheduler={"max_num_batched_tokens": 2048, "watermark": 0.0,
                                    "async_scheduling": asynch},
                         step_time={"per_step_s": 0.01, **LINEAR_1E5})
    s1, dec, dec_pre = 0.01 + 100e-5, 0.01 + 1e-5, 0.01 + 101e-5  # A's prefill; 1; 1 + 100
    for asynch, b_first in ((False, s1 + dec_pre), (True, s1 + dec + dec_pre)):
        first, end, _, ref = _both(model(asynch), [0.0, 0.005], [100, 100], [50, 5])
        assert first[0] == pytest.approx(s1, rel=1e-12)  # idle: A starts at once
        assert first[1] == pytest.approx(b_first, rel=1e-12)
        b_step = 2 if not asynch else 3
        assert [s[1] for s in ref.step_log[:b_step]] == [100] + [1] * (b_step - 2) + [101]
    # A request ready during step n of a busy replica runs in step n+2: C, ready at 0.015
    # during step 2 (0.011 - 0.02101), prefills in step 4 (step 3 was scheduled at 0.011).
    first, _, _, ref = _both(model(True), [0.0, 0.015], [100, 100], [50, 5])
    assert first[1] == pytest.approx(s1 + 2 * dec + dec_pre, rel=1e-12)
    assert [s[1] for s in ref.step_log[:4]] == [100, 1, 1, 101]
    # The step scheduled at 0.011 is empty when A (2 output tokens) ends in step 2: the
    # engine schedules again when step 2 ends, so D (ready during step 2) starts then, as
    # without async; and E, ready long after, starts at once on the idle replica.
    for asynch in (False, True):
        first, end, _, _ = _both(model(asynch), [0.0, 0.015, 1.0], [100, 100, 100], [2, 5, 5])
        assert end[0] == pytest.approx(s1 + dec, rel=1e-12)
        assert first[1] == pytest.approx(s1 + dec + s1, rel=1e-12)
        assert first[2] == pytest.approx(1.0 + s1, rel=1e-12)


def _pk_service_s(st: StepTime, inp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Service time of a request alone on a replica (prompt <= budget: one prefill step,
    then out - 1 decode steps whose context grows by one token each)."""
    pre = np.array([st.step_s(p, 1, 0, p * (p + 1) / 2) for p in inp])
    one = st.step_s(1, 1, 0, 0)  # a decode step without its attention term
    d = out - 1
    return pre + d * one + st.decode_attention_s_per_token * (d * inp + d * (d + 1) / 2)


def test_single_sequence_replica_is_mg1_pollaczek_khinchine():
    """max_num_seqs = 1, Poisson arrivals, lengths uniform: an M/G/1 FCFS queue. The mean
    wait (ready -> first step) is lambda E[S^2] / (2 (1 - rho)), with E[S], E[S^2] exact
    over the length grid. Ten replications (fixed seeds), within 4 standard errors."""
    model = StepModel(max_num_seqs=1, kv_capacity_tokens=100_000,
                      scheduler={"max_num_batched_tokens": 512},
                      step_time={"per_step_s": 0.002, "tokens": [1, 512], "linear_s": [1e-4, 0.01],
                                 "per_seq_s": 1e-4, "decode_attention_s_per_token": 1e-6,
                                 "prefill_attention_s_per_token2": 1e-8},
                      overheads={"pre_s": 0.02, "pre_s_per_input_token": 0.0, "post_s": 0.01})
    p_grid, o_grid = np.arange(1, 401), np.arange(1, 61)
    pp, oo = np.meshgrid(p_grid, o_grid)
    s_all = _pk_service_s(model.step_time, pp.ravel(), oo.ravel())
    es, es2 = s_all.mean(), (s_all**2).mean()
    lam = 0.7 / es
    expected = lam * es2 / (2 * (1 - lam * es))
    n, waits = 6000, []
    for r in range(10):
        rng = np.random.default_rng(500 + r)
        join = np.cumsum(rng.exponential(1 / lam, n))
        inp = rng.integers(1, 401, n)
        out = rng.integers(1, 61, n)
        _, end, _, _ = run_fast(model, join, inp, out)
        service = _pk_service_s(model.step_time, inp, out)
        wait = (end - model.overheads.post_s) - (join + model.overheads.pre_s) - service
        assert wait.min() > -1e-9
        waits.append(wait[n // 10:].mean())
    waits = np.asarray(waits)
    se = waits.std(ddof=1) / np.sqrt(waits.size)
    assert abs(waits.mean() - expected) <= 4 * se, (waits.mean(), expected, se)


@pytest.mark.parametrize("async_scheduling", [False, True])
def test_segments_per_request_do_not_grow_with_output_length(async_scheduling):
    """Wake-ups (segments of identical steps) per request stay bounded when every output is
    ten times longer (same arrivals: ten times the concurrency): decoding is counted, not
    stepped. A request costs at most about four segment ends (the boundary after it becomes
    ready, its admission step, the last chunk of a long prompt, its completion); a busier
    replica shares fewer of them, hence a small rise, not a tenfold one. Async scheduling
    moves the boundary a join ends a segment at, not how many there are."""
    model = StepModel(max_num_seqs=64, kv_capacity_tokens=2_000_000,
                      scheduler={"max_num_batched_tokens": 2048,
                                 "async_scheduling": async_scheduling},
                      step_time={"per_step_s": 0.005, **LINEAR_1E5,
                                 "decode_attention_s_per_token": 1e-8})
    rng = np.random.default_rng(3)
    n = 2000
    inp = rng.integers(50, 3000, n)
    out = rng.integers(20, 200, n)
    per_request = []
    join = np.cumsum(rng.exponential(0.05, n))
    steps = []
    for scale in (1, 10):
        *_, rep = run_fast(model, join, inp, out * scale)
        per_request.append(rep.segments / n)
        steps.append(rep.steps / n)
    assert steps[1] > 2 * steps[0]  # the steps did grow with the outputs (shared by more)
    assert per_request[1] <= 1.5 * per_request[0], per_request
    assert max(per_request) <= 4.5, per_request


def test_run_time_closed_forms():
    first, growth = 0.013, 2.5e-5
    times = first + growth * np.arange(5000)
    ends = np.cumsum(times)
    for n in (0, 1, 7, 4999):
        assert run_time_s(n, first, growth) == pytest.approx(ends[n - 1] if n else 0.0,
                                                             rel=1e-12)
    for x in (0.0, 0.012, 0.013, 1.0, float(ends[100]), 150.0):
        assert steps_ending_by(x, first, growth) == int(np.searchsorted(ends, x, "right"))


def test_step_time_knots_and_validation():
    st = StepTime(per_step_s=0.001, tokens=[1, 100, 1000], linear_s=[0.002, 0.004, 0.022])
    assert st.linear(0.5) == 0.002 and st.linear(1) == 0.002
    assert st.linear(50.5) == pytest.approx(0.003)
    assert st.linear(2000) == pytest.approx(0.042)  # last segment's slope, extended
    with pytest.raises(ValueError, match="same length"):
        StepTime(tokens=[1, 2], linear_s=[0.1])
    with pytest.raises(ValueError, match="less time"):
        StepTime(tokens=[1, 2], linear_s=[0.2, 0.1])
    with pytest.raises(ValueError, match="below max_num_seqs"):
        StepModel(max_num_seqs=64, kv_capacity_tokens=1000,
                  scheduler={"max_num_batched_tokens": 32})
    with pytest.raises(ValueError, match="must take time"):
        StepModel(kv_capacity_tokens=1000)
    with pytest.raises(ValueError, match="extra"):
        StepModel(kv_capacity_tokens=1000, step_time={"per_step_s": 1, "typo": 1})


@pytest.mark.parametrize("core", ["python", "in use"])
def test_linear_tables_of_drawn_step_times_are_not_kept_forever(core):
    """Each replication with profile uncertainty builds its replicas from a new drawn step
    time; the per-profile linear(N) tables must not pile up in a long-lived worker."""
    from sim.profiles.steptime import scaled_model
    from sim.serving import step_core

    module = step_replica if core == "python" else step_core._module
    base = random_model(np.random.default_rng(3), tight_kv=False)
    kept = []
    for i in range(200):
        model = scaled_model(base, {"linear_s": 1.0 + i / 1000})
        rep = module.StepReplica(model)
        kept.append(model)  # alive: no id is reused, every table is new
        assert rep.wake_t == INF
    assert len(module._LINEAR) <= module._LINEAR_KEPT
    # the newest table is the one served
    assert module._linear_table(kept[-1].step_time, 8)[8] == kept[-1].step_time.linear(8)

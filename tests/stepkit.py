"""Helpers for the step-replica tests: randomized cases, and one fast step replica driven
over given joins."""

from __future__ import annotations

import numpy as np

from sim.profiles.steptime import StepModel
from sim.serving.step_core import StepReplica
from sim.serving.step_replica import INF


def run_fast(model: StepModel, join_s, input_tokens, output_tokens, groups=None,
             prefix_tokens=(), hits=None, cls=StepReplica):
    """(first_s, end_s, preemptions, replica) for requests joining one replica of class
    ``cls`` (the core in use by default), with a hit share per request if ``hits``."""
    join_s = np.asarray(join_s, float)
    n = join_s.size
    rep = cls(model, list(prefix_tokens))
    seqs = [None] * n
    order = np.argsort(join_s, kind="stable")
    i = 0
    while i < n or rep.wake_t < INF:
        t_join = join_s[order[i]] if i < n else INF
        if t_join <= rep.wake_t:
            j = int(order[i])
            g = -1 if groups is None else int(groups[j])
            h = 0.0 if hits is None else float(hits[j])
            seqs[j] = rep.add(j, t_join, int(input_tokens[j]), int(output_tokens[j]), g, h)
            i += 1
        else:
            rep.end_segment()
            rep.replan()
    first = np.array([s.first_s for s in seqs])
    end = np.array([s.end_s for s in seqs])
    pre = np.array([s.preemptions for s in seqs])
    return first, end, pre, rep


def figures(cls, model, join, inp, out, groups, prefix, hits=None):
    """Every figure the engine reads from a replica of class ``cls`` over a case, per
    request and per replica (for comparing the compiled core with the Python model)."""
    first, end, pre, rep = run_fast(model, join, inp, out, groups, prefix, hits, cls)
    return (first.tolist(), end.tolist(), pre.tolist(),
            (rep.steps, rep.segments, rep.wakes, rep.preemptions, rep.busy_s))


def random_model(rng: np.random.Generator, tight_kv: bool,
                 async_scheduling: bool = False) -> StepModel:
    """A small replica: a few sequences, a small budget, 4- or 16-token blocks, a tight
    KV cache (preemptions) if ``tight_kv``, and every overhead."""
    bs = int(rng.choice([4, 16]))
    return StepModel(
        max_num_seqs=int(rng.integers(1, 9)),
        kv_capacity_tokens=int(rng.integers(20, 200)) * bs if tight_kv else 100_000,
        scheduler={"max_num_batched_tokens": int(rng.integers(8, 300)), "block_size": bs,
                   "watermark": float(rng.choice([0.0, 0.01, 0.05])), "max_model_len": 100_000,
                   "async_scheduling": async_scheduling},
        step_time={"per_step_s": 0.003, "tokens": [1, 64, 512], "linear_s": [0.001, 0.002, 0.01],
                   "per_seq_s": 1e-4, "decode_attention_s_per_token": 1e-6,
                   "prefill_attention_s_per_token2": 1e-8},
        overheads={"pre_s": 0.01, "pre_s_per_input_token": 1e-5, "post_s": 0.002})


def random_case(seed: int, tight_kv: bool, async_scheduling: bool = False):
    """(model, join_s, input, output, groups, prefix_tokens): 40 Poisson joins (those
    that fit max_model_len), prompts of 1-399 tokens, three prefix groups."""
    rng = np.random.default_rng(seed)
    model = random_model(rng, tight_kv, async_scheduling)
    n = 40
    join = np.cumsum(rng.exponential(0.05, n))
    inp, out = rng.integers(1, 400, n), rng.integers(1, 120, n)
    keep = inp + out <= model.max_len_tokens  # longer ones are refused before a replica
    groups = rng.integers(-1, 3, int(keep.sum()))
    prefix = [int(x) for x in rng.integers(0, 100, 3)]
    return model, join[keep], inp[keep], out[keep], groups, prefix


def random_hits(seed: int, groups: np.ndarray) -> np.ndarray | None:
    """Hit shares for a randomized case (its own generator, so the case's other draws
    are those it had before hit shares existed): none in a third of the cases, else
    about half the requests with one (0 to 1, block-boundary values among them)."""
    rng = np.random.default_rng(50_000 + seed)
    if seed % 3 == 0:
        return None
    n = groups.size
    shares = rng.choice([0.05, 0.25, 0.5, 0.8, 0.97, 1.0, float(rng.random())], n)
    return np.where(rng.random(n) < 0.5, shares, 0.0)

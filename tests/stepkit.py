"""Helpers for the step-replica tests: drive one fast step replica over given joins."""

from __future__ import annotations

import numpy as np

from sim.profiles.steptime import StepModel
from sim.serving.step_core import StepReplica
from sim.serving.step_replica import INF


def run_fast(model: StepModel, join_s, input_tokens, output_tokens, groups=None,
             prefix_tokens=()):
    """(first_s, end_s, preemptions, replica) for requests joining one replica."""
    join_s = np.asarray(join_s, float)
    n = join_s.size
    rep = StepReplica(model, list(prefix_tokens))
    seqs = [None] * n
    order = np.argsort(join_s, kind="stable")
    i = 0
    while i < n or rep.wake_t < INF:
        t_join = join_s[order[i]] if i < n else INF
        if t_join <= rep.wake_t:
            j = int(order[i])
            g = -1 if groups is None else int(groups[j])
            seqs[j] = rep.add(j, t_join, int(input_tokens[j]), int(output_tokens[j]), g)
            i += 1
        else:
            rep.end_segment()
            rep.replan()
    first = np.array([s.first_s for s in seqs])
    end = np.array([s.end_s for s in seqs])
    pre = np.array([s.preemptions for s in seqs])
    return first, end, pre, rep

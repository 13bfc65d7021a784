"""Engine.run raises the cyclic GC's young-generation threshold for the run only.

The hot loop allocates short-lived tuples by the million; a run raises the youngest
generation's threshold (see ``sim.serving.engine._YOUNG_GC_THRESHOLD``) and must give the
caller's settings back afterwards, also when the run raises, and must not switch on a
collector that the caller switched off with a zero threshold.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest

from sim.serving.engine import _YOUNG_GC_THRESHOLD, Engine, StreamPolicy
from sim.serving.replica import ReplicaSpec
from sim.workload.requests import RequestBlock

SPEC = ReplicaSpec(rate_table=[0.0, 1.0, 0.9], max_batch=2)


def _blocks(n: int = 50):
    arrival = np.arange(n, dtype=float)
    return [RequestBlock.from_arrays(arrival, np.zeros(n), np.full(n, 3.0))]


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_threshold_is_raised_during_the_run_and_restored(thresholds):
    gc.set_threshold(700, 11, 12)
    seen = []
    eng = Engine(replicas=2, spec=SPEC, streams=[StreamPolicy()])
    totals = eng.run(_blocks(), lambda fb: seen.append(gc.get_threshold()))
    assert totals.served_gpu == 50
    assert seen == [(_YOUNG_GC_THRESHOLD, 11, 12)]
    assert gc.get_threshold() == (700, 11, 12)


def test_threshold_is_restored_when_the_run_raises(thresholds):
    gc.set_threshold(700, 10, 10)

    def boom(fb):
        raise RuntimeError("consumer failed")

    eng = Engine(replicas=1, spec=SPEC, streams=[StreamPolicy()])
    with pytest.raises(RuntimeError, match="consumer failed"):
        eng.run(_blocks(), boom)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_disabled_collector_stays_disabled(thresholds):
    gc.set_threshold(0, 10, 10)
    seen = []
    eng = Engine(replicas=1, spec=SPEC, streams=[StreamPolicy()])
    eng.run(_blocks(), lambda fb: seen.append(gc.get_threshold()[0]))
    assert seen == [0]
    assert gc.get_threshold() == (0, 10, 10)

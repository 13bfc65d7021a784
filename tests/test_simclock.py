"""SimPy's private fields that the engine drives (sim.serving.simclock) are still there.

If a SimPy release moves ``Environment._queue``, ``_eid`` or ``_now`` or changes how an
event is processed, these tests fail with the SimPy version in the message, before any
simulation gives wrong numbers quietly.
"""

from __future__ import annotations

import itertools
from importlib import metadata

import pytest
import simpy

from sim.serving import simclock


def test_installed_simpy_is_in_the_pinned_range():
    major, minor = (int(x) for x in metadata.version("simpy").split(".")[:2])
    assert (4, 1) <= (major, minor) < (5, 0)


def test_check_passes_on_the_installed_simpy():
    simclock.check_simpy()


def test_fields_have_the_expected_types():
    env = simpy.Environment(initial_time=2)
    queue, ids = simclock.calendar(env)
    assert queue is env._queue and isinstance(queue, list)
    assert isinstance(ids, itertools.count)
    simclock.set_now(env, 7.25)
    assert env.now == 7.25


def test_hand_built_events_keep_simpy_order():
    """Entries at one time run in scheduling order, mixed with SimPy's own timeouts."""
    env = simpy.Environment()
    seen: list[str] = []
    queue, ids = simclock.calendar(env)
    queue.append((1.0, simclock.NORMAL, next(ids),
                  simclock.triggered_event(env, lambda e: seen.append(e.value), "a")))
    env.timeout(1.0, value="b").callbacks.append(lambda e: seen.append(e.value))
    env.run()
    assert seen == ["a", "b"] and env.now == 1.0


def test_a_changed_simpy_fails_loudly(monkeypatch):
    monkeypatch.setattr(simclock, "ENVIRONMENT_FIELDS",
                        {**simclock.ENVIRONMENT_FIELDS, "_calendar": list})
    with pytest.raises(simclock.SimpyChanged, match="simpy .*_calendar"):
        simclock.check_simpy()

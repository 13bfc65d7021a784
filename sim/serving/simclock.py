"""The one place capsim touches SimPy's private fields (``simpy>=4.1,<5``).

What it models: the engine (:mod:`sim.serving.engine`) runs SimPy's calendar itself rather
than through ``Environment.run``, to push bare ``(t, priority, id, replica)`` entries for
replica wake-ups and to build triggered events at an absolute time (``env.timeout(t -
now)`` would round ``now + (t - now)``). For that it needs, beyond SimPy's public API:

* ``Environment._queue`` (the heap of ``(time, priority, id, event)``), ``_eid`` (the id
  counter that orders entries scheduled at one time) and ``_now`` (the clock, written by
  the engine's loop before it handles an arrival or a wake-up: that store is inlined
  there, a call per event being measurable; every other write goes through
  :func:`set_now`);
* an ``Event``'s ``env``, ``callbacks``, ``_ok`` and ``_value`` (a triggered event).

SimPy events themselves are processed with the public ``Environment.step``.
:func:`check_simpy` verifies all of this against the installed SimPy when this module is
imported, and fails loudly (naming the SimPy version) if a field moved; the pin
``simpy>=4.1,<5`` in pyproject.toml keeps installs within the versions it was written for,
and ``tests/test_simclock.py`` runs the check.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import simpy
from simpy.core import NORMAL
from simpy.events import Event

__all__ = ["NORMAL", "ENVIRONMENT_FIELDS", "EVENT_FIELDS", "calendar", "set_now",
           "triggered_event", "check_simpy", "SimpyChanged"]

ENVIRONMENT_FIELDS = {"_queue": list, "_eid": itertools.count, "_now": float | int}
"""Private fields of ``simpy.Environment`` the engine uses, with their types."""
EVENT_FIELDS = ("env", "callbacks", "_ok", "_value")
"""Fields of a triggered ``simpy.Event`` the engine sets."""

_new_event = object.__new__


class SimpyChanged(RuntimeError):
    """The installed SimPy no longer has the private fields the engine drives."""


def calendar(env: simpy.Environment) -> tuple[list[tuple[Any, ...]], Iterator[int]]:
    """SimPy's event heap and its id counter (entries are ``(t, priority, id, event)``)."""
    return env._queue, env._eid


def set_now(env: simpy.Environment, t: float) -> None:
    """Move SimPy's clock to ``t`` (the engine's loop, and only it, advances time)."""
    env._now = t


def triggered_event(env: simpy.Environment, callback: Callable[[Event], None],
                    value: object) -> Event:
    """A successful ``Event`` with one callback and ``value``, not yet scheduled (the
    caller pushes it onto the :func:`calendar`)."""
    ev = _new_event(Event)
    ev.env = env
    ev.callbacks = [callback]
    ev._ok = True
    ev._value = value
    return ev


def check_simpy() -> None:
    """Raise :class:`SimpyChanged` unless SimPy has every field listed above, with the
    expected types, and processes a hand-built event like its own."""
    version = getattr(simpy, "__version__", "unknown")
    env = simpy.Environment()
    for name, kind in ENVIRONMENT_FIELDS.items():
        if not isinstance(getattr(env, name, None), kind):
            raise SimpyChanged(f"simpy {version}: Environment.{name} is missing or not a "
                               f"{kind}; capsim's engine needs simpy>=4.1,<5 "
                               "(see sim.serving.simclock)")
    seen: list[object] = []
    ev = triggered_event(env, lambda e: seen.append(e.value), "ok")
    queue, ids = calendar(env)
    queue.append((1.5, NORMAL, next(ids), ev))
    env.step()
    if seen != ["ok"] or env.now != 1.5 or ev.callbacks is not None or not ev.processed:
        raise SimpyChanged(f"simpy {version}: a hand-built event was not processed like "
                           "SimPy's own; capsim's engine needs simpy>=4.1,<5 "
                           "(see sim.serving.simclock)")
    missing = [f for f in EVENT_FIELDS if not hasattr(ev, f)]
    if missing:
        raise SimpyChanged(f"simpy {version}: Event has no {', '.join(missing)}")


check_simpy()

"""An idiomatic SimPy M/M/c model, the yardstick for the engine's speed.

This is how M/M/c is usually written in SimPy: a source process creates one process per
customer, and each customer requests a slot of a ``simpy.Resource(capacity=c)``, records
its wait and holds the slot for its service time. Arrival times and service times come
from the same pre-drawn arrays the engine gets, so both models see identical traffic.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import simpy

__all__ = ["SimpyResult", "run_simpy_mmc"]


@dataclass
class SimpyResult:
    wait_s: np.ndarray  # time in queue of every customer
    elapsed_s: float  # wall-clock seconds of env.run()
    events: int | None  # SimPy events scheduled (None if the counter is not reachable)


def _customer(env: simpy.Environment, servers: simpy.Resource, arrival_s: float,
              service_s: float, wait_s: list[float], i: int) -> Generator:
    with servers.request() as req:
        yield req
        wait_s[i] = env.now - arrival_s
        yield env.timeout(service_s)


def _source(env: simpy.Environment, servers: simpy.Resource, arrival_s: list[float],
            service_s: list[float], wait_s: list[float]) -> Generator:
    for i, t in enumerate(arrival_s):
        yield env.timeout(t - env.now)
        env.process(_customer(env, servers, t, service_s[i], wait_s, i))


def run_simpy_mmc(arrival_s: np.ndarray, service_s: np.ndarray, servers: int) -> SimpyResult:
    """Simulate FCFS M/M/c on the given arrivals (sorted) and service times."""
    arrivals = np.asarray(arrival_s, np.float64).tolist()
    services = np.asarray(service_s, np.float64).tolist()
    wait = [float("nan")] * len(arrivals)
    env = simpy.Environment()
    resource = simpy.Resource(env, capacity=servers)
    env.process(_source(env, resource, arrivals, services, wait))
    t0 = time.perf_counter()
    env.run()
    elapsed = time.perf_counter() - t0
    eid = getattr(env, "_eid", None)  # SimPy's event id counter: events scheduled so far
    events = next(eid) if eid is not None else None
    return SimpyResult(np.asarray(wait), elapsed, events)

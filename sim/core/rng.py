"""Named random streams derived from one root seed.

There is no global random state. Every consumer asks for a generator by a path of names
(``stream(root, "workload", "chat")``); the path is hashed into the SeedSequence spawn key,
so a stream's numbers depend only on the root seed, the replication and its own name.
Adding a workload stream, changing the fleet or the router never changes another stream's
draws: this gives common random numbers across sweep points for free.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["stream", "replication_seeds", "name_key"]


def name_key(name: str | int) -> int:
    """A stable 32-bit integer for a stream name (Python's hash() is salted per process)."""
    if isinstance(name, int):
        return name
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little")


def replication_seeds(root_seed: int, replications: int) -> list[np.random.SeedSequence]:
    """One independent SeedSequence per replication (SeedSequence.spawn of the root)."""
    return np.random.SeedSequence(root_seed).spawn(replications)


def stream(seed: np.random.SeedSequence | int, *names: str | int) -> np.random.Generator:
    """A Generator for the stream named by ``names`` under ``seed``."""
    if isinstance(seed, int):
        seed = np.random.SeedSequence(seed)
    key = tuple(seed.spawn_key) + tuple(name_key(n) for n in names)
    child = np.random.SeedSequence(seed.entropy, spawn_key=key)
    return np.random.Generator(np.random.PCG64(child))

"""Requests as data: a block of requests is a struct of numpy arrays.

The workload stage produces :class:`RequestBlock` objects (arrivals sorted in time, one
block per generation window, blocks in time order); the engine consumes them. A request
is never a SimPy process: it is an index into these arrays.

A closed loop of clients (``arrivals: {kind: concurrency}``) cannot be generated ahead: the
engine takes it as a :class:`ClientSource`, whose :meth:`ClientSource.draw` gives one
client's next chunk of requests (arrival times left NaN for the engine to write) and
think times. This module stays light (numpy only): the engine imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["RequestBlock", "concat_blocks", "ClientSource", "MIN_CYCLE_S"]

MIN_CYCLE_S = 1e-3
"""The shortest time between two requests of one closed-loop client."""


@dataclass(frozen=True)
class RequestBlock:
    """Requests arriving in one window, sorted by ``arrival_s``.

    ``class_id`` indexes the workload's ``class_names``; ``stream_id`` indexes its streams.
    Token counts are float64 so the engine can also take continuous (e.g. exponential)
    lengths in theory tests; generated workloads hold whole numbers.
    """

    arrival_s: np.ndarray  # float64, seconds from the start of the horizon
    input_tokens: np.ndarray  # float64
    output_tokens: np.ndarray  # float64
    class_id: np.ndarray  # int16
    stream_id: np.ndarray  # int16

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @staticmethod
    def empty() -> RequestBlock:
        f, i = np.empty(0, np.float64), np.empty(0, np.int16)
        return RequestBlock(f, f.copy(), f.copy(), i, i.copy())

    @staticmethod
    def from_arrays(arrival_s, input_tokens, output_tokens, class_id=None,
                    stream_id=None) -> RequestBlock:
        """Build a block (sorting by arrival, stable) from array-likes."""
        a = np.asarray(arrival_s, np.float64)
        n = a.shape[0]
        cls = np.zeros(n, np.int16) if class_id is None else np.asarray(class_id, np.int16)
        sid = np.zeros(n, np.int16) if stream_id is None else np.asarray(stream_id, np.int16)
        order = np.argsort(a, kind="stable")
        return RequestBlock(a[order], np.asarray(input_tokens, np.float64)[order],
                            np.asarray(output_tokens, np.float64)[order], cls[order], sid[order])


def concat_blocks(blocks: list[RequestBlock]) -> RequestBlock:
    """One block from several consecutive blocks (order preserved)."""
    if not blocks:
        return RequestBlock.empty()
    return RequestBlock(*(np.concatenate([getattr(b, f) for b in blocks]) for f in
                          ("arrival_s", "input_tokens", "output_tokens", "class_id", "stream_id")))


class ClientSource(Protocol):
    """A closed loop of ``clients`` clients (one workload stream) as the engine sees it."""

    name: str
    clients: int
    horizon_s: float
    """No client sends a request at or after this time."""

    def draw(self, client: int, k: int) -> tuple[RequestBlock, np.ndarray]:
        """Client ``client``'s ``k``-th chunk of requests (``arrival_s`` NaN) and the think
        time after each, in seconds."""
        ...

"""Case ``instructions``: CPU instructions per request, counted by Valgrind (noise-free).

Wall-clock rates on a shared machine move by tens of percent from one minute to the next;
instruction counts do not. A child process draws a model's requests, then makes exactly
one call of the simulation through ``operator.call``; it runs under ``valgrind
--tool=callgrind --collect-atstart=no --toggle-collect=_operator_call``, so only the
instructions executed inside that call are counted (interpreter start-up, imports and
drawing the traffic are not), and the count is the same on every run. Nothing in the
simulator calls ``operator.call`` (a nested call would switch counting off).
Counted: the ``fleet-scale`` engine run (:mod:`benchmarks.fleet`) on 16 and 1,024
replicas (16 only with --quick), where a ratio near 1 says a large fleet does the same
work per request, so any extra time there is the memory hierarchy (a working set larger
than the caches), not the algorithm; and the ``mm8`` model (:mod:`benchmarks.mm8`),
engine and SimPy baseline, for a noise-free version of its speed-up. Each count includes
building the model (engine or SimPy processes) from the drawn arrays. Without Valgrind
the case reports n/a.

``python -m benchmarks.instructions REPLICAS|mm8|simpy N`` is the child run (prints
nothing useful).
"""

from __future__ import annotations

import operator
import os
import re
import shutil
import subprocess
import sys

from .common import ROOT, Settings
from .fleet import _spec, draw, run_once
from .report import Row, check
from .scenario import Unavailable

__all__ = ["run", "instructions"]

CASE = "instructions"
SIZES = (16, 1024)
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
_MARK = "_operator_call"  # the C function behind operator.call: counting is on inside it


def instructions(model: int | str, n: int) -> int:
    """Instructions executed by the simulation call of ``n`` requests of ``model`` (a
    fleet size, ``"mm8"`` or ``"simpy"``), in a child process under callgrind."""
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--toggle-collect={_MARK}",
         "--callgrind-out-file=/dev/null",
         sys.executable, "-m", "benchmarks.instructions", str(model), str(n)],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"})  # the same dict layouts in every run
    m = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or m is None or int(m.group(1)) == 0:
        raise RuntimeError(f"valgrind run failed (rc {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return int(m.group(1))


def run(settings: Settings) -> list[Row]:
    if shutil.which("valgrind") is None:
        raise Unavailable("valgrind is not installed")
    n = settings.pick(20_000, 5_000)
    sizes = settings.pick(SIZES, SIZES[:1])  # a Valgrind run takes 30-90 s
    note = f"{n:,} requests under callgrind, the simulation call only"
    per_request = {}
    rows = []
    for size in sizes:
        per_request[size] = _per_request(size, n)
        rows.append(Row(CASE, f"{size:,} replicas", per_request[size], "instr/request",
                        note=f"engine only; {note}"))
    if len(sizes) > 1:
        rows.append(Row(CASE, "instr/request 1,024 / 16 replicas",
                        per_request[1024] / per_request[16], "x",
                        note="compare fleet-scale's time ratio: the rest is memory"))
    engine, simpy = _per_request("mm8", n), _per_request("simpy", n)
    rows += [Row(CASE, "M/M/8 engine", engine, "instr/request", note=note),
             Row(CASE, "M/M/8 SimPy baseline", simpy, "instr/request", note=note),
             check(CASE, "M/M/8 SimPy / engine", simpy / engine, "x", ge=3.0,
                   note="mm8's speed-up, counted instead of timed")]
    return rows


def _per_request(model: int | str, n: int) -> float:
    return instructions(model, n) / n


def _child(argv: list[str]) -> int:
    model, n = argv[0], int(argv[1])
    if model in ("mm8", "simpy"):
        import sim.serving.engine  # noqa: F401  (imported here, not inside the counted call)
        import sim.serving.replica  # noqa: F401
        import sim.workload.requests  # noqa: F401

        from .mm8 import _simpy_once, run_engine
        from .mm8 import draw as draw_mm8

        arrival_s, service_s = draw_mm8(n)
        operator.call(run_engine if model == "mm8" else _simpy_once, arrival_s, service_s)
    else:
        replicas = int(model)
        spec, arrays = _spec(), draw(replicas, n)
        operator.call(run_once, spec, replicas, arrays)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))

"""Case ``instructions``: CPU instructions per request, counted by Valgrind (noise-free).

Wall-clock rates on a shared machine move by tens of percent from one minute to the next;
instruction counts do not. The ``fleet-scale`` engine run (:mod:`benchmarks.fleet`) is
run under ``valgrind --tool=cachegrind --cache-sim=no`` at ``n`` and ``6n`` requests, and
the difference of the two totals over ``5n`` is the instructions one more request costs
(interpreter start-up, imports and drawing the traffic cancel out, up to ~50M
instructions of start-up jitter: ~0.5% of the 100,000-request difference). Counted for
16 and 1,024 replicas (16 only with --quick): a ratio near 1 says a large fleet does the
same work per request, so any extra time there is the memory hierarchy (a working set
larger than the caches), not the algorithm. Without Valgrind the case reports n/a.

``python -m benchmarks.instructions REPLICAS N`` is the child run (prints nothing useful).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from .common import ROOT, Settings
from .fleet import _spec, draw, run_once
from .report import Row
from .scenario import Unavailable

__all__ = ["run", "instructions"]

CASE = "instructions"
SIZES = (16, 1024)
_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def instructions(replicas: int, n: int) -> int:
    """Instructions executed by one child process running ``n`` requests."""
    proc = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-m", "benchmarks.instructions", str(replicas), str(n)],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"})  # the same dict layouts in every run
    m = _IREFS.search(proc.stderr)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"valgrind run failed (rc {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return int(m.group(1).replace(",", ""))


def run(settings: Settings) -> list[Row]:
    if shutil.which("valgrind") is None:
        raise Unavailable("valgrind is not installed")
    n = settings.pick(20_000, 5_000)
    sizes = settings.pick(SIZES, SIZES[:1])  # a Valgrind run takes 30-90 s
    per_request = {}
    rows = []
    for size in sizes:
        per_request[size] = (instructions(size, 6 * n) - instructions(size, n)) / (5 * n)
        rows.append(Row(CASE, f"{size:,} replicas", per_request[size], "instr/request",
                        note=f"engine only; ({6 * n:,} - {n:,} requests) under cachegrind"))
    if len(sizes) < 2:
        return rows
    rows.append(Row(CASE, "instr/request 1,024 / 16 replicas",
                    per_request[1024] / per_request[16], "x",
                    note="compare fleet-scale's time ratio: the rest is memory"))
    return rows


def _child(argv: list[str]) -> int:
    replicas, n = int(argv[0]), int(argv[1])
    run_once(_spec(), replicas, draw(replicas, n))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))

"""Child process of the ``memory`` case: one pipeline replication, then its peak RSS.

``python -m benchmarks.memory_child HORIZON`` prints one JSON object: requests, seconds
and the process's peak RSS (``VmHWM``, or ``ru_maxrss``) in MB.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

from .machine import peak_rss_mb
from .scenario import Unavailable, build_experiment


def main(argv: list[str]) -> int:
    horizon: float | str = argv[0]
    with contextlib.suppress(ValueError):  # seconds, or a duration such as '16d'
        horizon = float(horizon)
    try:
        exp = build_experiment(horizon)
    except Unavailable as exc:
        print(json.dumps({"unavailable": str(exc)}))
        return 0
    from sim.experiment.replication import run_replication

    t0 = time.perf_counter()
    res = run_replication(exp, 0, keep_requests=False)
    print(json.dumps({"requests": res.totals.arrived, "seconds": time.perf_counter() - t0,
                      "peak_rss_mb": peak_rss_mb()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

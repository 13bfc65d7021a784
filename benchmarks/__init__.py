"""capsim's performance benchmarks: ``python -m benchmarks [--quick] [--only NAME]``.

Cases (see :mod:`benchmarks.suite`): ``mm8`` (the bare engine on M/M/8 beside an
idiomatic SimPy model), ``pipeline`` (a month of the full pipeline), ``fleet-scale``
(engine cost per request from 8 to 1,024 replicas), ``memory`` (peak RSS at ~1M and ~10M
requests, each in a fresh process) and ``montecarlo`` (parallel replications). Benchmarks
measure and print targets beside the numbers; they never fail on a missed target.
"""

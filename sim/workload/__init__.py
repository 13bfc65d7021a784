"""Workload: who asks for what, when.

Requests as blocks of arrays (:mod:`~sim.workload.requests`), arrival processes, length
models, trace readers, the workload schema and windowed generation
(:mod:`~sim.workload.streams`) and fitting a workload to a request log
(:mod:`~sim.workload.fitting`). Depends only on :mod:`sim.core`.
"""

"""Serving: replicas, routing, the discrete-event engine, the API front and the fleet.

Turns a stream of requests (from :mod:`sim.workload`) into per-request records, using the GPU
profiles of :mod:`sim.profiles`. Depends only on core, workload and profiles.
"""

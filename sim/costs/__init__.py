"""Costs: the monthly cost model (compute, engineering, infrastructure, reliability, API).

Depends only on :mod:`sim.core`; used by the experiment layer and above (and by report for
the names and order of the cost layers).
"""

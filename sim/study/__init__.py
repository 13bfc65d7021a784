"""Studies over many configurations: sweep, plan, break-even and compare.

Each is a bag of independent replications of experiments (see :mod:`sim.experiment`), run
on an executor from :mod:`sim.core.executors`. Depends on experiment and the layers below.
"""

"""Experiment: one validated what-if, one replication of it, and N of them.

The experiment schema, overrides and loading (:mod:`~sim.experiment.config`), one
replication (:mod:`~sim.experiment.replication`), Monte Carlo over replications
(:mod:`~sim.experiment.montecarlo`) and a whole run with its results and output folder
(:mod:`~sim.experiment.run`). Depends on every layer below (never on study or cli).
"""

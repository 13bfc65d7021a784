"""Core: what every other layer builds on and nothing else.

Errors (one-line ``ConfigError``), units and durations, named random streams, pydantic schema
helpers, YAML loading and built-in names, statistics (means and confidence intervals),
log histograms, atomic output files and the executors that run independent simulations.
Depends on third-party packages only.
"""

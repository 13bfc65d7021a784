"""GPU profiles: what one replica of a model on one GPU type costs in time and money.

Holds the profile schema (:mod:`sim.profiles.schema`) and the modules that build or derive
profiles. Depends only on :mod:`sim.core` and third-party packages.
"""

"""LiteLLM: replaying traffic through a LiteLLM proxy router config.

The config schema (:mod:`~sim.litellm.config`), routing strategies, the router simulation
(:mod:`~sim.litellm.router`) and binding a config to capsim models
(:mod:`~sim.litellm.setup`). Depends on core, workload, profiles, costs and serving.
"""

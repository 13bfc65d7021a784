"""One replication of an experiment: workload -> engine -> metrics -> costs.

:func:`run_replication` is a pure function of (experiment, replication index): its
random streams derive from ``SeedSequence(seed).spawn(replications)[index]``, so the same
replication gives bit-identical results in any process, in any order. Traffic streams are
named by the workload, not by the fleet, so two experiments that differ only in fleet or
policy see the same requests (common random numbers).

A fleet of pools, or one with failures (``fleet.pools`` / ``fleet.failures``), runs on an
engine with one slot per possible replica, driven by :class:`sim.serving.fleet.Fleet`; its row
adds per-pool billing, up time and events, ``replicas`` becomes the mean number billed,
utilization is of the replica-time up, and compute is priced per pool
(:func:`sim.costs.model.pool_compute_usd`). ``fleet: {profile, replicas}`` without failures
takes exactly the original path.

Profile uncertainty (issue #21): a profile whose ``step_time.uncertainty`` is not certain
is served, in each replication, with one draw of its step-time factors
(:func:`replication_profile`), from the named stream ``profile/step_time`` of the
replication's seed: like the cost inputs, the draw depends only on the root seed and the
replication, so replication i draws the same speed at every fleet size, router or
overflow setting of a sweep (common random numbers). All replicas of a replication share
the draw (one GPU type, one serving stack). The row records it as
``input.profile.<term>_factor``, ``input.profile.step_time_factor`` (how much longer a
full decode step at ``max_batch`` takes than the point estimate's) and
``input.profile.single_step_time_factor`` (the same for a decode step of one sequence;
the two differ when the terms' factors differ, e.g. a fit's per-step and per-token
costs). The experiment's ``uncertainty.profile: false`` serves every replication with the
point estimate. A LiteLLM experiment's deployments are not drawn (they are certain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from sim.core.rng import replication_seeds, stream
from sim.costs.model import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    monthly_costs,
    pool_usd_per_gpu_hour,
    sample_cost_inputs,
)
from sim.experiment.config import Experiment
from sim.litellm.router import LitellmRouterSim, RouterResult
from sim.litellm.setup import LitellmSetup
from sim.profiles.schema import GpuProfile, gpu_prices
from sim.profiles.steptime import UNCERTAIN_TERMS
from sim.serving.api import RateLimiter
from sim.serving.engine import ApiEndpoint, Engine, EngineTotals, StreamPolicy
from sim.serving.fleet import Fleet, FleetResult, layout
from sim.serving.metrics import MetricsAccumulator, StreamSlo
from sim.serving.replica import replica_spec
from sim.workload.streams import StreamConfig, closed_loop_streams, iter_blocks

__all__ = ["ReplicationResult", "LitellmResult", "run_replication", "run_litellm_replication",
           "build_engine", "build_fleet", "check_invariants", "replication_profile"]

INF = math.inf


@dataclass
class ReplicationResult:
    """Everything one replication produced (picklable, for process pools)."""

    index: int
    row: dict  # flat metrics, sampled cost inputs and costs
    timeseries: dict  # name -> np.ndarray (5-min bins)
    cdfs: dict  # "class/dest" -> (x, F) TTFT CDF points
    requests: pa.Table | None
    totals: EngineTotals


def _stream_policies(exp: Experiment, api_index: dict[str, int]) -> list[StreamPolicy]:
    policies = []
    order = exp.config.router.priority
    for s in exp.workload.streams:
        rule = exp.config.overflow.get(s.traffic_class)
        deadline = s.slo.deadline_s if s.slo.deadline_s is not None else INF
        rank = order.index(s.traffic_class) if s.traffic_class in order else len(order)
        tokens = s.prefix.tokens if s.prefix is not None and s.prefix.tokens else 0
        # Both given: the engine serves the groups on GPU replicas and the share only
        # bills the API (see PrefixConfig and Engine: one place decides that).
        share = (s.prefix.hit_share or 0.0) if s.prefix is not None else 0.0
        prefix = {"prefix_tokens": tokens, "prefix_groups": s.prefix.groups if tokens else 0,
                  "prefix_hit_share": float(share)}
        if rule is None:
            policies.append(StreamPolicy("never", None, INF, deadline, rank, **prefix))
        else:
            policies.append(StreamPolicy(
                rule.when, api_index.get(rule.to) if rule.to else None,
                rule.threshold_s if rule.threshold_s is not None else INF, deadline, rank,
                **prefix))
    return policies


def _endpoints(exp: Experiment) -> tuple[list[ApiEndpoint], list[str]]:
    names = sorted({rule.to for rule in exp.config.overflow.values() if rule.to})
    endpoints = []
    for name in names:
        model = exp.apis[name]
        limiter = RateLimiter(model)
        endpoints.append(ApiEndpoint(name, limiter.try_acquire, model.retry.max_retries,
                                     model.backoff_s, model.sample_latency))
    return endpoints, names


def replication_profile(exp: Experiment, seed: np.random.SeedSequence
                        ) -> tuple[GpuProfile, dict[str, float]]:
    """The profile replication ``seed`` serves with, and the row's ``input.profile.*``
    columns: one draw of the profile's step-time uncertainty from the stream
    ``profile/step_time``, or the profile itself (no columns) when it is certain or
    ``uncertainty.profile`` is off."""
    unc = exp.profile.step_uncertainty
    if unc is None or not exp.config.uncertainty.profile:
        return exp.profile, {}
    uniforms = stream(seed, "profile", "step_time").random(1 + len(UNCERTAIN_TERMS))
    factors = unc.factors([float(u) for u in uniforms])
    drawn = exp.profile.with_step_factors(factors)
    row = {f"input.profile.{name}_factor": value for name, value in factors.items()}
    row["input.profile.step_time_factor"] = (float(exp.profile.saturated_tokens_per_s)
                                             / float(drawn.saturated_tokens_per_s))
    row["input.profile.single_step_time_factor"] = (
        float(exp.profile.decode_tokens_per_s(1.0)) / float(drawn.decode_tokens_per_s(1.0)))
    return drawn, row


def build_engine(exp: Experiment, seed: np.random.SeedSequence,
                 profile: GpuProfile | None = None) -> tuple[Engine, list[str]]:
    """The engine of one replication (serving ``profile``, default the experiment's); a
    fleet of pools gets one slot per possible replica (drive it with :func:`build_fleet`)."""
    profile = exp.profile if profile is None else profile
    endpoints, names = _endpoints(exp)
    policies = _stream_policies(exp, {n: i for i, n in enumerate(names)})
    cfg = exp.config
    common = {"streams": policies, "apis": endpoints, "router": cfg.router.policy,
              "queue_limit": cfg.router.queue_limit, "seed": seed}
    if not cfg.fleet.dynamic:
        return Engine(replicas=cfg.fleet.replicas, spec=replica_spec(profile),
                      **common), names
    pool_ids, up = layout(cfg.fleet.pool_list)
    spec = replica_spec(profile)
    return Engine(specs=[spec] * len(pool_ids), pools=pool_ids, up=up, **common), names


def build_fleet(exp: Experiment, engine: Engine, seed: np.random.SeedSequence
                ) -> Fleet | None:
    """The :class:`sim.serving.fleet.Fleet` that drives a dynamic fleet's engine (None if fixed)."""
    fleet = exp.config.fleet
    if not fleet.dynamic:
        return None
    return Fleet(engine, fleet.pool_list, seed=seed, horizon_s=exp.config.horizon,
                 failures=fleet.failures, cold_start=exp.cold_start, billing=fleet.billing)


def _slo(s: StreamConfig) -> StreamSlo:
    def val(x: float | None) -> float:
        return INF if x is None else float(x)
    return StreamSlo(val(s.slo.ttft_s), val(s.slo.e2e_s), val(s.slo.tpot_s),
                     val(s.slo.deadline_s))


def run_replication(exp: Experiment, index: int, *, keep_requests: bool | None = None
                    ) -> ReplicationResult | LitellmResult:
    """Run replication ``index`` of ``exp`` (deterministic)."""
    if exp.litellm is not None:  # traffic through a LiteLLM router config instead
        return run_litellm_replication(exp, index, keep_requests=keep_requests)
    cfg = exp.config
    seed = replication_seeds(cfg.seed, max(cfg.replications, index + 1))[index]
    profile, drawn = replication_profile(exp, seed)
    engine, api_names = build_engine(exp, seed, profile)
    fleet = build_fleet(exp, engine, seed)
    wl = exp.workload
    keep = cfg.output.per_request if keep_requests is None else keep_requests
    acc = MetricsAccumulator(
        class_names=wl.class_names,
        stream_class=[wl.class_names.index(s.traffic_class) for s in wl.streams],
        stream_slos=[_slo(s) for s in wl.streams], api_names=api_names,
        api_cached_share=[exp.apis[n].cached_input_share for n in api_names],
        stream_prefix=[s.prefix for s in wl.streams],
        horizon_s=cfg.horizon, bin_s=cfg.output.timeseries_bin_s,
        replicas=cfg.fleet.replicas if fleet is None else len(engine.replicas),
        saturated_tokens_per_s=float(profile.saturated_tokens_per_s),
        prefill_tokens_per_s=float(profile.prefill_tokens_per_s), keep_requests=keep)
    totals = engine.run(iter_blocks(wl, cfg.horizon, seed), acc.add,
                        closed_loop_streams(wl, cfg.horizon, seed))
    check_invariants(totals, acc)
    row = _identity_row(exp, index)
    fleet_result = None
    if fleet is not None:
        fleet_result = fleet.result(cfg.output.timeseries_bin_s)
        acc.set_capacity(fleet_result.up_replica_s_span, fleet_result.up_area,
                         billed_replica_s=fleet_result.billed_replica_s)
        row.update(_fleet_identity(exp, fleet_result))
    row.update(acc.scalars(busy_s=totals.busy_s, end_s=totals.end_s))
    row["api_only_model"] = exp.api_only_model
    row["api_only.input_tokens_total"] = row["input_tokens_total"]
    row["api_only.output_tokens_total"] = row["output_tokens_total"]
    row["tokens_per_month"] = row["tokens_total"] * (30 * 86400.0) / cfg.horizon
    row["achieved_rate_per_s"] = row["requests_arrived"] / cfg.horizon
    for name, sent in totals.closed_loop_sent.items():
        row[f"stream.{name}.achieved_rate_per_s"] = sent / cfg.horizon
    row["sim.events"] = totals.events
    row["sim.events_per_request"] = totals.events / max(totals.arrived, 1)
    inputs = sample_cost_inputs(exp.costs, stream(seed, "costs"), gpu_prices(exp.profile))
    if fleet_result is not None:
        inputs.update(_pool_prices(exp, seed, inputs))
    row.update(inputs)
    row.update(drawn)
    row.update(monthly_costs(row, inputs, _api_prices(exp)))
    cdfs = {}
    for (c, d, m), h in acc.hist.items():
        if m == "ttft" and d != "all" and h.n:
            cdfs[f"{wl.class_names[c]}/{d}"] = h.cdf_points()
    series = acc.timeseries()
    if fleet_result is not None:
        series.update(fleet_result.timeseries)
    return ReplicationResult(index, row, series, cdfs, acc.requests_table(), totals)


def _identity_row(exp: Experiment, index: int) -> dict:
    cfg = exp.config
    replicas = cfg.fleet.initial_replicas if cfg.fleet.replicas is None else cfg.fleet.replicas
    return {"replication": index, "horizon_s": cfg.horizon, "replicas": replicas,
            "gpus_per_replica": exp.profile.gpus_per_replica,
            "gpu_hours": replicas * exp.profile.gpus_per_replica * cfg.horizon / 3600}


def _fleet_identity(exp: Experiment, fr: FleetResult) -> dict:
    """A dynamic fleet's row: replicas = mean billed, GPU-hours billed in the horizon (in
    all and per pool)."""
    g = exp.profile.gpus_per_replica
    row = dict(fr.row)
    row["replicas"] = fr.row["fleet.replicas_billed_mean"]
    row["gpu_hours"] = fr.billed_replica_s * g / 3600.0
    for pool in exp.config.fleet.pool_list:
        billed_s = fr.row[f"pool.{pool.name}.billed_replica_s"]
        row[f"pool.{pool.name}.gpu_hours_billed"] = billed_s * g / 3600.0
    return row


def _pool_prices(exp: Experiment, seed: np.random.SeedSequence, inputs: dict) -> dict:
    """Each pool's GPU price, drawn from its own stream (``costs/pool/<name>``)."""
    prices = gpu_prices(exp.profile)
    out = {}
    for pool in exp.config.fleet.pool_list:
        u = float(stream(seed, "costs", "pool", pool.name).random())
        out[f"input.pool.{pool.name}.usd_per_gpu_hour"] = pool_usd_per_gpu_hour(
            pool.tier, pool.usd_per_gpu_hour, exp.costs, prices,
            inputs["input.usd_per_gpu_hour"], u)
    return out


def _api_prices(exp: Experiment) -> dict:
    return {n: (m.usd_per_1m_input, m.usd_per_1m_cached_input, m.usd_per_1m_output)
            for n, m in exp.apis.items()}


def check_invariants(totals: EngineTotals, acc: MetricsAccumulator) -> None:
    """Conservation and Little's law on the sample path; a violation is a bug, so raise."""
    c = acc.counts
    arrived = int(c["arrived"].sum())
    ended = int(c["gpu"].sum() + c["api"].sum() + c["failed"].sum())
    if not (arrived == ended == totals.arrived
            == totals.served_gpu + totals.served_api + totals.failed):
        raise AssertionError(f"conservation violated: arrived {totals.arrived}, recorded "
                             f"{arrived}, ended {ended}")
    if not math.isclose(totals.gpu_area, totals.gpu_sojourn_s, rel_tol=1e-9, abs_tol=1e-6):
        raise AssertionError(f"Little's law violated on the sample path: area "
                             f"{totals.gpu_area} != summed sojourn {totals.gpu_sojourn_s}")


# ------------------------------------------------------- one replication through LiteLLM


@dataclass
class LitellmResult:
    """One replication through a LiteLLM config (the fields ``capsim run`` writes)."""

    index: int
    row: dict
    deployments: pa.Table
    timeline: pa.Table
    cooldowns: pa.Table
    requests: pa.Table | None
    totals: EngineTotals
    timeseries: dict = field(default_factory=dict)
    cdfs: dict = field(default_factory=dict)


def run_litellm_replication(exp: Experiment, index: int, *, keep_requests: bool | None = None
                            ) -> LitellmResult:
    """Replication ``index`` of a LiteLLM experiment (deterministic, common random numbers
    with every other experiment on the same workload and seed)."""
    cfg = exp.config
    setup = exp.litellm
    assert setup is not None, "not a LiteLLM experiment"
    binding = cfg.router.litellm
    seed = replication_seeds(cfg.seed, max(cfg.replications, index + 1))[index]
    keep = cfg.output.per_request if keep_requests is None else keep_requests
    sim = LitellmRouterSim(setup.deployments, setup.config.settings,
                           stream_groups=setup.stream_groups, seed=seed, horizon_s=cfg.horizon,
                           bin_s=binding.bin_s, error_latency_s=binding.error_latency_s,
                           immediate_cooldown_on_429=binding.immediate_cooldown_on_429,
                           keep_requests=keep)
    res = sim.run(iter_blocks(exp.workload, cfg.horizon, seed))
    _check_conservation(res)
    row = _row(exp, setup, res, index)
    inputs = sample_cost_inputs(exp.costs, stream(seed, "costs"), gpu_prices(exp.profile))
    row.update(inputs)
    prices = _api_prices(exp)
    prices.update(setup.api_prices)
    row.update(monthly_costs(row, inputs, prices))
    row.update(_deployment_costs(setup, res, inputs, cfg.horizon))
    totals = EngineTotals(arrived=res.arrived, failed=res.failed,
                          served_gpu=int(sum(d["ok"] for d in res.deployments
                                             if d["kind"] == "gpu")),
                          served_api=int(sum(d["ok"] for d in res.deployments
                                             if d["kind"] == "api")))
    deployments = pa.Table.from_pylist([{"replication": index, **d} for d in res.deployments])
    rep = pa.array([index] * res.timeline.num_rows, pa.int32())
    timeline = res.timeline.append_column("replication", rep)
    cooldowns = res.cooldowns.append_column(
        "replication", pa.array([index] * res.cooldowns.num_rows, pa.int32()))
    return LitellmResult(index, row, deployments, timeline, cooldowns, res.requests, totals)


def _deployment_costs(setup: LitellmSetup, res: RouterResult, inputs: dict,
                      horizon_s: float) -> dict:
    """Each deployment's monthly cost: its GPUs at the sampled price per GPU-hour, or its
    API spend scaled to a 30-day month."""
    out = {}
    for d, g, summary in zip(setup.deployments, setup.gpus_per_replica, res.deployments,
                             strict=True):
        if d.kind == "gpu":
            usd = d.replicas * g * float(inputs["input.usd_per_gpu_hour"]) * HOURS_PER_MONTH
        else:
            usd = summary["api_cost_usd"] * SECONDS_PER_MONTH / horizon_s
        out[f"dep.{d.name}.cost_usd"] = usd
    return out


def _check_conservation(res: RouterResult) -> None:
    ended = sum(res.reasons.values())
    if not res.arrived == res.served + res.failed == ended:
        raise AssertionError(f"conservation violated: arrived {res.arrived}, served "
                             f"{res.served}, failed {res.failed}, recorded {ended}")


def _row(exp: Experiment, setup: LitellmSetup, res: RouterResult, index: int) -> dict:
    cfg = exp.config
    horizon = cfg.horizon
    replicas = setup.replicas
    row: dict[str, Any] = {
        "replication": index, "horizon_s": horizon, "replicas": replicas,
        "gpus_per_replica": setup.gpus / replicas if replicas else 0.0,
        "gpu_hours": setup.gpus * horizon / 3600.0,
        "routing_strategy": setup.config.settings.routing_strategy,
    }
    st = res.request_stats
    row["requests_arrived"] = res.arrived
    row["requests_served"] = res.served
    row["requests_failed"] = res.failed
    row["failure_share"] = st["failed_share"]
    for key in ("retry_rate", "fallback_rate", "attempts_per_request"):
        row[key] = st[key]
    for key, value in st.items():
        if key.endswith(("_p50", "_p95", "_p99", "_mean")):
            row[key] = value
    for reason, n in res.reasons.items():
        if reason != "ok":
            row[f"failed.{reason}"] = n
    tin = tout = 0.0
    for d in res.deployments:
        name = d["deployment"]
        for key in ("share", "attempts", "failures", "fail_rate_limit", "fail_unavailable",
                    "fail_timeout", "cooldowns", "cooldown_s", "api_cost_usd", "peak_rpm"):
            row[f"dep.{name}.{key}"] = d[key]
        if d["kind"] == "gpu" and d.get("replicas"):
            row[f"dep.{name}.busy_fraction"] = d["busy_s"] / (d["replicas"] * horizon)
        if d["kind"] == "api":
            share = setup.cached_share.get(name, 0.0)
            row[f"api.{name}.input_tokens"] = d["input_tokens"]
            row[f"api.{name}.cached_input_tokens"] = d["input_tokens"] * share
            row[f"api.{name}.output_tokens"] = d["output_tokens"]
        tin += d["input_tokens"]
        tout += d["output_tokens"]
    gpu_ok = sum(d["ok"] for d in res.deployments if d["kind"] == "gpu")
    row["overflow_share"] = (res.served - gpu_ok) / res.served if res.served else math.nan
    row["input_tokens_total"] = tin
    row["output_tokens_total"] = tout
    row["tokens_total"] = tin + tout
    row["tokens_per_month"] = (tin + tout) * (30 * 86400.0) / horizon
    row["api_only_model"] = exp.api_only_model
    row["api_only.input_tokens_total"] = tin
    row["api_only.output_tokens_total"] = tout
    return row

"""One replication of an experiment: workload -> engine -> metrics -> costs.

:func:`run_replication` is a pure function of (experiment, replication index): its
random streams derive from ``SeedSequence(seed).spawn(replications)[index]``, so the same
replication gives bit-identical results in any process, in any order. Traffic streams are
named by the workload, not by the fleet, so two experiments that differ only in fleet or
policy see the same requests (common random numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .config import Experiment
from .engine import ApiEndpoint, Engine, EngineTotals, StreamPolicy
from .metrics import MetricsAccumulator, StreamSlo
from .replica import ReplicaSpec
from .rng import replication_seeds, stream

__all__ = ["ReplicationResult", "run_replication", "build_engine", "replica_spec",
           "check_invariants"]

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


def replica_spec(profile) -> ReplicaSpec:
    """The engine's view of a GPU profile."""
    return ReplicaSpec(rate_table=profile.per_request_rate_table(),
                       max_batch=profile.max_batch,
                       kv_capacity_tokens=float(profile.kv_capacity_tokens),
                       prefill_tokens_per_s=float(profile.prefill_tokens_per_s),
                       saturated_tokens_per_s=float(profile.saturated_tokens_per_s))


def _stream_policies(exp: Experiment, api_index: dict[str, int]) -> list[StreamPolicy]:
    policies = []
    order = exp.config.router.priority
    for s in exp.workload.streams:
        rule = exp.config.overflow.get(s.traffic_class)
        deadline = s.slo.deadline_s if s.slo.deadline_s is not None else INF
        rank = order.index(s.traffic_class) if s.traffic_class in order else len(order)
        if rule is None:
            policies.append(StreamPolicy("never", None, INF, deadline, rank))
        else:
            policies.append(StreamPolicy(
                rule.when, api_index.get(rule.to) if rule.to else None,
                rule.threshold_s if rule.threshold_s is not None else INF, deadline, rank))
    return policies


def _endpoints(exp: Experiment) -> tuple[list[ApiEndpoint], list[str]]:
    from .api import RateLimiter

    names = sorted({rule.to for rule in exp.config.overflow.values() if rule.to})
    endpoints = []
    for name in names:
        model = exp.apis[name]
        limiter = RateLimiter(model)
        endpoints.append(ApiEndpoint(name, limiter.try_acquire, model.retry.max_retries,
                                     model.backoff_s, model.sample_latency))
    return endpoints, names


def build_engine(exp: Experiment, seed: np.random.SeedSequence) -> tuple[Engine, list[str]]:
    endpoints, names = _endpoints(exp)
    policies = _stream_policies(exp, {n: i for i, n in enumerate(names)})
    cfg = exp.config
    engine = Engine(replicas=cfg.fleet.replicas, spec=replica_spec(exp.profile),
                    streams=policies, apis=endpoints, router=cfg.router.policy,
                    queue_limit=cfg.router.queue_limit, seed=seed)
    return engine, names


def _slo(s) -> StreamSlo:
    def val(x):
        return INF if x is None else float(x)
    return StreamSlo(val(s.slo.ttft_s), val(s.slo.e2e_s), val(s.slo.tpot_s),
                     val(s.slo.deadline_s))


def run_replication(exp: Experiment, index: int, *, keep_requests: bool | None = None
                    ) -> ReplicationResult:
    """Run replication ``index`` of ``exp`` (deterministic)."""
    from .costs import monthly_costs, sample_cost_inputs
    from .workload import iter_blocks

    cfg = exp.config
    seed = replication_seeds(cfg.seed, max(cfg.replications, index + 1))[index]
    engine, api_names = build_engine(exp, seed)
    wl = exp.workload
    keep = cfg.output.per_request if keep_requests is None else keep_requests
    acc = MetricsAccumulator(
        class_names=wl.class_names,
        stream_class=[wl.class_names.index(s.traffic_class) for s in wl.streams],
        stream_slos=[_slo(s) for s in wl.streams], api_names=api_names,
        api_cached_share=[exp.apis[n].cached_input_share for n in api_names],
        horizon_s=cfg.horizon, bin_s=cfg.output.timeseries_bin_s,
        replicas=cfg.fleet.replicas,
        saturated_tokens_per_s=float(exp.profile.saturated_tokens_per_s),
        prefill_tokens_per_s=float(exp.profile.prefill_tokens_per_s), keep_requests=keep)
    totals = engine.run(iter_blocks(wl, cfg.horizon, seed), acc.add)
    check_invariants(totals, acc)
    row = _identity_row(exp, index)
    row.update(acc.scalars(busy_s=totals.busy_s))
    row["api_only_model"] = exp.api_only_model
    row["api_only.input_tokens_total"] = row["input_tokens_total"]
    row["api_only.output_tokens_total"] = row["output_tokens_total"]
    row["tokens_per_month"] = row["tokens_total"] * (30 * 86400.0) / cfg.horizon
    row["sim.events"] = totals.events
    row["sim.events_per_request"] = totals.events / max(totals.arrived, 1)
    inputs = sample_cost_inputs(exp.costs, stream(seed, "costs"), _gpu_prices(exp.profile))
    row.update(inputs)
    row.update(monthly_costs(row, inputs, _api_prices(exp)))
    cdfs = {}
    for (c, d, m), h in acc.hist.items():
        if m == "ttft" and d != "all" and h.n:
            cdfs[f"{wl.class_names[c]}/{d}"] = h.cdf_points()
    return ReplicationResult(index, row, acc.timeseries(), cdfs, acc.requests_table(), totals)


def _identity_row(exp: Experiment, index: int) -> dict:
    cfg = exp.config
    return {"replication": index, "horizon_s": cfg.horizon, "replicas": cfg.fleet.replicas,
            "gpus_per_replica": exp.profile.gpus_per_replica,
            "gpu_hours": cfg.fleet.replicas * exp.profile.gpus_per_replica * cfg.horizon / 3600}


def _gpu_prices(profile) -> dict:
    p = profile.prices
    return {"on_demand": p.on_demand_usd_per_gpu_hour,
            "reserved": getattr(p, "reserved_usd_per_gpu_hour", None),
            "spot": getattr(p, "spot_usd_per_gpu_hour", None)}


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

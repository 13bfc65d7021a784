"""An experiment whose traffic goes through a LiteLLM router config.

What it does: when an experiment sets ``router.litellm_config``, the config file is read
(:mod:`sim.litellm_config`) and bound to capsim's models once, at load time
(:func:`resolve_litellm`): each self-hosted deployment becomes a server of
``profile`` x ``replicas`` (from ``router.litellm.deployments.<key>``, else the
experiment's ``fleet``), each provider deployment a capsim API model (named in the
binding, else the model name without its provider prefix, e.g. ``openai/gpt-4o`` ->
``gpt-4o``). Every traffic class asks for ``router.litellm.model`` (default: the config's
first model group) unless ``router.litellm.classes`` names another group.

A replication (:func:`run_litellm_replication`) replays the experiment's workload through
:class:`sim.litellm_router.LitellmRouterSim` and returns a flat row -- request outcomes,
retry and fallback rates, latency, per-deployment share, failures, cooldown time and
spend, and the monthly cost of the hybrid set-up (GPU compute of every server at the
sampled price per GPU-hour, engineering, infrastructure, API tokens at each deployment's
price) -- so ``capsim run``, ``capsim sweep`` (e.g. over
``router.litellm.settings.routing_strategy``, with common random numbers) and
``capsim compare`` work unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import ConfigError, closest
from .litellm_config import LitellmConfig, load_litellm_config
from .litellm_router import DeploymentModel, LitellmRouterSim, RouterResult
from .replica import INF

__all__ = ["LitellmSetup", "LitellmResult", "resolve_litellm", "run_litellm_replication"]


@dataclass(frozen=True)
class LitellmSetup:
    """A LiteLLM config bound to capsim models (picklable)."""

    config: LitellmConfig
    deployments: tuple[DeploymentModel, ...]
    gpus_per_replica: tuple[int, ...]  # per deployment; 0 for API deployments
    stream_groups: tuple[str, ...]
    api_prices: dict[str, tuple[float, float, float]]  # deployment -> USD per 1M tokens
    cached_share: dict[str, float]

    @property
    def warnings(self) -> list[str]:
        return self.config.warnings

    @property
    def replicas(self) -> int:
        return sum(d.replicas for d in self.deployments if d.kind == "gpu")

    @property
    def gpus(self) -> int:
        return sum(d.replicas * g for d, g in zip(self.deployments, self.gpus_per_replica,
                                                  strict=True) if d.kind == "gpu")


def resolve_litellm(cfg: Any, workload: Any, apis: dict, *, file: str,
                    base_dir: Path) -> LitellmSetup:
    """Read ``cfg.router.litellm_config`` and bind it (one-line ConfigErrors)."""
    binding = cfg.router.litellm
    path = Path(cfg.router.litellm_config)
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"LiteLLM config not found: {path}", file=file,
                          field="router.litellm_config")
    lc = load_litellm_config(path, overrides=dict(binding.settings))
    bound = _bindings(lc, binding, file)
    prices_table = _price_table(binding, file)
    deps, gpus, prices, cached = [], [], {}, {}
    for d in lc.deployments:
        key, b = bound.get(d.name, (d.name, None))
        where = f"router.litellm.deployments.{key}"
        outages = tuple((o.start, o.start + o.duration) for o in (b.outages if b else []))
        gpu = (b is not None and (b.profile is not None or b.replicas is not None)) or (
            d.self_hosted and (b is None or b.api is None))
        common = dict(name=d.name, group=d.group, weight=d.weight, rpm=d.rpm, tpm=d.tpm,
                      order=d.order, timeout_s=d.timeout_s,
                      stream_timeout_s=d.stream_timeout_s,
                      max_input_tokens=float(d.max_input_tokens or INF), outages=outages)
        if gpu:
            dep, g = _server(d, b, cfg, common, file=file, base_dir=base_dir, where=where)
        else:
            dep, per_token = _api(d, b, apis, common, prices_table, lc.warnings, file=file,
                                  where=where)
            g = 0
            prices[d.name] = tuple(p * 1e6 for p in per_token)
            cached[d.name] = dep.api.cached_input_share
        deps.append(dep)
        gpus.append(g)
    groups = _stream_groups(lc, binding, workload, file)
    return LitellmSetup(lc, tuple(deps), tuple(gpus), groups, prices, cached)


def _bindings(lc: LitellmConfig, binding: Any, file: str) -> dict[str, tuple[str, Any]]:
    out = {}
    for key, b in binding.deployments.items():
        dep = lc.find(key)
        if dep is None:
            names = [d.name for d in lc.deployments]
            raise ConfigError(f"no deployment '{key}' in {lc.file}{closest(key, names)}; "
                              f"deployments: {', '.join(names)}", file=file,
                              field="router.litellm.deployments")
        out[dep.name] = (key, b)
    return out


def _server(d: Any, b: Any, cfg: Any, common: dict, *, file: str, base_dir: Path,
            where: str) -> tuple[DeploymentModel, int]:
    from .profile import load_profile
    from .runner import replica_spec

    spec_src = b.profile if b is not None and b.profile is not None else cfg.fleet.profile
    profile = load_profile(spec_src, base_dir=base_dir, file=file, field=f"{where}.profile")
    replicas = b.replicas if b is not None and b.replicas is not None else (
        cfg.fleet.replicas if cfg.fleet.replicas is not None else cfg.fleet.initial_replicas)
    dep = DeploymentModel(kind="gpu", spec=replica_spec(profile), replicas=int(replicas),
                          usd_per_input_token=d.input_cost_per_token or 0.0,
                          usd_per_output_token=d.output_cost_per_token or 0.0, **common)
    return dep, int(profile.gpus_per_replica)


def _api(d: Any, b: Any, apis: dict, common: dict, table: dict | None,
         warnings: list[str], *, file: str, where: str
         ) -> tuple[DeploymentModel, tuple[float, float, float]]:
    """The API deployment and its list prices (input, cached input, output; USD/token)."""
    from dataclasses import replace

    name = b.api if b is not None and b.api is not None else d.model_tail
    model = apis.get(name) or apis.get(d.model)
    if model is None:
        field = f"{where}.api" if b is not None else "router.litellm.deployments"
        raise ConfigError(f"deployment '{d.name}' (model '{d.model}') maps to no API model"
                          f"{closest(name, apis)}; set router.litellm.deployments."
                          f"{d.name}.api to one of: {', '.join(sorted(apis))}", file=file,
                          field=field)
    usd_in, usd_cached, usd_out = (model.usd_per_1m_input / 1e6,
                                   model.usd_per_1m_cached_input / 1e6,
                                   model.usd_per_1m_output / 1e6)
    entry = _litellm_entry(d, table, model.name, warnings)
    if entry is not None:
        usd_in = float(entry.get("input_cost_per_token", usd_in))
        usd_cached = float(entry.get("cache_read_input_token_cost", usd_in))
        usd_out = float(entry.get("output_cost_per_token", usd_out))
        if d.max_input_tokens is None and entry.get("max_input_tokens"):
            common = {**common, "max_input_tokens": float(entry["max_input_tokens"])}
    if d.input_cost_per_token is not None:  # the deployment's own price wins
        usd_in = usd_cached = d.input_cost_per_token
    if d.output_cost_per_token is not None:
        usd_out = d.output_cost_per_token
    share = model.cached_input_share
    dep = DeploymentModel(kind="api", api=model, **common)
    dep = replace(dep, usd_per_input_token=(1 - share) * usd_in + share * usd_cached,
                  usd_per_output_token=usd_out)
    return dep, (usd_in, usd_cached, usd_out)


def _price_table(binding: Any, file: str) -> dict | None:
    """LiteLLM's price table: ``router.litellm.price_json``, else ``$CAPSIM_LITELLM_JSON``,
    else the installed ``litellm`` package's copy; None when there is none."""
    from .api import _litellm_path, _read_litellm

    entry = {"litellm_json": binding.price_json} if binding.price_json else {}
    field = "router.litellm.price_json"
    try:
        path = _litellm_path(entry, file, field)
    except ConfigError:
        return None  # no table anywhere: capsim's own API model prices
    try:
        return _read_litellm(path)
    except ConfigError as exc:
        raise exc.at(file=file, field_prefix=field) from None


def _litellm_entry(d: Any, table: dict | None, capsim_name: str, warnings: list[str]
                   ) -> dict | None:
    """The deployment's row of LiteLLM's price table, looked up as LiteLLM does:
    ``base_model``, else the model string, else the model without its provider."""
    if table is None:
        return None
    keys = [k for k in (d.base_model, d.model, d.model_tail) if k]
    entry = next((table[k] for k in keys if isinstance(table.get(k), dict)), None)
    if entry is None:
        warnings.append(f"{d.name}: no LiteLLM price for {' / '.join(keys)}; priced as "
                        f"capsim API model '{capsim_name}'")
    return entry


def _stream_groups(lc: LitellmConfig, binding: Any, workload: Any, file: str
                   ) -> tuple[str, ...]:
    groups = lc.groups
    default = binding.model or lc.deployments[0].group
    if default not in groups:
        raise ConfigError(f"no model group '{default}' in {lc.file}{closest(default, groups)}",
                          file=file, field="router.litellm.model")
    for cls, group in binding.classes.items():
        if cls not in workload.class_names:
            raise ConfigError(f"no traffic class '{cls}' in the workload"
                              f"{closest(cls, workload.class_names)}", file=file,
                              field=f"router.litellm.classes.{cls}")
        if group not in groups:
            raise ConfigError(f"no model group '{group}' in {lc.file}{closest(group, groups)}",
                              file=file, field=f"router.litellm.classes.{cls}")
    return tuple(binding.classes.get(s.traffic_class, default) for s in workload.streams)


# ------------------------------------------------------------------------ one replication


@dataclass
class LitellmResult:
    """One replication through a LiteLLM config (the fields ``capsim run`` writes)."""

    index: int
    row: dict
    deployments: pa.Table
    timeline: pa.Table
    cooldowns: pa.Table
    requests: pa.Table | None
    totals: Any
    timeseries: dict = field(default_factory=dict)
    cdfs: dict = field(default_factory=dict)


def run_litellm_replication(exp: Any, index: int, *, keep_requests: bool | None = None
                            ) -> LitellmResult:
    """Replication ``index`` of a LiteLLM experiment (deterministic, common random numbers
    with every other experiment on the same workload and seed)."""
    from .costs import monthly_costs, sample_cost_inputs
    from .engine import EngineTotals
    from .rng import replication_seeds, stream
    from .runner import gpu_prices
    from .workload import iter_blocks

    cfg = exp.config
    setup: LitellmSetup = exp.litellm
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
    prices = {n: (m.usd_per_1m_input, m.usd_per_1m_cached_input, m.usd_per_1m_output)
              for n, m in exp.apis.items()}
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
    from .costs import HOURS_PER_MONTH, SECONDS_PER_MONTH

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


def _row(exp: Any, setup: LitellmSetup, res: RouterResult, index: int) -> dict:
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

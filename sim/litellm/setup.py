"""Binding a LiteLLM router config to capsim's models, once, when an experiment loads.

What it does: when an experiment sets ``router.litellm_config``, the config file is read
(:mod:`sim.litellm.config`) and bound to capsim's models once, at load time
(:func:`resolve_litellm`): each self-hosted deployment becomes a server of
``profile`` x ``replicas`` (from ``router.litellm.deployments.<key>``, else the
experiment's ``fleet``), each provider deployment a capsim API model (named in the
binding, else the model name without its provider prefix, e.g. ``openai/gpt-4o`` ->
``gpt-4o``). Every traffic class asks for ``router.litellm.model`` (default: the config's
first model group) unless ``router.litellm.classes`` names another group.

**What applies of the rest of the experiment.** The fleet's size: ``fleet.replicas`` is
the number of self-hosted replicas in all. Deployments bound with their own ``replicas``
take theirs from it; the rest share what remains, as evenly as possible (the first listed
takes the remainder), so ``--router-config`` on a 3-replica experiment runs 3 replicas, not
3 per deployment. A fleet that cannot be split that way (fewer replicas than deployments
left to size, or explicit replicas that do not add up to ``fleet.replicas``), a dynamic
fleet (``fleet.pools``, ``fleet.failures``) and ``fleet.replicas`` with no self-hosted
deployment to apply to are refused with one line saying what to set instead. The
experiment's ``overflow:`` rules do not apply: where a request goes is the config's
routing, retries and fallbacks; a rule that would send traffic somewhere gets one warning
line naming the fallbacks that apply instead. An outage (a deployment's, or its API
model's) that starts after the horizon gets a warning line: it never happens.

A replication (:func:`sim.experiment.replication.run_litellm_replication`) replays the
experiment's workload through :class:`sim.litellm.router.LitellmRouterSim` and returns a
flat row -- request outcomes, retry and fallback rates, latency, per-deployment share,
failures, cooldown time and spend, and the monthly cost of the hybrid set-up (GPU compute
of every server at the sampled price per GPU-hour, engineering, infrastructure, API tokens
at each deployment's price) -- so ``capsim run``, ``capsim sweep`` (e.g. over
``router.litellm.settings.routing_strategy``, with common random numbers) and ``capsim
compare`` work unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import model_validator

from sim.core.errors import ConfigError, closest
from sim.core.schema import DurationS, Model, NonNegFloat, ReplicaCount
from sim.litellm.config import Deployment, LitellmConfig, load_litellm_config
from sim.litellm.router import DeploymentModel
from sim.profiles.schema import load_profile
from sim.serving.api import ApiModel, Outage, litellm_price_path, read_litellm_prices
from sim.serving.fleet_config import FleetConfig
from sim.serving.replica import INF, replica_spec
from sim.workload.streams import WorkloadConfig, refuse_closed_loop

__all__ = ["LitellmBinding", "LitellmDeploymentBinding", "LitellmSetup", "resolve_litellm"]


class LitellmDeploymentBinding(Model):
    """What stands behind one deployment of a LiteLLM config: a self-hosted server
    (``profile`` x ``replicas``) or a capsim API model (``api``), and its outages."""

    profile: Any = None
    replicas: ReplicaCount | None = None
    api: str | None = None
    outages: list[Outage] = []

    @model_validator(mode="after")
    def _one_kind(self) -> LitellmDeploymentBinding:
        if self.api is not None and (self.profile is not None or self.replicas is not None):
            raise ValueError("give either 'api' or 'profile'/'replicas', not both")
        return self


class LitellmBinding(Model):
    """How an experiment drives a LiteLLM router config (``router.litellm`` beside
    ``router.litellm_config``)."""

    model: str | None = None
    """The model group every request asks for (default: the config's first group)."""
    classes: dict[str, str] = {}
    """Traffic class -> model group, for classes that ask for another group."""
    deployments: dict[str, LitellmDeploymentBinding] = {}
    """Keyed by ``model_info.id``, ``api_base`` or ``litellm_params.model``."""
    settings: dict[str, Any] = {}
    """Overrides of the config's router settings (e.g. ``routing_strategy`` in a sweep)."""
    price_json: str | None = None
    """A LiteLLM ``model_prices_and_context_window.json`` pricing API deployments by
    ``base_model`` / ``model``, with their context windows (default
    ``$CAPSIM_LITELLM_JSON``, else the installed ``litellm`` package's copy, else capsim's
    own API model prices)."""
    error_latency_s: NonNegFloat = 0.1
    immediate_cooldown_on_429: bool = True
    bin_s: DurationS = 60.0




@dataclass(frozen=True)
class LitellmSetup:
    """A LiteLLM config bound to capsim models (picklable)."""

    config: LitellmConfig
    deployments: tuple[DeploymentModel, ...]
    gpus_per_replica: tuple[int, ...]  # per deployment; 0 for API deployments
    stream_groups: tuple[str, ...]
    api_prices: dict[str, tuple[float, float, float]]  # deployment -> USD per 1M tokens
    cached_share: dict[str, float]
    notes: tuple[str, ...] = ()
    """Warnings about the experiment around the config (overflow rules that do not apply,
    outages after the horizon)."""

    @property
    def warnings(self) -> list[str]:
        return [*self.config.warnings, *self.notes]

    @property
    def outage_windows(self) -> list[tuple[float, float]]:
        """(start, end) seconds of every configured outage: the bound deployments' and
        their API models'."""
        windows = [(a, b) for d in self.deployments for a, b in d.outages]
        for d in self.deployments:
            if d.api is not None:
                windows += [(o.start, o.start + o.duration) for o in d.api.outages]
        return windows

    @property
    def replicas(self) -> int:
        return sum(d.replicas for d in self.deployments if d.kind == "gpu")

    @property
    def gpus(self) -> int:
        return sum(d.replicas * g for d, g in zip(self.deployments, self.gpus_per_replica,
                                                  strict=True) if d.kind == "gpu")


def resolve_litellm(config_path: str, binding: LitellmBinding, fleet: FleetConfig,
                    workload: WorkloadConfig, apis: dict[str, ApiModel], *, file: str,
                    base_dir: Path, horizon_s: float | None = None,
                    overflow: Mapping[str, Any] | None = None) -> LitellmSetup:
    """Read the LiteLLM config at ``config_path`` (``router.litellm_config``, relative to
    ``base_dir``) and bind it as ``binding`` says, with ``fleet`` behind self-hosted
    deployments (its replicas split among those that name none; one-line ConfigErrors).
    ``horizon_s`` and the experiment's ``overflow`` rules only produce warnings (see the
    module docstring)."""
    path = Path(config_path)
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"LiteLLM config not found: {path}", file=file,
                          field="router.litellm_config")
    refuse_closed_loop(workload, "a LiteLLM router config", file=file)
    lc = load_litellm_config(path, overrides=dict(binding.settings))
    bound = _bindings(lc, binding, file)
    sizes = _fleet_split(lc, bound, fleet, file)
    prices_table = _price_table(binding, file)
    deps, gpus, prices, cached = [], [], {}, {}
    for d in lc.deployments:
        key, b = bound.get(d.name, (d.name, None))
        where = f"router.litellm.deployments.{key}"
        outages = tuple((o.start, o.start + o.duration) for o in (b.outages if b else []))
        gpu = d.name in sizes
        common = dict(name=d.name, group=d.group, weight=d.weight, rpm=d.rpm, tpm=d.tpm,
                      order=d.order, timeout_s=d.timeout_s,
                      stream_timeout_s=d.stream_timeout_s,
                      max_input_tokens=float(d.max_input_tokens or INF), outages=outages)
        if gpu:
            dep, g = _server(d, b, sizes[d.name], fleet, common, file=file,
                             base_dir=base_dir, where=where)
        else:
            dep, per_token = _api(d, b, apis, common, prices_table, lc.warnings, file=file,
                                  where=where)
            g = 0
            prices[d.name] = tuple(p * 1e6 for p in per_token)
            cached[d.name] = dep.api.cached_input_share
        deps.append(dep)
        gpus.append(g)
    groups = _stream_groups(lc, binding, workload, file)
    notes = _overflow_notes(lc, overflow or {})
    if horizon_s is not None:
        notes += _horizon_notes(lc, bound, deps, horizon_s)
    return LitellmSetup(lc, tuple(deps), tuple(gpus), groups, prices, cached, tuple(notes))


def _is_gpu(d: Deployment, b: LitellmDeploymentBinding | None) -> bool:
    """Whether a deployment is one of the fleet's servers (else an API model)."""
    if b is not None and (b.profile is not None or b.replicas is not None):
        return True
    return d.self_hosted and (b is None or b.api is None)


def _fleet_split(lc: LitellmConfig, bound: dict[str, tuple[str, LitellmDeploymentBinding]],
                 fleet: FleetConfig, file: str) -> dict[str, int]:
    """Replicas of each self-hosted deployment: its own ``replicas``, else its share of
    what ``fleet.replicas`` leaves (see the module docstring; one-line refusals)."""
    if fleet.dynamic:
        what = "fleet.pools" if fleet.pools is not None else "fleet.failures"
        raise ConfigError(f"{what} does not apply to a LiteLLM router config (its "
                          "deployments are fixed servers): give fleet.replicas, or "
                          "router.litellm.deployments.<id>.replicas and .outages",
                          file=file, field="fleet")
    total = int(fleet.replicas or 0)
    servers = [d for d in lc.deployments if _is_gpu(d, bound.get(d.name, ("", None))[1])]
    own = {d.name: bound[d.name][1].replicas for d in servers
           if d.name in bound and bound[d.name][1].replicas is not None}
    rest = [d.name for d in servers if d.name not in own]
    fixed = ", ".join(f"{name} {n}" for name, n in own.items())
    if not servers:
        if total:
            raise ConfigError(f"{_replicas(total)}, but no deployment in {lc.file} is "
                              "self-hosted: the fleet would apply to nothing; set "
                              "fleet.replicas=0", file=file, field="fleet.replicas")
        return {}
    if not rest:
        if sum(own.values()) != total:
            raise ConfigError(f"{_replicas(total)}, but router.litellm.deployments sizes "
                              f"every self-hosted deployment ({fixed}: "
                              f"{sum(own.values())} in all); set fleet.replicas="
                              f"{sum(own.values())} or change those", file=file,
                              field="fleet.replicas")
        return dict(own)
    left = total - sum(own.values())
    if left < len(rest):
        taken = f" ({fixed} taken by router.litellm.deployments)" if own else ""
        raise ConfigError(f"{_replicas(total)}{taken} leave {max(left, 0)} for "
                          f"{len(rest)} self-hosted deployment(s) ({', '.join(rest)}), "
                          "at least 1 each; raise fleet.replicas or set "
                          "router.litellm.deployments.<id>.replicas", file=file,
                          field="fleet.replicas")
    each, extra = divmod(left, len(rest))
    split = {name: each + (1 if k < extra else 0) for k, name in enumerate(rest)}
    return {d.name: own.get(d.name, split.get(d.name, 0)) for d in servers}


def _replicas(n: int) -> str:
    return f"{n} replica" if n == 1 else f"{n} replicas"


def _overflow_notes(lc: LitellmConfig, overflow: Mapping[str, Any]) -> list[str]:
    """One line if the experiment's overflow rules would send traffic anywhere."""
    rules = [f"{cls}: {rule.when}" + (f" {rule.threshold_s:g} s" if rule.threshold_s is not None
                                      else "") + f" -> {rule.to}"
             for cls, rule in overflow.items() if getattr(rule, "when", "never") != "never"]
    if not rules:
        return []
    settings = lc.settings
    pairs = [f"{a} -> {', '.join(b)}" for entry in settings.fallbacks for a, b in entry.items()]
    if settings.default_fallbacks:
        pairs.append(f"any -> {', '.join(settings.default_fallbacks)}")
    fallbacks = "; ".join(pairs)
    instead = (f"its fallbacks apply instead ({fallbacks})" if fallbacks
               else "it has no fallbacks, so nothing leaves a model group")
    return [f"overflow ({'; '.join(rules)}) does not apply under the LiteLLM router config "
            f"{lc.file}: its routing and retries decide where a request goes, and {instead}"]


def _horizon_notes(lc: LitellmConfig, bound: dict[str, tuple[str, LitellmDeploymentBinding]],
                   deps: list[DeploymentModel], horizon_s: float) -> list[str]:
    """One line per outage that starts at or after the end of the horizon."""
    notes = []
    for dep in deps:
        key, b = bound.get(dep.name, (dep.name, None))
        for k, o in enumerate(b.outages if b is not None else []):
            if o.start >= horizon_s:
                notes.append(_late(f"router.litellm.deployments.{key}.outages[{k}]", o.start,
                                   horizon_s))
    seen = set()  # (an API model behind several deployments: its outages named once)
    for dep in deps:
        if dep.api is None or dep.api.name in seen:
            continue
        seen.add(dep.api.name)
        for k, o in enumerate(dep.api.outages):
            if o.start >= horizon_s:
                notes.append(_late(f"api.{dep.api.name}.outages[{k}]", o.start, horizon_s))
    return notes


def _late(field: str, start_s: float, horizon_s: float) -> str:
    return (f"{field} starts at {_clock(start_s)}, after the {_clock(horizon_s, span=True)} "
            "horizon: it never happens in this run (set a longer horizon or an earlier start)")


def _clock(t_s: float, *, span: bool = False) -> str:
    """``day 2 10:05`` (days counted from 0), or for a span ``3-day`` / ``2-hour``."""
    if span:
        for size, unit in ((86400.0, "day"), (3600.0, "hour"), (60.0, "minute")):
            if t_s >= size and t_s / size == round(t_s / size, 2):
                return f"{t_s / size:g}-{unit}"
        return f"{t_s:g}-second"
    day, rest = divmod(int(t_s), 86400)
    return f"day {day} {rest // 3600:02d}:{rest % 3600 // 60:02d}"


def _bindings(lc: LitellmConfig, binding: LitellmBinding, file: str
              ) -> dict[str, tuple[str, LitellmDeploymentBinding]]:
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


def _server(d: Deployment, b: LitellmDeploymentBinding | None, replicas: int,
            fleet: FleetConfig, common: dict, *, file: str, base_dir: Path,
            where: str) -> tuple[DeploymentModel, int]:
    spec_src = b.profile if b is not None and b.profile is not None else fleet.profile
    profile = load_profile(spec_src, base_dir=base_dir, file=file, field=f"{where}.profile")
    dep = DeploymentModel(kind="gpu", spec=replica_spec(profile), replicas=int(replicas),
                          usd_per_input_token=d.input_cost_per_token or 0.0,
                          usd_per_output_token=d.output_cost_per_token or 0.0, **common)
    return dep, int(profile.gpus_per_replica)


def _api(d: Deployment, b: LitellmDeploymentBinding | None, apis: dict[str, ApiModel],
         common: dict, table: dict | None,
         warnings: list[str], *, file: str, where: str
         ) -> tuple[DeploymentModel, tuple[float, float, float]]:
    """The API deployment and its list prices (input, cached input, output; USD/token)."""
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


def _price_table(binding: LitellmBinding, file: str) -> dict | None:
    """LiteLLM's price table: ``router.litellm.price_json``, else ``$CAPSIM_LITELLM_JSON``,
    else the installed ``litellm`` package's copy; None when there is none."""
    entry = {"litellm_json": binding.price_json} if binding.price_json else {}
    field = "router.litellm.price_json"
    try:
        path = litellm_price_path(entry, file, field)
    except ConfigError:
        return None  # no table anywhere: capsim's own API model prices
    try:
        return read_litellm_prices(path)
    except ConfigError as exc:
        raise exc.at(file=file, field_prefix=field) from None


def _litellm_entry(d: Deployment, table: dict | None, capsim_name: str, warnings: list[str]
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


def _stream_groups(lc: LitellmConfig, binding: LitellmBinding, workload: WorkloadConfig,
                   file: str
                   ) -> tuple[str, ...]:
    groups = lc.groups
    default = binding.model or lc.deployments[0].group
    if default not in groups:
        raise ConfigError(f"no model group '{default}' in {lc.file}{closest(default, groups)}",
                          file=file, field="router.litellm.model")
    for cls, group in binding.classes.items():
        workload.check_class(cls, file=file, field=f"router.litellm.classes.{cls}")
        if group not in groups:
            raise ConfigError(f"no model group '{group}' in {lc.file}{closest(group, groups)}",
                              file=file, field=f"router.litellm.classes.{cls}")
    return tuple(binding.classes.get(s.traffic_class, default) for s in workload.streams)

"""Experiment files: the validated description of one what-if.

An experiment names a horizon, replications, a root seed, the workload, the fleet, the
router and overflow policy, the API models, the cost inputs and which uncertainties the
Monte Carlo draws (``uncertainty: {profile: true}``). It is read once, with
``--set path=value`` overrides applied to the raw data first, and validated into an
immutable :class:`Experiment`; nothing downstream re-validates. Named workloads and GPU
profiles resolve from the user's folder, then the shipped ones.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from sim.core.errors import ConfigError, closest
from sim.core.loader import builtin_dir, parse_yaml, read_yaml, resolve_named
from sim.core.schema import DurationS, Model, NonNegFloat, validate
from sim.costs.model import CostConfig, pool_usd_per_gpu_hour
from sim.litellm.setup import LitellmBinding, LitellmSetup, resolve_litellm
from sim.profiles.schema import ColdStart, GpuProfile, gpu_prices, load_profile
from sim.serving.api import ApiModel, load_api_models
from sim.serving.fleet_config import FleetConfig
from sim.workload.streams import WorkloadConfig, check_volume, horizon_problem, parse_workload

__all__ = [
    "ExperimentConfig",
    "Experiment",
    "load_experiment",
    "ExperimentSource",
    "apply_overrides",
    "load_variant",
    "variant_overrides",
    "DEFAULT_EXPERIMENT",
]

DEFAULT_EXPERIMENT = "default"


class RouterConfig(Model):
    """Placement policy, waiting-room bound and class priorities (first listed goes first;
    unlisted classes after them; FCFS within a class); or a LiteLLM router config to
    simulate instead (``litellm_config``, path relative to the experiment file)."""

    policy: Literal["least_loaded", "round_robin", "power_of_two"] = "least_loaded"
    queue_limit: int | None = Field(default=None, ge=0)
    priority: list[str] = []
    litellm_config: str | None = None
    litellm: LitellmBinding = LitellmBinding()


class OverflowRule(Model):
    """What happens to a traffic class's requests that cannot start on a GPU at once."""

    when: Literal["never", "queue_full", "wait_exceeds", "always"] = "never"
    threshold_s: NonNegFloat | None = None
    to: str | None = None

    @model_validator(mode="after")
    def _check(self) -> OverflowRule:
        if self.when == "wait_exceeds" and self.threshold_s is None:
            raise ValueError("'wait_exceeds' needs threshold_s")
        if self.when != "never" and not self.to:
            raise ValueError(f"'{self.when}' needs 'to: <api model>'")
        return self


MAX_TIMESERIES_BINS = 10_000_000
MAX_REPLICATIONS = 100_000
"""The most Monte Carlo replications an experiment may ask for (the work itself is
bounded by the request estimate of :func:`sim.workload.streams.check_volume`)."""


class UncertaintyConfig(Model):
    """Which epistemic uncertainties the Monte Carlo draws once per replication.

    ``profile``: the GPU profile's step-time uncertainty (``step_time.uncertainty``; a
    profile without one is certain either way). ``false`` serves every replication with the
    point estimate, e.g. to see how much of an interval comes from it (``--set
    uncertainty.profile=false``). Cost inputs have no switch: a plain number instead of a
    ``{low, high}`` range is certain."""

    profile: bool = True


class OutputConfig(Model):
    per_request: bool = False
    timeseries_bin_s: Annotated[DurationS, Field(gt=0)] = 300.0


class ExperimentConfig(Model):
    """The experiment file's schema (raw workload/profile/api/costs are resolved later)."""

    name: str = "experiment"
    description: str = ""
    horizon: DurationS = 30 * 86400.0
    replications: int = Field(default=20, ge=1, le=MAX_REPLICATIONS)
    seed: int = Field(default=0, ge=0, lt=2**128)
    workload: Any
    fleet: FleetConfig
    router: RouterConfig = RouterConfig()
    overflow: dict[str, OverflowRule] = {}
    api: dict[str, Any] = {}
    api_only_reference: str | None = None
    costs: dict[str, Any] = {}
    output: OutputConfig = OutputConfig()
    uncertainty: UncertaintyConfig = UncertaintyConfig()
    grid: dict[str, Any] = {}
    variants: dict[str, dict[str, Any]] = {}
    """Named what-ifs for ``capsim compare``: each maps override paths to values."""

    @field_validator("horizon")
    @classmethod
    def _positive_horizon(cls, horizon: float) -> float:
        problem = horizon_problem(horizon)
        if problem:
            raise ValueError(problem)
        return horizon

    @model_validator(mode="after")
    def _bounded_bins(self) -> ExperimentConfig:
        bins = self.horizon / self.output.timeseries_bin_s
        if not bins <= MAX_TIMESERIES_BINS:  # (written so that a NaN fails too)
            raise ValueError(f"output.timeseries_bin_s: {self.output.timeseries_bin_s:g} s "
                             f"makes {bins:.3g} bins over the horizon (at most "
                             f"{MAX_TIMESERIES_BINS:,})")
        return self


@dataclass(frozen=True)
class Experiment:
    """A resolved experiment: every name looked up, every field validated."""

    config: ExperimentConfig
    workload: WorkloadConfig
    profile: GpuProfile
    apis: dict[str, ApiModel]
    costs: CostConfig
    source: str  # the file it came from (or "<dict>")
    raw: dict[str, Any]  # the data after overrides, for summary.json
    litellm: LitellmSetup | None = None  # when router.litellm_config is set

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def cold_start(self) -> ColdStart | None:
        """The cold start of a new replica, or None if unknown."""
        return self.config.fleet.cold_start_s or self.profile.cold_start_s

    @property
    def api_only_model(self) -> str:
        """The API that prices the all-API alternative."""
        cfg = self.config
        if cfg.api_only_reference:
            return cfg.api_only_reference
        targets = [r.to for r in cfg.overflow.values() if r.to]
        return targets[0] if targets else "gpt-4o"


def apply_overrides(raw: dict, overrides: list[str], *, file: str | None = None) -> dict:
    """Set ``a.b.c=value`` paths (YAML values; ``a.0.b`` indexes lists) on a copy of raw."""
    data = copy.deepcopy(raw)
    for item in overrides:
        path, sep, text = item.partition("=")
        path = path.strip()
        if not sep or not path:
            raise ConfigError(f"--set expects path=value, got {item!r}", file=file)
        try:  # the same reader as files: no duplicate keys, bounded nesting and aliases
            value = parse_yaml(text, file=file) if text.strip() else None
        except ConfigError as exc:
            if "invalid YAML" not in exc.message:
                raise ConfigError(f"--set {path}: {exc.message}", file=file) from None
            value = text
        _set_path(data, path.split("."), value, path, file)
    return data


def _set_path(node: Any, keys: list[str], value: Any, path: str, file: str | None) -> None:
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set: index '{key}' out of range (list of {len(node)})",
                                  file=file, field=path)
            if last:
                node[int(key)] = value
                return
            node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
                return
            nxt = node.get(key)
            if isinstance(nxt, str) and keys[0] in ("workload", "fleet"):
                nxt = node[key] = _expand_named(keys[0], nxt, file)
            elif nxt is None:
                nxt = node[key] = {}
            node = nxt
        else:
            raise ConfigError(f"--set: cannot set inside a {type(node).__name__}",
                              file=file, field=path)


def _expand_named(section: str, name: str, file: str | None) -> Any:
    """A named workload/profile as data, so an override can change one of its fields."""
    kind = "workloads" if section == "workload" else "gpu_profiles"
    path = resolve_named(kind, name, field=section, file=file)
    data = read_yaml(path)
    if section == "workload" and isinstance(data, list):
        data = {"streams": data}
    return data


def _default_path() -> Path:
    return builtin_dir("experiments") / f"{DEFAULT_EXPERIMENT}.yaml"


def variant_overrides(values: Mapping[str, Any]) -> list[str]:
    """``--set`` strings for a variant's ``{path: value}`` (values as JSON, valid YAML)."""
    return [f"{path}={json.dumps(value)}" for path, value in values.items()]


ExperimentSource = str | Path | Mapping[str, Any] | None
"""A YAML file, a built-in name (``default``, ``spiky``, ...), the experiment's fields as
a mapping (relative names resolve from the working directory), or None (the default)."""


def load_experiment(path: ExperimentSource = None, overrides: Sequence[str] | None = None,
                    *, replications: int | None = None,
                    check_variants: bool = True) -> Experiment:
    """Read, override, validate and resolve an experiment (the built-in default if None).

    Its ``variants`` (for ``capsim compare``) are loaded too unless ``check_variants`` is
    False, so a broken one is an error whatever command reads the file."""
    if isinstance(path, Mapping):
        file, base_dir, raw = "<dict>", Path.cwd(), copy.deepcopy(dict(path))
    else:
        p = Path(path) if path is not None else _default_path()
        if path is not None and not p.is_file() and not p.suffix:
            p = resolve_named("experiments", str(path), field="experiment")
        file, base_dir, raw = str(p), p.parent, read_yaml(p)
    if not isinstance(raw, dict):
        raise ConfigError("an experiment file must be a mapping of fields", file=file)
    raw = apply_overrides(raw, list(overrides or []), file=file)
    if replications is not None:
        raw["replications"] = replications
    cfg = validate(ExperimentConfig, raw, file=file)
    exp = resolve(cfg, raw, file=file, base_dir=base_dir)
    for name, values in cfg.variants.items() if check_variants else ():
        load_variant(path, overrides or [], name, values, replications=replications)
    return exp


def load_variant(path: ExperimentSource, overrides: Sequence[str], name: str,
                 values: Mapping[str, Any], *, replications: int | None = None
                 ) -> Experiment:
    """The experiment with variant ``name``'s ``{path: value}`` applied after
    ``overrides``; a problem is a ConfigError naming the variant."""
    try:
        return load_experiment(path, [*overrides, *variant_overrides(values)],
                               replications=replications, check_variants=False)
    except ConfigError as exc:
        raise exc.in_variant(name) from None


def resolve(cfg: ExperimentConfig, raw: dict, *, file: str, base_dir: Path) -> Experiment:
    """Look up the workload, profile, API models and cost model of a validated config."""
    workload = parse_workload(cfg.workload, base_dir=base_dir, file=file, field="workload")
    check_volume(workload, cfg.horizon, file=file, replications=cfg.replications)
    profile = load_profile(cfg.fleet.profile, base_dir=base_dir, file=file,
                           field="fleet.profile")
    apis = load_api_models(cfg.api or None, file=file, field="api")
    costs = validate(CostConfig, cfg.costs, file=file, prefix="costs")
    for k, cls_name in enumerate(cfg.router.priority):
        workload.check_class(cls_name, file=file, field=f"router.priority[{k}]")
    for cls_name, rule in cfg.overflow.items():
        workload.check_class(cls_name, file=file, field=f"overflow.{cls_name}")
        if rule.to and rule.to not in apis:
            raise ConfigError(f"unknown API model '{rule.to}'{closest(rule.to, apis)}",
                              file=file, field=f"overflow.{cls_name}.to")
    litellm = None
    if cfg.router.litellm_config is not None:
        litellm = resolve_litellm(cfg.router.litellm_config, cfg.router.litellm, cfg.fleet,
                                  workload, apis, file=file, base_dir=base_dir,
                                  horizon_s=cfg.horizon, overflow=cfg.overflow)
    exp = Experiment(cfg, workload, profile, apis, costs, file, raw, litellm)
    _check_fleet(exp, file)
    if exp.api_only_model not in apis:
        raise ConfigError(f"unknown API model '{exp.api_only_model}'"
                          f"{closest(exp.api_only_model, apis)}", file=file,
                          field="api_only_reference")
    return exp



def _check_fleet(exp: Experiment, file: str) -> None:
    """What the fleet needs beyond its schema: a cold start and a price for each pool."""
    fleet = exp.config.fleet
    if not fleet.dynamic:
        return
    for i, pool in enumerate(fleet.pool_list):
        where = f"fleet.pools[{i}]" if fleet.pools is not None else "fleet"
        if pool.may_grow and exp.cold_start is None:
            raise ConfigError(f"pool '{pool.name}' can add replicas but profile "
                              f"'{exp.profile.name}' has no cold_start_s; set "
                              "fleet.cold_start_s", file=file, field=where)
        try:
            pool_usd_per_gpu_hour(pool.tier, pool.usd_per_gpu_hour, exp.costs,
                                  gpu_prices(exp.profile), 0.0, 0.5)
        except ConfigError as exc:
            raise exc.at(file=file, field_prefix=where) from None

"""Import of a LiteLLM proxy ``config.yaml``: its deployments and router settings.

What it reads: ``model_list`` (each entry's ``model_name`` group, ``litellm_params.model``,
``api_base``, ``rpm``, ``tpm``, ``weight``, ``order``, ``timeout``, ``stream_timeout``,
``input_cost_per_token``, ``output_cost_per_token``; ``model_info.id``,
``model_info.max_input_tokens`` and ``model_info.base_model``) and the routing part of
``router_settings`` (also read from ``litellm_settings``, where proxy configs often put
it): ``routing_strategy``,
``routing_strategy_args``, ``num_retries``, ``retry_after``, ``allowed_fails``,
``cooldown_time``, ``disable_cooldowns``, ``timeout`` / ``request_timeout``,
``stream_timeout``, ``fallbacks``, ``context_window_fallbacks``, ``default_fallbacks``,
``max_fallbacks``, ``enable_pre_call_checks``.

Everything else in the file (credentials, callbacks, caching, Redis, budgets, the proxy's
``general_settings``...) cannot change what the simulation computes or is not simulated;
each such key is reported once, as one warning line, never silently dropped. Malformed
input -- an unknown strategy, a missing ``model``, a bad type, a fallback to a group that
does not exist -- is a one-line :class:`~sim.core.errors.ConfigError` naming the file and field.

Every count and time is bounded at the schema: ``num_retries`` and ``max_fallbacks`` at
most 100, ``allowed_fails`` at most 1,000,000, times at most ten years, at most 10,000
fallback entries; each section must be a mapping with text keys.

Defaults follow LiteLLM's Router: ``simple-shuffle``, no retries, ``allowed_fails`` 3,
``cooldown_time`` 5 s, ``max_fallbacks`` 5, no timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from sim.core.errors import ConfigError, closest
from sim.core.loader import read_yaml
from sim.core.schema import Model, NonNegFloat, PositiveFloat, validate

__all__ = ["STRATEGIES", "Deployment", "RouterSettings", "LitellmConfig", "load_litellm_config",
           "SELF_HOSTED_PROVIDERS"]

STRATEGIES = ("simple-shuffle", "least-busy", "usage-based-routing", "usage-based-routing-v2",
              "latency-based-routing", "cost-based-routing")
SELF_HOSTED_PROVIDERS = ("hosted_vllm", "vllm", "openai", "text-completion-openai", "ollama",
                         "ollama_chat", "huggingface", "openai_like", "lm_studio", "xinference",
                         "triton", "llamafile")
"""Provider prefixes that mean 'a server you run' when the deployment has an ``api_base``."""

_CREDENTIALS = {"api_key", "api_version", "organization", "aws_access_key_id",
                "aws_secret_access_key", "aws_region_name", "vertex_project", "vertex_location",
                "vertex_credentials", "api_type", "azure_ad_token", "tenant_id", "client_id",
                "client_secret", "extra_headers", "headers", "drop_params"}
_PARAMS = {"model", "api_base", "rpm", "tpm", "weight", "order", "timeout", "stream_timeout",
           "input_cost_per_token", "output_cost_per_token"}
_SETTINGS = {"routing_strategy", "routing_strategy_args", "num_retries", "retry_after",
             "allowed_fails", "cooldown_time", "disable_cooldowns", "timeout", "request_timeout",
             "stream_timeout", "fallbacks", "context_window_fallbacks", "default_fallbacks",
             "max_fallbacks", "enable_pre_call_checks"}
_SECTIONS = ("model_list", "router_settings", "litellm_settings", "general_settings",
             "environment_variables")


MAX_RETRIES = 100
MAX_TIME_S = 3650 * 86400.0
MAX_FALLBACK_ENTRIES = 10_000
BoundedTime = Annotated[NonNegFloat, Field(le=MAX_TIME_S)]
PositiveTime = Annotated[PositiveFloat, Field(le=MAX_TIME_S)]


class _Params(Model):
    model: str
    api_base: str | None = None
    rpm: int | None = Field(default=None, ge=0)
    tpm: int | None = Field(default=None, ge=0)
    weight: NonNegFloat | None = None
    order: int | None = Field(default=None, ge=0)
    timeout: PositiveTime | None = None
    stream_timeout: PositiveTime | None = None
    input_cost_per_token: NonNegFloat | None = Field(default=None, le=1.0)
    output_cost_per_token: NonNegFloat | None = Field(default=None, le=1.0)


class _Info(Model):
    id: str | None = None
    max_input_tokens: int | None = Field(default=None, gt=0)
    base_model: str | None = None


class _StrategyArgs(Model):
    lowest_latency_buffer: NonNegFloat = 0.0
    max_latency_list_size: int = Field(default=10, ge=1, le=100_000)
    ttl: PositiveTime | None = None


class RouterSettings(Model):
    """The router behaviour capsim simulates (LiteLLM's defaults)."""

    routing_strategy: str = "simple-shuffle"
    routing_strategy_args: _StrategyArgs = _StrategyArgs()
    num_retries: int = Field(default=0, ge=0, le=MAX_RETRIES)
    retry_after: BoundedTime = 0.0
    allowed_fails: int = Field(default=3, ge=0, le=1_000_000)
    cooldown_time: BoundedTime = 5.0
    disable_cooldowns: bool = False
    timeout: PositiveTime | None = None
    stream_timeout: PositiveTime | None = None
    fallbacks: list[dict[str, list[str]]] = Field(default=[], max_length=MAX_FALLBACK_ENTRIES)
    context_window_fallbacks: list[dict[str, list[str]]] = Field(
        default=[], max_length=MAX_FALLBACK_ENTRIES)
    default_fallbacks: list[str] = Field(default=[], max_length=MAX_FALLBACK_ENTRIES)
    max_fallbacks: int = Field(default=5, ge=0, le=MAX_RETRIES)
    enable_pre_call_checks: bool = False

    def fallback_map(self, which: str = "fallbacks") -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for entry in getattr(self, which):
            for group, targets in entry.items():
                out.setdefault(group, []).extend(targets)
        return out


@dataclass(frozen=True)
class Deployment:
    """One ``model_list`` entry."""

    index: int
    name: str  # model_info.id, else a readable unique label
    group: str  # model_name
    model: str  # litellm_params.model
    api_base: str | None
    rpm: int | None
    tpm: int | None
    weight: float | None
    order: int | None
    timeout_s: float | None
    stream_timeout_s: float | None
    input_cost_per_token: float | None
    output_cost_per_token: float | None
    max_input_tokens: int | None
    base_model: str | None = None  # model_info.base_model: the key LiteLLM prices it by

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0] if "/" in self.model else ""

    @property
    def model_tail(self) -> str:
        """The model name without its provider prefix."""
        return self.model.split("/", 1)[1] if "/" in self.model else self.model

    @property
    def self_hosted(self) -> bool:
        """A server you run (an ``api_base`` with an OpenAI-compatible or vLLM provider)."""
        return self.api_base is not None and self.provider in SELF_HOSTED_PROVIDERS


@dataclass(frozen=True)
class LitellmConfig:
    """A parsed LiteLLM config: deployments in file order, settings and warnings."""

    file: str
    deployments: list[Deployment]
    settings: RouterSettings
    warnings: list[str] = field(default_factory=list)

    @property
    def groups(self) -> dict[str, list[Deployment]]:
        out: dict[str, list[Deployment]] = {}
        for d in self.deployments:
            out.setdefault(d.group, []).append(d)
        return out

    def find(self, key: str) -> Deployment | None:
        """The deployment named ``key`` by id/label, ``api_base`` or model string (when
        that is unique)."""
        for attr in ("name", "api_base", "model"):
            hits = [d for d in self.deployments if getattr(d, attr) == key]
            if len(hits) == 1:
                return hits[0]
        return None


def load_litellm_config(path: str | Path, *, overrides: dict[str, Any] | None = None
                        ) -> LitellmConfig:
    """Read and validate a LiteLLM proxy config (``overrides`` replace router settings)."""
    file = str(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("a LiteLLM config must be a mapping with a 'model_list'", file=file)
    warnings: list[str] = []
    for section in ("router_settings", "litellm_settings", "general_settings",
                    "environment_variables"):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise ConfigError(f"must be a mapping of settings, got {type(data[section]).__name__}",
                              file=file, field=section)
    for key in data:
        if key not in _SECTIONS:
            warnings.append(f"{file}: {key}: not simulated (ignored){closest(key, _SECTIONS)}")
    deployments = _deployments(data.get("model_list"), file, warnings)
    settings = _settings(data, file, warnings, overrides or {})
    _check_groups(settings, {d.group for d in deployments}, file)
    return LitellmConfig(file, deployments, settings, warnings)


def _deployments(items: Any, file: str, warnings: list[str]) -> list[Deployment]:
    if not isinstance(items, list) or not items:
        raise ConfigError("needs a non-empty list of deployments", file=file, field="model_list")
    out: list[Deployment] = []
    ignored: set[str] = set()
    for i, item in enumerate(items):
        where = f"model_list[{i}]"
        if not isinstance(item, dict):
            raise ConfigError("must be a mapping with model_name and litellm_params",
                              file=file, field=where)
        group = item.get("model_name")
        if not isinstance(group, str) or not group:
            raise ConfigError("missing or empty (the model group name)", file=file,
                              field=f"{where}.model_name")
        raw = item.get("litellm_params")
        if not isinstance(raw, dict):
            raise ConfigError("missing (a mapping with at least 'model')", file=file,
                              field=f"{where}.litellm_params")
        for k in item:
            if k not in ("model_name", "litellm_params", "model_info"):
                ignored.add(f"model_list[*].{k}")
        params = validate(_Params, _known(raw, _PARAMS, "model_list[*].litellm_params", ignored),
                          file=file, prefix=f"{where}.litellm_params")
        info_raw = item.get("model_info") or {}
        if not isinstance(info_raw, dict):
            raise ConfigError("must be a mapping", file=file, field=f"{where}.model_info")
        info = validate(_Info, _known(info_raw, {"id", "max_input_tokens", "base_model"},
                                      "model_list[*].model_info", ignored),
                        file=file, prefix=f"{where}.model_info")
        out.append(Deployment(i, info.id or "", group, params.model, params.api_base,
                              params.rpm, params.tpm, params.weight, params.order,
                              params.timeout, params.stream_timeout,
                              params.input_cost_per_token, params.output_cost_per_token,
                              info.max_input_tokens, info.base_model))
    for key in sorted(ignored):
        why = ("credentials and headers do not affect the simulation"
               if key.rsplit(".", 1)[-1] in _CREDENTIALS else "not simulated")
        warnings.append(f"{file}: {key}: {why} (ignored)")
    return _named(out, file)


def _known(raw: dict, known: set[str], where: str, ignored: set[str]) -> dict:
    for k in raw:
        if k not in known:
            ignored.add(f"{where}.{k}")
    return {k: v for k, v in raw.items() if k in known}


def _named(deps: list[Deployment], file: str) -> list[Deployment]:
    """Give every deployment a unique readable name: its id, else its api_base or model
    (when unique), else ``group[i]``."""
    def unique(attr: str, d: Deployment) -> bool:
        value = getattr(d, attr)
        return value is not None and sum(getattr(o, attr) == value for o in deps) == 1

    out = []
    for d in deps:
        if d.name:
            name = d.name
        elif unique("api_base", d):
            name = d.api_base.split("://", 1)[-1].rstrip("/")
        elif unique("model", d):
            name = d.model
        else:
            name = f"{d.group}[{sum(o.group == d.group for o in deps[:d.index])}]"
        out.append(replace(d, name=name))
    names = [d.name for d in out]
    for d in out:
        if names.count(d.name) > 1:
            raise ConfigError(f"duplicate deployment id '{d.name}'", file=file,
                              field=f"model_list[{d.index}].model_info.id")
    return out


def _settings(data: dict, file: str, warnings: list[str], overrides: dict) -> RouterSettings:
    merged: dict[str, Any] = {}
    for section in ("litellm_settings", "router_settings"):  # router_settings wins
        block = data.get(section) or {}
        if not isinstance(block, dict):
            raise ConfigError("must be a mapping", file=file, field=section)
        for key, value in block.items():
            if key in _SETTINGS:
                merged[key] = value
            else:
                warnings.append(f"{file}: {section}.{key}: not simulated (ignored)"
                                f"{closest(key, _SETTINGS)}")
    for key in (data.get("general_settings") or {}):
        warnings.append(f"{file}: general_settings.{key}: proxy setting, not simulated "
                        f"(ignored)")
    if "request_timeout" in merged:
        merged.setdefault("timeout", merged.pop("request_timeout"))
        merged.pop("request_timeout", None)
    merged.update(overrides)
    strategy = merged.get("routing_strategy", "simple-shuffle")
    if strategy not in STRATEGIES:
        hint = closest(str(strategy), STRATEGIES)
        raise ConfigError(f"unknown routing strategy '{strategy}'{hint}; known: "
                          f"{', '.join(STRATEGIES)}", file=file,
                          field="router_settings.routing_strategy")
    return validate(RouterSettings, merged, file=file, prefix="router_settings")


def _check_groups(settings: RouterSettings, groups: set[str], file: str) -> None:
    for which in ("fallbacks", "context_window_fallbacks"):
        for i, entry in enumerate(getattr(settings, which)):
            for src, targets in entry.items():
                for name in [src, *targets]:
                    if name not in groups:
                        raise ConfigError(f"unknown model group '{name}'{closest(name, groups)}",
                                          file=file, field=f"router_settings.{which}[{i}]")
    for name in settings.default_fallbacks:
        if name not in groups:
            raise ConfigError(f"unknown model group '{name}'{closest(name, groups)}", file=file,
                              field="router_settings.default_fallbacks")

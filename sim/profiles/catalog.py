"""Catalog of GPUs and model architectures for deriving replica profiles.

What it models: the facts a step-time and memory derivation needs about a GPU (memory,
dense tensor-core FLOP/s per dtype, memory bandwidth, interconnect, observed rental price)
and about a transformer checkpoint (layers, widths, heads, experts, vocabulary; parameter
count, weight bytes and KV-cache bytes per token).

Sources (shipped in ``sim/profiles/data/``, see its README): GPU spec sheets from NVIDIA
AIConfigurator's ``systems/*.yaml`` plus datasheet entries for A10G/A10; Hugging Face
``config.json`` files; observed $/GPU-hour from SkyPilot catalog snapshots.

Assumptions:

* Parameter counts are computed from the architecture (projections, MLP/experts, norms,
  embeddings, untied LM head); biases and attention sinks are ignored (< 0.1%).
* Weight bytes: ``bf16`` 2 B/param, ``fp8`` 1 B, ``int4`` (AWQ/GPTQ, group 128) 0.5 B plus
  one 16-bit scale per 128 weights; embeddings, LM head and norms stay in 16 bits (as vLLM
  loads quantized checkpoints). gpt-oss expert weights are MXFP4 (4.25 bits) whatever the
  dtype; DeepSeek-V3 and ``*-FP8`` checkpoints are natively FP8.
* KV bytes per token: ``2 x KV heads x head dim x bytes`` per attention layer; DeepSeek-V3's
  multi-head latent attention stores one ``kv_lora_rank + rope dim`` latent per layer;
  gpt-oss's sliding-window layers (window 128) are counted apart (``sliding_layers``).
* Llama 4 and Gemma 4 (chunked/interleaved attention, per-layer head sizes, multimodal
  wrappers) are refused with a one-line error rather than modelled wrongly.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).parent / "data"
GIB = 1024**3

__all__ = [
    "DeriveError",
    "GpuSpec",
    "GpuPrice",
    "ModelSpec",
    "gpu_catalog",
    "get_gpu",
    "model_catalog",
    "get_model",
    "observed_price",
    "weight_bytes_per_param",
]


class DeriveError(ValueError):
    """A one-line, user-facing problem with a derivation's input (model, GPU, sizes)."""


# --------------------------------------------------------------------------------------
# GPUs


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type: per-GPU memory, dense FLOP/s per dtype, bandwidths, and provenance."""

    key: str
    name: str
    aliases: tuple[str, ...]
    memory_bytes: int
    mem_bw_bytes_per_s: float
    flops_per_s: dict[str, float]
    interconnect: str
    interconnect_bytes_per_s: float
    gpus_per_node: int
    sm_version: int
    measured: str | None
    efficiency_from: str | None
    price_gpu: tuple[str, ...]
    spec_source: str

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    def has_fp8(self) -> bool:
        """FP8 tensor cores (Ada, Hopper, Blackwell); Ampere runs FP8 weights as W8A16."""
        return "fp8" in self.flops_per_s


def _gpu_from_yaml(key: str, d: dict[str, Any]) -> GpuSpec:
    return GpuSpec(
        key=key, name=str(d["name"]), aliases=tuple(d.get("aliases") or ()),
        memory_bytes=int(d["memory_bytes"]), mem_bw_bytes_per_s=float(d["mem_bw_bytes_per_s"]),
        flops_per_s={k: float(v) for k, v in d["flops_per_s"].items()},
        interconnect=str(d["interconnect"]),
        interconnect_bytes_per_s=float(d["interconnect_bytes_per_s"]),
        gpus_per_node=int(d["gpus_per_node"]), sm_version=int(d["sm_version"]),
        measured=d.get("measured"), efficiency_from=d.get("efficiency_from"),
        price_gpu=tuple(p if isinstance(p, list) else [p]) if (p := d.get("price_gpu")) else (),
        spec_source=str(d.get("spec_source") or
                        f"AIConfigurator systems/{key}.yaml (ai-dynamo/aiconfigurator@095f58a5)"),
    )


@cache
def gpu_catalog() -> dict[str, GpuSpec]:
    """All catalog GPUs by key (``a100_sxm``, ``h100_sxm``, ...)."""
    raw = yaml.safe_load((DATA_DIR / "gpus.yaml").read_text())
    return {k: _gpu_from_yaml(k, v) for k, v in raw.items()}


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "").replace("_", "-")


def get_gpu(name: str | Path) -> GpuSpec:
    """A catalog GPU by key or alias (case-insensitive, ``_``/``-`` alike), or a spec file.

    A spec file is a YAML mapping with the fields of one ``gpus.yaml`` entry (name,
    memory_bytes, mem_bw_bytes_per_s, flops_per_s, interconnect, interconnect_bytes_per_s,
    gpus_per_node, sm_version, efficiency_from); its key is the file stem.
    """
    text = str(name)
    path = Path(text)
    if text.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise DeriveError(f"GPU spec file {text} does not exist")
        try:
            d = yaml.safe_load(path.read_text())
            spec = _gpu_from_yaml(path.stem, {"aliases": [], "price_gpu": None, **d})
        except (KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as exc:
            raise DeriveError(f"{text}: not a GPU spec ({type(exc).__name__}: {exc}); "
                              "needed: name, memory_bytes, mem_bw_bytes_per_s, flops_per_s, "
                              "interconnect, interconnect_bytes_per_s, gpus_per_node, "
                              "sm_version, efficiency_from") from None
        if spec.measured is None and spec.efficiency_from not in gpu_catalog():
            raise DeriveError(f"{text}: efficiency_from must name a measured catalog GPU "
                              f"({', '.join(_measured_keys())}), got {spec.efficiency_from!r}")
        return spec
    cat = gpu_catalog()
    want = _norm(text)
    for key, spec in cat.items():
        if want == _norm(key) or want in (_norm(a) for a in spec.aliases):
            return spec
    close = _closest(want, [*cat, *(a for s in cat.values() for a in s.aliases)])
    hint = f" (did you mean '{close}'?)" if close else ""
    raise DeriveError(f"unknown GPU '{text}'{hint}; known: {', '.join(cat)}")


def _measured_keys() -> list[str]:
    return [k for k, s in gpu_catalog().items() if s.measured]


def _closest(word: str, options: list[str]) -> str | None:
    got = difflib.get_close_matches(word, [_norm(o) for o in options], n=1, cutoff=0.6)
    if not got:
        return None
    return next(o for o in options if _norm(o) == got[0])


@dataclass(frozen=True)
class GpuPrice:
    """An observed rental price per GPU-hour and where it came from."""

    on_demand_usd_per_gpu_hour: float
    spot_usd_per_gpu_hour: float | None
    source: str
    instance: str
    gpu_count: int


def observed_price(gpu: GpuSpec, gpus: int = 1) -> GpuPrice | None:
    """The shipped observed price for ``gpu``: the instance with exactly ``gpus`` GPUs, else
    the smallest instance with more, else the largest; the cheapest among equals. None when
    the price data has no row for this GPU."""
    rows = [r for r in _price_rows() if r["gpu"] in gpu.price_gpu and r["usd_per_gpu_hour"]]
    if not rows:
        return None

    def rank(r: dict[str, str]) -> tuple[int, int, float]:
        n = int(r["gpu_count"])
        return (0 if n == gpus else 1 if n > gpus else 2,
                n if n >= gpus else -n, float(r["usd_per_gpu_hour"]))

    r = min(rows, key=rank)
    n = int(r["gpu_count"])
    spot = r.get("spot_usd_per_hour_instance_low") or ""
    spot_per_gpu = float(spot) / n if spot and "spot" in r["pricing_type"] else None
    if spot_per_gpu is not None and spot_per_gpu >= float(r["usd_per_gpu_hour"]):
        spot_per_gpu = None  # inconsistent catalog row (spot above on-demand): not used
    src = (f"{r['provider']} {r['instance_or_sku']} ({n}x {r['gpu']}) "
           f"${float(r['usd_per_gpu_hour']):.4g}/GPU-h; {r['source']}")
    return GpuPrice(float(r["usd_per_gpu_hour"]), spot_per_gpu, src, r["instance_or_sku"], n)


@cache
def _price_rows() -> list[dict[str, str]]:
    with open(DATA_DIR / "prices.csv", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------
# Models

_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5 + 2.0 / 128,
          "mxfp4": 4.25 / 8}


def weight_bytes_per_param(dtype: str) -> float:
    """Bytes per weight for a weight dtype (int4 includes one 16-bit scale per 128)."""
    try:
        return _BYTES[dtype]
    except KeyError:
        raise DeriveError(f"unknown weight dtype '{dtype}'; one of bf16, fp8, int4") from None


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer's architecture (see the module docstring)."""

    name: str
    source: str
    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width (per layer)
    vocab: int
    tie_embeddings: bool
    max_position_embeddings: int
    native_dtype: str = "bf16"  # checkpoint weights: bf16 or fp8
    # mixture of experts (0 = dense)
    experts: int = 0
    experts_per_token: int = 0
    moe_intermediate: int = 0
    shared_intermediate: int = 0  # total width of always-active shared experts
    dense_layers: int = 0  # leading layers with a dense MLP in an MoE model
    expert_dtype: str | None = None  # fixed expert weight dtype (gpt-oss: mxfp4)
    # multi-head latent attention (DeepSeek-V3)
    mla: bool = False
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # sliding-window attention layers (gpt-oss)
    sliding_layers: int = 0
    sliding_window: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    # -- shapes ----------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    @property
    def full_attention_layers(self) -> int:
        return self.layers - self.sliding_layers

    def attention_params(self) -> int:
        """Weights of one layer's attention projections."""
        h = self.hidden
        if self.mla:
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            q = (h * self.q_lora_rank + self.q_lora_rank * self.heads * qk
                 if self.q_lora_rank else h * self.heads * qk)
            kv = (h * (self.kv_lora_rank + self.qk_rope_head_dim)
                  + self.kv_lora_rank * self.heads * (self.qk_nope_head_dim + self.v_head_dim))
            return q + kv + self.heads * self.v_head_dim * h
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return h * q + 2 * h * kv + q * h

    def expert_params(self) -> int:
        """Weights of all routed experts of one MoE layer (gate, up, down each)."""
        return self.experts * 3 * self.hidden * self.moe_intermediate

    def params(self) -> dict[str, int]:
        """Parameter count by part: attention, mlp (dense + shared), experts, router,
        embeddings (input + untied output), norms."""
        dense_mlp = 3 * self.hidden * self.intermediate
        n_dense = self.layers - self.moe_layers
        shared = 3 * self.hidden * self.shared_intermediate
        emb = self.vocab * self.hidden * (1 if self.tie_embeddings else 2)
        return {
            "attention": self.layers * self.attention_params(),
            "mlp": n_dense * dense_mlp + self.moe_layers * shared,
            "experts": self.moe_layers * self.expert_params(),
            "router": self.moe_layers * self.hidden * self.experts,
            "embeddings": emb,
            "norms": self.layers * 2 * self.hidden + self.hidden,
        }

    @property
    def param_count(self) -> int:
        return sum(self.params().values())

    @property
    def active_param_count(self) -> int:
        """Parameters touched per token (top-k experts instead of all)."""
        p = self.params()
        if not self.is_moe:
            return sum(p.values())
        active_experts = (self.moe_layers * self.experts_per_token * 3 * self.hidden
                          * self.moe_intermediate)
        return sum(p.values()) - p["experts"] + active_experts

    def weight_bytes(self, dtype: str | None = None) -> float:
        """Bytes of all weights with GEMM weights in ``dtype`` (None = the checkpoint's)."""
        dtype = dtype or self.native_dtype
        p = self.params()
        b = weight_bytes_per_param(dtype)
        eb = weight_bytes_per_param(self.expert_dtype) if self.expert_dtype else b
        return ((p["attention"] + p["mlp"] + p["router"]) * b + p["experts"] * eb
                + (p["embeddings"] + p["norms"]) * 2.0)

    def kv_bytes_per_token(self, kv_bytes: float = 2.0, tp: int = 1) -> float:
        """KV-cache bytes per token of context on one GPU at tensor parallel ``tp``, over the
        full-attention layers (sliding-window layers hold at most ``sliding_window`` tokens
        per sequence and are counted by :meth:`sliding_kv_bytes_per_seq`). MLA's latent is
        replicated on every TP rank; other KV heads are split (replicated when fewer than
        ``tp``)."""
        if self.mla:
            return self.layers * (self.kv_lora_rank + self.qk_rope_head_dim) * kv_bytes
        kv_rank = max(1, self.kv_heads // tp)
        return self.full_attention_layers * 2 * kv_rank * self.head_dim * kv_bytes

    def sliding_kv_bytes_per_seq(self, kv_bytes: float = 2.0, tp: int = 1) -> float:
        """KV bytes one sequence holds in the sliding-window layers on one GPU."""
        if not self.sliding_layers:
            return 0.0
        kv_rank = max(1, self.kv_heads // tp)
        return self.sliding_layers * 2 * kv_rank * self.head_dim * kv_bytes * self.sliding_window

    def summary(self) -> str:
        kind = (f"MoE {self.experts} experts, top-{self.experts_per_token}" if self.is_moe
                else "dense")
        attn = "MLA" if self.mla else ("GQA" if self.kv_heads < self.heads else "MHA")
        return (f"{self.name}: {self.param_count / 1e9:.1f}B params "
                f"({self.active_param_count / 1e9:.1f}B active), {kind}, {self.layers} layers, "
                f"hidden {self.hidden}, {attn} {self.heads}/{self.kv_heads} heads x "
                f"{self.head_dim}, KV {self.kv_bytes_per_token() / 1024:.0f} KiB/token (bf16)")


# Catalog names -> config files in data/models/ (aliases are matched case-insensitively).
_MODEL_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "llama-3.1-8b": ("meta-llama--Meta-Llama-3.1-8B", ("llama-3-8b", "llama3-8b", "llama-8b",
                                                       "meta-llama/meta-llama-3.1-8b",
                                                       "meta-llama/llama-3.1-8b-instruct")),
    "llama-3.1-70b": ("meta-llama--Meta-Llama-3.1-70B", ("llama-3-70b", "llama3-70b",
                                                         "llama-3.3-70b",
                                                         "meta-llama/meta-llama-3.1-70b",
                                                         "meta-llama/llama-3.1-70b-instruct")),
    "llama-3.1-70b-fp8": ("nvidia--Llama-3.1-70B-Instruct-FP8",
                          ("nvidia/llama-3.1-70b-instruct-fp8",)),
    "llama-3.1-405b": ("meta-llama--Meta-Llama-3.1-405B", ("llama-405b",
                                                           "meta-llama/meta-llama-3.1-405b")),
    "llama-2-7b": ("meta-llama--Llama-2-7b-hf", ("meta-llama/llama-2-7b-hf",)),
    "llama-2-70b": ("meta-llama--Llama-2-70b-hf", ("llama2-70b", "meta-llama/llama-2-70b-hf")),
    "codellama-34b": ("codellama--CodeLlama-34b-hf", ("codellama/codellama-34b-hf",)),
    "mistral-7b": ("mistralai--Mistral-7B-Instruct-v0.2",
                   ("mistral-7b-instruct", "mistralai/mistral-7b-instruct-v0.2")),
    "mixtral-8x7b": ("mistralai--Mixtral-8x7B-v0.1", ("mistralai/mixtral-8x7b-v0.1",
                                                      "mixtral-8x7b-instruct")),
    "mixtral-8x22b": ("mistralai--Mixtral-8x22B-v0.1", ("mistralai/mixtral-8x22b-v0.1",)),
    "qwen2.5-72b": ("Qwen--Qwen2.5-72B-Instruct", ("qwen-2.5-72b", "qwen/qwen2.5-72b-instruct")),
    "qwen3-8b": ("Qwen--Qwen3-8B", ("qwen/qwen3-8b",)),
    "qwen3-32b": ("Qwen--Qwen3-32B", ("qwen/qwen3-32b",)),
    "qwen3-32b-fp8": ("Qwen--Qwen3-32B-FP8", ("qwen/qwen3-32b-fp8",)),
    "qwen3-30b-a3b": ("Qwen--Qwen3-30B-A3B", ("qwen/qwen3-30b-a3b",)),
    "qwen3-235b-a22b": ("Qwen--Qwen3-235B-A22B", ("qwen/qwen3-235b-a22b",)),
    "qwen3-235b-a22b-fp8": ("Qwen--Qwen3-235B-A22B-FP8", ("qwen/qwen3-235b-a22b-fp8",)),
    "deepseek-v3": ("deepseek-ai--DeepSeek-V3", ("deepseek-ai/deepseek-v3", "deepseek-r1")),
    "gpt-oss-120b": ("openai--gpt-oss-120b", ("openai/gpt-oss-120b",)),
    "gpt-oss-20b": ("openai--gpt-oss-20b", ("openai/gpt-oss-20b",)),
    "llama-4-scout": ("meta-llama--Llama-4-Scout-17B-16E-Instruct",
                      ("meta-llama/llama-4-scout-17b-16e-instruct",)),
    "gemma-4-26b-a4b": ("google--gemma-4-26B-A4B", ("google/gemma-4-26b-a4b",)),
}


def model_catalog() -> dict[str, str]:
    """Catalog model names -> the shipped config file's stem."""
    return {k: v[0] for k, v in _MODEL_FILES.items()}


def get_model(name: str | Path) -> ModelSpec:
    """A model from a catalog name/alias, a Hugging Face ``config.json`` path, or a folder
    holding one. Unknown names and unsupported architectures raise :class:`DeriveError`."""
    text = str(name).strip()
    path = Path(text)
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.suffix == ".json" or path.is_file():
        if not path.is_file():
            raise DeriveError(f"model config {text} does not exist")
        try:
            cfg = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DeriveError(f"{text}: not a readable config.json ({exc})") from None
        return model_from_config(cfg, name=path.parent.name if path.name == "config.json"
                                 else path.stem.removesuffix("_config"), source=text)
    want = text.lower()
    for key, (stem, aliases) in _MODEL_FILES.items():
        if want in (key, stem.lower(), stem.lower().replace("--", "/"), *aliases):
            return _catalog_model(key)
    close = _closest(want, list(_MODEL_FILES))
    hint = f" (did you mean '{close}'?)" if close else ""
    raise DeriveError(f"unknown model '{text}'{hint}; give a config.json path or one of: "
                      f"{', '.join(_MODEL_FILES)}")


@cache
def _catalog_model(key: str) -> ModelSpec:
    stem = _MODEL_FILES[key][0]
    cfg = json.loads((DATA_DIR / "models" / f"{stem}_config.json").read_text())
    return model_from_config(cfg, name=key, source=f"sim/profiles/data/models/{stem}_config.json")


def _req(cfg: dict[str, Any], key: str, where: str, *alts: str) -> int:
    for k in (key, *alts):
        v = cfg.get(k)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
                raise DeriveError(f"{where}: field {k} = {v!r} must be a positive number")
            return int(v)
    raise DeriveError(f"{where}: config has no {key} field (not a decoder-only transformer "
                      "config.json?)")


def model_from_config(cfg: dict[str, Any], *, name: str, source: str) -> ModelSpec:
    """A :class:`ModelSpec` from a Hugging Face ``config.json`` mapping."""
    if not isinstance(cfg, dict):
        raise DeriveError(f"{source}: config.json must be a JSON object")
    mtype = str(cfg.get("model_type", ""))
    if mtype in ("llama4", "gemma4", "gemma3") or "text_config" in cfg:
        raise DeriveError(f"{source}: model_type '{mtype}' (multimodal wrapper with chunked or "
                          "per-layer attention variants) is not modelled by capsim's derivation")
    layers = _req(cfg, "num_hidden_layers", source, "n_layer", "num_layers")
    hidden = _req(cfg, "hidden_size", source, "n_embd", "d_model")
    heads = _req(cfg, "num_attention_heads", source, "n_head")
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    vocab = _req(cfg, "vocab_size", source)
    inter = _req(cfg, "intermediate_size", source, "ffn_dim")
    quant = cfg.get("quantization_config") or {}
    qmethod = str(quant.get("quant_method", "")).lower()
    native = "fp8" if qmethod in ("fp8", "compressed-tensors", "modelopt") else "bf16"
    if qmethod in ("awq", "gptq"):
        native = "int4"
    if not quant and "fp8" in name.lower():  # e.g. NVIDIA's ModelOpt FP8 exports keep the
        native = "fp8"  # quantization in a separate hf_quant_config.json
    kw: dict[str, Any] = {}
    notes: list[str] = []
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts")
                  or cfg.get("n_routed_experts") or 0)
    if experts:
        topk = int(cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or 0)
        if topk <= 0:
            raise DeriveError(f"{source}: MoE config with {experts} experts has no "
                              "num_experts_per_tok")
        moe_inter = int(cfg.get("moe_intermediate_size") or inter)
        shared = int(cfg.get("n_shared_experts") or 0) * moe_inter
        shared += int(cfg.get("shared_expert_intermediate_size") or 0)
        kw.update(experts=experts, experts_per_token=topk, moe_intermediate=moe_inter,
                  shared_intermediate=shared,
                  dense_layers=int(cfg.get("first_k_dense_replace") or 0))
        if cfg.get("mlp_only_layers"):
            raise DeriveError(f"{source}: mlp_only_layers (mixed dense/MoE layers) is not "
                              "modelled")
    if mtype == "gpt_oss":
        kw["expert_dtype"] = "mxfp4"
        types = cfg.get("layer_types") or []
        kw["sliding_layers"] = sum(1 for t in types if t == "sliding_attention")
        kw["sliding_window"] = int(cfg.get("sliding_window") or 128)
        notes.append("gpt-oss: experts MXFP4 (4.25 bit); sliding-window layers hold "
                     f"<= {kw['sliding_window']} tokens per sequence; attention sinks ignored")
    elif cfg.get("sliding_window") and cfg.get("use_sliding_window", True) and mtype not in (
            "qwen2", "qwen3", "qwen3_moe"):
        notes.append(f"sliding_window={cfg['sliding_window']} ignored (all layers treated as "
                     "full attention: conservative for long contexts)")
    if cfg.get("kv_lora_rank"):
        kw.update(mla=True, q_lora_rank=int(cfg.get("q_lora_rank") or 0),
                  kv_lora_rank=int(cfg["kv_lora_rank"]),
                  qk_nope_head_dim=int(cfg.get("qk_nope_head_dim") or 128),
                  qk_rope_head_dim=int(cfg.get("qk_rope_head_dim") or 64),
                  v_head_dim=int(cfg.get("v_head_dim") or 128))
        head_dim = kw["qk_nope_head_dim"] + kw["qk_rope_head_dim"]
        notes.append("MLA: KV cache = one (kv_lora_rank + rope) latent per layer, replicated "
                     "on every TP rank; attention costed by roofline with measured "
                     "efficiencies; the multi-token-prediction layer is not loaded")
    if heads % kv_heads:
        raise DeriveError(f"{source}: num_attention_heads {heads} is not a multiple of "
                          f"num_key_value_heads {kv_heads}")
    return ModelSpec(
        name=name, source=source, model_type=mtype, layers=layers, hidden=hidden, heads=heads,
        kv_heads=kv_heads, head_dim=head_dim, intermediate=inter, vocab=vocab,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        max_position_embeddings=int(cfg.get("max_position_embeddings") or 4096),
        native_dtype=native, notes=tuple(notes), **kw)


def fmt_gib(n_bytes: float) -> str:
    """Bytes as GiB with one decimal."""
    return f"{n_bytes / GIB:.1f} GiB" if math.isfinite(n_bytes) else "inf"

"""Derive a step-level replica profile for any catalog model on any catalog GPU.

What it models: one vLLM (V1) replica of ``model`` on ``tp`` GPUs with tensor parallelism,
described in the step-time format shared with the step-level replica model
(``scheduler``, ``step_time``, ``overheads`` plus the usual profile fields).

How (per engine step of N scheduled tokens, times on one GPU = the step's wall time):

* **linear(N)** (tabulated at ``step_time.tokens``): for every layer the GEMMs with TP-split
  shapes -- QKV (or MLA's q/kv down- and up-projections), output projection, gated MLP or
  the routed experts (fused-MoE kernel) plus shared experts -- the LM head on the sampled
  rows (``min(N, max_num_seqs)``: logits are computed only for each sequence's last token),
  two all-reduces of ``N x hidden`` values per layer when ``tp > 1``, the per-token part of
  the attention kernels, and the memory-bound elementwise kernels (RMSNorm x 2, SiLU-and-mul,
  rotary embedding, KV-cache write: one read and one write of their tensors at 70% of the
  memory bandwidth, an assumption).
* **GEMM times** come from vLLM kernel measurements (NVIDIA AIConfigurator, shipped in
  ``data/gemm.parquet``), made non-decreasing in m (a running minimum from the largest m
  down removes noise where fewer rows measured slower): trilinear interpolation of log
  latency over log m, log n, log k; beyond the measured range the time is scaled linearly
  with the dimension (compute-bound).
  Weight dtypes the table lacks (FP8 on Ampere, i.e. W8A16; INT4 W4A16; MXFP4 experts) are
  the measured BF16 time times the ratio of the two rooflines ``max(FLOPs/peak,
  bytes/bandwidth)`` on the same GPU. GPUs without measurements use the measured GPU named
  by their ``efficiency_from`` (same architecture where possible) times the ratio of the
  two GPUs' rooflines: i.e. the measured kernel efficiency (time / roofline) is kept.
* **Fused MoE** from the measured fused-MoE table (``data/moe.parquet``; balanced routing,
  no expert parallelism) for the model's expert shape or else the closest measured shape,
  scaled by the roofline ratio (active experts ``E(1-(1-k/E)^N)`` for the weight bytes).
* **Attention** (``data/attention.csv``): per layer, fits ``a + b*batch + c*context`` to the
  decode (generation) kernel and ``a + b*tokens + c*pairs`` to the prefill (context) kernel,
  for the model's heads/TP, KV heads/TP and head dim (nearest measured config, scaled by
  KV bytes for decode and by query FLOPs for prefill). ``c`` gives
  ``decode_attention_s_per_token`` / ``prefill_attention_s_per_token2``; ``b`` goes into
  ``per_seq_s`` (decode) or ``linear`` (prefill); ``a`` (a kernel launch per layer) into
  ``linear``. MLA (DeepSeek-V3) attention is a roofline on the latent cache with the
  efficiency of the GPU's measured MHA kernels; gpt-oss sliding-window layers cost a
  constant ``window`` tokens per sequence.
* **All-reduce** from vLLM's custom all-reduce measured under CUDA graphs
  (``data/allreduce.csv``), log-log interpolated in message size; GPUs without it (PCIe
  parts, L40S) use ``latency + 2(p-1)/p x bytes / (link bandwidth x efficiency)`` with the
  latency and efficiency of the measured A100/H100 tables.
* **per_step_s** (CPU: scheduling, input preparation, sampling, output processing) is a
  stated constant, see ``ENGINE_DEFAULTS``; overheads per request likewise.
* **Memory**: weights per GPU (TP-split, replicated norms), activations of a
  ``max_num_batched_tokens`` forward pass (vLLM's profiling run), logits of
  ``max_num_seqs`` rows, a CUDA context/graph reserve and NCCL buffers; the rest of
  ``gpu_memory_utilization x memory`` holds KV blocks of ``block_size`` tokens.

A derivation that cannot run (model does not fit, TP does not divide the heads, no price)
raises :class:`~sim.profiles.catalog.DeriveError` with one line saying what would work.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .catalog import (
    DATA_DIR,
    GIB,
    DeriveError,
    GpuSpec,
    ModelSpec,
    get_gpu,
    get_model,
    gpu_catalog,
    observed_price,
    weight_bytes_per_param,
)
from .steptime import derived_uncertainty

__all__ = ["derive", "derive_from_mapping", "DERIVE_KEYS", "ENGINE_DEFAULTS", "gemm_s",
           "memory_plan", "step_terms"]

DTYPES = ("bf16", "fp8", "int4")
KV_DTYPES = ("auto", "bf16", "fp8")

# Engine constants by version (assumptions, stated in every derived profile's `source`).
ENGINE_DEFAULTS: dict[str, dict[str, Any]] = {
    "vllm-0.10": {
        "engine": "vllm-0.10 (V1)",
        # CPU time per step not hidden behind the GPU: scheduler, input preparation,
        # sampler launch, output processing. vLLM's V1 announcement (blog, 2025-01-27) names
        # this overhead as the bottleneck for an 8B model on H100 whose GPU step is ~5 ms;
        # V1 overlaps part of it. 1.5 ms, +0.3 ms with TP workers (shared-memory broadcast).
        "per_step_s": 1.5e-3,
        "per_step_tp_s": 0.3e-3,
        # CPU per scheduled sequence (scheduler bookkeeping, input prep, detokenize): 10 us.
        "per_seq_cpu_s": 10e-6,
        # API server: HTTP + request validation + hand-off to the engine core (~5 ms);
        # tokenization ~2.2 us/token (a published 100k-token tokenization took 220 ms on one
        # CPU core, andyluo7.github.io 2026-05-14); detokenize + HTTP close 2 ms.
        "pre_s": 5e-3,
        "pre_s_per_input_token": 2.2e-6,
        "post_s": 2e-3,
        "block_size": 16,
        "watermark": 0.01,
        "prefix_caching": True,
        # CUDA context, cuBLAS/NCCL workspaces and CUDA-graph pool per GPU.
        "framework_reserve_bytes": 1.5 * GIB,
    },
}
ENGINE_ALIASES = {"vllm-0.10": "vllm-0.10", "0.10": "vllm-0.10", "v1": "vllm-0.10",
                  "vllm": "vllm-0.10", "vllm-v1": "vllm-0.10", "vllm-0.11": "vllm-0.10"}
# NCCL buffers per GPU by TP size (AIConfigurator systems/*.yaml misc.nccl_mem).
NCCL_BYTES = {1: 0, 2: 358612992, 4: 411041792, 8: 411041792}
ELEMENTWISE_BW_EFFICIENCY = 0.7
KNOTS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]


# --------------------------------------------------------------------------------------
# Measured tables


@dataclass
class _Grid:
    m: np.ndarray  # log values
    n: np.ndarray
    k: np.ndarray
    log_t: np.ndarray  # [m, n, k]


@cache
def _gemm_tables() -> dict[tuple[str, str], _Grid]:
    t = pq.read_table(DATA_DIR / "gemm.parquet").to_pydict()
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(t["gpu"], t["dtype"], strict=True)):
        groups[key].append(i)
    out = {}
    for key, idx in groups.items():
        m = np.array([t["m"][i] for i in idx])
        n = np.array([t["n"][i] for i in idx])
        k = np.array([t["k"][i] for i in idx])
        lat = np.array([t["latency_s"][i] for i in idx], dtype=np.float64)
        um, un, uk = np.unique(m), np.unique(n), np.unique(k)
        grid = np.full((um.size, un.size, uk.size), np.nan)
        grid[np.searchsorted(um, m), np.searchsorted(un, n), np.searchsorted(uk, k)] = lat
        if np.isnan(grid).any():
            raise RuntimeError(f"gemm.parquet: incomplete grid for {key}")
        # Measurement noise makes a few small-m cells slower than larger m (e.g. H100 BF16
        # 8192 x 8192: 51.6 us at m=1, 45.8 us at m=2). A GEMM with fewer rows can always
        # be run padded, so take the running minimum from the largest m down.
        grid = np.minimum.accumulate(grid[::-1], axis=0)[::-1]
        out[key] = _Grid(np.log(um), np.log(un), np.log(uk), np.log(grid))
    return out


def _bracket(axis: np.ndarray, x: float) -> tuple[int, float, float]:
    """Index i, weight w of axis[i+1] (clamped to the axis) and the factor for x beyond the
    top end (linear scaling), for log-space interpolation."""
    lx = math.log(x)
    if lx >= axis[-1]:
        return axis.size - 2, 1.0, math.exp(lx - axis[-1])
    if lx <= axis[0]:
        return 0, 0.0, 1.0
    i = int(np.searchsorted(axis, lx, side="right") - 1)
    return i, (lx - axis[i]) / (axis[i + 1] - axis[i]), 1.0


def _interp_gemm(g: _Grid, m: float, n: float, k: float) -> float:
    (i, wi, fi), (j, wj, fj), (l, wl, fl) = _bracket(g.m, m), _bracket(g.n, n), _bracket(g.k, k)
    c = g.log_t[i:i + 2, j:j + 2, l:l + 2]
    c = c[0] * (1 - wi) + c[1] * wi
    c = c[0] * (1 - wj) + c[1] * wj
    v = c[0] * (1 - wl) + c[1] * wl
    return float(math.exp(v)) * fi * fj * fl


def _ref_gpu(gpu: GpuSpec) -> GpuSpec:
    if gpu.measured:
        return gpu
    return gpu_catalog()[gpu.efficiency_from or "h100_sxm"]


def _flops(gpu: GpuSpec, act: str) -> float:
    return gpu.flops_per_s.get(act) or gpu.flops_per_s["bf16"]


def _act_dtype(gpu: GpuSpec, wdtype: str) -> str:
    """Compute dtype of a GEMM with weights in ``wdtype``: FP8 x FP8 where the GPU has FP8
    tensor cores, else BF16 activations (weight-only quantization: W8A16, W4A16)."""
    return "fp8" if wdtype == "fp8" and gpu.has_fp8() else "bf16"


# Constant latency of a memory-bound kernel (AIConfigurator systems/*.yaml
# mem_empirical_constant_latency): keeps launch-bound tiny kernels from scaling with bandwidth.
KERNEL_FLOOR_S = 3e-6
# Per-hop latency of a PCIe peer-to-peer transfer (AIConfigurator systems/*.yaml p2p_latency).
P2P_LATENCY_S = 10e-6


def _roofline(gpu: GpuSpec, flops: float, bytes_: float, act: str) -> float:
    return max(flops / _flops(gpu, act), bytes_ / gpu.mem_bw_bytes_per_s) + KERNEL_FLOOR_S


def gemm_s(gpu: GpuSpec, m: float, n: float, k: float, wdtype: str = "bf16") -> float:
    """Seconds for one ``[m x k] @ [k x n]`` GEMM with weights in ``wdtype`` on ``gpu``."""
    ref = _ref_gpu(gpu)
    act = _act_dtype(gpu, wdtype)
    tdt = "fp8" if act == "fp8" and (ref.measured, "fp8") in _gemm_tables() else "bf16"
    t_ref = _interp_gemm(_gemm_tables()[(ref.measured, tdt)], m, n, k)
    if ref is gpu and tdt == wdtype:
        return t_ref
    ab_t, ab_r = (1.0 if act == "fp8" else 2.0), (1.0 if tdt == "fp8" else 2.0)
    target = _roofline(gpu, 2 * m * n * k, m * k * ab_t + n * k * weight_bytes_per_param(wdtype)
                       + m * n * 2, act)
    table = _roofline(ref, 2 * m * n * k, m * k * ab_r + n * k * (1.0 if tdt == "fp8" else 2.0)
                      + m * n * 2, tdt)
    return t_ref * target / table


@cache
def _moe_tables() -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    t = pq.read_table(DATA_DIR / "moe.parquet").to_pydict()
    groups: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for i in range(len(t["latency_s"])):
        key = (t["gpu"][i], t["dtype"][i], t["hidden"][i], t["inter"][i], t["topk"][i],
               t["experts"][i], t["tp"][i])
        groups[key].append((t["tokens"][i], t["latency_s"][i]))
    out = {}
    for key, pts in groups.items():
        pts.sort()
        lat = np.minimum.accumulate(np.array([p[1] for p in pts])[::-1])[::-1]  # as for GEMMs
        out[key] = (np.log([p[0] for p in pts]), np.log(lat))
    return out


def _moe_roof(gpu: GpuSpec, tokens: float, hidden: int, inter_rank: float, topk: int,
              experts: int, wbytes: float, act: str) -> float:
    active = experts * (1 - (1 - topk / experts) ** tokens)
    flops = 2 * tokens * topk * 3 * hidden * inter_rank
    bytes_ = active * 3 * hidden * inter_rank * wbytes + tokens * hidden * 2 * 2
    return _roofline(gpu, flops, bytes_, act)


def moe_s(gpu: GpuSpec, model: ModelSpec, tokens: float, tp: int,
          wdtype: str) -> tuple[float, str]:
    """Seconds for one layer's routed experts (fused MoE) with ``tokens`` tokens, and a note
    on which measurement it came from: the model's expert shape at this TP in the expert
    weight dtype where measured, else the nearest measured shape (log distance in hidden,
    per-rank width, top-k, experts; BF16 when the dtype has none), roofline-scaled."""
    ref = _ref_gpu(gpu)
    wd = model.expert_dtype or wdtype
    act = "bf16" if wd in ("mxfp4", "int4") else _act_dtype(gpu, wd)
    tables = _moe_tables()
    want = (model.hidden, model.moe_intermediate, model.experts_per_token, model.experts)

    def dist(k: tuple) -> float:
        return (abs(math.log(k[2] / want[0])) + abs(math.log(k[3] / k[6] * tp / want[1]))
                + abs(math.log(k[4] / want[2])) + abs(math.log(k[5] / want[3])))

    cands = [k for k in tables if k[0] == ref.measured]
    best = None
    for dt in dict.fromkeys([wd, "bf16"]):
        same_dt = [k for k in cands if k[1] == dt]
        exact = [k for k in same_dt if k[2:6] == want and k[6] == tp]
        if exact:
            best = exact[0]
            break
        if same_dt and best is None:
            best = min(same_dt, key=dist)
    if best is None:
        raise DeriveError(f"no fused-MoE measurements for {ref.key}")
    lx, ly = tables[best]
    x = math.log(max(tokens, 1.0))
    t_ref = float(math.exp(np.interp(x, lx, ly)))
    if x > lx[-1]:
        t_ref *= math.exp(x - lx[-1])
    _, dt, h0, i0, k0, e0, tp0 = best
    act0 = "fp8" if dt == "fp8" else "bf16"
    target = _moe_roof(gpu, tokens, model.hidden, model.moe_intermediate / tp,
                       model.experts_per_token, model.experts, weight_bytes_per_param(wd), act)
    table = _moe_roof(ref, tokens, h0, i0 / tp0, k0, e0, weight_bytes_per_param(dt), act0)
    exact = best[2:6] == want and tp0 == tp and dt == wd and ref is gpu
    note = (f"fused MoE measured on {ref.key} ({dt}, E={e0}, k={k0}, hidden {h0}, "
            f"inter {i0}, tp {tp0})" + ("" if exact else ", roofline-scaled"))
    return t_ref * target / table, note


@cache
def _attention_rows() -> list[dict[str, Any]]:
    with open(DATA_DIR / "attention.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("num_heads", "num_kv_heads", "head_dim", "points"):
            r[k] = int(r[k])
        for k in ("const_s", "per_unit_s", "per_token_s", "median_rel_err"):
            r[k] = float(r[k])
    return rows


def _attention_fit(ref: GpuSpec, phase: str, heads: int, kv_heads: int, head_dim: int,
                   kv_dtype: str) -> dict[str, Any]:
    rows = [r for r in _attention_rows() if r["gpu"] == ref.measured and r["phase"] == phase]
    kv_rows = [r for r in rows if r["kv_dtype"] == kv_dtype] or [
        r for r in rows if r["kv_dtype"] == "bf16"]

    def dist(r: dict[str, Any]) -> float:
        return (2 * abs(math.log(r["head_dim"] / head_dim)) + abs(math.log(r["num_heads"] / heads))
                + abs(math.log(r["num_kv_heads"] / kv_heads)))

    return min(kv_rows, key=dist)


@cache
def _allreduce_rows() -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    groups: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
    with open(DATA_DIR / "allreduce.csv", newline="") as f:
        for r in csv.DictReader(f):
            groups[(r["gpu"], int(r["num_gpus"]))].append((int(r["message_elements"]),
                                                           float(r["latency_s"])))
    return {k: (np.log([p[0] for p in sorted(v)]), np.log([p[1] for p in sorted(v)]))
            for k, v in groups.items()}


def _ring_params(tp: int) -> tuple[float, float]:
    """Latency and bandwidth efficiency of a ring all-reduce, learned from the measured
    NVLink tables (medians over A100/H100/H200/B200): small-message latency, and the
    bus-bandwidth efficiency at the largest message."""
    lat, eff = [], []
    for (gpu, p), (lx, ly) in _allreduce_rows().items():
        if p != tp:
            continue
        spec = gpu_catalog()[gpu]
        lat.append(math.exp(ly[0]))
        size = math.exp(lx[-1]) * 2
        eff.append(2 * (p - 1) / p * size / spec.interconnect_bytes_per_s / math.exp(ly[-1]))
    return float(np.median(lat)), float(np.median(eff))


def allreduce_s(gpu: GpuSpec, elements: float, tp: int) -> tuple[float, str]:
    """Seconds for one all-reduce of ``elements`` BF16 values over ``tp`` GPUs."""
    if tp == 1:
        return 0.0, ""
    table = _allreduce_rows().get((gpu.measured or "", tp))
    if table is not None:
        lx, ly = table
        x = math.log(max(elements, 1.0))
        t = float(math.exp(np.interp(x, lx, ly)))
        if x > lx[-1]:
            t *= math.exp(x - lx[-1])
        return t, f"vLLM custom all-reduce measured on {gpu.key}"
    lat, eff = _ring_params(tp)
    hops = ""
    if gpu.interconnect != "nvlink":
        # no NVLink: NCCL ring, 2(p-1) peer-to-peer steps of P2P_LATENCY_S each
        lat += 2 * (tp - 1) * P2P_LATENCY_S
        hops = f" + {2 * (tp - 1)} PCIe hops x {P2P_LATENCY_S * 1e6:.0f} us"
    t = lat + 2 * (tp - 1) / tp * elements * 2 / (gpu.interconnect_bytes_per_s * eff)
    return t, (f"ring all-reduce on {gpu.interconnect} {gpu.interconnect_bytes_per_s / 1e9:.0f} "
               f"GB/s with latency {lat * 1e6:.1f} us{hops} and efficiency {eff:.2f} learned "
               "from the measured NVLink tables")


# --------------------------------------------------------------------------------------
# The derivation


@dataclass(frozen=True)
class _Setup:
    model: ModelSpec
    gpu: GpuSpec
    tp: int
    dtype: str
    kv_dtype: str
    max_num_seqs: int

    @property
    def kv_bytes(self) -> float:
        return 1.0 if self.kv_dtype == "fp8" else 2.0

    @property
    def heads_rank(self) -> int:
        return self.model.heads // self.tp

    @property
    def kv_rank(self) -> int:
        return max(1, self.model.kv_heads // self.tp)


def _layer_linear_s(s: _Setup, n: float) -> tuple[float, dict[str, float], list[str]]:
    """Seconds of all token-proportional work of one step of ``n`` tokens, by part."""
    m, g, tp, dt = s.model, s.gpu, s.tp, s.dtype
    parts: dict[str, float] = defaultdict(float)
    notes: list[str] = []
    h = m.hidden
    # attention projections
    if m.mla:
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        per = 0.0
        if m.q_lora_rank:
            per += gemm_s(g, n, m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim, h, dt)
            per += gemm_s(g, n, s.heads_rank * qk, m.q_lora_rank, dt)
        else:
            per += gemm_s(g, n, s.heads_rank * qk + m.kv_lora_rank + m.qk_rope_head_dim, h, dt)
        per += gemm_s(g, n, s.heads_rank * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank,
                      dt)
        per += gemm_s(g, n, h, s.heads_rank * m.v_head_dim, dt)
        parts["attention projections"] = per * m.layers
    else:
        qkv = (s.heads_rank + 2 * s.kv_rank) * m.head_dim
        parts["attention projections"] = m.layers * (
            gemm_s(g, n, qkv, h, dt) + gemm_s(g, n, h, s.heads_rank * m.head_dim, dt))
    # MLP / MoE
    n_dense = m.layers - m.moe_layers
    if n_dense:
        ir = m.intermediate / tp
        parts["dense MLP"] = n_dense * (gemm_s(g, n, 2 * ir, h, dt) + gemm_s(g, n, h, ir, dt))
    if m.is_moe:
        t_moe, note = moe_s(g, m, n, tp, dt)
        notes.append(note)
        router = gemm_s(g, n, m.experts, h, "bf16")
        parts["MoE experts"] = m.moe_layers * (t_moe + router)
        if m.shared_intermediate:
            sr = m.shared_intermediate / tp
            parts["shared experts"] = m.moe_layers * (gemm_s(g, n, 2 * sr, h, dt)
                                                      + gemm_s(g, n, h, sr, dt))
    # LM head on the sampled rows only
    parts["LM head"] = gemm_s(g, min(n, s.max_num_seqs), m.vocab / tp, h, "bf16")
    # all-reduces
    if tp > 1:
        t_ar, note = allreduce_s(g, n * h, tp)
        parts["all-reduce"] = 2 * m.layers * t_ar
        notes.append(note)
    # elementwise kernels: RMSNorm x2 (read + write hidden), SiLU-and-mul (read 2I, write I),
    # rotary (q, k), KV-cache write (k, v), residual adds fused in the norms
    if m.is_moe:
        inter_e = (m.experts_per_token * m.moe_intermediate + m.shared_intermediate) / tp
    else:
        inter_e = m.intermediate / tp
    q_w = s.heads_rank * m.head_dim
    kv_w = (m.kv_lora_rank + m.qk_rope_head_dim) if m.mla else 2 * s.kv_rank * m.head_dim
    per_token = 2 * (4 * h + 3 * inter_e + 2 * (q_w + kv_w)) + kv_w * s.kv_bytes
    parts["elementwise"] = (m.layers * n * per_token
                            / (g.mem_bw_bytes_per_s * ELEMENTWISE_BW_EFFICIENCY))
    return sum(parts.values()), dict(parts), notes


def _attention_terms(s: _Setup) -> dict[str, Any]:
    """Per-step attention coefficients summed over layers: const (per step), per_seq
    (decode), per_context_token (decode), per_token (prefill), per_pair (prefill)."""
    m, g = s.model, s.gpu
    ref = _ref_gpu(g)
    kvd = "fp8" if s.kv_dtype == "fp8" else "bf16"
    bw_ratio = ref.mem_bw_bytes_per_s / g.mem_bw_bytes_per_s
    fl_ratio = _flops(ref, "bf16") / _flops(g, "bf16")
    if m.mla:
        # Roofline on the latent cache with the efficiency of the measured MHA kernels.
        d_fit = _attention_fit(ref, "decode", 64, 8, 128, kvd)
        p_fit = _attention_fit(ref, "prefill", 64, 8, 128, "bf16")
        eff_mem = (2 * 8 * 128 * s.kv_bytes / ref.mem_bw_bytes_per_s) / d_fit["per_token_s"]
        eff_c = (4 * 64 * 128 / _flops(ref, "bf16")) / p_fit["per_token_s"]
        lat_bytes = (m.kv_lora_rank + m.qk_rope_head_dim) * s.kv_bytes
        dec_tok = lat_bytes / (g.mem_bw_bytes_per_s * min(eff_mem, 1.0))
        pair_flops = 2 * s.heads_rank * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
        pre_pair = pair_flops / (_flops(g, "bf16") * min(eff_c, 1.0))
        src = (f"MLA attention: roofline on the {lat_bytes:.0f}-byte latent per token and "
               f"{pair_flops} FLOPs per pair, efficiencies {min(eff_mem, 1):.2f} (memory) / "
               f"{min(eff_c, 1):.2f} (compute) of {ref.key}'s measured attention kernels")
        L = m.layers
        return {"const": L * max(d_fit["const_s"], p_fit["const_s"]) * bw_ratio,
                "per_seq": L * d_fit["per_unit_s"] * bw_ratio, "per_context_token": L * dec_tok,
                "per_token": L * p_fit["per_unit_s"] * fl_ratio, "per_pair": L * pre_pair,
                "source": src}
    d_fit = _attention_fit(ref, "decode", s.heads_rank, s.kv_rank, m.head_dim, kvd)
    p_fit = _attention_fit(ref, "prefill", s.heads_rank, s.kv_rank, m.head_dim, kvd)
    kv_scale = (s.kv_rank * m.head_dim) / (d_fit["num_kv_heads"] * d_fit["head_dim"])
    q_scale = (s.heads_rank * m.head_dim) / (p_fit["num_heads"] * p_fit["head_dim"])
    full, slid = m.full_attention_layers, m.sliding_layers
    dec_tok = d_fit["per_token_s"] * kv_scale * bw_ratio
    pre_pair = p_fit["per_token_s"] * q_scale * fl_ratio
    per_seq = m.layers * d_fit["per_unit_s"] * bw_ratio + slid * m.sliding_window * dec_tok
    per_token = (m.layers * p_fit["per_unit_s"] * q_scale * fl_ratio
                 + slid * m.sliding_window * pre_pair)
    where = "measured on" if ref is g else "scaled by bandwidth/FLOPs from"
    src = (f"attention {where} {ref.key}: decode fit ({d_fit['num_heads']}/"
           f"{d_fit['num_kv_heads']} heads x {d_fit['head_dim']}, {d_fit['kv_dtype']} KV, median "
           f"error {d_fit['median_rel_err']:.0%}) and prefill fit ({p_fit['num_heads']}/"
           f"{p_fit['num_kv_heads']} x {p_fit['head_dim']}, median error "
           f"{p_fit['median_rel_err']:.0%}), per layer x {m.layers} layers")
    if slid:
        src += f"; {slid} sliding-window layers cost {m.sliding_window} tokens per sequence"
    # one varlen attention kernel per layer serves decode and prefill tokens alike
    return {"const": m.layers * max(d_fit["const_s"] * bw_ratio, p_fit["const_s"] * fl_ratio),
            "per_seq": per_seq, "per_context_token": full * dec_tok, "per_token": per_token,
            "per_pair": full * pre_pair, "source": src}


def step_terms(s: _Setup, knots: list[int]) -> dict[str, Any]:
    """linear(N) at ``knots`` with its breakdown, and the attention coefficients."""
    att = _attention_terms(s)
    linear, breakdown, notes = [], [], []
    for n in knots:
        total, parts, nn = _layer_linear_s(s, float(n))
        parts["attention (per token + launch)"] = att["const"] + att["per_token"] * n
        linear.append(total + parts["attention (per token + launch)"])
        breakdown.append(parts)
        notes = nn or notes
    linear = list(np.maximum.accumulate(np.array(linear)))
    return {"linear_s": linear, "breakdown": breakdown, "attention": att, "notes": notes}


def memory_plan(model: ModelSpec, gpu: GpuSpec, tp: int, dtype: str, kv_dtype: str,
                max_num_seqs: int, max_num_batched_tokens: int,
                gpu_memory_utilization: float, engine: dict[str, Any]) -> dict[str, float]:
    """Bytes per GPU: budget, weights, activations, reserves, KV left, KV bytes per token."""
    p = model.params()
    wb = weight_bytes_per_param(dtype)
    eb = weight_bytes_per_param(model.expert_dtype) if model.expert_dtype else wb
    kv_bytes = 1.0 if kv_dtype == "fp8" else 2.0
    replicated_kv = 0.0
    if not model.mla and model.kv_heads < tp:  # KV projections replicated
        kv_proj = model.layers * 2 * model.hidden * model.kv_heads * model.head_dim
        replicated_kv = kv_proj * (tp / model.kv_heads - 1)
    weights = ((p["attention"] + p["mlp"] + p["router"] + replicated_kv) * wb
               + p["experts"] * eb + p["embeddings"] * 2.0) / tp + p["norms"] * 2.0
    if model.mla:
        # q_a/kv_a down-projections are replicated on every rank in vLLM
        down = model.layers * model.hidden * (model.q_lora_rank + model.kv_lora_rank
                                              + model.qk_rope_head_dim)
        weights += down * wb * (1 - 1 / tp)
    n = max_num_batched_tokens
    inter = (model.experts_per_token * model.moe_intermediate + model.shared_intermediate
             if model.is_moe else model.intermediate)
    qkv = (model.heads + 2 * model.kv_heads) * model.head_dim
    activations = n * 2 * (4 * model.hidden + (qkv + 3 * inter) / tp)
    logits = min(max_num_seqs, n) * model.vocab * 4 * 2  # fp32 logits + sampler copy
    reserve = engine["framework_reserve_bytes"] + NCCL_BYTES.get(tp, NCCL_BYTES[8])
    budget = gpu.memory_bytes * gpu_memory_utilization
    sliding = model.sliding_kv_bytes_per_seq(kv_bytes, tp) * max_num_seqs
    kv = budget - weights - activations - logits - reserve - sliding
    return {"budget": budget, "weights": weights, "activations": activations + logits,
            "reserve": reserve, "sliding_kv": sliding, "kv": kv,
            "kv_per_token": model.kv_bytes_per_token(kv_bytes, tp)}


def _fits(model: ModelSpec, gpu: GpuSpec, tp: int, dtype: str, kv_dtype: str, mns: int,
          mnbt: int, util: float, engine: dict[str, Any], min_tokens: int) -> bool:
    if model.heads % tp or tp > gpu.gpus_per_node:
        return False
    mem = memory_plan(model, gpu, tp, dtype, kv_dtype, mns, mnbt, util, engine)
    return mem["kv"] / mem["kv_per_token"] >= min_tokens


def _suggest(model: ModelSpec, gpu: GpuSpec, tp: int, dtype: str, kv_dtype: str, mns: int,
             mnbt: int, util: float, engine: dict[str, Any], min_tokens: int) -> str:
    options = []
    for t in (1, 2, 4, 8):
        if t > tp and _fits(model, gpu, t, dtype, kv_dtype, mns, mnbt, util, engine, min_tokens):
            options.append(f"--tp {t}")
            break
    for d in ("fp8", "int4"):
        if d != dtype and weight_bytes_per_param(d) < weight_bytes_per_param(dtype):
            for t in (1, 2, 4, 8):
                if t >= tp and _fits(model, gpu, t, d, kv_dtype, mns, mnbt, util, engine,
                                     min_tokens):
                    options.append(f"--dtype {d} --tp {t}" if t != tp else f"--dtype {d}")
                    break
    bigger = [k for k, g in gpu_catalog().items()
              if g.memory_bytes > gpu.memory_bytes and _fits(model, g, tp, dtype, kv_dtype, mns,
                                                             mnbt, util, engine, min_tokens)]
    if bigger:
        options.append(f"--gpu {min(bigger, key=lambda k: gpu_catalog()[k].memory_bytes)}")
    return "; would fit: " + ", ".join(options) if options else "; no TP <= 8 or dtype fits"


def _default_limits(gpu: GpuSpec) -> tuple[int, int]:
    """vLLM V1 defaults for the OpenAI server: 8192 tokens / 1024 seqs on >= 70 GiB GPUs that
    are not A100s, else 2048 / 256 (vLLM EngineArgs._set_default_args_v1)."""
    if gpu.memory_bytes >= 70 * GIB and not gpu.key.startswith("a100"):
        return 8192, 1024
    return 2048, 256


def derive(model: str | ModelSpec, gpu: str | GpuSpec, tp: int = 1, dtype: str | None = None,
           kv_dtype: str = "auto", max_num_seqs: int | None = None,
           max_num_batched_tokens: int | None = None, max_model_len: int | None = None,
           gpu_memory_utilization: float = 0.9, engine_version: str = "vllm-0.10",
           usd_per_gpu_hour: float | None = None, name: str | None = None,
           async_scheduling: bool = False) -> dict[str, Any]:
    """A profile mapping in the step-time format for ``model`` on ``tp`` x ``gpu``.

    ``dtype`` is the GEMM weight dtype (bf16, fp8 or int4; None = the checkpoint's own),
    ``kv_dtype`` the KV-cache dtype (auto = bf16, or fp8). Unset vLLM limits take vLLM V1's
    server defaults for the GPU; ``max_model_len`` defaults to the model's context capped by
    the KV capacity. ``async_scheduling`` (vLLM ``--async-scheduling``): the engine core
    schedules step n+1 and processes the outputs of step n while the GPU runs step n, so
    the CPU terms (``per_step_s`` and the CPU part of ``per_seq_s``) overlap the GPU step
    and add nothing as long as the GPU step is the longer one, which the derivation
    checks at one decode token per sequence (else the excess stays); and the profile's
    ``scheduler.async_scheduling`` is set, so that the step replica admits a request that
    becomes schedulable during a step one step later, as the engine does.
    Raises :class:`DeriveError` (one line) when it cannot be derived.
    """
    m = model if isinstance(model, ModelSpec) else get_model(model)
    g = gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)
    eng_key = ENGINE_ALIASES.get(str(engine_version).strip().lower())
    if eng_key is None:
        raise DeriveError(f"engine_version '{engine_version}' is not known; one of "
                          f"{', '.join(ENGINE_DEFAULTS)}")
    eng = ENGINE_DEFAULTS[eng_key]
    dtype = dtype or m.native_dtype
    if dtype not in DTYPES:
        raise DeriveError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    if kv_dtype not in KV_DTYPES:
        raise DeriveError(f"kv_dtype '{kv_dtype}' is not one of {', '.join(KV_DTYPES)}")
    kvd = "fp8" if kv_dtype == "fp8" else "bf16"
    for label, v in (("tp", tp), ("max_num_seqs", max_num_seqs),
                     ("max_num_batched_tokens", max_num_batched_tokens),
                     ("max_model_len", max_model_len)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise DeriveError(f"{label} must be a positive whole number, got {v!r}")
    if not isinstance(async_scheduling, bool):
        raise DeriveError(f"async_scheduling must be true or false, got {async_scheduling!r}")
    if not (isinstance(gpu_memory_utilization, int | float)
            and 0.05 <= gpu_memory_utilization <= 1.0):
        raise DeriveError("gpu_memory_utilization must be in [0.05, 1], got "
                          f"{gpu_memory_utilization!r}")
    if tp > g.gpus_per_node:
        raise DeriveError(f"tp={tp} is more than the {g.gpus_per_node} GPUs of one {g.key} node; "
                          "multi-node tensor parallelism is not modelled")
    if m.heads % tp or (m.kv_heads % tp and tp % m.kv_heads):
        raise DeriveError(f"tp={tp} does not divide {m.name}'s {m.heads} attention heads / "
                          f"{m.kv_heads} KV heads; use a power of two that does")
    if m.is_moe and m.moe_intermediate % tp:
        raise DeriveError(f"tp={tp} does not divide {m.name}'s expert width {m.moe_intermediate}")
    d_mnbt, d_mns = _default_limits(g)
    mnbt = max_num_batched_tokens or d_mnbt
    mns = max_num_seqs or d_mns
    if mnbt < mns:
        raise DeriveError(f"max_num_batched_tokens ({mnbt}) is below max_num_seqs ({mns}): a "
                          "step needs room for one token per sequence (vLLM refuses this too)")
    block = int(eng["block_size"])
    mem = memory_plan(m, g, tp, dtype, kvd, mns, mnbt, gpu_memory_utilization, eng)
    kv_tokens = int(max(mem["kv"], 0.0) // (mem["kv_per_token"] * block)) * block
    min_tokens = max_model_len or min(m.max_position_embeddings, 4096)
    setup_txt = f"{m.name} ({dtype}) on {tp}x {g.key}"
    if kv_tokens < min_tokens:
        others = mem["activations"] + mem["reserve"] + mem["sliding_kv"]
        head = (f"weights {mem['weights'] / GIB:.1f} GiB + activations/reserves "
                f"{others / GIB:.1f} GiB per GPU")
        budget = (f"{mem['budget'] / GIB:.1f} GiB ({gpu_memory_utilization:g} x "
                  f"{g.memory_gib:.0f} GiB)")
        why = (f"{head} exceed the {budget} budget" if mem["kv"] <= 0 else
               f"{head} leave {mem['kv'] / GIB:.1f} GiB of {budget} for KV = {kv_tokens:,} "
               f"tokens, below {min_tokens:,}")
        sugg = _suggest(m, g, tp, dtype, kvd, mns, mnbt, gpu_memory_utilization, eng, min_tokens)
        if kv_tokens >= 1024 and max_model_len:
            sugg += f", --max-model-len {kv_tokens}"
        raise DeriveError(f"{setup_txt} does not fit: {why}{sugg}")
    mml = max_model_len or min(m.max_position_embeddings, kv_tokens)
    price = observed_price(g, tp)
    if usd_per_gpu_hour is None and price is None:
        raise DeriveError(f"no observed price for {g.key} in the shipped price data; give "
                          "usd_per_gpu_hour (--usd-per-gpu-hour)")
    s = _Setup(m, g, tp, dtype, kvd, mns)
    knots = sorted({k for k in KNOTS if k < max(mnbt, 16384)} | {mnbt})
    terms = step_terms(s, knots)
    att = terms["attention"]
    per_step = eng["per_step_s"] + (eng["per_step_tp_s"] if tp > 1 else 0.0)
    per_seq_cpu = eng["per_seq_cpu_s"]
    cpu_txt = (f"per_step_s = {per_step * 1e3:.1f} ms CPU per step (assumption, "
               f"{eng['engine']})")
    if async_scheduling:
        # hidden behind the GPU step when the GPU's own decode step (1 token) is longer
        gpu_step_1 = terms["linear_s"][0] + att["per_seq"]
        hidden = min(per_step, gpu_step_1)
        cpu_txt = (f"async scheduling: the {per_step * 1e3:.1f} ms CPU per step and "
                   f"{per_seq_cpu * 1e6:.0f} us per sequence overlap the GPU step "
                   f"({gpu_step_1 * 1e3:.2f} ms at one token); "
                   f"{(per_step - hidden) * 1e3:.2f} ms stays")
        per_step, per_seq_cpu = per_step - hidden, 0.0
    per_seq = per_seq_cpu + att["per_seq"]
    ref = _ref_gpu(g)
    gemm_src = (f"GEMMs interpolated in vLLM kernel measurements on {g.key}" if g.measured else
                f"GEMMs: {ref.key}'s measured kernels x ({g.key} roofline / {ref.key} "
                f"roofline), i.e. {ref.key}'s measured efficiency on {g.key}'s spec sheet "
                f"({g.spec_source})")
    if dtype != "bf16" and _act_dtype(g, dtype) == "bf16":
        gemm_src += (f"; {dtype} weights run weight-only (W{'8' if dtype == 'fp8' else '4'}A16): "
                     "BF16 measurements x roofline ratio")
    notes_moe = "; ".join(dict.fromkeys(terms["notes"]))
    step_src = (f"{gemm_src}; {att['source']}"
                + (f"; {notes_moe}" if notes_moe else "")
                + f"; elementwise kernels at {ELEMENTWISE_BW_EFFICIENCY:.0%} of "
                f"{g.mem_bw_bytes_per_s / 1e12:.2f} TB/s; {cpu_txt}; per_seq_s = "
                f"{per_seq_cpu * 1e6:.0f} us CPU + {att['per_seq'] * 1e6:.1f} us "
                "decode-attention per sequence (measured fit)")
    name = name or f"{m.name}-{dtype}-{tp}x{g.key}"
    weights_total = m.weight_bytes(dtype)
    cold_median = 60 + 30 + weights_total / 1e9 / 1.0
    prices: dict[str, Any]
    if usd_per_gpu_hour is not None:
        if isinstance(usd_per_gpu_hour, bool) or not usd_per_gpu_hour > 0:
            raise DeriveError(f"usd_per_gpu_hour must be positive, got {usd_per_gpu_hour!r}")
        prices = {"on_demand_usd_per_gpu_hour": float(usd_per_gpu_hour),
                  "source": "given by the user", "date": "n/a"}
    else:
        assert price is not None
        prices = {"on_demand_usd_per_gpu_hour": price.on_demand_usd_per_gpu_hour,
                  "source": f"sim/profiles/data/prices.csv: {price.source}",
                  "date": "SkyPilot catalog v7 snapshot, date unknown"}
        if price.spot_usd_per_gpu_hour:
            prices["spot_usd_per_gpu_hour"] = round(price.spot_usd_per_gpu_hour, 4)
    mem_txt = (f"memory per GPU: {gpu_memory_utilization:g} x {g.memory_gib:.1f} GiB = "
               f"{mem['budget'] / GIB:.2f} GiB; weights {mem['weights'] / GIB:.2f} GiB "
               f"({dtype}); activations + logits {mem['activations'] / GIB:.2f} GiB "
               f"(a {mnbt}-token forward pass, {mns} fp32 logit rows); CUDA context/graphs/NCCL "
               f"{mem['reserve'] / GIB:.2f} GiB"
               + (f"; sliding-window KV {mem['sliding_kv'] / GIB:.2f} GiB" if mem["sliding_kv"]
                  else "")
               + f"; KV {mem['kv'] / GIB:.2f} GiB / {mem['kv_per_token']:,.0f} B per token = "
               f"{kv_tokens:,} tokens in {block}-token blocks")
    scheduler: dict[str, Any] = {
        "max_num_batched_tokens": mnbt, "block_size": block, "watermark": eng["watermark"],
        "max_model_len": int(mml), "prefix_caching": eng["prefix_caching"],
        "engine": eng["engine"]}
    if async_scheduling:  # (absent otherwise: the default, and shipped profiles stay as they are)
        scheduler["async_scheduling"] = True
    return {
        "name": name,
        "model": f"{m.name} ({dtype}, TP{tp})",
        "gpu": g.name,
        "gpus_per_replica": tp,
        "max_batch": mns,
        "kv_capacity_tokens": kv_tokens,
        "scheduler": scheduler,
        "step_time": {
            "per_step_s": _r(per_step),
            "tokens": knots,
            "linear_s": [_r(x) for x in terms["linear_s"]],
            "per_seq_s": _r(per_seq),
            "decode_attention_s_per_token": _r(att["per_context_token"]),
            "prefill_attention_s_per_token2": _r(att["per_pair"]),
            "source": step_src,
            "uncertainty": derived_uncertainty(m.is_moe),
        },
        "overheads": {"pre_s": eng["pre_s"], "pre_s_per_input_token": eng["pre_s_per_input_token"],
                      "post_s": eng["post_s"]},
        "prices": prices,
        "cold_start_s": {"median": round(cold_median), "p95": round(2 * cold_median)},
        "source": (f"derived by capsim (sim/profiles/derive.py) from {m.source} and the "
                   f"{g.key} spec ({g.spec_source}); {mem_txt}; KV dtype {kvd}"),
        "notes": ("; ".join((*m.notes, "cold_start_s is an assumption: 60 s VM + 30 s engine "
                             "start + weights at 1 GB/s"))),
    }


DERIVE_KEYS = ("model", "gpu", "tp", "dtype", "kv_dtype", "max_num_seqs",
               "max_num_batched_tokens", "max_model_len", "gpu_memory_utilization",
               "engine_version", "usd_per_gpu_hour", "name", "async_scheduling")


def derive_from_mapping(args: Any, base_dir: Path | None = None) -> dict[str, Any]:
    """:func:`derive` from a mapping of its arguments (an experiment's
    ``fleet.profile.derive``): unknown keys are refused with the closest valid name; a model
    config or GPU spec path is resolved against ``base_dir`` (the experiment's folder) when
    it exists there. Raises :class:`DeriveError` (one line) for any problem."""
    if not isinstance(args, dict):
        raise DeriveError(f"expected a mapping of {', '.join(DERIVE_KEYS[:3])}, ..., "
                          f"got {args!r}")
    for key in args:
        if key not in DERIVE_KEYS:
            close = difflib.get_close_matches(str(key), DERIVE_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DeriveError(f"unknown field '{key}'{hint}; valid: {', '.join(DERIVE_KEYS)}")
    for key in ("model", "gpu"):
        if key not in args:
            raise DeriveError(f"missing field '{key}'")
    kw = dict(args)
    for key in ("model", "gpu"):
        value = str(kw[key])
        if base_dir is not None and value.endswith((".json", ".yaml", ".yml")):
            local = Path(base_dir) / value
            if local.exists():
                kw[key] = str(local)
    return derive(**kw)


def _r(x: float) -> float:
    return float(f"{x:.5g}")

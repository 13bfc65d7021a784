"""Maintainer script: rebuild the kernel tables shipped in this folder from shared/data/kernels.

Not imported by capsim. Run from the repository root with the shared data checked out next
to it::

    python sim/profiles/data/build_data.py ../shared/data/kernels

It writes, from the vLLM kernel measurements of NVIDIA AIConfigurator (Apache-2.0):

* ``gemm.parquet`` -- GEMM latency (seconds) by GPU, dtype (bf16, fp8 per-tensor scaled),
  m (powers of two), n, k (>= 128); FP8 is the faster of the per-tensor and block-scaled
  FP8 kernels at each point; missing grid cells filled by FLOP-scaling the nearest
  measured cell in the same m row.
* ``attention.csv`` -- per GPU / heads / KV heads / head dim / KV dtype: least-squares fits of
  decode attention ``latency = a + b * batch + c * context_tokens`` and prefill attention
  ``latency = a + b * tokens + c * pairs`` (non-negative), one layer, seconds.
* ``moe.parquet`` -- fused-MoE latency (seconds) by GPU, dtype (bf16, fp8, int4 weight-only,
  mxfp4 weight-only), hidden, intermediate, top-k, experts, MoE TP size, tokens; routing
  skew power_law_1.01 (AIConfigurator's default; the A100 table has no balanced rows), no
  expert parallelism.
* ``allreduce.csv`` -- vLLM custom all-reduce under CUDA graphs: GPUs, message size
  (elements of bf16), latency (seconds).

Assumption stated in the README: for every measured point of an op the fastest
``kernel_source`` is kept (vLLM picks its best backend per GPU).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent
GPUS = {"a100_sxm": "0.14.0", "h100_sxm": "0.24.0", "h200_sxm": "0.24.0", "l40s": "0.24.0",
        "b200_sxm": "0.24.0"}
# FP8 = the faster of vLLM's per-tensor (CUTLASS) and block-scaled (DeepGEMM/FlashInfer/
# CUTLASS/Triton) FP8 kernels at each point.
DTYPES = {"bf16": ("bfloat16",), "fp8": ("fp8", "fp8_block")}
M_KEEP = [2**i for i in range(16)]


def _table(path: Path) -> dict[str, np.ndarray]:
    t = pq.read_table(path)
    return {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}


def build_gemm(root: Path) -> None:
    cols: dict[str, list] = {"gpu": [], "dtype": [], "m": [], "n": [], "k": [], "latency_s": []}
    for gpu, ver in GPUS.items():
        t = _table(root / "vllm" / gpu / "gemm" / ver / "gemm_perf.parquet")
        for dt, srcs in DTYPES.items():
            sel = np.isin(t["gemm_dtype"], srcs)
            if not sel.any():
                continue
            m, n, k, lat = (t[c][sel] for c in ("m", "n", "k", "latency"))
            ns = sorted(int(x) for x in set(n) if x >= 128)
            ks = sorted(int(x) for x in set(k) if x >= 128)
            best: dict[tuple[int, int, int], float] = {}
            for mi, ni, ki, li in zip(m, n, k, lat, strict=True):
                key = (int(mi), int(ni), int(ki))
                best[key] = min(best.get(key, np.inf), float(li) * 1e-3)
            for mi in M_KEEP:
                if not any((mi, ns[0], kk) in best for kk in ks):
                    continue
                for ni in ns:
                    for ki in ks:
                        v = best.get((mi, ni, ki))
                        if v is None:  # nearest measured cell in this m row, FLOP-scaled
                            cand = [(abs(np.log(a / ni)) + abs(np.log(b / ki)), a, b)
                                    for (mm, a, b) in best if mm == mi]
                            _, a, b = min(cand)
                            v = best[(mi, a, b)] * (ni * ki) / (a * b)
                        for c, x in zip(cols, (gpu, dt, mi, ni, ki, v), strict=True):
                            cols[c].append(x)
    table = pa.table({
        "gpu": pa.array(cols["gpu"]).dictionary_encode(),
        "dtype": pa.array(cols["dtype"]).dictionary_encode(),
        "m": pa.array(cols["m"], pa.int32()), "n": pa.array(cols["n"], pa.int32()),
        "k": pa.array(cols["k"], pa.int32()),
        "latency_s": pa.array(cols["latency_s"], pa.float32()),
    })
    pq.write_table(table, HERE / "gemm.parquet", compression="zstd")


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with non-negative coefficients (tiny problems: active-set by hand)."""
    n = x.shape[1]
    best, best_err = np.zeros(n), np.inf
    for mask in range(1, 2**n):
        idx = [i for i in range(n) if mask >> i & 1]
        # weight by 1/y so that small and large points count alike (relative error)
        w = 1.0 / y
        c, *_ = np.linalg.lstsq(x[:, idx] * w[:, None], y * w, rcond=None)
        if (c < 0).any():
            continue
        full = np.zeros(n)
        full[idx] = c
        err = float(np.sum(((x @ full - y) * w) ** 2))
        if err < best_err:
            best, best_err = full, err
    return best


def build_attention(root: Path) -> None:
    rows = []
    for gpu, ver in GPUS.items():
        base = root / "vllm" / gpu / "attention" / ver
        for phase, fname in (("decode", "generation_attention_perf.parquet"),
                             ("prefill", "context_attention_perf.parquet")):
            t = _table(base / fname)
            win = t.get("window_size", np.zeros(len(t["latency"]), dtype=int))
            sel = (win == 0) & (t["attn_dtype"] == "bfloat16")
            keys = {}
            for i in np.nonzero(sel)[0]:
                cfg = (int(t["num_heads"][i]), int(t["num_key_value_heads"][i]),
                       int(t["head_dim"][i]), str(t["kv_cache_dtype"][i]))
                b, s = int(t["batch_size"][i]), int(t["isl"][i])
                ctx = int(t["step"][i])
                pt = (b, s, ctx)
                d = keys.setdefault(cfg, {})
                d[pt] = min(d.get(pt, np.inf), float(t["latency"][i]) * 1e-3)
            for (h, kvh, hd, kvd), pts in keys.items():
                arr = np.array([(b, s, c, lat) for (b, s, c), lat in pts.items()], float)
                b, s, c, lat = arr.T
                if phase == "decode":
                    ctx = b * (c + s)
                    x = np.column_stack([np.ones_like(b), b, ctx])
                else:
                    x = np.column_stack([np.ones_like(b), b * s, b * s * (s + 1) / 2])
                if len(lat) < 6:
                    continue
                coef = _nnls(x, lat)
                rel = np.abs(x @ coef - lat) / lat
                rows.append([gpu, phase, h, kvh, hd, "fp8" if kvd == "fp8" else "bf16",
                             f"{coef[0]:.4e}", f"{coef[1]:.4e}", f"{coef[2]:.4e}",
                             len(lat), f"{np.median(rel):.3f}"])
    with open(HERE / "attention.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["gpu", "phase", "num_heads", "num_kv_heads", "head_dim", "kv_dtype",
                    "const_s", "per_unit_s", "per_token_s", "points", "median_rel_err"])
        w.writerows(sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3], r[4], r[5])))


MOE_DTYPES = {"bfloat16": "bf16", "fp8": "fp8", "fp8_block": "fp8", "int4_wo": "int4",
              "w4a16_mxfp4": "mxfp4"}


def build_moe(root: Path) -> None:
    best: dict[tuple, float] = {}
    for gpu, ver in GPUS.items():
        t = _table(root / "vllm" / gpu / "moe" / ver / "moe_perf.parquet")
        sel = ((t["moe_ep_size"] == 1) & (t["distribution"] == "power_law_1.01")
               & np.isin(t["moe_tp_size"], [1, 2, 4, 8])
               & np.isin(t["moe_dtype"], list(MOE_DTYPES)))
        for i in np.nonzero(sel)[0]:
            key = (gpu, MOE_DTYPES[str(t["moe_dtype"][i])], int(t["hidden_size"][i]),
                   int(t["inter_size"][i]), int(t["topk"][i]), int(t["num_experts"][i]),
                   int(t["moe_tp_size"][i]), int(t["num_tokens"][i]))
            best[key] = min(best.get(key, np.inf), float(t["latency"][i]) * 1e-3)
    keys = sorted(best)
    names = ["gpu", "dtype", "hidden", "inter", "topk", "experts", "tp", "tokens"]
    cols = {n: [k[j] for k in keys] for j, n in enumerate(names)}
    table = pa.table({
        "gpu": pa.array(cols["gpu"]).dictionary_encode(),
        "dtype": pa.array(cols["dtype"]).dictionary_encode(),
        **{n: pa.array(cols[n], pa.int32()) for n in names[2:]},
        "latency_s": pa.array([best[k] for k in keys], pa.float32()),
    })
    pq.write_table(table, HERE / "moe.parquet", compression="zstd")


def build_allreduce(root: Path) -> None:
    rows = []
    for gpu, ver in GPUS.items():
        p = root / "vllm" / gpu / "comm" / ver / "custom_allreduce_perf.parquet"
        if not p.exists():
            continue
        t = _table(p)
        for i in range(len(t["latency"])):
            if t["backend"][i] == "vllm_graph" and t["allreduce_dtype"][i] == "bfloat16":
                rows.append([gpu, int(t["num_gpus"][i]), int(t["message_size"][i]),
                             f"{float(t['latency'][i]) * 1e-3:.4e}"])
    with open(HERE / "allreduce.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["gpu", "num_gpus", "message_elements", "latency_s"])
        w.writerows(sorted(rows))


if __name__ == "__main__":
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/kernels")
    build_gemm(src)
    build_attention(src)
    build_moe(src)
    build_allreduce(src)

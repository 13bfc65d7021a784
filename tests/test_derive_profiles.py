"""Profile derivation (sim.profiles.derive): the agreed step-time format for every catalog
model x GPU x TP that fits, one-line refusals where it does not, physical sanity checks,
and a comparison against measurements that were not used to build it (Splitwise step
times, Vidur linear-layer timings), with the errors printed and loosely bounded."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from sim.profiles.catalog import DeriveError, get_gpu, get_model, gpu_catalog
from sim.profiles.derive import ENGINE_DEFAULTS, derive, derive_from_mapping, gemm_s
from sim.profiles.fit import StepTerms
from sim.profiles.steptime import Scheduler
from tests.shared_data import SHARED_DATA

MODELS = ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "mixtral-8x7b", "qwen3-32b",
          "qwen3-30b-a3b", "gpt-oss-120b", "deepseek-v3", "llama-2-7b", "codellama-34b"]
TOP_KEYS = {"name", "model", "gpu", "gpus_per_replica", "max_batch", "kv_capacity_tokens",
            "scheduler", "step_time", "overheads", "prices", "cold_start_s", "source", "notes"}


def _linear(p: dict, n: float) -> float:
    st = p["step_time"]
    t, y = st["tokens"], st["linear_s"]
    if n >= t[-1]:
        return y[-1] + (y[-1] - y[-2]) / (t[-1] - t[-2]) * (n - t[-1])
    return float(np.interp(n, t, y))


def _step(p: dict, tokens: float, seqs: float = 0, context: float = 0, pairs: float = 0) -> float:
    """One step's duration by the formula of notes/steptime-spec.md."""
    st = p["step_time"]
    return (st["per_step_s"] + _linear(p, tokens) + st["per_seq_s"] * seqs
            + st["decode_attention_s_per_token"] * context
            + st["prefill_attention_s_per_token2"] * pairs)


def _check_format(p: dict) -> None:
    assert set(p) == TOP_KEYS
    st, sch = p["step_time"], p["scheduler"]
    assert set(sch) - {"async_scheduling"} == {"max_num_batched_tokens", "block_size",
                                               "watermark", "max_model_len", "prefix_caching",
                                               "engine"}
    assert set(st) == {"per_step_s", "tokens", "linear_s", "per_seq_s",
                       "decode_attention_s_per_token", "prefill_attention_s_per_token2", "source",
                       "uncertainty"}
    assert set(p["overheads"]) == {"pre_s", "pre_s_per_input_token", "post_s"}
    assert len(st["tokens"]) == len(st["linear_s"]) >= 2
    assert all(b > a for a, b in zip(st["tokens"], st["tokens"][1:], strict=False))
    assert all(b >= a for a, b in zip(st["linear_s"], st["linear_s"][1:], strict=False))
    assert st["linear_s"][0] > 0 and st["per_step_s"] > 0
    assert st["decode_attention_s_per_token"] > 0 and st["prefill_attention_s_per_token2"] > 0
    assert sch["max_num_batched_tokens"] in st["tokens"]
    assert p["kv_capacity_tokens"] % sch["block_size"] == 0
    assert p["kv_capacity_tokens"] >= sch["max_model_len"] > 0
    assert p["max_batch"] >= 1 and p["prices"]["on_demand_usd_per_gpu_hour"] > 0
    assert p["cold_start_s"]["p95"] >= p["cold_start_s"]["median"] > 0


def test_every_model_gpu_tp_derives_or_refuses_in_one_line():
    derived, refused = defaultdict(list), defaultdict(list)
    for model in MODELS:
        for gpu in gpu_catalog():
            for tp in (1, 2, 4, 8):
                try:
                    p = derive(model, gpu, tp, usd_per_gpu_hour=2.0)
                except DeriveError as exc:
                    msg = str(exc)
                    assert "\n" not in msg and len(msg) < 600, msg
                    assert "does not fit" in msg or "tp=" in msg, msg
                    refused[model].append((gpu, tp))
                    continue
                _check_format(p)
                assert p["gpus_per_replica"] == tp
                derived[model].append((gpu, tp))
    # every model runs somewhere, and the big ones are refused somewhere
    assert all(derived[m] for m in MODELS)
    for model in ("llama-3.1-405b", "deepseek-v3", "mixtral-8x7b", "llama-3.1-70b"):
        assert refused[model]
    # whatever fits at some TP also fits at every larger TP on the same GPU (same node)
    for model, ok in derived.items():
        for gpu, tp in ok:
            for bigger in (2, 4, 8):
                if bigger > tp and bigger <= gpu_catalog()[gpu].gpus_per_node:
                    assert (gpu, bigger) in ok or model == "gpt-oss-120b" and bigger > 8, (
                        model, gpu, tp, bigger)


def test_known_fits_and_refusals():
    # Llama 3.1 405B in BF16 (812 GB) cannot fit 8x A100-80GB; FP8 (8-bit weights) does.
    with pytest.raises(DeriveError) as exc:
        derive("llama-3.1-405b", "a100", 8, dtype="bf16")
    msg = str(exc.value)
    assert msg.startswith("llama-3.1-405b (bf16) on 8x a100_sxm does not fit: weights")
    assert "would fit:" in msg and "--dtype fp8" in msg and "\n" not in msg
    assert derive("llama-3.1-405b", "a100", 8, dtype="fp8")["kv_capacity_tokens"] > 100_000
    # gpt-oss-120b runs on one 80 GB GPU; DeepSeek-V3 (FP8) needs 8x H200, not 8x H100
    assert derive("gpt-oss-120b", "h100", 1)["kv_capacity_tokens"] > 50_000
    assert derive("deepseek-v3", "h200", 8, usd_per_gpu_hour=3.5)["kv_capacity_tokens"] > 100_000
    with pytest.raises(DeriveError, match="deepseek-v3 \\(fp8\\) on 8x h100_sxm does not fit"):
        derive("deepseek-v3", "h100", 8)
    with pytest.raises(DeriveError, match="tp=3 does not divide"):
        derive("llama-3.1-8b", "h100", 3)
    with pytest.raises(DeriveError, match="no observed price for h200_sxm"):
        derive("llama-3.1-8b", "h200", 1)
    with pytest.raises(DeriveError, match="dtype 'fp4' is not one of"):
        derive("llama-3.1-8b", "h100", 1, dtype="fp4")
    with pytest.raises(DeriveError, match="gpu_memory_utilization must be in"):
        derive("llama-3.1-8b", "h100", 1, gpu_memory_utilization=1.5)
    with pytest.raises(DeriveError, match="below 131,072"):  # asks for more than the KV holds
        derive("llama-3.1-8b", "a10g", 1, max_model_len=131072)


def test_decode_at_batch_one_is_near_weight_bytes_over_bandwidth():
    """A batch-1 decode step reads every weight once: the derived step must be at least the
    bandwidth roofline and at most ~1.6x it plus the CPU step overhead."""
    for model, gpu, tp in [("llama-3.1-8b", "h100", 1), ("llama-3.1-8b", "a100", 1),
                           ("llama-3.1-70b", "h100", 4), ("llama-3.1-70b", "a100", 4),
                           ("qwen3-32b", "h200", 1), ("llama-3.1-8b", "a10g", 1),
                           ("mistral-7b", "a10g", 1), ("qwen3-32b", "h100", 2),
                           ("llama-3.1-8b", "l4", 1), ("qwen3-32b", "b200", 2)]:
        p = derive(model, gpu, tp, usd_per_gpu_hour=1.0)
        g, m = get_gpu(gpu), get_model(model)
        roof = m.weight_bytes("bf16") / tp / g.mem_bw_bytes_per_s
        gpu_time = _step(p, 1, 1, 1000) - p["step_time"]["per_step_s"]
        print(f"{model} {tp}x{gpu}: batch-1 GPU step {gpu_time * 1e3:.2f} ms, "
              f"weights/bandwidth {roof * 1e3:.2f} ms ({gpu_time / roof:.2f}x)")
        assert roof < gpu_time < 1.6 * roof + 2e-3


def test_faster_gpu_and_fp8_are_faster():
    h100, a100 = (derive("llama-3.1-70b", g, 4) for g in ("h100", "a100"))
    for n in (1, 64, 512, 4096, 8192):
        assert _linear(h100, n) < _linear(a100, n)
    # compute-bound prefill: H100's 3.2x BF16 FLOP/s shows as > 2x
    assert _linear(a100, 8192) / _linear(h100, 8192) > 2.0
    bf16, fp8 = (derive("llama-3.1-70b", "h100", 4, dtype=d) for d in ("bf16", "fp8"))
    ratio = _linear(bf16, 8192) / _linear(fp8, 8192)
    print(f"70B TP4 H100 prefill 8192 tokens: BF16/FP8 = {ratio:.2f}")
    assert 1.2 < ratio < 2.1
    assert _linear(fp8, 1) < _linear(bf16, 1)  # half the weight bytes
    assert fp8["kv_capacity_tokens"] > bf16["kv_capacity_tokens"]
    # FP8 KV cache halves KV bytes: about twice the tokens
    kv8 = derive("llama-3.1-70b", "h100", 4, kv_dtype="fp8")
    assert kv8["kv_capacity_tokens"] == pytest.approx(2 * bf16["kv_capacity_tokens"], rel=0.01)
    assert (kv8["step_time"]["decode_attention_s_per_token"]
            < bf16["step_time"]["decode_attention_s_per_token"])
    # Ampere has no FP8 tensor cores: FP8 weights help decode (bytes) but not prefill (FLOPs)
    a8 = derive("llama-3.1-70b", "a100", 4, dtype="fp8")
    assert _linear(a8, 1) < 0.8 * _linear(a100, 1)
    assert _linear(a8, 8192) == pytest.approx(_linear(a100, 8192), rel=0.1)


def test_tp_and_moe_sanity():
    # more GPUs: a faster batch-1 step, more KV
    p = [derive("llama-3.1-70b", "h100", tp) for tp in (2, 4, 8)]
    assert _linear(p[0], 1) > _linear(p[1], 1) > _linear(p[2], 1)
    assert p[0]["kv_capacity_tokens"] < p[1]["kv_capacity_tokens"] < p[2]["kv_capacity_tokens"]
    # Mixtral (12.9B active of 46.7B) decodes a lone request faster than a dense 70B,
    # slower than an 8B; by 256 tokens all experts are loaded, so the batch costs more
    mix = derive("mixtral-8x7b", "h100", 2)
    l70 = derive("llama-2-70b", "h100", 2)
    l8 = derive("llama-3.1-8b", "h100", 2)
    assert _linear(l8, 1) < _linear(mix, 1) < _linear(l70, 1)
    assert _linear(mix, 256) / _linear(mix, 1) > _linear(l70, 256) / _linear(l70, 1)


def test_kv_capacity_matches_a_hand_computation_for_llama_8b_on_h100():
    p = derive("llama-3.1-8b", "h100", 1)  # vLLM defaults for an 80 GB H100: 8192 / 1024
    gib = 2**30
    budget = 0.9 * 80 * gib
    params = 8_030_261_248  # 32 x (4096*6144 + 4096*4096 + 3*4096*14336 + 2*4096) + 4096
    params_check = 32 * (4096 * 6144 + 4096 * 4096 + 3 * 4096 * 14336 + 2 * 4096) + 4096 \
        + 2 * 128256 * 4096
    assert params == params_check
    weights = 2 * params
    activations = 8192 * 2 * (4 * 4096 + 6144 + 3 * 14336)  # one 8192-token forward pass
    logits = 1024 * 128256 * 4 * 2  # fp32 logits of 1024 rows, twice
    reserve = 1.5 * gib  # CUDA context, graphs, workspaces (TP1: no NCCL buffers)
    kv_per_token = 32 * 8 * 128 * 2 * 2
    tokens = int((budget - weights - activations - logits - reserve) // kv_per_token // 16) * 16
    assert p["kv_capacity_tokens"] == tokens
    assert 430_000 < tokens < 450_000
    assert p["max_batch"] == 1024 and p["scheduler"]["max_num_batched_tokens"] == 8192
    assert p["scheduler"]["max_model_len"] == 131072


def test_spec_sheet_gpu_uses_learned_efficiency():
    """A10G has no kernel measurements: A100's measured efficiency on A10G's spec sheet.
    Decode (memory-bound) scales with bandwidth, prefill (compute-bound) with FLOP/s."""
    a10g, a100 = derive("llama-3.1-8b", "a10g", 1), derive("llama-3.1-8b", "a100", 1,
                                                           max_num_batched_tokens=2048)
    assert "a100_sxm's measured kernels" in a10g["step_time"]["source"]
    bw = 2039 / 600
    assert 0.8 * bw < _linear(a10g, 1) / _linear(a100, 1) < 1.1 * bw
    flops = 312 / 70
    assert 0.8 * flops < _linear(a10g, 2048) / _linear(a100, 2048) < 1.1 * flops
    assert a10g["prices"]["on_demand_usd_per_gpu_hour"] == 1.006


def test_gemm_interpolation_reproduces_measured_points_and_is_monotone():
    g = get_gpu("h100")
    # on grid points the table value comes back (log-space interpolation is exact there)
    t = gemm_s(g, 1024, 4096, 4096)
    assert 20e-6 < t < 200e-6
    ms = [1, 3, 17, 100, 1000, 5000, 20000, 70000]
    times = [gemm_s(g, m, 8192, 8192) for m in ms]
    assert all(b >= a * 0.95 for a, b in zip(times, times[1:], strict=False))
    # beyond the measured m the time grows linearly (compute-bound)
    assert gemm_s(g, 65536, 8192, 8192) == pytest.approx(2 * gemm_s(g, 32768, 8192, 8192))


def test_steptime_block_loads_in_the_replica_model_schema():
    steptime = pytest.importorskip("sim.profiles.steptime")
    p = derive("qwen3-30b-a3b", "h100", 2)
    steptime.StepTime(**p["step_time"])
    steptime.Scheduler(**p["scheduler"])
    steptime.Overheads(**p["overheads"])


# ---- comparison with measurements not used to build the derivation ------------------------

SPLITWISE = SHARED_DATA / "profiles" / "splitwise_sim" / "perf_model.csv"
VIDUR = SHARED_DATA / "profiles" / "vidur" / "compute"


@pytest.mark.skipif(not SPLITWISE.is_file(), reason="shared data not present")
def test_splitwise_llama2_70b_step_times():
    """Splitwise measured llama2-70b on A100/H100 (vLLM-era 2023 stack, 5 repeats, medians):
    token_time (one decode step of b requests) and prompt_time (prefill of b prompts)."""
    rows = list(csv.DictReader(SPLITWISE.open()))
    report = []
    for hw, gpu in (("a100-80gb", "a100"), ("h100-80gb", "h100")):
        for tp in (2, 4, 8):
            p = derive("llama-2-70b", gpu, tp, max_num_batched_tokens=16384, max_num_seqs=256)
            points = defaultdict(list)
            for r in rows:
                if (r["model"], r["hardware"], int(r["tensor_parallel"])) == ("llama2-70b", hw,
                                                                             tp):
                    points[(int(r["prompt_size"]), int(r["batch_size"]),
                            int(r["token_size"]))].append(r)
            e_tok, e_pro = [], []
            for (ps, b, ts), rs in points.items():
                if b > 32:  # batch 64 rows are anomalous (see gpu_profiles/README.md)
                    continue
                tok = statistics.median(float(r["token_time"]) for r in rs) / 1e3
                pro = statistics.median(float(r["prompt_time"]) for r in rs) / 1e3
                e_tok.append(_step(p, b, b, b * (ps + ts / 2)) / tok - 1)
                e_pro.append(_step(p, b * ps, b, 0, b * ps * (ps + 1) / 2) / pro - 1)
            mt = statistics.median(abs(e) for e in e_tok)
            mp = statistics.median(abs(e) for e in e_pro)
            report.append((hw, tp, mt, statistics.median(e_tok), mp, statistics.median(e_pro)))
            print(f"splitwise {hw} TP{tp}: token_time median |err| {mt:.0%} (bias "
                  f"{statistics.median(e_tok):+.0%}), prompt_time {mp:.0%} "
                  f"(bias {statistics.median(e_pro):+.0%}), {len(e_tok)} points")
    tp2 = [r for r in report if r[1] == 2]
    for _hw, _tp, mt, _bt, mp, _bp in tp2:
        assert mt < 0.35 and mp < 0.40
    for _hw, _tp, mt, _bt, mp, _bp in report:  # TP4/8: Splitwise's stack is overhead-bound
        assert mt < 0.75 and mp < 0.65


@pytest.mark.skipif(not VIDUR.is_dir(), reason="shared data not present")
def test_vidur_linear_layer_timings():
    """Vidur's per-layer operator profiles (torch, A100/H100): QKV + O + MLP up + down."""
    cases = [("a100", "a100", "meta-llama/Llama-2-70b-hf", "llama-2-70b"),
             ("h100", "h100", "meta-llama/Llama-2-70b-hf", "llama-2-70b"),
             ("a100", "a100", "meta-llama/Llama-2-7b-hf", "llama-2-7b"),
             ("h100", "h100", "meta-llama/Llama-2-7b-hf", "llama-2-7b"),
             ("a100", "a100", "codellama/CodeLlama-34b-Instruct-hf", "codellama-34b"),
             ("a100", "a100", "meta-llama/Meta-Llama-3-8B", "llama-3.1-8b")]
    for vg, gpu, path, model in cases:
        g, m = get_gpu(gpu), get_model(model)
        errs = []
        for r in csv.DictReader((VIDUR / vg / path / "mlp.csv").open()):
            n, tp = int(r["num_tokens"]), int(r["num_tensor_parallel_workers"])
            if n % 8:  # keep the grid the derivation would use; odd sizes are padding noise
                continue
            meas = sum(float(r[f"time_stats.{op}.median"]) for op in (
                "attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")) / 1e3
            hr, kvr, d = m.heads // tp, max(1, m.kv_heads // tp), m.head_dim
            ir = m.intermediate / tp
            est = (gemm_s(g, n, (hr + 2 * kvr) * d, m.hidden) + gemm_s(g, n, m.hidden, hr * d)
                   + gemm_s(g, n, 2 * ir, m.hidden) + gemm_s(g, n, m.hidden, ir))
            errs.append(est / meas - 1)
        med = statistics.median(abs(e) for e in errs)
        print(f"vidur {vg} {model}: {len(errs)} points, median |err| {med:.0%}, "
              f"bias {statistics.median(errs):+.0%}")
        assert len(errs) > 100 and med < 0.30


PUBLISHED = SHARED_DATA / "profiles" / "published_throughput_tables.csv"


@pytest.mark.skipif(not PUBLISHED.is_file(), reason="shared data not present")
def test_published_vllm_inter_token_latency_at_low_concurrency():
    """vLLM's inter-token latency at concurrency 1 and 4 (decode of 1 or 4 requests):
    Llama-3.1-8B on H100 (vLLM 0.21, yobitel) and Llama-3-8B on A10G (vLLM 0.4.3, llmperf
    write-up; ~550 + 150 tokens). Not used to build the derivation."""
    rows = {(r["source_id"], r["concurrency_or_batch"], r["engine"]): r
            for r in csv.DictReader(PUBLISHED.open())}
    cases = [("yobitel_h100", "1", "vLLM 0.21.0", "h100", 1000),
             ("yobitel_h100", "4", "vLLM 0.21.0", "h100", 1000),
             ("llmperf_a10g_writeup", "1", "vLLM 0.4.3", "a10g", 625),
             ("llmperf_a10g_writeup", "4", "vLLM 0.4.3", "a10g", 625)]
    errs = []
    for src, conc, engine, gpu, ctx in cases:
        itl = float(rows[(src, conc, engine)]["itl_ms"]) / 1e3
        p = derive("llama-3.1-8b", gpu, 1)
        b = int(conc)
        est = _step(p, b, b, b * ctx)
        errs.append(est / itl - 1)
        print(f"{src} c={conc}: ITL measured {itl * 1e3:.2f} ms, derived {est * 1e3:.2f} ms "
              f"({est / itl - 1:+.0%})")
    assert max(abs(e) for e in errs) < 0.35


VALIDATION = Path(__file__).resolve().parents[1] / "validation" / "measurements.csv"


def _steady_tpot_s(p: dict, c: int, isl: float, osl: float) -> float:
    """Mean TPOT of ``c`` closed-loop clients with fixed ISL/OSL, by a steady-state step:
    every step decodes ``c`` sequences at mean context ``isl + osl/2`` and carries, on
    average, ``c x isl / osl`` prefill tokens (each request's prompt once per ``osl``
    steps) with their attention pairs. An approximation, not a simulation."""
    return _step(p, c * (1 + isl / osl), c, c * (isl + osl / 2), c / osl * isl * isl / 2)


@pytest.mark.skipif(not VALIDATION.is_file(), reason="validation/measurements.csv not present")
def test_inferencex_tpot_at_fixed_concurrency():
    """SemiAnalysis InferenceX vLLM runs (validation/measurements.csv): Llama-3.1-70B FP8 on
    H100/H200 at TP1-8 and gpt-oss-120b (MXFP4) on H100 at TP2-8, concurrency 4-64, 1k/1k,
    1k/8k, 8k/1k. Not used to build the derivation."""
    rows = [r for r in csv.DictReader(VALIDATION.open()) if r["set_id"].startswith("inferencex")]
    profiles: dict[tuple, dict] = {}
    errs: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        oss = "gptoss" in r["set_id"]
        model, dtype = ("gpt-oss-120b", None) if oss else ("llama-3.1-70b", "fp8")
        gpu = "h100" if "H100" in r["gpu"] else "h200"
        key = (model, gpu, int(r["tp"]))
        if key not in profiles:
            profiles[key] = derive(model, gpu, int(r["tp"]), dtype=dtype, usd_per_gpu_hour=1.0)
        isl = float(r["input_len_fixed"] or r["input_len_mean"])
        osl = float(r["output_len_fixed"] or r["output_len_mean"])
        est = _steady_tpot_s(profiles[key], int(float(r["max_concurrency"])), isl, osl)
        errs[model].append(est / (float(r["mean_tpot_ms"]) / 1e3) - 1)
    for model, e in errs.items():
        med = statistics.median(abs(x) for x in e)
        print(f"InferenceX {model}: {len(e)} load points, TPOT median |err| {med:.0%}, "
              f"bias {statistics.median(e):+.0%}, worst {max(e, key=abs):+.0%}")
    assert len(errs["llama-3.1-70b"]) >= 100 and len(errs["gpt-oss-120b"]) >= 40
    assert statistics.median(abs(x) for x in errs["llama-3.1-70b"]) < 0.15
    # gpt-oss: the measured fused-MoE kernel (AIConfigurator, MXFP4) is ~2x the weight
    # roofline at a few tokens, and the derived steps come out slower than InferenceX's
    # runs: a known weakness, bounded loosely so that a regression still fails.
    assert 0.0 < statistics.median(errs["gpt-oss-120b"]) < 0.8


def test_derive_from_a_mapping(tmp_path):
    from sim.profiles.derive import derive_from_mapping

    p = derive_from_mapping({"model": "llama-3.1-8b", "gpu": "h100", "tp": 2})
    assert p == derive("llama-3.1-8b", "h100", 2)
    with pytest.raises(DeriveError, match="unknown field 'gpus' \\(did you mean 'gpu'\\?\\)"):
        derive_from_mapping({"model": "llama-3.1-8b", "gpus": "h100"})
    with pytest.raises(DeriveError, match="missing field 'gpu'"):
        derive_from_mapping({"model": "llama-3.1-8b"})
    with pytest.raises(DeriveError, match="tp must be a positive whole number, got 'two'"):
        derive_from_mapping({"model": "llama-3.1-8b", "gpu": "h100", "tp": "two"})
    with pytest.raises(DeriveError, match="expected a mapping"):
        derive_from_mapping("llama-3.1-8b")
    # a config.json next to the experiment
    cfg = tmp_path / "my.json"
    cfg.write_text((Path(__file__).resolve().parents[1] / "sim" / "profiles" / "data" / "models"
                    / "Qwen--Qwen3-8B_config.json").read_text())
    q = derive_from_mapping({"model": "my.json", "gpu": "l40s"}, base_dir=tmp_path)
    assert q["model"].startswith("my (bf16")


@pytest.mark.parametrize("model,gpu,tp", [("gpt-oss-120b", "h100", 2), ("llama-3.1-8b", "b200", 1),
                                          ("llama-3.1-70b", "h200", 4)])
def test_async_scheduling_hides_cpu_terms_behind_the_gpu_step(model, gpu, tp):
    """--async-scheduling: the CPU per-step and per-sequence terms overlap the GPU step;
    what exceeds the GPU's one-token step stays. The GPU terms are unchanged."""
    sync = derive(model, gpu, tp, usd_per_gpu_hour=1.0)["step_time"]
    asyn = derive(model, gpu, tp, usd_per_gpu_hour=1.0, async_scheduling=True)["step_time"]
    cpu_seq = ENGINE_DEFAULTS["vllm-0.10"]["per_seq_cpu_s"]
    gpu_seq = sync["per_seq_s"] - cpu_seq
    assert asyn["linear_s"] == sync["linear_s"]
    assert asyn["per_seq_s"] == pytest.approx(gpu_seq, rel=1e-3)
    gpu_step_1 = sync["linear_s"][0] + gpu_seq
    assert asyn["per_step_s"] == pytest.approx(max(0.0, sync["per_step_s"] - gpu_step_1),
                                               abs=1e-7)
    assert asyn["per_step_s"] < sync["per_step_s"]
    assert "async scheduling" in asyn["source"]
    inline = derive_from_mapping({"model": model, "gpu": gpu, "tp": tp, "usd_per_gpu_hour": 1.0,
                                  "async_scheduling": True})
    assert inline["step_time"] == asyn


def test_async_scheduling_reaches_the_replica():
    """The derived profile says the engine schedules asynchronously (scheduler block), so
    that the step replica admits with one step of delay; the fit's terms carry it through
    to the replay. A value that is not a boolean is refused."""
    for flag in (False, True):
        p = derive("llama-3.1-8b", "h100", 1, usd_per_gpu_hour=1.0, async_scheduling=flag)
        assert p["scheduler"].get("async_scheduling", False) is flag
        assert Scheduler(**p["scheduler"]).async_scheduling is flag
        terms = StepTerms.from_profile(p)
        assert terms.async_scheduling is flag
        assert terms.to_step_model().scheduler.async_scheduling is flag
    with pytest.raises(DeriveError, match="async_scheduling must be true or false"):
        derive_from_mapping({"model": "llama-3.1-8b", "gpu": "h100", "async_scheduling": "no"})

"""Why trust capsim: queueing-theory self-checks and fidelity against published servers.

Two kinds of checks, both run by ``capsim validate`` (:func:`run_validation`):

**Theory self-checks** (:func:`theory_checks`): configurations where a closed form applies,
run with fixed seeds, each reported with its theory value, the simulated mean and a 95%
confidence interval over independent replications (Student t on replication means; the
first 10% of each replication is dropped as warm-up). A check passes when the theory value
lies within 3.3 standard errors (two-sided 99.9%), the tolerance of the project's theory
tests (tests/test_engine_theory.py uses 4).

* M/M/c mean wait against Erlang C, on the engine with single-slot exponential replicas;
* M/G/1 mean sojourn against Pollaczek-Khinchine, on the step-level vLLM replica itself
  (``max_num_seqs = 1``, a constant step time ``d``: a request of ``o`` output tokens
  occupies the replica for ``o`` steps, so the service time is ``o x d`` with ``o``
  uniform on 1..2m-1);
* Little's law on the same runs (number in system sampled at independent uniform times
  against arrival rate x mean sojourn);
* conservation: every request of the M/G/1 runs ends exactly once, after its first token,
  and the replica's busy time equals the summed service times.

**Fidelity checks** (:func:`fidelity_checks`): every set of ``validation/measurements.csv``
that capsim can represent (a vLLM V1 engine, one replica with tensor parallelism, a model
and GPU of the catalog) is replayed with a *derived* profile (:func:`sim.profiles.derive.
derive`; nothing is fitted to the set) on the step-level replica, each load point as it
was run (:data:`RECIPES`: its concurrency or Poisson rate, its number of requests, its
length distribution, its engine arguments, all from the benchmark's published scripts or
the set's own columns), and compared on mean TTFT, mean TPOT and mean end-to-end latency
(medians where a source publishes only medians) with signed relative errors
``simulated / measured - 1``.

*Overloaded* (fixed before any error was computed, the same rule for a measured and a
simulated point): the mean TTFT is more than 10% of the mean end-to-end latency, i.e.
requests spend a noticeable share of their life waiting to start (queued for a sequence
slot or for KV blocks, or preempted). Where a source publishes no E2E, the measured E2E is
``TTFT + TPOT x (mean output - 1)`` from its published means (marked ``E2E*``); the
simulated side of such a point uses the same formula on simulated means. The rule is
meant for workloads whose outputs are long (all the sets here: >= 512 tokens); with very
short outputs it would call unloaded points overloaded.

**Fitted profiles** (:func:`fitted_checks`, issue #21): :func:`sim.profiles.fit.fit_profile`
fits a derived profile to some load points of a set (:data:`FIT_POINTS`) and the fitted
profile is scored on the held-back points of the same server only.

Sets that cannot be represented are listed with the reason (:func:`plan_sets`).
"""

from __future__ import annotations

import csv
import math
import statistics
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from sim.core.errors import ConfigError
from sim.profiles.benchfiles import BenchRecord, read_measurements
from sim.profiles.derive import derive
from sim.profiles.fit import (
    FIT_PARAMETERS,
    ReplayLoad,
    StepTerms,
    fit_profile,
    simulate_metrics,
)
from sim.serving.bench_replay import replay
from sim.serving.engine import Engine, FinishedBlock, StreamPolicy
from sim.serving.replica import ReplicaSpec
from sim.workload.requests import RequestBlock

__all__ = [
    "TheoryCheck",
    "PointResult",
    "Excluded",
    "SetPlan",
    "FitRow",
    "ValidationReport",
    "QUICK_SETS",
    "RECIPES",
    "FIT_POINTS",
    "OVERLOAD_TTFT_SHARE",
    "default_measurements",
    "plan_sets",
    "theory_checks",
    "fidelity_checks",
    "fitted_checks",
    "run_validation",
    "erlang_c",
    "pollaczek_khinchine_sojourn_s",
]

METRICS = ("ttft", "tpot", "e2e")
OVERLOAD_TTFT_SHARE = 0.10
Progress = Callable[[str], None]

# The representative subset of a quick run: a dense 70B on two GPUs of two kinds (one
# KV-bound at high concurrency), a sparse MoE, a workstation-GPU open-loop run.
QUICK_SETS = (
    "inferencex-vllm-llama31-70b-fp8-h200-tp2-1k1k",
    "inferencex-vllm-llama31-70b-fp8-h100-tp2-8k1k",
    "inferencex-vllm-gptoss120b-mxfp4-h100-tp4-1k1k",
    "llmservingsim-vllm0190-rtxpro6000-llama31-8b",
)
QUICK_FIT_SETS = ("inferencex-vllm-llama31-70b-fp8-h200-tp2-1k1k",)


def default_measurements() -> Path:
    """``validation/measurements.csv`` of the source checkout (not shipped in the wheel)."""
    return Path(__file__).resolve().parents[2] / "validation" / "measurements.csv"


# ----------------------------------------------------------------------------- theory

@dataclass(frozen=True)
class TheoryCheck:
    """One closed-form check: theory value, simulated mean and its 95% interval."""

    name: str
    quantity: str
    unit: str
    theory: float
    simulated: float
    ci_low: float
    ci_high: float
    std_err: float
    tolerance: float | None = None  # an exact identity: allowed rounding error instead

    @property
    def passed(self) -> bool:
        if self.tolerance is not None:
            return abs(self.simulated - self.theory) <= self.tolerance
        return abs(self.simulated - self.theory) <= 3.3 * self.std_err


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load ``a = lambda / mu < c``."""
    term, total = 1.0, 1.0
    for k in range(1, c):
        term *= a / k
        total += term
    top = term * a / c * c / (c - a)
    return top / (total + top)


def pollaczek_khinchine_sojourn_s(lam: float, es: float, es2: float) -> float:
    """Mean sojourn of M/G/1 FCFS: ``E[S] + lambda E[S^2] / (2 (1 - rho))``."""
    rho = lam * es
    return es + lam * es2 / (2.0 * (1.0 - rho))


def _interval(name: str, quantity: str, unit: str, theory: float,
              samples: Sequence[float]) -> TheoryCheck:
    x = np.asarray(samples, float)
    se = float(x.std(ddof=1) / math.sqrt(x.size))
    half = float(sps.t.ppf(0.975, x.size - 1)) * se
    m = float(x.mean())
    return TheoryCheck(name, quantity, unit, theory, m, m - half, m + half, se)


def _mmc_wait(rng: np.random.Generator, c: int, lam: float, n: int) -> float:
    arrival = np.cumsum(rng.exponential(1.0 / lam, n))
    work = rng.exponential(1.0, n)
    eng = Engine(replicas=c, spec=ReplicaSpec(rate_table=[0.0, 1.0], max_batch=1),
                 streams=[StreamPolicy()], seed=int(rng.integers(1 << 31)))
    got: list[FinishedBlock] = []
    eng.run([RequestBlock.from_arrays(arrival, np.zeros(n), work)], got.append)
    fb = got[0]
    wait = (fb.start_s - fb.requests.arrival_s)[n // 10:]
    return float(wait.mean())


@dataclass(frozen=True)
class _Mg1Run:
    sojourn_s: float
    in_system: float
    lam_hat: float
    ends_once: bool
    busy_gap_s: float


def _mg1_run(rng: np.random.Generator, lam: float, step_s: float, mean_out: int,
             n: int) -> _Mg1Run:
    outs = rng.integers(1, 2 * mean_out, n)
    arrival = np.cumsum(rng.exponential(1.0 / lam, n))
    arrival -= arrival[0]
    terms = StepTerms(tokens=(1.0, 2.0), linear_s=(0.0, 0.0), per_step_s=step_s,
                      max_num_seqs=1, max_num_batched_tokens=64)
    load = ReplayLoad((1,) * n, tuple(int(o) for o in outs), tuple(float(a) for a in arrival),
                      None)
    out = replay(terms, load)
    end = arrival + out.e2e_s
    keep = slice(n // 10, None)
    t0, t1 = arrival[n // 10], arrival[-1]
    probes = np.sort(rng.uniform(t0, t1, 4000))
    started = np.searchsorted(np.sort(arrival), probes, side="right")
    ended = np.searchsorted(np.sort(end), probes, side="right")
    lam_hat = (n - 1 - n // 10) / (t1 - t0)
    finite = np.isfinite(out.e2e_s) & (out.e2e_s >= out.ttft_s) & (out.ttft_s > 0)
    busy = float(np.sum(outs) * step_s)
    # the replica is busy from each service start to its end: union of [end - S, end]
    starts = np.maximum(end - outs * step_s, np.maximum.accumulate(np.r_[0.0, end[:-1]]))
    union = float(np.sum(end - starts))
    return _Mg1Run(float(out.e2e_s[keep].mean()), float(np.mean(started - ended)), lam_hat,
                   bool(finite.all() and len(out.e2e_s) == n), abs(union - busy))


def theory_checks(*, full: bool = False, progress: Progress | None = None) -> list[TheoryCheck]:
    """The closed-form checks of the module doc (more and longer replications if ``full``)."""
    reps, n = (20, 50000) if full else (10, 20000)
    say = progress or (lambda _m: None)
    say("theory: M/M/8 against Erlang C")
    c, lam = 8, 6.0
    waits = [_mmc_wait(np.random.default_rng(2000 + r), c, lam, n) for r in range(reps)]
    out = [_interval("M/M/8 at rho=0.75 (engine, exponential single-slot replicas)",
                     "mean wait in queue (Erlang C)", "s",
                     erlang_c(c, lam) / (c - lam), waits)]
    say("theory: M/G/1 on the step replica against Pollaczek-Khinchine")
    lam1, step_s, m = 0.7, 0.01, 50
    k = np.arange(1, 2 * m)
    es, es2 = float(np.mean(k * step_s)), float(np.mean((k * step_s) ** 2))
    runs = [_mg1_run(np.random.default_rng(3000 + r), lam1, step_s, m, n) for r in range(reps)]
    out.append(_interval("M/G/1 at rho=0.35 (step replica, max_num_seqs=1, service o x 10 ms)",
                         "mean sojourn (Pollaczek-Khinchine)", "s",
                         pollaczek_khinchine_sojourn_s(lam1, es, es2),
                         [r.sojourn_s for r in runs]))
    out.append(_interval("Little's law on the M/G/1 runs", "time-average number in system, "
                         "L / (lambda W) (theory 1)", "ratio", 1.0,
                         [r.in_system / (r.lam_hat * r.sojourn_s) for r in runs]))
    conserved = [float(r.ends_once) for r in runs]
    out.append(TheoryCheck("conservation on the M/G/1 runs", "share of requests ending once, "
                           "after their first token", "share", 1.0, float(np.mean(conserved)),
                           float(np.min(conserved)), float(np.max(conserved)), 0.0,
                           tolerance=0.0))
    gap = max(r.busy_gap_s for r in runs)
    out.append(TheoryCheck("conservation on the M/G/1 runs", "busy time - summed service "
                           "(max over replications; floating-point rounding allowed: 1 us)",
                           "s", 0.0, gap, 0.0, gap, 0.0, tolerance=1e-6))
    return out


# --------------------------------------------------------------------------- fidelity

@dataclass(frozen=True)
class Recipe:
    """How a family of sets was run (engine arguments and client), with its source."""

    prefix: str
    source: str
    range_ratio: float | None = None          # random lengths uniform on [int(r L), L]
    prompts_per_client: int | None = None     # num_prompts = this x concurrency
    max_num_seqs_is_concurrency: bool = False
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    kv_fp8: tuple[str, ...] = ()              # set-id parts whose KV cache is FP8
    engine_scope: bool = False                # latencies from engine timestamps (no HTTP)
    lengths_file: dict[str, str] = field(default_factory=dict)  # model part -> summary csv
    replications: int = 1
    async_scheduling: bool = False            # vLLM --async-scheduling


RECIPES: tuple[Recipe, ...] = (
    Recipe("inferencex-", "InferenceMAX benchmark scripts (github.com/InferenceMAX/InferenceMAX "
           "benchmarks/70b_fp8_{h100_docker,h200_slurm}.sh, gptoss_fp4_h100_docker.sh and "
           "README, as vendored in the public fork jyothisambolu/InferenceMAX): client "
           "kimbochen/bench_serving benchmark_serving.py --dataset-name random "
           "--random-range-ratio 0.8 (lengths uniform on [int(0.8 L), L]) --num-prompts "
           "10 x CONC --max-concurrency CONC --request-rate inf --ignore-eos; server vllm "
           "serve --max-num-seqs CONC --max-num-batched-tokens 8192 --max-model-len 10240 "
           "--no-enable-prefix-caching --async-scheduling, --kv-cache-dtype fp8 in the H200 "
           "70B script only", range_ratio=0.8, prompts_per_client=10,
           max_num_seqs_is_concurrency=True, max_num_batched_tokens=8192,
           max_model_len=10240, kv_fp8=("70b-fp8-h200",), async_scheduling=True),
    Recipe("llmservingsim-", "LLMServingSim bench/examples/<hw>/<model>/vllm/meta.json (engine "
           "args in the set's columns) and its 300-request ShareGPT workload; lengths sampled "
           "from the shipped quantile summary (validation/lengths/), Poisson arrivals at the "
           "row's rate, engine-side timestamps (no HTTP or tokenizer overheads); 5 "
           "replications averaged", engine_scope=True,
           lengths_file={"llama31": "sharegpt_llmservingsim_llama31_300.csv",
                         "qwen3": "sharegpt_llmservingsim_qwen3_300.csv"},
           replications=5),
)

_MODELS = {  # measurements.csv model (lower case, prefix) -> (catalog model, weight dtype)
    "meta-llama/llama-3.1-70b-instruct (fp8)": ("llama-3.1-70b", "fp8"),
    "openai/gpt-oss-120b": ("gpt-oss-120b", None),
    "meta-llama/llama-3.1-8b": ("llama-3.1-8b", "bf16"),
    "qwen/qwen3-32b": ("qwen3-32b", "bf16"),
}
_GPUS = {"h100-80gb": "h100_sxm", "h200-141gb": "h200_sxm", "rtx4090-24gb": "rtx_4090",
         "rtx-pro-6000-96gb": "rtx_pro_6000", "a100-80gb": "a100_sxm"}


@dataclass(frozen=True)
class Excluded:
    set_id: str
    points: int
    reason: str


@dataclass(frozen=True)
class SetPlan:
    """A representable set: what to derive and how to replay its load points."""

    set_id: str
    model: str
    dtype: str | None
    gpu: str
    tp: int
    recipe: Recipe
    rows: tuple[dict[str, str], ...]
    source: Path


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConfigError("file not found (capsim validate reads the checkout's "
                          "validation/measurements.csv; give --measurements)", file=str(path))
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _why_not(r: dict[str, str]) -> str | None:
    """Why a set cannot be represented by a derived vLLM V1 replica (None = it can)."""
    if r["engine"] != "vllm":
        return (f"engine {r['engine']} {r['engine_version']}: capsim models the vLLM V1 "
                "scheduler only")
    if r["engine_version"].startswith("0.6") or "num-scheduler-steps" in r["notes"]:
        return ("vLLM 0.6.0 with multi-step scheduling (--num-scheduler-steps 10) and the V0 "
                "scheduler (no chunked prefill); capsim models V1; only medians published")
    if int(r["num_gpus"]) != int(r["tp"]):
        return (f"{r['num_gpus']} GPUs with TP {r['tp']}: data/expert parallelism is not "
                "modelled by one replica")
    if not any(r["model"].lower().startswith(k) for k in _MODELS):
        return f"model {r['model']} is not in the catalog"
    if r["gpu"].lower() not in _GPUS:
        return f"GPU {r['gpu']} is not in the catalog"
    if not any(r["set_id"].startswith(x.prefix) for x in RECIPES):
        return "no replay recipe (how the benchmark was run) for this source"
    return None


def plan_sets(path: Path | None = None,
              only: Sequence[str] | None = None) -> tuple[list[SetPlan], list[Excluded]]:
    """The representable sets of the measurements table and the excluded ones (reasons)."""
    path = path or default_measurements()
    rows = _rows(path)
    by_set: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_set.setdefault(r["set_id"], []).append(r)
    if only:
        for s in only:
            if s not in by_set:
                raise ConfigError(f"unknown set '{s}' (the sets are listed in "
                                  "validation/README.md)", file=str(path), field="set_id")
        by_set = {s: by_set[s] for s in only}
    plans, excluded = [], []
    for sid, group in by_set.items():
        r = group[0]
        why = _why_not(r)
        if why:
            excluded.append(Excluded(sid, len(group), why))
            continue
        model, dtype = next(v for k, v in _MODELS.items() if r["model"].lower().startswith(k))
        recipe = next(x for x in RECIPES if sid.startswith(x.prefix))
        plans.append(SetPlan(sid, model, dtype, _GPUS[r["gpu"].lower()], int(r["tp"]), recipe,
                             tuple(group), path))
    return plans, excluded


@dataclass(frozen=True)
class PointResult:
    """One load point: measured and simulated values (seconds), overload calls."""

    set_id: str
    load: str
    stat: str                                   # "mean" or "median"
    measured: dict[str, float]
    simulated: dict[str, float]
    e2e_implied: bool
    overloaded_measured: bool
    overloaded_simulated: bool
    requests: int

    def error(self, metric: str) -> float:
        m, s = self.measured.get(metric), self.simulated.get(metric)
        if m is None or s is None or not m > 0 or not math.isfinite(s):
            return math.nan
        return s / m - 1.0


def _num(r: dict[str, str], key: str) -> float | None:
    v = (r.get(key) or "").strip()
    return float(v) if v else None


def _measured(r: dict[str, str], out_mean: float) -> tuple[str, dict[str, float], bool]:
    stat = "mean" if _num(r, "mean_ttft_ms") is not None else "median"
    got = {m: v / 1e3 for m in METRICS if (v := _num(r, f"{stat}_{m}_ms")) is not None}
    implied = False
    if "e2e" not in got and "ttft" in got and "tpot" in got:
        got["e2e"] = got["ttft"] + got["tpot"] * (out_mean - 1.0)
        implied = True
    return stat, got, implied


def _quantile_sampler(path: Path, name: str) -> Callable[[np.random.Generator, int], np.ndarray]:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    pts = {(r["key"]): float(r["value"]) for r in rows if r["field"] == name
           and r["kind"] in ("stat", "quantile")}
    qs = [(0.0, pts["min"])] + [(int(k[1:]) / 100, pts[k]) for k in
                                ("p10", "p25", "p50", "p75", "p90", "p95", "p99")]
    qs.append((1.0, pts["max"]))
    p, v = np.array([q for q, _ in qs]), np.array([x for _, x in qs])

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        return np.maximum(1, np.round(np.interp(rng.uniform(0, 1, n), p, v))).astype(int)
    return sample


def _profile(plan: SetPlan, row: dict[str, str], max_num_seqs: int | None) -> dict[str, Any]:
    rc = plan.recipe
    kv = "fp8" if any(k in plan.set_id for k in rc.kv_fp8) else "auto"
    return derive(plan.model, plan.gpu, plan.tp, dtype=plan.dtype, kv_dtype=kv,
                  max_num_seqs=max_num_seqs or (int(float(row["max_num_seqs"]))
                                                if row.get("max_num_seqs") else None),
                  max_num_batched_tokens=rc.max_num_batched_tokens or (
                      int(float(row["max_num_batched_tokens"]))
                      if row.get("max_num_batched_tokens") else None),
                  max_model_len=rc.max_model_len, usd_per_gpu_hour=1.0,
                  async_scheduling=rc.async_scheduling)


def _terms(plan: SetPlan, profile: dict[str, Any]) -> StepTerms:
    terms = StepTerms.from_profile(profile, file=plan.set_id)
    if plan.recipe.engine_scope:
        terms = replace(terms, pre_s=0.0, pre_s_per_input_token=0.0, post_s=0.0)
    return terms


def _loads(plan: SetPlan, row: dict[str, str], seed: int) -> list[ReplayLoad]:
    """The replay(s) of one load point (several seeds for open-loop sets)."""
    rc = plan.recipe
    rng = np.random.default_rng(seed)
    loads = []
    for _ in range(rc.replications):
        if row["load_kind"] == "concurrency":
            c = int(float(row["max_concurrency"]))
            n = (rc.prompts_per_client or 10) * c
            isl, osl = int(float(row["input_len_fixed"])), int(float(row["output_len_fixed"]))
            ratio = rc.range_ratio if rc.range_ratio is not None else 1.0
            ins = rng.integers(int(isl * ratio), isl + 1, n)
            outs = rng.integers(int(osl * ratio), osl + 1, n)
            loads.append(ReplayLoad(tuple(int(x) for x in ins), tuple(int(x) for x in outs),
                                    (0.0,) * n, c))
            continue
        n = int(float(row["num_prompts"]))
        part = next(k for k in rc.lengths_file if k in plan.set_id)
        lengths = plan.source.parent / "lengths" / rc.lengths_file[part]
        ins = _quantile_sampler(lengths, "input_toks")(rng, n)
        outs = _quantile_sampler(lengths, "output_toks")(rng, n)
        rate = float(row["request_rate_per_s"])
        arrival = np.cumsum(rng.exponential(1.0 / rate, n))
        arrival -= arrival[0]
        loads.append(ReplayLoad(tuple(int(x) for x in ins), tuple(int(x) for x in outs),
                                tuple(float(a) for a in arrival), None))
    return loads


def _simulate(terms: StepTerms, loads: Sequence[ReplayLoad], stat: str) -> dict[str, float]:
    """Mean (or median) TTFT, TPOT, E2E over the replications' requests."""
    runs = []
    for load in loads:
        out = replay(terms, load)
        if stat == "mean":
            runs.append(simulate_metrics(out))
            continue
        lens = out.output_lens.astype(float)
        multi = lens > 1
        tpot = (out.e2e_s - out.ttft_s)[multi] / (lens[multi] - 1)
        runs.append({"ttft": float(np.median(out.ttft_s)), "tpot": float(np.median(tpot)),
                     "e2e": float(np.median(out.e2e_s))})
    return {m: float(np.mean([r[m] for r in runs])) for m in METRICS}


def _overloaded(v: dict[str, float]) -> bool:
    return v.get("ttft", 0.0) > OVERLOAD_TTFT_SHARE * v.get("e2e", math.inf)


def _point(plan: SetPlan, row: dict[str, str], terms: StepTerms,
           loads: Sequence[ReplayLoad]) -> PointResult:
    out_mean = float(np.mean([np.mean(ld.output_lens) for ld in loads]))
    stat, meas, implied = _measured(row, out_mean)
    sim = _simulate(terms, loads, stat)
    if implied:
        sim = {**sim, "e2e": sim["ttft"] + sim["tpot"] * (out_mean - 1.0)}
    load = (f"c={int(float(row['max_concurrency']))}" if row["load_kind"] == "concurrency"
            else f"rate={float(row['request_rate_per_s']):g}")
    return PointResult(plan.set_id, load, stat, meas, sim, implied, _overloaded(meas),
                       _overloaded(sim), sum(len(ld.input_lens) for ld in loads))


def _seed(seed: int, set_id: str, point: int) -> int:
    """A point's seed: independent of which other sets run (quick and full agree)."""
    return seed + zlib.crc32(set_id.encode()) + 1000 * point


def fidelity_checks(plans: Sequence[SetPlan], *, seed: int = 0,
                    progress: Progress | None = None) -> list[PointResult]:
    """Replay every load point of ``plans`` with derived profiles (module doc)."""
    out: list[PointResult] = []
    for i, plan in enumerate(plans):
        if progress:
            progress(f"fidelity {i + 1}/{len(plans)}: {plan.set_id}")
        shared = None if plan.recipe.max_num_seqs_is_concurrency else _profile(
            plan, plan.rows[0], None)
        for j, row in enumerate(plan.rows):
            c = (int(float(row["max_concurrency"]))
                 if plan.recipe.max_num_seqs_is_concurrency else None)
            prof = shared or _profile(plan, row, c)
            loads = _loads(plan, row, _seed(seed, plan.set_id, j))
            out.append(_point(plan, row, _terms(plan, prof), loads))
    return out


# ------------------------------------------------------------------------- fitted (#21)

# Which load points of a concurrency sweep are fitted; the others are held back. Chosen to
# span the sweep (lowest, middle, highest) so that held-back points are interpolations.
FIT_POINTS = (4, 16, 64)


@dataclass(frozen=True)
class FitRow:
    """A held-back load point scored with a profile fitted to other points of its set."""

    set_id: str
    fitted_on: str
    point: PointResult
    derived: PointResult | None = None
    parameters: str = ""


def _record(plan: SetPlan, row: dict[str, str], load: ReplayLoad,
            records: Sequence[BenchRecord]) -> BenchRecord:
    c = int(float(row["max_concurrency"]))
    rec = next(r for r in records if r.max_concurrency == c)
    return replace(rec, input_lens=load.input_lens, output_lens=load.output_lens,
                   completed=len(load.input_lens), num_prompts=len(load.input_lens))


# Tried in turn: fit.py's default terms, then only the two that set the step time's scale
# (fit.py refuses terms the fitted points cannot identify).
FIT_PARAMETER_SETS = (FIT_PARAMETERS, ("linear_scale", "per_step_s"))


def fitted_checks(plans: Sequence[SetPlan], *, seed: int = 0, max_evaluations: int = 40,
                  polish_evaluations: int = 60, progress: Progress | None = None,
                  refused: list[Excluded] | None = None) -> list[FitRow]:
    """Fit each concurrency set on :data:`FIT_POINTS`, score the held-back points; a set
    whose fit is refused by every parameter set of :data:`FIT_PARAMETER_SETS` is added to
    ``refused`` with fit.py's reason."""
    rows: list[FitRow] = []
    for i, plan in enumerate(p for p in plans if p.rows[0]["load_kind"] == "concurrency"):
        concs = [int(float(r["max_concurrency"])) for r in plan.rows]
        fit_c = [c for c in concs if c in FIT_POINTS] or concs[::2]
        if len(fit_c) == len(concs):  # keep at least one point back
            fit_c = fit_c[::2]
        held = [c for c in concs if c not in fit_c]
        if len(fit_c) < 2 or not held:
            continue
        if progress:
            progress(f"fit {i + 1}: {plan.set_id} on c={','.join(map(str, fit_c))}")
        records = read_measurements(plan.source, plan.set_id)
        loads = {int(float(r["max_concurrency"])): _loads(plan, r, _seed(seed, plan.set_id, j))[0]
                 for j, r in enumerate(plan.rows)}
        start = _terms(plan, _profile(plan, plan.rows[0], max(concs)))
        fit_records = [_record(plan, r, loads[c], records)
                       for r, c in zip(plan.rows, concs, strict=True) if c in fit_c]
        result, why = None, ""
        for params in FIT_PARAMETER_SETS:
            try:
                result = fit_profile(fit_records, start, replay=replay, parameters=params,
                                     max_requests=10 ** 6, seed=seed,
                                     max_evaluations=max_evaluations,
                                     polish_evaluations=polish_evaluations)
                break
            except ConfigError as exc:
                why = exc.message
        if result is None:
            if refused is not None:
                refused.append(Excluded(plan.set_id, len(held), f"fit refused: {why}"))
            continue
        names = ", ".join(result.fitted)
        for r, c in zip(plan.rows, concs, strict=True):
            if c in held:
                rows.append(FitRow(plan.set_id, ",".join(map(str, fit_c)),
                                   _point(plan, r, result.terms, [loads[c]]),
                                   _point(plan, r, start, [loads[c]]), names))
    return rows


# -------------------------------------------------------------------------- the report

@dataclass
class ValidationReport:
    """Everything ``capsim validate`` prints."""

    full: bool
    theory: list[TheoryCheck]
    points: list[PointResult]
    fitted: list[FitRow]
    excluded: list[Excluded]
    sets: list[str]
    fit_refused: list[Excluded] = field(default_factory=list)

    def median_abs(self, metric: str, points: Sequence[PointResult] | None = None,
                   implied: bool | None = None) -> float:
        pts = self.points if points is None else points
        errs = [abs(p.error(metric)) for p in pts
                if not math.isnan(p.error(metric))
                and (implied is None or metric != "e2e" or p.e2e_implied == implied)]
        return statistics.median(errs) if errs else math.nan

    def by_set(self) -> dict[str, list[PointResult]]:
        out: dict[str, list[PointResult]] = {}
        for p in self.points:
            out.setdefault(p.set_id, []).append(p)
        return out

    def overload_counts(self) -> tuple[int, int]:
        match = sum(p.overloaded_measured == p.overloaded_simulated for p in self.points)
        return match, len(self.points) - match

    def fitted_median_abs(self, metric: str) -> float:
        errs = [abs(r.point.error(metric)) for r in self.fitted
                if not math.isnan(r.point.error(metric))]
        return statistics.median(errs) if errs else math.nan


def run_validation(*, full: bool = False, sets: Sequence[str] | None = None,
                   measurements: Path | None = None, seed: int = 0,
                   progress: Progress | None = None,
                   theory: bool = True, fits: bool = True) -> ValidationReport:
    """Theory checks, then fidelity (and fitted) checks of the chosen sets.

    ``sets`` picks set ids (unknown ones are refused); otherwise a quick run takes
    :data:`QUICK_SETS` and ``full`` every representable set."""
    plans, excluded = plan_sets(measurements, sets)
    if not sets and not full:
        plans = [p for p in plans if p.set_id in QUICK_SETS]
    th = theory_checks(full=full, progress=progress) if theory else []
    points = fidelity_checks(plans, seed=seed, progress=progress)
    fit_plans = plans if (full or sets) else [p for p in plans if p.set_id in QUICK_FIT_SETS]
    refused: list[Excluded] = []
    fitted = (fitted_checks(fit_plans, seed=seed, progress=progress, refused=refused)
              if fits else [])
    return ValidationReport(full, th, points, fitted, excluded, [p.set_id for p in plans],
                            refused)

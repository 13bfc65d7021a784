"""Readers for the serving-benchmark results users already have.

Turns the output of four common load generators into one normalized, frozen
:class:`BenchRecord` per load point (all times in seconds, lengths in tokens):

* ``vllm bench serve`` JSON (``vllm/benchmarks/serve.py``, ``--save-result``) and the older
  ``benchmarks/benchmark_serving.py`` JSON: one load point per file. Summary fields
  ``request_rate`` (a number or ``"inf"``), ``burstiness``, ``max_concurrency``,
  ``duration``, ``completed``, ``num_prompts``, ``total_input_tokens``,
  ``total_output_tokens``, ``{mean,median,p99}_{ttft,tpot,itl,e2el}_ms``; with
  ``--save-detailed`` also the per-request ``input_lens``, ``output_lens``, ``ttfts`` (s),
  ``itls`` (lists, s), ``start_times``, ``latencies`` and ``errors``. A file written with
  ``--append-result`` (one JSON document a line) gives one load point per line.
* GuideLLM's JSON (or YAML) report (``benchmarks.json``): one load point per entry of
  ``benchmarks``; the strategy comes from ``config.strategy`` (report schema 2, GuideLLM
  >= 0.4) or ``args.strategy`` (0.2-0.3); the metrics from ``metrics.<name>.successful``.
* llmperf (``token_benchmark_ray.py``) summaries: a flat ``*_summary.json``
  (``num_concurrent_requests``, ``results_ttft_s_mean``, ...), a dict of such summaries
  keyed by concurrency (llmperf-bench's ``*_results.json``), or llmperf-bench's short
  per-concurrency summary (``first-time-to-token_mean_in_ms``, ``latency_ms_per_token``).

Also :func:`read_measurements`: the load points of one set of capsim's own validation
table (``validation/measurements.csv``: one published load point a row, same units as
the columns say), for fits checked against held-back points.

Conventions (assumptions): ``tpot`` is vLLM's time per output token *excluding* the first,
``(e2e - ttft) / (output_tokens - 1)`` averaged over requests; ``itl`` is vLLM's pooled
inter-token gap. GuideLLM's ``inter_token_latency_ms`` is exactly that TPOT and is read as
such (its ``time_per_output_token_ms`` includes the first token and is not used).
llmperf's ``inter_token_latency_s`` is end-to-end latency over output tokens counted by
the *client's* tokenizer, so it is neither TPOT nor ITL; from a full llmperf summary TPOT is
derived from the means, ``(e2e - ttft) / (output - 1)`` (exact for fixed lengths), and the
lengths are llmperf's client-side token counts. Only successful requests count: failed
requests are dropped from the per-request lists. Anything a file does not state is
``None``; nothing is guessed. A file that is none of these formats, or is malformed, is
refused with one line naming the file, the field and the problem
(:class:`~sim.core.errors.ConfigError`); :func:`check_fit_inputs` refuses a record that
lacks what a profile fit needs, naming the file's own field.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from sim.core.errors import ConfigError

__all__ = [
    "BenchRecord",
    "read_bench",
    "read_benches",
    "detect_format",
    "check_fit_inputs",
    "native_field",
    "read_measurements",
    "FORMATS",
]

LoadKind = Literal["rate", "concurrency"]

FORMATS = ("vllm-bench-serve", "vllm-benchmark-serving", "guidellm", "llmperf",
           "llmperf-bench")

_ENGINES = ("vllm", "sglang", "tgi", "lmdeploy", "tensorrt-llm", "trt-llm", "deepspeed-mii",
            "scalellm", "llama.cpp")


@dataclass(frozen=True)
class BenchRecord:
    """One load point of a serving benchmark, normalized (seconds, tokens)."""

    file: str
    format: str
    point: str                       # which load point of the file ("" if the only one)
    engine: str                      # serving engine when the file says, else "unknown"
    model: str                       # model name when the file says, else "unknown"
    load_kind: LoadKind              # rate: open-loop arrivals; concurrency: N closed-loop clients
    request_rate_per_s: float | None  # target arrival rate; inf = all requests at once
    burstiness: float | None         # gamma shape of inter-arrivals: 1 Poisson, inf constant
    max_concurrency: int | None      # clients (concurrency) or a cap on in-flight requests
    duration_s: float | None
    completed: int | None
    num_prompts: int | None
    input_tokens_mean: float | None
    output_tokens_mean: float | None
    ttft_mean_s: float | None = None
    ttft_median_s: float | None = None
    ttft_p99_s: float | None = None
    tpot_mean_s: float | None = None
    tpot_median_s: float | None = None
    tpot_p99_s: float | None = None
    itl_mean_s: float | None = None
    itl_median_s: float | None = None
    itl_p99_s: float | None = None
    e2e_mean_s: float | None = None
    e2e_median_s: float | None = None
    e2e_p99_s: float | None = None
    input_lens: tuple[int, ...] | None = None     # per successful request, when saved
    output_lens: tuple[int, ...] | None = None
    ttfts_s: tuple[float, ...] | None = None
    itls_s: tuple[tuple[float, ...], ...] | None = None
    start_times_s: tuple[float, ...] | None = None  # send times, relative to the first
    notes: tuple[str, ...] = field(default=())
    # vllm bench serve --random-range-ratio, where the file saved it (as an argument or with
    # --metadata random_range_ratio=R): request lengths uniform on [L(1-R), L(1+R)]
    random_range_ratio: float | None = None
    # standard deviations of the request lengths, where the file gives them (llmperf,
    # GuideLLM); the fit draws lengths from them when no per-request lengths are saved
    input_tokens_std: float | None = None
    output_tokens_std: float | None = None

    @property
    def label(self) -> str:
        """``file`` or ``file[point]``: how reports name this load point."""
        return f"{self.file}[{self.point}]" if self.point else self.file

    @property
    def load(self) -> str:
        """The load in words: ``rate 2 req/s``, ``rate inf``, ``concurrency 8``."""
        if self.load_kind == "concurrency":
            return f"concurrency {self.max_concurrency}"
        rate = self.request_rate_per_s
        text = "rate inf" if rate is not None and math.isinf(rate) else f"rate {rate:g} req/s"
        return text + (f" (max {self.max_concurrency} in flight)" if self.max_concurrency else "")


# ---------------------------------------------------------------------------- helpers

def _fail(file: str, fld: str | None, message: str) -> ConfigError:
    return ConfigError(message, file=file, field=fld)


def _num(d: Mapping[str, Any], key: str, file: str, *, prefix: str = "",
         scale: float = 1.0, allow_inf: bool = False) -> float | None:
    """``d[key] * scale`` as a float, ``None`` when absent or null; bad values refused."""
    if key not in d or d[key] is None:
        return None
    value = d[key]
    if isinstance(value, str) and allow_inf and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(file, prefix + key, f"expected a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or v < 0 or (math.isinf(v) and not allow_inf):
        raise _fail(file, prefix + key, f"expected a finite non-negative number, got {value!r}")
    return v * scale


def _int(d: Mapping[str, Any], key: str, file: str, *, prefix: str = "") -> int | None:
    v = _num(d, key, file, prefix=prefix)
    if v is None:
        return None
    if v != int(v):
        raise _fail(file, prefix + key, f"expected a whole number, got {d[key]!r}")
    return int(v)


def _num_list(values: Any, key: str, file: str, *, integer: bool = False) -> list[float]:
    if not isinstance(values, list):
        raise _fail(file, key, f"expected a list, got {type(values).__name__}")
    out: list[float] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(math.nan)  # a failed request's missing value; dropped with it
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or math.isinf(v):
            raise _fail(file, f"{key}[{i}]", f"expected a finite non-negative number, got {v!r}")
        if integer and v != int(v):
            raise _fail(file, f"{key}[{i}]", f"expected a whole number, got {v!r}")
        out.append(float(v))
    return out


def _engine_of(name: Any) -> str:
    text = str(name or "").lower()
    for engine in _ENGINES:
        if engine in text:
            return engine
    return "unknown"


def _load_kind(rate: float | None, concurrency: int | None) -> LoadKind:
    if rate is not None and math.isinf(rate) and concurrency is not None:
        return "concurrency"
    if rate is None and concurrency is not None:
        return "concurrency"
    return "rate"


def _read_document(path: Path) -> Any:
    file = str(path)
    if not path.is_file():
        raise _fail(file, None, "a folder, not a file" if path.is_dir() else "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(file, None, f"cannot read file: {exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise _fail(file, None, f"invalid YAML: {problem}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # `vllm bench serve --append-result`: one run a line
            try:
                return _JsonLines(json.loads(line) for line in text.splitlines()
                                  if line.strip())
            except json.JSONDecodeError:
                pass
        raise _fail(file, None, f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                                f"{exc.msg}") from None


class _JsonLines(list):  # type: ignore[type-arg]
    """The documents of a JSON-lines file (several appended results)."""


# ---------------------------------------------------------------------- detection

def _is_vllm(d: Mapping[str, Any]) -> bool:
    return ("completed" in d and "duration" in d
            and any(k in d for k in ("mean_ttft_ms", "mean_e2el_ms", "mean_tpot_ms",
                                     "request_throughput")))


def _is_llmperf_flat(d: Mapping[str, Any]) -> bool:
    return "results_ttft_s_mean" in d or "results_end_to_end_latency_s_mean" in d


def detect_format(doc: Any) -> str | None:
    """Which of :data:`FORMATS` a parsed document is, or ``None``."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("benchmarks"), list):
        return "guidellm"
    if _is_vllm(doc):
        newer = any(k in doc for k in ("failed", "endpoint_type", "max_concurrent_requests",
                                       "latencies"))
        return "vllm-bench-serve" if newer else "vllm-benchmark-serving"
    if _is_llmperf_flat(doc):
        return "llmperf"
    values = list(doc.values())
    if values and all(isinstance(v, dict) for v in values):
        if all(_is_llmperf_flat(v) for v in values):
            return "llmperf"
        if all("first-time-to-token_mean_in_ms" in v for v in values):
            return "llmperf-bench"
    return None


def read_bench(path: str | Path) -> list[BenchRecord]:
    """The load points of one benchmark file (format detected from its fields)."""
    p = Path(path)
    doc = _read_document(p)
    file = str(path)
    if isinstance(doc, _JsonLines):
        out = []
        for i, one in enumerate(doc, start=1):
            if detect_format(one) not in ("vllm-bench-serve", "vllm-benchmark-serving"):
                raise _fail(file, f"line {i}", "not a vllm bench serve result (a file of "
                            "several JSON documents is read as --append-result output)")
            out.append(replace(_read_vllm(one, file, str(detect_format(one))),
                               point=f"line {i}"))
        return out
    kind = detect_format(doc)
    if kind is None:
        what = type(doc).__name__ if not isinstance(doc, dict) else "its fields"
        raise _fail(file, None, f"not a benchmark result capsim can read ({what} match none "
                                "of: vllm bench serve / benchmark_serving.py JSON, GuideLLM "
                                "report, llmperf summary)")
    if kind.startswith("vllm"):
        return [_read_vllm(doc, file, kind)]
    if kind == "guidellm":
        return _read_guidellm(doc, file)
    if kind == "llmperf-bench":
        return _read_llmperf_bench(doc, file)
    if _is_llmperf_flat(doc):
        return [_read_llmperf(doc, file, point="", prefix="")]
    return [_read_llmperf(v, file, point=f"concurrency={k}", prefix=f"{k}.")
            for k, v in doc.items()]


def read_benches(paths: Iterable[str | Path]) -> list[BenchRecord]:
    """All load points of several files, in the order given."""
    out: list[BenchRecord] = []
    for path in paths:
        out.extend(read_bench(path))
    return out


# ----------------------------------------------------------------------------- vLLM

_VLLM_METRICS = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2e": "e2el"}


def _read_vllm(d: Mapping[str, Any], file: str, kind: str) -> BenchRecord:
    notes: list[str] = []
    rate = _num(d, "request_rate", file, allow_inf=True)
    burst = _num(d, "burstiness", file, allow_inf=True)
    if burst == 0:
        raise _fail(file, "burstiness", "must be positive")
    conc = _int(d, "max_concurrency", file)
    if conc == 0:
        raise _fail(file, "max_concurrency", "must be at least 1")
    if "ramp_up_strategy" in d and d["ramp_up_strategy"] is not None:
        raise _fail(file, "ramp_up_strategy", f"a ramp-up run ({d['ramp_up_strategy']}) has no "
                    "single load point; use runs at fixed --request-rate")
    if rate is None and conc is None:
        raise _fail(file, "request_rate", "missing (and no max_concurrency): the load of the "
                    "run is unknown")
    completed = _int(d, "completed", file)
    summary: dict[str, float | None] = {}
    for ours, theirs in _VLLM_METRICS.items():
        for stat in ("mean", "median", "p99"):
            summary[f"{ours}_{stat}_s"] = _num(d, f"{stat}_{theirs}_ms", file, scale=1e-3)

    # per-request lists (--save-detailed), successful requests only
    n_all: int | None = None
    ok: list[bool] | None = None
    if isinstance(d.get("errors"), list):
        ok = [not e for e in d["errors"]]
        n_all = len(ok)
    lists: dict[str, list[Any]] = {}
    for key in ("input_lens", "output_lens", "ttfts", "latencies", "start_times", "itls"):
        if key not in d or d[key] is None:
            continue
        if key == "itls":
            raw = d[key]
            if not isinstance(raw, list) or not all(isinstance(x, list) for x in raw):
                raise _fail(file, key, "expected a list of per-request lists of seconds")
            lists[key] = [_num_list(x, f"{key}[{i}]", file) for i, x in enumerate(raw)]
        elif key == "start_times":
            raw = d[key]
            if not isinstance(raw, list) or not all(
                    isinstance(x, int | float) and not isinstance(x, bool) for x in raw):
                raise _fail(file, key, "expected a list of numbers")
            lists[key] = [float(x) for x in raw]
        else:
            lists[key] = _num_list(d[key], key, file, integer=key.endswith("_lens"))
        if n_all is None:
            n_all = len(lists[key])
        elif len(lists[key]) != n_all:
            raise _fail(file, key, f"has {len(lists[key])} entries where the other per-request "
                        f"lists have {n_all}")
    if ok is None and "output_lens" in lists:
        ok = [v > 0 for v in lists["output_lens"]]
    per: dict[str, tuple[Any, ...]] = {}
    if lists and ok is not None:
        for key, values in lists.items():
            per[key] = tuple(v for v, good in zip(values, ok, strict=True) if good)
        if completed is not None and sum(ok) != completed:
            notes.append(f"{sum(ok)} successful requests in the lists, completed = {completed}")
    elif lists:
        per = {key: tuple(values) for key, values in lists.items()}

    if summary["e2e_mean_s"] is None and "latencies" in per and per["latencies"]:
        lat = sorted(per["latencies"])
        summary["e2e_mean_s"] = sum(lat) / len(lat)
        summary["e2e_median_s"] = _median(lat)
        notes.append("e2e mean/median from the per-request latencies")
    elif summary["e2e_mean_s"] is None and "ttfts" in per and "itls" in per and per["ttfts"]:
        lat = sorted(t + sum(g) for t, g in zip(per["ttfts"], per["itls"], strict=True))
        summary["e2e_mean_s"] = sum(lat) / len(lat)
        summary["e2e_median_s"] = _median(lat)
        notes.append("e2e mean/median from the per-request ttfts + itls")

    in_mean = out_mean = None
    if completed:
        total_in = _num(d, "total_input_tokens", file)
        total_out = _num(d, "total_output_tokens", file)
        in_mean = total_in / completed if total_in is not None else None
        out_mean = total_out / completed if total_out is not None else None
    if in_mean is None and per.get("input_lens"):
        in_mean = sum(per["input_lens"]) / len(per["input_lens"])
    if out_mean is None and per.get("output_lens"):
        out_mean = sum(per["output_lens"]) / len(per["output_lens"])

    starts = per.get("start_times")
    if starts:
        t0 = min(starts)
        starts = tuple(t - t0 for t in starts)
    raw_ratio = d.get("random_range_ratio")
    if isinstance(raw_ratio, str):  # --metadata saves its values as text
        try:
            raw_ratio = float(raw_ratio)
        except ValueError:
            raise _fail(file, "random_range_ratio",
                        f"expected a number, got {raw_ratio!r}") from None
    ratio = _num({"random_range_ratio": raw_ratio}, "random_range_ratio", file)
    if ratio is not None and ratio >= 1:
        raise _fail(file, "random_range_ratio", f"must be below 1 (lengths uniform on "
                    f"[L(1-R), L(1+R)]), got {ratio:g}")
    model = d.get("model_id") or d.get("model") or "unknown"
    return BenchRecord(
        file=file, format=kind, point="", engine=_engine_of(d.get("backend")),
        model=str(model), load_kind=_load_kind(rate, conc),
        request_rate_per_s=rate if rate is not None else math.inf, burstiness=burst,
        max_concurrency=conc, duration_s=_num(d, "duration", file), completed=completed,
        num_prompts=_int(d, "num_prompts", file), input_tokens_mean=in_mean,
        output_tokens_mean=out_mean, **summary,
        input_lens=_ints(per.get("input_lens")), output_lens=_ints(per.get("output_lens")),
        ttfts_s=per.get("ttfts"), itls_s=tuple(tuple(x) for x in per["itls"])
        if "itls" in per else None, start_times_s=starts, notes=tuple(notes),
        random_range_ratio=ratio)


def _ints(values: Sequence[float] | None) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)


def _median(sorted_values: Sequence[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else 0.5 * (sorted_values[mid - 1] + sorted_values[mid])


# -------------------------------------------------------------------------- GuideLLM

_GUIDELLM_METRICS = {  # ours -> (GuideLLM metric, scale to seconds)
    "ttft": ("time_to_first_token_ms", 1e-3),
    "tpot": ("inter_token_latency_ms", 1e-3),
    "e2e": ("request_latency", 1.0),
}


def _dig(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _read_guidellm(doc: Mapping[str, Any], file: str) -> list[BenchRecord]:
    benches = doc["benchmarks"]
    if not benches:
        raise _fail(file, "benchmarks", "the report holds no benchmarks")
    out = []
    for i, b in enumerate(benches):
        where = f"benchmarks[{i}]"
        if not isinstance(b, dict):
            raise _fail(file, where, "expected a mapping")
        out.append(_read_guidellm_one(doc, b, file, where, i))
    return out


def _read_guidellm_one(doc: Mapping[str, Any], b: Mapping[str, Any], file: str, where: str,
                       index: int) -> BenchRecord:
    strategy = _dig(b, "config", "strategy") or _dig(b, "args", "strategy")
    if not isinstance(strategy, dict) or "type_" not in strategy:
        raise _fail(file, f"{where}.config.strategy", "missing: the load of the run is unknown")
    skind = strategy["type_"]
    cap = _int(strategy, "max_concurrency", file, prefix=f"{where}.config.strategy.")
    rate: float | None
    burst: float | None = None
    if skind == "synchronous":
        rate, conc = math.inf, 1
    elif skind == "concurrent":
        rate, conc = math.inf, _int(strategy, "streams", file, prefix=f"{where}.config.strategy.")
        if not conc:
            raise _fail(file, f"{where}.config.strategy.streams", "missing or zero")
    elif skind == "throughput":
        rate, conc = math.inf, cap
    elif skind in ("constant", "poisson"):
        rate = _num(strategy, "rate", file, prefix=f"{where}.config.strategy.")
        if not rate:
            raise _fail(file, f"{where}.config.strategy.rate", "missing or zero")
        burst, conc = (math.inf if skind == "constant" else 1.0), cap
    else:
        raise _fail(file, f"{where}.config.strategy.type_",
                    f"strategy '{skind}' has no fixed load (synchronous, concurrent, "
                    "throughput, constant and poisson do)")
    metrics = b.get("metrics")
    if not isinstance(metrics, dict):
        raise _fail(file, f"{where}.metrics", "missing")
    summary: dict[str, float | None] = {}
    for ours, (theirs, scale) in _GUIDELLM_METRICS.items():
        dist = _dig(metrics, theirs, "successful")
        pre = f"{where}.metrics.{theirs}.successful."
        if isinstance(dist, dict) and dist.get("count", 1):
            summary[f"{ours}_mean_s"] = _num(dist, "mean", file, prefix=pre, scale=scale)
            summary[f"{ours}_median_s"] = _num(dist, "median", file, prefix=pre, scale=scale)
            pct = dist.get("percentiles") if isinstance(dist.get("percentiles"), dict) else {}
            summary[f"{ours}_p99_s"] = _num(pct, "p99", file, prefix=pre + "percentiles.",
                                            scale=scale)
    lens: dict[str, float | None] = {}
    for ours, theirs in (("input", "prompt_token_count"), ("output", "output_token_count")):
        dist = _dig(metrics, theirs, "successful")
        lens[ours] = (_num(dist, "mean", file, prefix=f"{where}.metrics.{theirs}.successful.")
                      if isinstance(dist, dict) else None)
        lens[ours + "_std"] = (_num(dist, "std_dev", file,
                                    prefix=f"{where}.metrics.{theirs}.successful.")
                               if isinstance(dist, dict) else None)
    totals = metrics.get("request_totals") or b.get("request_totals") or {}
    completed = _int(totals, "successful", file, prefix=f"{where}.request_totals.") \
        if isinstance(totals, dict) else None
    duration = _num(b, "duration", file, prefix=f"{where}.")
    if duration is None:
        start, end = _num(b, "start_time", file), _num(b, "end_time", file)
        duration = end - start if start is not None and end is not None else None
    notes: list[str] = []
    ins = outs = ttfts = None
    reqs = _dig(b, "requests", "successful")
    if isinstance(reqs, list) and reqs and all(isinstance(r, dict) for r in reqs):
        if completed is not None and len(reqs) != completed:
            notes.append(f"per-request stats are a sample ({len(reqs)} of {completed}); "
                         "not used as the request list")
        elif all(r.get("prompt_tokens") is not None and r.get("output_tokens") is not None
                 for r in reqs):
            pre = f"{where}.requests.successful"
            ins = _ints(_num_list([r["prompt_tokens"] for r in reqs], pre + ".prompt_tokens",
                                  file, integer=True))
            outs = _ints(_num_list([r["output_tokens"] for r in reqs], pre + ".output_tokens",
                                   file, integer=True))
            if all(r.get("time_to_first_token_ms") is not None for r in reqs):
                ttfts = tuple(v * 1e-3 for v in _num_list(
                    [r["time_to_first_token_ms"] for r in reqs],
                    pre + ".time_to_first_token_ms", file))
    model = (_dig(b, "worker", "backend_model") or _dig(b, "config", "backend", "model")
             or _dig(b, "config", "backend", "attributes", "model")
             or _dig(doc, "config", "spec", "backend", "model")
             or _dig(doc, "config", "model") or "unknown")
    target = (_dig(b, "config", "backend", "target") or _dig(b, "worker", "backend_target")
              or _dig(b, "config", "backend", "attributes", "target") or "")
    load = (f"concurrency={conc}" if _load_kind(rate, conc) == "concurrency"
            else f"rate={rate:g}")
    return BenchRecord(
        file=file, format="guidellm", point=f"{index}:{skind}:{load}",
        engine=_engine_of(_dig(b, "config", "backend", "type_") or target), model=str(model),
        load_kind=_load_kind(rate, conc), request_rate_per_s=rate, burstiness=burst,
        max_concurrency=conc, duration_s=duration, completed=completed,
        num_prompts=_int(totals, "total", file, prefix=f"{where}.request_totals.")
        if isinstance(totals, dict) else None,
        input_tokens_mean=lens["input"], output_tokens_mean=lens["output"], **summary,
        input_lens=ins, output_lens=outs, ttfts_s=ttfts, notes=tuple(notes),
        input_tokens_std=lens["input_std"], output_tokens_std=lens["output_std"])


# --------------------------------------------------------------------------- llmperf

def _read_llmperf(d: Mapping[str, Any], file: str, *, point: str, prefix: str) -> BenchRecord:
    if not isinstance(d, dict):
        raise _fail(file, prefix.rstrip(".") or None, "expected a mapping")
    conc = _int(d, "num_concurrent_requests", file, prefix=prefix)
    if not conc:
        raise _fail(file, prefix + "num_concurrent_requests", "missing or zero: the number of "
                    "concurrent clients of the run is unknown")
    summary: dict[str, float | None] = {}
    for ours, theirs in (("ttft", "ttft_s"), ("e2e", "end_to_end_latency_s")):
        summary[f"{ours}_mean_s"] = _num(d, f"results_{theirs}_mean", file, prefix=prefix)
        summary[f"{ours}_median_s"] = _num(d, f"results_{theirs}_quantiles_p50", file,
                                           prefix=prefix)
        summary[f"{ours}_p99_s"] = _num(d, f"results_{theirs}_quantiles_p99", file,
                                        prefix=prefix)
    notes = []
    in_mean = _num(d, "results_number_input_tokens_mean", file, prefix=prefix)
    out_mean = _num(d, "results_number_output_tokens_mean", file, prefix=prefix)
    if in_mean is None:
        in_mean = _num(d, "mean_input_tokens", file, prefix=prefix)
    if out_mean is None:
        out_mean = _num(d, "mean_output_tokens", file, prefix=prefix)
    notes.append("lengths are llmperf's client-side token counts")
    tpot = None
    if (summary["e2e_mean_s"] is not None and summary["ttft_mean_s"] is not None
            and out_mean is not None and out_mean > 1):
        tpot = (summary["e2e_mean_s"] - summary["ttft_mean_s"]) / (out_mean - 1)
        notes.append("tpot mean derived: (e2e - ttft) / (output tokens - 1) from the means")
    completed = _int(d, "results_num_completed_requests", file, prefix=prefix)
    per_min = _num(d, "results_num_completed_requests_per_min", file, prefix=prefix)
    duration = completed / per_min * 60 if completed and per_min else None
    return BenchRecord(
        file=file, format="llmperf", point=point, engine="unknown",
        model=str(d.get("model") or "unknown"), load_kind="concurrency",
        request_rate_per_s=math.inf, burstiness=None, max_concurrency=conc,
        duration_s=duration, completed=completed,
        num_prompts=_int(d, "results_num_requests_started", file, prefix=prefix),
        input_tokens_mean=in_mean, output_tokens_mean=out_mean, tpot_mean_s=tpot,
        **summary, notes=tuple(notes),
        input_tokens_std=_num(d, "results_number_input_tokens_stddev", file, prefix=prefix),
        output_tokens_std=_num(d, "results_number_output_tokens_stddev", file, prefix=prefix))


def _read_llmperf_bench(doc: Mapping[str, Any], file: str) -> list[BenchRecord]:
    out = []
    for key, d in doc.items():
        pre = f"{key}."
        conc = _int(d, "concurrency", file, prefix=pre)
        if not conc:
            raise _fail(file, pre + "concurrency", "missing or zero")
        out.append(BenchRecord(
            file=file, format="llmperf-bench", point=f"concurrency={conc}", engine="unknown",
            model="unknown", load_kind="concurrency", request_rate_per_s=math.inf,
            burstiness=None, max_concurrency=conc, duration_s=None, completed=None,
            num_prompts=None, input_tokens_mean=_num(d, "input_token_length", file, prefix=pre),
            output_tokens_mean=_num(d, "output_token_length", file, prefix=pre),
            ttft_mean_s=_num(d, "first-time-to-token_mean_in_ms", file, prefix=pre, scale=1e-3),
            notes=("latency_ms_per_token is llmperf's e2e / client-counted output tokens: "
                   "neither TPOT nor ITL, not used",
                   "lengths are the configured ones")))
    return out


# ----------------------------------------------------------------- fit requirements

_NATIVE: dict[str, dict[str, str]] = {
    "vllm": {"ttft_mean_s": "mean_ttft_ms", "tpot_mean_s": "mean_tpot_ms",
             "e2e_mean_s": "mean_e2el_ms", "input_tokens_mean": "total_input_tokens",
             "output_tokens_mean": "total_output_tokens", "completed": "completed",
             "request_rate_per_s": "request_rate", "max_concurrency": "max_concurrency"},
    "guidellm": {"ttft_mean_s": "metrics.time_to_first_token_ms",
                 "tpot_mean_s": "metrics.inter_token_latency_ms",
                 "e2e_mean_s": "metrics.request_latency",
                 "input_tokens_mean": "metrics.prompt_token_count",
                 "output_tokens_mean": "metrics.output_token_count",
                 "completed": "request_totals.successful",
                 "request_rate_per_s": "config.strategy.rate",
                 "max_concurrency": "config.strategy.streams"},
    "llmperf": {"ttft_mean_s": "results_ttft_s_mean",
                "tpot_mean_s": "results_end_to_end_latency_s_mean",
                "e2e_mean_s": "results_end_to_end_latency_s_mean",
                "input_tokens_mean": "results_number_input_tokens_mean",
                "output_tokens_mean": "results_number_output_tokens_mean",
                "completed": "results_num_completed_requests",
                "max_concurrency": "num_concurrent_requests"},
    "llmperf-bench": {"ttft_mean_s": "first-time-to-token_mean_in_ms",
                      "tpot_mean_s": "latency_ms_per_token",
                      "e2e_mean_s": "latency_ms_per_token",
                      "input_tokens_mean": "input_token_length",
                      "output_tokens_mean": "output_token_length",
                      "max_concurrency": "concurrency"},
}


def native_field(record: BenchRecord, name: str) -> str:
    """The file's own name for the record field ``name`` (for messages)."""
    family = "vllm" if record.format.startswith("vllm") else record.format
    native = _NATIVE.get(family, {}).get(name, name)
    if record.format == "guidellm" and record.point:
        native = f"benchmarks[{record.point.split(':')[0]}].{native}"
    elif record.format.startswith("vllm") and record.point:
        native = f"{record.point}: {native}"
    elif record.format in ("llmperf", "llmperf-bench") and record.point:
        native = f"{record.point.split('=')[-1]}.{native}"
    return native


def check_fit_inputs(record: BenchRecord) -> None:
    """Refuse (one line) a load point that lacks what a profile fit needs.

    A fit replays the run, so it needs the load (rate or clients), the request lengths
    (per request or their means) and the mean TTFT plus a decode-speed measurement (mean
    TPOT or mean end-to-end latency).
    """
    def missing(name: str, why: str) -> ConfigError:
        return ConfigError(f"missing, which the fit needs: {why}", file=record.file,
                           field=native_field(record, name))

    if record.load_kind == "concurrency" and not record.max_concurrency:
        raise missing("max_concurrency", "the number of concurrent clients of the run")
    if record.load_kind == "rate" and record.request_rate_per_s is None:
        raise missing("request_rate_per_s", "the request rate of the run")
    if record.input_lens is None and record.input_tokens_mean is None:
        raise missing("input_tokens_mean", "the prompt lengths of the run")
    if record.output_lens is None and record.output_tokens_mean is None:
        raise missing("output_tokens_mean", "the output lengths of the run")
    if record.ttft_mean_s is None:
        raise missing("ttft_mean_s", "mean time to first token")
    if record.tpot_mean_s is None and record.e2e_mean_s is None:
        if record.format == "llmperf-bench":
            raise ConfigError("latency_ms_per_token is end-to-end latency over output tokens "
                              "counted by the client's tokenizer, not a TPOT, and the file "
                              "has no end-to-end latency; fit from llmperf's full summary "
                              "(results_end_to_end_latency_s_mean)", file=record.file,
                              field=native_field(record, "tpot_mean_s"))
        raise missing("tpot_mean_s" if record.format != "llmperf" else "e2e_mean_s",
                      "mean time per output token or mean end-to-end latency (a decode-speed "
                      "measurement)")


# ------------------------------------------------------- capsim's validation table

def read_measurements(path: str | Path, set_id: str) -> list[BenchRecord]:
    """The load points of ``set_id`` in a ``validation/measurements.csv``-style table."""
    file = str(path)
    p = Path(path)
    if not p.is_file():
        raise _fail(file, None, "file not found")
    with p.open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("set_id") == set_id]
    if not rows:
        raise _fail(file, "set_id", f"no rows of set '{set_id}'")
    out = []
    for i, row in enumerate(rows):
        where = f"{set_id}[{i}]."
        d: dict[str, Any] = {}
        for key, value in row.items():
            text = (value or "").strip()
            if not text:
                continue
            try:
                d[key] = float(text) if text.lower() != "inf" else math.inf
            except ValueError:
                d[key] = text
        kind = row.get("load_kind")
        if kind not in ("rate", "concurrency"):
            raise _fail(file, where + "load_kind", f"expected rate or concurrency, got {kind!r}")
        rate = _num(d, "request_rate_per_s", file, prefix=where, allow_inf=True)
        conc = _int(d, "max_concurrency", file, prefix=where)
        summary = {f"{ours}_{stat}_s": _num(d, f"{stat}_{theirs}_ms", file, prefix=where,
                                            scale=1e-3)
                   for ours, theirs in (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"),
                                        ("e2e", "e2e"))
                   for stat in ("mean", "median", "p99")
                   if f"{stat}_{theirs}_ms" in row}
        load = f"concurrency={conc}" if kind == "concurrency" else f"rate={rate:g}"
        out.append(BenchRecord(
            file=file, format="capsim-validation", point=f"{set_id}:{load}",
            engine=str(row.get("engine") or "unknown"), model=str(row.get("model") or "unknown"),
            load_kind=kind, request_rate_per_s=rate if kind == "rate" else math.inf,
            burstiness=1.0 if kind == "rate" else None, max_concurrency=conc,
            duration_s=_num(d, "duration_s", file, prefix=where),
            completed=_int(d, "completed", file, prefix=where),
            num_prompts=_int(d, "num_prompts", file, prefix=where),
            input_tokens_mean=_num(d, "input_len_fixed", file, prefix=where)
            or _num(d, "input_len_mean", file, prefix=where),
            output_tokens_mean=_num(d, "output_len_fixed", file, prefix=where)
            or _num(d, "output_len_mean", file, prefix=where),
            **summary))
    return out

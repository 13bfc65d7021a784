"""Benchmark-file readers: vllm bench serve / benchmark_serving.py, GuideLLM, llmperf.

The example files in tests/data/bench follow the real schemas (see its README); the
llmperf results are real (philschmid/llmperf-bench, also in shared data).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sim.core.errors import ConfigError
from sim.profiles.benchfiles import (
    check_fit_inputs,
    detect_format,
    read_bench,
    read_benches,
)
from tests.shared_data import SHARED_DATA

BENCH = Path(__file__).resolve().parent / "data" / "bench"
LLMPERF_SHARED = SHARED_DATA / "profiles" / "llmperf_bench_tgi"
VALIDATION_RAW = Path(__file__).resolve().parents[1] / "validation" / "raw"


def test_vllm_bench_serve_detailed_keeps_successful_requests_only():
    (r,) = read_bench(BENCH / "vllm-bench-serve_rate4_detailed.json")
    raw = json.loads((BENCH / "vllm-bench-serve_rate4_detailed.json").read_text())
    assert r.format == "vllm-bench-serve" and r.engine == "vllm"
    assert r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert r.load_kind == "rate" and r.request_rate_per_s == 4.0 and r.burstiness == 1.0
    assert r.max_concurrency is None and r.num_prompts == 8 and r.completed == 7
    assert r.ttft_mean_s == pytest.approx(raw["mean_ttft_ms"] / 1000)
    assert r.tpot_p99_s == pytest.approx(raw["p99_tpot_ms"] / 1000)
    assert r.itl_median_s == pytest.approx(raw["median_itl_ms"] / 1000)
    # request 5 failed: dropped from every per-request list
    ok = [i for i, e in enumerate(raw["errors"]) if not e]
    assert len(ok) == 7
    assert r.input_lens == tuple(raw["input_lens"][i] for i in ok)
    assert r.output_lens == tuple(raw["output_lens"][i] for i in ok)
    assert r.ttfts_s == tuple(raw["ttfts"][i] for i in ok)
    assert r.itls_s is not None and len(r.itls_s) == 7
    assert len(r.itls_s[0]) == r.output_lens[0] - 1
    assert r.start_times_s is not None and min(r.start_times_s) == 0.0
    # mean_e2el_ms was not selected: the mean comes from the per-request latencies
    lat = [raw["latencies"][i] for i in ok]
    assert r.e2e_mean_s == pytest.approx(sum(lat) / 7)
    assert any("latencies" in n for n in r.notes)
    assert r.input_tokens_mean == pytest.approx(raw["total_input_tokens"] / 7)
    check_fit_inputs(r)


def test_vllm_bench_serve_concurrency_summary():
    (r,) = read_bench(BENCH / "vllm-bench-serve_conc16_summary.json")
    assert r.load_kind == "concurrency" and r.max_concurrency == 16
    assert math.isinf(r.request_rate_per_s)
    assert r.engine == "unknown"  # backend 'openai' does not name the server
    assert r.e2e_mean_s == pytest.approx(3.2412) and r.e2e_p99_s == pytest.approx(3.5009)
    assert r.input_tokens_mean == 1024 and r.output_tokens_mean == 128
    assert r.input_lens is None and r.ttfts_s is None
    assert r.label.endswith("vllm-bench-serve_conc16_summary.json")
    assert r.load == "concurrency 16"


def test_older_benchmark_serving_json():
    (r,) = read_bench(BENCH / "vllm-benchmark-serving_rate2_old.json")
    assert r.format == "vllm-benchmark-serving"
    assert r.request_rate_per_s == 2.0 and r.load_kind == "rate"
    assert r.input_lens == (512,) * 4 and r.output_lens == (128,) * 4
    # no e2el in the summary: from ttfts + itls, exactly
    assert r.e2e_mean_s == pytest.approx((0.05 + 0.06 + 0.055 + 0.07) / 4 + 127 * 0.02)
    assert r.tpot_mean_s == pytest.approx(0.0204)


def test_guidellm_report_schema_2_one_record_per_benchmark():
    recs = read_bench(BENCH / "guidellm_report_v2.json")
    assert [r.load for r in recs] == ["concurrency 1", "concurrency 4", "rate 3.5 req/s"]
    assert recs[2].burstiness == 1.0  # poisson
    raw = json.loads((BENCH / "guidellm_report_v2.json").read_text())
    m = raw["benchmarks"][1]["metrics"]
    r = recs[1]
    assert r.format == "guidellm" and r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert r.ttft_mean_s == pytest.approx(m["time_to_first_token_ms"]["successful"]["mean"] / 1e3)
    assert r.ttft_p99_s == pytest.approx(
        m["time_to_first_token_ms"]["successful"]["percentiles"]["p99"] / 1e3)
    # GuideLLM's inter-token latency is vLLM's TPOT; request_latency is in seconds
    assert r.tpot_mean_s == pytest.approx(m["inter_token_latency_ms"]["successful"]["mean"] / 1e3)
    assert r.e2e_mean_s == pytest.approx(m["request_latency"]["successful"]["mean"])
    assert r.itl_mean_s is None
    assert r.completed == 6 and r.duration_s == 30.0
    assert r.input_lens is not None and len(r.input_lens) == 6
    assert r.point.startswith("1:concurrent")
    for rec in recs:
        check_fit_inputs(rec)


def test_guidellm_older_report_args_strategy():
    recs = read_bench(BENCH / "guidellm_report_v0.3.json")
    assert recs[0].load_kind == "rate" and recs[0].request_rate_per_s == 2.0
    assert recs[0].burstiness == math.inf  # constant spacing
    assert recs[1].load == "concurrency 32"  # throughput with a concurrency cap
    assert recs[0].model == "meta-llama/Llama-3.1-8B-Instruct"


def test_llmperf_flat_summary_and_results_dict():
    (flat,) = read_bench(BENCH / "llmperf_llama3-8b_c8_summary.json")
    recs = read_bench(BENCH / "llmperf-bench_llama3-8b_tgi_results.json")
    assert [r.max_concurrency for r in recs] == [1, 2, 4, 8, 16, 32, 64, 128]
    c8 = recs[3]
    assert flat.ttft_mean_s == c8.ttft_mean_s == pytest.approx(0.5476708311440374)
    assert c8.e2e_mean_s == pytest.approx(6.52859873084624)
    assert c8.output_tokens_mean == pytest.approx(175.5)  # measured, client tokenizer
    assert c8.tpot_mean_s == pytest.approx((6.52859873084624 - 0.5476708311440374) / 174.5)
    assert c8.completed == 104 and c8.duration_s == pytest.approx(104 / (
        json.loads((BENCH / "llmperf_llama3-8b_c8_summary.json").read_text())[
            "results_num_completed_requests_per_min"]) * 60)
    assert c8.point == "concurrency=8"
    check_fit_inputs(c8)


@pytest.mark.skipif(not LLMPERF_SHARED.is_dir(), reason="shared/data not available")
def test_llmperf_bench_short_summaries_in_shared_data():
    files = sorted(LLMPERF_SHARED.glob("*_summary.json"))
    assert len(files) == 2
    recs = read_benches(files)
    assert len(recs) == 16 and all(r.format == "llmperf-bench" for r in recs)
    r = recs[0]
    assert r.max_concurrency == 1 and r.ttft_mean_s == pytest.approx(0.1581385759098339)
    assert r.input_tokens_mean == 750 and r.output_tokens_mean == 150
    assert r.tpot_mean_s is None and r.e2e_mean_s is None
    # the short summary has no decode-speed measurement a fit can use: one line says why
    with pytest.raises(ConfigError) as err:
        check_fit_inputs(r)
    msg = str(err.value)
    assert "\n" not in msg and str(files[0]) in msg and "1.latency_ms_per_token" in msg


def test_refusals_are_one_line_naming_file_and_field(tmp_path):
    for name, expect in (("not_a_benchmark.json", "not a benchmark result"),
                         ("truncated.json", "invalid JSON at line 1")):
        with pytest.raises(ConfigError) as err:
            read_bench(BENCH / name)
        assert expect in str(err.value) and name in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="file not found"):
        read_bench(tmp_path / "nope.json")

    base = json.loads((BENCH / "vllm-bench-serve_conc16_summary.json").read_text())

    def refused(**changes):
        doc = {**base, **changes}
        doc = {k: v for k, v in doc.items() if v is not ...}
        path = tmp_path / "b.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(ConfigError) as err:
            check_fit_inputs(read_bench(path)[0])
        return str(err.value)

    msg = refused(mean_ttft_ms=...)
    assert msg.startswith(str(tmp_path / "b.json") + ": mean_ttft_ms: missing")
    msg = refused(mean_tpot_ms=..., mean_e2el_ms=...)
    assert ": mean_tpot_ms: missing" in msg and "decode-speed" in msg
    msg = refused(total_input_tokens=...)
    assert ": total_input_tokens: missing" in msg

    def bad(**changes):
        path = tmp_path / "c.json"
        path.write_text(json.dumps({**base, **changes}))
        with pytest.raises(ConfigError) as err:
            read_bench(path)
        return str(err.value)

    assert "mean_ttft_ms: expected a finite non-negative number" in bad(mean_ttft_ms=-1)
    assert "mean_ttft_ms: expected a number, got 'fast'" in bad(mean_ttft_ms="fast")
    assert "max_concurrency: must be at least 1" in bad(max_concurrency=0)
    assert "ramp_up_strategy" in bad(ramp_up_strategy="linear")
    msg = bad(input_lens=[1, 2], output_lens=[3])
    assert "output_lens: has 1 entries where the other per-request lists have 2" in msg


def test_guidellm_unknown_strategy_refused(tmp_path):
    doc = json.loads((BENCH / "guidellm_report_v2.json").read_text())
    doc["benchmarks"][2]["config"]["strategy"] = {"type_": "trace", "time_scale": 1.0}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as err:
        read_bench(path)
    assert "benchmarks[2].config.strategy.type_: strategy 'trace' has no fixed load" \
        in str(err.value)


def test_detect_format_on_plain_shapes():
    assert detect_format([1, 2]) is None
    assert detect_format({"benchmarks": []}) == "guidellm"
    assert detect_format({"completed": 1, "duration": 2.0, "mean_ttft_ms": 3.0}) \
        == "vllm-benchmark-serving"
    assert detect_format({"completed": 1, "duration": 2.0, "mean_ttft_ms": 3.0,
                          "failed": 0}) == "vllm-bench-serve"


_RAW_JSON = sorted(p for p in VALIDATION_RAW.rglob("*.json") if p.is_file()) \
    if VALIDATION_RAW.is_dir() else []


@pytest.mark.skipif(not _RAW_JSON, reason="validation/raw holds no result files (SOURCE.md "
                                          "pointers only)")
def test_real_files_under_validation_raw_are_read_or_refused_in_one_line():
    """Whatever public result files validation/raw holds: each is read, or refused in one
    line."""
    files = _RAW_JSON
    for path in files:
        try:
            recs = read_bench(path)
        except ConfigError as err:
            assert "\n" not in str(err) and str(path) in str(err)
            continue
        for r in recs:
            assert r.load_kind in ("rate", "concurrency")
            assert r.request_rate_per_s is not None or r.max_concurrency


def test_vllm_append_result_file_gives_one_load_point_per_line(tmp_path):
    a = (BENCH / "vllm-bench-serve_conc16_summary.json").read_text()
    b = json.dumps({**json.loads(a), "max_concurrency": 4, "mean_ttft_ms": 90.0})
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(json.loads(a)) + "\n" + b)  # as --append-result writes
    recs = read_bench(path)
    assert [r.max_concurrency for r in recs] == [16, 4]
    assert [r.point for r in recs] == ["line 1", "line 2"]
    assert recs[1].ttft_mean_s == pytest.approx(0.09)
    path.write_text(json.dumps(json.loads(a)) + "\n" + json.dumps({"x": 1}))
    with pytest.raises(ConfigError, match=r"sweep.json: line 2: not a vllm bench serve"):
        read_bench(path)
    doc = json.loads(a)
    del doc["mean_ttft_ms"]
    path.write_text(json.dumps(json.loads(a)) + "\n" + json.dumps(doc))
    with pytest.raises(ConfigError, match=r"sweep.json: line 2: mean_ttft_ms: missing"):
        check_fit_inputs(read_bench(path)[1])


def test_read_measurements_rows_of_one_set(tmp_path):
    from sim.profiles.benchfiles import read_measurements

    path = tmp_path / "m.csv"
    path.write_text(
        "set_id,engine,model,load_kind,request_rate_per_s,max_concurrency,input_len_mean,"
        "output_len_mean,input_len_fixed,output_len_fixed,num_prompts,mean_ttft_ms,"
        "median_ttft_ms,mean_tpot_ms,mean_e2e_ms\n"
        "a,vllm,m,concurrency,inf,8,,,1024,128,,120.5,110,14.2,\n"
        "a,vllm,m,rate,4,,600,150,,,1200,80,,12,1900\n"
        "b,vllm,m,rate,2,,600,150,,,100,10,,1,\n")
    recs = read_measurements(path, "a")
    assert [r.load for r in recs] == ["concurrency 8", "rate 4 req/s"]
    assert recs[0].input_tokens_mean == 1024 and recs[0].ttft_mean_s == pytest.approx(0.1205)
    assert recs[0].e2e_mean_s is None and recs[1].e2e_mean_s == pytest.approx(1.9)
    assert recs[1].burstiness == 1.0 and recs[1].num_prompts == 1200
    for r in recs:
        check_fit_inputs(r)
    with pytest.raises(ConfigError, match="m.csv: set_id: no rows of set 'zz'"):
        read_measurements(path, "zz")
    path.write_text("set_id,load_kind,max_concurrency\na,closed,4\n")
    with pytest.raises(ConfigError, match=r"a\[0\].load_kind: expected rate or concurrency"):
        read_measurements(path, "a")

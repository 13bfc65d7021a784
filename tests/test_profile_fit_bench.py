"""capsim profile fit: the replay of benchmark load points and the fit of step-time terms.

The round trip writes ``vllm bench serve`` JSON files with capsim's own replay from known
terms, reads them back through the readers and fits from a perturbed start.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from sim.cli.profile_fit import fit_command
from sim.core.errors import ConfigError
from sim.profiles.benchfiles import read_bench
from sim.profiles.fit import (
    ReplayLoad,
    StepTerms,
    fit_profile,
    load_for,
    simulate_metrics,
    write_vllm_bench_json,
)
from sim.profiles.steptime import StepUncertainty
from sim.serving.bench_replay import replay
from tests.shared_data import SHARED_DATA
from tests.stepkit import run_fast

BENCH = Path(__file__).resolve().parent / "data" / "bench"
LEGACY_8B_H100 = Path(__file__).resolve().parent / "data" / "profiles" / "llama-8b-1xh100.yaml"

TRUE = StepTerms(
    tokens=(1, 16, 64, 256, 1024, 4096, 16384),
    linear_s=(5.0e-3, 5.1e-3, 5.4e-3, 7.0e-3, 20e-3, 75e-3, 300e-3),
    per_step_s=2e-3, per_seq_s=2e-5, decode_attention_s_per_token=3e-8,
    prefill_attention_s_per_token2=1e-10, pre_s=0.010, pre_s_per_input_token=1e-6,
    post_s=0.002, max_num_seqs=64, max_num_batched_tokens=2048, kv_capacity_tokens=60_000)


def test_one_request_alone_matches_the_step_formula():
    """One 3000-token prompt (two chunks of the 2048-token budget), 5 output tokens."""
    t = TRUE
    out = replay(t, ReplayLoad((3000,), (5,), (0.0,), None))
    pre = t.pre_s + t.pre_s_per_input_token * 3000
    chunk1 = (t.per_step_s + t.linear(2048) + t.per_seq_s
              + t.prefill_attention_s_per_token2 * (2048 * 2049 / 2))
    c = 3000 - 2048
    chunk2 = (t.per_step_s + t.linear(c) + t.per_seq_s
              + t.prefill_attention_s_per_token2 * (c * 2048 + c * (c + 1) / 2))
    ttft = pre + chunk1 + chunk2
    decode = sum(t.per_step_s + t.linear(1) + t.per_seq_s
                 + t.decode_attention_s_per_token * (3000 + g) for g in range(1, 5))
    assert out.ttft_s[0] == pytest.approx(ttft, rel=1e-12)
    assert out.e2e_s[0] == pytest.approx(ttft + decode + t.post_s, rel=1e-12)
    m = simulate_metrics(out)
    assert m["tpot"] == pytest.approx((decode + t.post_s) / 4, rel=1e-12)


def test_linear_table_interpolates_and_extrapolates_as_the_spec_says():
    t = TRUE
    assert t.linear(0.5) == 5.0e-3                      # constant below the first knot
    assert t.linear(40) == pytest.approx(5.1e-3 + 0.3e-3 * 24 / 48)
    assert t.linear(32768) == pytest.approx(300e-3 + 225e-3 / 12288 * 16384)


@pytest.mark.parametrize("case", ["all-at-once", "poisson", "kv-bound"])
def test_open_loop_replay_is_the_step_replica_on_those_joins(case):
    """Without client slots the replay is StepReplica driven at the arrival times: the
    same first-token and end times as the step-replica tests' own driver."""
    rng = np.random.default_rng(11)
    n = 80
    ins = tuple(int(x) for x in rng.integers(50, 3000, n))
    outs = tuple(int(x) for x in rng.integers(1, 300, n))
    arrivals = (0.0,) * n if case != "poisson" else tuple(np.cumsum(rng.exponential(0.1, n)))
    terms = TRUE if case != "kv-bound" else replace(TRUE, kv_capacity_tokens=8000)
    out = replay(terms, ReplayLoad(ins, outs, arrivals, None))
    first, end, _, _ = run_fast(terms.to_step_model(), arrivals, ins, outs)
    np.testing.assert_allclose(out.ttft_s, first - np.array(arrivals), rtol=1e-12)
    np.testing.assert_allclose(out.e2e_s, end - np.array(arrivals), rtol=1e-12)


@pytest.mark.parametrize("think", ["closed", "capped"])
def test_client_slots_keep_at_most_n_in_flight_and_refill_at_once(think):
    """N slots: a request is sent when it has arrived and a slot is free, at once; so the
    number in flight never exceeds N, and a request that waited for a slot is sent exactly
    when an earlier one ends."""
    rng = np.random.default_rng(5)
    n, slots = 150, 6
    ins = tuple(int(x) for x in rng.integers(100, 1500, n))
    outs = tuple(int(x) for x in rng.integers(5, 200, n))
    arrivals = (0.0,) * n if think == "closed" else tuple(np.cumsum(rng.exponential(0.02, n)))
    out = replay(TRUE, ReplayLoad(ins, outs, arrivals, slots))
    sent, end = out.sent_s, out.sent_s + out.e2e_s
    assert np.all(sent >= np.array(arrivals) - 1e-12)
    events = sorted([(t, 1) for t in sent] + [(t, -1) for t in end], key=lambda e: (e[0], e[1]))
    level, peak = 0, 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    assert peak == slots
    waited = [i for i in range(n) if sent[i] > arrivals[i] + 1e-12]
    assert waited and all(np.min(np.abs(end - sent[i])) < 1e-9 for i in waited)
    np.testing.assert_allclose(sent[:slots], arrivals[:slots])


def test_all_at_once_queues_everyone():
    burst = replay(TRUE, ReplayLoad((500,) * 100, (100,) * 100, (0.0,) * 100,
                                                 None))
    assert burst.ttft_s.max() > 5 * burst.ttft_s.min()


def test_load_for_replays_the_file_as_it_was_run():
    (rate,) = read_bench(BENCH / "vllm-bench-serve_rate4_detailed.json")
    load = load_for(rate)
    assert load.input_lens == rate.input_lens and load.output_lens == rate.output_lens
    assert load.arrival_s == rate.start_times_s  # saved send times, in request order
    assert load.max_in_flight is None
    (conc,) = read_bench(BENCH / "vllm-bench-serve_conc16_summary.json")
    capped = replace(rate, max_concurrency=2)  # sends delayed by slots: not arrivals
    assert load_for(capped).arrival_s != rate.start_times_s
    load = load_for(conc, max_requests=50)
    assert load.max_in_flight == 16 and set(load.arrival_s) == {0.0}
    # no per-request lengths, no spread saved: +-10% around the means, evenly, seeded
    for lens, mean in ((load.input_lens, 1024), (load.output_lens, 128)):
        assert len(lens) == 50 and len(set(lens)) > 10
        assert min(lens) >= 0.9 * mean - 0.5 and max(lens) <= 1.1 * mean + 0.5
        assert abs(np.mean(lens) - mean) <= 0.5  # the mean kept, up to rounding
    assert "lock-step" in load.note
    assert load_for(conc, max_requests=50) == load  # deterministic
    fixed = load_for(replace(conc, random_range_ratio=0.0), max_requests=50)
    assert fixed.input_lens == (1024,) * 50 and fixed.output_lens == (128,) * 50
    # the file says the lengths were fixed: nothing made up; the cut is noted
    assert fixed.note == ("only the first 50 of 200 requests replayed (--max-requests): the "
                          "first wave of 16 requests that start together is 32% of them "
                          "instead of 8%, which biases TTFT up")
    assert load_for(replace(conc, random_range_ratio=0.0)).note == ""  # all 200: no cut
    drawn = load_for(replace(conc, random_range_ratio=0.5), max_requests=50)
    assert min(drawn.input_lens) >= 512 and max(drawn.input_lens) <= 1536
    assert "drawn as the benchmark drew them" in drawn.note
    tgi = read_bench(BENCH / "llmperf-bench_llama3-8b_tgi_results.json")[0]  # llmperf: sd
    assert tgi.input_lens is None and tgi.input_tokens_std > 0
    load = load_for(tgi)
    for lens, mean, sd in ((load.input_lens, tgi.input_tokens_mean, tgi.input_tokens_std),
                           (load.output_lens, tgi.output_tokens_mean, tgi.output_tokens_std)):
        assert abs(np.mean(lens) - mean) <= 4 * sd / math.sqrt(len(lens)) + 0.5  # 4 s.e.
    assert "normal distributions" in load.note
    guide = read_bench(BENCH / "guidellm_report_v2.json")[2]  # poisson 3.5/s, no send times
    load = load_for(guide, seed=1)
    gaps = np.diff(load.arrival_s)
    assert len(load.arrival_s) == 6 and load.arrival_s[0] == 0.0
    assert 0 < load.arrival_s[-1] < 6 / 3.5  # scaled as the vLLM client does: n / rate
    assert np.all(gaps > 0) and len(set(np.round(gaps, 9))) > 1  # random, not constant


def _synthetic_files(tmp: Path, *, detailed: bool) -> list[Path]:
    """Five vllm bench serve runs of TRUE: 4 concurrencies and one Poisson rate."""
    rng = np.random.default_rng(2024)
    paths = []
    for clients, in_len, out_len in ((2, 800, 160), (8, 800, 160), (32, 800, 160),
                                     (12, 3500, 300)):
        n = 150
        load = ReplayLoad((in_len,) * n, (out_len,) * n, (0.0,) * n, clients)
        path = tmp / f"vllm-c{clients}-{in_len}.json"
        write_vllm_bench_json(path, TRUE, load, request_rate="inf", max_concurrency=clients,
                              detailed=detailed, replay=replay,
                              random_range_ratio=0.0)  # vllm bench serve: fixed lengths
        paths.append(path)
    n = 300
    ins = tuple(int(x) for x in rng.integers(200, 3000, n))
    outs = tuple(int(x) for x in rng.integers(20, 400, n))
    arrivals = tuple(np.cumsum(rng.exponential(1 / 3.0, n)))
    path = tmp / "vllm-rate3.json"
    write_vllm_bench_json(path, TRUE, ReplayLoad(ins, outs, arrivals, None), request_rate=3.0,
                          max_concurrency=None, detailed=True, replay=replay)
    paths.append(path)
    return paths


def _perturbed_start() -> StepTerms:
    return TRUE.with_parameters({"linear_scale": 1.3, "per_step_s": 1.4e-3,
                                 "decode_attention_s_per_token": 4.5e-8, "pre_s": 0.014}, TRUE)


def test_round_trip_recovers_known_terms(tmp_path):
    """Tolerance: 3% on each fitted term (the replay is exact for these files, the rest is
    the optimizer on a piecewise-smooth objective); post_s is not identified by means of
    fixed-length runs, so it must be held at the start value, which here is the truth."""
    records = [r for p in _synthetic_files(tmp_path, detailed=True) for r in read_bench(p)]
    assert [r.format for r in records] == ["vllm-bench-serve"] * 5
    start = _perturbed_start()
    result = fit_profile(records, start, replay=replay)
    assert "post_s" in result.held and result.terms.post_s == TRUE.post_s
    t = result.terms
    assert t.linear_s[-1] / TRUE.linear_s[-1] == pytest.approx(1.0, rel=0.03)
    assert t.linear_s[0] / TRUE.linear_s[0] == pytest.approx(1.0, rel=0.03)
    assert t.per_step_s == pytest.approx(TRUE.per_step_s, rel=0.03)
    assert t.decode_attention_s_per_token == pytest.approx(TRUE.decode_attention_s_per_token,
                                                           rel=0.03)
    assert t.pre_s == pytest.approx(TRUE.pre_s, rel=0.03)
    assert result.fitted["linear_scale"] == pytest.approx(1 / 1.3, rel=0.03)
    # what the fit did not touch stays as in the start
    assert t.per_seq_s == start.per_seq_s and t.max_num_seqs == start.max_num_seqs
    # residuals: one per load point and metric, small after, large before
    assert len(result.residuals) == 15
    assert max(abs(r.rel_error) for r in result.residuals) < 0.01
    assert max(abs(r.rel_error) for r in result.start_residuals) > 0.1
    table = result.table()
    assert table.count("\n") == 15 and "vllm-c32-800.json" in table and "tpot" in table
    assert set(result.rel_std) == set(result.fitted)
    # the spreads and their correlation, as the profile's uncertainty block
    corr = np.array(result.correlation)
    assert corr.shape == (len(result.fitted),) * 2
    assert np.allclose(corr, corr.T) and np.allclose(np.diag(corr), 1.0)
    block = result.uncertainty()
    assert set(block["terms"]) == {"linear_s" if n == "linear_scale" else n
                                   for n in result.fitted}
    assert block["terms"]["per_step_s"] == pytest.approx(result.rel_std["per_step_s"],
                                                         abs=1e-4)
    assert StepUncertainty.model_validate(block).terms == block["terms"]


def test_round_trip_from_summaries_only(tmp_path):
    """Without per-request lists the closed-loop runs are replayed with their mean lengths
    (exact here: the files say the lengths were fixed, random_range_ratio 0), so recovery
    is as good."""
    records = [r for p in _synthetic_files(tmp_path, detailed=False) for r in read_bench(p)]
    assert records[0].input_lens is None
    result = fit_profile(records, _perturbed_start(), replay=replay)
    assert result.terms.per_step_s == pytest.approx(TRUE.per_step_s, rel=0.03)
    assert result.fitted["linear_scale"] == pytest.approx(1 / 1.3, rel=0.03)


def _drawn_concurrency_files(tmp: Path, *, ratio: float | None,
                             seed: int = 99) -> list[Path]:
    """Summary-only runs of TRUE whose client drew each length uniformly on [L/2, 3L/2]
    (vllm bench serve --random-range-ratio 0.5), all clients starting together; the
    ratio is saved in the file only if ``ratio`` is given."""
    rng = np.random.default_rng(seed)
    paths = []
    for clients, in_len, out_len in ((2, 800, 160), (8, 800, 160), (32, 800, 160),
                                     (12, 3500, 300)):
        n = 150
        ins = tuple(int(x) for x in rng.integers(in_len // 2, in_len * 3 // 2 + 1, n))
        outs = tuple(int(x) for x in rng.integers(out_len // 2, out_len * 3 // 2 + 1, n))
        path = tmp / f"drawn-c{clients}-{in_len}.json"
        write_vllm_bench_json(path, TRUE, ReplayLoad(ins, outs, (0.0,) * n, clients),
                              request_rate="inf", max_concurrency=clients, replay=replay,
                              random_range_ratio=ratio)
        paths.append(path)
    return paths


def test_concurrency_runs_without_lengths_are_not_replayed_in_lock_step(tmp_path):
    """Clients that start together with identical lengths stay synchronized: every prompt
    of a wave is prefilled in the same steps, so the lock-step replay (every request the
    file's mean lengths, as before) overstates TTFT; the replay of load_for (lengths spread
    +-10%, or drawn as the benchmark did where the file says how) is much closer. All at
    the true terms, so what differs is the replay alone; TPOT barely depends on it."""
    records = [r for p in _drawn_concurrency_files(tmp_path, ratio=None)
               for r in read_bench(p)]
    for r in records:
        assert r.input_lens is None and r.random_range_ratio is None
        n = r.completed
        lock = ReplayLoad((round(r.input_tokens_mean),) * n, (round(r.output_tokens_mean),) * n,
                          (0.0,) * n, r.max_concurrency)
        lock_err = simulate_metrics(replay(TRUE, lock))["ttft"] / r.ttft_mean_s - 1
        spread = simulate_metrics(replay(TRUE, load_for(r)))
        drawn = simulate_metrics(replay(TRUE, load_for(replace(r, random_range_ratio=0.5))))
        spread_err = spread["ttft"] / r.ttft_mean_s - 1
        drawn_err = drawn["ttft"] / r.ttft_mean_s - 1
        print(f"{r.load}: TTFT error lock-step {lock_err:+.1%}, spread {spread_err:+.1%}, "
              f"drawn {drawn_err:+.1%}")
        assert lock_err > 0.3  # synchronized waves: the artefact is large
        assert abs(spread_err) < lock_err / 2 and abs(drawn_err) < lock_err / 2
        for m in (spread, drawn):
            assert m["tpot"] == pytest.approx(r.tpot_mean_s, rel=0.05)


def test_round_trip_from_summaries_with_drawn_lengths(tmp_path):
    """Files that saved only means and their client's random_range_ratio: the fit draws
    other lengths from the same distribution, so it recovers the terms up to what those
    draws change -- within 3 of the fit's own standard deviations (rel_std, scaled by the
    residuals it is left with), and far closer than the start (30-40% off)."""
    records = [r for p in _drawn_concurrency_files(tmp_path, ratio=0.5)
               for r in read_bench(p)]
    assert all(r.random_range_ratio == 0.5 and r.input_lens is None for r in records)
    result = fit_profile(records, _perturbed_start(), replay=replay)
    truth = {"linear_scale": 1 / 1.3, "per_step_s": TRUE.per_step_s,
             "decode_attention_s_per_token": TRUE.decode_attention_s_per_token,
             "pre_s": TRUE.pre_s, "post_s": TRUE.post_s}
    assert {"linear_scale", "per_step_s"} <= set(result.fitted)
    for name in result.fitted:
        value = truth[name]
        err = result.fitted[name] / value - 1
        print(f"{name}: fitted {result.fitted[name]:.4g}, true {value:.4g} ({err:+.1%}, "
              f"1 sd {result.rel_std[name]:.1%})")
        assert abs(err) <= 3 * result.rel_std[name]
    assert any("random_range_ratio 0.5" in note for note in result.notes)


def test_a_single_load_point_is_refused_naming_the_missing_measurement(tmp_path):
    path = _synthetic_files(tmp_path, detailed=False)[1]
    (record,) = read_bench(path)
    with pytest.raises(ConfigError) as err:
        fit_profile([record, record], _perturbed_start(), replay=replay)
    msg = str(err.value)
    assert msg.startswith(f"{path}: max_concurrency: a single load point (concurrency 8)")
    assert "another request rate or concurrency" in msg and "\n" not in msg


def test_unidentified_decode_attention_is_refused_on_real_llmperf_runs():
    """TGI runs at concurrency 1..32, all 750-in/150-out: the slowdown with more clients
    can come from the token table or from decode attention; with one context length the
    two cannot be told apart. Fitting the other terms only is possible."""
    records = read_bench(BENCH / "llmperf-bench_llama3-8b_tgi_results.json")[:6]
    start = StepTerms(tokens=(1, 16, 64, 256, 1024, 4096, 16384),
                      linear_s=(0.0274, 0.0510, 0.158, 0.158, 0.231, 0.934, 3.75),
                      per_step_s=0.003, max_num_seqs=64, kv_capacity_tokens=35072)
    with pytest.raises(ConfigError) as err:
        fit_profile(records, start, replay=replay)
    msg = str(err.value)
    assert "(decode_attention_s_per_token) is not identified" in msg
    assert "--fit-params" in msg
    assert "llmperf-bench_llama3-8b_tgi_results.json" in msg and "\n" not in msg
    result = fit_profile(records, start, parameters=("linear_scale", "per_step_s", "pre_s"),
                         replay=replay)
    # better than the start on the whole; the honest size of the remaining error is stated
    # in the report, not asserted here
    before = np.mean([abs(r.rel_error) for r in result.start_residuals])
    after = np.mean([abs(r.rel_error) for r in result.residuals])
    assert after < before


def test_files_missing_what_the_fit_needs_are_refused():
    records = read_bench(BENCH / "llmperf_llama3-8b_c8_summary.json")
    with pytest.raises(ConfigError, match="no benchmark files"):
        fit_profile([], TRUE, replay=replay)
    with pytest.raises(ConfigError, match="unknown fit parameter 'per_step'"):
        fit_profile(records, TRUE, parameters=("per_step",), replay=replay)
    short = SHARED_DATA / "profiles" / "llmperf_bench_tgi" / \
        "meta-llama_Meta-Llama-3-8B-Instruct_tp_1_summary.json"
    if short.is_file():  # llmperf-bench's short summary: no usable decode measurement
        with pytest.raises(ConfigError, match="1.latency_ms_per_token: latency_ms_per_token"):
            fit_profile(read_bench(short), TRUE, replay=replay)


def test_step_terms_read_and_written_in_the_agreed_profile_format():
    doc = {"name": "x", "max_batch": 128, "kv_capacity_tokens": 100_000,
           "scheduler": {"max_num_batched_tokens": 4096, "block_size": 16},
           "step_time": {"per_step_s": 0.003, "tokens": [1, 64, 4096],
                         "linear_s": [0.004, 0.005, 0.05],
                         "decode_attention_s_per_token": 2e-8, "source": "derived"},
           "overheads": {"pre_s": 0.01, "post_s": 0.002}}
    terms = StepTerms.from_profile(doc, file="p.yaml")
    assert terms.max_num_seqs == 128 and terms.max_num_batched_tokens == 4096
    assert terms.linear(64) == 0.005 and terms.pre_s == 0.01
    fitted = terms.with_parameters({"linear_scale": 2.0, "per_step_s": 0.001}, terms)
    out = fitted.update_profile(doc)
    assert out["step_time"]["linear_s"] == [0.008, 0.01, 0.1]
    assert out["step_time"]["per_step_s"] == 0.001
    assert out["step_time"]["source"] == "derived" and out["name"] == "x"
    assert doc["step_time"]["per_step_s"] == 0.003  # the input is not modified
    json.dumps(out)
    bad = {**doc, "step_time": {**doc["step_time"], "per_step_s": -1}}
    with pytest.raises(ConfigError, match=r"^p.yaml: step_time.per_step_s: Input should be "
                                          r"greater than or equal to 0 \(got -1\)$"):
        StepTerms.from_profile(bad, file="p.yaml")
    with pytest.raises(ConfigError, match=r"^p.yaml: max_batch: "):
        StepTerms.from_profile({**doc, "max_batch": 0}, file="p.yaml")
    with pytest.raises(ConfigError, match="p.yaml: step_time: missing"):
        StepTerms.from_profile({"name": "legacy"}, file="p.yaml")
    assert math.isfinite(terms.linear(1e6))


def _start_profile_file(tmp: Path) -> Path:
    start = _perturbed_start()
    doc = {"name": "start", "model": "synthetic", "gpu": "H100", "gpus_per_replica": 1,
           "max_batch": start.max_num_seqs, "kv_capacity_tokens": start.kv_capacity_tokens,
           "scheduler": {"max_num_batched_tokens": start.max_num_batched_tokens,
                         "block_size": 16}}
    path = tmp / "start.yaml"
    path.write_text(yaml.safe_dump(start.update_profile(doc), sort_keys=False))
    return path


def test_cli_fits_and_writes_a_step_level_profile(tmp_path):
    files = [str(p) for p in _synthetic_files(tmp_path, detailed=False)]
    out = tmp_path / "fitted.yaml"
    res = CliRunner().invoke(fit_command, [*files, "--from", str(_start_profile_file(tmp_path)),
                                           "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "vllm-c8-800.json" in res.output and "ttft" in res.output
    assert "post_s" in res.output and "held" in res.output
    text = out.read_text()
    assert text.startswith("# Fitted by `capsim profile fit`.")
    doc = yaml.safe_load(text)
    terms = StepTerms.from_profile(doc, file=str(out))
    assert terms.per_step_s == pytest.approx(TRUE.per_step_s, rel=0.03)
    assert terms.linear_s[-1] == pytest.approx(TRUE.linear_s[-1], rel=0.03)
    assert doc["name"] == "start" and "capsim profile fit" in doc["step_time"]["source"]
    # the fit's spreads travel with the profile: a Monte Carlo run draws within them
    unc = StepUncertainty.model_validate(doc["step_time"]["uncertainty"])
    assert not unc.certain and set(unc.terms) >= {"per_step_s", "linear_s"}
    assert all(0 < v <= 1 for v in unc.terms.values())
    assert unc.correlation is not None and len(unc.correlation) == len(unc.terms)


def test_cli_refusals_are_one_line_with_status_2(tmp_path):
    files = [str(p) for p in _synthetic_files(tmp_path, detailed=False)]
    start = str(_start_profile_file(tmp_path))
    out = str(tmp_path / "o.yaml")
    runner = CliRunner()
    for args, expect in (
            ([files[1], "--from", start, "-o", out], "a single load point (concurrency 8)"),
            ([*files, "-o", out], "--from: missing: a start profile"),
            ([*files, "--from", "no-such-profile", "-o", out], "--from"),
            ([*files, "--from", start, "--gpu", "H100", "-o", out], "not both"),
            ([*files, "--model", "no-such-model", "--gpu", "h100_sxm", "--tp", "1", "-o", out],
             "--model: "),
            ([*files, "--model", "llama-3.1-8b", "--gpu", "h100_sxm", "-o", out],
             "--tp: missing"),
            ([*files, "--from", start, "--fit-params", "speed", "-o", out],
             "unknown fit parameter 'speed'"),
            ([str(BENCH / "not_a_benchmark.json"), "--from", start, "-o", out],
             "not a benchmark result")):
        res = runner.invoke(fit_command, args)
        assert res.exit_code == 2, (args, res.output)
        lines = [line for line in res.output.splitlines() if line.startswith("capsim: error")]
        assert len(lines) == 1 and expect in lines[0], res.output
    assert not Path(out).exists()


def test_cli_starts_from_a_shipped_legacy_profile(tmp_path):
    files = [str(p) for p in _synthetic_files(tmp_path, detailed=False)]
    out = tmp_path / "f.yaml"
    res = CliRunner().invoke(fit_command, [*files, "--from", str(LEGACY_8B_H100),
                                           "--fit-params", "linear_scale,per_step_s,pre_s",
                                           "--max-requests", "40", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(out.read_text())
    assert "curve" not in doc and "step_time" in doc and doc["gpu"]
    assert "legacy curve profile" in res.output


def test_cli_starts_from_a_derived_profile(tmp_path):
    files = [str(p) for p in _synthetic_files(tmp_path, detailed=False)]
    out = tmp_path / "d.yaml"
    res = CliRunner().invoke(fit_command, [*files, "--model", "llama-3.1-8b", "--gpu",
                                           "h100_sxm", "--tp", "1", "--max-requests", "40",
                                           "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "derived for llama-3.1-8b on 1 x h100_sxm" in res.output
    doc = yaml.safe_load(out.read_text())
    assert doc["gpu"] and doc["kv_capacity_tokens"] > 0
    StepTerms.from_profile(doc, file=str(out))


_MEASUREMENTS = Path(__file__).resolve().parents[1] / "validation" / "measurements.csv"
_H200 = "inferencex-vllm-llama31-70b-fp8-h200-tp2-"


_NO_H200 = pytest.mark.skipif(
    not _MEASUREMENTS.is_file()
    or _H200 + "1k1k" not in _MEASUREMENTS.read_text(encoding="utf-8"),
    reason="the InferenceX H200 sets are not in validation/measurements.csv")


@functools.lru_cache(maxsize=1)
def _held_back_errors() -> dict[str, tuple[float, ...]]:
    """Llama-3.1-70B FP8 on 2 x H200 (InferenceX, vLLM with --async-scheduling, mean
    TTFT/TPOT at 1k/1k, 1k/8k and 8k/1k, concurrency 4..64; lengths drawn as the benchmark
    drew them, not all the same: identical lengths replay the clients in lock-step and the
    fit absorbs that artefact): fit from the derived profile (async scheduling, as the
    server ran) on concurrency 4, 16, 64 of all three shapes, every request of each run
    replayed, then replay the held-back concurrency 8 and 32; relative errors per held-back
    point."""
    from sim.profiles.benchfiles import read_measurements
    from sim.profiles.derive import derive

    rng = np.random.default_rng(8)

    def as_run(r):  # lengths as the InferenceX client drew them: uniform on [int(0.8 L), L]
        n = 10 * r.max_concurrency  # --num-prompts 10 x CONC (sim/study/validate.py RECIPES)
        lens = [tuple(int(x) for x in rng.integers(int(0.8 * m), int(m) + 1, n))
                for m in (r.input_tokens_mean, r.output_tokens_mean)]
        return replace(r, input_lens=lens[0], output_lens=lens[1], completed=n)

    records = [as_run(r) for shape in ("1k1k", "1k8k", "8k1k")
               for r in read_measurements(_MEASUREMENTS, _H200 + shape)]
    fit_on = [r for r in records if r.max_concurrency in (4, 16, 64)]
    held = [r for r in records if r.max_concurrency in (8, 32)]
    assert len(fit_on) == 9 and len(held) == 6
    start = StepTerms.from_profile(derive("llama-3.1-70b-fp8", "h200_sxm", 2,
                                          usd_per_gpu_hour=4.0, async_scheduling=True))
    assert start.async_scheduling
    params = ("linear_scale", "per_step_s", "decode_attention_s_per_token", "pre_s", "post_s",
              "prefill_attention_s_per_token2")
    result = fit_profile(fit_on, start, parameters=params, replay=replay)
    errors: dict[str, list[float]] = {"ttft": [], "tpot": []}
    for r in held:
        sim = simulate_metrics(replay(result.terms, load_for(r)))
        errors["ttft"].append(sim["ttft"] / r.ttft_mean_s - 1)
        errors["tpot"].append(sim["tpot"] / r.tpot_mean_s - 1)
    return {k: tuple(v) for k, v in errors.items()}


@_NO_H200
def test_fit_reproduces_held_back_tpot_of_a_real_server():
    """Median absolute TPOT error on the held-back points at most 10% (the issue's bar; the
    files have no E2E)."""
    errors = _held_back_errors()
    assert np.median(np.abs(errors["tpot"])) <= 0.10, errors


@_NO_H200
def test_fit_reproduces_held_back_ttft_of_a_real_server():
    """Median absolute TTFT error on the held-back points at most 10% (the issue's bar).
    Measured 4.7% (errors -8% to -1%). Met only with every request of each run replayed:
    the 64-client runs cut to 400 of their 640 requests made the first wave (64 prompts
    prefilled back to back) 16% of the requests instead of 10%, the fit compensated, and
    the held-back TTFTs came out 9-17% short."""
    errors = _held_back_errors()
    assert np.median(np.abs(errors["ttft"])) <= 0.10, errors


def test_requests_longer_than_the_start_profile_holds_are_refused(tmp_path):
    records = [r for p in _synthetic_files(tmp_path, detailed=False) for r in read_bench(p)]
    small = replace(_perturbed_start(), kv_capacity_tokens=3000)
    with pytest.raises(ConfigError) as err:
        fit_profile(records, small, replay=replay)
    msg = str(err.value)
    assert "vllm-c12-3500.json: total_input_tokens: a request of 3800 tokens" in msg
    assert "(2992 tokens" in msg and "\n" not in msg


def _guidellm_report(path: Path, runs: list[tuple[dict, ReplayLoad]]) -> None:
    """A GuideLLM report (schema 2) of capsim replays of TRUE: per benchmark its strategy
    and the successful requests' distribution summaries (what the reader uses)."""
    benches = []
    for i, (strategy, load) in enumerate(runs):
        out = replay(TRUE, load)
        lens = out.output_lens.astype(float)
        itl_ms = (out.e2e_s - out.ttft_s) / (lens - 1) * 1e3

        def dist(values) -> dict:
            v = np.asarray(values, float)
            return {"successful": {"mean": float(v.mean()), "median": float(np.median(v)),
                                   "std_dev": float(v.std()), "count": int(v.size),
                                   "percentiles": {"p99": float(np.percentile(v, 99))}}}

        n = len(load.input_lens)
        benches.append({
            "type_": "generative_benchmark", "duration": 60.0,
            "config": {"run_index": i, "strategy": strategy},
            "metrics": {"request_totals": {"successful": n, "errored": 0, "incomplete": 0,
                                           "total": n},
                        "time_to_first_token_ms": dist(out.ttft_s * 1e3),
                        "inter_token_latency_ms": dist(itl_ms),
                        "request_latency": dist(out.e2e_s),
                        "prompt_token_count": dist(load.input_lens),
                        "output_token_count": dist(load.output_lens)},
            "requests": {"successful": [], "errored": [], "incomplete": []}})
    path.write_text(json.dumps({"metadata": {"version": 2}, "benchmarks": benches}))


def test_round_trip_through_a_guidellm_report(tmp_path):
    n = 120
    runs = [({"type_": "synchronous"}, ReplayLoad((800,) * n, (160,) * n, (0.0,) * n, 1)),
            ({"type_": "concurrent", "streams": 8},
             ReplayLoad((800,) * n, (160,) * n, (0.0,) * n, 8)),
            ({"type_": "concurrent", "streams": 32},
             ReplayLoad((800,) * n, (160,) * n, (0.0,) * n, 32)),
            ({"type_": "concurrent", "streams": 12},
             ReplayLoad((3500,) * n, (300,) * n, (0.0,) * n, 12))]
    path = tmp_path / "benchmarks.json"
    _guidellm_report(path, runs)
    records = read_bench(path)
    assert [r.load for r in records] == ["concurrency 1", "concurrency 8", "concurrency 32",
                                         "concurrency 12"]
    result = fit_profile(records, _perturbed_start(), replay=replay)
    assert result.fitted["linear_scale"] == pytest.approx(1 / 1.3, rel=0.03)
    assert result.terms.per_step_s == pytest.approx(TRUE.per_step_s, rel=0.03)
    assert result.terms.decode_attention_s_per_token == pytest.approx(
        TRUE.decode_attention_s_per_token, rel=0.05)
    assert max(abs(r.rel_error) for r in result.residuals) < 0.01


def test_capsim_profile_fit_is_registered(tmp_path):
    from sim.cli import main

    files = [str(p) for p in _synthetic_files(tmp_path, detailed=False)]
    res = CliRunner().invoke(main, ["profile", "fit", *files, "--from",
                                    str(_start_profile_file(tmp_path)), "--max-requests", "40",
                                    "-o", str(tmp_path / "f.yaml")])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["profile", "fit", files[0], "--from",
                                    str(_start_profile_file(tmp_path)), "-o",
                                    str(tmp_path / "g.yaml")])
    assert res.exit_code == 2 and "a single load point" in res.output

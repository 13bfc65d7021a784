"""Workload configs, the generation API (iter_blocks / generate / describe / fit_trace),
length models and the shipped workloads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from sim.core.loader import builtin_dir, builtin_names
from sim.workload.fitting import fit_trace
from sim.workload.requests import concat_blocks
from sim.workload.streams import (
    WorkloadConfig,
    describe,
    generate,
    iter_blocks,
    parse_workload,
)

DAY = 86400.0
HOUR = 3600.0
SHIPPED_AZURE = builtin_dir("workloads") / "data" / "AzureLLMInferenceTrace_conv.csv"
CHAT = {"kind": "lognormal", "mean": 1155, "sigma": 0.99}
SHORT = {"kind": "lognormal", "median": 150.5, "sigma": 0.86}


def chat(name="chat", rate=0.5, cls="interactive", **extra):
    return {"name": name, "class": cls, "arrivals": {"kind": "poisson", "rate_per_s": rate},
            "input_tokens": CHAT, "output_tokens": SHORT, **extra}


def mixed_streams():
    return [
        chat(),
        {"name": "wave", "arrivals": {"kind": "diurnal", "mean_rate_per_s": 0.3,
                                      "weekend_factor": 0.5},
         "input_tokens": {"kind": "fixed", "value": 500}, "output_tokens": SHORT},
        {"name": "bursty", "arrivals": {"kind": "spiky", "base_rate_per_s": 0.1,
                                        "burst_rate_per_s": 2, "mean_burst_s": 60,
                                        "mean_calm_s": 900},
         "input_tokens": CHAT, "output_tokens": SHORT},
        {"name": "nightly", "class": "batch",
         "arrivals": {"kind": "batch", "at": "23:00", "count": 300, "spread_s": "2h"},
         "input_tokens": CHAT, "output_tokens": SHORT, "slo": {"deadline_s": "6h"}},
        {"name": "replay", "arrivals": {"kind": "trace", "path": str(SHIPPED_AZURE),
                                        "rate_scale": 0.1}},
    ]


def assert_blocks_equal(a, b):
    for field in ("arrival_s", "input_tokens", "output_tokens", "class_id", "stream_id"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


# -- configuration -----------------------------------------------------------------------

def test_list_dict_and_defaults():
    from_list = parse_workload([chat()])
    from_dict = parse_workload({"name": "w", "scale": 2, "streams": [chat()]})
    assert from_list.streams == from_dict.streams and from_dict.scale == 2.0
    stream = from_list.streams[0]
    assert stream.traffic_class == "interactive" and stream.slo.ttft_s is None
    assert parse_workload(from_dict) is from_dict


def test_class_names_in_stream_order():
    wl = parse_workload([chat("a", cls="batch"), chat("b"), chat("c", cls="batch")])
    assert wl.class_names == ("batch", "interactive")
    assert wl.class_ids == (0, 1, 0)


def test_slo_and_durations():
    wl = parse_workload([chat(slo={"ttft_s": 0.5, "deadline_s": "6h", "tpot_s": "50ms"})])
    slo = wl.streams[0].slo
    assert (slo.ttft_s, slo.deadline_s, slo.tpot_s, slo.e2e_s) == (0.5, 21600.0, 0.05, None)


def test_named_and_path_workloads(tmp_path):
    steady = parse_workload("steady")
    assert steady.name == "steady" and steady.streams[0].arrivals.kind == "poisson"
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump([chat()]))
    mine = parse_workload("mine", base_dir=tmp_path)
    assert mine.name == "mine"  # defaults to the file name
    assert parse_workload(str(tmp_path / "mine.yaml")).streams == mine.streams


def test_trace_paths_resolve_next_to_the_config_then_shipped(tmp_path):
    (tmp_path / "t.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,1\n"
                                    "2,6,2\n", encoding="utf-8")
    local = parse_workload([{"name": "r", "arrivals": {"kind": "trace", "path": "t.csv"}}],
                           base_dir=tmp_path)
    assert local.streams[0].arrivals.path == str((tmp_path / "t.csv").resolve())
    shipped = parse_workload([{"name": "r", "arrivals": {
        "kind": "trace", "path": "data/AzureLLMInferenceTrace_conv.csv"}}], base_dir=tmp_path)
    assert shipped.streams[0].arrivals.path == str(SHIPPED_AZURE.resolve())


@pytest.mark.parametrize("name", builtin_names("workloads"))
def test_shipped_workloads_load_and_generate(name):
    wl = parse_workload(name)
    text = (builtin_dir("workloads") / f"{name}.yaml").read_text()
    assert text.startswith(f"# {name}:")  # a header saying what it models
    block = generate(wl, DAY, 0)
    assert len(block) > 0 and np.all(np.diff(block.arrival_s) >= 0)
    assert np.all(block.input_tokens >= 1) and np.all(block.output_tokens >= 1)


def test_shipped_workload_set():
    assert {"steady", "diurnal-chat", "spiky-chat", "nightly-batch", "azure-conv"} <= set(
        builtin_names("workloads"))
    assert parse_workload("nightly-batch").class_names == ("batch",)
    assert parse_workload("nightly-batch").streams[0].slo.deadline_s == 6 * HOUR


def test_azure_conv_replays_the_trace_in_order():
    from sim.workload.traces import read_trace

    trace = read_trace(SHIPPED_AZURE)
    block = generate(parse_workload("azure-conv"), 2 * HOUR, 0)
    n = len(trace)
    np.testing.assert_allclose(block.arrival_s[:n], trace.arrival_s)
    np.testing.assert_array_equal(block.input_tokens[:n], trace.input_tokens)
    np.testing.assert_array_equal(block.output_tokens[:n], trace.output_tokens)
    period = trace.span_s * n / (n - 1)  # span plus the mean gap
    np.testing.assert_allclose(block.arrival_s[n:2 * n] - period, trace.arrival_s[: len(block) - n])


# -- generation API ----------------------------------------------------------------------

def test_same_seed_same_requests_other_seed_differs():
    wl = parse_workload(mixed_streams())
    a, b = generate(wl, 2 * DAY, 7), generate(wl, 2 * DAY, 7)
    assert_blocks_equal(a, b)
    assert_blocks_equal(a, generate(wl, 2 * DAY, np.random.SeedSequence(7)))
    c = generate(wl, 2 * DAY, 8)
    assert len(a) != len(c) or not np.array_equal(a.arrival_s, c.arrival_s)


def test_adding_a_stream_leaves_the_others_unchanged():
    base = mixed_streams()
    small = generate(parse_workload(base), 2 * DAY, 3)
    big = generate(parse_workload([chat("first-new", rate=1.0), *base]), 2 * DAY, 3)
    for sid in range(len(base)):
        mine = small.stream_id == sid
        theirs = big.stream_id == sid + 1
        for field in ("arrival_s", "input_tokens", "output_tokens"):
            np.testing.assert_array_equal(getattr(small, field)[mine], getattr(big, field)[theirs])


def test_changing_a_length_model_does_not_move_arrivals():
    a = generate(parse_workload([chat()]), DAY, 5)
    b = generate(parse_workload([chat(input_tokens={"kind": "fixed", "value": 9})]), DAY, 5)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.output_tokens, b.output_tokens)


def test_iter_blocks_concatenate_to_generate_and_stay_in_their_windows():
    wl = parse_workload(mixed_streams())
    horizon = 2.5 * DAY
    blocks = list(iter_blocks(wl, horizon, 11))
    assert len(blocks) == 3
    for index, block in enumerate(blocks):
        assert np.all(np.diff(block.arrival_s) >= 0)
        assert np.all(block.arrival_s >= index * DAY)
        assert np.all(block.arrival_s < min(horizon, (index + 1) * DAY))
        assert block.class_id.dtype == np.int16 and block.stream_id.dtype == np.int16
    assert_blocks_equal(concat_blocks(blocks), generate(wl, horizon, 11))
    assert set(np.unique(concat_blocks(blocks).stream_id)) == set(range(5))


def test_iter_blocks_is_lazy():
    wl = parse_workload([chat(rate=3.0)])
    blocks = iter_blocks(wl, 365 * DAY, 0)
    first = next(blocks)
    assert first.arrival_s.max() < DAY and len(first) < 3.0 * DAY * 1.01


def test_merge_is_stable_on_ties():
    batch = {"kind": "batch", "at": "01:00", "count": 3}
    wl = parse_workload([
        {"name": "a", "arrivals": batch, "input_tokens": {"kind": "fixed", "value": 1},
         "output_tokens": {"kind": "fixed", "value": 1}},
        {"name": "b", "class": "other", "arrivals": batch,
         "input_tokens": {"kind": "fixed", "value": 2}, "output_tokens": {"kind": "fixed",
                                                                          "value": 2}}])
    block = generate(wl, DAY, 0)
    np.testing.assert_array_equal(block.stream_id, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(block.class_id, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(block.input_tokens, [1, 1, 1, 2, 2, 2])


def test_month_of_diurnal_chat_is_fast():
    import time

    wl = parse_workload("diurnal-chat")
    started = time.perf_counter()
    n = sum(len(b) for b in iter_blocks(wl, 30 * DAY, 0))
    elapsed = time.perf_counter() - started
    assert n == pytest.approx(3.0 * 30 * DAY, rel=0.05)  # ~7.8 M requests
    assert elapsed < 30.0, f"{n} requests took {elapsed:.1f} s"


# -- length models -----------------------------------------------------------------------

def lengths(model: dict, n_days: float = 1.0, rate: float = 2.0) -> np.ndarray:
    wl = parse_workload([chat(rate=rate, input_tokens=model)])
    return generate(wl, n_days * DAY, 21).input_tokens


def test_lognormal_mean_parameterisation():
    x = lengths({"kind": "lognormal", "mean": 1000, "sigma": 0.8})
    sd = 1000 * math.sqrt(math.exp(0.8**2) - 1)
    assert np.all(x == np.rint(x))
    assert abs(x.mean() - 1000) < 4 * sd / math.sqrt(x.size)


def test_lognormal_median_parameterisation_and_clipping():
    x = lengths({"kind": "lognormal", "median": 700.5, "sigma": 1.2, "min": 50, "max": 5000})
    assert x.min() == 50 and x.max() == 5000
    share = np.mean(x < 700.5)  # rounding cannot cross a half-integer median
    assert abs(share - 0.5) < 4 * math.sqrt(0.25 / x.size)
    tail = stats.norm.sf((math.log(5000) - math.log(700.5)) / 1.2)
    assert abs(np.mean(x == 5000) - tail) < 4 * math.sqrt(tail * (1 - tail) / x.size)


def test_fixed_and_empirical_lengths(tmp_path):
    assert np.all(lengths({"kind": "fixed", "value": 77}) == 77)
    column = np.array([3, 5, 8, 13, 21])
    path = tmp_path / "l.csv"
    path.write_text("num_prefill_tokens,num_decode_tokens,other\n" + "".join(
        f"{v},{v + 1},{2 * v}\n" for v in column), encoding="utf-8")
    x = lengths({"kind": "empirical", "path": str(path), "column": "input"})
    assert set(np.unique(x)) == set(column)
    counts = np.array([np.sum(x == v) for v in column])
    assert stats.chisquare(counts).pvalue > 1e-3
    raw = lengths({"kind": "empirical", "path": str(path), "column": "other"})
    assert set(np.unique(raw)) == set(2 * column)


def test_trace_arrivals_with_model_lengths():
    wl = parse_workload([{"name": "r", "arrivals": {"kind": "trace", "path": str(SHIPPED_AZURE)},
                          "input_tokens": {"kind": "fixed", "value": 5},
                          "output_tokens": {"kind": "fixed", "value": 6}}])
    block = generate(wl, HOUR, 0)
    assert np.all(block.input_tokens == 5) and np.all(block.output_tokens == 6)


# -- describe and fit --------------------------------------------------------------------

def test_describe_matches_generate():
    wl = parse_workload(mixed_streams())
    horizon = 2 * DAY
    block = generate(wl, horizon, 2)
    d = describe(wl, horizon, 2)
    assert d["requests"] == len(block)
    assert len(d["requests_per_hour"]) == 48 and sum(d["requests_per_hour"]) == len(block)
    tokens = block.input_tokens.sum() + block.output_tokens.sum()
    assert sum(d["tokens_per_hour"]) == pytest.approx(tokens)
    assert d["tokens_per_month"] == pytest.approx(tokens * 15)
    assert d["input_tokens"]["mean"] == pytest.approx(block.input_tokens.mean())
    assert d["input_tokens"]["max"] == block.input_tokens.max()
    for q in (50, 90, 99):
        assert d["output_tokens"][f"p{q}"] == np.percentile(block.output_tokens, q,
                                                            method="inverted_cdf")
    shares = {k: v["share"] for k, v in d["classes"].items()}
    assert set(shares) == {"interactive", "batch"} and sum(shares.values()) == pytest.approx(1)
    assert d["classes"]["batch"]["requests"] == np.sum(block.class_id == 1)
    assert 300 < d["classes"]["batch"]["requests"] < 600  # the second night is cut at 2 d
    assert len(d["hour_of_day"]["requests_per_hour"]) == 24


def test_fit_short_trace_is_poisson_and_round_trips():
    fitted = fit_trace(SHIPPED_AZURE)
    arrivals = fitted["streams"][0]["arrivals"]
    assert arrivals["kind"] == "poisson"
    assert arrivals["rate_per_s"] == pytest.approx(19_365 / 3501.722, rel=1e-4)
    inp = fitted["streams"][0]["input_tokens"]
    assert inp["median"] == pytest.approx(760.0, rel=1e-3) and inp["sigma"] == pytest.approx(
        0.985, abs=1e-3)
    wl = parse_workload(yaml.safe_load(yaml.safe_dump(fitted)))
    assert isinstance(wl, WorkloadConfig)


def write_vidur(path: Path, block) -> None:
    rows = "".join(f"{float(t)!r},{int(i)},{int(o)}\n" for t, i, o in
                   zip(block.arrival_s, block.input_tokens, block.output_tokens, strict=True))
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n" + rows, encoding="utf-8")


def test_fit_recovers_a_generated_diurnal_week(tmp_path):
    truth = {"kind": "diurnal", "mean_rate_per_s": 0.05, "peak_hour": 15, "peak_to_trough": 5,
             "weekend_factor": 0.5}
    block = generate(parse_workload([chat(arrivals=truth)]), 14 * DAY, 4)
    path = tmp_path / "week.csv"
    write_vidur(path, block)
    arrivals = fit_trace(path)["streams"][0]["arrivals"]
    assert arrivals["kind"] == "diurnal" and len(arrivals["hourly_weights"]) == 24
    assert int(np.argmax(arrivals["hourly_weights"])) in (14, 15)
    n = len(block)  # the trace starts at the first arrival, a few seconds in
    assert abs(arrivals["mean_rate_per_s"] - 0.05) < 4 * math.sqrt(n) / (14 * DAY)
    n_weekend = np.sum((block.arrival_s // DAY) % 7 >= 5)
    se_weekend = 0.5 * math.sqrt(1 / n_weekend + 1 / (n - n_weekend))
    assert abs(arrivals["weekend_factor"] - 0.5) < 4 * se_weekend
    assert parse_workload(fit_trace(path)).streams[0].arrivals.kind == "diurnal"

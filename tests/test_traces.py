"""Trace readers (sim.workload.traces) and trace replay (sim.workload.arrivals.trace_replay)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.core.errors import ConfigError
from sim.core.loader import builtin_dir
from sim.workload.arrivals import TraceArrivals, build_process, trace_replay
from sim.workload.traces import read_length_column, read_trace, resolve_trace_path, trace_columns
from tests.shared_data import SHARED_DATA

SHIPPED_AZURE = builtin_dir("workloads") / "data" / "AzureLLMInferenceTrace_conv.csv"
SHARED = SHARED_DATA / "traces"
SHARED_AZURE = SHARED / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
SHARED_MOONCAKE = SHARED / "mooncake_fast25" / "synthetic_trace.jsonl"
SHARED_VIDUR = (SHARED / "vidur_length_dists"
                / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv")

AZURE_TEXT = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.2224670,879,55
2023-11-16 18:15:51.3910170,91,16
"""
VIDUR_TEXT = """arrived_at,num_prefill_tokens,num_decode_tokens,extra
0.0,100,10,x
0.25,200,20,y
1.75,300,30,z
"""
MOONCAKE_TEXT = """{"timestamp": 0, "input_length": 40160, "output_length": 6, "hash_ids": [0, 1]}
{"timestamp": 0, "input_length": 36640, "output_length": 4, "hash_ids": [2]}
{"timestamp": 40, "input_length": 23769, "output_length": 3, "hash_ids": []}
{"timestamp": 1500, "input_length": 7, "output_length": 1, "hash_ids": [3]}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(exc: pytest.ExceptionInfo[ConfigError], *parts: str) -> str:
    text = str(exc.value)
    assert "\n" not in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    return text


# -- the three formats, small files ------------------------------------------------------

def test_azure_csv_rows_order_and_lengths(tmp_path):
    trace = read_trace(write(tmp_path, "az.csv", AZURE_TEXT))
    assert trace.format == "azure" and len(trace) == 4
    np.testing.assert_allclose(trace.arrival_s, [0.0, 4.314579, 4.541876, 4.710427], atol=1e-6)
    np.testing.assert_array_equal(trace.input_tokens, [374, 396, 879, 91])
    np.testing.assert_array_equal(trace.output_tokens, [44, 109, 55, 16])
    # 2023-11-16 was a Thursday: origin = 3 days + 18:15:46.68 after Monday 00:00
    assert trace.origin_of_week_s == pytest.approx(3 * 86400 + 18 * 3600 + 15 * 60 + 46.68059)


def test_vidur_csv_in_seconds(tmp_path):
    trace = read_trace(write(tmp_path, "v.csv", VIDUR_TEXT))
    assert trace.format == "vidur"
    np.testing.assert_array_equal(trace.arrival_s, [0.0, 0.25, 1.75])
    np.testing.assert_array_equal(trace.input_tokens, [100, 200, 300])
    np.testing.assert_array_equal(trace.output_tokens, [10, 20, 30])
    assert trace.origin_of_week_s == 0.0


def test_mooncake_jsonl_in_milliseconds(tmp_path):
    trace = read_trace(write(tmp_path, "m.jsonl", MOONCAKE_TEXT))
    assert trace.format == "mooncake"
    np.testing.assert_array_equal(trace.arrival_s, [0.0, 0.0, 0.04, 1.5])
    np.testing.assert_array_equal(trace.input_tokens, [40160, 36640, 23769, 7])
    np.testing.assert_array_equal(trace.output_tokens, [6, 4, 3, 1])


def test_unsorted_rows_keep_file_order_relative_to_earliest(tmp_path):
    text = "arrived_at,num_prefill_tokens,num_decode_tokens\n5,1,1\n3,2,2\n4,3,3\n"
    trace = read_trace(write(tmp_path, "u.csv", text))
    np.testing.assert_array_equal(trace.arrival_s, [2.0, 0.0, 1.0])
    np.testing.assert_array_equal(trace.input_tokens, [1, 2, 3])


def test_blank_lines_and_crlf_are_fine(tmp_path):
    text = VIDUR_TEXT.replace("\n", "\r\n").replace("0.25,", "\r\n0.25,")
    trace = read_trace(write(tmp_path, "crlf.csv", text))
    np.testing.assert_array_equal(trace.input_tokens, [100, 200, 300])


def test_explicit_format_must_match_columns(tmp_path):
    path = write(tmp_path, "v.csv", VIDUR_TEXT)
    assert read_trace(path, "vidur").format == "vidur"
    with pytest.raises(ConfigError) as exc:
        read_trace(path, "azure")
    one_line_error(exc, "v.csv", "TIMESTAMP", "azure")


def test_undetectable_format_lists_expected_columns(tmp_path):
    with pytest.raises(ConfigError) as exc:
        read_trace(write(tmp_path, "x.csv", "a,b\n1,2\n"))
    one_line_error(exc, "x.csv", "cannot detect", "ContextTokens", "input_length")


def test_trace_columns(tmp_path):
    assert trace_columns(write(tmp_path, "m.jsonl", MOONCAKE_TEXT)) == [
        "timestamp", "input_length", "output_length", "hash_ids"]


# -- malformed rows ----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "where"), [
    ("az.csv", AZURE_TEXT.replace("396,109", "396,lots"), "line 3, column 'GeneratedTokens'"),
    ("az.csv", AZURE_TEXT.replace("2023-11-16 18:15:51.22", "yesterday 18:15:51.22"),
     "line 4, column 'TIMESTAMP'"),
    ("v.csv", VIDUR_TEXT.replace("0.25,200", "0.25,-200"), "line 3, column 'num_prefill_tokens'"),
    ("v.csv", VIDUR_TEXT.replace("0.25,200", "0.25,20.5"), "line 3, column 'num_prefill_tokens'"),
    ("v.csv", VIDUR_TEXT.replace("1.75,", "soon,"), "line 4, column 'arrived_at'"),
    ("v.csv", VIDUR_TEXT.replace("0.25,200,20,y", "0.25,200"), "line 3: expected 4 fields"),
    ("v.csv", VIDUR_TEXT.replace("0.25,200", "0.25,"), "line 3, column 'num_prefill_tokens'"),
    ("m.jsonl", MOONCAKE_TEXT.replace('"input_length": 23769', '"input_length": "23769"'),
     "line 3, column 'input_length'"),
    ("m.jsonl", MOONCAKE_TEXT.replace('"output_length": 4, ', ""),
     "line 2, column 'output_length'"),
    ("m.jsonl", MOONCAKE_TEXT.replace('{"timestamp": 40', '{"timestamp": 40,,'),
     "line 3: invalid JSON"),
])
def test_malformed_row_names_file_line_and_column(tmp_path, name, text, where):
    with pytest.raises(ConfigError) as exc:
        read_trace(write(tmp_path, name, text))
    one_line_error(exc, name, where)


def test_header_only_trace_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        read_trace(write(tmp_path, "h.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n"))
    one_line_error(exc, "h.csv", "no rows")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(min_value=0, max_value=2),
       bad=st.text(alphabet="abcxyz!?/#-+", min_size=1, max_size=8).filter(
           lambda s: not re.fullmatch(r"[+-]?", s)))
def test_any_non_numeric_token_cell_is_located(tmp_path, row, bad):
    lines = VIDUR_TEXT.splitlines()
    cells = lines[row + 1].split(",")
    cells[2] = bad
    lines[row + 1] = ",".join(cells)
    path = write(tmp_path, f"h{row}.csv", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as exc:
        read_trace(path)
    one_line_error(exc, path.name, f"line {row + 2}, column 'num_decode_tokens'")


# -- caching and path resolution ---------------------------------------------------------

def test_parsed_traces_are_cached_until_the_file_changes(tmp_path):
    path = write(tmp_path, "v.csv", VIDUR_TEXT)
    first = read_trace(path)
    assert read_trace(path) is first
    assert not first.arrival_s.flags.writeable
    path.write_text(VIDUR_TEXT.replace("300,30", "301,31"), encoding="utf-8")
    os.utime(path, ns=(first_ns := path.stat().st_mtime_ns + 10**9, first_ns))
    assert read_trace(path).input_tokens[-1] == 301


def test_resolve_trace_path_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_trace_path("data/AzureLLMInferenceTrace_conv.csv") == SHIPPED_AZURE.resolve()
    local = tmp_path / "cfg"
    local.mkdir()
    write(local, "t.csv", VIDUR_TEXT)
    assert resolve_trace_path("t.csv", local) == (local / "t.csv").resolve()
    with pytest.raises(ConfigError) as exc:
        resolve_trace_path("nope.csv", local)
    one_line_error(exc, "nope.csv", "not found")


# -- real traces -------------------------------------------------------------------------

def test_shipped_azure_conv_trace():
    trace = read_trace(SHIPPED_AZURE)
    assert trace.format == "azure" and len(trace) == 19_366
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert trace.span_s == pytest.approx(3501.722, abs=1e-3)
    assert (trace.input_tokens[0], trace.output_tokens[0]) == (374, 44)
    assert (trace.input_tokens[-1], trace.output_tokens[-1]) == (197, 183)
    assert trace.input_tokens.mean() == pytest.approx(1154.70, abs=0.01)
    assert trace.output_tokens.mean() == pytest.approx(211.13, abs=0.01)
    license_file = SHIPPED_AZURE.parent / "LICENSE-CC-BY-4.0.txt"
    assert "Attribution 4.0" in license_file.read_text(encoding="utf-8")
    assert "Azure/AzurePublicDataset" in (SHIPPED_AZURE.parent / "README.md").read_text()


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared public traces not mounted")
def test_shared_traces():
    assert SHARED_AZURE.read_bytes() == SHIPPED_AZURE.read_bytes()
    moon = read_trace(SHARED_MOONCAKE)
    assert moon.format == "mooncake" and len(moon) == 3_993
    assert moon.arrival_s[-1] == pytest.approx(1022.025)
    arxiv_in = read_length_column(SHARED_VIDUR, "input")
    arxiv_out = read_length_column(SHARED_VIDUR, "num_decode_tokens")
    assert arxiv_in.size == arxiv_out.size == 28_257
    assert arxiv_in.mean() == pytest.approx(2588, abs=1) and arxiv_in.max() <= 4054
    assert arxiv_out.mean() == pytest.approx(291, abs=1)
    with pytest.raises(ConfigError) as exc:  # lengths only: no arrival times to replay
        read_trace(SHARED_VIDUR)
    one_line_error(exc, SHARED_VIDUR.name, "cannot detect")


def test_length_column_by_alias_or_raw_name(tmp_path):
    path = write(tmp_path, "v.csv", VIDUR_TEXT)
    np.testing.assert_array_equal(read_length_column(path, "output"), [10, 20, 30])
    np.testing.assert_array_equal(read_length_column(path, "num_prefill_tokens"), [100, 200, 300])
    with pytest.raises(ConfigError) as exc:
        read_length_column(path, "num_prefil_tokens")
    one_line_error(exc, "v.csv", "did you mean 'num_prefill_tokens'")


# -- replay: offset, scaling, looping ----------------------------------------------------

def replay_times(trace, start_s, end_s, scale=1.0, **kwargs):
    config = TraceArrivals(kind="trace", path="x", **kwargs)
    process = build_process(config, scale=scale, horizon_s=end_s, seed=0, name="t",
                            trace=trace)
    return process.window(start_s, end_s, np.random.default_rng(0))


def test_loop_period_is_span_plus_mean_gap(tmp_path):
    trace = read_trace(write(tmp_path, "v.csv", VIDUR_TEXT))  # times 0, .25, 1.75
    replay = trace_replay(TraceArrivals(kind="trace", path="x"), trace, 1.0)
    assert replay.period_s == pytest.approx(1.75 + 1.75 / 2)
    got = replay_times(trace, 0.0, 8.0)
    expected = np.concatenate([np.array([0, 0.25, 1.75]) + k * 2.625 for k in range(4)])
    np.testing.assert_allclose(got.times_s, expected[expected < 8.0])
    np.testing.assert_array_equal(got.trace_rows, np.tile([0, 1, 2], 4)[expected < 8.0])


def test_windows_of_a_looped_trace_tile_exactly(tmp_path):
    trace = read_trace(write(tmp_path, "m.jsonl", MOONCAKE_TEXT))
    whole = replay_times(trace, 0.0, 100.0)
    cuts = [0.0, 1.5, 1.51, 7.0, 33.3, 100.0]
    parts = [replay_times(trace, a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    np.testing.assert_array_equal(np.concatenate([p.times_s for p in parts]), whole.times_s)
    np.testing.assert_array_equal(np.concatenate([p.trace_rows for p in parts]), whole.trace_rows)


def test_rate_scale_offset_and_no_loop(tmp_path):
    trace = read_trace(write(tmp_path, "v.csv", VIDUR_TEXT))
    fast = replay_times(trace, 0.0, 100.0, rate_scale=2.0, loop=False)
    np.testing.assert_allclose(fast.times_s, [0.0, 0.125, 0.875])
    skipped = replay_times(trace, 0.0, 100.0, offset_s=0.2, loop=False)
    np.testing.assert_allclose(skipped.times_s, [0.05, 1.55])
    np.testing.assert_array_equal(skipped.trace_rows, [1, 2])
    scaled = replay_times(trace, 0.0, 100.0, loop=False, scale=4.0)
    np.testing.assert_allclose(scaled.times_s, [0.0, 0.0625, 0.4375])


def test_replay_config_errors(tmp_path):
    trace = read_trace(write(tmp_path, "v.csv", VIDUR_TEXT))
    with pytest.raises(ConfigError, match="offset_s"):
        trace_replay(TraceArrivals(kind="trace", path="x", offset_s=10), trace, 1.0)
    single = read_trace(write(tmp_path, "one.csv", "arrived_at,num_prefill_tokens,"
                                                   "num_decode_tokens\n3,1,1\n"))
    with pytest.raises(ConfigError, match="loop"):
        trace_replay(TraceArrivals(kind="trace", path="x"), single, 1.0)
    assert trace_replay(TraceArrivals(kind="trace", path="x", loop=False), single, 1.0).rows[0] == 0

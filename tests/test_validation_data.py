"""validation/measurements.csv: schema, units and internal consistency of the published
measurements of real LLM servers that capsim's fidelity is judged against.

Every number in the file is transcribed from a named public source (or, where the row's
``derived_fields`` says so, computed from that source's own files); these checks catch a
transcription slip, a unit mix-up (seconds for milliseconds) or a row that cannot be traced.
Stdlib only, so it runs in milliseconds.
"""

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "validation"
CSV = ROOT / "measurements.csv"

REQUIRED = [
    "set_id", "source_url_or_repo", "source_path_or_section", "licence", "engine", "engine_version",
    "model", "gpu", "num_gpus", "tp", "dtype", "dataset", "input_len_mean", "output_len_mean",
    "input_len_fixed", "output_len_fixed", "num_prompts", "load_kind", "request_rate_per_s",
    "max_concurrency", "duration_s", "completed", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
    "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "median_itl_ms",
    "mean_e2e_ms", "median_e2e_ms", "request_throughput", "output_throughput_tok_s", "max_num_seqs",
    "max_num_batched_tokens", "chunked_prefill", "prefix_caching", "notes",
]
EXTRA = ["source_commit", "p99_e2e_ms", "e2e_per_output_token_ms", "latency_scope",
         "derived_fields"]

LATENCY_MS = ["mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms",
              "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "mean_e2e_ms", "median_e2e_ms",
              "p99_e2e_ms", "e2e_per_output_token_ms"]
POSITIVE = LATENCY_MS + ["input_len_mean", "output_len_mean", "duration_s", "request_throughput",
                         "output_throughput_tok_s"]
INTEGER = ["num_gpus", "tp", "input_len_fixed", "output_len_fixed", "num_prompts",
           "max_concurrency", "completed", "max_num_seqs", "max_num_batched_tokens"]
# One server configuration per set: these must not vary between a set's load points.
PER_SET = ["source_url_or_repo", "licence", "engine", "engine_version", "model", "gpu", "num_gpus",
           "tp", "dtype", "dataset", "input_len_fixed", "output_len_fixed", "load_kind",
           "max_num_seqs", "max_num_batched_tokens", "chunked_prefill", "prefix_caching",
           "latency_scope"]
SHIPPABLE = ("MIT", "Apache-2.0", "BSD", "CC-BY", "CC0")


def _rows() -> list[dict[str, str]]:
    with CSV.open(newline="") as f:
        return list(csv.DictReader(f))


ROWS = _rows()


def _num(row: dict[str, str], col: str) -> float | None:
    value = row[col].strip()
    return None if value == "" else float(value)


def _sets() -> dict[str, list[dict[str, str]]]:
    sets = defaultdict(list)
    for row in ROWS:
        sets[row["set_id"]].append(row)
    return sets


def _where(row: dict[str, str]) -> str:
    return f"{row['set_id']} ({row['source_path_or_section'][:90]})"


def test_header_has_the_agreed_columns():
    with CSV.open(newline="") as f:
        header = next(csv.reader(f))
    missing = [c for c in REQUIRED + EXTRA if c not in header]
    assert not missing, f"missing columns: {missing}"
    assert len(header) == len(set(header)), "duplicate column names"
    assert ROWS, "no measurements"


def test_every_row_names_its_source_and_a_shippable_licence():
    for row in ROWS:
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", row["set_id"]), _where(row)
        assert row["source_url_or_repo"].startswith("https://"), _where(row)
        assert row["source_path_or_section"].strip(), _where(row)
        assert row["source_commit"].strip(), _where(row)
        assert any(lic in row["licence"] for lic in SHIPPABLE), _where(row)


def test_numbers_parse_and_have_sane_units():
    for row in ROWS:
        for col in POSITIVE:
            value = _num(row, col)
            if value is not None:
                assert math.isfinite(value) and value > 0, f"{col}={row[col]} in {_where(row)}"
        for col in INTEGER:
            if row[col].strip():
                assert row[col].isdigit() and int(row[col]) > 0, f"{col}={row[col]} {_where(row)}"
        for col in ("chunked_prefill", "prefix_caching"):
            assert row[col] in ("", "true", "false"), f"{col}={row[col]} {_where(row)}"
        # Milliseconds, not seconds or microseconds: a TTFT of a real server is more than 1 ms
        # and less than an hour; a TPOT/ITL between 1 ms and 1 s.
        for col in ("mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms"):
            value = _num(row, col)
            if value is not None:
                assert 1 <= value < 3.6e6, f"{col}={value} {_where(row)}"
        for col in ("mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms", "mean_itl_ms",
                    "median_itl_ms"):
            value = _num(row, col)
            if value is not None:
                assert 1 <= value < 1000, f"{col}={value} {_where(row)}"


def test_load_points_say_how_the_load_was_applied():
    for row in ROWS:
        assert row["load_kind"] in ("rate", "concurrency"), _where(row)
        rate = row["request_rate_per_s"]
        assert rate == "inf" or float(rate) > 0, _where(row)
        if row["load_kind"] == "concurrency":
            assert row["max_concurrency"].strip(), _where(row)
        else:
            assert rate.strip(), _where(row)
        assert int(row["num_gpus"]) >= int(row["tp"]), _where(row)
        assert row["engine"] in ("vllm", "sglang", "tgi"), _where(row)
        assert row["dataset"].strip(), _where(row)
        fixed = row["input_len_fixed"].strip() and row["output_len_fixed"].strip()
        assert fixed or "sharegpt" in row["dataset"], f"no length model for a replay: {_where(row)}"


def test_counts_and_orderings_are_consistent():
    for row in ROWS:
        completed, prompts = _num(row, "completed"), _num(row, "num_prompts")
        if completed is not None and prompts is not None:
            assert completed <= prompts, _where(row)
        for stat in ("mean", "median", "p99"):
            ttft, e2e = _num(row, f"{stat}_ttft_ms"), _num(row, f"{stat}_e2e_ms")
            if ttft is not None and e2e is not None:
                assert ttft < e2e, f"{stat} TTFT >= E2E in {_where(row)}"
            tpot = _num(row, f"{stat}_tpot_ms")
            if tpot is not None and e2e is not None:
                assert tpot < e2e, f"{stat} TPOT >= E2E in {_where(row)}"
        for metric in ("ttft", "tpot", "e2e"):
            median, p99 = _num(row, f"median_{metric}_ms"), _num(row, f"p99_{metric}_ms")
            if median is not None and p99 is not None:
                assert median <= p99, f"median {metric} > p99 in {_where(row)}"


def test_throughput_matches_completed_over_duration():
    checked = 0
    for row in ROWS:
        completed, duration = _num(row, "completed"), _num(row, "duration_s")
        if completed is None or duration is None:
            continue
        rps = _num(row, "request_throughput")
        if rps is not None:
            assert rps == pytest.approx(completed / duration, rel=0.01), _where(row)
            checked += 1
        out_tps, out_mean = _num(row, "output_throughput_tok_s"), _num(row, "output_len_mean")
        if out_tps is not None and out_mean is not None:
            assert out_tps == pytest.approx(out_mean * completed / duration, rel=0.01), _where(row)
        # E2E cannot exceed the whole run.
        for col in ("mean_e2e_ms", "median_e2e_ms", "p99_e2e_ms"):
            e2e = _num(row, col)
            if e2e is not None:
                assert e2e <= duration * 1000, _where(row)
    assert checked, "no row carries both a duration and a request throughput"


def test_each_set_is_one_server_configuration_with_distinct_load_points():
    for set_id, rows in _sets().items():
        for col in PER_SET:
            values = {r[col] for r in rows}
            assert len(values) == 1, f"{set_id}: {col} varies: {sorted(values)}"
        points = [(r["request_rate_per_s"], r["max_concurrency"], r["num_prompts"]) for r in rows]
        assert len(points) == len(set(points)), f"{set_id}: repeated load point"
        has_metric = any(_num(r, c) is not None for r in rows
                         for c in LATENCY_MS + ["request_throughput", "output_throughput_tok_s"])
        assert has_metric, set_id


def test_concurrency_sweeps_slow_down_with_load():
    """Loose physics: at the highest concurrency a token takes longer than at the lowest."""
    for set_id, rows in _sets().items():
        if rows[0]["load_kind"] != "concurrency" or len(rows) < 2:
            continue
        by_conc = sorted(rows, key=lambda r: int(r["max_concurrency"]))
        for col in ("mean_tpot_ms", "e2e_per_output_token_ms"):
            low, high = _num(by_conc[0], col), _num(by_conc[-1], col)
            if low is not None and high is not None:
                assert high > low, f"{set_id}: {col} {low} at c={by_conc[0]['max_concurrency']} " \
                                   f"vs {high} at c={by_conc[-1]['max_concurrency']}"


def test_every_set_is_documented_with_its_source():
    readme = (ROOT / "README.md").read_text()
    for set_id, rows in _sets().items():
        assert f"`{set_id}`" in readme, f"{set_id} missing from validation/README.md"
        source = ROOT / "raw" / set_id / "SOURCE.md"
        assert source.is_file(), f"missing {source.relative_to(ROOT.parent)}"
        text = source.read_text()
        assert rows[0]["source_commit"].split()[0] in text, f"{source}: commit not recorded"
        assert rows[0]["licence"].split()[0] in text, f"{source}: licence not recorded"


def test_length_summaries_are_consistent():
    files = sorted((ROOT / "lengths").glob("*.csv"))
    assert files, "no length distributions shipped"
    for path in files:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for field in {r["field"] for r in rows}:
            stats = {r["key"]: float(r["value"]) for r in rows
                     if r["field"] == field and r["kind"] == "stat"}
            quantiles = [float(r["value"]) for r in rows
                         if r["field"] == field and r["kind"] == "quantile"]
            hist = [int(r["value"]) for r in rows
                    if r["field"] == field and r["kind"] == "histogram"]
            assert sum(hist) == stats["count"], f"{path.name} {field}: histogram != count"
            assert quantiles == sorted(quantiles), f"{path.name} {field}: quantiles not sorted"
            assert stats["min"] <= quantiles[0] and quantiles[-1] <= stats["max"], path.name
            assert stats["min"] <= stats["mean"] <= stats["max"], path.name

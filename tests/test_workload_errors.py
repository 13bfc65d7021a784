"""Bad workload input: every problem is a one-line ConfigError naming file and field."""

from __future__ import annotations

import copy
import string

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.core.errors import ConfigError
from sim.core.schema import known_fields
from sim.workload.streams import StreamConfig, parse_workload

FILE = "exp.yaml"
FIXED = {"kind": "fixed", "value": 10}


def stream(**overrides):
    base = {"name": "chat", "arrivals": {"kind": "poisson", "rate_per_s": 1.0},
            "input_tokens": FIXED, "output_tokens": FIXED}
    return {**base, **overrides}


def error_of(value, **kwargs) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_workload(value, file=kwargs.pop("file", FILE), **kwargs)
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def poisson(**fields):
    return {"kind": "poisson", "rate_per_s": 1.0, **fields}


@pytest.mark.parametrize(("value", "field", "words"), [
    ({"streams": [stream(arrivals={"kind": "poisson", "rate_per_sec": 2})]},
     "workload.streams[0].arrivals.rate_per_sec", "did you mean 'rate_per_s'"),
    ({"streams": [stream()], "sclae": 2}, "workload.sclae", "did you mean 'scale'"),
    ({"streams": [stream(arrivals=poisson(rate_per_s="fast"))]},
     "workload.streams[0].arrivals.rate_per_s", "number"),
    ({"streams": [stream(arrivals=poisson(rate_per_s=0))]},
     "workload.streams[0].arrivals.rate_per_s", "greater than 0"),
    ({"streams": [stream(arrivals=poisson(rate_per_s=-3))]},
     "workload.streams[0].arrivals.rate_per_s", "greater than 0"),
    ({"streams": [stream(arrivals={"kind": "poison", "rate_per_s": 1})]},
     "workload.streams[0].arrivals", "did you mean 'poisson'"),
    ({"streams": [stream(arrivals={"rate_per_s": 1})]}, "workload.streams[0].arrivals", "kind"),
    ({"streams": [stream(arrivals=poisson(spikes=[{"start": "soon", "duration": "1h",
                                                   "multiplier": 2}]))]},
     "workload.streams[0].arrivals.spikes[0].start", "cannot parse duration 'soon'"),
    ({"streams": [stream(arrivals={"kind": "spiky", "base_rate_per_s": 1, "burst_rate_per_s": 5,
                                   "mean_burst_s": "3 days", "mean_calm_s": "1h"})]},
     "workload.streams[0].arrivals.mean_burst_s", "cannot parse duration"),
    ({"streams": [stream(arrivals={"kind": "diurnal", "mean_rate_per_s": 1,
                                   "peak_to_trough": 0.5})]},
     "workload.streams[0].arrivals.peak_to_trough", "greater than or equal to 1"),
    ({"streams": [stream(arrivals={"kind": "diurnal", "mean_rate_per_s": 1,
                                   "hourly_weights": [1] * 23})]},
     "workload.streams[0].arrivals.hourly_weights", "24"),
    ({"streams": [stream(arrivals={"kind": "batch", "count": 0})]},
     "workload.streams[0].arrivals.count", "greater than 0"),
    ({"streams": [stream(arrivals={"kind": "batch", "count": 10**20})]},
     "workload.streams[0].arrivals.count", "less than or equal to 10000000"),
    # YAML reads yes/no/on/off as booleans, which pydantic would read as 1 and 0
    ({"streams": [stream(arrivals=poisson(rate_per_s=True))]},
     "workload.streams[0].arrivals.rate_per_s", "not true/false"),
    ({"streams": [stream(arrivals={"kind": "diurnal", "mean_rate_per_s": 1,
                                   "hourly_weights": [1] * 23 + [True]})]},
     "workload.streams[0].arrivals.hourly_weights", "not true/false"),
    ({"streams": [stream(output_tokens={"kind": "lognormal", "mean": 5, "sigma": 1e308})]},
     "workload.streams[0].output_tokens.sigma", "less than or equal to 10"),
    ({"streams": [stream(arrivals={"kind": "batch", "count": 5, "at": "25:00"})]},
     "workload.streams[0].arrivals.at", "out of range"),
    ({"streams": [stream(input_tokens=None)]}, "workload.streams[0]", "'input_tokens' is required"),
    ({"streams": [stream(output_tokens={"kind": "lognormal", "mean": 5, "median": 4,
                                        "sigma": 1})]},
     "workload.streams[0].output_tokens.median", "exactly one of 'mean' or 'median'"),
    ({"streams": [stream(output_tokens={"kind": "lognormal", "mean": 5, "sigma": 1,
                                        "min": 10, "max": 5})]},
     "workload.streams[0].output_tokens.min", "must not exceed"),
    ({"streams": [stream(), stream()]}, "workload.streams", "'chat' appears twice"),
    ({"streams": []}, "workload.streams", "at least one stream"),
    ({"name": "x"}, "workload.streams", "required"),
    ({"streams": [stream(slo={"ttft_s": -1})]}, "workload.streams[0].slo.ttft_s", "non-negative"),
    ({"streams": [stream(slo={"ttft_s": 0})]}, "workload.streams[0].slo.ttft_s", "greater than 0"),
    ({"streams": [stream(input_tokens={"kind": "lognormal", "sigma": 1})]},
     "workload.streams[0].input_tokens.median", "exactly one of"),
    ([stream(arrivals=poisson(rate_per_s=0))], "workload[0].arrivals.rate_per_s", "greater than 0"),
    (42, "workload", "expected a list of streams"),
    ("stedy", "workload", "did you mean 'steady'"),
    ({"streams": [{"name": "r", "arrivals": {"kind": "trace", "path": "missing.csv"}}]},
     "workload.streams[0].arrivals.path", "trace file 'missing.csv' not found"),
    ({"streams": [{"name": "r", "arrivals": {"kind": "trace", "path": "x.csv",
                                             "format": "azur"}}]},
     "workload.streams[0].arrivals.format", "azure"),
])
def test_bad_input_is_one_line_naming_file_and_field(value, field, words):
    text = error_of(value)
    assert text.startswith(f"{FILE}: {field}: "), text
    assert words in text


def test_trace_errors_name_the_trace_file_and_the_field(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n1,x,1\n")
    text = error_of([{"name": "r", "arrivals": {"kind": "trace", "path": "bad.csv"}}],
                    base_dir=tmp_path)
    assert text.startswith(f"{bad}: workload[0].arrivals.path: line 3, column "
                           "'num_prefill_tokens'"), text
    ok = tmp_path / "ok.csv"
    ok.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n1,2,1\n")
    text = error_of({"streams": [{"name": "r", "arrivals": {"kind": "trace", "path": str(ok),
                                                             "offset_s": "1h"}}]})
    assert text.startswith(f"{FILE}: workload.streams[0].arrivals.offset_s: "), text
    text = error_of({"streams": [stream(input_tokens={"kind": "empirical", "path": str(ok),
                                                      "column": "prefill"})]})
    assert text.startswith(f"{ok}: workload.streams[0].input_tokens.column: no column"), text


def test_errors_in_a_named_workload_name_that_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"streams": [stream(arrivals=poisson(rate_per_s=-1))]}))
    text = error_of("mine", base_dir=tmp_path)
    assert text.startswith(f"{path}: streams[0].arrivals.rate_per_s: "), text
    path.write_text(yaml.safe_dump([stream(arrivals=poisson(burst=1))]))
    assert error_of("mine", base_dir=tmp_path).startswith(f"{path}: [0].arrivals.burst: ")
    path.write_text("streams: [\n")
    assert error_of("mine", base_dir=tmp_path).startswith(f"{path}: line ")


# -- property-based ----------------------------------------------------------------------

not_a_number = st.text(alphabet=string.ascii_letters + " _-", min_size=1, max_size=10)


@settings(max_examples=60, deadline=None)
@given(rate=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf")),
                      not_a_number, st.lists(st.integers(), max_size=2), st.none()))
def test_any_bad_rate_is_located(rate):
    text = error_of({"streams": [stream(arrivals=poisson(rate_per_s=rate))]})
    assert text.startswith(f"{FILE}: workload.streams[0].arrivals.rate_per_s: "), text


KNOWN = known_fields(StreamConfig)


@settings(max_examples=60, deadline=None)
@given(key=st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True).filter(
    lambda k: k not in KNOWN))
def test_any_unknown_field_is_named(key):
    value = stream()
    value[key] = 1
    text = error_of({"streams": [value]})
    assert text.startswith(f"{FILE}: workload.streams[0].{key}: unknown field '{key}'"), text


@settings(max_examples=60, deadline=None)
@given(where=st.sampled_from(["mean_burst_s", "mean_calm_s"]),
       text=st.text(alphabet="abcxyz?! ", min_size=1, max_size=8).filter(str.strip))
def test_any_unparsable_duration_is_located(where, text):
    arrivals = {"kind": "spiky", "base_rate_per_s": 1, "burst_rate_per_s": 5,
                "mean_burst_s": 60, "mean_calm_s": 600}
    arrivals[where] = text
    message = error_of({"streams": [stream(arrivals=copy.deepcopy(arrivals))]})
    assert message.startswith(f"{FILE}: workload.streams[0].arrivals.{where}: "), message



def test_booleans_still_go_where_booleans_belong():
    """The check refuses booleans for numbers only: a boolean field takes them."""
    wl = parse_workload({"streams": [{"name": "replay", "arrivals": {
        "kind": "trace", "path": "data/AzureLLMInferenceTrace_conv.csv", "loop": False}}]})
    assert wl.streams[0].arrivals.loop is False

"""Hypothesis strategies for hostile input, and the generated cases of a campaign.

Two families, mixed evenly:

* **schema cases** - the corpus's small experiment with one to three fields replaced by
  hostile values (huge, tiny, negative, non-finite and boolean numbers, integers beyond
  any float, odd duration strings, wrong types, path-like names), run with ``capsim run``;
* **mutations** of the shipped files - an experiment (``experiments/``), a workload
  (``workloads/``), the LiteLLM config (``experiments/litellm/``) and a LiteLLM price
  table - with a value replaced, a key dropped or repeated, a line duplicated, the text
  cut short or bytes inserted, run with the command that reads that file.

Every case runs under ``CAPSIM_MAX_REQUESTS`` of 200,000 (set by :func:`generated_cases`),
so a valid but long run is refused with its size estimate instead of taking minutes: the
sizing check is exercised too, and a case stays within the time limit.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.contract import Case
from tests.fuzz.corpus import base_experiment

__all__ = ["hostile_values", "durations", "schema_case", "mutation_case", "case_strategy",
           "generated_cases", "MAX_REQUESTS_ENV"]

REPO = Path(__file__).resolve().parents[2]
MAX_REQUESTS_ENV = {"CAPSIM_MAX_REQUESTS": "200000"}
RUN = ["-j1", "--no-plots", "--out", "out"]

# -- values ----------------------------------------------------------------------------

_EDGE_NUMBERS = [0, -1, 1, 2**31, 2**53 + 1, 10**30, -(10**30), 10**400, 1e-300, 1e-9,
                 1e9, 1e12, 1e20, 1e308, -1e308, 5e-324, float("nan"), float("inf"),
                 float("-inf"), 0.5, 3.0, 1e6]

durations = st.one_of(
    st.sampled_from(["1 000s", "2 2h", "1.5.5h", "1h30", "30m1h", "1h1h", "", " ", "h",
                     "-5m", "1e3s", "0.0.1s", "１h", "1h 30m", "90 s", "1d2h3m4s", "2w",
                     "250ms", "1.5h", "00:30", "nan", "inf", "1e400s", "99999999999999d",
                     "1_000s", "0x10s", "+1h", "1H", "1hh"]),
    st.from_regex(r"\A[0-9. ]{0,6}(ms|s|m|min|h|d|w| ){0,3}[0-9. ]{0,3}\Z", fullmatch=True),
)
"""Duration strings, odd and fine (the grammar must take or refuse each in one line)."""

hostile_values = st.one_of(
    st.sampled_from(_EDGE_NUMBERS),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    durations,
    st.sampled_from(["../../escaped", "/tmp/capsim-fuzz-abs", "a/b", "..", ".", "-", "~",
                     "con", "x" * 300, "\x00", "名前", "yes", "no", "on", "null"]),
    st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.sampled_from(["kind", "low", "high", "mode", "value", "x"]),
                    st.integers(-3, 10**6), max_size=3),
)
"""Anything a careless or hostile hand might put where a value goes."""

# -- schema cases ----------------------------------------------------------------------

_SCHEMA_PATHS = [
    ("horizon",), ("replications",), ("seed",), ("name",), ("output", "timeseries_bin_s"),
    ("workload", "streams", 0, "arrivals", "rate_per_s"),
    ("workload", "streams", 0, "input_tokens", "value"),
    ("workload", "streams", 0, "output_tokens", "value"),
    ("workload", "scale"), ("workload", "streams", 0, "class"),
    ("workload", "streams", 0, "slo", "ttft_s"),
    ("fleet", "replicas"), ("fleet", "profile"),
    ("router", "queue_limit"), ("router", "policy"),
    ("overflow", "interactive", "threshold_s"), ("overflow", "interactive", "to"),
    ("costs", "usd_per_gpu_hour"), ("costs", "engineering_fte"),
    ("costs", "usd_per_fte_year"), ("costs", "infra_usd_per_month"),
    ("api", "gpt-4o", "rpm"), ("api", "gpt-4o", "tpm"), ("api", "gpt-4o", "usd_per_1m_input"),
    ("api", "gpt-4o", "usd_per_1m_output"),
]

_ARRIVALS = st.one_of(
    st.fixed_dictionaries({"kind": st.just("poisson"), "rate_per_s": hostile_values}),
    st.fixed_dictionaries({"kind": st.just("diurnal"), "mean_rate_per_s": hostile_values,
                           "peak_hour": hostile_values, "peak_to_trough": hostile_values}),
    st.fixed_dictionaries({"kind": st.just("spiky"), "base_rate_per_s": hostile_values,
                           "burst_rate_per_s": hostile_values,
                           "mean_burst_s": hostile_values, "mean_calm_s": hostile_values}),
    st.fixed_dictionaries({"kind": st.just("batch"), "count": hostile_values,
                           "at": hostile_values, "every": hostile_values,
                           "spread_s": hostile_values}),
    st.fixed_dictionaries({"kind": st.just("poisson"), "rate_per_s": st.just(0.5),
                           "spikes": st.lists(st.fixed_dictionaries(
                               {"start": hostile_values, "duration": hostile_values,
                                "multiplier": hostile_values}), max_size=3)}),
)
_LENGTHS = st.one_of(
    st.fixed_dictionaries({"kind": st.just("fixed"), "value": hostile_values}),
    st.fixed_dictionaries({"kind": st.just("lognormal"), "mean": hostile_values,
                           "sigma": hostile_values, "max": hostile_values}),
    st.fixed_dictionaries({"kind": st.just("exponential"), "mean": hostile_values}),
)


def _set(data: Any, path: tuple, value: Any) -> None:
    node = data
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
            if not isinstance(node, dict | list):
                return
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return
    last = path[-1]
    fits = isinstance(node, list) and isinstance(last, int) and last < len(node)
    if isinstance(node, dict) or fits:
        node[last] = value


@st.composite
def schema_case(draw: st.DrawFn) -> Case:
    """The small experiment with a few fields made hostile, run with ``capsim run``."""
    exp = base_experiment()
    for _ in range(draw(st.integers(1, 3))):
        choice = draw(st.integers(0, 9))
        stream = exp["workload"]["streams"][0]
        if choice == 0:
            stream["arrivals"] = draw(_ARRIVALS)
        elif choice == 1:
            stream[draw(st.sampled_from(["input_tokens", "output_tokens"]))] = draw(_LENGTHS)
        else:
            _set(exp, draw(st.sampled_from(_SCHEMA_PATHS)), draw(hostile_values))
    text = yaml.safe_dump(exp, sort_keys=False, allow_unicode=True)
    if draw(st.integers(0, 9)) == 0:  # and sometimes a --set instead of the file
        path = ".".join(str(p) for p in draw(st.sampled_from(_SCHEMA_PATHS)))
        raw = draw(st.one_of(durations, st.sampled_from(["1e400", "nan", ".inf", "-1", "[",
                                                         "{a: 1}", "1" + "0" * 400])))
        extra = ["--set", f"{path}={raw}"]
    else:
        extra = []
    return Case(id="schema", argv=["run", "exp.yaml", *RUN, *extra],
                files={"exp.yaml": text}, env=dict(MAX_REQUESTS_ENV))


# -- mutations of the shipped files ----------------------------------------------------

@functools.lru_cache(maxsize=1)
def _shipped() -> list[tuple[str, Path, Any]]:
    """(kind, path, parsed data) of every shipped experiment, workload and LiteLLM config."""
    files = [("experiment", p) for p in sorted((REPO / "experiments").glob("*.yaml"))]
    files += [("workload", p) for p in sorted((REPO / "workloads").glob("*.yaml"))]
    files += [("litellm", p) for p in sorted((REPO / "experiments" / "litellm").glob("*.yaml"))]
    return [(k, p, yaml.safe_load(p.read_text(encoding="utf-8"))) for k, p in files]


@functools.lru_cache(maxsize=1)
def _litellm_files() -> dict[str, str]:
    return {f"litellm/{p.name}": p.read_text(encoding="utf-8")
            for p in (REPO / "experiments" / "litellm").glob("*.yaml")}


_PRICES = {
    "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
               "cache_read_input_token_cost": 1.25e-06, "max_input_tokens": 128000,
               "litellm_provider": "openai", "mode": "chat"},
    "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
                    "litellm_provider": "openai", "mode": "chat"},
}


def _leaves(data: Any, path: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _leaves(v, (*path, k)) or [(*path, k)]
    elif isinstance(data, list):
        for i, v in enumerate(data[:5]):
            out += _leaves(v, (*path, i)) or [(*path, i)]
    return out


def _delete(data: Any, path: tuple) -> None:
    node = data
    for key in path[:-1]:
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    elif isinstance(node, list) and len(node) > 1:
        node.pop(path[-1])


@st.composite
def _mutated_text(draw: st.DrawFn, data: Any, dump: Any) -> str:
    """``data`` with one mutation, as text (``dump``: YAML or JSON)."""
    how = draw(st.integers(0, 6))
    leaves = _leaves(data)
    data = copy.deepcopy(data)
    if how <= 2 and leaves:
        _set(data, draw(st.sampled_from(leaves)), draw(hostile_values))
    elif how == 3 and leaves:
        _delete(data, draw(st.sampled_from(leaves)))
    text = dump(data)
    if how == 4:  # a repeated line: a duplicate key, or a broken structure
        lines = text.splitlines()
        k = draw(st.integers(0, max(0, len(lines) - 1)))
        lines.insert(k, lines[k] if lines else "")
        text = "\n".join(lines) + "\n"
    elif how == 5:  # cut short
        text = text[: draw(st.integers(0, len(text)))]
    elif how == 6:  # bytes inserted
        k = draw(st.integers(0, len(text)))
        text = text[:k] + draw(st.sampled_from(["\t", "{", "]", ": ", "&a ", "*a", "\x00",
                                                "!!python/object:os.system", "- ", "'"])) + text[k:]
    return text


def _yaml_dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _json_dump(data: Any) -> str:
    return json.dumps(data, indent=1)


@st.composite
def mutation_case(draw: st.DrawFn) -> Case:
    """A shipped file (or the price table) mutated once, run with its command."""
    shipped = _shipped()
    pick = draw(st.sampled_from(range(len(shipped) + 1)))
    env = dict(MAX_REQUESTS_ENV)
    if pick == len(shipped):  # the LiteLLM price table
        text = draw(_mutated_text(_PRICES, _json_dump))
        exp = base_experiment()
        exp["api"] = {"gpt-4o": {"base": "gpt-4o", "litellm": "gpt-4o",
                                 "litellm_json": "prices.json"}}
        return Case(id="mutation:prices.json", argv=["run", "exp.yaml", *RUN],
                    files={"prices.json": text, "exp.yaml": _yaml_dump(exp)}, env=env)
    kind, path, data = shipped[pick]
    text = draw(_mutated_text(data, _yaml_dump))
    name = f"mutation:{path.parent.name}/{path.name}"
    if kind == "workload":
        return Case(id=name, argv=["workload", "show", "wl.yaml", "--horizon", "1d"],
                    files={"wl.yaml": text}, env=env)
    if kind == "litellm":
        return Case(id=name, argv=["run", "litellm-hybrid", "--router-config", "r.yaml",
                                   "-n", "1", "--set", "horizon=2h", *RUN],
                    files={"r.yaml": text}, env=env)
    files: dict[str, str | bytes] = {"exp.yaml": text, **_litellm_files()}
    return Case(id=name, argv=["run", "exp.yaml", "-n", "1", "--set", "horizon=2h", *RUN],
                files=files, env=env)


case_strategy = st.one_of(schema_case(), mutation_case())
"""One generated case: a schema case or a mutation, evenly."""


def generated_cases(n: int, *, seed_value: int = 0) -> list[Case]:
    """``n`` cases drawn from :data:`case_strategy` (the same ``n`` cases for one seed)."""
    cases: list[Case] = []

    @seed(seed_value)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case_strategy)
    def collect(case: Case) -> None:
        cases.append(case)

    collect()
    for i, case in enumerate(cases):
        case.id = f"{case.id}#{i}"
    return cases[:n]

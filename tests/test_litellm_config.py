"""Reading LiteLLM configs (values, warnings, one-line errors) and `capsim run` / `sweep`
with a router config end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from sim.cli import main
from sim.core.errors import ConfigError
from sim.experiment.config import load_experiment
from sim.litellm.config import load_litellm_config
from sim.study.sweep import read_runs
from tests.shared_data import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "experiments" / "litellm" / "spiky-hybrid.yaml"
EXPERIMENT = ROOT / "experiments" / "litellm-hybrid.yaml"
LITELLM_JSON = SHARED_DATA / "prices" / "litellm" / "model_prices_and_context_window.json"


def write(tmp_path: Path, data: dict, name: str = "litellm.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def minimal(**settings) -> dict:
    return {"model_list": [
        {"model_name": "llm", "litellm_params": {"model": "hosted_vllm/llama",
                                                 "api_base": "http://a:8000/v1"}},
        {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini"}}],
        "router_settings": settings}


def test_example_config_values_and_warnings():
    lc = load_litellm_config(EXAMPLE)
    names = [d.name for d in lc.deployments]
    assert names == ["vllm-a", "vllm-b", "openai-mini", "azure-mini"]
    assert [d.self_hosted for d in lc.deployments] == [True, True, False, False]
    assert [d.weight for d in lc.deployments[:2]] == [2, 1]
    s = lc.settings
    assert (s.routing_strategy, s.num_retries, s.allowed_fails, s.cooldown_time) == (
        "simple-shuffle", 2, 3, 30)
    assert (s.timeout, s.stream_timeout) == (120, 10)
    assert s.fallback_map() == {"llama-8b": ["gpt-4o-mini"]}
    keys = [w.split(": ")[1] for w in lc.warnings]
    assert keys == ["model_list[*].litellm_params.api_key",
                    "model_list[*].litellm_params.api_version", "litellm_settings.drop_params",
                    "litellm_settings.success_callback", "general_settings.master_key"]
    assert all("\n" not in w and str(EXAMPLE) in w for w in lc.warnings)


def test_defaults_follow_litellm(tmp_path):
    s = load_litellm_config(write(tmp_path, minimal())).settings
    assert (s.routing_strategy, s.num_retries, s.allowed_fails, s.cooldown_time,
            s.max_fallbacks, s.timeout) == ("simple-shuffle", 0, 3, 5.0, 5, None)


def test_request_timeout_in_litellm_settings_is_the_timeout(tmp_path):
    data = minimal()
    data["litellm_settings"] = {"request_timeout": 30, "num_retries": 3}
    s = load_litellm_config(write(tmp_path, data)).settings
    assert (s.timeout, s.num_retries) == (30, 3)


@pytest.mark.parametrize("change, needle", [
    (lambda d: d["router_settings"].update(routing_strategy="least-bussy"),
     "router_settings.routing_strategy: unknown routing strategy 'least-bussy' "
     "(did you mean 'least-busy'?)"),
    (lambda d: d["model_list"][1]["litellm_params"].pop("model"),
     "model_list[1].litellm_params.model"),
    (lambda d: d["model_list"][0]["litellm_params"].update(rpm="lots"),
     "model_list[0].litellm_params.rpm"),
    (lambda d: d["router_settings"].update(fallbacks=[{"llm": ["gtp"]}]),
     "router_settings.fallbacks[0]: unknown model group 'gtp' (did you mean 'gpt'?)"),
    (lambda d: d["router_settings"].update(num_retries=-1), "router_settings.num_retries"),
    (lambda d: d.update(model_list=[]), "model_list: needs a non-empty list"),
    (lambda d: d["model_list"][0].pop("model_name"), "model_list[0].model_name"),
])
def test_bad_configs_are_one_line_errors(tmp_path, change, needle):
    data = minimal()
    change(data)
    with pytest.raises(ConfigError) as err:
        load_litellm_config(write(tmp_path, data))
    text = str(err.value)
    assert needle in text and "\n" not in text and text.startswith(str(tmp_path))


def test_cli_bad_router_config_exit_2_one_line(tmp_path):
    path = write(tmp_path, minimal(routing_strategy="round-robin"))
    res = CliRunner().invoke(main, ["run", "--router-config", str(path), "--out",
                                    str(tmp_path / "out")])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown routing strategy 'round-robin'" in lines[0]
    assert "Traceback" not in res.output


def test_binding_errors_name_the_experiment_field(tmp_path):
    with pytest.raises(ConfigError, match=r"router\.litellm\.deployments: no deployment "
                                          r"'vllm-c'.*did you mean"):
        load_experiment(EXPERIMENT, ["router.litellm.deployments.vllm-c.replicas=1"])
    with pytest.raises(ConfigError, match=r"router\.litellm\.model: no model group 'llama'"):
        load_experiment(EXPERIMENT, ["router.litellm.model=llama"])
    data = minimal()
    data["model_list"][1]["litellm_params"]["model"] = "anthropic/claude-9"
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"deployment 'anthropic/claude-9'.*maps to no API"):
        load_experiment(EXPERIMENT, [f"router.litellm_config={path}",
                                     "router.litellm.deployments={}",
                                     "router.litellm.model=llm"])


def test_binding_maps_servers_and_apis():
    exp = load_experiment(EXPERIMENT)
    deps = {d.name: d for d in exp.litellm.deployments}
    assert (deps["vllm-a"].kind, deps["vllm-a"].replicas) == ("gpu", 2)
    assert (deps["vllm-b"].kind, deps["vllm-b"].replicas) == ("gpu", 1)
    assert deps["vllm-b"].outages == ((2 * 86400 + 10 * 3600 + 300.0,
                                       2 * 86400 + 10 * 3600 + 300.0 + 1200.0),)
    assert deps["azure-mini"].kind == "api" and deps["azure-mini"].api.rpm == 30000
    assert exp.litellm.stream_groups == ("llama-8b",)
    assert exp.litellm.gpus == 3


def test_capsim_run_with_a_router_config_writes_the_tables_and_plot(tmp_path):
    out = tmp_path / "out"
    outage = "router.litellm.deployments.vllm-b.outages=[{start: 1h, duration: 10m}]"
    res = CliRunner().invoke(main, ["run", str(EXPERIMENT), "--set", "horizon=2h", "--set",
                                    outage, "-n", "2", "-j", "1", "--requests", "--out",
                                    str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in ("runs", "deployments", "timeline", "cooldowns", "requests"):
        assert (out / f"{name}.parquet").is_file()
    assert (out / "incident.png").stat().st_size > 10_000
    runs = pq.read_table(out / "runs.parquet").to_pylist()
    assert len(runs) == 2
    for row in runs:
        assert row["requests_served"] + row["requests_failed"] == row["requests_arrived"]
        shares = sum(row[f"dep.{n}.share"] for n in ("vllm-a", "vllm-b", "openai-mini",
                                                      "azure-mini"))
        assert shares == pytest.approx(1.0)
        assert row["dep.vllm-b.fail_unavailable"] > 0  # its outage began at 1h
        assert row["dep.vllm-b.cooldowns"] > 0
    req = pq.read_table(out / "requests.parquet")
    assert req.num_rows == sum(r["requests_arrived"] for r in runs)
    assert "vllm-a" in res.output and "cooldown" in res.output


def test_router_config_flag_on_the_default_experiment(tmp_path):
    # azure/gpt-4o-mini-eu names no capsim API model: the experiment must say which
    res = CliRunner().invoke(main, ["run", "--router-config", str(EXAMPLE), "--set",
                                    "horizon=2h", "--set",
                                    "router.litellm.deployments.azure-mini.api=gpt-4o-mini",
                                    "-n", "1", "--no-plots", "--json",
                                    "--out", str(tmp_path / "o")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert '"routing_strategy": "simple-shuffle"' in res.output


def test_sweep_compares_strategies_on_the_same_traffic(tmp_path):
    grid = "router.litellm.settings.routing_strategy=simple-shuffle,least-busy,cost-based-routing"
    res = CliRunner().invoke(main, ["sweep", str(EXPERIMENT), "--set", "horizon=3h", "-n",
                                    "1", "--grid", grid, "-j", "1", "--out",
                                    str(tmp_path / "sw")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    runs = read_runs(tmp_path / "sw" / "runs").to_pylist()
    assert sorted(r["routing_strategy"] for r in runs) == sorted(grid.split("=")[1].split(","))
    assert len({r["requests_arrived"] for r in runs}) == 1  # common random numbers
    cost = next(r for r in runs if r["routing_strategy"] == "cost-based-routing")
    shuffle = next(r for r in runs if r["routing_strategy"] == "simple-shuffle")
    # cost-based: both servers cost 0 per token, so the first listed takes everything it
    # is healthy for; simple-shuffle splits 2:1 by weight
    assert cost["dep.vllm-b.attempts"] < 0.05 * cost["dep.vllm-a.attempts"]
    n = shuffle["dep.vllm-a.attempts"] + shuffle["dep.vllm-b.attempts"]
    split = shuffle["dep.vllm-a.attempts"] / n
    assert split == pytest.approx(2 / 3, abs=4 * math.sqrt(2 / 9 / n))  # 4 binomial SE


@pytest.mark.skipif(not LITELLM_JSON.is_file(), reason="shared LiteLLM price file absent")
def test_api_deployments_priced_from_litellm_price_table():
    exp = load_experiment(EXPERIMENT, [f"router.litellm.price_json={LITELLM_JSON}"])
    deps = {d.name: d for d in exp.litellm.deployments}
    # azure-mini is priced by its model_info.base_model, as LiteLLM does
    import json
    table = json.loads(LITELLM_JSON.read_text())
    for name, key in (("openai-mini", "gpt-4o-mini"), ("azure-mini", "azure/gpt-4o-mini")):
        assert deps[name].usd_per_output_token == table[key]["output_cost_per_token"]
        assert deps[name].max_input_tokens == table[key]["max_input_tokens"]
    assert exp.litellm.api_prices["azure-mini"][0] == pytest.approx(
        table["azure/gpt-4o-mini"]["input_cost_per_token"] * 1e6)

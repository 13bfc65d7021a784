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
    # azure/gpt-4o-mini-eu names no capsim API model: the experiment must say which; the
    # default fleet (1 replica) cannot back two servers: fleet.replicas says how many
    res = CliRunner().invoke(main, ["run", "--router-config", str(EXAMPLE), "--set",
                                    "horizon=2h", "--set",
                                    "router.litellm.deployments.azure-mini.api=gpt-4o-mini",
                                    "--set", "fleet.replicas=2",
                                    "-n", "1", "--no-plots", "--json",
                                    "--out", str(tmp_path / "o")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert '"routing_strategy": "simple-shuffle"' in res.output
    # the default experiment's overflow rule does not apply, and says so on one line
    notes = [line for line in res.output.splitlines()
             if line.startswith("warning:") and "does not apply" in line]
    assert len(notes) == 1 and "interactive: wait_exceeds 2 s -> gpt-4o" in notes[0]
    assert "llama-8b -> gpt-4o-mini" in notes[0]


# ------------------------------------------------- what applies of the experiment's fleet


def _default_with_router(*sets: str):
    return load_experiment(None, [f"router.litellm_config={EXAMPLE}",
                                  "router.litellm.deployments.azure-mini.api=gpt-4o-mini",
                                  *sets])


@pytest.mark.parametrize("replicas, split", [(2, (1, 1)), (3, (2, 1)), (7, (4, 3))])
def test_the_fleet_is_split_over_the_servers_not_copied(replicas, split):
    """--router-config on an N-replica fleet runs N replicas in all (it ran N per server)."""
    exp = _default_with_router(f"fleet.replicas={replicas}")
    deps = {d.name: d.replicas for d in exp.litellm.deployments if d.kind == "gpu"}
    assert (deps["vllm-a"], deps["vllm-b"]) == split
    assert exp.litellm.replicas == replicas
    assert exp.litellm.gpus == replicas * exp.profile.gpus_per_replica


def test_servers_with_their_own_replicas_take_them_from_the_fleet():
    exp = _default_with_router("fleet.replicas=5", "router.litellm.deployments.vllm-b.replicas=1")
    deps = {d.name: d.replicas for d in exp.litellm.deployments if d.kind == "gpu"}
    assert deps == {"vllm-a": 4, "vllm-b": 1}


@pytest.mark.parametrize("sets, needle", [
    (["fleet.replicas=1"], r"fleet\.replicas: 1 replica leave 1 for 2 self-hosted .*vllm-a, "
                           r"vllm-b.*at least 1 each"),
    (["fleet.replicas=2", "router.litellm.deployments.vllm-a.replicas=2"],
     r"fleet\.replicas: 2 replicas \(vllm-a 2 taken by router\.litellm\.deployments\) "
     r"leave 0 for 1"),
    (["fleet={profile: llama-8b-1xh100, pools: [{name: a, tier: on_demand, replicas: 2}]}"],
     r"fleet: fleet\.pools does not apply to a LiteLLM router config"),
])
def test_a_fleet_that_cannot_apply_is_refused_in_one_line(sets, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        _default_with_router(*sets)
    assert "\n" not in str(info.value)


def test_explicit_replicas_must_add_up_to_the_fleet():
    with pytest.raises(ConfigError, match=r"fleet\.replicas: 6 replicas, but router\.litellm"
                                          r"\.deployments sizes every self-hosted deployment "
                                          r"\(vllm-a 2, vllm-b 1: 3 in all\); set "
                                          r"fleet\.replicas=3"):
        load_experiment(EXPERIMENT, ["fleet.replicas=6"])


def test_a_fleet_with_no_server_to_apply_to_is_refused(tmp_path):
    data = minimal()
    data["model_list"] = data["model_list"][1:]  # the API deployment only
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"fleet\.replicas: 3 replicas, but no deployment "
                                          r".*is self-hosted.*set fleet\.replicas=0"):
        load_experiment(EXPERIMENT, [f"router.litellm_config={path}",
                                     "router.litellm.deployments={}", "router.litellm.model=gpt"])
    exp = load_experiment(EXPERIMENT, [f"router.litellm_config={path}", "fleet.replicas=0",
                                       "router.litellm.deployments={}",
                                       "router.litellm.model=gpt"])
    assert exp.litellm.gpus == 0


def test_overflow_warning_names_no_fallbacks_when_there_are_none(tmp_path):
    path = write(tmp_path, minimal())
    exp = load_experiment(None, [f"router.litellm_config={path}", "fleet.replicas=1",
                                 "router.litellm.model=llm"])
    notes = [w for w in exp.litellm.warnings if w.startswith("overflow")]
    assert len(notes) == 1 and "no fallbacks" in notes[0]
    quiet = load_experiment(None, [f"router.litellm_config={path}", "fleet.replicas=1",
                                   "router.litellm.model=llm", "overflow={}"])
    assert not [w for w in quiet.litellm.warnings if w.startswith("overflow")]


def test_outages_after_the_horizon_are_named_in_one_line_each():
    exp = load_experiment(EXPERIMENT, ["horizon=1d"])
    late = [w for w in exp.litellm.warnings if "never happens" in w]
    assert len(late) == 2
    assert any(w.startswith("router.litellm.deployments.vllm-b.outages[0] starts at day 2 "
                            "10:05, after the 1-day horizon") for w in late)
    assert any("azure-mini.outages[0]" in w for w in late)
    assert not [w for w in load_experiment(EXPERIMENT).litellm.warnings if "never" in w]


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

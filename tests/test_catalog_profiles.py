"""The GPU and model catalog behind profile derivation (sim.profiles.catalog): parameter
counts and KV sizes against published figures, name resolution, prices, refusals, and the
data shipped in the package."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.profiles.catalog import (
    DATA_DIR,
    DeriveError,
    get_gpu,
    get_model,
    gpu_catalog,
    model_catalog,
    observed_price,
)

# Published parameter counts (model cards / papers), in billions.
PUBLISHED_B = {
    "llama-3.1-8b": 8.03, "llama-3.1-70b": 70.6, "llama-3.1-405b": 405.9,
    "mixtral-8x7b": 46.7, "qwen3-32b": 32.8, "qwen3-30b-a3b": 30.5,
    "deepseek-v3": 671.0,  # without the 14B multi-token-prediction module
    "gpt-oss-120b": 116.8, "gpt-oss-20b": 20.9, "llama-2-70b": 69.0, "qwen2.5-72b": 72.7,
}
ACTIVE_B = {"mixtral-8x7b": 12.9, "qwen3-30b-a3b": 3.3, "deepseek-v3": 37.0, "gpt-oss-120b": 5.1}


@pytest.mark.parametrize("name", sorted(PUBLISHED_B))
def test_parameter_count_matches_the_published_figure(name):
    m = get_model(name)
    assert m.param_count / 1e9 == pytest.approx(PUBLISHED_B[name], rel=0.02)
    if name in ACTIVE_B:  # active parameters: published figures differ in what they count
        assert m.active_param_count / 1e9 == pytest.approx(ACTIVE_B[name], rel=0.15)


@pytest.mark.parametrize(("name", "kv_bytes"), [
    ("llama-3.1-8b", 32 * 8 * 128 * 2 * 2),
    ("llama-3.1-70b", 80 * 8 * 128 * 2 * 2),  # 327,680 B (tests/data/profiles/llama-70b-*)
    ("llama-2-7b", 32 * 32 * 128 * 2 * 2),  # no GQA
    ("deepseek-v3", 61 * (512 + 64) * 2),  # MLA latent, not per head
    ("gpt-oss-120b", 18 * 8 * 64 * 2 * 2),  # full-attention layers only
])
def test_kv_bytes_per_token(name, kv_bytes):
    assert get_model(name).kv_bytes_per_token() == kv_bytes


def test_kv_heads_split_by_tp_and_replicated_when_fewer():
    m = get_model("qwen3-30b-a3b")  # 4 KV heads
    assert m.kv_bytes_per_token(tp=2) == m.kv_bytes_per_token() / 2
    assert m.kv_bytes_per_token(tp=8) == m.kv_bytes_per_token(tp=4)  # one head per rank


def test_weight_bytes_by_dtype():
    m = get_model("llama-3.1-70b")
    bf16, fp8, int4 = (m.weight_bytes(d) for d in ("bf16", "fp8", "int4"))
    assert bf16 == pytest.approx(2 * m.param_count)
    assert 0.5 < fp8 / bf16 < 0.52  # embeddings and LM head stay 16-bit
    assert 0.26 < int4 / bf16 < 0.29
    oss = get_model("gpt-oss-120b")  # MXFP4 experts: ~65 GB, fits one 80 GB GPU
    assert 60e9 < oss.weight_bytes() < 68e9
    assert get_model("deepseek-v3").native_dtype == "fp8"
    assert get_model("qwen3-32b-fp8").native_dtype == "fp8"


@pytest.mark.parametrize(("alias", "key"), [("h100", "h100_sxm"), ("H100-SXM", "h100_sxm"),
                                            ("a100", "a100_sxm"), ("B200", "b200_sxm"),
                                            ("a10g", "a10g"), ("rtx-pro-6000", "rtx_pro_6000")])
def test_gpu_aliases(alias, key):
    assert get_gpu(alias).key == key


def test_unknown_names_are_one_line_errors_with_a_suggestion():
    with pytest.raises(DeriveError, match=r"unknown GPU 'h1000' \(did you mean 'h100'\?\)") as e:
        get_gpu("h1000")
    assert "\n" not in str(e.value)
    with pytest.raises(DeriveError, match="did you mean 'llama-3.1-70b'") as e:
        get_model("llama-3.1-70")
    assert "\n" not in str(e.value)


def test_model_from_a_config_path_and_bad_configs(tmp_path):
    src = DATA_DIR / "models" / "Qwen--Qwen3-32B_config.json"
    d = tmp_path / "Qwen3-32B"
    d.mkdir()
    (d / "config.json").write_text(src.read_text())
    m = get_model(d / "config.json")
    assert m.name == "Qwen3-32B" and m.layers == 64 and m.kv_heads == 8
    assert get_model(d).hidden == 5120  # a folder holding config.json
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DeriveError, match="bad.json: not a readable config.json"):
        get_model(bad)
    cfg = json.loads(src.read_text())
    del cfg["hidden_size"]
    nohidden = tmp_path / "nohidden.json"
    nohidden.write_text(json.dumps(cfg))
    with pytest.raises(DeriveError, match="no hidden_size field"):
        get_model(nohidden)
    cfg["hidden_size"] = -5
    nohidden.write_text(json.dumps(cfg))
    with pytest.raises(DeriveError, match="hidden_size = -5 must be a positive number"):
        get_model(nohidden)
    with pytest.raises(DeriveError, match="does not exist"):
        get_model(tmp_path / "missing.json")


@pytest.mark.parametrize("name", ["llama-4-scout", "gemma-4-26b-a4b"])
def test_unmodelled_architectures_are_refused_clearly(name):
    with pytest.raises(DeriveError, match="is not modelled") as e:
        get_model(name)
    assert "\n" not in str(e.value)


def test_every_catalog_model_loads_or_is_refused_in_one_line():
    loaded = 0
    for name in model_catalog():
        try:
            m = get_model(name)
        except DeriveError as exc:
            assert "\n" not in str(exc)
            continue
        loaded += 1
        assert m.param_count > 1e9 and m.kv_bytes_per_token() > 0
    assert loaded >= 18


def test_observed_prices_follow_the_instance_size():
    a100 = get_gpu("a100_sxm")
    two = observed_price(a100, 2)
    assert two is not None and two.on_demand_usd_per_gpu_hour == 1.79  # Lambda 8x
    assert "Lambda" in two.source and "skypilot" in two.source
    assert observed_price(a100, 1).on_demand_usd_per_gpu_hour == 1.89  # RunPod 1x
    h100 = get_gpu("h100")
    assert [observed_price(h100, n).on_demand_usd_per_gpu_hour for n in (1, 2, 4, 8)] == [
        3.29, 3.19, 3.09, 2.99]
    a10g = observed_price(get_gpu("a10g"), 1)
    assert a10g.on_demand_usd_per_gpu_hour == 1.006 and a10g.spot_usd_per_gpu_hour == 0.397
    assert observed_price(get_gpu("h200"), 8) is None  # not in the price data


def test_gpu_specs_are_consistent():
    for g in gpu_catalog().values():
        assert g.memory_bytes > 16 * 2**30 and g.mem_bw_bytes_per_s > 1e11
        assert g.flops_per_s["bf16"] > 1e13
        assert g.measured or g.efficiency_from in gpu_catalog()
        if g.efficiency_from:
            assert gpu_catalog()[g.efficiency_from].measured
    assert not get_gpu("a100").has_fp8() and get_gpu("h100").has_fp8()


def test_gpu_spec_file(tmp_path):
    f = tmp_path / "mygpu.yaml"
    f.write_text("name: My GPU\nmemory_bytes: 51539607552\nmem_bw_bytes_per_s: 1.0e12\n"
                 "flops_per_s: {bf16: 2.0e14}\ninterconnect: pcie\n"
                 "interconnect_bytes_per_s: 3.2e10\ngpus_per_node: 4\nsm_version: 89\n"
                 "efficiency_from: l40s\n")
    g = get_gpu(f)
    assert g.key == "mygpu" and g.memory_gib == 48
    f.write_text("name: My GPU\n")
    with pytest.raises(DeriveError, match="mygpu.yaml: not a GPU spec"):
        get_gpu(f)


def test_shipped_data_is_small_and_attributed():
    files = [p for p in DATA_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2_000_000
    readme = (DATA_DIR / "README.md").read_text()
    assert "095f58a51c4ca8e61b66ec108d86f223f8d559ce" in readme and "Apache-2.0" in readme
    assert (DATA_DIR / "LICENSE-APACHE-2.0.txt").is_file()
    for name in ("gemm.parquet", "moe.parquet", "attention.csv", "allreduce.csv", "gpus.yaml",
                 "prices.csv"):
        assert (DATA_DIR / name).is_file(), name
    assert Path(DATA_DIR).parent.name == "profiles"

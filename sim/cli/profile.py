"""Command line for GPU profiles: derive one, list the catalog, show one.

``profile_group`` is a click group named ``profile``:

* ``capsim profile derive --model M --gpu G --tp N [...] [-o FILE]`` -- derive a step-level
  replica profile (:func:`sim.profiles.derive.derive`) and write it as YAML (stdout without
  ``-o``), usable as ``fleet.profile: FILE``.
* ``capsim profile list`` -- catalog GPUs, catalog models and shipped profiles, one line each.
* ``capsim profile show NAME|FILE [--context N] [-o/--plot PNG]`` -- one profile: where its
  numbers come from, its step-time terms and KV capacity, and decode throughput and
  inter-token latency against batch size (a table; a PNG with ``--plot``).
* ``capsim profile fit ...`` -- :mod:`sim.cli.profile_fit` (issue #21), in the same group.

Bad input (unknown model or GPU, a model that does not fit, a missing file) is one line on
stderr and exit status 2. The library is imported inside each command (startup speed, as
for the other command modules).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sim.cli.common import handle_errors
from sim.cli.profile_fit import fit_command

__all__ = ["profile_group"]

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@click.group("profile")
def profile_group() -> None:
    """Derive, list, inspect and fit GPU replica profiles."""


profile_group.add_command(fit_command)


@profile_group.command("derive")
@click.option("--model", required=True, help="Catalog model name or a config.json path.")
@click.option("--gpu", required=True, help="Catalog GPU (h100_sxm, a100, l40s, ...) or a "
              "GPU spec YAML.")
@click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tensor-parallel GPUs per replica.")
@click.option("--dtype", type=click.Choice(["bf16", "fp8", "int4"]), default=None,
              help="GEMM weight dtype (default: the checkpoint's).")
@click.option("--kv-dtype", type=click.Choice(["auto", "bf16", "fp8"]), default="auto",
              show_default=True, help="KV-cache dtype (auto = bf16).")
@click.option("--max-num-seqs", type=click.IntRange(min=1), default=None,
              help="vLLM max_num_seqs (default: vLLM's for the GPU).")
@click.option("--max-num-batched-tokens", type=click.IntRange(min=1), default=None,
              help="vLLM's token budget per step (default: vLLM's for the GPU).")
@click.option("--max-model-len", type=click.IntRange(min=1), default=None,
              help="Longest request, input + output (default: the model's context, capped "
                   "by the KV cache).")
@click.option("--gpu-memory-utilization", type=float, default=0.9, show_default=True,
              help="Share of GPU memory vLLM may use (weights, activations, KV).")
@click.option("--engine-version", default="vllm-0.10", show_default=True,
              help="Engine whose defaults and CPU overheads to assume.")
@click.option("--usd-per-gpu-hour", type=float, default=None,
              help="Price per GPU-hour (required where the shipped price data has none).")
@click.option("--name", default=None, help="Profile name (default: model-dtype-TPxGPU).")
@click.option("--async-scheduling", is_flag=True, default=False,
              help="The server runs vLLM --async-scheduling: CPU per step hidden behind the "
                   "GPU step, a request ready during a step starts one step later.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the profile YAML here (default: stdout).")
@handle_errors
def derive_command(model: str, gpu: str, tp: int, dtype: str | None, kv_dtype: str,
                   max_num_seqs: int | None, max_num_batched_tokens: int | None,
                   max_model_len: int | None, gpu_memory_utilization: float,
                   engine_version: str, usd_per_gpu_hour: float | None, name: str | None,
                   async_scheduling: bool, output: str | None) -> None:
    """Derive a profile for MODEL on TP x GPU from measured kernels and spec sheets."""
    import yaml

    from sim.profiles.catalog import DeriveError
    from sim.profiles.derive import derive

    try:
        profile = derive(model, gpu, tp, dtype=dtype, kv_dtype=kv_dtype,
                         max_num_seqs=max_num_seqs,
                         max_num_batched_tokens=max_num_batched_tokens,
                         max_model_len=max_model_len,
                         gpu_memory_utilization=gpu_memory_utilization,
                         engine_version=engine_version, usd_per_gpu_hour=usd_per_gpu_hour,
                         name=name, async_scheduling=async_scheduling)
    except DeriveError as exc:
        _fail(str(exc))
    args = [f"--model {model}", f"--gpu {gpu}", f"--tp {tp}"]
    for flag, value in (("--dtype", dtype), ("--kv-dtype", None if kv_dtype == "auto"
                                              else kv_dtype),
                        ("--max-num-seqs", max_num_seqs),
                        ("--max-num-batched-tokens", max_num_batched_tokens),
                        ("--max-model-len", max_model_len),
                        ("--gpu-memory-utilization", None if gpu_memory_utilization == 0.9
                         else gpu_memory_utilization),
                        ("--engine-version", None if engine_version == "vllm-0.10"
                         else engine_version),
                        ("--usd-per-gpu-hour", usd_per_gpu_hour), ("--name", name)):
        if value is not None:
            args.append(f"{flag} {value}")
    if async_scheduling:
        args.append("--async-scheduling")
    text = (f"# GENERATED by capsim profile derive {' '.join(args)}\n"
            "# Step time from measured vLLM kernels / spec sheets: see step_time.source.\n"
            + yaml.safe_dump(profile, sort_keys=False, width=100))
    if output:
        Path(output).write_text(text)
        click.echo(f"wrote {output}: {profile['model']} on {profile['gpus_per_replica']}x "
                   f"{profile['gpu']}, KV {profile['kv_capacity_tokens']:,} tokens", err=True)
    else:
        click.echo(text, nl=False)


@profile_group.command("list")
@handle_errors
def list_command() -> None:
    """The GPU and model catalog and the shipped profiles, one line each."""
    from sim.profiles.catalog import (
        DeriveError,
        get_model,
        gpu_catalog,
        model_catalog,
        observed_price,
    )
    from sim.profiles.schema import builtin_profiles

    click.echo("GPUs (per GPU; dense tensor FLOP/s; price = observed on-demand $/GPU-h):")
    for key, g in gpu_catalog().items():
        fp8 = g.flops_per_s.get("fp8")
        price = observed_price(g, 1)
        usd = f"${price.on_demand_usd_per_gpu_hour:.2f}" if price else "n/a"
        src = "measured kernels" if g.measured else f"spec sheet x {g.efficiency_from} eff."
        click.echo(f"  {key:<13} {g.memory_gib:6.1f} GiB  {g.mem_bw_bytes_per_s / 1e12:5.2f} TB/s"
                   f"  BF16 {g.flops_per_s['bf16'] / 1e12:6.0f} TF"
                   f"  FP8 {f'{fp8 / 1e12:6.0f}' if fp8 else '     -'} TF"
                   f"  {usd:>6}"
                   f"  {src}")
    click.echo("Models:")
    for name in model_catalog():
        try:
            m = get_model(name)
        except DeriveError as exc:
            click.echo(f"  {name:<20} not modelled: {str(exc).split(': ', 1)[-1]}")
            continue
        click.echo(f"  {name:<20} {m.param_count / 1e9:6.1f}B ({m.active_param_count / 1e9:5.1f}B "
                   f"active)  {m.layers:3d} layers  KV {m.kv_bytes_per_token() / 1024:6.1f} "
                   f"KiB/token (bf16)  {m.native_dtype}"
                   + (f" + {m.expert_dtype} experts" if m.expert_dtype else ""))
    click.echo("Shipped profiles:")
    for name in builtin_profiles():
        click.echo(f"  {name}")


@profile_group.command("show")
@click.argument("spec")
@click.option("--context", type=click.IntRange(min=0), default=1024, show_default=True,
              help="Context tokens per decoding request for the table.")
@click.option("-o", "--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of throughput and latency against batch size.")
@handle_errors
def show_command(spec: str, context: int, plot: str | None) -> None:
    """Where one profile's numbers come from, its step time and KV capacity."""
    from sim.core.loader import read_yaml, resolve_named

    path = resolve_named("gpu_profiles", spec, base_dir=Path.cwd(), field="profile")
    data: dict[str, Any] = read_yaml(path)
    _show(data, path, context, plot)


def _fail(message: str) -> None:
    click.echo(f"capsim: error: {message}", err=True)
    raise click.exceptions.Exit(2)


def _show(data: dict[str, Any], path: Path, context: int, plot: str | None) -> None:
    click.echo(f"{data.get('name', path.stem)}: {data.get('model')} on "
               f"{data.get('gpus_per_replica')}x {data.get('gpu')} ({path})")
    click.echo(f"  max_batch {data.get('max_batch')}, KV capacity "
               f"{data.get('kv_capacity_tokens', 0):,} tokens")
    prices = data.get("prices") or {}
    click.echo(f"  price ${prices.get('on_demand_usd_per_gpu_hour')}/GPU-h "
               f"({prices.get('source', 'no source')})")
    click.echo(f"  source: {data.get('source', '')}")
    st = data.get("step_time")
    rows = []
    if st:
        sch = data.get("scheduler") or {}
        click.echo(f"  scheduler: {sch}")
        click.echo(f"  step time = {st['per_step_s'] * 1e3:.2f} ms + linear(N) + "
                   f"{st['per_seq_s'] * 1e6:.1f} us x seqs + "
                   f"{st['decode_attention_s_per_token'] * 1e9:.2f} ns x context tokens + "
                   f"{st['prefill_attention_s_per_token2'] * 1e12:.3f} ps x prefill pairs")
        click.echo("  linear(N): " + ", ".join(
            f"{n}: {t * 1e3:.2f} ms" for n, t in zip(st["tokens"], st["linear_s"], strict=True)))
        click.echo(f"  terms from: {st.get('source', '')}")
        for b in BATCHES:
            if b > int(data.get("max_batch", b)):
                break
            if b * (context + 1) > int(data.get("kv_capacity_tokens", 0)):
                break
            t = (st["per_step_s"] + _linear(st, b) + st["per_seq_s"] * b
                 + st["decode_attention_s_per_token"] * b * (context + 1))
            rows.append((b, b / t, t))
        chunk = int((data.get("scheduler") or {}).get("max_num_batched_tokens", 2048))
        t_pre = (st["per_step_s"] + _linear(st, chunk) + st["per_seq_s"]
                 + st["prefill_attention_s_per_token2"] * chunk * (chunk + 1) / 2)
        click.echo(f"  prefill: one {chunk}-token chunk in {t_pre * 1e3:.1f} ms = "
                   f"{chunk / t_pre:,.0f} tokens/s")
    elif data.get("curve"):
        curve = data["curve"]
        for b, v in zip(curve["batch"], curve["decode_tokens_per_s"], strict=True):
            rows.append((b, v, b / v))
        click.echo(f"  legacy profile: prefill {data.get('prefill_tokens_per_s')} tokens/s")
    click.echo(f"  {'batch':>5}  {'decode tok/s':>12}  {'ms/token':>9}"
               + (f"   (context {context} tokens)" if st else ""))
    for b, rate, t in rows:
        click.echo(f"  {b:5d}  {rate:12,.0f}  {t * 1e3:9.2f}")
    if plot and rows:
        _plot(rows, plot, str(data.get("name", path.stem)))
        click.echo(f"wrote {plot}", err=True)


def _linear(st: dict[str, Any], n: float) -> float:
    t, y = st["tokens"], st["linear_s"]
    if n <= t[0]:
        return float(y[0])
    for i in range(1, len(t)):
        if n <= t[i]:
            return float(y[i - 1] + (y[i] - y[i - 1]) * (n - t[i - 1]) / (t[i] - t[i - 1]))
    if len(t) == 1:
        return float(y[0])
    return float(y[-1] + (y[-1] - y[-2]) / (t[-1] - t[-2]) * (n - t[-1]))


def _plot(rows: list[tuple[int, float, float]], out: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = [r[0] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(b, [r[1] for r in rows], "o-", color="tab:blue")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("running requests (batch size)")
    ax.set_ylabel("decode throughput (tokens/s)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(b, [r[2] * 1e3 for r in rows], "s--", color="tab:red")
    ax2.set_ylabel("inter-token latency (ms)", color="tab:red")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)

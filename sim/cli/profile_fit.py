"""``capsim profile fit``: calibrate a replica profile from the user's own benchmark files.

``capsim profile fit BENCH... [--from PROFILE | --model M --gpu G --tp N] -o FILE`` reads
``vllm bench serve`` / ``benchmark_serving.py`` JSON, GuideLLM reports and llmperf
summaries (:mod:`sim.profiles.benchfiles`), replays every load point on one step-level
replica (:mod:`sim.serving.bench_replay`) and fits the step-time terms of the start
profile (:mod:`sim.profiles.fit`); it prints the
residuals per file and metric and writes the fitted step-level profile (YAML, the agreed
format of notes/steptime-spec.md) with the fit's provenance in a header and in
``step_time.source``, and the fitted terms' spreads and correlation as
``step_time.uncertainty`` (replacing the start's: a Monte Carlo run then draws the step
time within what the benchmarks allow, :mod:`sim.profiles.steptime`). The start is a
step-level profile file, a shipped profile name
(a legacy curve profile is converted first), or a profile derived for
``--model/--gpu/--tp`` (:func:`sim.profiles.derive.derive`). Files that cannot identify
the coefficients are refused in one line saying which measurement is missing; bad input
is one line and exit status 2 (:func:`sim.cli.common.handle_errors`). The library is
imported inside the command, so ``capsim --help`` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from sim.cli.common import handle_errors

__all__ = ["fit_command"]


@click.command("fit")
@click.argument("bench", nargs=-1, required=True)
@click.option("--from", "start_from", default=None, metavar="PROFILE",
              help="Start profile: a step-level profile file or a shipped profile name.")
@click.option("--model", default=None, help="Derive the start profile for this model ...")
@click.option("--gpu", default=None, help="... on this GPU ...")
@click.option("--tp", type=click.IntRange(min=1), default=None, help="... with this "
              "tensor-parallel degree.")
@click.option("--usd-per-gpu-hour", type=click.FloatRange(min=0, min_open=True), default=None,
              help="GPU price for a derived start where the catalog has none (the fit does "
                   "not use it).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Write the fitted profile (YAML) here.")
@click.option("--fit-params", default=None, metavar="A,B,...",
              help="Terms to fit (default: linear_scale, per_step_s, "
                   "decode_attention_s_per_token, pre_s, post_s; also per_seq_s, "
                   "prefill_attention_s_per_token2); the others keep the start value.")
@click.option("--max-requests", type=click.IntRange(min=10), default=None,
              help="Replay at most this many requests of each load point (default: all; "
                   "cutting a closed-loop run biases its TTFT up, and the fit says so).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the replayed arrivals where a file saved no send times.")
@handle_errors
def fit_command(bench: tuple[str, ...], start_from: str | None, model: str | None,
                gpu: str | None, tp: int | None, usd_per_gpu_hour: float | None, output: str,
                fit_params: str | None,
                max_requests: int | None, seed: int) -> None:
    """Fit the step-time terms of a profile to benchmark files BENCH... of one server."""
    from sim.core.errors import ConfigError
    from sim.profiles.benchfiles import read_benches
    from sim.profiles.fit import FIT_PARAMETERS, fit_profile
    from sim.serving.bench_replay import replay

    derive = model is not None or gpu is not None or tp is not None
    if start_from is not None and derive:
        raise ConfigError("give either --from or --model/--gpu/--tp, not both",
                          field="--from")
    if start_from is None and not derive:
        raise ConfigError("missing: a start profile (--from PROFILE, or --model, --gpu and "
                          "--tp to derive one)", field="--from")
    params = FIT_PARAMETERS
    if fit_params is not None:
        params = tuple(p.strip() for p in fit_params.split(",") if p.strip())
        if not params:
            raise ConfigError("empty list", field="--fit-params")
    records = read_benches(bench)
    doc, terms, origin = (_start_from(start_from) if start_from is not None
                          else _derived(model, gpu, tp, usd_per_gpu_hour))
    result = fit_profile(records, terms, replay=replay, parameters=params,
                         max_requests=max_requests, seed=seed)
    click.echo(f"{len(records)} load points from {len(bench)} file(s); start: {origin}")
    click.echo(result.table())
    for name, value in result.fitted.items():
        click.echo(f"  {name:<30} {value:.6g}  ({_spread_text(value, result.rel_std.get(name))}"
                   f", was {terms.parameter(name, terms):.6g})")
    for name, why in result.held.items():
        click.echo(f"  {name:<30} held: {why}")
    for note in result.notes:
        click.echo(f"  note: {note}")
    if not result.success:
        click.echo(f"  optimizer: {result.message}")
    _write(Path(output), doc, result, records, origin)
    click.echo(f"wrote {output}")


def _start_from(spec: str) -> tuple[dict[str, Any], Any, str]:
    """(profile mapping, StepTerms, description) of ``--from``."""
    from sim.core.errors import ConfigError
    from sim.core.loader import read_yaml, resolve_named
    from sim.profiles.fit import start_terms

    path = Path(spec)
    if not path.is_file():
        path = resolve_named("gpu_profiles", spec, field="--from")
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError("expected a mapping (a profile)", file=str(path))
    if "step_time" in doc:
        return doc, start_terms(doc, file=str(path)), f"{path} (step-level)"
    terms = start_terms(str(path), file=str(path))
    out = {k: v for k, v in doc.items() if k not in ("curve", "prefill_tokens_per_s")}
    out["scheduler"] = {"max_num_batched_tokens": terms.max_num_batched_tokens,
                        "block_size": 16}
    return out, terms, f"{path} (legacy curve profile, converted)"


def _derived(model: str | None, gpu: str | None, tp: int | None, usd: float | None
             ) -> tuple[dict[str, Any], Any, str]:
    """(profile mapping, StepTerms, description) derived for ``--model/--gpu/--tp``."""
    from sim.core.errors import ConfigError
    from sim.profiles.catalog import DeriveError
    from sim.profiles.derive import derive
    from sim.profiles.fit import StepTerms

    missing = [n for n, v in (("--model", model), ("--gpu", gpu), ("--tp", tp)) if v is None]
    if missing:
        raise ConfigError("missing: deriving a start profile needs --model, --gpu and --tp",
                          field=missing[0])
    try:
        doc = derive(str(model), str(gpu), int(tp or 1), usd_per_gpu_hour=usd)
    except DeriveError as exc:
        raise ConfigError(str(exc), field="--model") from None
    origin = f"derived for {model} on {tp} x {gpu}"
    return doc, StepTerms.from_profile(doc, file=origin), origin


def _write(path: Path, doc: dict[str, Any], result: Any, records: Any, origin: str) -> None:
    import yaml

    from sim.core.errors import ConfigError

    out = result.terms.update_profile(doc)
    files = sorted({r.file for r in records})
    fitted = ", ".join(f"{k}={v:.4g}" for k, v in result.fitted.items())
    out["step_time"]["source"] = (f"capsim profile fit of {origin} to {len(records)} load "
                                  f"points ({', '.join(files)}): {fitted}")
    out["step_time"]["uncertainty"] = result.uncertainty()
    header = ["# Fitted by `capsim profile fit`.", f"# Start: {origin}"]
    header += [f"# Bench: {f}" for f in files]
    header += [f"# {line}" for line in result.table().splitlines()]
    header += [f"# {k}: {_spread_text(result.fitted.get(k, math.nan), v)} (1 sd, relative; "
               "step_time.uncertainty)" for k, v in result.rel_std.items()]
    header += [f"# {k} held: {why}" for k, why in result.held.items()]
    text = "\n".join(header) + "\n" + yaml.safe_dump(out, sort_keys=False,
                                                     default_flow_style=None, width=100)
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise ConfigError(f"cannot write: {exc.strerror}", file=str(path)) from None


def _spread_text(value: float, spread: float | None) -> str:
    """A fitted term's 1-sd spread, relative; a term driven to 0 or whose spread is over
    100% is reported as not determined (a percentage of ~0 means nothing)."""
    if spread is None or not math.isfinite(spread) or spread > 1.0 or value == 0.0:
        return ("spread undetermined: these measurements do not identify it; "
                "keep it at its start value by leaving it out of --fit-params")
    return f"+-{spread:.0%}"

"""``capsim list [experiments|workloads|profiles|apis|gpus|models]``: what exists, one line
each.

Experiments, workloads and GPU profiles are the shipped YAML files (their names are what
``capsim run NAME``, ``workload: NAME`` and ``fleet.profile: NAME`` accept); the
description is the first sentence of the file's header comment (or its ``description``).
API models come from ``sim/data/api_models.yaml`` with their list prices; GPUs and models
from the derivation catalog (:mod:`sim.profiles.catalog`). ``--format`` prints the same
as a table, JSON, CSV or Markdown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from sim.cli.common import handle_errors

__all__ = ["list_command", "KINDS"]

KINDS = ("experiments", "workloads", "profiles", "apis", "gpus", "models")


def _first_sentence(path: Path) -> str:
    """The first sentence of a YAML file's leading comment, on one line (a paragraph
    saying the file is GENERATED is skipped)."""
    paragraphs: list[list[str]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            if stripped:
                break
            continue
        text = stripped.lstrip("#").strip()
        if text:
            paragraphs[-1].append(text)
        elif paragraphs[-1]:
            paragraphs.append([])
    for para in paragraphs:
        text = " ".join(para)
        if not text or text.startswith("GENERATED"):
            continue
        match = re.match(r"(.+?(?<!e\.g)(?<!i\.e)\.)(\s|$)", text)
        return match.group(1) if match else text
    return ""


def _describe_yaml(path: Path) -> str:
    from sim.core.loader import read_yaml  # (startup speed: see sim.cli)

    data = read_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        return data["description"]
    if isinstance(data, dict) and isinstance(data.get("model"), str) and data.get("gpu"):
        return f"{data['model']} on {data.get('gpus_per_replica', '?')}x {data['gpu']}"
    first = _first_sentence(path)
    name = path.stem
    for prefix in (f"{name}:", f"{name} -"):
        first = first.removeprefix(prefix).strip()
    return first[:1].upper() + first[1:] if first else "-"


def _files(kind: str) -> list[dict[str, Any]]:
    from sim.core.loader import builtin_dir, builtin_names

    folder = builtin_dir(kind)
    return [{"name": name, "description": _describe_yaml(folder / f"{name}.yaml")}
            for name in builtin_names(kind)]


def _apis() -> list[dict[str, Any]]:
    from sim.core.loader import read_yaml
    from sim.serving.api import BUILTIN_API_MODELS_FILE

    data = read_yaml(BUILTIN_API_MODELS_FILE) or {}
    rows = []
    for name, spec in data.items():
        if not isinstance(spec, dict):
            continue
        rows.append({"name": name, "input": spec.get("usd_per_1m_input"),
                     "output": spec.get("usd_per_1m_output"), "rpm": spec.get("rpm"),
                     "tpm": spec.get("tpm")})
    return rows


def _gpus() -> list[dict[str, Any]]:
    from sim.profiles.catalog import gpu_catalog

    rows = []
    for key, g in gpu_catalog().items():
        rows.append({"name": key, "description": g.name, "memory_gib": g.memory_gib,
                     "tflops_bf16": g.flops_per_s.get("bf16", float("nan")) / 1e12,
                     "measured": "measured kernels" if g.measured else "derived"})
    return rows


def _models() -> list[dict[str, Any]]:
    from sim.profiles.catalog import DeriveError, get_model, model_catalog

    rows = []
    for name in model_catalog():
        try:
            m = get_model(name)
        except DeriveError as exc:
            rows.append({"name": name, "params_b": None, "active_b": None,
                         "description": "not derivable: " + str(exc).split(": ", 1)[-1]})
            continue
        kind = f"MoE, {m.experts} experts" if m.is_moe else "dense"
        rows.append({"name": name, "params_b": m.param_count / 1e9,
                     "active_b": m.active_param_count / 1e9,
                     "description": f"{m.model_type}, {m.layers} layers, {kind}, "
                                    f"{m.native_dtype}"})
    return rows


def build_list_report(kind: str) -> Any:
    """The listing of ``kind`` as a :class:`~sim.report.document.Report`."""
    from sim.report.document import Column, Report, Table

    report = Report("list", f"capsim list {kind}")
    if kind in ("experiments", "workloads", "profiles"):
        folder = "gpu_profiles" if kind == "profiles" else kind
        use = {"experiments": "capsim run NAME", "workloads": "workload: NAME",
               "profiles": "fleet: {profile: NAME}"}[kind]
        table = Table(kind, f"Shipped {kind} (use as {use})",
                      [Column("name", "Name"), Column("description", "Description")],
                      _files(folder))
    elif kind == "apis":
        table = Table(kind, "Built-in API models (list prices; rate limits of a new account)",
                      [Column("name", "Name"),
                       Column("input", "Input", "usd", "$/1M tokens"),
                       Column("output", "Output", "usd", "$/1M tokens"),
                       Column("rpm", "Requests", "count", "/minute"),
                       Column("tpm", "Tokens", "count", "/minute")], _apis())
    elif kind == "gpus":
        table = Table(kind, "GPUs of the derivation catalog (capsim profile derive --gpu NAME)",
                      [Column("name", "Name"), Column("description", "GPU"),
                       Column("memory_gib", "Memory", "number", "GiB"),
                       Column("tflops_bf16", "BF16 dense", "number", "TFLOP/s"),
                       Column("measured", "Step times")], _gpus())
    else:
        table = Table(kind, "Models of the derivation catalog (capsim profile derive "
                      "--model NAME)",
                      [Column("name", "Name"), Column("params_b", "Parameters", "number", "B"),
                       Column("active_b", "Active", "number", "B"),
                       Column("description", "Architecture")], _models())
    report.table(table)
    report.data = {"kind": kind, "items": table.rows}
    return report


@click.command("list")
@click.argument("kind", type=click.Choice(KINDS), default="experiments", required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]),
              default="table", show_default=True, help="Output format.")
@handle_errors
def list_command(kind: str, fmt: str) -> None:
    """List what exists: shipped experiments (the default), workloads, GPU profiles, API
    models, and the GPUs and models that profiles can be derived for.

    \b
    Examples:
      capsim list
      capsim list profiles --format markdown
    """
    from rich.console import Console

    from sim.report.document import render

    render(build_list_report(kind), fmt, Console())

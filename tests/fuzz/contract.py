"""One case of the contract and the checks of its outcome.

A :class:`Case` is a command line, the files it needs and what it must do (``error``:
exit 2 with one ``capsim: error:`` line containing ``says``; ``ok``: exit 0; ``any``:
either). :func:`problems` lists every way an :class:`Outcome` breaks the contract; an
empty list is a pass.
"""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Case", "Outcome", "problems", "result_problems", "TIME_LIMIT_S", "AS_LIMIT_BYTES",
           "materialize"]

TIME_LIMIT_S = 20.0
"""A case over this is a hang (the issue's bound)."""
AS_LIMIT_BYTES = 2 * 1024**3
"""The worker's address-space limit (RLIMIT_AS): 2 GiB, the issue's bound."""
MAX_ERROR_LINES = 3


@dataclass
class Case:
    """A command line with its files and what it must do."""

    id: str
    argv: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    expect: str = "any"  # error | ok | any
    says: list[str] = field(default_factory=list)
    never: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    why: str = ""

    def to_json(self) -> dict[str, Any]:
        files = {k: (v.decode("latin-1") if isinstance(v, bytes) else v, isinstance(v, bytes))
                 for k, v in self.files.items()}
        return {"id": self.id, "argv": self.argv, "files": files, "symlinks": self.symlinks,
                "env": self.env}


@dataclass
class Outcome:
    """What one case did: exit code, output, an escaped exception, wall time."""

    code: int | None
    stdout: str = ""
    stderr: str = ""
    exception: str | None = None  # "Type: message" of an exception that escaped
    wall_s: float = 0.0
    died: str | None = None  # the worker died or timed out: why
    folder: str = ""


def materialize(case_json: dict[str, Any], folder: Path) -> None:
    """Write a case's files and symbolic links into ``folder``."""
    for name, (text, binary) in case_json["files"].items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if binary:
            path.write_bytes(text.encode("latin-1"))
        else:
            path.write_text(text, encoding="utf-8")
    for name, target in case_json.get("symlinks", {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, folder / name)


def problems(case: Case, out: Outcome) -> list[str]:
    """Every way ``out`` breaks the contract for ``case`` (empty: it holds)."""
    found: list[str] = []
    if out.died:
        return [out.died]
    text = out.stdout + out.stderr
    if out.exception:
        found.append(f"traceback: {out.exception}")
    if "Traceback (most recent call last)" in text:
        found.append("a traceback was printed")
    if out.wall_s > TIME_LIMIT_S:
        found.append(f"took {out.wall_s:.1f} s (limit {TIME_LIMIT_S:g} s)")
    if out.code not in (0, 2):
        found.append(f"exit status {out.code} (expected 0 or 2)")
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    errors = [i for i, ln in enumerate(lines) if ln.startswith("capsim: error:")]
    if out.code == 2:
        if len(errors) != 1:
            found.append(f"exit 2 with {len(errors)} 'capsim: error:' lines: {lines[-3:]}")
        elif len(lines) - errors[0] > MAX_ERROR_LINES:
            found.append(f"error message of {len(lines) - errors[0]} lines")
        line = " ".join(lines[errors[0]:]) if errors else ""
        for want in case.says:
            if want not in line:
                found.append(f"error does not say {want!r}: {line!r}")
    elif out.code == 0 and errors:
        found.append("exit 0 after an error line")
    if case.expect == "error" and out.code != 2:
        found.append(f"expected a refusal (exit 2), got exit {out.code}: "
                     f"{(lines or [''])[-1][:200]!r}")
    if case.expect == "ok" and out.code != 0:
        found.append(f"expected success, got exit {out.code}: {(lines or [''])[-1][:300]!r}")
    for secret in case.never:
        if secret in text:
            found.append(f"output shows {secret!r}")
    folder = Path(out.folder)
    for pattern in case.absent:
        target = pattern if os.path.isabs(pattern) else str(folder / pattern)
        hits = glob.glob(target) + ([target] if os.path.islink(target) else [])
        if hits:
            found.append(f"{pattern} exists: {hits[0]}")
    if out.code == 0 and out.folder:
        found += result_problems(folder)
    return found


# -- results --------------------------------------------------------------------------

_SHARES = ("_share", "slo_attainment", "utilization", "busy_fraction")


def result_problems(folder: Path) -> list[str]:
    """Non-finite, negative-cost or out-of-[0, 1]-share numbers in any summary.json or
    comparison.json under ``folder``."""
    found: list[str] = []
    for path in sorted(folder.rglob("summary.json"))[:20]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            found.append(f"{path}: unreadable: {exc}")
            continue
        found += [f"{path.relative_to(folder)}: {p}" for p in
                  metric_problems(data.get("metrics", {}))]
    return found


def metric_problems(metrics: dict[str, Any]) -> list[str]:
    """Checks of one summary's metrics: no infinity anywhere; costs finite (>= 0 unless a
    difference); shares finite and within [0, 1]. NaN means 'no data' and is allowed only
    there: a latency or share of a class (or a run) with no requests, a GPU utilization of
    a fleet of no replicas, a price per token of no tokens, a CI from one replication."""
    found: list[str] = []
    for key, stats in metrics.items():
        if not isinstance(stats, dict):
            continue
        for stat, value in stats.items():
            if isinstance(value, float) and math.isinf(value):
                found.append(f"{key}.{stat} = {value}")
        mean = stats.get("mean")
        if not isinstance(mean, int | float):
            continue
        empty_class = (_class_without_requests(key, metrics) or _no_requests(metrics)
                       or (key.startswith("gpu_") and _no_gpus(metrics)))
        if "usd" in key and not key.startswith("input."):
            if math.isnan(mean) and key.endswith("per_1m_tokens") and _no_requests(metrics):
                continue  # a price per token of no tokens
            if not math.isfinite(mean):
                found.append(f"{key} = {mean} (a cost must be finite)")
            elif mean < 0 and "savings" not in key and "minus" not in key:
                found.append(f"{key} = {mean} (a negative cost)")
        if key.endswith(_SHARES):
            if math.isnan(mean) and empty_class:
                continue
            if not 0.0 <= mean <= 1.0:
                found.append(f"{key} = {mean} (a share outside [0, 1])")
    return found


def _no_requests(metrics: dict[str, Any]) -> bool:
    """No request arrived, or none was served, in any replication (a share of the served
    requests and a price per served token are then 0/0)."""
    for key in ("requests_arrived", "requests_served"):
        count = metrics.get(key, {})
        if isinstance(count, dict) and count.get("mean") == 0:
            return True
    return False


def _no_gpus(metrics: dict[str, Any]) -> bool:
    """A fleet of no replicas (API only): a GPU utilization is 0/0."""
    replicas = metrics.get("replicas", {})
    return isinstance(replicas, dict) and replicas.get("mean") == 0


def _class_without_requests(key: str, metrics: dict[str, Any]) -> bool:
    prefix = key.split(".", 1)[0]
    count = metrics.get(f"{prefix}.requests", {})
    return isinstance(count, dict) and count.get("mean") == 0

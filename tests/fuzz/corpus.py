"""The regression corpus: ``tests/corpus/why.yaml`` as :class:`~tests.fuzz.contract.Case`s.

Each entry of the corpus is one example from issue #23's "Why" (see the file's header
for its fields). Big inputs are generated here (``gen``) rather than stored: deeply
nested YAML and JSON, "billion laughs" alias bombs in a grid and in variants, 100,000
spikes, a cyclic chain of fallbacks and a dense trace.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml

from tests.fuzz.contract import Case

__all__ = ["CORPUS", "load_corpus", "base_experiment", "generate"]

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "why.yaml"


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    return yaml.safe_load(CORPUS.read_text(encoding="utf-8"))


def base_experiment() -> dict[str, Any]:
    """The corpus's small experiment (an hour of light traffic, one replication)."""
    return copy.deepcopy(_load()["base"])


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "workload":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _expand(arg: str) -> str:
    return re.sub(r"\{zeros:(\d+)\}", lambda m: "0" * int(m.group(1)), arg)


def load_corpus() -> list[Case]:
    """Every case of the corpus, files generated."""
    data = copy.deepcopy(_load())
    base = data["base"]
    cases = []
    for entry in data["cases"]:
        files: dict[str, str | bytes] = dict(entry.get("files", {}))
        if "exp.yaml" not in files and "exp.yaml" not in entry.get("gen", {}):
            files.setdefault("exp.yaml", yaml.safe_dump(_merge(base, entry.get("exp", {})),
                                                        sort_keys=False))
        for name, (kind, size) in entry.get("gen", {}).items():
            files[name] = generate(kind, int(size), base)
        cases.append(Case(id=entry["id"], argv=[_expand(a) for a in entry["argv"]],
                          files=files, symlinks=entry.get("symlinks", {}),
                          expect=entry.get("expect", "any"), says=entry.get("says", []),
                          never=entry.get("never", []), absent=entry.get("absent", []),
                          env=entry.get("env", {}), why=entry.get("why", "")))
    return cases


def generate(kind: str, size: int, base: dict[str, Any]) -> str:
    """A big hostile input of ``kind`` (see the module docstring)."""
    if kind == "nested_yaml":
        return "name: deep\nhorizon: " + "[" * size + "]" * size + "\n"
    if kind == "nested_json":
        return '{"a": ' + "[" * size + "]" * size + "}"
    if kind in ("laughs_grid", "laughs_variants"):
        # every anchor defined inside the one value, so no unknown field stops it first
        anchors = ['&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]']
        anchors += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, size)]
        bomb = f"[{', '.join(anchors)}]"
        body = yaml.safe_dump(base, sort_keys=False)
        if kind == "laughs_grid":
            return body + f"grid:\n  fleet.replicas: {bomb}\n"
        return body + f"variants:\n  bomb: {{description: {bomb}}}\n"
    if kind == "spikes":
        exp = copy.deepcopy(base)
        arrivals = exp["workload"]["streams"][0]["arrivals"]
        arrivals["spikes"] = [{"start": float(i % 3000), "duration": 1.0, "multiplier": 1.01}
                              for i in range(size)]
        return yaml.safe_dump(exp, sort_keys=False, default_flow_style=None, width=100)
    if kind == "fallbacks":
        lines = ["model_list:"]
        for i in range(size):
            lines += [f"  - model_name: g{i}", "    litellm_params: {model: openai/gpt-4o}"]
        chain = ", ".join(f"{{g{i}: [g{(i + 1) % size}]}}" for i in range(size))
        lines += ["router_settings:", "  max_fallbacks: 1000000000", f"  fallbacks: [{chain}]"]
        return "\n".join(lines) + "\n"
    if kind == "dense_trace":
        rows = [f"{i / size:.9f},100,10" for i in range(size)]
        return "arrived_at,num_prefill_tokens,num_decode_tokens\n" + "\n".join(rows) + "\n"
    raise ValueError(f"unknown generator {kind!r}")

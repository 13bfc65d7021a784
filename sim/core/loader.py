"""Reading YAML/JSON files and resolving built-in names.

Experiment files may refer to a workload or a GPU profile by name; names resolve to
``<name>.yaml`` in the user's directory next to the experiment, then in the shipped
``workloads/``, ``gpu_profiles/`` and ``experiments/`` folders (inside the installed
package as ``sim/_builtin/...``, or at the top of a source checkout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sim.core.errors import ConfigError, closest

__all__ = ["read_yaml", "builtin_dir", "resolve_named", "builtin_names"]

_PKG = Path(__file__).resolve().parents[1]  # the sim package


def builtin_dir(kind: str) -> Path:
    """The folder of shipped ``kind`` files (workloads, gpu_profiles, experiments)."""
    installed = _PKG / "_builtin" / kind
    if installed.is_dir():
        return installed
    return _PKG.parent / kind


def builtin_names(kind: str) -> list[str]:
    folder = builtin_dir(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON) file; a missing or malformed file is a one-line ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("a folder, not a file" if p.is_dir() else "file not found",
                          file=str(path))
    try:
        with p.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}invalid YAML: {problem}", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read file: {exc}", file=str(path)) from None


def resolve_named(kind: str, name: str, *, base_dir: Path | None = None,
                  field: str | None = None, file: str | None = None) -> Path:
    """Path of the ``kind`` file called ``name`` (a path, or a built-in name)."""
    candidates: list[Path] = []
    as_path = Path(name)
    if base_dir is not None and not as_path.is_absolute():
        candidates += [base_dir / as_path, base_dir / f"{name}.yaml"]
    candidates += [as_path, Path(f"{name}.yaml"), builtin_dir(kind) / f"{name}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    known = builtin_names(kind)
    hint = closest(name, known)
    listing = f"; built-in: {', '.join(known)}" if known and not hint else ""
    raise ConfigError(f"unknown {kind.rstrip('s').replace('_', ' ')} '{name}'{hint}{listing}",
                      file=file, field=field)

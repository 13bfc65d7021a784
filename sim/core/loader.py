"""Reading YAML/JSON files and resolving built-in names.

Experiment files may refer to a workload or a GPU profile by name; names resolve to
``<name>.yaml`` in the user's directory next to the experiment, then in the shipped
``workloads/``, ``gpu_profiles/`` and ``experiments/`` folders (inside the installed
package as ``sim/_builtin/...``, or at the top of a source checkout).

Every YAML and JSON file capsim reads goes through :func:`read_yaml` or :func:`read_json`,
which refuse, in one line naming the file (and the line where it helps): anything but a
regular file (a folder, a device, a FIFO) or one over ``MAX_YAML_BYTES`` (1 MB) or
``MAX_JSON_BYTES``; a duplicate key in a mapping (YAML keeps the last value silently); a
mapping key that is not text; nesting deeper than ``MAX_DEPTH``; YAML aliases that expand
to more than ``MAX_NODES`` values (a "billion laughs"), checked on the parser's events
before anything is composed. Parse errors say where and what, never the file's text.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from sim.core.errors import ConfigError, closest

__all__ = ["read_yaml", "read_json", "builtin_dir", "resolve_named", "builtin_names",
           "regular_file", "is_file", "parse_yaml", "MAX_DEPTH", "MAX_NODES", "MAX_YAML_BYTES",
           "MAX_JSON_BYTES"]

_PKG = Path(__file__).resolve().parents[1]  # the sim package
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists in a YAML or JSON file."""
MAX_NODES = 1_000_000
"""Most values a YAML document may hold once its aliases are expanded."""
MAX_YAML_BYTES = 1024**2
"""Largest YAML file read (an experiment is a few kB; parsing YAML takes ~3 s per MB)."""
MAX_JSON_BYTES = 64 * 1024**2
"""Largest JSON file read (LiteLLM's price table is about 1 MB)."""


def builtin_dir(kind: str) -> Path:
    """The folder of shipped ``kind`` files (workloads, gpu_profiles, experiments)."""
    installed = _PKG / "_builtin" / kind
    if installed.is_dir():
        return installed
    return _PKG.parent / kind


def builtin_names(kind: str) -> list[str]:
    folder = builtin_dir(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def is_file(path: Path) -> bool:
    """``path.is_file()``, False where the name itself is impossible (too long, a NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def regular_file(path: str | Path, *, what: str = "file", file: str | None = None,
                 field: str | None = None, max_bytes: int | None = None) -> Path:
    """``path`` if it names a regular file (after links) of at most ``max_bytes``;
    otherwise a one-line ConfigError saying what it is instead."""
    p = Path(path)
    where = {"file": file or str(path), "field": field} if file or field else {
        "file": str(path)}
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", **where) from None
    except ValueError:  # a NUL in the name
        raise ConfigError(f"{what} not found (the name holds a NUL character)", **where) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", **where) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"a folder, not a {what} (expected a regular file)", **where)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"not a regular file (a device, pipe or socket); expected a {what}",
                          **where)
    if max_bytes is not None and st.st_size > max_bytes:
        raise ConfigError(f"{what} of {st.st_size:,} bytes is larger than the "
                          f"{max_bytes:,} capsim reads", **where)
    return p


def _read_text(path: str | Path, max_bytes: int) -> str:
    p = regular_file(path, max_bytes=max_bytes)
    try:
        with p.open("rb") as fh:
            data = fh.read()  # (its size was checked)
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}); expected a YAML or JSON file",
                          file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=str(path)) from None


# -- YAML --------------------------------------------------------------------------------

class _Problem(Exception):
    """A refusal found while composing or constructing (line is 1-based)."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed


class _StrictLoader(_Base):
    """The safe loader (libyaml's when available) refusing duplicate and non-text keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:  # the keys as written (before '<<' merges)
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise _Problem(key_node.start_mark.line + 1,
                                   f"key {key!r} is not text (quote it)")
                if key in seen:
                    raise _Problem(key_node.start_mark.line + 1, f"duplicate key '{key}'")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_events(text: str) -> None:
    """Walk the parser's events (flat, no recursion) and refuse nesting deeper than
    ``MAX_DEPTH`` or aliases expanding past ``MAX_NODES`` values, before any node is
    composed: every value counts once, and an alias counts as the whole value it names."""
    depth, total = 0, 0
    opened: list[tuple[str | None, int]] = []  # (anchor, total when the collection began)
    sizes: dict[str, int] = {}
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Problem(event.start_mark.line + 1,
                               f"nested more than {MAX_DEPTH} levels deep")
            opened.append((event.anchor, total))
            total += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            anchor, start = opened.pop()
            if anchor is not None:
                sizes[anchor] = total - start
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            total += sizes.get(event.anchor, 1)
        if total > MAX_NODES:
            raise _Problem(event.start_mark.line + 1,
                           f"YAML aliases expand to more than {MAX_NODES:,} values (an alias "
                           "bomb?); write the values out instead")


def parse_yaml(text: str, *, file: str | None = None) -> Any:
    """Parse YAML text with the bounds and refusals of :func:`read_yaml`."""
    try:
        _check_events(text)
        loader = _StrictLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _Problem as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise ConfigError(f"{where}{exc.message}", file=file) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise ConfigError(f"{where}invalid YAML: {problem}", file=file) from None
    except RecursionError:
        raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file=file) from None


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML (or JSON) file; every problem is a one-line ConfigError naming it."""
    return parse_yaml(_read_text(path, MAX_YAML_BYTES), file=str(path))


# -- JSON --------------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Problem(None, f"duplicate key '{key}'")
        out[key] = value
    return out


def _depth_ok(data: Any) -> bool:
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return True


def read_json(path: str | Path) -> Any:
    """Parse a JSON file with the refusals of :func:`read_yaml` (duplicate keys, nesting);
    ``NaN`` and ``Infinity`` are read as floats, for the schema to refuse by field."""
    file = str(path)
    text = _read_text(path, MAX_JSON_BYTES)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except _Problem as exc:
        raise ConfigError(exc.message, file=file) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}",
                          file=file) from None
    except RecursionError:
        raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file=file) from None
    if not _depth_ok(data):
        raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", file=file)
    return data


# -- names -------------------------------------------------------------------------------

def resolve_named(kind: str, name: str, *, base_dir: Path | None = None,
                  field: str | None = None, file: str | None = None) -> Path:
    """Path of the ``kind`` file called ``name`` (a path, or a built-in name)."""
    candidates: list[Path] = []
    as_path = Path(name)
    if base_dir is not None and not as_path.is_absolute():
        candidates += [base_dir / as_path, base_dir / f"{name}.yaml"]
    candidates += [as_path, Path(f"{name}.yaml"), builtin_dir(kind) / f"{name}.yaml"]
    for c in candidates:
        if is_file(c):
            return c
    known = builtin_names(kind)
    hint = closest(name, known)
    listing = f"; built-in: {', '.join(known)}" if known and not hint else ""
    raise ConfigError(f"unknown {kind.rstrip('s').replace('_', ' ')} '{name}'{hint}{listing}",
                      file=file, field=field)


if os.name != "posix":  # pragma: no cover - capsim runs on POSIX systems
    raise ImportError("capsim needs a POSIX system")

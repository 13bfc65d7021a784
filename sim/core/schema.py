"""Shared building blocks for validated configuration (pydantic v2).

Configuration is data, validated once at the edge: every config class derives from
:class:`Model` (unknown fields are errors, values are immutable). Numbers are checked
there, once: no booleans where numbers go, no NaN or infinity in any float field
(``allow_inf_nan=False``), and, after each field's own bounds, no number larger in
magnitude than ``MAX_MAGNITUDE`` (1e15) in any field but a seed, so that no product of
inputs (a price times hours times replicas) overflows to infinity and no integer is too
large for a float. :func:`validate` turns a
pydantic ValidationError into a one-line :class:`~sim.core.errors.ConfigError` naming the file,
the dotted field path and the problem, with the closest valid field name where one exists.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sim.core.errors import ConfigError, closest
from sim.core.units import parse_duration_s, parse_time_of_day_s

__all__ = [
    "Model",
    "DurationS",
    "TimeOfDayS",
    "PositiveFloat",
    "ReplicaCount",
    "MAX_REPLICAS",
    "MAX_MAGNITUDE",
    "NonNegFloat",
    "Probability",
    "validate",
    "known_fields",
]

T = TypeVar("T", bound=BaseModel)


MAX_MAGNITUDE = 1e15
"""The largest magnitude of any number in a config field (seeds aside)."""
_UNBOUNDED = frozenset({"seed"})


def _numbers(value: Any) -> Any:
    """The numbers in a field's value, inside lists and tuples too (a mapping's values
    are left to the model that validates them, which names their fields)."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _numbers(v)


class Model(BaseModel):
    """Base for every config object: strict about unknown fields, immutable, no booleans
    where numbers go, no non-finite floats and no number beyond ``MAX_MAGNITUDE``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounded_numbers(self) -> Model:
        for name, info in type(self).model_fields.items():
            if name in _UNBOUNDED:
                continue
            for v in _numbers(getattr(self, name)):
                if abs(v) > MAX_MAGNITUDE:
                    shown = (f"a number of {len(str(abs(v)))} digits"
                             if isinstance(v, int) and abs(v) > 10**30 else f"{v:.6g}")
                    raise PydanticCustomError(
                        "number_too_large", "{shown} is too large (at most 1e15 in magnitude)",
                        {"field": info.alias or name, "shown": shown})
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        # pydantic reads True as 1 in a number field, and YAML reads yes/no/on/off as
        # booleans: `rpm: yes` would be one request a minute, silently.
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            items = value if isinstance(value, list | tuple) else (value,)
            if not any(isinstance(v, bool) for v in items):
                continue
            info = cls.model_fields.get(key) or next(
                (f for f in cls.model_fields.values() if f.alias == key), None)
            if info is not None and not _takes_bool(info.annotation):
                raise PydanticCustomError(
                    "bool_for_number", "expected a number, not true/false (YAML reads yes, "
                    "no, on and off as true/false)", {"field": key})
        return data


def _takes_bool(annotation: Any) -> bool:
    """Does a field of this type take booleans (bool, Any, or a union/container of them)?"""
    if annotation is bool or annotation is Any:
        return True
    if isinstance(annotation, type) or typing.get_origin(annotation) is typing.Literal:
        return False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Annotated:
        args = args[:1]
    return any(_takes_bool(a) for a in args if a is not Ellipsis and a is not types.NoneType)


def _duration(value: Any) -> float:
    return parse_duration_s(value)


def _tod(value: Any) -> float:
    return parse_time_of_day_s(value)


DurationS = Annotated[float, BeforeValidator(_duration)]
"""Seconds; accepts ``30d``, ``6h``, ``15m``, ``90s`` or a number of seconds."""
TimeOfDayS = Annotated[float, BeforeValidator(_tod)]
"""Seconds after midnight; accepts ``"02:00"`` or an hour number."""
MAX_REPLICAS = 100_000
ReplicaCount = Annotated[int, Field(ge=0, le=MAX_REPLICAS)]
"""A number of replicas (a bound far above any fleet, below what would exhaust memory)."""
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1)]


def known_fields(model: type[BaseModel], _seen: set[type] | None = None) -> set[str]:
    """Every field name reachable from ``model`` (used for 'did you mean' hints)."""
    seen = _seen if _seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for sub in _models_in(info.annotation):
            names |= known_fields(sub, seen)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(arg))
    meta = getattr(annotation, "__metadata__", None)
    if meta is not None:
        found.extend(_models_in(getattr(annotation, "__origin__", None)))
    return found


def _loc_to_path(loc: tuple[Any, ...], data: Any) -> str:
    """Dotted path of ``loc``, skipping pydantic's union tags by walking the input data."""
    parts: list[str] = []
    node = data
    for i, item in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            parts.append(f"[{item}]")
            node = node[item]
        elif isinstance(node, dict) and item in node:
            parts.append(("." if parts else "") + str(item))
            node = node[item]
        elif last and not _is_tag(item) and not (isinstance(node, dict)
                                                 and node.get("kind") == item):
            parts.append(("." if parts else "") + str(item))  # a missing or unknown key
    return "".join(parts)


def _is_tag(item: Any) -> bool:
    text = str(item)
    return "[" in text or text.startswith("function-") or text in _TAG_NAMES


_TAG_NAMES = {"int", "float", "str", "bool", "dict", "list", "none"}


def _fields_at(model: Any, loc: tuple[Any, ...], data: Any) -> set[str] | None:
    """Field names of the model that owns the last element of ``loc`` (None if unknown)."""
    node_type: Any = model
    node = data
    for item in loc[:-1]:
        node_type = _narrow(node_type, node)
        if isinstance(node_type, type) and issubclass(node_type, BaseModel):
            info = node_type.model_fields.get(item) or next(
                (f for f in node_type.model_fields.values() if f.alias == item), None)
            if info is None:
                continue  # a union tag in the location
            node_type = info.annotation
            node = node.get(item) if isinstance(node, dict) else None
        elif isinstance(item, int):
            args = [a for a in getattr(node_type, "__args__", ()) if a is not Ellipsis]
            node_type = args[0] if args else Any
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif isinstance(node, dict) and getattr(node_type, "__origin__", None) is dict:
            node_type = node_type.__args__[1]
            node = node.get(item)
    node_type = _narrow(node_type, node)
    if isinstance(node_type, type) and issubclass(node_type, BaseModel):
        return {info.alias or name for name, info in node_type.model_fields.items()}
    return None


def _narrow(annotation: Any, node: Any) -> Any:
    """The union member (model) that ``node`` is meant to be, by its ``kind`` or its keys."""
    if getattr(annotation, "__origin__", None) in (list, tuple, dict, set):
        return annotation  # a container, not a union of models
    models = _models_in(annotation)
    if len(models) <= 1:
        return models[0] if models else annotation
    if isinstance(node, dict):
        for m in models:
            kind = m.model_fields.get("kind")
            if kind is not None and node.get("kind") in getattr(kind.annotation, "__args__", ()):
                return m
        best = max(models, key=lambda m: len(set(node) & set(m.model_fields)))
        return best
    return annotation


def _message(err: dict[str, Any], model: type[BaseModel], data: Any) -> str:
    kind = err.get("type", "")
    loc = tuple(err.get("loc", ()))
    if kind == "extra_forbidden":
        name = str(loc[-1]) if loc else "?"
        fields = _fields_at(model, loc, data) or known_fields(model)
        return f"unknown field '{name}'{closest(name, fields)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        tag = ctx.get("tag", "?")
        expected = str(ctx.get("expected_tags", "")).replace("'", "").split(", ")
        return (f"unknown kind '{tag}'{closest(str(tag), expected)}; "
                f"expected one of: {', '.join(expected)}")
    if kind == "union_tag_not_found":
        return f"needs a {err.get('ctx', {}).get('discriminator', 'kind')} field"
    msg = str(err.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = err.get("input")
    if not isinstance(value, dict | list) and kind not in ("value_error",):
        msg = f"{msg} (got {value!r})"
    return msg


_RANK = {"extra_forbidden": 3, "union_tag_invalid": 2, "union_tag_not_found": 2, "too_short": -1}


def validate(model: type[T], data: Any, *, file: str | None = None, prefix: str = "") -> T:
    """Validate ``data`` as ``model``, raising a one-line ConfigError on the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # One line: prefer a typo'd field name, then the most specific location.
        err = max(errors, key=lambda e: (_RANK.get(e.get("type", ""), 0),
                                          len(e.get("loc", ()))))
        loc = tuple(err.get("loc", ()))
        if err.get("type") in ("bool_for_number", "number_too_large"):  # name the field
            loc = (*loc, err["ctx"]["field"])
        path = _loc_to_path(loc, data)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        raise ConfigError(_message(err, model, data), file=file, field=path or None) from None

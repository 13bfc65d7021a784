"""Readers for public LLM request traces: arrival times and token lengths per request.

Three formats are understood, detected from the column names (``format: auto``):

* ``azure`` - Azure LLM inference traces (CSV ``TIMESTAMP, ContextTokens,
  GeneratedTokens``); timestamps are date-times, made relative to the first request.
* ``vidur`` - Vidur / Splitwise CSV (``arrived_at, num_prefill_tokens,
  num_decode_tokens``); arrival times in seconds.
* ``mooncake`` - Mooncake JSON lines (``timestamp`` in milliseconds, ``input_length``,
  ``output_length``); other keys (``hash_ids``) are ignored.

Input paths must name regular files (not folders, devices or pipes), and no error ever
quotes the file's text (a header or a cell): errors name the file, the line, the column
and what was expected. Token counts are at most 10,000,000.

Assumptions: one request per row; token counts are whole, non-negative numbers; times
are made relative to the earliest row (the first one in a sorted trace); date-times
without a zone are read as UTC, i.e. as the trace's own clock; rows keep their
file order here (replay sorts them stably by time); blank lines are skipped. Files are
parsed with pyarrow; when that fails, a line-by-line scan names the first bad line and
column in a one-line :class:`~sim.core.errors.ConfigError`. Parsed traces are cached by
resolved path, modification time and size, so Monte Carlo replications never re-parse.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from sim.core.errors import ConfigError, closest
from sim.core.loader import builtin_dir, is_file, regular_file

__all__ = [
    "Trace",
    "TraceFormat",
    "TRACE_FORMATS",
    "read_trace",
    "read_length_column",
    "resolve_trace_path",
    "trace_columns",
]

_DAY_S = 86400.0
MAX_TRACE_TOKENS = 10_000_000  # = sim.workload.lengths.MAX_TOKENS (lengths imports traces)
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass(frozen=True)
class TraceFormat:
    """Column names of one trace format and the unit of its time column."""

    time: str
    time_unit: str  # "datetime", "s" or "ms"
    input: str
    output: str


TRACE_FORMATS: dict[str, TraceFormat] = {
    "azure": TraceFormat("TIMESTAMP", "datetime", "ContextTokens", "GeneratedTokens"),
    "vidur": TraceFormat("arrived_at", "s", "num_prefill_tokens", "num_decode_tokens"),
    "mooncake": TraceFormat("timestamp", "ms", "input_length", "output_length"),
}


@dataclass(frozen=True)
class Trace:
    """One parsed trace, rows in file order (arrays are read-only; they are cached)."""

    path: str
    format: str
    arrival_s: np.ndarray  # float64, seconds after the earliest row
    input_tokens: np.ndarray  # float64, whole numbers
    output_tokens: np.ndarray  # float64, whole numbers
    origin_of_week_s: float  # when the earliest row arrived, in seconds after Monday 00:00

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def span_s(self) -> float:
        """Seconds from the earliest to the latest arrival."""
        return float(self.arrival_s.max()) if len(self) else 0.0


def resolve_trace_path(path: str | Path, base_dir: Path | None = None) -> Path:
    """The trace file ``path``: as given if absolute, else under ``base_dir``, the current
    directory, then the shipped ``workloads/`` folder."""
    p = Path(path).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [d / p for d in (base_dir, Path.cwd(), builtin_dir("workloads")) if d]
    for c in candidates:
        if is_file(c):
            return c.resolve()
        if os.path.lexists(c) and c.exists():  # a folder, a device, a pipe: say so
            regular_file(c, what="trace file")
    looked = ", ".join(str(c.parent) for c in candidates)
    raise ConfigError(f"trace file '{path}' not found (looked in {looked})")


def read_trace(path: str | Path, fmt: str = "auto") -> Trace:
    """Arrival times and token lengths of every row of the trace at ``path``."""
    p = Path(path).resolve()
    stat = _stat(p)
    return _read_trace_cached(str(p), stat.st_mtime_ns, stat.st_size, fmt)


def read_length_column(path: str | Path, column: str) -> np.ndarray:
    """Token lengths from one column: ``input``/``output`` (the format's own length
    columns; the time column is not needed) or a raw column name."""
    p = Path(path).resolve()
    stat = _stat(p)
    return _read_column_cached(str(p), stat.st_mtime_ns, stat.st_size, column)


def trace_columns(path: str | Path) -> list[str]:
    """Column names (CSV header, or the keys of the first JSON line)."""
    return _header(Path(path))[1]


def _stat(p: Path):
    regular_file(p, what="trace file")
    return p.stat()


@functools.lru_cache(maxsize=32)
def _read_trace_cached(path: str, _mtime_ns: int, _size: int, fmt: str) -> Trace:
    p = Path(path)
    kind, names = _header(p)
    name = _pick_format(names, fmt, p, need_time=True)
    spec = TRACE_FORMATS[name]
    cols = _read_columns(p, kind, names, {spec.time: spec.time_unit, spec.input: "tokens",
                                          spec.output: "tokens"})
    raw_time = cols[spec.time]
    origin = float(raw_time.min())
    scale = 1e-3 if spec.time_unit == "ms" else 1.0
    arrival = (raw_time - origin) * scale
    origin_week = _origin_of_week_s(origin) if spec.time_unit == "datetime" else 0.0
    return Trace(path, name, _frozen(arrival), _frozen(cols[spec.input]),
                 _frozen(cols[spec.output]), origin_week)


@functools.lru_cache(maxsize=32)
def _read_column_cached(path: str, _mtime_ns: int, _size: int, column: str) -> np.ndarray:
    p = Path(path)
    kind, names = _header(p)
    if column in ("input", "output"):
        spec = TRACE_FORMATS[_pick_format(names, "auto", p, need_time=False)]
        column = spec.input if column == "input" else spec.output
    elif column not in names:  # (the header is the file's text: only a close match shown)
        raise ConfigError(f"no column '{column}'{closest(column, names)} in the header's "
                          f"{len(names)} columns (or use 'input' / 'output')", file=str(p))
    return _frozen(_read_columns(p, kind, names, {column: "tokens"})[column])


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _origin_of_week_s(epoch_s: float) -> float:
    days = math.floor(epoch_s / _DAY_S)
    return ((days + _EPOCH_WEEKDAY) % 7) * _DAY_S + (epoch_s - days * _DAY_S)


# -- header and format detection ---------------------------------------------------------

def _header(p: Path) -> tuple[str, list[str]]:
    """("csv" | "jsonl", column names)."""
    try:
        with p.open(encoding="utf-8", newline="") as fh:
            for line_no, line in enumerate(fh, start=1):
                if line.strip():
                    return _parse_header(line, line_no, p)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read trace: {exc}", file=str(p)) from None
    raise ConfigError("trace file is empty", file=str(p))


def _parse_header(line: str, line_no: int, p: Path) -> tuple[str, list[str]]:
    if line.lstrip().startswith("{"):
        try:
            first = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"line {line_no}: invalid JSON: {exc.msg}", file=str(p)) from None
        if not isinstance(first, dict):
            raise ConfigError(f"line {line_no}: expected a JSON object", file=str(p))
        return "jsonl", [str(k) for k in first]
    return "csv", next(csv.reader([line]))


def _pick_format(names: list[str], fmt: str, p: Path, *, need_time: bool) -> str:
    def needed(spec: TraceFormat) -> list[str]:
        return [spec.time, spec.input, spec.output] if need_time else [spec.input, spec.output]

    if fmt != "auto":
        if fmt not in TRACE_FORMATS:
            raise ConfigError(f"unknown trace format '{fmt}'; expected one of: auto, "
                              f"{', '.join(TRACE_FORMATS)}", file=str(p))
        missing = [c for c in needed(TRACE_FORMATS[fmt]) if c not in names]
        if missing:
            raise ConfigError(f"format {fmt} needs column '{missing[0]}', which the header "
                              "does not have", file=str(p))
        return fmt
    for name, spec in TRACE_FORMATS.items():
        if all(c in names for c in needed(spec)):
            return name
    expected = "; ".join(f"{n} ({', '.join(needed(s))})" for n, s in TRACE_FORMATS.items())
    raise ConfigError(f"cannot detect the trace format from the first line ({len(names)} "
                      f"columns); expected a header naming {expected}", file=str(p))


# -- reading columns ---------------------------------------------------------------------

def _read_columns(p: Path, kind: str, names: list[str], wanted: dict[str, str]
                  ) -> dict[str, np.ndarray]:
    """``{column: float64 values}``; units in ``wanted``: datetime (epoch s), s, ms, tokens.

    pyarrow reads the file; if it fails or yields an invalid value, a line-by-line reader
    takes over: it raises on the first bad line (naming line and column) or, when pyarrow
    merely disagreed about a format detail, returns the values itself.
    """
    cols = _fast_columns(p, kind, wanted)
    if cols is None:
        cols = _slow_columns(p, kind, names, wanted)
    if next(iter(cols.values())).size == 0:
        raise ConfigError("trace has no rows", file=str(p))
    return cols


def _fast_columns(p: Path, kind: str, wanted: dict[str, str]) -> dict[str, np.ndarray] | None:
    try:
        table = _arrow_table(p, kind, wanted)
        cols = {name: _to_numpy(table.column(name), unit) for name, unit in wanted.items()}
    except (pa.ArrowException, ValueError, KeyError):
        return None
    return cols if all(_plausible(v, wanted[k]) for k, v in cols.items()) else None


def _arrow_table(p: Path, kind: str, wanted: dict[str, str]) -> pa.Table:
    if kind == "jsonl":
        schema = pa.schema([(n, pa.string() if u == "datetime" else pa.float64())
                            for n, u in wanted.items()])
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        return pa_json.read_json(p, parse_options=options)
    types = {n: pa.string() if u == "datetime" else pa.float64() for n, u in wanted.items()}
    convert = pa_csv.ConvertOptions(column_types=types, include_columns=list(wanted))
    return pa_csv.read_csv(p, convert_options=convert)


def _to_numpy(column: pa.ChunkedArray, unit: str) -> np.ndarray:
    if column.null_count:
        raise ValueError("missing values")
    if unit != "datetime":
        return column.to_numpy().astype(np.float64)
    try:
        stamps = pc.cast(column, pa.timestamp("ns"))
    except pa.ArrowInvalid:
        stamps = pc.cast(column, pa.timestamp("ns", tz="UTC"))
    return stamps.cast(pa.int64()).to_numpy().astype(np.float64) * 1e-9


def _plausible(values: np.ndarray, unit: str) -> bool:
    if not np.all(np.isfinite(values)):
        return False
    return unit != "tokens" or bool(np.all((values >= 0) & (values <= MAX_TRACE_TOKENS)
                                           & (values == np.floor(values))))


def _slow_columns(p: Path, kind: str, names: list[str], wanted: dict[str, str]
                  ) -> dict[str, np.ndarray]:
    """Values read line by line; the first bad line raises a located ConfigError."""
    values: dict[str, list[float]] = {name: [] for name in wanted}
    rows = _jsonl_rows(p) if kind == "jsonl" else _csv_rows(p, names)
    for line_no, row in rows:
        if isinstance(row, str):
            raise ConfigError(f"line {line_no}: {row}", file=str(p))
        for name, unit in wanted.items():
            try:
                values[name].append(_cell_value(row.get(name), unit, text_ok=kind == "csv"))
            except ValueError as exc:
                raise ConfigError(f"line {line_no}, column '{name}': {exc}",
                                  file=str(p)) from None
    return {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}


def _csv_rows(p: Path, names: list[str]):
    """(line number, {column: text} or a problem string) for every non-blank data row."""
    with p.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header_seen = False
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if not header_seen:
                header_seen = True
                continue
            if len(row) != len(names):
                yield reader.line_num, f"expected {len(names)} fields, got {len(row)}"
            else:
                yield reader.line_num, dict(zip(names, row, strict=True))


def _jsonl_rows(p: Path):
    with p.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, f"invalid JSON: {exc.msg}"
                continue
            yield line_no, row if isinstance(row, dict) else "expected a JSON object"


def _cell_value(value: object, unit: str, *, text_ok: bool) -> float:
    """The cell as a number (date-times as epoch seconds, naive ones taken as UTC); a
    ValueError says what is wrong. JSON numbers must not be strings (``text_ok``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing value")
    if unit == "datetime":
        return _epoch_s(value)
    if isinstance(value, bool) or (isinstance(value, str) and not text_ok):
        raise ValueError("expected a number, got text")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    if unit == "tokens" and not (0 <= number <= MAX_TRACE_TOKENS and number == math.floor(number)):
        raise ValueError(f"expected a whole number of tokens from 0 to {MAX_TRACE_TOKENS:,}")
    return number


def _epoch_s(value: object) -> float:
    try:
        stamp = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError("expected a date-time like 2023-11-16 18:15:46") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()

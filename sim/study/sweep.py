"""Sweeps: a Cartesian grid of what-ifs over any experiment fields, streamed to Parquet.

What it models: a *point* is the base experiment plus one value for each grid field,
applied exactly like ``--set path=value`` (so any field can be swept and a bad field or
value gets the usual one-line error before anything runs). Every point runs the
experiment's N replications, and replication ``i`` of every point uses the same seed
(:func:`sim.experiment.replication.run_replication` derives it from (seed, i) only,
traffic streams are named by the workload): points see the same requests and the same
draws of the cost inputs, so differences between points are not blurred by sampling noise
(common random numbers).

Grid syntax (``--grid PATH=VALUES`` or the experiment's ``grid:`` mapping; the command
line wins per field): ``a..b`` is the integers a to b inclusive, ``a..b:step`` every
step-th of them, ``x,y,z`` a list of YAML scalars (``0.5,1,2``, ``llama-8b-1xh100,...``).
In the file a value may also be a YAML list. A field given once is one value.

Storage and resume: each finished run is written at once, atomically, as one small Parquet
file ``DIR/runs/<point_id>-r<replication>.parquet``, where ``point_id`` is a stable hash of
the point's overrides. A row is the run's metrics and costs, ``grid.<path>`` columns with
the point's values, ``point_id`` and ``error`` (null, or one line when the run failed; the
sweep goes on). Rerunning the same command skips every (point, replication) whose file
exists (``retry_failed`` re-runs failed ones); temporary files of an interrupted write end
in ``.tmp`` and are never read, because readers take ``*.parquet`` only. ``DIR/sweep.json``
records the grid, the base experiment (after ``--set``) and the replications; a folder
holding a different sweep is refused. ``DIR/summary.parquet`` has one row per point: mean
and 95% CI of the key metrics, p5/p50/p95 of the costs.

The same machinery (:class:`Evaluator`, :class:`RunStore`) serves ``capsim plan`` and
``capsim breakeven``, which choose their points as they go.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from itertools import product
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.progress import Progress

from sim.core.errors import ConfigError
from sim.core.executors import (
    ExecutorKind,
    bounded_map,
    check_executor_options,
    default_workers,
    open_executor,
)
from sim.core.files import write_json, write_parquet
from sim.core.intervals import key_kind
from sim.core.stats import summarize, summarize_values
from sim.experiment.config import Experiment, load_experiment
from sim.experiment.replication import run_replication
from sim.report.capacity_plots import plot_capacity
from sim.report.progress import progress_columns

__all__ = [
    "sweep",
    "study_folder",
    "open_study",
    "GRID_PREFIX",
    "KEY_METRICS",
    "Point",
    "Base",
    "PointStats",
    "RunStore",
    "RunProgress",
    "Evaluator",
    "Sweep",
    "SweepOutcome",
    "parse_values",
    "parse_grid",
    "grid_points",
    "prepare_sweep",
    "run_sweep",
    "run_one",
    "read_runs",
    "summarize_points",
    "Precision",
    "canonical",
]

GRID_PREFIX = "grid."
KEY_METRICS = (
    "cost.total_usd", "cost.compute_usd", "cost.engineering_usd", "cost.infra_usd",
    "cost.reliability_usd", "cost.api_usd", "cost.api_only_usd", "cost.savings_usd",
    "cost.usd_per_1m_tokens", "tokens_per_month", "replicas", "gpus_per_replica",
    "gpu_utilization", "gpu_busy_fraction", "overflow_share", "failure_share",
    "slo_attainment",
    # runs through a LiteLLM router config (sim.litellm.setup)
    "retry_rate", "fallback_rate", "attempts_per_request", "ttft_s_p95", "e2e_s_p95",
    "retry_added_s_mean",
)
"""Metrics summarized per point (plus per class: see :data:`_CLASS_METRIC`)."""
_CLASS_METRIC = re.compile(
    r"^[^.]+\.(ttft_p99_s|ttft_p95_s|wait_p95_s|wait_p99_s|e2e_p99_s|slo_attainment|"
    r"overflow_share)$")
MAX_GRID_POINTS = 100_000  # points (configurations) in one sweep; each is one or more runs
_RANGE = re.compile(r"^\s*([+-]?\d+)\s*\.\.\s*([+-]?\d+)\s*(?::\s*([+-]?\d+)\s*)?$")
_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_RESERVED = ("replications", "grid")


# ------------------------------------------------------------------------ grid syntax


def _scalar(text: str) -> Any:
    """A YAML scalar, as ``--set`` reads it (unparseable text stays text)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return text if isinstance(value, dict | list) else value


def parse_values(text: str, *, field: str) -> list[Any]:
    """Values of one grid field: ``a..b``, ``a..b:step`` or ``x,y,z`` (YAML scalars)."""
    match = _RANGE.match(str(text))
    if match:
        lo, hi, step = int(match[1]), int(match[2]), int(match[3] or 1)
        if step <= 0 or lo > hi:
            raise ConfigError(f"bad range {text!r}: write a..b or a..b:step with integers "
                              "a <= b and step >= 1", field=field)
        if (hi - lo) // step + 1 > MAX_GRID_POINTS:
            raise ConfigError(f"range {text!r} has {(hi - lo) // step + 1:.3g} values (at "
                              f"most {MAX_GRID_POINTS:,} points in a grid)", field=field)
        return list(range(lo, hi + 1, step))
    if ".." in str(text):
        raise ConfigError(f"bad range {text!r}: write a..b or a..b:step with integers",
                          field=field)
    tokens = [t.strip() for t in str(text).split(",")]
    if not all(tokens):
        raise ConfigError(f"empty value in {text!r}: write x,y,z", field=field)
    return list(dict.fromkeys(_scalar(t) for t in tokens))


def _file_values(key: str, value: Any, file: str | None) -> list[Any]:
    where = f"grid.{key}"
    if isinstance(value, list):
        if not value:
            raise ConfigError("an empty list of values", file=file, field=where)
        return list(value)
    if isinstance(value, dict):
        raise ConfigError("expected a list, 'a..b' or 'x,y,z', got a mapping", file=file,
                          field=where)
    if isinstance(value, str):
        try:
            return parse_values(value, field=where)
        except ConfigError as exc:
            raise exc.at(file=file) from None
    return [value]


def parse_grid(items: Iterable[str], file_grid: Mapping[str, Any] | None = None, *,
               file: str | None = None, option: str = "--grid") -> dict[str, list[Any]]:
    """The grid: the file's ``grid:`` mapping, then ``PATH=VALUES`` items (which win)."""
    grid: dict[str, list[Any]] = {}
    for key, value in (file_grid or {}).items():
        grid[_check_path(str(key), file=file, field=f"grid.{key}")] = _file_values(
            str(key), value, file)
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise ConfigError(f"{option} expects PATH=VALUES (a..b, a..b:step or x,y,z), "
                              f"got {item!r}")
        grid[_check_path(key, field=option)] = parse_values(text, field=f"{option} {key}")
    points = math.prod(len(values) for values in grid.values())
    if points > MAX_GRID_POINTS:
        raise ConfigError(f"the grid has {points:,} points (at most {MAX_GRID_POINTS:,}): "
                          "sweep fewer values or split it", file=file,
                          field=option if items else "grid")
    return grid


def _check_path(key: str, *, file: str | None = None, field: str) -> str:
    if not _PATH.match(key):
        raise ConfigError(f"{key!r} is not a field path like fleet.replicas", file=file,
                          field=field)
    if key.split(".")[0] in _RESERVED:
        raise ConfigError(f"'{key}' cannot be swept (use -n for replications)", file=file,
                          field=field)
    return key


def _column_kind(values: Sequence[Any]) -> str:
    """One Parquet type per grid column: bool, int, float, else str."""
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if any(isinstance(v, bool) for v in values):
        return "str"
    if all(isinstance(v, int) for v in values):
        return "int"
    if all(isinstance(v, int | float) for v in values):
        return "float"
    return "str"


def _as_kind(value: Any, kind: str) -> Any:
    if kind == "float":
        return float(value)
    if kind == "str" and not isinstance(value, str):
        return json.dumps(value, default=str)
    return value


# ----------------------------------------------------------------------------- points


@dataclass(frozen=True)
class Point:
    """One configuration: override values by field path, in grid order.

    ``columns`` are the values as stored in the ``grid.<path>`` columns (one type per
    column across a sweep); by default the values themselves.
    """

    values: tuple[tuple[str, Any], ...]
    columns: tuple[tuple[str, Any], ...] | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Point:
        return cls(tuple(values.items()))

    @cached_property
    def overrides(self) -> list[str]:
        """``--set`` items (values as JSON, which YAML reads back unchanged)."""
        return [f"{k}={json.dumps(v, default=str)}" for k, v in self.values]

    @cached_property
    def id(self) -> str:
        """A stable 12-hex-digit hash of the overrides (order-independent)."""
        text = "\n".join(sorted(self.overrides))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_fmt(v)}" for k, v in self.values) or "(base)"

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.values).get(key, default)

    def grid_columns(self) -> dict[str, Any]:
        return {GRID_PREFIX + k: v for k, v in (self.columns or self.values)}

    def replace(self, changes: Mapping[str, Any]) -> Point:
        """This point with some values replaced or added (by field path)."""
        return Point.of({**dict(self.values), **changes})


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[Point]:
    """Every combination of the grid's values (the first field varies slowest)."""
    keys = list(grid)
    kinds = {k: _column_kind(grid[k]) for k in keys}
    points = []
    for combo in product(*(grid[k] for k in keys)):
        values = tuple(zip(keys, combo, strict=True))
        columns = tuple((k, _as_kind(v, kinds[k])) for k, v in values)
        points.append(Point(values, columns))
    return points


@dataclass(frozen=True)
class Base:
    """The base experiment: a file (None: the built-in default), ``--set`` items and an
    optional replication count."""

    path: str | None
    overrides: tuple[str, ...] = ()
    replications: int | None = None

    def load(self, extra: Sequence[str] = ()) -> Experiment:
        # Variants are checked once, when the base is loaded without extra overrides.
        return load_experiment(self.path, [*self.overrides, *extra],
                               replications=self.replications, check_variants=not extra)


# ------------------------------------------------------------------------------ runs


def run_one(exp: Experiment, index: int) -> tuple[dict | None, str | None]:
    """Replication ``index`` of ``exp``: ``(row, None)``, or ``(None, one-line error)``."""
    try:
        return run_replication(exp, index, keep_requests=False).row, None
    except Exception as exc:  # a failed run is recorded and the sweep goes on
        return None, _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def canonical(data: Any) -> Any:
    """``data`` as plain JSON values (for comparing manifests)."""
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _row_table(row: Mapping[str, Any]) -> pa.Table:
    arrays = {}
    for key, value in row.items():
        if key == "error":
            arrays[key] = pa.array([value], type=pa.string())
        else:
            arrays[key] = pa.array([value.item() if hasattr(value, "item") else value])
    return pa.table(arrays)


def read_runs(runs_dir: str | Path) -> pa.Table:
    """Every complete run file under ``runs_dir`` as one table (``*.parquet`` only: the
    temporary files of unfinished writes are never read); columns missing from some files
    are null there, and int/float columns are unified."""
    files = sorted(str(p) for p in Path(runs_dir).glob("*.parquet"))
    if not files:
        return pa.table({"point_id": pa.array([], pa.string()),
                         "replication": pa.array([], pa.int64()),
                         "error": pa.array([], pa.string())})
    schema = pa.unify_schemas([pq.read_schema(f) for f in files],
                              promote_options="permissive")
    return ds.dataset(files, schema=schema, format="parquet").to_table()


class RunStore:
    """A folder of run files plus a manifest (``sweep.json``, ``plan.json``...) that says
    what the runs belong to; opening a folder whose manifest differs is refused."""

    def __init__(self, folder: str | Path, *, manifest: str, identity: Mapping[str, Any]):
        self.folder = Path(folder)
        self.runs_dir = self.folder / "runs"
        self.manifest = self.folder / manifest
        self.identity = canonical(dict(identity))

    def open(self) -> RunStore:
        if self.manifest.is_file():
            self._check_manifest()
        else:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.manifest, {"format": 1, "identity": self.identity,
                                       "created": datetime.now(UTC).isoformat()})
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        return self

    def _check_manifest(self) -> None:
        try:
            old = json.loads(self.manifest.read_text()).get("identity")
        except (OSError, ValueError, AttributeError):
            raise ConfigError("unreadable manifest; use another --out folder",
                              file=str(self.manifest)) from None
        if old == self.identity:
            return
        old = old if isinstance(old, dict) else {}
        keys = sorted(set(old) | set(self.identity))
        differs = [k for k in keys if old.get(k) != self.identity.get(k)]
        verb = "differs" if len(differs) == 1 else "differ"
        raise ConfigError(f"this folder holds a different study ({', '.join(differs)} "
                          f"{verb}); use another --out folder or delete it",
                          file=str(self.manifest))

    def path(self, point_id: str, replication: int) -> Path:
        return self.runs_dir / f"{point_id}-r{replication:04d}.parquet"

    def exists(self, point_id: str, replication: int) -> bool:
        return self.path(point_id, replication).is_file()

    def load(self, point_id: str, replication: int) -> dict | None:
        path = self.path(point_id, replication)
        if not path.is_file():
            return None
        rows = pq.read_table(path).to_pylist()
        return rows[0] if rows else None

    def failed(self, point_id: str, replication: int) -> bool:
        path = self.path(point_id, replication)
        if not path.is_file():
            return False
        names = pq.read_schema(path).names
        if "error" not in names:
            return False
        return pq.read_table(path, columns=["error"]).column(0)[0].as_py() is not None

    def save(self, point: Point, replication: int, row: Mapping[str, Any] | None,
             error: str | None) -> dict:
        full = {"point_id": point.id, "replication": replication, **point.grid_columns()}
        if row:
            full.update({k: v for k, v in row.items() if k not in full})
        full["error"] = error
        write_parquet(self.path(point.id, replication), _row_table(full))
        return full

    def table(self) -> pa.Table:
        return read_runs(self.runs_dir)


# -------------------------------------------------------------------------- progress


class RunProgress:
    """A rich progress bar of runs (done / total, failures, ETA) on stderr; silent when
    stderr is not a terminal. Counts are kept either way."""

    def __init__(self, description: str, *, enabled: bool | None = None):
        self.description = description
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total = self.completed = self.failed = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> RunProgress:
        if self.enabled:
            self._progress = Progress(
                *progress_columns("runs, [red]{task.fields[failed]} failed"),
                console=Console(stderr=True),
                transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=0, failed=0)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, runs: int) -> None:
        self.total += runs
        if self._progress is not None:
            self._progress.update(self._task, total=self.total)

    def done(self, ok: bool) -> None:
        self.completed += 1
        self.failed += 0 if ok else 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, failed=self.failed)


# ------------------------------------------------------------------------- evaluator


@dataclass
class PointStats:
    """The runs of one point: successful rows (by replication) and failures."""

    point: Point
    rows: list[dict]
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.rows)

    @cached_property
    def summary(self) -> dict[str, dict[str, float]]:
        return summarize(self.rows)

    def stat(self, key: str, part: str = "mean") -> float:
        return float(self.summary.get(key, {}).get(part, math.nan))

    def values(self, key: str) -> list[float]:
        """Per-replication values of ``key`` (NaN where missing), by replication."""
        rows = sorted(self.rows, key=lambda r: r["replication"])
        return [_number(r.get(key)) for r in rows]


def _number(value: Any) -> float:
    """A float, or NaN for anything that is not a number (None, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


@dataclass(frozen=True)
class Precision:
    """Sequential replication (``--precision``): a point whose decision-relevant intervals
    are too wide (``wide(stats)`` names the metrics) gets ``batch`` more replications,
    up to ``cap`` in all. Replication i of a point always has the same seed, so the
    numbers depend only on the seed, the target and the cap (not on the workers or the
    order of the search), and the extra replications of one point pair with the same
    replications of another (common random numbers)."""

    target: float
    """The relative half-width wanted (0.05: 5%)."""
    cap: int
    batch: int
    wide: Callable[[PointStats], list[str]]


@dataclass
class _Task:
    point: Point
    replication: int


class Evaluator:
    """Runs points through an executor into a :class:`RunStore`, skipping stored runs.

    ``experiments`` may hold experiments already loaded (by point id); others are loaded
    from ``base`` plus the point's overrides on first use.
    """

    def __init__(self, base: Base, store: RunStore, executor: Executor, *,
                 max_in_flight: int, progress: RunProgress | None = None,
                 retry_failed: bool = False,
                 experiments: Mapping[str, Experiment] | None = None,
                 precision: Precision | None = None):
        self.base = base
        self.store = store
        self.executor = executor
        self.max_in_flight = max_in_flight
        self.progress = progress or RunProgress("runs", enabled=False)
        self.retry_failed = retry_failed
        self._experiments: dict[str, Experiment] = dict(experiments or {})
        self._rows: dict[tuple[str, int], tuple[dict | None, str | None]] = {}
        self.ran = self.skipped = 0
        self.precision = precision
        self._counts: dict[str, int] = {}

    def replications(self, point: Point) -> int:
        """Replications of ``point``: the experiment's, or more (sequential replication)."""
        return self._counts.get(point.id, self.experiment(point).config.replications)

    def experiment(self, point: Point) -> Experiment:
        if point.id not in self._experiments:
            self._experiments[point.id] = self.base.load(point.overrides)
        return self._experiments[point.id]

    def known(self) -> set[str]:
        """Ids of the points with runs run or read by this evaluator."""
        return {point_id for point_id, _ in self._rows}

    def _todo(self, points: Sequence[Point]) -> list[_Task]:
        tasks = []
        for point in _unique(points):
            for rep in range(self.replications(point)):
                key = (point.id, rep)
                if key in self._rows:
                    continue
                if self.store.exists(*key) and not (
                        self.retry_failed and self.store.failed(*key)):
                    self.skipped += 1
                    continue
                tasks.append(_Task(point, rep))
        return tasks

    def run_missing(self, points: Sequence[Point]) -> list[tuple[Point, int, str]]:
        """Run every (point, replication) not stored yet; the failures of those runs."""
        tasks = self._todo(points)
        self.progress.add(len(tasks))
        failures = []
        for task, future in bounded_map(
                self.executor, run_one, tasks, max_in_flight=self.max_in_flight,
                args=lambda t: (self.experiment(t.point), t.replication)):
            try:
                row, error = future.result()
            except Exception as exc:  # the executor itself failed (a lost worker)
                row, error = None, _one_line(exc)
            full = self.store.save(task.point, task.replication, row, error)
            self._rows[(task.point.id, task.replication)] = (full, error)
            self.ran += 1
            self.progress.done(error is None)
            if error is not None:
                failures.append((task.point, task.replication, error))
        return failures

    def evaluate(self, points: Sequence[Point]) -> dict[str, PointStats]:
        """Run what is missing, then every point's rows (stored runs are read back); with
        :class:`Precision`, add replications in batches to the points that need them."""
        self.run_missing(points)
        out = self._collect(points)
        while self.precision is not None:
            more = [p for p in _unique(points) if self._wants_more(p, out[p.id])]
            if not more:
                break
            for p in more:
                self._counts[p.id] = min(self.replications(p) + self.precision.batch,
                                         self.precision.cap)
            self.run_missing(more)
            out.update(self._collect(more))
        return out

    def _wants_more(self, point: Point, stats: PointStats) -> bool:
        assert self.precision is not None
        return (stats.ok and self.replications(point) < self.precision.cap
                and bool(self.precision.wide(stats)))

    def _collect(self, points: Sequence[Point]) -> dict[str, PointStats]:
        out = {}
        for point in _unique(points):
            stats = PointStats(point, [])
            for rep in range(self.replications(point)):
                row, error = self._row(point.id, rep)
                if error is not None or row is None:
                    stats.errors[rep] = error or "missing run file"
                else:
                    stats.rows.append(row)
            out[point.id] = stats
        return out

    def _row(self, point_id: str, rep: int) -> tuple[dict | None, str | None]:
        key = (point_id, rep)
        if key not in self._rows:
            row = self.store.load(point_id, rep)
            self._rows[key] = (row, row.get("error") if row else "missing run file")
        return self._rows[key]


def _unique(points: Iterable[Point]) -> list[Point]:
    return list({p.id: p for p in points}.values())


# ----------------------------------------------------------------------------- sweep


@dataclass
class Sweep:
    """A validated sweep: the base, the grid and its points (experiments loaded)."""

    base: Base
    experiment: Experiment
    grid: dict[str, list[Any]]
    points: list[Point]
    experiments: dict[str, Experiment]

    @property
    def replications(self) -> int:
        return self.experiment.config.replications

    @property
    def identity(self) -> dict[str, Any]:
        return {"kind": "sweep", "base": self.experiment.raw,
                "grid": {k: [json.dumps(v, default=str) for v in vs]
                         for k, vs in self.grid.items()},
                "replications": self.replications}


@dataclass
class SweepOutcome:
    """What a sweep did: runs executed and skipped (resumed), failures, wall time."""

    folder: Path
    ran: int
    skipped: int
    failures: list[tuple[str, int, str]]
    wall_s: float
    summary: pa.Table
    plots: list[Path]
    grid: list[str] = field(default_factory=list)
    """The swept fields (``grid.<path>`` columns of the summary)."""
    name: str = "experiment"
    """The base experiment's name."""


def prepare_sweep(path: str | None, *, grid: Iterable[str] = (),
                  overrides: Sequence[str] = (), replications: int | None = None) -> Sweep:
    """Load the base, build the grid and validate every point before anything runs."""
    base = Base(path, tuple(overrides), replications)
    exp = base.load()
    grid_values = parse_grid(grid, exp.config.grid, file=exp.source)
    points = grid_points(grid_values)
    experiments = {p.id: base.load(p.overrides) for p in points}
    return Sweep(base, exp, grid_values, points, experiments)


def run_sweep(sweep: Sweep, folder: str | Path, executor: Executor, *,
              max_in_flight: int, progress: RunProgress | None = None,
              retry_failed: bool = False, plots: bool = True, svg: bool = False
              ) -> SweepOutcome:
    """Run every missing (point, replication), then write the summary and plots."""
    t0 = time.perf_counter()
    store = RunStore(folder, manifest="sweep.json", identity=sweep.identity).open()
    evaluator = Evaluator(sweep.base, store, executor, max_in_flight=max_in_flight,
                          progress=progress, retry_failed=retry_failed,
                          experiments=sweep.experiments)
    evaluator.run_missing(sweep.points)
    runs = store.table()
    summary = summarize_points(runs, sweep.points)
    write_parquet(store.folder / "summary.parquet", summary)
    failures = _failures(runs, sweep.points)
    figures: list[Path] = []
    if plots:
        figures = plot_capacity(summary.to_pylist(), store.folder,
                                grid_keys=list(sweep.grid), svg=svg)
    return SweepOutcome(store.folder, evaluator.ran, evaluator.skipped, failures,
                        time.perf_counter() - t0, summary, figures, list(sweep.grid),
                        sweep.experiment.name)


def _failures(runs: pa.Table, points: Sequence[Point]) -> list[tuple[str, int, str]]:
    labels = {p.id: p.label for p in points}
    if "error" not in runs.column_names:
        return []
    cols = runs.select(["point_id", "replication", "error"]).to_pylist()
    return sorted((labels[r["point_id"]], int(r["replication"]), r["error"]) for r in cols
                  if r["error"] is not None and r["point_id"] in labels)


# --------------------------------------------------------------------------- summary


def _metric_keys(names: Sequence[str]) -> list[str]:
    keys = [k for k in KEY_METRICS if k in names]
    return keys + [k for k in names if _CLASS_METRIC.match(k) and k not in keys]


def summarize_points(runs: pa.Table, points: Sequence[Point]) -> pa.Table:
    """One row per point: grid values, run counts, and for each key metric its mean and
    95% CI (``<metric>.mean``, ``.ci95_low``, ``.ci95_high``), costs also p5/p50/p95."""
    names = runs.column_names
    metrics = _metric_keys(names)
    wanted = [c for c in ("point_id", "error", *metrics) if c in names]
    by_point: dict[str, list[dict]] = {}
    for row in runs.select(wanted).to_pylist():
        by_point.setdefault(row["point_id"], []).append(row)
    out = [_point_row(p, by_point.get(p.id, []), metrics) for p in points]
    return pa.Table.from_pylist(out)


def _point_row(point: Point, rows: list[dict], metrics: Sequence[str]) -> dict[str, Any]:
    ok = [r for r in rows if r.get("error") is None]
    errors = [r["error"] for r in rows if r.get("error") is not None]
    out: dict[str, Any] = {"point_id": point.id, "point": point.label,
                           **point.grid_columns(), "n_ok": len(ok), "n_failed": len(errors),
                           "first_error": errors[0] if errors else None}
    for key in metrics:
        values = [_number(r.get(key)) for r in ok]
        stats = summarize_values(values, percentiles=key.startswith("cost."),
                                 kind=key_kind(key))
        for part in ("mean", "ci95_low", "ci95_high", "p5", "p50", "p95"):
            if part in stats:
                out[f"{key}.{part}"] = float(stats[part])
    return out


# ------------------------------------------------------------------- whole studies


def study_folder(out: str | Path | None, command: str, name: str, identity: Any) -> Path:
    """``out``, else ``results/<command>-<name>-<hash>/`` where the hash is the study's
    identity: rerunning the same study resumes it."""
    if out:
        return Path(out)
    digest = hashlib.sha256(json.dumps(canonical(identity), sort_keys=True).encode())
    return Path("results") / f"{command}-{name}-{digest.hexdigest()[:8]}"


def open_study(experiment: str | None, overrides: Sequence[str], replications: int | None,
               out: str | Path | None, command: str) -> tuple[Base, RunStore]:
    """The base experiment of a plan or break-even study and its run store, not opened
    yet (manifest ``study.json``: runs are shared by every plan or break-even study of the
    same base and replications)."""
    base = Base(experiment, tuple(overrides), replications)
    exp = base.load()
    if exp.config.replications < 2:
        raise ConfigError(f"{command} needs at least 2 replications for confidence "
                          "intervals", field="-n")
    identity = {"kind": "study", "base": exp.raw, "replications": exp.config.replications}
    folder = study_folder(out, command, exp.name, identity)
    return base, RunStore(folder, manifest="study.json", identity=identity)


def sweep(experiment: str | None = None, grid: Sequence[str] = (), *,
          overrides: Sequence[str] = (), replications: int | None = None,
          out: str | Path | None = None, executor: ExecutorKind = "local",
          scheduler: str | None = None, workers: int | None = None,
          retry_failed: bool = False, plots: bool = True, svg: bool = False,
          progress: bool | None = False, log: Callable[[str], None] | None = None
          ) -> SweepOutcome:
    """Run ``experiment`` (a file or built-in name; None: the default) at every point of
    ``grid`` (``PATH=VALUES`` items, added to the file's ``grid:``), each with its
    replications, streaming runs to ``out/runs/`` (resumable); then the summary and plots.

    ``executor``: ``local`` (``workers`` processes; 1: in-process) or ``dask``
    (``scheduler``). ``progress``: a progress bar on stderr (None: when it is a terminal).
    ``log`` gets a one-line description of the sweep before it runs.
    """
    check_executor_options(executor, scheduler)
    plan = prepare_sweep(experiment, grid=grid, overrides=overrides, replications=replications)
    folder = study_folder(out, "sweep", plan.experiment.name, plan.identity)
    RunStore(folder, manifest="sweep.json", identity=plan.identity).open()  # fail fast
    n = workers or default_workers()
    if log is not None:
        log(f"sweep: {len(plan.points)} points x {plan.replications} replications -> "
            f"{folder}/")
    with open_executor(executor, workers=n, scheduler=scheduler) as pool, \
            RunProgress(f"{plan.experiment.name}: sweep", enabled=progress) as bar:
        return run_sweep(plan, folder, pool, max_in_flight=2 * n, progress=bar,
                         retry_failed=retry_failed, plots=plots, svg=svg)

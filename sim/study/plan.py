"""Capacity plans: the cheapest configuration that meets every SLO, with confidence.

What it models: a search over fleet sizes (``fleet.replicas``) for each combination of the
other searched fields (``--over fleet.profile=a,b``, ``--over
overflow.interactive.threshold_s=0.5,1``...). Each configuration evaluated runs the
experiment's N replications (common random numbers: replication i of every configuration
sees the same traffic and cost draws, :mod:`sim.study.sweep`), and every SLO is judged on the
95% confidence interval across replications:

* ``METRIC<=TARGET`` is met when the CI's upper end is <= TARGET (latencies, shares that
  should be small: ``interactive.ttft_p99_s<=2``, ``overflow_share<=0.1``);
* ``METRIC>=TARGET`` is met when the CI's lower end is >= TARGET (attainments);
* ``METRIC=TARGET`` takes the metric's natural direction: ``>=`` for names ending in
  ``_met``, ``attainment`` or ``slo_attainment``, ``<=`` for everything else; a ``min:``
  prefix forces ``>=`` and ``max:`` forces ``<=``. A ``%`` suffix divides by 100.

METRIC is any numeric key of a run's row (``interactive.ttft_p99_s``,
``interactive.gpu.ttft_p99_s``, ``batch.slo_attainment``, ``gpu_utilization``...); an
unknown name is a one-line error with the closest valid one. A metric that is undefined
(NaN) or a configuration with a failed replication never meets an SLO.

Assumptions: SLO metrics are monotone in the number of replicas (more GPUs never make a
latency worse), so for each combination the smallest feasible fleet is found by bisection
over the ``fleet.replicas`` values (default 1..32), evaluating both ends first. Cost is the
mean ``cost.total_usd``; the recommendation is the cheapest feasible configuration among
all evaluated, the runners-up are the next cheapest. The GPU-only extreme is the smallest
fleet of the recommended combination that meets the SLOs with every overflow rule set to
``never``. The API-only extreme is simulated too (:func:`api_only_point`: no replicas,
every traffic class sent to the experiment's API-only model, so its rate limits and
latencies apply) and judged on the same SLOs; its cost is its ``cost.api_only_usd`` (API
spend alone: no GPUs and no self-hosting overheads).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Generator, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sim.core.errors import ConfigError, closest
from sim.core.executors import ExecutorKind, check_executor_options, default_workers, open_executor
from sim.core.intervals import key_kind, precise_enough
from sim.experiment.replication import run_replication
from sim.study.sweep import (
    Base,
    Evaluator,
    Point,
    PointStats,
    Precision,
    RunProgress,
    grid_points,
    open_study,
    parse_grid,
)

__all__ = [
    "plan",
    "Slo",
    "parse_slo",
    "check_metrics",
    "probe_metric_names",
    "Search",
    "drive",
    "smallest_feasible",
    "feasible",
    "SearchSpace",
    "search_space",
    "PlanResult",
    "make_plan",
    "latency_metric",
    "DEFAULT_REPLICAS",
    "too_wide",
    "sequential",
    "api_only_point",
]

DEFAULT_REPLICAS = "1..32"
_AT_LEAST_SUFFIXES = ("_met", "attainment")
_SLO = re.compile(r"^\s*(?:(min|max):)?\s*([A-Za-z0-9_.\-]+)\s*(<=|>=|=)\s*([^\s]+)\s*$")

Search = Generator[list[Point], dict[str, PointStats], Any]
"""A search yields the points it needs next and receives their stats (by point id)."""


# ---------------------------------------------------------------------------- SLOs


@dataclass(frozen=True)
class Slo:
    """``metric op target``: met on the 95% CI end that matters (see module doc)."""

    metric: str
    op: str  # "<=" or ">="
    target: float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.target:g}"

    @property
    def bound(self) -> str:
        """The CI end judged: the upper end for ``<=``, the lower for ``>=``."""
        return "ci95_high" if self.op == "<=" else "ci95_low"

    def met(self, stats: PointStats) -> bool:
        value = stats.stat(self.metric, self.bound)
        if not math.isfinite(value):
            return False
        return value <= self.target if self.op == "<=" else value >= self.target


def parse_slo(text: str) -> Slo:
    """``[min:|max:]METRIC(<=|>=|=)TARGET`` (see the module doc for the default rule)."""
    match = _SLO.match(str(text))
    if not match:
        raise ConfigError(f"bad SLO {text!r}: write METRIC<=TARGET, METRIC>=TARGET or "
                          "METRIC=TARGET, e.g. interactive.ttft_p99_s=2", field="--slo")
    prefix, metric, op, value = match.groups()
    natural = ">=" if metric.endswith(_AT_LEAST_SUFFIXES) else "<="
    forced = {"min": ">=", "max": "<="}.get(prefix or "")
    if forced and op != "=" and op != forced:
        raise ConfigError(f"bad SLO {text!r}: '{prefix}:' contradicts '{op}'", field="--slo")
    try:
        target = (float(Decimal(value[:-1]) / 100) if value.endswith("%")
                  else float(value))
    except (ValueError, ArithmeticError):
        raise ConfigError(f"bad SLO {text!r}: target {value!r} is not a number",
                          field="--slo") from None
    if not math.isfinite(target):
        raise ConfigError(f"bad SLO {text!r}: the target must be finite", field="--slo")
    return Slo(metric, forced or (natural if op == "=" else op), target)


def probe_metric_names(base: Base, point: Point) -> list[str]:
    """The numeric metric keys of a run of ``point`` (a one-hour probe run in-process)."""
    exp = base.load([*point.overrides, "horizon=1h"])
    row = run_replication(exp, 0, keep_requests=False).row
    return [k for k, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool)]


def check_metrics(slos: Sequence[Slo], names: Sequence[str]) -> None:
    """A one-line error for the first SLO whose metric is not a numeric run metric."""
    for slo in slos:
        if slo.metric not in names:
            raise ConfigError(f"unknown metric '{slo.metric}'{closest(slo.metric, names)}",
                              field="--slo")


def too_wide(slos: Sequence[Slo], target: float) -> Callable[[PointStats], list[str]]:
    """The decision-relevant metrics of a point whose 95% intervals are too wide for
    ``target`` (see :func:`sim.core.intervals.precise_enough`): every SLO metric whose
    decision is open, and for a point that meets every SLO (a candidate, ranked by cost)
    its monthly cost (``cost.api_only_usd`` for the API-only point, no GPUs)."""
    def wide(stats: PointStats) -> list[str]:
        out = []
        for slo in slos:
            m = slo.metric
            if not precise_enough(stats.stat(m), stats.stat(m, "ci95_low"),
                                  stats.stat(m, "ci95_high"), target, threshold=slo.target,
                                  kind=key_kind(m)):
                out.append(m)
        if not out and all(slo.met(stats) for slo in slos):
            cost = ("cost.api_only_usd" if stats.point.get("fleet.replicas") == 0
                    else "cost.total_usd")
            if not precise_enough(stats.stat(cost), stats.stat(cost, "ci95_low"),
                                  stats.stat(cost, "ci95_high"), target):
                out.append(cost)
        return out
    return wide


def sequential(slo_sets: Sequence[Sequence[Slo]], target: float | None, start: int,
               cap: int | None) -> Precision | None:
    """The sequential replication of a search (None: off): batches of ``start``
    replications up to ``cap`` (default 4 x ``start``). A point wants more while
    :func:`too_wide` names a metric for any of ``slo_sets`` (a break-even judges each
    point as a GPU-only and as a hybrid candidate, each with its own SLOs)."""
    if target is None:
        return None
    checks = [too_wide(slos, target) for slos in slo_sets]

    def wide(stats: PointStats) -> list[str]:
        return list(dict.fromkeys(m for check in checks for m in check(stats)))
    cap = cap if cap is not None else 4 * start
    if cap < start:
        raise ConfigError(f"--max-replications {cap} is below the {start} replications "
                          "each configuration starts with", field="--max-replications")
    return Precision(target, cap, start, wide)


def feasible(stats: PointStats, slos: Sequence[Slo]) -> bool:
    """Every replication ran and every SLO is met with confidence."""
    return stats.ok and all(slo.met(stats) for slo in slos)


# -------------------------------------------------------------------------- searching


def drive(evaluator: Evaluator, searches: Mapping[Hashable, Search]) -> dict[Hashable, Any]:
    """Run searches side by side: each round evaluates every point that any unfinished
    search asked for (in one batch, so the executor stays busy), then resumes them."""
    results: dict[Hashable, Any] = {}
    wanting: dict[Hashable, list[Point]] = {}
    for key, search in searches.items():
        _step(key, search, None, wanting, results)
    while wanting:
        batch = [p for points in wanting.values() for p in points]
        stats = evaluator.evaluate(batch)
        for key, points in list(wanting.items()):
            _step(key, searches[key], {p.id: stats[p.id] for p in points}, wanting, results)
    return results


def _step(key: Hashable, search: Search, sent: dict[str, PointStats] | None,
          wanting: dict[Hashable, list[Point]], results: dict[Hashable, Any]) -> None:
    try:
        wanting[key] = search.send(sent)
    except StopIteration as stop:
        wanting.pop(key, None)
        results[key] = stop.value


def smallest_feasible(values: Sequence[int], make: Callable[[int], Point],
                      ok: Callable[[PointStats], bool]) -> Search:
    """Bisection for the smallest value whose point is ``ok`` (assumed monotone); returns
    ``(value, stats)`` or None when even the largest value fails."""
    top, bottom = make(values[-1]), make(values[0])
    got = yield [top, bottom]
    if not ok(got[top.id]):
        return None
    if ok(got[bottom.id]):
        return values[0], got[bottom.id]
    lo, hi, best = 0, len(values) - 1, got[top.id]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        point = make(values[mid])
        stats = (yield [point])[point.id]
        if ok(stats):
            hi, best = mid, stats
        else:
            lo = mid
    return values[hi], best


# ---------------------------------------------------------------------- search space


@dataclass
class SearchSpace:
    """Replica counts to bisect over, and the combinations of the other fields."""

    replicas: list[int]
    combos: list[Point]

    def point(self, combo: Point, replicas: int) -> Point:
        return combo.replace({"fleet.replicas": replicas})


def search_space(over: Sequence[str], *, default_replicas: str = DEFAULT_REPLICAS
                 ) -> SearchSpace:
    """``--over`` items: ``fleet.replicas`` (default 1..32) and any other fields."""
    dims = parse_grid(over, None, option="--over")
    replicas = dims.pop("fleet.replicas", None)
    if replicas is None:
        replicas = parse_grid([f"fleet.replicas={default_replicas}"], None)["fleet.replicas"]
    if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in replicas):
        raise ConfigError("fleet.replicas values must be whole numbers >= 0",
                          field="--over fleet.replicas")
    return SearchSpace(sorted(set(replicas)), grid_points(dims))


def overflow_off(evaluator: Evaluator) -> dict[str, str]:
    """Overrides that turn every overflow rule of the base experiment to ``never``."""
    rules = evaluator.base.load().config.overflow
    return {f"overflow.{cls}.when": "never" for cls, rule in rules.items()
            if rule.when != "never"}


# ------------------------------------------------------------------------------ plan


@dataclass
class PlanResult:
    """What ``capsim plan`` found."""

    slos: list[Slo]
    space: SearchSpace
    evaluated: list[PointStats]
    recommended: PointStats | None
    runners_up: list[PointStats]
    gpu_only: PointStats | None
    per_combo: dict[str, PointStats | None] = field(default_factory=dict)
    metric_names: list[str] = field(default_factory=list)
    """The numeric metrics a run has (what an SLO may name)."""
    folder: Path | None = None
    """Where the study's runs are (``plan`` sets it)."""
    api_only: PointStats | None = None
    """Every request to the API (see :func:`api_only_point`; ``plan`` sets it)."""
    name: str = "experiment"
    api_only_model: str | None = None
    precision_cap: int | None = None
    """With sequential replication: the most replications a configuration may get."""

    def is_feasible(self, stats: PointStats) -> bool:
        return feasible(stats, self.slos)


def _cost(stats: PointStats) -> float:
    value = stats.stat("cost.total_usd")
    return value if math.isfinite(value) else math.inf


def make_plan(evaluator: Evaluator, slos: Sequence[Slo], space: SearchSpace, *,
              runners_up: int = 5) -> PlanResult:
    """Bisect each combination, pick the cheapest feasible configuration, then size the
    GPU-only alternative of the recommended combination."""
    slos = list(slos)

    def ok(stats: PointStats) -> bool:
        return feasible(stats, slos)

    searches = {c.id: smallest_feasible(space.replicas, lambda r, c=c: space.point(c, r), ok)
                for c in space.combos}
    found = drive(evaluator, searches)
    evaluated = _evaluated(evaluator, space)
    ranked = sorted((s for s in evaluated if ok(s)), key=_cost)
    best = ranked[0] if ranked else None
    gpu_only = _gpu_only(evaluator, space, best, ok) if best is not None else None
    per_combo = {c.label: (found[c.id][1] if found[c.id] else None) for c in space.combos}
    return PlanResult(slos, space, evaluated, best, ranked[1:1 + runners_up], gpu_only,
                      per_combo)


def _evaluated(evaluator: Evaluator, space: SearchSpace) -> list[PointStats]:
    """Every configuration of this search space evaluated so far (stats from the store)."""
    points = [space.point(c, r) for c in space.combos for r in space.replicas]
    seen = evaluator.known()
    return list(evaluator.evaluate([p for p in points if p.id in seen]).values())


def _gpu_only(evaluator: Evaluator, space: SearchSpace, best: PointStats,
              ok: Callable[[PointStats], bool]) -> PointStats | None:
    off = overflow_off(evaluator)
    if not off:
        return best
    combo = best.point.replace(off)
    found = drive(evaluator, {"gpu-only": smallest_feasible(
        space.replicas, lambda r: combo.replace({"fleet.replicas": r}), ok)})["gpu-only"]
    return found[1] if found else None


def api_only_point(evaluator: Evaluator) -> Point:
    """No replicas, every traffic class overflowing ``always`` to the experiment's API-only
    model: the configuration "send everything to the API"."""
    exp = evaluator.base.load()
    model = exp.api_only_model
    values: dict[str, Any] = {"fleet.replicas": 0}
    for cls in exp.workload.class_names:
        values[f"overflow.{cls}.when"] = "always"
        values[f"overflow.{cls}.to"] = model
    return Point.of(values)


def latency_metric(slos: Sequence[Slo], names: Sequence[str]) -> str | None:
    """The latency on the Pareto plot: the first SLO on a p99 TTFT, else the p99 TTFT of
    the first SLO's traffic class, else of the first class with one."""
    for slo in slos:
        if slo.metric.endswith("ttft_p99_s"):
            return slo.metric
    ttft = [n for n in names if n.endswith(".ttft_p99_s") and n.count(".") == 1]
    for slo in slos:
        key = f"{slo.metric.split('.')[0]}.ttft_p99_s"
        if key in ttft:
            return key
    return ttft[0] if ttft else None


def plan(experiment: str | None = None, slos: Sequence[str | Slo] = (), *,
         over: Sequence[str] = (), overrides: Sequence[str] = (),
         replications: int | None = None, out: str | Path | None = None,
         executor: ExecutorKind = "local", scheduler: str | None = None,
         workers: int | None = None, progress: bool | None = False,
         precision: float | None = None, max_replications: int | None = None) -> PlanResult:
    """The cheapest configuration of ``experiment`` meeting every SLO (``METRIC<=X``
    strings or :class:`Slo`) with 95% confidence, searching ``over`` (``fleet.replicas``,
    default 1..32, and any other fields). Every point and the SLOs' metrics are checked
    before anything runs; runs go to ``out`` (resumable) on ``executor`` as in
    :func:`sim.study.sweep.sweep`. ``precision`` (e.g. 0.05) turns on sequential
    replication (:func:`too_wide`, :class:`sim.study.sweep.Precision`) up to
    ``max_replications`` per configuration (default 4x the experiment's)."""
    check_executor_options(executor, scheduler)
    parsed = [s if isinstance(s, Slo) else parse_slo(s) for s in slos]
    space = search_space(over)
    base, store = open_study(experiment, overrides, replications, out, "plan")
    experiments = {p.id: base.load(p.overrides) for c in space.combos  # validate all first
                   for p in (space.point(c, space.replicas[0]),
                             space.point(c, space.replicas[-1]))}
    names = probe_metric_names(base, space.point(space.combos[0], space.replicas[-1]))
    check_metrics(parsed, names)
    seq = sequential([parsed], precision, base.load().config.replications, max_replications)
    store.open()
    n = workers or default_workers()
    with open_executor(executor, workers=n, scheduler=scheduler) as pool, \
            RunProgress(f"{base.load().name}: plan", enabled=progress) as bar:
        evaluator = Evaluator(base, store, pool, max_in_flight=2 * n, progress=bar,
                              experiments=experiments, precision=seq)
        result = make_plan(evaluator, parsed, space)
        api = api_only_point(evaluator)
        try:
            evaluator.experiment(api)  # e.g. a fleet of pools has no fleet.replicas
        except ConfigError:
            result.api_only = None
        else:
            result.api_only = evaluator.evaluate([api])[api.id]
    exp = base.load()
    result.metric_names = names
    result.folder = store.folder
    result.name = exp.name
    result.api_only_model = exp.api_only_model
    result.precision_cap = seq.cap if seq is not None else None
    return result

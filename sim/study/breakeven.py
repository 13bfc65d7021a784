"""Break-even volume: the monthly token volume where self-hosting beats the API.

What it models. **Simulated** (:func:`run_breakeven`): the workload is scaled
(``workload.scale``) to log-spaced monthly volumes; at each volume three plans are priced,
each fully loaded with the four cost layers (compute, engineering, infra, reliability) plus
API spend, per 30-day month:

* **API-only**: every request at the API-only reference model (``cost.api_only_usd``);
* **GPU-only**: the experiment's overflow rules stay on as a safety valve, and the fleet is
  the smallest (bisection over ``fleet.replicas``) whose overflow and failure shares are
  both at most 0.1% (95% CI upper ends) and that meets the ``--slo`` SLOs, or, with none
  given, whose GPU token utilization (``gpu_utilization``) is at most the cap (default
  60%: headroom for bursts);
* **hybrid**: overflow on, the cheapest fleet (mean ``cost.total_usd``) among those with
  a failure share of at most 0.1% that meet the ``--slo`` SLOs: the smallest such fleet
  is found by bisection, then an integer ternary search (cost assumed unimodal in the
  fleet size) runs up to the GPU-only fleet.

The break-even volume of GPU-only or hybrid is where its mean monthly cost crosses the
API-only cost from above, interpolated linearly in log volume between the two volumes
around the first sign change. Its 95% CI comes from the replications: replication i of
every configuration shares traffic and cost draws (common random numbers), so each
replication yields its own crossing; the interval is the t interval of their log10.

**Static** (:func:`static_breakeven`, ``--static``): the seed article's arithmetic, no
simulation: the fixed monthly cost of the experiment's fleet (compute + engineering +
infra at the low and the high ends of each cost input, via :func:`sim.costs.model.monthly_costs`)
divided by a blended API price per token. It assumes the fleet serves any volume at no
extra cost, so it ignores utilization, bursts, queueing and overflow; the simulated
numbers show how much those move it (``docs/capacity-planning.md``).

Assumptions: volumes scale the rates of every stream alike (the mix and burst shape are
kept); the base volume is measured on replication 0 of the base workload; the API
price scale input is taken at its mean in the static mode.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.core.errors import ConfigError
from sim.core.executors import ExecutorKind, check_executor_options, default_workers, open_executor
from sim.core.rng import replication_seeds
from sim.core.stats import summarize_values
from sim.costs.model import (
    SECONDS_PER_MONTH,
    Range,
    mean_of,
    monthly_costs,
    resolve_usd_per_gpu_hour,
)
from sim.experiment.config import Experiment
from sim.profiles.schema import gpu_prices
from sim.study.plan import (
    Search,
    Slo,
    check_metrics,
    drive,
    feasible,
    parse_slo,
    probe_metric_names,
    search_space,
    sequential,
    smallest_feasible,
)
from sim.study.sweep import Evaluator, Point, PointStats, RunProgress, open_study
from sim.workload.streams import describe

__all__ = [
    "breakeven",
    "DEFAULT_UTIL_CAP",
    "MAX_SHARE",
    "parse_tokens",
    "parse_volume_range",
    "scale_for",
    "volumes",
    "base_volume",
    "StaticBreakeven",
    "static_breakeven",
    "VolumeResult",
    "Crossing",
    "BreakevenResult",
    "run_breakeven",
    "crossing",
    "gpu_only_slos",
    "hybrid_slos",
    "cheapest",
    "curves",
]

DEFAULT_UTIL_CAP = 0.6
MAX_SHARE = 0.001
"""Overflow and failure shares treated as ~0 (upper 95% CI end)."""
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_TOKENS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?\d+)?)\s*([kmbgt]?)\s*$", re.IGNORECASE)


# ---------------------------------------------------------------------------- volumes


def parse_tokens(text: str, *, field: str = "--volume") -> float:
    """Tokens from ``250M``, ``3B``, ``1.5e9``, ``10k`` (k, M, B or G, T)."""
    match = _TOKENS.match(str(text))
    if not match or float(match[1]) <= 0:
        raise ConfigError(f"bad token volume {text!r}: write e.g. 100M, 3B or 1.5e9",
                          field=field)
    return float(match[1]) * _SUFFIX[match[2].lower()]


def parse_volume_range(text: str) -> tuple[float, float]:
    """``LOW..HIGH`` monthly tokens, e.g. ``100M..10B``."""
    low, sep, high = str(text).partition("..")
    if not sep:
        raise ConfigError(f"bad volume range {text!r}: write LOW..HIGH, e.g. 100M..10B",
                          field="--volume")
    lo, hi = parse_tokens(low), parse_tokens(high)
    if lo >= hi:
        raise ConfigError(f"bad volume range {text!r}: LOW must be below HIGH",
                          field="--volume")
    return lo, hi


def volumes(low: float, high: float, points: int) -> list[float]:
    """``points`` log-spaced volumes from ``low`` to ``high`` inclusive."""
    if points < 2:
        raise ConfigError("--points must be at least 2", field="--points")
    return [float(v) for v in np.geomspace(low, high, points)]


def scale_for(target: float, base_tokens: float, base_scale: float) -> float:
    """The ``workload.scale`` that brings the workload to ``target`` monthly tokens (six
    significant digits: a readable, stable grid value)."""
    return float(f"{base_scale * target / base_tokens:.6g}")


def base_volume(exp: Experiment) -> float:
    """Monthly tokens of the experiment's workload (replication 0, as simulated)."""
    seed = replication_seeds(exp.config.seed, exp.config.replications)[0]
    volume = float(describe(exp.workload, exp.config.horizon, seed)["tokens_per_month"])
    if not volume > 0:
        raise ConfigError("the workload generates no tokens; cannot scale it to a volume",
                          field="workload")
    return volume


# ----------------------------------------------------------------------------- static


@dataclass(frozen=True)
class StaticBreakeven:
    """The seed article's arithmetic: fixed monthly cost / blended API price per token."""

    replicas: int
    gpus: int
    api_model: str
    usd_per_1m_blended: float
    fixed_usd_low: float
    fixed_usd_high: float
    breakeven_low: float
    breakeven_high: float


def _end(value: float | Range, end: str) -> float:
    """The low or high end of an uncertain input (a plain number is both)."""
    return float(getattr(value, end)) if isinstance(value, Range) else float(value)


def _fixed_inputs(exp: Experiment, end: str) -> dict[str, float]:
    costs = exp.costs
    return {
        "input.usd_per_gpu_hour": _end(resolve_usd_per_gpu_hour(costs, gpu_prices(exp.profile)),
                                       end),
        "input.engineering_fte": _end(costs.engineering_fte, end),
        "input.usd_per_fte_year": _end(costs.usd_per_fte_year, end),
        "input.infra_usd_per_month": _end(costs.infra_usd_per_month, end),
        "input.usd_per_failed_request": 0.0,
        "input.usd_per_slo_violation": 0.0,
        "input.api_price_scale": mean_of(costs.api_price_scale),
    }


def static_breakeven(exp: Experiment, *, usd_per_1m_blended: float | None = None,
                     input_share: float = 0.75) -> StaticBreakeven:
    """Fixed monthly cost at the low and high ends of the cost inputs, over a blended API
    price: given, or the API-only model's input and output prices mixed ``input_share``
    to ``1 - input_share`` (no cached input)."""
    if not 0.0 <= input_share <= 1.0:
        raise ConfigError("--input-share must lie in [0, 1]", field="--input-share")
    model = exp.api_only_model
    api = exp.apis[model]
    prices = ((usd_per_1m_blended,) * 3 if usd_per_1m_blended is not None else
              (api.usd_per_1m_input, api.usd_per_1m_cached_input, api.usd_per_1m_output))
    fleet = exp.config.fleet
    replicas = fleet.replicas if fleet.replicas is not None else fleet.initial_replicas
    tokens = 1e9
    run = {"horizon_s": SECONDS_PER_MONTH, "replicas": replicas,
           "gpus_per_replica": exp.profile.gpus_per_replica,
           "input_tokens_total": input_share * tokens,
           "output_tokens_total": (1.0 - input_share) * tokens,
           "api_only_model": model, "api_only.cached_input_share": 0.0}
    low, high = (monthly_costs(run, _fixed_inputs(exp, end), {model: prices})
                 for end in ("low", "high"))
    return StaticBreakeven(
        replicas=int(replicas), gpus=int(replicas * exp.profile.gpus_per_replica),
        api_model=model, usd_per_1m_blended=low["cost.api_only_usd"] / (tokens / 1e6),
        fixed_usd_low=low["cost.fixed_usd"], fixed_usd_high=high["cost.fixed_usd"],
        breakeven_low=low["cost.breakeven_tokens_per_month"],
        breakeven_high=high["cost.breakeven_tokens_per_month"])


# -------------------------------------------------------------------------- simulated


def gpu_only_slos(slos: Sequence[Slo], util_cap: float) -> list[Slo]:
    """GPU-only sizing: overflow and failures ~0, plus the SLOs or the utilization cap."""
    base = [Slo("overflow_share", "<=", MAX_SHARE), Slo("failure_share", "<=", MAX_SHARE)]
    return base + (list(slos) if slos else [Slo("gpu_utilization", "<=", util_cap)])


def hybrid_slos(slos: Sequence[Slo]) -> list[Slo]:
    """Hybrid feasibility: failures ~0 and the SLOs."""
    return [Slo("failure_share", "<=", MAX_SHARE), *slos]


@dataclass
class VolumeResult:
    """One volume: the scale applied, and the GPU-only and hybrid configurations found
    (None when no fleet in the range qualifies)."""

    target_volume: float
    scale: float
    gpu_only: PointStats | None
    hybrid: PointStats | None

    @property
    def any(self) -> PointStats | None:
        return self.hybrid or self.gpu_only

    @property
    def volume(self) -> float:
        """Simulated monthly tokens (mean over replications)."""
        stats = self.any
        return stats.stat("tokens_per_month") if stats else self.target_volume


@dataclass
class Crossing:
    """A break-even volume: the point estimate (from means) and a 95% CI across
    replications (NaN when fewer than two replications cross); ``side`` says where the
    crossing lies when there is none in range: ``below`` (cheaper at every volume) or
    ``above`` (never cheaper)."""

    name: str
    volume: float
    low: float = math.nan
    high: float = math.nan
    replications_crossing: int = 0
    side: str = "inside"


@dataclass
class BreakevenResult:
    """Every volume's plans, the crossings, and the settings that sized the plans."""

    volumes: list[VolumeResult]
    crossings: list[Crossing]
    static: StaticBreakeven | None = None
    slos: list[Slo] = field(default_factory=list)
    util_cap: float = DEFAULT_UTIL_CAP
    experiment: Experiment | None = None
    """The base experiment (``breakeven`` sets it)."""
    folder: Path | None = None
    """Where the study's runs are (``breakeven`` sets it)."""
    precision_cap: int | None = None
    """With sequential replication: the most replications a configuration may get."""


def _cost(stats: PointStats | None) -> float:
    value = stats.stat("cost.total_usd") if stats else math.nan
    return value if math.isfinite(value) else math.inf


def cheapest(values: Sequence[int], make: Callable[[int], Point],
             ok: Callable[[PointStats], bool]) -> Search:
    """Integer ternary search for the cheapest ok point (cost assumed unimodal)."""
    seen: dict[int, PointStats] = {}

    def cost(i: int) -> float:
        return _cost(seen[i]) if ok(seen[i]) else math.inf

    lo, hi = 0, len(values) - 1
    while hi - lo > 2:
        m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
        yield from _fill(seen, [m1, m2], values, make)
        if cost(m1) <= cost(m2):
            hi = m2
        else:
            lo = m1
    yield from _fill(seen, list(range(lo, hi + 1)), values, make)
    best = min(range(lo, hi + 1), key=cost)
    return seen[best] if math.isfinite(cost(best)) else None


def _fill(seen: dict[int, PointStats], idx: list[int], values: Sequence[int],
          make: Callable[[int], Point]) -> Search:
    need = [i for i in idx if i not in seen]
    if not need:
        return
    points = {i: make(values[i]) for i in need}
    got = yield list(points.values())
    seen.update({i: got[p.id] for i, p in points.items()})


def _volume_search(target: float, scale: float, replicas: Sequence[int],
                   gpu_ok: Callable[[PointStats], bool],
                   hybrid_ok: Callable[[PointStats], bool],
                   queue_limit: int | None = None) -> Search:
    fixed: dict = {"workload.scale": scale}
    if queue_limit is not None:
        fixed["router.queue_limit"] = queue_limit

    def make(r: int) -> Point:
        return Point.of({**fixed, "fleet.replicas": r})

    gpu = yield from smallest_feasible(replicas, make, gpu_ok)
    top = gpu[0] if gpu else replicas[-1]
    candidates = [r for r in replicas if r <= top] or [replicas[0]]
    low = yield from smallest_feasible(candidates, make, hybrid_ok)
    hybrid = None
    if low is not None:
        hybrid = yield from cheapest([r for r in candidates if r >= low[0]], make, hybrid_ok)
    return VolumeResult(target, scale, gpu[1] if gpu else None, hybrid)


def run_breakeven(evaluator: Evaluator, targets: Sequence[float], *, base_tokens: float,
                  base_scale: float, replicas: Sequence[int], slos: Sequence[Slo] = (),
                  util_cap: float = DEFAULT_UTIL_CAP,
                  queue_limit: int | None = None) -> BreakevenResult:
    """Search every volume side by side, then locate the break-even crossings.

    A waiting-room limit (``queue_limit``, the base experiment's) scales with the
    volume: it is sized for the base traffic (e.g. to hold a nightly batch), and a fixed
    limit would fail a scaled batch as ``queue_full`` on any fleet, making every large
    volume infeasible for a reason that is not capacity.
    """
    gpu_slos, hyb_slos = gpu_only_slos(slos, util_cap), hybrid_slos(slos)
    searches = {}
    for target in targets:
        scale = scale_for(target, base_tokens, base_scale)
        limit = (None if queue_limit is None
                 else max(1, math.ceil(queue_limit * scale / base_scale)))
        searches[target] = _volume_search(
            target, scale, replicas, lambda s: feasible(s, gpu_slos),
            lambda s: feasible(s, hyb_slos), limit)
    found = drive(evaluator, searches)
    results = [found[t] for t in targets]
    crossings = [crossing("GPU-only", results, lambda v: v.gpu_only),
                 crossing("hybrid", results, lambda v: v.hybrid)]
    return BreakevenResult(results, crossings, slos=list(slos), util_cap=util_cap)


# -------------------------------------------------------------------------- crossings


def _first_crossing(x: Sequence[float], d: Sequence[float]) -> float:
    """log-volume where ``d`` first goes from > 0 to <= 0 (NaN if never)."""
    for i in range(len(d) - 1):
        a, b = d[i], d[i + 1]
        if math.isfinite(a) and math.isfinite(b) and a > 0 >= b:
            return x[i] + (x[i + 1] - x[i]) * a / (a - b)
    return math.nan


def _differences(results: Sequence[VolumeResult],
                 pick: Callable[[VolumeResult], PointStats | None]) -> np.ndarray:
    """Per replication (rows) and volume (columns): plan cost minus API-only cost."""
    cols = []
    for v in results:
        stats = pick(v)
        if stats is None or not stats.rows:
            cols.append(None)
            continue
        cols.append(np.array(stats.values("cost.total_usd"))
                    - np.array(stats.values("cost.api_only_usd")))
    # sequential replication may give volumes different counts: pair the replications
    # that every volume has (replication i sees the same traffic at every volume)
    reps = min((c.size for c in cols if c is not None), default=0)
    return np.array([c[:reps] if c is not None else np.full(reps, np.nan)
                     for c in cols]).T.reshape(reps, len(results))


def crossing(name: str, results: Sequence[VolumeResult],
             pick: Callable[[VolumeResult], PointStats | None]) -> Crossing:
    """Where ``pick``'s plan crosses API-only (see the module doc)."""
    x = [math.log10(v.volume) for v in results]
    d = _differences(results, pick)
    mean_d = [float(np.mean(col)) if col.size else math.nan for col in d.T]
    point = _first_crossing(x, mean_d)
    if not math.isfinite(point):
        return Crossing(name, math.nan, side=_side(mean_d))
    per_rep = [_first_crossing(x, list(row)) for row in d]
    per_rep = [c for c in per_rep if math.isfinite(c)]
    stats = summarize_values(per_rep)
    return Crossing(name, 10 ** point, 10 ** stats["ci95_low"], 10 ** stats["ci95_high"],
                    len(per_rep))


def _side(differences: Sequence[float]) -> str:
    """Where a missing crossing lies: ``below`` the range (cheaper than the API at every
    volume), ``above`` it (never cheaper) or ``none`` (no clean crossing)."""
    finite = [v for v in differences if math.isfinite(v)]
    if finite and all(v <= 0 for v in finite):
        return "below"
    if finite and all(v > 0 for v in finite):
        return "above"
    return "none"


def curves(result: BreakevenResult) -> dict[str, list[dict[str, Any]]]:
    """Cost per 1M tokens by volume for each plan: ``{volume, usd_per_1m, low, high}``
    (mean and p5/p95 across replications)."""
    out: dict[str, list[dict[str, Any]]] = {"API-only": [], "GPU-only": [], "hybrid": []}
    for v in result.volumes:
        for name, stats in (("GPU-only", v.gpu_only), ("hybrid", v.hybrid)):
            if stats is not None:
                out[name].append(_per_1m(v.volume, stats.values("cost.total_usd"),
                                         stats.values("tokens_per_month")))
        if v.any is not None:
            out["API-only"].append(_per_1m(v.volume, v.any.values("cost.api_only_usd"),
                                           v.any.values("tokens_per_month")))
    return {k: pts for k, pts in out.items() if pts}


def _per_1m(volume: float, usd: Sequence[float], tokens: Sequence[float]) -> dict[str, Any]:
    per = np.array(usd) / (np.array(tokens) / 1e6)
    per = per[np.isfinite(per)]
    if not per.size:
        return {"volume": volume, "usd_per_1m": math.nan, "low": math.nan, "high": math.nan}
    p5, p95 = np.percentile(per, [5, 95])
    return {"volume": volume, "usd_per_1m": float(per.mean()), "low": float(p5),
            "high": float(p95)}


def breakeven(experiment: str | None = None, *, volume: str = "100M..10B", points: int = 12,
              slos: Sequence[str | Slo] = (), util_cap: float = DEFAULT_UTIL_CAP,
              replicas: str = "1..64", overrides: Sequence[str] = (),
              replications: int | None = None, out: str | Path | None = None,
              executor: ExecutorKind = "local", scheduler: str | None = None,
              workers: int | None = None, progress: bool | None = False,
              precision: float | None = None, max_replications: int | None = None
              ) -> BreakevenResult:
    """Simulated break-even: at ``points`` log-spaced monthly volumes in ``volume``
    (``LOW..HIGH``), the API-only, GPU-only and cheapest hybrid set-ups of ``experiment``
    (fleets of ``replicas``; meeting ``slos``, else the GPU-only fleet within ``util_cap``),
    and where their costs cross. Runs go to ``out`` (resumable) as in
    :func:`sim.study.sweep.sweep`. ``precision`` turns on sequential replication as in
    :func:`sim.study.plan.plan` (judged on the GPU-only and hybrid SLOs and the monthly
    cost). :func:`static_breakeven` is the arithmetic-only version."""
    check_executor_options(executor, scheduler)
    parsed = [s if isinstance(s, Slo) else parse_slo(s) for s in slos]
    sizes = search_space([f"fleet.replicas={replicas}"]).replicas
    targets = volumes(*parse_volume_range(volume), points)
    base, store = open_study(experiment, overrides, replications, out, "breakeven")
    exp = base.load()
    base_tokens, scale = base_volume(exp), exp.workload.scale
    # The experiment scaled to the top volume on the largest fleet must load before
    # anything runs (a volume too large to simulate is refused here, naming --volume).
    top_scale = scale_for(targets[-1], base_tokens, scale)
    try:
        base.load(Point.of({"workload.scale": top_scale,
                            "fleet.replicas": sizes[-1]}).overrides)
    except ConfigError as exc:
        raise ConfigError(f"{targets[-1]:.3g} tokens a month scales the workload by "
                          f"{top_scale / scale:.3g}: {exc}", field="--volume") from None
    probe = Point.of({"workload.scale": scale, "fleet.replicas": sizes[-1]})
    if parsed:
        check_metrics(parsed, probe_metric_names(base, probe))
    seq = sequential([gpu_only_slos(parsed, util_cap), hybrid_slos(parsed)], precision,
                     exp.config.replications, max_replications)
    store.open()
    n = workers or default_workers()
    with open_executor(executor, workers=n, scheduler=scheduler) as pool, \
            RunProgress(f"{exp.name}: break-even", enabled=progress) as bar:
        evaluator = Evaluator(base, store, pool, max_in_flight=2 * n, progress=bar,
                              precision=seq)
        result = run_breakeven(evaluator, targets, base_tokens=base_tokens, base_scale=scale,
                               replicas=sizes, slos=parsed, util_cap=util_cap,
                               queue_limit=exp.config.router.queue_limit)
    result.experiment = exp
    result.folder = store.folder
    result.precision_cap = seq.cap if seq is not None else None
    return result

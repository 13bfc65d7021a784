"""The reports of ``sweep``, ``plan``, ``breakeven`` and ``compare``: verdict first, then
tables with units in every header and failures in every table.

Each builder turns a study's result into a :class:`~sim.report.document.Report`, which the
command prints (``--format table|json|csv|markdown``) and writes as ``report.json`` and
``report.html`` into the study's folder (:func:`write_reports`). Decisions are read from
95% confidence intervals across replications, and each report says, in one line naming
the metric, where an interval is too wide for the verdict it prints:

* **plan**: an SLO judged on the CI end that matters (see :mod:`sim.study.plan`). When no
  configuration is feasible but some meet every SLO on the *mean*, the plan says that the
  intervals of N replications are too wide rather than calling the search space infeasible;
  when a cheaper configuration meets every SLO on the mean but not with confidence, it
  says so too. The API-only alternative (every request to the API, no GPUs) is evaluated
  like any configuration, and the plan says when it is the cheapest feasible answer.
* **breakeven**: fleet sizes that shrink as the volume grows (impossible for a monotone
  workload) are flagged as too few replications.
* **sweep** and **compare**: points that fail requests are named; cost intervals wider
  than :data:`PRECISION` of the mean are flagged.

Assumption: :data:`PRECISION` (relative half-width 5%) is the precision a decision on
cost needs; shares are compared with an absolute half-width of 1 percentage point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.core.files import atomic_write
from sim.core.intervals import key_kind
from sim.report.document import Column, Report, Table, Value, dumps, to_dict
from sim.report.folder import plots_in
from sim.report.formats import format_count, format_percent, format_usd
from sim.report.html import write_html
from sim.report.run_report import SLO_GOAL, interval_text

__all__ = ["plan_report", "plan_outcome", "sweep_report", "breakeven_report",
           "compare_report", "static_report", "write_reports", "PRECISION", "metric_kind",
           "stats_value"]

PRECISION = 0.05
"""Relative half-width of a cost interval above which a verdict warns."""


def metric_kind(key: str) -> str:
    """The column kind of a run metric: share, seconds, usd, count or number."""
    if key_kind(key) == "share":
        return "share"
    if key.endswith("_s") or key_kind(key) == "quantile":
        return "seconds"
    if key.endswith("_usd"):
        return "usd"
    if key.endswith(("requests", "tokens", "_per_month")):
        return "count"
    return "number"


def stats_value(stats: Any, key: str, scale: float = 1.0) -> Value:
    """A metric of a study point (:class:`sim.study.sweep.PointStats`) as a Value."""
    if stats is None:
        return Value(None)
    entry = stats.summary.get(key)
    return Value.of(entry, scale)


def _gpus(stats: Any) -> float:
    return stats.stat("replicas") * stats.stat("gpus_per_replica")


def _gpus_text(n: float) -> str:
    if not math.isfinite(n):
        return "-"
    return f"{n:g} GPU" + ("" if n == 1 else "s")


def _label(stats: Any) -> str:
    """``3 replicas (6 GPUs), overflow.interactive.threshold_s=0.5``: in full."""
    others = [f"{k}={v}" for k, v in stats.point.values if k != "fleet.replicas"]
    replicas = stats.point.get("fleet.replicas")
    head = (f"{replicas} replica{'s' if replicas != 1 else ''} ({_gpus_text(_gpus(stats))})"
            if replicas is not None else _gpus_text(_gpus(stats)))
    return ", ".join([head, *others])


def _wide(value: Value, kind: str) -> bool:
    """Whether an interval is too wide for a decision (see :data:`PRECISION`)."""
    if not value.interval:
        return False
    half = (float(value.high) - float(value.low)) / 2  # type: ignore[arg-type]
    if kind == "share":
        return half > 0.01
    return abs(float(value.mean)) > 0 and half > PRECISION * abs(float(value.mean))  # type: ignore[arg-type]


def write_reports(report: Report, folder: Path, summary: Mapping[str, Any] | None = None
                  ) -> Path:
    """Write ``report.json`` and ``report.html`` (plots of the folder embedded)."""
    folder = Path(folder)
    report.plots = plots_in(folder)
    text = dumps(to_dict(report)) + "\n"
    atomic_write(folder / "report.json", lambda p: p.write_text(text, encoding="utf-8"))
    return write_html(report, folder, summary)


# ------------------------------------------------------------------------------ plan


def _slo_column(slo: Any) -> Column:
    return Column(f"slo:{slo.metric}", f"{slo.metric} {slo.op} {slo.target:g}",
                  metric_kind(slo.metric))  # type: ignore[arg-type]


def _verdict_text(stats: Any, slos: Sequence[Any]) -> str:
    if not stats.ok:
        return f"{len(stats.errors)} replication(s) failed to run"
    missed = [s for s in slos if not s.met(stats)]
    if not missed:
        return "feasible"
    on_mean = [s for s in missed if _met_on_mean(s, stats)]
    parts = []
    if on_mean:
        parts.append("undecided (CI too wide): " + ", ".join(s.metric for s in on_mean))
    hard = [s for s in missed if s not in on_mean]
    if hard:
        parts.append("misses " + ", ".join(s.metric for s in hard))
    return "; ".join(parts)


def _met_on_mean(slo: Any, stats: Any) -> bool:
    mean = stats.stat(slo.metric)
    if not math.isfinite(mean):
        return False
    return mean <= slo.target if slo.op == "<=" else mean >= slo.target


def _api_only_line(report: Report, api_only: Any, slos: Sequence[Any], model: str,
                   best: Any, outcome: str) -> None:
    cost = stats_value(api_only, "cost.api_only_usd")
    where = f"API-only on {model}: {interval_text(cost, 'usd')}/month"
    if outcome == "api-only":
        report.line(f"Recommended: {where}: the cheapest configuration that meets every SLO "
                    "with 95% confidence: self-hosting does not pay at this volume.", "ok")
        return
    ok = api_only.ok and all(s.met(api_only) for s in slos)
    if ok:
        report.line(f"{where}: within every SLO, but dearer than the recommended fleet.")
        return
    cheaper = best is None or (cost.defined and float(cost.mean) < best.stat(  # type: ignore[arg-type]
        "cost.total_usd"))
    report.line(f"{where}: {'cheaper, but ' if cheaper else ''}"
                f"{_verdict_text(api_only, slos)}.", "info")


def _candidate_row(role: str, stats: Any, slos: Sequence[Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "role": role, "configuration": _label(stats) if role != "API-only" else
        "no GPUs, every request to the API", "gpus": _gpus(stats),
        "cost": stats_value(stats, "cost.api_only_usd" if role == "API-only"
                            else "cost.total_usd"),
        "failed": stats_value(stats, "failure_share"),
        "overflow": stats_value(stats, "overflow_share"),
        "verdict": _verdict_text(stats, slos), "replications": len(stats.rows)}
    for slo in slos:
        row[f"slo:{slo.metric}"] = stats_value(stats, slo.metric)
    return row


def _candidate_columns(slos: Sequence[Any]) -> list[Column]:
    return [Column("role", "Role"), Column("configuration", "Configuration"),
            Column("gpus", "GPUs", "gpus", ""),
            Column("cost", "Cost (95% CI)", "usd", "$/month"),
            Column("failed", "Failed", "share"), Column("overflow", "Overflow", "share"),
            *[_slo_column(s) for s in dict((s.metric, s) for s in slos).values()],
            Column("verdict", "Verdict")]


def plan_outcome(result: Any) -> str:
    """What the plan found: ``api-only`` (sending everything to the API is feasible and
    cheapest), ``fleet`` (a self-hosted or hybrid configuration is), ``undecided`` (none is
    feasible with confidence, but some meet every SLO on the mean: too few replications)
    or ``infeasible``."""
    best, api = result.recommended, getattr(result, "api_only", None)
    api_ok = api is not None and api.ok and all(s.met(api) for s in result.slos)
    if api_ok and (best is None or api.stat("cost.api_only_usd") < best.stat(
            "cost.total_usd")):
        return "api-only"
    if best is not None:
        return "fleet"
    near = [s for s in result.evaluated if s.ok and all(
        x.met(s) or _met_on_mean(x, s) for x in result.slos)]
    return "undecided" if near else "infeasible"


def _replications_text(stats: Sequence[Any], precision: float | None,
                       cap: int | None = None) -> tuple[str, int]:
    """``20 replications each`` or ``20 to 80 replications each (sequential ...)``, and
    the largest count."""
    counts = [len(s.rows) + len(s.errors) for s in stats if s is not None]
    lo, hi = min(counts, default=0), max(counts, default=0)
    text = f"{lo} replications each" if lo == hi else f"{lo} to {hi} replications each"
    if precision is not None:
        text += (f" (sequential replication: more, up to {cap}, where an interval that "
                 f"decides is wider than ±{precision:.0%})" if cap else
                 f" (sequential replication to ±{precision:.0%})")
    return text, hi


def _more_replications(n: int, precision: float | None, cap: int | None = None, *,
                       edge: bool = True) -> str:
    if precision is None:
        return f"rerun with more replications (-n {max(10, 4 * n)}, or --precision 5%)"
    if cap is not None and n >= cap:
        return (f"the cap of {cap} replications was reached: rerun with a higher "
                f"--max-replications (e.g. {4 * cap})")
    if not edge:
        return (f"rerun with a finer --precision (e.g. 1%) or more replications "
                f"(-n {4 * n})")
    return (f"sequential replication stopped because the mean is within ±{precision:.0%} "
            "of the target, i.e. at the SLO's edge: rerun with a finer --precision (e.g. "
            "1%) to decide it")


def plan_report(result: Any, *, name: str = "experiment",
                api_only_model: str | None = None, precision: float | None = None
                ) -> Report:
    """The report of :func:`sim.study.plan.plan` (see the module docstring)."""
    slos = list(result.slos)
    report = Report("plan", f"capsim plan: {name}")
    cap = getattr(result, "precision_cap", None)
    reps, n = _replications_text([*result.evaluated, getattr(result, "api_only", None)],
                                 precision, cap)
    k = len(result.evaluated)
    report.line(f"capsim plan: {name} ({k} configuration{'' if k == 1 else 's'} evaluated, "
                f"{reps}; SLOs met on the 95% CI: {', '.join(map(str, slos))})", "title")
    report.line("Verdict", "title")
    best = result.recommended
    api_only = getattr(result, "api_only", None)
    model = api_only_model or "the API"
    outcome = plan_outcome(result)
    if api_only is not None:
        _api_only_line(report, api_only, slos, model, best, outcome)
    if best is not None:
        p5, p50, p95 = (best.stat("cost.total_usd", p) for p in ("p5", "p50", "p95"))
        head = "Recommended" if outcome == "fleet" else "Cheapest self-hosted"
        report.line(f"{head}: {_label(best)}: "
                    f"{interval_text(stats_value(best, 'cost.total_usd'), 'usd')}/month "
                    f"(single months p5 {format_usd(p5)}, p50 {format_usd(p50)}, "
                    f"p95 {format_usd(p95)}); meets every SLO with 95% confidence.",
                    "ok" if outcome == "fleet" else "info")
        fail = stats_value(best, "failure_share")
        if fail.defined and (fail.mean or 0) > 0:
            report.line(f"Note: this fleet fails {interval_text(fail, 'share')} of "
                        "requests; add failure_share<=X to the SLOs to bound it.", "warn")
        if result.gpu_only is not None and result.gpu_only is not best:
            report.line(f"GPU-only (no overflow): {_label(result.gpu_only)}: "
                        f"{interval_text(stats_value(result.gpu_only, 'cost.total_usd'), 'usd')}"
                        "/month.")
        elif result.gpu_only is None:
            report.line("GPU-only (no overflow): no fleet in the search range meets every "
                        "SLO without the API.")
    else:
        near = [s for s in result.evaluated if s.ok and all(
            x.met(s) or _met_on_mean(x, s) for x in slos)]
        level = "warn" if outcome != "api-only" else "info"
        if near:
            cheapest = min(near, key=lambda s: s.stat("cost.total_usd"))
            wide = sorted({x.metric for s in near for x in slos if not x.met(s)})
            report.line(f"Self-hosted: undecided, not infeasible: no fleet meets every SLO "
                        f"with 95% confidence, but {len(near)} "
                        f"{'meets' if len(near) == 1 else 'meet'} every SLO on the mean "
                        f"(cheapest: {_label(cheapest)}). The intervals are too wide to "
                        f"decide: {_more_replications(n, precision, cap)}.", level)
            for metric in wide:
                report.line(f"warning: the 95% interval of {metric} is too wide to decide "
                            "the plan.", "warn")
        else:
            report.line("Self-hosted: infeasible: no fleet in the search space meets every "
                        f"SLO ({', '.join(map(str, slos))}), even on the mean; widen --over "
                        "fleet.replicas or relax an SLO.",
                        "bad" if outcome == "infeasible" else "info")
    if api_only is None and best is not None:
        report.line(f"API-only on {model} (priced from the same traffic, not simulated): "
                    f"{format_usd(best.stat('cost.api_only_usd'))}/month.")
    if best is not None:
        cheaper_on_mean = [s for s in result.evaluated if s.ok and not result.is_feasible(s)
                           and s.stat("cost.total_usd") < best.stat("cost.total_usd")
                           and all(x.met(s) or _met_on_mean(x, s) for x in slos)]
        if cheaper_on_mean:
            c = min(cheaper_on_mean, key=lambda s: s.stat("cost.total_usd"))
            wide = sorted({x.metric for x in slos if not x.met(c)})
            report.line(f"warning: {_label(c)} is cheaper and meets every SLO on the mean, "
                        f"but the 95% interval of {', '.join(wide)} is too wide to say it "
                        "meets them: more replications may show it feasible.", "warn")
    cols = _candidate_columns(slos)
    cands = Table("candidates", "Candidates (mean over replications, 95% CI)", cols)
    if best is not None:
        cands.rows.append(_candidate_row("Recommended", best, slos))
    if result.gpu_only is not None and result.gpu_only is not best:
        cands.rows.append(_candidate_row("GPU-only", result.gpu_only, slos))
    if api_only is not None:
        cands.rows.append(_candidate_row("API-only", api_only, slos))
    for s in result.runners_up:
        cands.rows.append(_candidate_row("Runner-up", s, slos))
    if cands.rows:
        report.table(cands)
    every = Table("evaluated", "Every configuration evaluated", cols)
    ordered = sorted(result.evaluated, key=lambda s: (
        [str(v) for k, v in s.point.values if k != "fleet.replicas"],
        s.point.get("fleet.replicas") or 0))
    for s in ordered:
        role = "feasible" if result.is_feasible(s) else "-"
        every.rows.append(_candidate_row(role, s, slos))
    report.table(every)
    report.data = {"slos": [str(s) for s in slos], "replications": n}
    return report


# ----------------------------------------------------------------------------- sweep


def _row_value(row: Mapping[str, Any], key: str, scale: float = 1.0) -> Value:
    def get(part: str) -> float | None:
        x = row.get(f"{key}.{part}")
        return float(x) * scale if isinstance(x, int | float) and not isinstance(
            x, bool) and math.isfinite(float(x)) else None
    return Value(get("mean"), get("ci95_low"), get("ci95_high"))


def sweep_report(outcome: Any, *, name: str = "experiment") -> Report:
    """The report of :func:`sim.study.sweep.sweep`: one row per point, in full."""
    rows = outcome.summary.to_pylist()
    grid = list(outcome.grid)
    report = Report("sweep", f"capsim sweep: {name}")
    report.line(f"capsim sweep: {name} ({len(rows)} points; {outcome.ran} runs done, "
                f"{outcome.skipped} already on disk, {len(outcome.failures)} failed, in "
                f"{outcome.wall_s:.1f} s)", "title")
    litellm = bool(rows) and "fallback_rate.mean" in rows[0]
    cols = [Column(f"grid.{k}", k) for k in grid]
    cols += [Column("runs", "Runs ok", "count", "of runs"),
             Column("runs_failed", "Runs failed", "count", "of runs"),
             Column("cost", "Cost (95% CI)", "usd", "$/month"),
             Column("per_1m", "Cost per 1M tokens", "usd", "$"),
             Column("failed", "Failed", "share")]
    metrics: list[tuple[str, str]] = []
    if litellm:
        metrics = [("retry_rate", "Retried"), ("fallback_rate", "Fell back"),
                   ("e2e_s_p95", "E2E p95"), ("overflow_share", "Overflow")]
    else:
        first = rows[0] if rows else {}
        ttft = next((k.removesuffix(".mean") for k in first
                     if k.endswith(".ttft_p99_s.mean") and k.count(".") == 2), None)
        if ttft:
            metrics.append((ttft, f"{ttft.split('.')[0]} TTFT p99"))
        metrics += [("overflow_share", "Overflow"), ("gpu_utilization", "Utilization")]
    cols += [Column(k, label, metric_kind(k)) for k, label in metrics]  # type: ignore[arg-type]
    table = Table("points", "Sweep summary (mean over replications, 95% CI)", cols)
    failing = []
    wide = []
    for row in rows:
        r: dict[str, Any] = {f"grid.{k}": str(row.get(f"grid.{k}")) for k in grid}
        r["runs"] = int(row.get("n_ok", 0))
        r["runs_failed"] = int(row.get("n_failed", 0))
        r["cost"] = _row_value(row, "cost.total_usd")
        r["per_1m"] = _row_value(row, "cost.usd_per_1m_tokens")
        r["failed"] = _row_value(row, "failure_share")
        for k, _ in metrics:
            r[k] = _row_value(row, k)
        label = ", ".join(f"{k}={row.get(f'grid.{k}')}" for k in grid)
        if r["failed"].defined and (r["failed"].mean or 0) > 0:
            failing.append((float(r["failed"].mean), label))
        if _wide(r["cost"], "usd"):
            wide.append(label)
        table.rows.append(r)
    if failing:
        worst = max(failing)
        report.line(f"{len(failing)} of {len(rows)} points fail requests (worst: "
                    f"{format_percent(worst[0])} at {worst[1]}): their latency and cost "
                    "look better than they are, since failed requests free the GPUs.", "bad")
    else:
        report.line("No point fails requests.", "ok")
    if wide:
        report.line(f"warning: the interval of cost.total_usd is wider than "
                    f"±{PRECISION:.0%} of the mean at {len(wide)} point(s) (e.g. {wide[0]}): "
                    "run more replications (-n) before comparing their costs.", "warn")
    for label, rep, error in outcome.failures:
        report.line(f"failed run: {label}, replication {rep}: {error}", "bad")
    report.table(table)
    report.line(f"Results in {outcome.folder}/ (summary.parquet, runs/).", "dim")
    report.data = {"folder": str(outcome.folder), "failures": [
        {"point": label, "replication": rep, "error": error}
        for label, rep, error in outcome.failures]}
    return report


# ------------------------------------------------------------------------- breakeven


def breakeven_report(result: Any, static: Any, *, name: str = "experiment",
                     precision: float | None = None) -> Report:
    """The report of :func:`sim.study.breakeven.breakeven`."""
    report = Report("breakeven", f"capsim breakeven: {name}")
    cap = getattr(result, "precision_cap", None)
    reps, n = _replications_text([s for v in result.volumes for s in (v.gpu_only, v.hybrid)],
                                 precision, cap)
    report.line(f"capsim breakeven: {name} ({len(result.volumes)} volumes, {reps}; costs "
                "fully loaded, per 30-day month)",
                "title")
    report.line("Verdict", "title")
    for c in result.crossings:
        if math.isfinite(c.volume):
            ci = (f" (95% CI {format_count(c.low)} to {format_count(c.high)} tokens/month, "
                  f"{c.replications_crossing} replications cross)"
                  if math.isfinite(c.low) else " (no interval: fewer than two replications "
                  "cross)")
            report.line(f"{c.name} break-even: {format_count(c.volume)} tokens/month{ci}.",
                        "ok")
            if not math.isfinite(c.low) or (c.high - c.low) / 2 > PRECISION * c.volume:
                report.line(f"warning: the 95% interval of the {c.name} break-even volume "
                            f"(where cost.total_usd crosses cost.api_only_usd) is wider than "
                            f"±{PRECISION:.0%}: "
                            f"{_more_replications(n, precision, cap, edge=False)}.",
                            "warn")
        else:
            where = {"below": "cheaper than the API at every volume in range",
                     "above": "never cheaper than the API in range",
                     "none": "no clean crossing in range"}.get(c.side, c.side)
            report.line(f"{c.name}: {where}.", "info")
    if static is not None:
        report.line(f"Static arithmetic (no simulation): fixed {format_usd(static.fixed_usd_low)}"
                    f" to {format_usd(static.fixed_usd_high)}/month over "
                    f"${static.usd_per_1m_blended:.2f}/1M tokens blended ({static.api_model}):"
                    f" break-even {format_count(static.breakeven_low)} to "
                    f"{format_count(static.breakeven_high)} tokens/month.")
    _monotone_warning(report, result, n, precision, cap)
    cols = [Column("volume", "Volume", "tokens", "tokens/month"),
            Column("api_only", "API-only", "usd", "$/month"),
            Column("gpu_only", "GPU-only", "usd", "$/month"),
            Column("gpu_only_gpus", "GPU-only fleet", "gpus", "GPUs"),
            Column("hybrid", "Hybrid", "usd", "$/month"),
            Column("hybrid_gpus", "Hybrid fleet", "gpus", "GPUs"),
            Column("overflow", "Hybrid overflow", "share"),
            Column("failed", "Hybrid failed", "share")]
    table = Table("volumes", "Monthly cost by volume (mean over replications, 95% CI)", cols)
    for v in result.volumes:
        table.rows.append({
            "volume": v.volume,
            "api_only": stats_value(v.any, "cost.api_only_usd"),
            "gpu_only": stats_value(v.gpu_only, "cost.total_usd"),
            "gpu_only_gpus": _gpus(v.gpu_only) if v.gpu_only else None,
            "hybrid": stats_value(v.hybrid, "cost.total_usd"),
            "hybrid_gpus": _gpus(v.hybrid) if v.hybrid else None,
            "overflow": stats_value(v.hybrid, "overflow_share"),
            "failed": stats_value(v.hybrid, "failure_share")})
    table.note = "'-' in a fleet column: no fleet in the searched range qualifies."
    report.table(table)
    report.data = {"crossings": [dict(vars(c)) for c in result.crossings]}
    return report


def static_report(static: Any, *, name: str = "experiment") -> Report:
    """The report of ``capsim breakeven --static`` (no simulation)."""
    s = static
    report = Report("breakeven", f"capsim breakeven --static: {name}")
    report.line("Static break-even (no simulation): fixed monthly cost / blended API price "
                "per token", "title")
    report.line(f"Fleet: {s.replicas} replica{'s' if s.replicas != 1 else ''}, "
                f"{_gpus_text(float(s.gpus))}, billed all month.")
    report.line(f"Fixed monthly cost (compute + engineering + infra): "
                f"{format_usd(s.fixed_usd_low)} (low inputs) to {format_usd(s.fixed_usd_high)} "
                "(high inputs).")
    report.line(f"API price: ${s.usd_per_1m_blended:.2f} per 1M tokens blended "
                f"({s.api_model}).")
    report.line(f"Break-even: {format_count(s.breakeven_low)} to "
                f"{format_count(s.breakeven_high)} tokens/month.", "ok")
    report.line("This ignores latency, SLOs, overflow and traffic peaks: capsim breakeven "
                "without --static simulates them.", "note")
    report.data = {"static": dict(vars(s))}
    return report


def _monotone_warning(report: Report, result: Any, n: int, precision: float | None,
                      cap: int | None) -> None:
    for attr, label in (("gpu_only", "GPU-only"), ("hybrid", "hybrid")):
        sizes = [(v.volume, _gpus(getattr(v, attr))) for v in result.volumes
                 if getattr(v, attr) is not None]
        for (v1, g1), (v2, g2) in zip(sizes, sizes[1:], strict=False):
            if g2 < g1:
                report.line(f"warning: the {label} fleet shrinks as the volume grows "
                            f"({g1:g} GPUs at {format_count(v1)} tokens/month, {g2:g} at "
                            f"{format_count(v2)}): the intervals of {n} replications are too "
                            "wide to size fleets (cost.total_usd and the SLO metrics): "
                            f"{_more_replications(n, precision, cap, edge=False)}.", "warn")
                break


# --------------------------------------------------------------------------- compare


def _goal(att: Value) -> str:
    """An SLO attainment against :data:`SLO_GOAL`: met, missed or undecided (95% CI)."""
    low = att.low if att.interval else att.mean
    high = att.high if att.interval else att.mean
    if low is not None and low >= SLO_GOAL:
        return f"goal {format_percent(SLO_GOAL)} met"
    if high is not None and high < SLO_GOAL:
        return f"goal {format_percent(SLO_GOAL)} missed"
    return f"goal {format_percent(SLO_GOAL)} undecided: interval too wide"


def compare_report(result: Mapping[str, Any], *, name: str = "experiment") -> Report:
    """The report of :func:`sim.study.compare.compare`: one row per variant."""
    rows: Mapping[str, Mapping[str, Any]] = result["variants"]
    meta: Mapping[str, Any] = result.get("meta", {})
    first = next(iter(meta.values())) if meta else {}
    classes = list(first.get("classes", []))
    horizon = float(first.get("horizon_s", 30 * 86400.0) or 30 * 86400.0)
    to_month = 30 * 86400.0 / horizon
    baseline = result.get("baseline", next(iter(rows), ""))
    report = Report("compare", f"capsim compare: {name}")
    report.line(f"capsim compare: {name} ({len(rows)} variants on the same traffic, seed "
                f"{result.get('seed', '?')}; baseline {baseline})", "title")
    report.line("Verdict", "title")

    def v(row: Mapping[str, Any], key: str, scale: float = 1.0) -> Value:
        return Value.of(row.get(key), scale)

    for vname, row in rows.items():
        fail = v(row, "failure_share")
        delta = v(row, "cost.total_usd.minus_baseline")
        failing = fail.defined and (fail.mean or 0) > 0
        text = f"{vname}: {interval_text(v(row, 'cost.total_usd'), 'usd')}/month"
        if vname != baseline and delta.defined:
            low, high = delta.low, delta.high
            if failing:
                text += (f"; fails {interval_text(fail, 'share')} of requests, so its cost "
                         f"is not comparable with {baseline}'s")
            elif low is not None and high is not None and low <= 0 <= high:
                text += (f"; no clear cost difference from {baseline} (paired 95% CI "
                         f"{format_usd(low)} to {format_usd(high)})")
            else:
                more = float(delta.mean) > 0  # type: ignore[arg-type]
                amount = (delta if more else Value(-float(delta.mean),  # type: ignore[arg-type]
                                                   None if high is None else -high,
                                                   None if low is None else -low))
                text += (f"; {interval_text(amount, 'usd')}/month "
                         f"{'more' if more else 'less'} than {baseline} (paired)")
        elif failing:
            text += f"; fails {interval_text(fail, 'share')} of requests"
        for cls in classes:
            att = v(row, f"{cls}.slo_attainment")
            if att.defined:
                text += f"; {cls} SLO met by {interval_text(att, 'share')} ({_goal(att)})"
        report.line(text + ".", "bad" if failing else "info")
        if vname != baseline and delta.interval and not failing \
                and float(delta.low) <= 0 <= float(delta.high):  # type: ignore[arg-type]
            report.line(f"warning: the paired interval of cost.total_usd for {vname} minus "
                        f"{baseline} contains 0: too wide to say which costs less; run more "
                        "replications (-n).", "warn")
    cols = [Column("variant", "Variant"), Column("cost", "Total", "usd", "$/month"),
            Column("compute", "Compute", "usd", "$/month"),
            Column("api", "API", "usd", "$/month"),
            Column("delta", f"Δ total vs {baseline} (paired)", "usd", "$/month"),
            Column("replicas", "Replicas billed", "number", "mean"),
            Column("paid_util", "Paid utilization", "share"),
            Column("overflow", "Overflow", "share"), Column("failed", "Failed", "share")]
    for cls in classes:
        cols += [Column(f"{cls}.slo", f"{cls} SLO met", "share"),
                 Column(f"{cls}.ttft", f"{cls} TTFT p99", "seconds"),
                 Column(f"{cls}.e2e", f"{cls} E2E p99", "seconds")]
    cols += [Column("cold", "Cold starts", "count", "/month"),
             Column("preempt", "Preemptions", "count", "/month"),
             Column("fleet_fail", "Replica failures", "count", "/month"),
             Column("restarted", "Restarted requests", "count", "/month")]
    table = Table("variants", "Same traffic, different fleets (mean, 95% CI)", cols)
    for vname, row in rows.items():
        r: dict[str, Any] = {
            "variant": vname, "cost": v(row, "cost.total_usd"),
            "compute": v(row, "cost.compute_usd"), "api": v(row, "cost.api_usd"),
            "delta": v(row, "cost.total_usd.minus_baseline"), "replicas": v(row, "replicas"),
            "paid_util": v(row, "paid_utilization"), "overflow": v(row, "overflow_share"),
            "failed": v(row, "failure_share"),
            "cold": v(row, "fleet.cold_starts", to_month),
            "preempt": v(row, "fleet.preemptions", to_month),
            "fleet_fail": v(row, "fleet.failures", to_month),
            "restarted": v(row, "requests_restarted", to_month)}
        for cls in classes:
            r[f"{cls}.slo"] = v(row, f"{cls}.slo_attainment")
            r[f"{cls}.ttft"] = v(row, f"{cls}.ttft_p99_s")
            r[f"{cls}.e2e"] = v(row, f"{cls}.e2e_p99_s")
        table.rows.append(r)
    report.table(table)
    report.data = {"baseline": baseline}
    return report

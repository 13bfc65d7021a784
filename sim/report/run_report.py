"""The report of ``capsim run``: the answer first, then the tables behind it.

Built from the Monte Carlo summary (:func:`sim.core.stats.summarize`) and the run's
metadata (``meta`` of summary.json) as a :class:`~sim.report.document.Report`, which prints
as a terminal table, JSON, CSV, Markdown or HTML. What it holds, in order:

1. the headline: fleet (replicas, GPUs, the price per GPU-hour actually used), traffic,
   utilization, overflow and failures;
2. the **verdict**: per traffic class its SLO targets and whether they were met (the share
   of requests meeting every target of their stream, against :data:`SLO_GOAL`, with its
   95% interval); failures and their reasons; overflow and what it cost; the cost against
   the *named* API-only alternative; what to change when an SLO is missed; and a warning,
   naming the metric, wherever an interval is too wide to decide;
3. tables: latency and service per class and destination, failures by reason, fleet pools,
   monthly cost by layer.

Decisions use the 95% interval: an SLO is *met* when its interval's low end reaches the
goal, *missed* when its high end stays below, *undecided* otherwise; the hybrid is cheaper
or dearer than the API when the savings interval excludes 0. A run that fails requests is
never called "no clear difference": failures are named first. Request counts are scaled
from the horizon to a 30-day month; costs are per 30-day month (see
:mod:`sim.costs.model`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sim.core.units import format_duration
from sim.costs.model import SECONDS_PER_MONTH
from sim.report.document import Column, Report, Table, Value, format_cell
from sim.report.formats import (
    STYLES,
    UTILIZATION_BASIS,
    finite,
    format_count,
    format_percent,
    format_usd,
)

__all__ = ["build_run_report", "SLO_GOAL", "slo_text", "interval_text"]

Summary = Mapping[str, Mapping[str, float]]

SLO_GOAL = 0.99
"""An SLO counts as met when at least this share of a class's requests meet their targets
(with 95% confidence)."""

FAILURE_REASONS = {
    "queue_full": "the waiting room was full",
    "deadline": "waited past the deadline",
    "too_large": "too large for a replica's KV cache",
    "api_unavailable": "the API was unavailable or rate-limited",
    "no_capacity": "no replica and no overflow",
}


def _entry(summary: Summary, key: str) -> Mapping[str, float] | None:
    entry = summary.get(key)
    if not entry or not finite(entry.get("mean", math.nan)):
        return None
    return entry


def _v(summary: Summary, key: str, scale: float = 1.0) -> Value:
    return Value.of(_entry(summary, key), scale)


def interval_text(value: Value, kind: str) -> str:
    """A value in its kind's unit with its 95% interval: ``313 ± 2 K`` when the interval
    is symmetric at the printed precision, else ``0.50% (95% CI 0.44% to 0.57%)``."""
    fmt = {"share": format_percent, "usd": format_usd, "seconds": _secs,
           "count": format_count}.get(kind, format_count)
    if not value.defined:
        return "-"
    mean = float(value.mean)  # type: ignore[arg-type]
    text = fmt(mean)
    if not (value.interval and (value.high or 0) > (value.low or 0)):
        return text
    low, high = float(value.low), float(value.high)  # type: ignore[arg-type]
    if fmt in STYLES:
        style = STYLES[fmt](mean)
        below, above = style.half(mean - low), style.half(high - mean)
        if below == above:
            return (f"{'-' if mean < 0 else ''}{style.prefix}{style.number(mean)} ± "
                    f"{below}{style.suffix}")
    return f"{text} (95% CI {fmt(low)} to {fmt(high)})"


def _secs(x: float | None) -> str:
    if x is None or not finite(x):
        return "-"
    return f"{format_cell(x, 'seconds')} s"


def slo_text(slo: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """``TTFT <= 2 s, deadline <= 6 h`` from a stream's SLO fields; for a class whose
    streams differ, each stream's targets (``chat: TTFT <= 2 s; docs: TTFT <= 5 s``)."""
    if not isinstance(slo, Mapping):
        parts = [f"{s.get('stream', '?')}: {slo_text(s) or 'none'}" for s in slo]
        return "; ".join(parts) if any(slo_text(s) for s in slo) else ""
    names = {"ttft_s": "TTFT", "tpot_s": "TPOT", "e2e_s": "E2E", "deadline_s": "deadline"}
    parts = [f"{names[k]} <= {format_duration(float(v))}" for k, v in slo.items()
             if k in names and v is not None and finite(v)]
    return ", ".join(parts)


def _gpus_text(n: float) -> str:
    return f"{n:g} GPU" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- build


def build_run_report(summary: Summary, meta: Mapping[str, Any]) -> Report:
    """The report of one run (see the module docstring)."""
    horizon_s = float(meta.get("horizon_s", SECONDS_PER_MONTH))
    to_month = SECONDS_PER_MONTH / horizon_s if horizon_s > 0 else math.nan
    n_rep = int(meta.get("replications", 0) or 0)
    name = str(meta.get("name", "experiment"))
    report = Report("run", f"capsim run: {name}")
    report.line(f"capsim run: {name} ({format_duration(horizon_s)} horizon, {n_rep} "
                f"replication{'s' if n_rep != 1 else ''}, seed {meta.get('seed', '?')})",
                "title")
    if n_rep >= 2:
        report.line(f"± is the half-width of the 95% confidence interval of the mean over "
                    f"{n_rep} replications ([low, high] where it is not symmetric); "
                    "'-' means no such requests.", "dim")
    else:
        report.line("One replication: no confidence intervals, so no verdict can be "
                    "trusted (run at least 2, preferably 10+); '-' means no such requests.",
                    "warn")
    for text in _headline(summary, meta, to_month):
        report.line(text)
    _verdict(report, summary, meta, to_month, n_rep)
    if meta.get("pools"):
        report.table(_fleet_table(summary, meta, to_month))
    report.table(_service_table(summary, meta, to_month))
    report.table(_latency_table(summary, meta))
    failures = _failure_table(summary, to_month)
    if failures.rows:
        report.table(failures)
    report.table(_cost_table(summary, meta))
    for note in _notes(meta, horizon_s, to_month):
        report.line(note, "note")
    report.data = {"verdict": [{"level": b.level, "text": b.text} for b in report.lines
                               if b.level in ("ok", "bad", "warn")]}
    return report


def _price_text(meta: Mapping[str, Any], summary: Summary) -> str:
    """The price per GPU-hour: as configured (a number or an uncertain range) and the
    mean of the prices sampled by the replications."""
    given = meta.get("usd_per_gpu_hour")
    used = _v(summary, "input.usd_per_gpu_hour")
    parts = []
    if isinstance(given, Mapping) and finite(given.get("low")) and finite(given.get("high")):
        shape = (f", mode ${float(given['mode']):.2f}" if finite(given.get("mode")) else "")
        parts.append(f"${float(given['low']):.2f} to ${float(given['high']):.2f} per "
                     f"GPU-hour{shape}")
    elif finite(given):
        parts.append(f"${float(given):.2f} per GPU-hour")
    if used.defined and not finite(given):
        parts.append(f"mean sampled ${used.mean:.2f} per GPU-hour")
    return f" ({'; '.join(parts)})" if parts else ""


def _headline(summary: Summary, meta: Mapping[str, Any], to_month: float) -> list[str]:
    gpus = int(meta.get("gpus_per_replica", 0) or 0)
    pricing = str(meta.get("pricing", "on_demand")).replace("_", "-")
    if meta.get("pools"):
        parts = []
        for p in meta["pools"]:
            size = str(p["initial"]) if p["min"] == p["max"] else f"{p['min']}-{p['max']}"
            parts.append(f"{p['name']} ({p['tier'].replace('_', '-')}, {p['policy']} {size})")
        fleet = (f"Fleet: {meta.get('profile', '?')}, {_gpus_text(gpus)} per replica; pools: "
                 f"{', '.join(parts)}; mean replicas billed "
                 f"{interval_text(_v(summary, 'fleet.replicas_billed_mean'), 'count')}")
    else:
        replicas = int(meta.get("replicas", 0) or 0)
        fleet = (f"Fleet: {meta.get('profile', '?')}, {replicas} replica"
                 f"{'s' if replicas != 1 else ''} x {_gpus_text(gpus)} = "
                 f"{_gpus_text(replicas * gpus)}, {pricing} pricing"
                 f"{_price_text(meta, summary)}")
    traffic = (f"Traffic: {interval_text(_v(summary, 'requests_arrived', to_month), 'count')}"
               f" requests/month, {interval_text(_v(summary, 'tokens_per_month'), 'count')}"
               " tokens/month")
    gpu = (f"GPUs: busy {interval_text(_v(summary, 'gpu_busy_fraction'), 'share')} of the "
           f"time; utilization {interval_text(_v(summary, 'gpu_utilization'), 'share')} "
           f"{UTILIZATION_BASIS}")
    paid = _v(summary, "paid_utilization")
    if meta.get("pools") and paid.defined:
        gpu += f"; {interval_text(paid, 'share')} of the replica-time paid for"
    if not _v(summary, "gpu_utilization").defined and not meta.get("pools") \
            and int(meta.get("replicas", 0) or 0) == 0:
        gpu = "GPUs: none in the fleet (every request goes to the API or fails)."
    return [fleet, traffic, gpu]


def _api_only_name(meta: Mapping[str, Any]) -> str:
    model = meta.get("api_only_model")
    return f"API-only on {model}" if model else "API-only (model not recorded)"


def _verdict(report: Report, summary: Summary, meta: Mapping[str, Any], to_month: float,
             n_rep: int) -> None:
    report.line("Verdict", "title")
    slos: Mapping[str, Any] = meta.get("slos") or {}
    missed: list[str] = []
    for cls in meta.get("classes", []):
        _slo_line(report, summary, cls, slos.get(cls) or {}, missed)
    fail = _v(summary, "failure_share")
    failing = fail.defined and (fail.mean or 0) > 0
    if failing:
        reasons = _reasons(summary, to_month)
        report.line(f"Failures: {interval_text(fail, 'share')} of requests failed"
                    + (f" ({reasons})" if reasons else "") + ".", "bad")
    elif fail.defined:
        report.line("Failures: none (0 of the simulated requests failed).", "ok")
    over = _v(summary, "overflow_share")
    api = _v(summary, "cost.api_usd")
    if over.defined:
        report.line(f"Overflow: {interval_text(over, 'share')} of requests served by the "
                    f"API, costing {interval_text(api, 'usd')}/month.")
    _cost_line(report, summary, meta, failing)
    for cls in missed:
        report.line(_advice(cls), "warn")
    if n_rep < 2:
        report.line("warning: one replication gives no intervals: none of these verdicts is "
                    "backed by a confidence interval (use -n 10 or more).", "warn")


def _slo_line(report: Report, summary: Summary, cls: str, slo: Mapping[str, Any],
              missed: list[str]) -> None:
    key = f"{cls}.slo_attainment"
    att = _v(summary, key)
    targets = slo_text(slo)
    if not targets:
        report.line(f"{cls}: no SLO set.", "info")
        return
    if not att.defined:
        report.line(f"{cls} SLO ({targets}): no requests of this class.", "info")
        return
    text = (f"{cls} SLO ({targets}): met by {interval_text(att, 'share')} of requests; "
            f"goal >= {format_percent(SLO_GOAL)}")
    low = att.low if att.interval else att.mean
    high = att.high if att.interval else att.mean
    if low is not None and low >= SLO_GOAL:
        report.line(text + ": MET.", "ok")
    elif high is not None and high < SLO_GOAL:
        report.line(text + ": MISSED.", "bad")
        missed.append(cls)
    else:
        report.line(text + ": UNDECIDED.", "warn")
        report.line(f"warning: the interval of {key} is too wide to decide the {cls} SLO "
                    "(it contains the goal): run more replications (-n).", "warn")


def _advice(cls: str) -> str:
    """What to change for a missed SLO. (The API's latencies in a hybrid run include the
    wait in the GPU queue before a request overflowed, so they do not say whether the API
    alone would be fast enough; ``capsim plan`` evaluates that.)"""
    return (f"To meet the {cls} SLO: add replicas (capsim plan --slo "
            f"'{cls}.slo_attainment>={SLO_GOAL:g}' finds how many), lower "
            f"overflow.{cls}.threshold_s so more of the class goes to the API sooner, or "
            f"send the whole class to the API (overflow.{cls}.when=always).")


def _reasons(summary: Summary, to_month: float) -> str:
    parts = []
    total = 0.0
    for reason in FAILURE_REASONS:
        e = _entry(summary, f"failed.{reason}")
        if e is not None and e["mean"] > 0:
            total += e["mean"]
            parts.append((e["mean"], reason))
    if not parts:
        return ""
    return ", ".join(f"{reason} {format_count(m * to_month)}/month"
                     for m, reason in sorted(parts, reverse=True))


def _cost_line(report: Report, summary: Summary, meta: Mapping[str, Any],
               failing: bool) -> None:
    savings = _v(summary, "cost.savings_usd")
    api_only = _v(summary, "cost.api_only_usd")
    total = _v(summary, "cost.total_usd")
    if not savings.defined:
        return
    alt = (f"{_api_only_name(meta)}: {interval_text(api_only, 'usd')}/month, hybrid "
           f"{interval_text(total, 'usd')}/month")
    tokens, breakeven = _entry(summary, "tokens_per_month"), _entry(
        summary, "cost.breakeven_tokens_per_month")
    volume = ""
    if tokens is not None and breakeven is not None:
        volume = (f" Traffic is {format_count(tokens['mean'])} tokens/month against a "
                  f"break-even of {format_count(breakeven['mean'])} tokens/month.")
    mean = float(savings.mean or 0.0)
    low = savings.low if savings.interval else None
    high = savings.high if savings.interval else None
    fail_note = (" The hybrid fails requests that the API-only alternative would serve: "
                 "compare them only after fixing the failures." if failing else "")
    if low is not None and high is not None and low <= 0 <= high:
        if failing:
            report.line(f"Cost: hybrid vs {_api_only_name(meta)}: the hybrid fails requests,"
                        f" so the costs are not comparable ({alt}).{volume}", "bad")
        else:
            report.line(f"Cost: no clear difference from {alt} (savings "
                        f"95% CI {format_usd(low)} to {format_usd(high)}).{volume}",
                        "warn")
        report.line("warning: the interval of cost.savings_usd contains 0, too wide to say "
                    "which is cheaper: run more replications (-n).", "warn")
        return
    if mean >= 0:
        report.line(f"Cost: the hybrid saves {interval_text(savings, 'usd')}/month against "
                    f"{alt}.{volume}{fail_note}", "bad" if failing else "ok")
    else:
        neg = Value(-mean, -high if high is not None else None,
                    -low if low is not None else None)
        report.line(f"Cost: the hybrid costs {interval_text(neg, 'usd')}/month more than "
                    f"{alt}.{volume}{fail_note}", "bad")


# --------------------------------------------------------------------------- tables


def _service_table(summary: Summary, meta: Mapping[str, Any], to_month: float) -> Table:
    cols = [Column("class", "Class"), Column("requests", "Requests", "count", "/month"),
            Column("overflow", "Overflow", "share"), Column("failed", "Failed", "share"),
            Column("slo_met", "SLO met", "share")]
    table = Table("service", "Service per traffic class (mean over replications, 95% CI)",
                  cols)
    for cls in meta.get("classes", []):
        table.rows.append({
            "class": cls, "requests": _v(summary, f"{cls}.requests", to_month),
            "overflow": _v(summary, f"{cls}.overflow_share"),
            "failed": _v(summary, f"{cls}.failure_share"),
            "slo_met": _v(summary, f"{cls}.slo_attainment")})
    table.note = ("Shares are of the class's requests; SLO met: the share of requests that "
                  "met every target of their stream.")
    return table


def _latency_table(summary: Summary, meta: Mapping[str, Any]) -> Table:
    cols = [Column("class", "Class"), Column("served_by", "Served by"),
            Column("ttft_p50", "TTFT p50", "seconds"), Column("ttft_p99", "TTFT p99", "seconds"),
            Column("e2e_p50", "E2E p50", "seconds"), Column("e2e_p99", "E2E p99", "seconds")]
    table = Table("latency", "Latency per traffic class and destination (95% CI)", cols)
    for cls in meta.get("classes", []):
        for dest, label in (("", "all"), ("gpu.", "GPU fleet"), ("api.", "API")):
            row = {f"{m}_{q}": _v(summary, f"{cls}.{dest}{m}_{q}_s")
                   for m in ("ttft", "e2e") for q in ("p50", "p99")}
            if dest and not any(v.defined for v in row.values()):
                continue  # no request of this class was served there
            table.rows.append({"class": cls, "served_by": label, **row,
                               **({"_dim": True} if dest else {})})
    table.note = ("p50/p99 across the requests of a replication (from a histogram with 1% "
                  "resolution), mean over replications.")
    return table


def _failure_table(summary: Summary, to_month: float) -> Table:
    cols = [Column("reason", "Reason"), Column("what", "What happened"),
            Column("requests", "Failed requests", "count", "/month")]
    table = Table("failures", "Failed requests by reason", cols)
    for reason, what in FAILURE_REASONS.items():
        v = _v(summary, f"failed.{reason}", to_month)
        if v.defined and (v.mean or 0) > 0:
            table.rows.append({"reason": reason, "what": what, "requests": v})
    return table


def _fleet_table(summary: Summary, meta: Mapping[str, Any], to_month: float) -> Table:
    cols = [Column("pool", "Pool"), Column("up", "Up", "number", "replicas"),
            Column("billed", "Billed", "number", "replicas"),
            Column("gpu_hours", "GPU-hours", "count", "/month"),
            Column("compute", "Compute", "usd", "$/month"),
            Column("cold", "Cold starts", "count", "/month"),
            Column("preempt", "Preemptions", "count", "/month"),
            Column("failures", "Replica failures", "count", "/month"),
            Column("evicted", "Evicted requests", "count", "/month")]
    table = Table("pools", "Fleet pools (mean over replications)", cols)
    for p in meta.get("pools", []):
        key = f"pool.{p['name']}"
        evicted = [_entry(summary, f"{key}.requests_evicted_{c}")
                   for c in ("preemption", "failure")]
        found = [e["mean"] for e in evicted if e is not None]
        table.rows.append({
            "pool": p["name"], "up": _v(summary, f"{key}.replicas_up_mean"),
            "billed": _v(summary, f"{key}.replicas_billed_mean"),
            "gpu_hours": _v(summary, f"{key}.gpu_hours_per_month"),
            "compute": _v(summary, f"cost.pool.{p['name']}.compute_usd"),
            "cold": _v(summary, f"{key}.cold_starts", to_month),
            "preempt": _v(summary, f"{key}.preemptions", to_month),
            "failures": _v(summary, f"{key}.failures", to_month),
            "evicted": sum(found) * to_month if found else None})
    return table


_COST_ROWS = (
    ("cost.compute_usd", "Compute (GPU fleet, full month)"),
    ("cost.engineering_usd", "Engineering (FTE)"),
    ("cost.infra_usd", "Infrastructure"),
    ("cost.reliability_usd", "Reliability (failures, SLO misses)"),
    ("cost.api_usd", "API spend (overflow)"),
    ("cost.fixed_usd", "Fixed = compute + engineering + infra"),
    ("cost.total_usd", "Total hybrid"),
)


def _cost_table(summary: Summary, meta: Mapping[str, Any]) -> Table:
    cols = [Column("layer", "Layer"), Column("mean", "Mean (95% CI)", "usd", "$/month"),
            Column("p5", "p5", "usd", "$/month"), Column("p50", "p50", "usd", "$/month"),
            Column("p95", "p95", "usd", "$/month")]
    table = Table("cost", "Monthly cost (USD per 30-day month)", cols)
    rows: Sequence[tuple[str, str]] = _COST_ROWS
    if meta.get("pools"):
        rows = (("cost.compute_usd", "Compute (pools: reserved all month, others as billed)"),
                *_COST_ROWS[1:])
    model = meta.get("api_only_model")
    rows = (*rows, ("cost.api_only_usd", f"API-only alternative ({model or 'the API'})"),
            ("cost.savings_usd", "Savings vs API-only (negative: hybrid costs more)"))
    for key, label in rows:
        e = _entry(summary, key)
        table.rows.append({"layer": label, "key": key, "mean": _v(summary, key),
                           **{p: (e.get(p) if e else None) for p in ("p5", "p50", "p95")}})
    per_m = _v(summary, "cost.usd_per_1m_tokens")
    be = _v(summary, "cost.breakeven_tokens_per_month")
    notes = []
    if per_m.defined:
        notes.append(f"Hybrid cost per 1M tokens served: {interval_text(per_m, 'usd')}.")
    if be.defined:
        notes.append(f"Break-even volume: {interval_text(be, 'count')} tokens/month.")
    notes.append("p5/p50/p95: the spread of single months (traffic and cost inputs).")
    table.note = " ".join(notes)
    return table


def _notes(meta: Mapping[str, Any], horizon_s: float, to_month: float) -> list[str]:
    notes = []
    if meta.get("pools"):
        billing = str(meta.get("billing", "per_second")).replace("_", " ")
        notes.append(f"Compute: reserved pools are billed all month; on-demand and spot "
                     f"replicas from request (cold start included) to release, {billing}, "
                     f"scaled from the {format_duration(horizon_s)} horizon by "
                     f"x{to_month:.3g}; failed replicas stay billed while repaired. After the "
                     "horizon the fleet stays as it is while the backlog drains.")
    elif math.isclose(horizon_s, SECONDS_PER_MONTH):
        notes.append("Costs per 30-day month (720 h); compute is billed for the whole fleet, "
                     "idle or busy.")
    else:
        notes.append(f"Costs per 30-day month (720 h): compute is billed for the whole fleet "
                     f"all month; usage costs (API, reliability) and volumes are scaled from "
                     f"the {format_duration(horizon_s)} horizon by x{to_month:.3g}.")
    notes.extend(str(n) for n in meta.get("notes", []) or [])
    return [f"Note: {n}" for n in notes]

"""Renderings of a :class:`~sim.study.validate.ValidationReport`: an 80-column text table,
Markdown (the body of docs/fidelity.md) and JSON-ready data.

Errors are signed, ``simulated / measured - 1``, in percent with one decimal; latencies in
milliseconds. ``E2E*`` marks an end-to-end latency implied by published mean TTFT and TPOT
(the source publishes no E2E; see :mod:`sim.study.validate`).
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

from sim.study.validate import (
    METRICS,
    OVERLOAD_TTFT_SHARE,
    PointResult,
    TheoryCheck,
    ValidationReport,
)

__all__ = ["to_text", "to_markdown", "to_data", "short_set", "TARGETS", "OTHERS"]

# Issue #20: median absolute error of derived profiles; issue #21: fitted, held-back points.
TARGETS = {"ttft": 0.25, "tpot": 0.15, "e2e": 0.15}
FIT_TARGET = 0.10
# Published medians of absolute error against real vLLM (E2E / TTFT / ITL), as cited in
# issue #19; ITL is set beside capsim's TPOT.
OTHERS = (("BLIS (trained coefficients)", 0.17, 0.12, 0.20),
          ("LLMServingSim", 0.19, 0.73, 0.22),
          ("NVIDIA AIConfigurator", 0.12, 6.53, 0.25))
_SHORT = (("inferencex-vllm-llama31-70b-fp8-", "ix-70b-"),
          ("inferencex-vllm-gptoss120b-mxfp4-", "ix-oss120b-"),
          ("llmservingsim-vllm0190-", "lss-"))
_NAMES = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "E2E"}


def short_set(set_id: str) -> str:
    """A set id shortened for the 80-column table."""
    for long, short in _SHORT:
        if set_id.startswith(long):
            return short + set_id[len(long):]
    return set_id if len(set_id) <= 28 else set_id[:25] + "..."


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 100:+.1f}%"


def _abs_pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 100:.1f}%"


def _ms(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x * 1e3:.1f}"


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def _theory_lines(checks: list[TheoryCheck]) -> list[str]:
    out = ["Queueing-theory self-checks (simulated mean, 95% CI over replications; pass ="
           " theory within 3.3 standard errors, or within rounding for exact identities)"]
    for c in checks:
        out.append("  " + c.name)
        out.append(f"    {c.quantity}: theory {c.theory:.4g} {c.unit}, simulated "
                   f"{c.simulated:.4g} [{c.ci_low:.4g}, {c.ci_high:.4g}]  "
                   f"{'pass' if c.passed else 'FAIL'}")
    return out


def _point_row(p: PointResult) -> str:
    e2e = _pct(p.error("e2e")) + ("*" if p.e2e_implied else " ")
    return (f"{short_set(p.set_id):<28} {p.load:<8} {_pct(p.error('ttft')):>8} "
            f"{_pct(p.error('tpot')):>8} {e2e:>9}  {_yn(p.overloaded_measured)}/"
            f"{_yn(p.overloaded_simulated)}")


def _summary_lines(r: ValidationReport) -> list[str]:
    match, miss = r.overload_counts()
    out = [f"Median |error| over {len(r.points)} load points "
           f"(target TTFT <= 25%, TPOT and E2E <= 15%):"]
    for m in METRICS:
        med = r.median_abs(m)
        ok = "met" if med <= TARGETS[m] else "MISSED"
        extra = ""
        if m == "e2e":
            extra = (f" (published E2E: {_abs_pct(r.median_abs('e2e', implied=False))}, "
                     f"implied E2E*: {_abs_pct(r.median_abs('e2e', implied=True))})")
        out.append(f"  {_NAMES[m]:<5} {_abs_pct(med):>7}  {ok}{extra}")
    out.append(f"Overload calls: {match} matched, {miss} mismatched (overloaded = mean TTFT > "
               f"{OVERLOAD_TTFT_SHARE:.0%} of mean E2E)")
    out.append("Others, median |error| E2E/TTFT/ITL against real vLLM (published): "
               + "; ".join(f"{n} {e:.0%}/{t:.0%}/{i:.0%}" for n, e, t, i in OTHERS))
    return out


def to_text(r: ValidationReport) -> str:
    """The report for a terminal, at most 80 columns wide."""
    lines: list[str] = []
    if r.theory:
        lines += _theory_lines(r.theory) + [""]
    if r.points:
        lines.append("Fidelity: derived profiles (no fitting), each load point replayed as run;"
                     " error = sim/meas - 1")
        lines.append(f"{'set':<28} {'load':<8} {'TTFT':>8} {'TPOT':>8} {'E2E':>9}  overload")
        lines += [_point_row(p) for p in r.points]
        lines.append("(* E2E implied by published mean TTFT and TPOT; overload = measured/"
                     "simulated)")
        lines.append("")
        lines.append("Per set, median |error| TTFT / TPOT / E2E:")
        for sid, pts in r.by_set().items():
            meds = " / ".join(_abs_pct(r.median_abs(m, pts)) for m in METRICS)
            lines.append(f"  {short_set(sid):<28} {meds}")
        lines.append("")
        lines += _summary_lines(r)
    if r.fitted:
        lines += ["", "Fitted profiles (issue #21): fit on some points, error on held-back "
                  "points", f"{'set':<28} {'fit on c=':<10} {'held':<6} {'TTFT':>8} "
                  f"{'TPOT':>8} {'E2E':>9}"]
        for f in r.fitted:
            p = f.point
            lines.append(f"{short_set(f.set_id):<28} {f.fitted_on:<10} {p.load:<6} "
                         f"{_pct(p.error('ttft')):>8} {_pct(p.error('tpot')):>8} "
                         f"{_pct(p.error('e2e')) + ('*' if p.e2e_implied else ''):>9}")
        lines.append("  median |error| TTFT / TPOT / E2E: " + " / ".join(
            _abs_pct(r.fitted_median_abs(m)) for m in METRICS) + " (target <= 10%)")
    if r.fit_refused:
        lines += ["Fits refused (no fitted row):"]
        lines += [f"  {x.set_id}: {x.reason}" for x in r.fit_refused]
    if r.excluded:
        lines += ["", "Not represented (excluded):"]
        lines += [f"  {x.set_id} ({x.points} points): {x.reason}" for x in r.excluded]
    return "\n".join(_wrap(line) for line in lines)


def _wrap(line: str, width: int = 80) -> str:
    """A long line wrapped at ``width``, continuations indented under its text."""
    if len(line) <= width:
        return line
    lead = len(line) - len(line.lstrip())
    return "\n".join(textwrap.wrap(line, width, initial_indent="",
                                   subsequent_indent=" " * (lead + 4)))


def _md_point(p: PointResult) -> str:
    cells = [p.set_id, p.load, p.stat]
    for m in METRICS:
        star = "*" if m == "e2e" and p.e2e_implied else ""
        cells += [_ms(p.measured.get(m)) + star, _ms(p.simulated.get(m)) + star,
                  _pct(p.error(m))]
    cells += [_yn(p.overloaded_measured), _yn(p.overloaded_simulated)]
    return "| " + " | ".join(cells) + " |"


POINT_HEADER = ("| set | load | stat | TTFT meas ms | TTFT sim ms | TTFT err | TPOT meas ms | "
                "TPOT sim ms | TPOT err | E2E meas ms | E2E sim ms | E2E err | overloaded "
                "meas | overloaded sim |")


def to_markdown(r: ValidationReport) -> str:
    """Markdown sections: theory, per-point table, per-set and overall medians, the
    comparison with other simulators, fitted profiles, excluded sets."""
    out: list[str] = []
    if r.theory:
        out += ["### Queueing-theory self-checks", "",
                "| check | quantity | theory | simulated | 95% CI | pass |",
                "|---|---|---|---|---|---|"]
        out += [f"| {c.name} | {c.quantity} ({c.unit}) | {c.theory:.4g} | {c.simulated:.4g} | "
                f"[{c.ci_low:.4g}, {c.ci_high:.4g}] | {'pass' if c.passed else 'FAIL'} |"
                for c in r.theory]
        out.append("")
    if r.points:
        match, miss = r.overload_counts()
        out += ["### Overall (derived profiles, no fitting)", "",
                "| metric | median abs error | load points | target (issue #20) | met |",
                "|---|---|---|---|---|"]
        for m in METRICS:
            n = sum(not math.isnan(p.error(m)) for p in r.points)
            med = r.median_abs(m)
            out.append(f"| {_NAMES[m]} | {_abs_pct(med)} | {n} | <= {TARGETS[m]:.0%} | "
                       f"{'yes' if med <= TARGETS[m] else 'no'} |")
        n_pub = sum(not p.e2e_implied and not math.isnan(p.error('e2e')) for p in r.points)
        out += [f"| E2E, published only | {_abs_pct(r.median_abs('e2e', implied=False))} | "
                f"{n_pub} | | |",
                f"| E2E*, implied only | {_abs_pct(r.median_abs('e2e', implied=True))} | "
                f"{len(r.points) - n_pub} | | |",
                f"| overload calls | {match} matched, {miss} mismatched | {len(r.points)} | "
                "all matched | " + ("yes" if miss == 0 else "no") + " |", "",
                "Beside the published medians of other simulators against real vLLM "
                "(issue #19; their ITL beside our TPOT):", "",
                "| simulator | E2E | TTFT | ITL / TPOT |", "|---|---|---|---|",
                f"| capsim, derived (this table) | {_abs_pct(r.median_abs('e2e'))} | "
                f"{_abs_pct(r.median_abs('ttft'))} | {_abs_pct(r.median_abs('tpot'))} |"]
        if r.fitted:
            out.append(f"| capsim, fitted (held-back points) | "
                       f"{_abs_pct(r.fitted_median_abs('e2e'))} | "
                       f"{_abs_pct(r.fitted_median_abs('ttft'))} | "
                       f"{_abs_pct(r.fitted_median_abs('tpot'))} |")
        out += [f"| {n} | {e:.0%} | {t:.0%} | {i:.0%} |" for n, e, t, i in OTHERS]
        out += ["", "### Per set (median abs error)", "",
                "| set | points | TTFT | TPOT | E2E | overload calls matched |",
                "|---|---|---|---|---|---|"]
        for sid, pts in r.by_set().items():
            ok = sum(p.overloaded_measured == p.overloaded_simulated for p in pts)
            out.append(f"| {sid} | {len(pts)} | " + " | ".join(
                _abs_pct(r.median_abs(m, pts)) for m in METRICS) + f" | {ok}/{len(pts)} |")
        out += ["", "### Per load point", "", POINT_HEADER,
                "|" + "---|" * (POINT_HEADER.count("|") - 1)]
        out += [_md_point(p) for p in r.points]
        out.append("")
    if r.fitted:
        out += ["### Fitted profiles (issue #21): held-back points only", "",
                "| set | fitted on (concurrency) | terms fitted | held-back point | TTFT meas ms | "
                "TTFT fitted ms | TTFT err | TPOT meas ms | TPOT fitted ms | TPOT err | E2E* err "
                "| derived TTFT / TPOT err |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for f in r.fitted:
            p, d = f.point, f.derived
            dtxt = f"{_pct(d.error('ttft'))} / {_pct(d.error('tpot'))}" if d else "-"
            out.append(f"| {f.set_id} | {f.fitted_on} | {f.parameters} | {p.load} | "
                       f"{_ms(p.measured['ttft'])} | "
                       f"{_ms(p.simulated['ttft'])} | {_pct(p.error('ttft'))} | "
                       f"{_ms(p.measured['tpot'])} | {_ms(p.simulated['tpot'])} | "
                       f"{_pct(p.error('tpot'))} | {_pct(p.error('e2e'))} | {dtxt} |")
        out += ["", "| metric | median abs error, held-back points | target (issue #21) | met |",
                "|---|---|---|---|"]
        for m in METRICS:
            med = r.fitted_median_abs(m)
            out.append(f"| {_NAMES[m]} | {_abs_pct(med)} | <= {FIT_TARGET:.0%} | "
                       f"{'yes' if med <= FIT_TARGET else 'no'} |")
        out.append("")
    if r.fit_refused:
        out += ["Fits refused by sim/profiles/fit.py (no fitted row for these sets):", ""]
        out += [f"- {x.set_id}: {x.reason}" for x in r.fit_refused]
        out.append("")
    if r.excluded:
        out += ["### Sets not represented", "", "| set | points | why |", "|---|---|---|"]
        out += [f"| {x.set_id} | {x.points} | {x.reason} |" for x in r.excluded]
        out.append("")
    return "\n".join(out)


def _point_data(p: PointResult) -> dict[str, Any]:
    return {"set_id": p.set_id, "load": p.load, "stat": p.stat, "requests": p.requests,
            "measured_s": p.measured, "simulated_s": p.simulated,
            "error": {m: (None if math.isnan(e := p.error(m)) else e) for m in METRICS},
            "e2e_implied": p.e2e_implied, "overloaded_measured": p.overloaded_measured,
            "overloaded_simulated": p.overloaded_simulated}


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def to_data(r: ValidationReport) -> dict[str, Any]:
    """Plain data for ``--format json`` (NaN written as null)."""
    match, miss = r.overload_counts()
    return {
        "full": r.full, "sets": r.sets,
        "theory": [{"name": c.name, "quantity": c.quantity, "unit": c.unit,
                    "theory": c.theory, "simulated": c.simulated,
                    "ci95": [c.ci_low, c.ci_high], "passed": c.passed} for c in r.theory],
        "points": [_point_data(p) for p in r.points],
        "median_abs_error": {m: _finite(r.median_abs(m)) for m in METRICS},
        "targets": TARGETS,
        "overload": {"matched": match, "mismatched": miss,
                     "rule": f"mean TTFT > {OVERLOAD_TTFT_SHARE} x mean E2E"},
        "fitted": [{"set_id": f.set_id, "fitted_on_concurrency": f.fitted_on,
                    **_point_data(f.point)} for f in r.fitted],
        "fitted_median_abs_error": {m: _finite(r.fitted_median_abs(m)) for m in METRICS},
        "fit_refused": [{"set_id": x.set_id, "reason": x.reason} for x in r.fit_refused],
        "excluded": [{"set_id": x.set_id, "points": x.points, "reason": x.reason}
                     for x in r.excluded],
    }

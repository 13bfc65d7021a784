"""The benchmark command: ``python -m benchmarks [--quick] [--only NAME] [--repeat N]``.

Prints the machine, then one table of every case's measurements with targets beside them
(PASS/MISS) and each case's peak RSS. Exit status 0 unless a case crashed: missing a
target is a finding, not a failure. A case whose part of the simulator is not importable
reports 'unavailable: <reason>'.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable

from rich.console import Console

from . import fleet, instructions, memory, mm8, pipeline
from .common import Settings
from .machine import machine_info, peak_rss_mb, reset_peak_rss
from .report import Row, render, write_json
from .scenario import Unavailable

__all__ = ["CASES", "main"]

CASES: dict[str, Callable[[Settings], list[Row]]] = {
    "mm8": mm8.run,
    "pipeline": pipeline.run_pipeline,
    "fleet-scale": fleet.run,
    "memory": memory.run,
    "montecarlo": pipeline.run_montecarlo,
    "instructions": instructions.run,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller cases, one run each (CI smoke: ~25 s, plus ~2 min for "
                         "the Valgrind-counted instructions case)")
    ap.add_argument("--only", action="append", choices=sorted(CASES), metavar="NAME",
                    help=f"run only this case (repeatable): {', '.join(CASES)}")
    ap.add_argument("--repeat", type=int, default=None, metavar="N",
                    help="runs per timing, median reported (default 3; 1 with --quick)")
    ap.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    return ap.parse_args(argv)


def run_case(name: str, settings: Settings, console: Console) -> tuple[list[Row], bool]:
    """Run one case; returns its rows (with peak RSS) and whether it crashed."""
    fn = CASES[name]
    reset_ok = reset_peak_rss()
    t0 = time.perf_counter()
    crashed = False
    try:
        rows = fn(settings)
    except Unavailable as exc:
        rows = [Row(name, "status", f"unavailable: {exc}", status="n/a")]
    except Exception as exc:  # report, keep going, exit non-zero at the end
        console.print(f"[bold red]{name} crashed:[/]\n{traceback.format_exc()}")
        rows = [Row(name, "status", f"crashed: {type(exc).__name__}: {exc}", status="ERROR")]
        crashed = True
    wall = time.perf_counter() - t0
    rss_note = "this process" if reset_ok else "this process since start (no reset)"
    if name == "memory":
        rss_note += "; the measured runs are in child processes (above)"
    elif name == "montecarlo":
        rss_note += "; workers not included"
    rows.append(Row(name, "peak RSS", peak_rss_mb(), "MB", note=rss_note))
    console.log(f"{name}: done in {wall:.1f} s")
    return rows, crashed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    settings = Settings(quick=args.quick, repeat=max(1, repeat))
    names = list(dict.fromkeys(args.only)) if args.only else list(CASES)
    console = Console()
    if not console.is_terminal:  # piped or redirected: don't wrap at 80 columns
        console = Console(width=170)
    machine = machine_info()
    console.print(f"[bold]machine:[/] {machine['platform']}, Python {machine['python']}, "
                  f"{machine['cpu']}, {machine['cores']} cores usable "
                  f"({machine['cpu_count']} online)")
    console.print(f"[bold]settings:[/] {'quick' if settings.quick else 'full'}, "
                  f"median of {settings.repeat} run(s), cases: {', '.join(names)}")
    rows: list[Row] = []
    crashed = False
    for name in names:
        case_rows, failed = run_case(name, settings, console)
        rows += case_rows
        crashed |= failed
    render(rows, console)
    if args.json:
        write_json(args.json, machine, {"quick": settings.quick, "repeat": settings.repeat,
                                        "cases": names}, rows)
        console.print(f"wrote {args.json}")
    return 1 if crashed else 0

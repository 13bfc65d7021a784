"""Generate ``docs/example-output.md``: what capsim prints, from real runs of the CLI.

Each example is a ``capsim`` command run through ``python -m sim.cli`` with
``--format markdown`` into a temporary folder; its output is pasted into the page under
the command line that made it (plot links are dropped: the plots are in the results
folder and embedded in its ``report.html``). Nothing is edited by hand, so the page shows
the current report layout and real numbers.

``--check FILE`` regenerates the examples on a short horizon (numbers differ, the layout
does not) and compares the *structure* of the two pages: the commands, headings, table
headers and the kinds of verdict line (``Fleet:``, ``Cost:``...). It fails when a report
gained, lost or renamed a table, a column or a verdict line, i.e. when the page is out
of date; ``tests/test_example_output.py`` runs it.

Usage::

    python tools/example_output.py --write docs/example-output.md   # full runs (minutes)
    python tools/example_output.py --check docs/example-output.md   # short runs
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EXAMPLES: list[tuple[str, list[str], list[str]]] = [
    ("The default experiment (`capsim run`): one month, 20 replications",
     ["run"], []),
    ("A capacity plan: the cheapest fleet with a p99 TTFT of 2 s, against API-only",
     ["plan", "default", "--set", "horizon=7d", "-n", "5", "--slo",
      "interactive.ttft_p99_s=2", "--over", "fleet.replicas=1..6"],
     ["--precision", "off", "--over", "fleet.replicas=1..2"]),
    ("What exists (`capsim list`)", ["list", "experiments"], []),
]
"""(title, capsim arguments, extra arguments of the short ``--check`` run)."""

QUICK = ["--set", "horizon=2h", "-n", "2"]
"""Added to every simulating command of the short ``--check`` run."""

_KINDS = ("Fleet", "Traffic", "GPUs", "Failures", "Overflow", "Cost")
"""Verdict lines of a run that every run prints (others depend on the outcome)."""
_CONDITIONAL = ("Failed requests by reason", "| Reason |")
"""Shown only when something failed: not part of the structure compared."""


def _capsim(args: list[str], out: Path | None) -> str:
    cmd = [sys.executable, "-m", "sim.cli", *args, "--format", "markdown"]
    if out is not None:
        cmd += ["--out", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if res.returncode not in (0, 1):  # plan exits 1 when nothing is feasible
        raise SystemExit(f"capsim {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
    text = "\n".join(x for x in res.stdout.splitlines() if not x.startswith("!["))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _demote(markdown: str) -> str:
    """Headings one level down (the page has its own title)."""
    return re.sub(r"^(#+) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", markdown,
                  flags=re.M)


def generate(quick: bool = False) -> str:
    """The page (``quick``: short runs, for :func:`structure` checks)."""
    parts = ["# Example output",
             "",
             "What `capsim` prints, pasted from real runs by `tools/example_output.py` "
             f"(generated {datetime.now(UTC).strftime('%Y-%m-%d')}; "
             "`tests/test_example_output.py` checks that the layout is current). The "
             "reports are shown with `--format markdown`; on a terminal the same report is a "
             "table that wraps or stacks at any width without cutting a number, and in the "
             "results folder it is `report.html` (with the plots) and `report.json`.",
             ""]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (title, args, extra) in enumerate(EXAMPLES):
            simulates = args[0] in ("run", "plan", "sweep", "breakeven", "compare")
            argv = [*args, *(QUICK if quick and simulates else []),
                    *(extra if quick else [])]
            shown = " ".join(_quote(a) for a in args)
            out = Path(tmp) / f"example-{i}" if simulates else None
            parts += [f"## {title}", "", "```", f"$ capsim {shown}", "```", "",
                      _demote(_capsim(argv, out)), ""]
    return "\n".join(parts).rstrip() + "\n"


def _quote(arg: str) -> str:
    return f"'{arg}'" if re.search(r"[<>|&;() ]", arg) else arg


def structure(page: str) -> list[str]:
    """What must not change between the page and a fresh run: the commands, headings,
    table headers and the kinds of verdict line, in order (numbers and names of
    outcomes left out)."""
    out = []
    lines = page.splitlines()
    for i, line in enumerate(lines):
        s = re.sub(r"^\*\*Warning:\*\* ", "", line.strip()).strip("*_")
        if any(c in line for c in _CONDITIONAL):
            continue
        if line.startswith("$ capsim"):
            out.append(line.split(" --set")[0])
        elif line.startswith("#"):
            out.append(re.sub(r"\d[\d,.]*", "N", line) if "replications" in line
                       else line)
        elif line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|-"):
            out.append(line)
        else:
            kind = next((k for k in _KINDS if s.startswith(k)), None)
            if kind and kind not in out:
                out.append(kind)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="write the page here (full runs)")
    group.add_argument("--check", type=Path, help="compare this page's structure with "
                       "short runs")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(generate(), encoding="utf-8")
        print(f"wrote {args.write}")
        return
    want, got = structure(args.check.read_text(encoding="utf-8")), structure(
        generate(quick=True))
    if want != got:
        missing = [x for x in got if x not in want]
        extra = [x for x in want if x not in got]
        raise SystemExit(f"{args.check} is out of date: regenerate it with "
                         f"python tools/example_output.py --write {args.check}\n"
                         f"  new in the reports: {missing}\n  no longer there: {extra}")
    print(f"{args.check} is current")


if __name__ == "__main__":
    main()

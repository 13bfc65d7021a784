"""``python -m tests.fuzz [--cases N] [--seed S] [--corpus-only]``: a fuzz campaign.

Runs the regression corpus, then ``N`` generated cases (Hypothesis strategies over the
experiment schema and mutations of the shipped files; see :mod:`tests.fuzz.strategies`),
each through :class:`tests.fuzz.pool.Runner`, and prints every contract violation and a
one-line tally: cases, refusals, successes, violations by kind, slowest case.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.fuzz.contract import problems
from tests.fuzz.corpus import load_corpus
from tests.fuzz.pool import Runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--cases", type=int, default=1000, help="generated cases")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--corpus-only", action="store_true")
    parser.add_argument("--only", default=None, help="corpus case ids, comma-separated")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    tally = {"cases": 0, "ok": 0, "refused": 0, "violations": 0}
    slowest = (0.0, "")
    case_s = 0.0
    with Runner() as runner:
        cases = load_corpus()
        if args.only:
            cases = [c for c in cases if c.id in args.only.split(",")]
        if not args.corpus_only:
            from tests.fuzz.strategies import generated_cases

            cases = [*cases, *generated_cases(args.cases, seed_value=args.seed)]
        for case in cases:
            out = runner.run(case)
            found = problems(case, out)
            tally["cases"] += 1
            if out.code == 0:
                tally["ok"] += 1
            elif out.code == 2:
                tally["refused"] += 1
            case_s += out.wall_s
            if out.wall_s > slowest[0]:
                slowest = (out.wall_s, case.id)
            if found:
                tally["violations"] += 1
                last = (out.stderr.strip().splitlines() or [""])[-1][:300]
                print(f"FAIL {case.id}: {'; '.join(found)} [{last}]", flush=True)
    print(f"{tally['cases']} cases in {time.perf_counter() - t0:.0f} s ({case_s:.0f} s in "
          f"the cases): {tally['ok']} ran, "
          f"{tally['refused']} refused in one line, {tally['violations']} violations; "
          f"slowest {slowest[0]:.1f} s ({slowest[1]})")
    return 1 if tally["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""The fuzz suite of issue #23 in CI: generated hostile cases against the contract.

1,000 cases (``CAPSIM_FUZZ_CASES`` to change; a fixed seed, so CI sees the same cases):
Hypothesis strategies over the experiment schema and mutations of the shipped
experiments, workloads, LiteLLM config and a price table (:mod:`tests.fuzz.strategies`),
each run in a worker process under a 2 GiB address-space limit and a 20 s time limit.
Every case must be a clean refusal (exit 2, one ``capsim: error:`` line) or a success
with finite costs and shares within [0, 1]; a traceback, a hang, a memory error or an
out-of-range result fails the test with the list of cases. The longer campaign is
``python -m tests.fuzz --cases 10000`` (README, Development).
"""

from __future__ import annotations

import os
from collections import Counter

from tests.fuzz.contract import problems
from tests.fuzz.pool import Runner
from tests.fuzz.strategies import generated_cases

CASES = int(os.environ.get("CAPSIM_FUZZ_CASES", "1000"))


def test_generated_cases_meet_the_contract() -> None:
    cases = generated_cases(CASES, seed_value=23)
    assert len(cases) == CASES
    kinds = Counter(case.id.split("#")[0].split(":")[0] for case in cases)
    assert kinds["schema"] > CASES // 4 and kinds["mutation"] > CASES // 10, kinds
    failures: list[str] = []
    codes: Counter[int | None] = Counter()
    with Runner() as runner:
        for case in cases:
            out = runner.run(case)
            codes[out.code] += 1
            found = problems(case, out)
            if found:
                last = (out.stderr.strip().splitlines() or [""])[-1][:200]
                failures.append(f"{case.id}: {'; '.join(found)[:300]} [{last}]")
    print(f"fuzz: {len(cases)} cases, exit statuses {dict(codes)}")
    assert not failures, f"{len(failures)} contract violations:\n" + "\n".join(failures[:20])
    assert codes[0] > 0 and codes[2] > 0  # both successes and refusals were exercised

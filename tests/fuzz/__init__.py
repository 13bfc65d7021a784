"""The hostile-input suite of issue #23: capsim's contract, checked case by case.

The contract (README, "Bad input"): given any input, a command either succeeds with
finite, in-range results, or exits 2 with one ``capsim: error:`` line (three at most);
never a traceback, never a hang, never memory beyond what the run needs.

* :mod:`tests.fuzz.contract` - a case (argv, files, expectations) and the checks of one
  outcome (exit code, lines, traceback, results finite and in range);
* :mod:`tests.fuzz.worker` - runs cases in a child process under an address-space limit
  (``RLIMIT_AS``), in-process through the click entry point (no start-up per case);
* :mod:`tests.fuzz.pool` - the parent side: sends cases, enforces the time limit,
  restarts a worker that died;
* :mod:`tests.fuzz.corpus` - the regression corpus (``tests/corpus/why.yaml``: every
  example in the issue's "Why");
* :mod:`tests.fuzz.strategies` - Hypothesis strategies over the experiment schema and
  mutations of the shipped experiments, workloads, LiteLLM configs and a price table.

``python -m tests.fuzz --cases 10000`` runs a long campaign (README, Development).
"""

"""The parent side of the fuzz suite: a worker process that runs cases one at a time.

:class:`Runner` starts ``python -m tests.fuzz.worker`` (see there), sends it cases and
reads outcomes; a case that takes longer than the time limit kills the worker (a hang),
and a worker that dies (killed by the kernel, a crash) or a case that breaks the contract
restarts the worker for the next case, as does every 500th case.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzz.contract import TIME_LIMIT_S, Case, Outcome

__all__ = ["Runner", "REPO"]

REPO = Path(__file__).resolve().parents[2]
_START_S = 120.0
_RESTART_EVERY = 500  # cases per worker (caches and the heap stay small)


class Runner:
    """Runs cases in a worker process, each in a fresh folder under ``root``."""

    def __init__(self, root: Path | None = None, *, time_limit_s: float = TIME_LIMIT_S):
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="fuzz-")
        self.root = Path(root if root is not None else self._tmp.name)
        self.time_limit_s = time_limit_s
        self._proc: subprocess.Popen[str] | None = None
        self._count = 0

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _start(self) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120"}
        env.pop("CAPSIM_DEBUG", None)
        proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.worker"], cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=env)
        line = self._read(proc, _START_S)
        if line is None or not json.loads(line).get("ready"):
            proc.kill()
            raise RuntimeError("the fuzz worker did not start")
        return proc

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    @staticmethod
    def _read(proc: subprocess.Popen[str], timeout_s: float) -> str | None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        if not ready:
            return None
        return proc.stdout.readline() or None

    def run(self, case: Case) -> Outcome:
        """Run ``case`` (sandboxed two folders deep, so ``../..`` stays under root)."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        self._count += 1
        folder = self.root / f"s{self._count}" / "a" / "b" / "case"
        request = json.dumps({"case": case.to_json(), "folder": str(folder)})
        assert self._proc.stdin is not None
        t0 = time.perf_counter()
        try:
            self._proc.stdin.write(request + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._stop()
            return Outcome(None, died="the worker died before the case", folder=str(folder))
        line = self._read(self._proc, self.time_limit_s)
        wall_s = time.perf_counter() - t0
        if line is None:
            status = self._proc.poll()
            self._stop()
            why = (f"hang: no answer in {self.time_limit_s:g} s" if status is None
                   else f"the worker died (status {status})")
            return Outcome(None, wall_s=wall_s, died=why, folder=str(folder))
        data = json.loads(line)
        if data["code"] not in (0, 2) or self._count % _RESTART_EVERY == 0:
            self._stop()  # a fresh worker: one broken case must not spoil the next ones
        return Outcome(data["code"], data["stdout"], data["stderr"], data["exception"],
                       data["wall_s"], None, data["folder"])

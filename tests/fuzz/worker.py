"""A worker process that runs cases in-process, under an address-space limit.

``python -m tests.fuzz.worker`` reads one JSON case a line on stdin (``{"case": ...,
"folder": ...}``), runs ``capsim ARGV`` through the click entry point inside that folder
with stdout and stderr captured, and answers one JSON :class:`~tests.fuzz.contract.Outcome`
a line. ``RLIMIT_AS`` is set before capsim is imported, so a runaway allocation is a
MemoryError (a failed case), not a machine in swap. The parent enforces the time limit.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["run_one", "main"]


def run_one(case: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run one case in ``folder`` (created, files written) and describe what happened."""
    import click

    from sim.cli import main as cli
    from tests.fuzz.contract import materialize

    folder.mkdir(parents=True, exist_ok=True)
    materialize(case, folder)
    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    exception = None
    saved_env = {k: os.environ.get(k) for k in case.get("env", {})}
    os.environ.update(case.get("env", {}))
    cwd = os.getcwd()
    t0 = time.perf_counter()
    try:
        os.chdir(folder)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(list(case["argv"]), prog_name="capsim", standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except click.exceptions.Exit as exc:
                code = exc.exit_code
    except BaseException as exc:  # noqa: BLE001 - an escaped exception is the finding
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
        exception = f"{type(exc).__name__}: {str(exc)[:300]}{where}"
    finally:
        os.chdir(cwd)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"code": code, "stdout": out.getvalue()[-20000:], "stderr": err.getvalue()[-5000:],
            "exception": exception, "wall_s": time.perf_counter() - t0,
            "folder": str(folder)}


def main() -> None:
    limit = int(os.environ.get("CAPSIM_FUZZ_AS_LIMIT", 2 * 1024**3))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    import sim.cli  # noqa: F401 - import once, before the first case
    import sim.experiment.run  # noqa: F401
    import sim.study.sweep  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        result = run_one(request["case"], Path(request["folder"]))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

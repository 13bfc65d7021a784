"""Helpers for tests that start the CLI in a child process and interrupt it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

__all__ = ["default_sigint", "wait_for_children"]


def default_sigint() -> None:
    """``preexec_fn``: SIGINT back to its default action in the child.

    A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    across exec; Python then installs no KeyboardInterrupt handler and a test's Ctrl-C never
    arrives (the run finishes with status 0). Resetting it makes the interrupt tests
    independent of how the test runner was started.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_children(pid: int, timeout_s: float = 120.0) -> bool:
    """Wait until process ``pid`` has a child process (its worker pool started).

    Interrupt tests send their signal once the run is really running, not after a fixed
    sleep: on a loaded machine the imports alone can take longer than any fixed delay.
    Returns False if the process ended or ``timeout_s`` passed first (Linux /proc only).
    """
    deadline = time.monotonic() + timeout_s
    task_dir = Path(f"/proc/{pid}/task")
    while time.monotonic() < deadline:
        try:
            children = " ".join(f.read_text() for f in task_dir.glob("*/children"))
        except OSError:
            return False
        if children.strip():
            return True
        time.sleep(0.1)
    return False

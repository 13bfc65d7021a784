"""Helpers for tests that start the CLI in a child process and interrupt it."""

from __future__ import annotations

import signal

__all__ = ["default_sigint"]


def default_sigint() -> None:
    """``preexec_fn``: SIGINT back to its default action in the child.

    A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
    across exec; Python then installs no KeyboardInterrupt handler and a test's Ctrl-C never
    arrives (the run finishes with status 0). Resetting it makes the interrupt tests
    independent of how the test runner was started.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)

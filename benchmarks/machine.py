"""The machine a benchmark ran on, and peak resident memory (RSS) measurement."""

from __future__ import annotations

import os
import platform
import resource
import sys

__all__ = ["machine_info", "cpu_cores", "reset_peak_rss", "peak_rss_mb"]


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, str | int]:
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "cpu_count": os.cpu_count() or 1,
        "step core": _step_core(),
    }


def _step_core() -> str:
    """Which step replica runs (compiled or Python, and why): it sets the speed."""
    from sim.serving.step_core import IMPLEMENTATION

    return IMPLEMENTATION


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB (10^6 bytes) since the last :func:`reset_peak_rss`
    (or since it started)."""
    kb = _status_kb("VmHWM")
    if kb is None:  # no /proc: ru_maxrss is KiB on Linux, bytes on macOS
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            kb //= 1024
    return kb * 1024 / 1e6

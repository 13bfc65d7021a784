"""Durations and times of day as users write them: ``30d``, ``6h``, ``90s``, ``"02:00"``.

All simulated times are seconds (float) from the start of the horizon, which starts on a
Monday at 00:00 (so weekday and hour-of-day effects have a fixed phase).
"""

from __future__ import annotations

import re

__all__ = ["parse_duration_s", "parse_time_of_day_s", "format_duration", "SECONDS"]

SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|d|w)?\s*$")


def parse_duration_s(value: object) -> float:
    """Seconds from ``30d``, ``6h``, ``15m``, ``90s``, ``250ms`` or a bare number of seconds.

    Raises ValueError with a readable message (wrapped into a ConfigError by the loader).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30d' or '6h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|min|m|h|d|w)?", text)
        joined = "".join(a + (b or "") for a, b in parts)
        if not parts or joined != text.replace(" ", ""):
            raise ValueError(f"cannot parse duration {value!r} "
                             "(use e.g. '30d', '6h', '15m', '90s')")
        seconds = sum(float(num) * SECONDS[unit or "s"] for num, unit in parts)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError("duration must be a finite, non-negative number of seconds, "
                         f"got {value!r}")
    return seconds


def parse_time_of_day_s(value: object) -> float:
    """Seconds after midnight from ``"02:00"``, ``"14:30:15"`` or a number of hours."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < 24:
            raise ValueError(f"hour of day must be in [0, 24), got {value!r}")
        return float(value) * 3600.0
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?\s*", str(value))
    if not m:
        raise ValueError(f"cannot parse time of day {value!r} (use 'HH:MM')")
    h, mnt, sec = int(m.group(1)), int(m.group(2)), float(m.group(3) or 0)
    if h > 23 or mnt > 59 or sec >= 60:
        raise ValueError(f"time of day {value!r} is out of range")
    return h * 3600.0 + mnt * 60.0 + sec


def format_duration(seconds: float) -> str:
    """A compact human form: ``30d``, ``6h``, ``1h30m``, ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60)}m"
    return f"{seconds:g}s"

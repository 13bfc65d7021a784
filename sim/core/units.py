"""Durations and times of day as users write them: ``30d``, ``1h30m``, ``90s``, ``"02:00"``.

All simulated times are seconds (float) from the start of the horizon, which starts on a
Monday at 00:00 (so weekday and hour-of-day effects have a fixed phase).

The grammar is strict, so a typo is an error rather than a different number:

* a duration is a number of seconds (``90``, ``1.5``) or one or more parts, each a number
  and a unit (``ms``, ``s``, ``m`` or ``min``, ``h``, ``d``, ``w``), in descending units
  and each unit once (``1h30m``, ``1d 2h``); only the last part may have a fraction.
  ``1 000s``, ``2 2h``, ``1.5.5h``, ``30m1h`` and the ambiguous ``1h30`` are refused;
* a time of day is ``HH:MM`` or ``HH:MM:SS`` (24-hour clock), or a number of hours in
  [0, 24).
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration_s", "parse_time_of_day_s", "format_duration", "SECONDS",
           "DURATION_FORMS"]

SECONDS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
DURATION_FORMS = ("a number and a unit (ms, s, m, h, d, w) such as '90s', '6h', '30d', "
                  "several in descending units such as '1h30m', or a number of seconds")
_NUMBER = r"(?:[0-9]+(?:\.[0-9]+)?)"
_PART = re.compile(rf"({_NUMBER})\s*(ms|min|s|m|h|d|w)")
_BARE = re.compile(rf"\s*({_NUMBER})\s*")
_RANK = {"w": 6, "d": 5, "h": 4, "m": 3, "min": 3, "s": 2, "ms": 1}


def _bad_duration(value: object) -> ValueError:
    return ValueError(f"cannot parse duration {value!r}: use {DURATION_FORMS}")


def parse_duration_s(value: object) -> float:
    """Seconds from a duration (see the module docstring for the grammar).

    Raises ValueError with a one-line message (wrapped into a ConfigError by the loader).
    """
    if isinstance(value, bool) or value is None:
        raise _bad_duration(value)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"duration of {len(str(value))} digits is too large") from None
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise _bad_duration(value)
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ValueError("duration must be a finite, non-negative number of seconds, "
                         f"got {value!r}")
    return seconds


def _parse_text(value: str) -> float:
    text = value.strip().lower()
    bare = _BARE.fullmatch(text)
    if bare:
        return float(bare.group(1))
    total, pos, last_rank, fraction = 0.0, 0, 99, False
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None or fraction:
            raise _bad_duration(value)
        number, unit = m.group(1), m.group(2)
        if _RANK[unit] >= last_rank:  # units out of order, or one unit twice
            raise _bad_duration(value)
        last_rank, fraction = _RANK[unit], "." in number
        total += float(number) * SECONDS[unit]
        pos = m.end()
        gap = re.match(r"\s*", text[pos:])
        pos += gap.end() if gap else 0
    if last_rank == 99:
        raise _bad_duration(value)
    return total


_TIME_OF_DAY = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}(?:\.[0-9]+)?))?\s*")


def parse_time_of_day_s(value: object) -> float:
    """Seconds after midnight from ``"02:00"``, ``"14:30:15"`` or a number of hours."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < 24:
            raise ValueError(f"hour of day must be a number in [0, 24), got {value!r}")
        return float(value) * 3600.0
    m = _TIME_OF_DAY.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"cannot parse time of day {value!r}: use 'HH:MM' or 'HH:MM:SS' "
                         "(24-hour clock) or a number of hours in [0, 24)")
    h, mnt, sec = int(m.group(1)), int(m.group(2)), float(m.group(3) or 0)
    if h > 23 or mnt > 59 or sec >= 60:
        raise ValueError(f"time of day {value!r} is out of range (00:00 to 23:59:59)")
    return h * 3600.0 + mnt * 60.0 + sec


def format_duration(seconds: float) -> str:
    """A compact human form: ``30d``, ``6h``, ``1h30m``, ``45s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60)}m"
    return f"{seconds:g}s"

"""`capsim profile fit` prints a term's spread only where it means something."""

from __future__ import annotations

import math

from sim.cli.profile_fit import _spread_text


def test_determined_spread_is_a_percentage():
    assert _spread_text(0.81, 0.0628) == "+-6%"


def test_a_term_at_zero_or_with_a_huge_or_missing_spread_is_undetermined():
    for value, spread in ((0.0, 0.05), (0.5, 4.6e12), (0.5, math.inf), (0.5, math.nan),
                          (0.5, None)):
        assert _spread_text(value, spread).startswith("spread undetermined"), (value, spread)

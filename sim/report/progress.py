"""The progress-bar layout shared by ``capsim run``, ``capsim sweep`` and ``capsim workload``.

A rich ``Progress`` with description, bar, done/total, any extra text columns, elapsed time
and ETA. Only the layout lives here; callers own the ``Progress`` and decide whether it is
shown (never when stderr is not a terminal).
"""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["progress_columns"]


def progress_columns(*extra: str) -> tuple[ProgressColumn, ...]:
    """Description, bar, done/total, any ``extra`` text columns, elapsed time and ETA."""
    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            *(TextColumn(t) for t in extra), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn())

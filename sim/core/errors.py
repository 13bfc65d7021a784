"""User-facing errors.

Every problem with user input (an experiment file, a profile, a trace, a ``--set``
override) is raised as :class:`ConfigError` carrying the file, the dotted field path and
what is wrong. The CLI prints ``str(error)`` as one line and exits with status 2; no
traceback ever reaches the user for bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ConfigError", "closest"]


class ConfigError(Exception):
    """Bad user input: ``file: field: message``, one line."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.message = " ".join(str(message).split())
        self.file = file
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        return ": ".join([*parts, self.message])

    def in_variant(self, name: str) -> ConfigError:
        """The same error, raised while loading the experiment's variant ``name``."""
        return ConfigError(f"variant '{name}': {self.message}", file=self.file,
                           field=self.field)

    def at(self, *, file: str | None = None, field_prefix: str | None = None) -> ConfigError:
        """The same error, located in ``file`` and/or under ``field_prefix``."""
        field = self.field
        if field_prefix:
            field = f"{field_prefix}.{field}" if field else field_prefix
        return ConfigError(self.message, file=self.file or file, field=field)


def closest(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest candidate, or an empty string."""
    options = sorted(candidates)
    match = difflib.get_close_matches(str(name), options, n=1, cutoff=0.6)
    if not match:  # a fragment of a longer name: 'rate' -> 'rate_per_s'
        match = [c for c in options if str(name).lower() in c.lower().split("_")
                 or c.lower().startswith(str(name).lower())][:1]
    return f" (did you mean '{match[0]}'?)" if match else ""

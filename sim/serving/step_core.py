"""Which implementation of the step replica runs: compiled where it matches the source.

:mod:`sim.serving.step_replica` is the model, in Python. The install compiles a copy of
it with Cython (``hatch_build.py``, types from ``step_replica.pxd``) into
``sim.serving._step_replica_c``, stamped with the SHA-256 of the two files. That module
is used only where its stamp matches the files here now, so an edited source never runs
a stale build. Both give the same numbers (the same IEEE double arithmetic, 64-bit
integers; tests/test_step_core.py replays randomized cases on both).

``CAPSIM_PURE_PYTHON=1`` in the environment selects the Python module. ``IMPLEMENTATION``
says which one runs and why (``capsim --version`` and the benchmarks print it).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType

from sim.serving import step_replica as python_module

__all__ = ["StepReplica", "Seq", "IMPLEMENTATION", "COMPILED", "compiled_module",
           "source_sha256"]

_SOURCES = ("step_replica.py", "step_replica.pxd")


def source_sha256() -> str:
    """The stamp of the source beside this module (as hatch_build.py computes it)."""
    folder = Path(python_module.__file__).parent
    h = hashlib.sha256()
    for name in _SOURCES:
        path = folder / name
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()


def compiled_module() -> tuple[ModuleType | None, str]:
    """The compiled module if it is importable and current, and why (or why not)."""
    try:
        module = importlib.import_module("sim.serving._step_replica_c")
    except ImportError:
        return None, "not built (no C compiler or Cython at install)"
    if getattr(module, "SOURCE_SHA256", None) != source_sha256():
        return None, ("stale: sim/serving/step_replica.py or .pxd changed since it was "
                      "built (rebuild: python hatch_build.py, or reinstall)")
    return module, "compiled"


def _select() -> tuple[ModuleType, str]:
    if os.environ.get("CAPSIM_PURE_PYTHON"):
        return python_module, "python (CAPSIM_PURE_PYTHON is set)"
    module, why = compiled_module()
    if module is None:
        return python_module, f"python (compiled core {why})"
    return module, "compiled (Cython)"


_module, IMPLEMENTATION = _select()
COMPILED: bool = _module is not python_module
StepReplica = _module.StepReplica
Seq = _module.Seq

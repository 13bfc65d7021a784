"""Build hook: compile the step replica's hot loop with Cython, where a compiler is present.

``sim/serving/step_replica.py`` is the model's one source; ``step_replica.pxd`` beside it
gives its variables C types. This hook compiles a copy of the two, renamed
``sim.serving._step_replica_c`` and stamped with the SHA-256 of both files, into an
extension module (about 3x faster on the benchmark month). ``sim.serving.step_core``
uses it only where the stamp matches the files next to it, so an edited source never
runs a stale build; otherwise, or where nothing could be compiled, the Python module
runs, giving the same numbers (tests/test_step_core.py).

* ``pip install .``: the module goes into the wheel (tagged for this platform).
* ``pip install -e .``: it is written into the source tree (git-ignored), where the
  editable install imports from; after editing the step replica run ``python
  hatch_build.py`` (or reinstall) to rebuild it.
* ``CAPSIM_PURE_PYTHON=1`` at build time skips compiling; a failed compile prints a
  warning and leaves a pure-Python package that works the same, slower.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "sim" / "serving"
SOURCES = ("step_replica.py", "step_replica.pxd")
MODULE = "_step_replica_c"

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run as a script without hatchling: only build_in_place is needed
    BuildHookInterface = object  # type: ignore[assignment,misc]


def source_sha256(folder: Path = PACKAGE) -> str:
    """The stamp of the step replica's source (must match sim.serving.step_core's)."""
    h = hashlib.sha256()
    for name in SOURCES:
        path = folder / name
        h.update(path.read_bytes() if path.exists() else b"")
    return h.hexdigest()


def compile_core(out_dir: Path) -> Path:
    """Compile the stamped copy; returns the extension module's path under ``out_dir``."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    with tempfile.TemporaryDirectory(prefix="capsim-core-") as tmp:
        src = Path(tmp) / "sim" / "serving"
        src.mkdir(parents=True)
        for pkg in (src.parent, src):  # packages, so the module's qualified name is right
            (pkg / "__init__.py").write_text("")
        stamp = f'\nSOURCE_SHA256 = "{source_sha256()}"\n'
        (src / f"{MODULE}.py").write_text((PACKAGE / SOURCES[0]).read_text() + stamp)
        shutil.copyfile(PACKAGE / SOURCES[1], src / f"{MODULE}.pxd")
        ext = Extension(f"sim.serving.{MODULE}", [str(src / f"{MODULE}.py")])
        modules = cythonize([ext], quiet=True, build_dir=str(Path(tmp) / "c"),
                            compiler_directives={"language_level": 3,
                                                 "annotation_typing": False})
        dist = Distribution({"name": "capsim-core", "ext_modules": modules})
        cmd = build_ext(dist)
        cmd.build_lib = str(out_dir)
        cmd.build_temp = str(Path(tmp) / "obj")
        cmd.ensure_finalized()
        cmd.run()
        return Path(cmd.get_ext_fullpath(f"sim.serving.{MODULE}"))


def build_in_place() -> Path:
    """Compile into the source tree (what an editable install imports)."""
    for old in PACKAGE.glob(f"{MODULE}.*"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="capsim-build-") as out:
        built = compile_core(Path(out))
        target = PACKAGE / built.name
        shutil.copyfile(built, target)
    return target


class CythonCoreHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatch build hook (pyproject: [tool.hatch.build.targets.wheel.hooks.custom])."""

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or os.environ.get("CAPSIM_PURE_PYTHON"):
            return
        try:
            if version == "editable":
                build_in_place()
                return
            self._out = tempfile.mkdtemp(prefix="capsim-wheel-")
            built = compile_core(Path(self._out))
        except Exception as exc:  # no compiler, no Cython: the Python module serves
            warnings.warn(f"capsim: the compiled step core was not built ({exc}); "
                          "the pure-Python step replica will run (same numbers, ~3x "
                          "slower)", stacklevel=1)
            return
        build_data["force_include"][str(built)] = f"sim/serving/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        out = getattr(self, "_out", None)
        if out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    path = build_in_place()
    print(f"built {path.relative_to(ROOT)}", file=sys.stderr)

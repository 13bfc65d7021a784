"""Writing results so that nothing a user produced is ever half-written.

Every file is written to a temporary name in the same folder and renamed into place
(``os.replace`` is atomic on POSIX, and replaces a link rather than writing through it),
so a reader sees either the previous complete file or the new complete file; the
temporary files of a killed process are removed by the next write of the same file.

A results folder (:class:`OutputDir`) appears whole or not at all: it is built beside
its target as ``.<name>.partial-<pid>`` and renamed into place when complete. An
existing non-empty target is refused unless ``overwrite``; then the old folder is moved
aside (``.<name>.old-<pid>``), the new one renamed in and the old one deleted, so the
target holds the old results or the new ones, whole. Leftovers of a killed run (a
partial folder, or an old folder moved aside whose process is gone) are cleaned by the
next run into the same target (an old folder is put back if the target is missing).
:func:`check_out_dir` does these checks before a simulation starts: a target that is a
symbolic link, a file, or under a file or an unwritable folder is refused in one line.
Names taken from experiments and variants become folder names through :func:`safe_name`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sim.core.errors import ConfigError

__all__ = ["atomic_write", "write_parquet", "write_json", "OutputDir", "check_out_dir",
           "default_out", "safe_name", "clean_leftovers"]

_MAX_NAME = 100


def safe_name(name: str, default: str = "experiment") -> str:
    """``name`` as one folder name: letters, digits, ``.``, ``_`` and ``-`` only (others
    become ``-``), no leading dots or dashes, at most 100 characters; ``default`` if
    nothing is left (``..``, ``/``, an empty or non-Latin name)."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name))
    text = re.sub(r"-{2,}", "-", text).strip("-.")[:_MAX_NAME].rstrip("-.")
    return text if text and text not in (".", "..") else default


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean_stale_temporaries(path: Path) -> None:
    """Remove temporary files of ``path`` left by killed processes (``.<name>.<pid>.*.tmp``)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\..*\.tmp")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m and not _alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p))


def write_json(path: Path, data: Any) -> None:
    def dump(p: Path) -> None:
        p.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
    atomic_write(path, dump)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# -- results folders ---------------------------------------------------------------------

def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(target: Path, kind: str) -> list[tuple[Path, int]]:
    """``(path, pid)`` of ``.<name>.<kind>-<pid>`` folders beside ``target``."""
    out = []
    pattern = re.compile(rf"\.{re.escape(target.name)}\.{kind}-(\d+)")
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return []
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m:
            out.append((p, int(m.group(1))))
    return out


def clean_leftovers(target: Path) -> None:
    """Remove what killed runs into ``target`` left: partial folders, and old folders
    moved aside (put back first if the target is missing)."""
    target = Path(target)
    for path, pid in _leftovers(target, "old"):
        if _alive(pid):
            continue
        if not os.path.lexists(target):
            os.replace(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)
    for path, pid in _leftovers(target, "partial"):
        if not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)


def _nonempty_dir(path: Path) -> bool:
    try:
        return any(True for _ in os.scandir(path))
    except OSError:
        return True


def check_out_dir(target: str | Path, *, overwrite: bool = False,
                  option: str = "--out") -> Path:
    """Refuse, before any work, an output folder that cannot be written whole: a symbolic
    link, a file, a non-empty folder without ``overwrite``, a path under a file or in a
    folder that is not writable. Cleans the leftovers of killed runs first."""
    target = Path(target)
    where = {"file": str(target), "field": option}
    if target.parent.is_dir():
        clean_leftovers(target)
    if target.is_symlink():
        raise ConfigError("is a symbolic link; capsim does not write through links "
                          "(give the folder itself)", **where)
    if target.exists():
        if not target.is_dir():
            raise ConfigError("exists and is not a folder", **where)
        if _nonempty_dir(target) and not overwrite:
            raise ConfigError("exists and is not empty; choose a new folder or pass "
                              "--overwrite to replace it whole", **where)
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        if ancestor.is_symlink():
            raise ConfigError(f"{ancestor} is a broken symbolic link", **where)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"cannot create it: {ancestor} is a file, not a folder", **where)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create it: {ancestor} is not writable", **where)
    return target


class OutputDir:
    """A results folder that appears complete or not at all (see the module docstring).

    ``with OutputDir(target) as od:`` write files under ``od.path``; on leaving the block
    without an exception the folder is renamed to ``target``; with one, it is removed. A
    write error (a full disk) becomes a one-line ConfigError.
    """

    def __init__(self, target: Path, *, overwrite: bool = False, option: str = "--out"):
        self.target = check_out_dir(target, overwrite=overwrite, option=option)
        self.option = option
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.path = self.target.parent / f".{self.target.name}.partial-{os.getpid()}"
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir()
        except OSError as exc:
            raise ConfigError(f"cannot create the results folder: {exc.strerror}",
                              file=str(self.target), field=option) from None

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
                return
            except OSError as err:
                exc = err
        shutil.rmtree(self.path, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, ConfigError):
            raise ConfigError(f"cannot write results: {exc.strerror or exc}; nothing was "
                              "written", file=str(self.target), field=self.option) from None

    def commit(self) -> None:
        """Rename the finished folder into place (replacing an old one whole)."""
        if self.path == self.target or not self.path.exists():
            return
        old = None
        if self.target.exists() and _nonempty_dir(self.target):
            old = self.target.parent / f".{self.target.name}.old-{os.getpid()}"
            os.replace(self.target, old)
        elif self.target.exists():
            self.target.rmdir()
        os.replace(self.path, self.target)
        self.path = self.target
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def default_out(parent: Path, name: str) -> Path:
    """``parent/<safe name>``, or ``-2``, ``-3``... after it when that exists already."""
    base = safe_name(name)
    out = Path(parent) / base
    k = 2
    while os.path.lexists(out):
        out = Path(parent) / f"{base}-{k}"
        k += 1
    return out

"""Writing results so that nothing a user produced is ever half-written.

Every file is written to a temporary name in the same folder and renamed into place
(``os.replace`` is atomic on POSIX), so a reader sees either the previous complete file or
the new complete file. A fresh output folder is first built under a hidden temporary name
and renamed as a whole when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["atomic_write", "write_parquet", "write_json", "OutputDir"]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


class OutputDir:
    """A results folder that appears complete or not at all.

    A new folder is assembled as ``.<name>.partial-<pid>`` next to the target and renamed
    on :meth:`commit`; if the target exists already, files are replaced one by one, each
    atomically.
    """

    def __init__(self, target: Path):
        self.target = Path(target)
        self.fresh = not self.target.exists()
        if self.fresh:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.path = self.target.parent / f".{self.target.name}.partial-{os.getpid()}"
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir()
        else:
            self.path = self.target

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        elif self.fresh:
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> None:
        if self.fresh and self.path.exists():
            os.replace(self.path, self.target)
            self.path = self.target

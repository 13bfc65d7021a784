"""docs/example-output.md is generated from real runs (tools/example_output.py) and linked
from the README; it must match the reports the code prints now (same commands, headings,
table columns and verdict lines; the numbers of a short run differ and are not compared)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "example-output.md"


def _tool():
    spec = importlib.util.spec_from_file_location("example_output",
                                                  ROOT / "tools" / "example_output.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_example_output_page_is_current():
    tool = _tool()
    want = tool.structure(PAGE.read_text(encoding="utf-8"))
    got = tool.structure(tool.generate(quick=True))
    assert want == got, ("docs/example-output.md is out of date: run python "
                         "tools/example_output.py --write docs/example-output.md")


def test_example_output_page_shows_real_numbers_and_columns():
    page = PAGE.read_text(encoding="utf-8")
    assert "$ capsim run" in page and "(30d horizon, 20 replications, seed 7)" in page
    assert "| Class | Requests (/month) |" in page and "API-only on gpt-4o" in page
    assert "fate" not in page

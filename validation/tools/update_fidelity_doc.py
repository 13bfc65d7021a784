"""Regenerate the tables of docs/fidelity.md from ``capsim validate --full``.

Usage: ``python validation/tools/update_fidelity_doc.py [MARKDOWN_FILE]`` -- replaces the text
between the BEGIN/END markers of docs/fidelity.md with MARKDOWN_FILE (the output of
``capsim validate --full --format markdown``), or runs that command when no file is given,
and stamps the date and machine line. The prose around the markers is hand-written: check
that its numbers still agree after a regeneration.
"""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "fidelity.md"
BEGIN = "<!-- BEGIN generated: capsim validate --full --format markdown -->"
END = "<!-- END generated -->"


def main() -> None:
    if len(sys.argv) > 1:
        body = Path(sys.argv[1]).read_text(encoding="utf-8")
    else:
        body = subprocess.run(["capsim", "validate", "--full", "--format", "markdown"],
                              check=True, capture_output=True, text=True).stdout
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    stamp = (f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on "
             f"{platform.platform()} (Python {platform.python_version()}).\n\n")
    DOC.write_text(head + BEGIN + "\n" + stamp + body.strip() + "\n" + END + tail,
                   encoding="utf-8")


if __name__ == "__main__":
    main()

"""The README's Python example runs as written (in a scratch folder) and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

import sim

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one example"
    return blocks[0]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_python_example(), str(README), "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert re.search(r"\$[\d,]+ a month \(95% CI \$[\d,]+ to \$[\d,]+\)", out)
    assert "break-even 3.02e+09 to 4.24e+09 tokens/month" in out  # the seed's 3.0-4.2 B
    assert "fleet.replicass: unknown field 'replicass' (did you mean 'replicas'?)" in out
    assert isinstance(namespace["runs"], pa.Table) and namespace["runs"].num_rows == 4
    assert len(namespace["df"]) == 4
    assert (tmp_path / "results" / "default-1d" / "runs.parquet").is_file()
    assert list(namespace["table"]["grid.fleet.replicas"]) == [1, 2, 3]
    costs = list(namespace["table"]["cost.total_usd.mean"])
    assert costs == sorted(costs)  # more replicas cost more at this traffic


def test_public_names_resolve():
    for name in sim.__all__:
        assert getattr(sim, name) is not None
    assert set(sim.__all__) <= set(dir(sim))

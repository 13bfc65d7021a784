"""Hostile input, faults and paths (issue #23): every example of the issue's "Why".

Each case of the regression corpus (``tests/corpus/why.yaml``) runs through the fuzz
suite's worker (in a child process under a 2 GiB address-space limit and a 20 s time
limit) and must meet the contract: a refusal is exit 2 and one ``capsim: error:`` line
naming the file, field and value; a success has finite, in-range results; never a
traceback, a hang or a runaway allocation; nothing written outside the output folder.
The grammar, the YAML/JSON reader and the output folders are also tested directly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from sim.core.errors import ConfigError
from sim.core.files import OutputDir, check_out_dir, safe_name
from sim.core.loader import read_json, read_yaml
from sim.core.units import format_duration, parse_duration_s, parse_time_of_day_s
from tests.fuzz.contract import Case, Outcome, problems
from tests.fuzz.corpus import load_corpus
from tests.fuzz.pool import Runner

CORPUS = load_corpus()


@pytest.fixture(scope="module")
def runner():
    with Runner() as r:
        yield r


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_why_example(runner: Runner, case: Case) -> None:
    out = runner.run(case)
    assert problems(case, out) == [], f"{case.why}\nstdout: {out.stdout[-500:]}\n" \
                                      f"stderr: {out.stderr[-1000:]}"


def test_contract_checks_can_fail() -> None:
    """The checks themselves catch what they should (a harness that passes everything
    would make the corpus worthless)."""
    case = Case(id="x", argv=[], expect="error", says=["exp.yaml"], never=["root:"])
    assert problems(case, Outcome(2, stderr="capsim: error: exp.yaml: bad\n")) == []
    assert problems(case, Outcome(0))  # not refused
    assert problems(case, Outcome(2, stderr="Error: bad\n"))  # not the one-line form
    assert problems(case, Outcome(2, stderr="capsim: error: other.yaml: bad\n"))
    assert problems(case, Outcome(None, exception="ValueError: x"))
    assert problems(case, Outcome(2, stderr="capsim: error: exp.yaml root:x\n"))
    assert problems(case, Outcome(2, stderr="capsim: error: exp.yaml\n", wall_s=30.0))
    assert problems(case, Outcome(None, died="hang: no answer in 20 s"))


# -- the duration and time-of-day grammar ------------------------------------------------

@pytest.mark.parametrize(("text", "seconds"), [
    ("30d", 30 * 86400), ("6h", 21600), ("15m", 900), ("90s", 90), ("250ms", 0.25),
    ("2w", 1209600), ("1h30m", 5400), ("1d2h3m4s", 93784), ("1.5h", 5400), ("90", 90),
    ("0.5", 0.5), (" 6h ", 21600), ("1h 30m", 5400), ("10min", 600), ("1m30s", 90),
    ("1s500ms", 1.5), (90, 90), (1.5, 1.5), ("6H", 21600),
])
def test_durations_accepted(text: object, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [
    "1 000s", "2 2h", "1.5.5h", "1h30", "30m1h", "1h1h", "", " ", "h", "-5m", "1e3s",
    "0.0.1s", "nan", "inf", "1_000s", "0x10s", "+1h", "1hh", "1.5h30m", "2 h 3", "１h",
    "1e400s", True, None, [1], float("nan"), float("inf"), -1, 10**400, "9" * 400 + "d",
])
def test_durations_refused(text: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration_s(text)
    message = str(info.value)
    assert "\n" not in message
    if isinstance(text, str) and text.strip() and len(text) < 50:
        assert repr(text) in message or text in message


def test_duration_message_names_forms() -> None:
    with pytest.raises(ValueError, match=r"1h30m"):
        parse_duration_s("1h30")


def test_format_duration_round_trips() -> None:
    for seconds in (90.0, 5400.0, 86400.0, 3600.0, 0.25, 93780.0):
        assert parse_duration_s(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "seconds"), [
    ("02:00", 7200), ("14:30:15", 52215), ("00:00", 0), (23, 82800), (1.5, 5400),
    ("23:59:59.5", 86399.5),
])
def test_time_of_day_accepted(text: object, seconds: float) -> None:
    assert parse_time_of_day_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["24:00", "1:00 02", "01:60", "2pm", "", "01:00:60", -1, 24,
                                  True, float("nan"), "1:2", "01:00:00:00"])
def test_time_of_day_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_time_of_day_s(text)


# -- reading YAML and JSON ---------------------------------------------------------------

def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_duplicate_keys_refused_with_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.yaml", "x: 1\ny:\n  z: 2\n  z: 3\n")
    with pytest.raises(ConfigError, match=r"line 4.*duplicate key 'z'") as info:
        read_yaml(p)
    assert str(p) in str(info.value)


def test_merge_keys_and_anchors_still_work(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.yaml", "base: &b {x: 1, y: 2}\nother: {<<: *b, y: 3}\n")
    assert read_yaml(p) == {"base": {"x": 1, "y": 2}, "other": {"x": 1, "y": 3}}


def test_nesting_depth_bounded(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.yaml", "a: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="nest"):
        read_yaml(p)
    fine = _write(tmp_path, "b.yaml", "a: " + "[" * 20 + "]" * 20)
    assert read_yaml(fine)["a"]


def test_alias_expansion_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    p = _write(tmp_path, "a.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="alias"):
        read_yaml(p)


def test_non_text_keys_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.yaml", "x: {1: a}\n")
    with pytest.raises(ConfigError, match="key"):
        read_yaml(p)


def test_json_duplicate_keys_nan_and_depth(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        read_json(_write(tmp_path, "a.json", '{"a": 1, "a": 2}'))
    with pytest.raises(ConfigError, match="nest"):
        read_json(_write(tmp_path, "b.json", "[" * 100000 + "]" * 100000))
    assert read_json(_write(tmp_path, "c.json", '{"a": [1, 2.5]}')) == {"a": [1, 2.5]}


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "/"])
def test_inputs_are_regular_files(path: str) -> None:
    with pytest.raises(ConfigError, match="regular file|folder"):
        read_yaml(path)


def test_yaml_error_does_not_echo_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.yaml", "secret-token-xyz: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(p)
    assert "secret-token-xyz" not in str(info.value)


# -- output folders ----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "safe"), [
    ("seed-70b", "seed-70b"), ("../../x", "x"), ("/etc/passwd", "etc-passwd"),
    ("a/b\\c", "a-b-c"), ("..", "experiment"), ("", "experiment"), (".hidden", "hidden"),
    ("x" * 300, "x" * 100), ("a b:c", "a-b-c"), ("名前", "experiment"),
])
def test_safe_name(name: str, safe: str) -> None:
    assert safe_name(name) == safe
    assert "/" not in safe_name(name) and not safe_name(name).startswith(".")


def _fill(od: OutputDir, text: str) -> None:
    (od.path / "result.txt").write_text(text)


def test_output_dir_whole_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), OutputDir(target) as od:
        _fill(od, "new")
        raise RuntimeError("killed")
    assert not target.exists()
    assert not list(tmp_path.iterdir())  # no partial folder left
    with OutputDir(target) as od:
        _fill(od, "first")
    assert (target / "result.txt").read_text() == "first"


def test_existing_out_refused_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ConfigError, match="--overwrite"):
        check_out_dir(target)
    with OutputDir(target, overwrite=True) as od:
        _fill(od, "new")
    assert sorted(p.name for p in target.iterdir()) == ["result.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    check_out_dir(tmp_path / "empty-or-new")  # a new folder is fine


def test_stale_partial_folders_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".out.partial-999999"
    stale.mkdir()
    (stale / "runs.parquet").write_text("half")
    with OutputDir(tmp_path / "out") as od:
        _fill(od, "new")
    assert not stale.exists()


def test_old_results_restored_after_a_kill_between_renames(tmp_path: Path) -> None:
    """A run killed after moving the old folder aside and before moving the new one in:
    the next run puts the old results back before doing anything else."""
    old = tmp_path / ".out.old-999999"
    old.mkdir()
    (old / "result.txt").write_text("old")
    check_out_dir(tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "result.txt").read_text() == "old"
    assert not old.exists()


def test_symlinks_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    link = tmp_path / "out"
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        check_out_dir(link, overwrite=True)
    assert victim.is_dir() and not list(victim.iterdir())


def test_unwritable_out_refused_up_front(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--out"):
        check_out_dir(tmp_path / "file" / "out")
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="not writable"):
            check_out_dir(ro / "out")


def test_disk_full_is_one_line_and_no_half_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(ConfigError, match="No space left") as info, OutputDir(target) as od:
        _fill(od, "part")
        raise OSError(28, "No space left on device")
    assert "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_summary_numbers_finite_after_a_run(tmp_path: Path, runner: Runner) -> None:
    """A normal run's summary passes the result checks (and they look at real files)."""
    case = next(c for c in CORPUS if c.id == "out-overwrite-replaces")
    out = runner.run(Case(id="plain", argv=["run", "exp.yaml", "-j1", "--no-plots", "--out",
                                            "out"], files={"exp.yaml": case.files["exp.yaml"]}))
    assert out.code == 0, out.stderr
    summary = json.loads((Path(out.folder) / "out" / "summary.json").read_text())
    assert math.isfinite(summary["metrics"]["cost.total_usd"]["mean"])

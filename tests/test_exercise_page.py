"""docs/exercises.md, checked: one row for each of the 108 exercises of §3.1-3.7, §4.1-4.4, §5.1-5.7 and §8.5,
numbered 1..n per section as d2l-en numbers them (the counts come from docs/exercises_inventory.md); at least 45
answered with data (a command and a figure or a table); every figure it names exists in docs/; and every command it
names runs -- at a tiny size (``--tiny`` for exercises.py, generated house-price CSVs for kaggle_house/main.py; the
cheaper ones in the default suite, the rest marked slow)."""
import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import ROOT, load_experiment, write_house_csvs

PAGE = ROOT / "docs" / "exercises.md"
INVENTORY = ROOT / "docs" / "exercises_inventory.md"
KINDS = ("data", "check", "derivation", "essay", "unavailable")
ROW = re.compile(r"^\| (\d+\.\d+)\.(\d+) \| (\w+) \| (.+?) \| (.+) \| (.+?) \|$")
COMMAND = re.compile(r"`(python experiments/[^`]+)`")


def _rows():
    rows = []
    for line in PAGE.read_text().splitlines():
        m = ROW.match(line)
        if m:
            section, number, kind, question, text, evidence = m.groups()
            rows.append({"section": section, "number": int(number), "kind": kind, "question": question,
                         "answer": text, "evidence": evidence})
    return rows


def _inventory_counts():
    """{section: number of exercises} from the inventory's headings, e.g. '## §3.1 Linear Regression (8)'."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^## §(\d+\.\d+) .*\((\d+)\)$", INVENTORY.read_text(), re.MULTILINE)}


def test_one_row_per_exercise_numbered_as_the_book():
    counts = _inventory_counts()
    assert sum(counts.values()) == 108 and len(counts) == 19
    rows = _rows()
    numbers = {}
    for r in rows:
        numbers.setdefault(r["section"], []).append(r["number"])
    assert {s: sorted(n) for s, n in numbers.items()} == {s: list(range(1, n + 1)) for s, n in counts.items()}
    for r in rows:
        assert r["kind"] in KINDS, r
        assert len(r["answer"]) > 40, r     # an answer, not a placeholder


def test_at_least_45_answered_with_data_each_with_its_command_and_evidence():
    page = PAGE.read_text()
    answered = [r for r in _rows() if r["kind"] in ("data", "check")]
    assert len(answered) >= 45, len(answered)
    for r in answered:
        ident = f"{r['section']}.{r['number']}"
        assert COMMAND.search(r["evidence"]), (ident, r["evidence"])
        has_figure = re.search(r"\]\(([^)]+\.png)\)", r["evidence"])
        tables = ([ident] if "table below" in r["evidence"] else []) + re.findall(r"§(\d+\.\d+\.\d+)'s table",
                                                                                 r["evidence"])
        has_table = any(re.search(rf"^\*\*§{re.escape(t)}\*\*\n+\|", page, re.MULTILINE) for t in tables)
        assert has_figure or has_table, (ident, r["evidence"])


def test_every_figure_the_page_names_exists():
    names = re.findall(r"\]\(([^)#]+\.png)\)", PAGE.read_text())
    assert len(names) >= 30
    missing = [n for n in names if not (PAGE.parent / n).is_file()]
    assert not missing, missing


# The commands the default suite runs (the cheapest, ~2-10 s each at a tiny size on 2 quiet cores); the others
# (6-60 s each: LeNets, big sweeps, timing loops; ~5 min for the whole page) are marked slow:
# `pytest -m slow tests/test_exercise_page.py` runs them.
IN_DEFAULT_SUITE = {f"python experiments/exercises.py --section {s}" for s in ("3.3", "4.3")}
IN_DEFAULT_SUITE.add("python experiments/kaggle_house/main.py --data-dir DIR")


def _commands():
    commands = sorted(set(COMMAND.findall(PAGE.read_text()))) if PAGE.exists() else []
    return [pytest.param(c, id=c.replace("python experiments/", ""),
                         marks=() if c in IN_DEFAULT_SUITE else pytest.mark.slow) for c in commands]


def _tiny_argv(words, tmp_path):
    """The command's own arguments plus what makes it tiny, writing into tmp_path."""
    script, argv = Path(words[1]).relative_to("experiments").with_suffix("").as_posix(), words[2:]
    if script == "exercises":
        return script, argv + ["--tiny", "--dataset", "digits", "--out", str(tmp_path / "out"), "--quiet"]
    if script == "kaggle_house/main":
        write_house_csvs(tmp_path / "data")
        argv = [str(tmp_path / "data") if a == "DIR" else a for a in argv]
        if "--exercises" in argv:
            argv += ["--exercise-lrs", "0.01", "--exercise-weight-decays", "0", "0.1", "--raw-lrs", "30"]
        for flag, values in (("--lrs", ["0.01"]), ("--weight-decays", ["0"])):
            if flag in argv:  # the page's own grid, cut to one value
                i = argv.index(flag)
                argv[i + 1:i + 2] = values
            else:
                argv += [flag, *values]
        return script, argv + ["--k", "2", "--epochs", "2", "--batch-size", "16", "--out", str(tmp_path / "out"),
                               "--quiet"]
    raise AssertionError(f"no tiny size known for {script}: add it here")


@pytest.mark.parametrize("command", _commands())
def test_every_command_on_the_page_runs_at_a_tiny_size(command, tmp_path, monkeypatch):
    monkeypatch.setenv("REGJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REGJAX_DATA_DIR", raising=False)
    words = shlex.split(command)
    assert words[:2][0] == "python" and (ROOT / words[1]).is_file(), command
    script, argv = _tiny_argv(words, tmp_path)
    result = load_experiment(script).main(argv)
    assert result
    if script == "exercises":
        for a in result["answers"]:
            assert a["answer"] or a.get("figure"), a["id"]
            assert (a["plot"] and Path(a["plot"]).stat().st_size > 1000) or a["table"], a["id"]

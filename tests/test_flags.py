"""Every CLI flag takes effect or is refused: a walk over every experiment's parser (each --what / --data variant)
checks that each flag's value is read -- by the experiment itself, or by the runner helper it calls that reads
it. A flag nobody reads is a silently ignored argument (kaggle_house's inherited --lr was one: now refused)."""
import argparse
import ast

import pytest

from tests.helpers import ROOT, load_experiment

# read by the runner for every experiment (Run: --out, the lifecycle, devices, compile cache; fit/sweep: batch)
UNIVERSAL = {"out", "seed", "resume", "overwrite", "quiet", "debug_nans", "no_compile_cache", "devices",
             "distributed", "coordinator", "num_processes", "process_id", "batch_size", "help"}
# read by a runner helper whenever an experiment calls it
HELPERS = {
    "load_images": {"dataset", "data_dir"}, "images": {"train_size"}, "epochs": {"epochs"},
    "add_presets": {"preset"},
}
VARIANTS = {"sweep": [["--what", w] for w in ("weight_decay", "dropout", "lr")],
            "model_selection": [["--data", d] for d in ("synthetic", "diabetes")]}


class _Parsed(Exception):
    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def _dests(name, argv):
    """The flags (dests) of ``experiments/<name>.py`` for ``argv``, from the parser its main builds."""
    def capture(self, args=None, namespace=None):
        raise _Parsed(self)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture
    try:
        load_experiment(name).main(argv)
    except _Parsed as parsed:
        return {a.dest for a in parsed.parser._actions}
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{name} built no parser")


def _read(name):
    """What the experiment's source reads: ``args.x`` / ``run.args.x``, strings naming a dest (getattr loops),
    and the dests of the runner helpers it calls. A study in its own folder is read whole."""
    script = ROOT / "experiments" / f"{name}.py"
    sources = [script] if script.parent.name == "experiments" else sorted(script.parent.glob("*.py"))
    if name == "exercises":  # its sections live in experiments/exercise_answers/
        sources += sorted((ROOT / "experiments" / "exercise_answers").glob("*.py"))
    tree = ast.Module(body=[ast.parse(p.read_text()) for p in sources], type_ignores=[])
    declared = {id(a) for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                and n.func.attr == "add_argument" for a in n.args}       # naming a flag is not reading it
    read = set()
    for node in ast.walk(tree):
        if id(node) in declared:
            continue
        if isinstance(node, ast.Attribute):
            base = node.value
            if (isinstance(base, ast.Name) and base.id == "args") or (isinstance(base, ast.Attribute)
                                                                      and base.attr == "args"):
                read.add(node.attr)
            if node.attr in HELPERS:
                read |= HELPERS[node.attr]
        elif isinstance(node, ast.Name) and node.id in HELPERS:
            read |= HELPERS[node.id]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):   # "lrs", or "--what" (peek_choice)
            read |= {node.value, node.value.lstrip("-").replace("-", "_")}
    return read


CASES = [(p.stem, argv) for p in sorted((ROOT / "experiments").glob("*.py"))
         for argv in VARIANTS.get(p.stem, [[]])] + [(f"{p.parent.name}/main", []) for p in
                                                     sorted((ROOT / "experiments").glob("*/main.py"))]


@pytest.mark.parametrize("name, argv", CASES, ids=[f"{n}{'-' + a[1] if a else ''}" for n, a in CASES])
def test_every_flag_is_read(name, argv):
    unread = sorted(_dests(name, argv) - UNIVERSAL - _read(name))
    assert not unread, f"{name} {' '.join(argv)}: flags nobody reads: {['--' + u.replace('_', '-') for u in unread]}"


def test_the_walk_catches_an_ignored_flag(tmp_path, monkeypatch):
    """The check itself can fail: a flag added to a parser and never read is reported."""
    source = (ROOT / "experiments" / "linear_regression.py").read_text()
    assert "args.lr" in source
    fake = tmp_path / "experiments"
    fake.mkdir()
    (fake / "probe.py").write_text(
        "from regjax import runner\n"
        "def main(argv=None):\n"
        "    p = runner.parser('probe', epochs=1, lr=0.1, batch_size=1, out='x')\n"
        "    p.add_argument('--ignored', type=int, default=0)\n"
        "    args = p.parse_args(argv)\n"
        "    return args.epochs\n")
    monkeypatch.setattr("tests.test_flags.ROOT", tmp_path)
    monkeypatch.setattr("tests.helpers.ROOT", tmp_path)
    unread = _dests("probe", []) - UNIVERSAL - _read("probe")
    assert unread == {"ignored", "lr"}

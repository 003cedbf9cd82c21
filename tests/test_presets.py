"""``--preset``: one book edition's settings become the defaults (zh-v2 unless named), explicit flags win, a
wrong name is refused naming the choices -- checked on the parsers the three experiments build."""
import argparse

import pytest

from regjax import runner
from tests.helpers import load_experiment


def _args(name, argv):
    """The namespace ``experiments/<name>.py`` parses from ``argv``, without running it."""
    captured = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        captured["ns"] = original(self, args, namespace)
        raise KeyboardInterrupt  # stop before the run starts

    argparse.ArgumentParser.parse_args = capture
    try:
        load_experiment(name).main(argv)
    except KeyboardInterrupt:
        return captured["ns"]
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{name} parsed nothing")


@pytest.mark.parametrize("name, zh, en", [
    ("dropout_mlp", {"rates": (0.2, 0.5), "lr": 0.5, "init": "normal"}, {"rates": (0.5, 0.5), "lr": 0.1, "init": "lecun"}),
    ("batch_norm", {"lr": 1.0, "batch_size": 256}, {"lr": 0.1, "batch_size": 128}),
    ("linear_regression", {"batch_size": 10}, {"batch_size": 32}),
    ("weight_decay", {"epochs": 100, "lr": 0.003, "init_std": 1.0}, {"epochs": 10, "lr": 0.01, "init_std": 0.01}),
])
def test_presets_set_the_editions_defaults_and_explicit_flags_win(name, zh, en):
    default, chinese, english = (_args(name, a) for a in ([], ["--preset", "zh-v2"], ["--preset", "en"]))
    for ns, want in ((default, zh), (chinese, zh), (english, en)):
        assert {k: tuple(v) if isinstance(v, list) else v for k, v in vars(ns).items() if k in want} == want
    assert default.preset == "zh-v2" and english.preset == "en"
    mixed = _args(name, ["--lr", "0.25", "--preset", "en"])     # order does not matter: the flag wins
    assert mixed.lr == 0.25 and all(getattr(mixed, k) == v for k, v in en.items() if k != "lr"
                                    and not isinstance(v, tuple))


def test_a_wrong_preset_is_refused_naming_the_choices(capsys):
    with runner.command_line(), pytest.raises(SystemExit) as exc:
        load_experiment("batch_norm").main(["--preset", "zh-v1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--preset" in err and "'zh-v2', 'en'" in err


def test_presets_need_the_runner_parser():
    with pytest.raises(TypeError, match="regjax.runner.parser"):
        runner.add_presets(argparse.ArgumentParser(), {"a": {"lr": 1.0}})

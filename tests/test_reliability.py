"""No silent wrong answer on resume, checkpoints and folders: one writer per --out (a lock naming the holder),
a checkpoint of another experiment or with changed bytes refused, --resume on other data of the same shapes
refused, checkpoints without run.json never deleted, SIGHUP recorded like SIGTERM."""
import fcntl
import json
import os
import shutil
import signal

import numpy as np
import pytest

from regjax.data import write_idx
from regjax.data.fashion_mnist import FILES
from regjax import runner
from tests.helpers import load_experiment

SMALL = ["--dataset", "digits", "--hidden", "16", "16", "--epochs", "1", "--batch-size", "64"]


def _refused(capsys, argv, name="dropout_mlp", warnings=0):
    """The command line's refusal of ``main(argv)`` (``runner.command_line``, as ``script`` runs it)."""
    with runner.command_line(), pytest.raises(SystemExit) as exc:
        load_experiment(name).main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 + warnings, err
    return err


def test_a_second_run_into_a_locked_folder_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".regjax.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)       # another run holds the folder
    os.write(fd, b"4242")
    for flags in ([], ["--overwrite", "--lr", "0.1"], ["--resume"]):
        err = _refused(capsys, SMALL + ["--out", str(out), *flags])
        assert "is in use by another run (pid 4242)" in err
    assert not (out / "results.json").exists()
    os.close(fd)                                           # the holder ends (the kernel releases its lock)
    _refused(capsys, SMALL + ["--out", str(out), "--resume", "--overwrite"])   # a refusal releases it too
    load_experiment("dropout_mlp").main(SMALL + ["--out", str(out), "--quiet"])
    assert json.loads((out / "results.json").read_text())["status"] == "completed"
    assert (out / ".regjax.lock").read_text() == str(os.getpid())


def test_checkpoints_without_run_json_are_never_deleted(tmp_path, capsys):
    out = tmp_path / "out"
    load_experiment("dropout_mlp").main(SMALL + ["--out", str(out), "--quiet"])
    (out / "checkpoints" / "run.json").unlink()
    (out / "results.json").unlink()
    checkpoint = out / "checkpoints" / "dropout.msgpack"
    before = checkpoint.read_bytes()
    assert "holds checkpoints (dropout.msgpack) but no run.json" in _refused(capsys, SMALL + ["--out", str(out),
                                                                                               "--resume"])
    assert "holds an unfinished run (status: unknown)" in _refused(capsys, SMALL + ["--out", str(out)])
    assert checkpoint.read_bytes() == before


def test_a_checkpoint_of_another_experiment_is_refused_before_training(tmp_path, capsys):
    mlp, softmax = tmp_path / "mlp", tmp_path / "softmax"
    load_experiment("dropout_mlp").main(SMALL + ["--out", str(mlp), "--quiet"])
    small = ["--dataset", "digits", "--epochs", "1", "--out", str(softmax), "--quiet"]
    load_experiment("softmax_regression").main(small)
    (own,) = (softmax / "checkpoints").glob("*.msgpack")
    shutil.copy(mlp / "checkpoints" / "dropout.msgpack", own)       # adopted under the softmax variant's name
    err = _refused(capsys, small + ["--resume"], "softmax_regression")
    assert "belongs to the experiment 'dropout_mlp', not 'softmax_regression'" in err


def _idx_folder(folder, seed):
    rng = np.random.default_rng(0)                         # the same images in both folders...
    arrays = {"x_train": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
              "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)}
    labels = np.random.default_rng(seed)                   # ...and other labels
    arrays.update(y_train=labels.integers(0, 10, 40, dtype=np.uint8), y_test=labels.integers(0, 10, 20, dtype=np.uint8))
    folder.mkdir(parents=True)
    for key, stem in FILES.items():
        write_idx(folder / stem, arrays[key])
    return folder


def test_resume_on_other_data_of_the_same_shapes_is_refused(tmp_path, capsys, monkeypatch):
    first, second = _idx_folder(tmp_path / "a", 1), _idx_folder(tmp_path / "b", 2)
    argv = ["--hidden", "16", "16", "--batch-size", "10", "--out", str(tmp_path / "out"), "--quiet"]
    monkeypatch.setenv("REGJAX_DATA_DIR", str(first))     # the data come from the environment, not an argument
    load_experiment("dropout_mlp").main(argv + ["--epochs", "1"])
    capsys.readouterr()
    monkeypatch.setenv("REGJAX_DATA_DIR", str(second))
    err = _refused(capsys, argv + ["--epochs", "2", "--resume"], warnings=1)   # + "not the registered" warning
    assert "trained on other data (content_sha256:" in err
    monkeypatch.setenv("REGJAX_DATA_DIR", str(first))
    load_experiment("dropout_mlp").main(argv + ["--epochs", "2", "--resume"])


def _probe_run(folder):
    """A bare run lifecycle (no arguments, no data) writing into ``folder``."""
    from regjax.runner.lifecycle import Lifecycle

    def refuse(message):
        raise SystemExit(2)

    return Lifecycle("probe", folder, quiet=True, config={}, refuse=refuse)


def test_sighup_is_recorded_like_sigterm(tmp_path, capsys):
    from regjax.runner.lifecycle import EXIT_CODES

    run = _probe_run(tmp_path)
    run.install_signals()
    try:
        run.start()
        with runner.command_line(), pytest.raises(SystemExit) as exc:
            try:
                os.kill(os.getpid(), signal.SIGHUP)
            except BaseException as err:                   # what Run.__exit__ hands to end()
                run.ignore_signals()
                run.end(err)
    finally:
        run.restore_signals()
    assert exc.value.code == 129 == EXIT_CODES["interrupted (SIGHUP)"]
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "interrupted" and result["exit_code"] == 129
    assert "interrupted (SIGHUP)" in capsys.readouterr().err


def test_bad_out_folders_and_huge_integers_are_one_line_refusals(tmp_path, capsys):
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "nowhere")
    cases = [(["--out", ""], "must name a folder"), (["--out", "/"], "must not be the root folder"),
             (["--out", str(dangling)], "is a symbolic link to nothing"),
             (["--out", str(tmp_path / ("x" * 300))], "is not a writable folder"),
             (["--out", str(tmp_path / "o"), "--hidden", "99999999999999999999", "10"], "at most 2147483647")]
    for argv, words in cases:
        assert words in _refused(capsys, SMALL + argv), argv
    assert "must be a positive integer" in _refused(capsys, ["--num-inputs", "1e20", "--out", str(tmp_path / "w")],
                                                    "weight_decay")
    # a run refused before training leaves no folder it created (nor its lock file)
    fresh = tmp_path / "fresh"
    assert "exceeds the 1347 training examples" in _refused(capsys, SMALL + ["--out", str(fresh), "--batch-size",
                                                                             "5000"])
    assert not fresh.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    _refused(capsys, SMALL + ["--out", str(kept), "--batch-size", "5000"])
    assert (kept / "notes.txt").read_text() == "mine"                  # a folder the user had stays



def test_exercise_sizes_are_honoured_or_refused_before_training(tmp_path, capsys):
    base = ["--dataset", "digits", "--out", str(tmp_path / "o")]
    err = _refused(capsys, base + ["--section", "5.6", "--train-size", "100"], "exercises")
    assert "--train-size applies to §8.5's LeNet; §5.6 trains on --mlp-train-size images" in err
    err = _refused(capsys, base + ["--section", "3.7", "5.6", "--mlp-train-size", "5000"], "exercises")
    assert "--mlp-train-size 5000 exceeds the 1347 training images of digits" in err   # was silently capped
    assert not (tmp_path / "o").exists()                                              # and §3.7 never trained


def test_a_new_run_removes_the_previous_runs_plots_and_outputs(tmp_path):
    out = tmp_path / "out"
    load_experiment("dropout_mlp").main(SMALL + ["--out", str(out), "--quiet"])
    (out / "mine.png").write_text("a user's file")
    previous = json.loads((out / "results.json").read_text())
    own_plots = list(previous["plots"])
    stale = out / "stale_from_another_configuration.png"
    stale.write_text("x")
    previous["plots"].append(str(stale))
    previous["outputs"] = [str(out / "table.json"), str(tmp_path / "outside.txt")]
    (out / "table.json").write_text("{}")
    (tmp_path / "outside.txt").write_text("not ours")
    (out / "results.json").write_text(json.dumps(previous))
    load_experiment("dropout_mlp").main(SMALL + ["--out", str(out), "--quiet"])
    assert not stale.exists() and not (out / "table.json").exists()
    assert (out / "mine.png").exists() and (tmp_path / "outside.txt").exists()       # never touched
    assert own_plots and all(os.path.exists(p) for p in own_plots)                    # rewritten by the new run


def test_a_checkpoint_made_with_other_arguments_is_refused_before_any_variant_trains(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    load_experiment("dropout_mlp").main(SMALL + ["--out", str(a), "--quiet"])
    load_experiment("dropout_mlp").main(SMALL + ["--out", str(b), "--quiet", "--compare", "--lr", "0.1"])
    shutil.copy(b / "checkpoints" / "no_dropout.msgpack", a / "checkpoints" / "no_dropout.msgpack")
    (b / "checkpoints" / "run.json").write_text(json.dumps({"experiment": "dropout_mlp", "config": None}))
    err = _refused(capsys, SMALL + ["--out", str(a), "--resume"])
    assert "checkpoint" in err and "no_dropout.msgpack was made with other arguments" in err
    err = _refused(capsys, SMALL + ["--out", str(b), "--resume", "--compare", "--lr", "0.1"])
    assert "run.json is corrupt (TypeError)" in err                     # "config": null: one line, not a traceback


def test_the_final_write_interrupted_leaves_interrupted_not_running(tmp_path, monkeypatch):
    from regjax.runner import lifecycle

    run = _probe_run(tmp_path)
    run.start()
    real = lifecycle.write_json_atomic

    def interrupted_once(path, obj):
        if obj["status"] == "completed":
            raise KeyboardInterrupt                            # the signal lands in the final write
        return real(path, obj)

    monkeypatch.setattr(lifecycle, "write_json_atomic", interrupted_once)
    with runner.command_line(), pytest.raises(SystemExit) as exc:
        try:
            run.finish({})
        except KeyboardInterrupt as err:
            run.end(err)
    assert exc.value.code == 130
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "interrupted"


def test_long_runs_print_at_most_about_50_lines(tmp_path):
    from regjax.runner.variant import Variant

    calls = []

    class Progress:
        def callback(self, name, epochs, *, initial, every):
            calls.append(every)

    class Run:
        experiment, progress, config = "probe", Progress(), {}

    variant = Variant(Run(), "v", tmp_path / "v.msgpack")
    for epochs in (10, 50, 51, 392):
        variant.progress(epochs, 0, None)
    assert calls == [1, 1, 2, 8]                                # 392 epochs: 49 lines and the last
    variant.progress(392, 0, 5)
    assert calls[-1] == 5                                       # an experiment's own choice stands


def test_ctrl_c_outside_a_run_is_one_line_not_a_traceback(tmp_path):
    import subprocess
    import sys

    from tests.helpers import child_env

    code = "from regjax.runner.lifecycle import script\ndef main(): raise KeyboardInterrupt\nscript(main)\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(tmp_path),
                         timeout=60)
    assert run.returncode == 130 and "Traceback" not in run.stderr and "interrupted (SIGINT)" in run.stderr


def test_a_finished_run_skips_the_last_collections_runs_atexit_flushes_and_pytest_keeps_control(tmp_path):
    """script() ends a finished CLI process with exit_finished: the garbage collector frozen (the shutdown's
    collections skip every object), atexit handlers run, buffered output arrives, exit code 0; inside pytest it
    returns normally instead and freezes nothing."""
    import gc
    import subprocess
    import sys

    from regjax.runner.lifecycle import script
    from tests.helpers import child_env

    marker = tmp_path / "atexit.txt"
    code = ("import atexit, gc, sys\nfrom regjax.runner.lifecycle import script\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write(f'ran, frozen {{gc.get_freeze_count() > 0}}'))\n"
            "def main():\n    sys.stdout.write('buffered, no newline')\nscript(main)\n"
            "raise SystemExit('not reached: script ends the process')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(tmp_path),
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "buffered, no newline" and marker.read_text() == "ran, frozen True"
    frozen = gc.get_freeze_count()
    assert script(lambda: None) is None     # we are inside pytest: script returns
    assert gc.get_freeze_count() == frozen


def test_resume_compares_every_dataset_a_run_set_in_order(tmp_path, capsys):
    """exercises.py sets one dataset per section: a resume compares each with the same section's, not all with
    the first (which refused resuming §5.6 + §8.5)."""
    from regjax import runner

    def run(flags, datasets):
        parser = runner.parser("probe", epochs=1, lr=0.1, batch_size=1, out=str(tmp_path / "out"))
        with runner.Run("probe", parser, flags) as r:
            for summary in datasets:
                r.set_dataset(summary, n_train=10)
                r.start()
            r.finish({})

    first, second = {"name": "digits", "n_train": 500}, {"name": "digits", "n_train": 1347}
    run([], [first, second])
    assert json.loads((tmp_path / "out" / "checkpoints" / "run.json").read_text())["datasets"] == [first, second]
    run(["--resume"], [first, second])
    with runner.command_line(), pytest.raises(SystemExit) as exc:
        run(["--resume"], [first, {"name": "digits", "n_train": 999}])
    assert exc.value.code == 2 and "other data (n_train: 1347, now 999)" in capsys.readouterr().err


def test_distinct_in_float32_and_no_temp_file_left_by_an_interrupted_cache_write(tmp_path, monkeypatch):
    from regjax.data import fashion_mnist
    from regjax.runner import distinct_values

    refused = []
    distinct_values([1e-7, 1.0000001e-7], "--lambdas", refused.append)     # distinct in float32 too: accepted
    distinct_values([0.0, -0.0], "--lambdas", refused.append)
    assert len(refused) == 1 and "in float32" in refused[0]

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr("regjax.report.os.fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fashion_mnist._atomic_savez(tmp_path / "c" / "x.npz", a=np.zeros(3))
    assert list((tmp_path / "c").iterdir()) == []                         # no tmp*.npz.tmp left behind


def test_sweep_history_dicts_are_snapshots_both_ways():
    from regjax.engine.history import History

    def record(h, epoch, ok):
        h.record(epoch, {"loss": np.ones(2)}, {"loss": np.ones(2)}, np.array(ok), np.array([0, 7]), seconds=0.1,
                 eval_seconds=0.0, n=4)

    h = History(2)
    record(h, 0, [True, True])
    saved = h.to_dict()
    record(h, 1, [True, False])                                    # member 1 diverges after the snapshot
    assert [len(c) for c in saved["test_loss"]] == [1, 1] and len(saved["epoch_time_s"]) == 1
    assert saved["diverged_epoch"] == [None, None]
    restored = History.from_dict(saved)
    record(restored, 1, [False, True])
    assert len(saved["epoch_time_s"]) == 1 and saved["diverged_epoch"] == [None, None]   # d untouched


def test_a_new_run_removes_the_previous_runs_files_but_not_its_own_written_before_training(tmp_path):
    """--overwrite / a new run into the folder removes the plots the previous run listed -- once training starts;
    a file of the same name this run wrote before that (exercises.py's tables, §4.1's checks) stays."""
    from regjax import runner

    out = tmp_path / "out"

    def run(flags, before=None):
        parser = runner.parser("probe", epochs=1, lr=0.1, batch_size=1, out=str(out))
        with runner.Run("probe", parser, flags) as r:
            if before:
                (out / before).write_text("this run's")
            r.set_dataset({"name": "probe", "n_train": 10}, n_train=10)
            r.start()
            r.finish({"plots": [str(out / "a.png"), str(out / "b.png")]})

    out.mkdir()
    (out / "a.png").write_text("old")
    (out / "b.png").write_text("old")
    run([])
    (out / "a.png").write_text("previous run's")
    (out / "b.png").write_text("previous run's")
    run(["--overwrite"], before="b.png")
    assert not (out / "a.png").exists() and (out / "b.png").read_text() == "this run's"

"""The experiment runner as a user meets it: bad arguments refused before training (one line, exit 2),
divergence and interruption recorded with their exit codes, checkpoints and a bit-identical --resume."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from regjax.checkpoint import read_checkpoint
from tests.helpers import child_env as _env
from regjax import runner
from tests.helpers import load_experiment as _load

ROOT = Path(__file__).resolve().parents[1]
MLP = str(ROOT / "experiments" / "dropout_mlp.py")
SMALL = ["--dataset", "digits", "--hidden", "32", "32"]


def _exit_code(capsys, argv, name="dropout_mlp"):
    """The command line's end of ``main(argv)``, in this process (``runner.command_line``, as ``script`` runs it)."""
    with runner.command_line(), pytest.raises(SystemExit) as exc:
        _load(name).main(argv)
    return exc.value.code, capsys.readouterr()


# ---- refused before training: one line on stderr, exit 2, nothing trained ------------------------------------
REFUSED = {
    "batch_size_above_n": (["--batch-size", "5000"], "--batch-size 5000 exceeds the 1347 training examples"),
    "rate_out_of_range": (["--rates", "1.5", "0.5"], "argument --rates: must be a probability in [0, 1], got 1.5"),
    "negative_lr": (["--lr", "-1"], "argument --lr: must be a positive finite number"),
    "nan_lr": (["--lr", "nan"], "argument --lr: must be a positive finite number"),
    "train_size_above_n": (["--train-size", "5000"], "--train-size 5000 exceeds the 1347 training examples"),
    "zero_epochs": (["--epochs", "0"], "argument --epochs: must be a positive integer"),
    "seed_beyond_32_bits": (["--seed", "4294967296"], "argument --seed: must be an integer in [0, 2**32)"),
    "lr_overflowing_float32": (["--lr", "1e39"], "must be a positive finite number (in float32), got 1e39"),
    "data_dir_with_digits": (["--data-dir", "/nonexistent"], "--data-dir applies to Fashion-MNIST"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_argument_is_one_line_exit_2_before_training(case, tmp_path, capsys):
    argv, message = REFUSED[case]
    out = tmp_path / "out"
    code, printed = _exit_code(capsys, SMALL + argv + ["--out", str(out)])
    assert code == 2
    assert printed.err.strip().count("\n") == 0 and message in printed.err, printed.err
    assert not (out / "results.json").exists() and not (out / "checkpoints").exists()


def test_out_naming_a_file_or_unwritable_place(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, printed = _exit_code(capsys, SMALL + ["--out", str(afile)])
    assert code == 2 and "is a file, not a folder" in printed.err and afile.read_text() == "mine"
    code, printed = _exit_code(capsys, SMALL + ["--out", str(afile / "sub")])
    assert code == 2 and "not a writable folder" in printed.err


def test_negative_lambda_is_refused(tmp_path, capsys):
    code, printed = _exit_code(capsys, ["--lam", "-1", "--out", str(tmp_path)], "dropout_vs_decay")
    assert code == 2 and "argument --lam: must be a finite number >= 0" in printed.err


def test_divergence_exits_3_and_results_say_diverged(tmp_path, capsys):
    out = tmp_path / "out"
    code, printed = _exit_code(capsys, SMALL + ["--lr", "1e30", "--epochs", "3", "--out", str(out)])
    assert code == 3 and "diverged" in printed.err and "epoch 1" in printed.err
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "diverged" and result["exit_code"] == 3
    assert result["diverged"]["variant"] == "dropout" and result["diverged"]["epoch"] == 1
    assert result["epochs_completed"]["dropout"] == 1  # the diverged epoch is recorded, then the run stops
    # an unfinished run is not silently replaced
    code, printed = _exit_code(capsys, SMALL + ["--epochs", "3", "--out", str(out)])
    assert code == 2 and "unfinished run (status: diverged); replace it with --overwrite" in printed.err


def test_results_are_readable_and_a_completed_run_is_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    _load("dropout_mlp").main(SMALL + ["--epochs", "1", "--out", str(out), "--quiet"])
    path = out / "results.json"
    first = json.loads(path.read_text())
    assert first["status"] == "completed" and first["dataset"]["n_train"] == 1347
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600
    _load("dropout_mlp").main(SMALL + ["--epochs", "2", "--train-size", "500", "--out", str(out), "--quiet"])
    second = json.loads(path.read_text())
    assert second["config"]["epochs"] == 2 and second["dataset"]["n_train"] == 500
    assert second["dataset"]["n_train_available"] == 1347 and second["started_at"] >= first["started_at"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_resume_refuses_other_arguments_and_corrupt_checkpoints(tmp_path, capsys):
    out = tmp_path / "out"
    _load("dropout_mlp").main(SMALL + ["--epochs", "1", "--out", str(out), "--quiet"])
    code, printed = _exit_code(capsys, SMALL + ["--epochs", "1", "--lr", "0.1", "--out", str(out), "--resume"])
    assert code == 2 and "--lr: checkpoint 0.5, now 0.1" in printed.err
    (out / "checkpoints" / "dropout.msgpack").write_bytes(b"\x93garbage")
    code, printed = _exit_code(capsys, SMALL + ["--epochs", "1", "--out", str(out), "--resume"])
    assert code == 2 and "dropout.msgpack is corrupt" in printed.err


def test_resume_of_a_finished_run_can_extend_it(tmp_path, capsys):
    out = tmp_path / "out"
    _load("weight_decay").main(["--epochs", "3", "--out", str(out), "--quiet"])
    extended = _load("weight_decay").main(["--epochs", "5", "--out", str(out), "--quiet", "--resume"])
    straight = _load("weight_decay").main(["--epochs", "5", "--out", str(tmp_path / "b"), "--quiet"])
    assert extended == straight  # every float equal: 3 epochs + 2 resumed == 5 in one go
    assert json.loads((out / "results.json").read_text())["resumed"] is True


def _interrupt_after(cmd, env, sig, epoch_line):
    """Start ``cmd``, read its output until ``epoch_line`` is printed, send ``sig``; return (rc, output)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if epoch_line in line:
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(lines) + rest


def test_sigint_then_sigterm_then_resume_is_bit_identical_to_one_run(tmp_path):
    env = _env(tmp_path)
    base = [sys.executable, MLP, "--dataset", "digits", "--hidden", "64", "64", "--epochs", "100", "--compare"]
    a, b = tmp_path / "interrupted", tmp_path / "straight"

    rc, output = _interrupt_after(base + ["--out", str(a)], env, signal.SIGINT, "[dropout] epoch   4/100")
    assert rc == 130, output
    result = json.loads((a / "results.json").read_text())
    done = result["epochs_completed"]["dropout"]
    assert result["status"] == "interrupted" and result["exit_code"] == 130 and 4 <= done < 100
    assert all(len(curve) == done for curve in result["history"]["dropout"]["test_loss"]) and "--resume" in output
    # results.json reports what the checkpoint holds, never more (the signal lands as epoch 4 is printed, which
    # is after its checkpoint was handed to the writer)
    saved = read_checkpoint(a / "checkpoints" / "dropout.msgpack")
    assert saved["epoch"] == done and json.loads(saved["history"]) == result["history"]["dropout"]

    rc, output = _interrupt_after(base + ["--out", str(a), "--resume"], env, signal.SIGTERM,
                                  "[no dropout] epoch   6/100")
    assert rc == 143, output
    assert f"[dropout] resuming after epoch {done}/100" in output, output
    result = json.loads((a / "results.json").read_text())
    assert result["status"] == "interrupted" and result["epochs_completed"]["dropout"] == 100

    # the last resume and the uninterrupted run in this process (no start-up to pay; the same program bits)
    _load("dropout_mlp").main(base[2:] + ["--out", str(a), "--resume", "--quiet"])
    _load("dropout_mlp").main(base[2:] + ["--out", str(b), "--quiet"])

    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra["status"] == rb["status"] == "completed"
    assert ra["final"] == rb["final"]
    for variant in ("dropout", "no dropout"):
        for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert ra["history"][variant][k] == rb["history"][variant][k], (variant, k)
    for name in ("dropout.msgpack", "no_dropout.msgpack"):
        sa, sb = (read_checkpoint(d / "checkpoints" / name) for d in (a, b))
        assert sa["epoch"] == sb["epoch"] == 100
        la, lb = _leaves(sa["state"]), _leaves(sb["state"])
        assert len(la) == len(lb) > 0
        for x, y in zip(la, lb):
            assert np.array_equal(x, y)  # bit for bit: params, BN/optimizer state, step, key


def _leaves(tree):
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in _leaves(tree[k])]
    return [np.asarray(tree)]


def test_idx_files_that_are_not_fashion_mnist_are_named_as_such(tmp_path, capsys):
    from regjax.data import fashion_mnist as fm
    from regjax.data import write_idx

    rng = np.random.default_rng(0)
    folder = tmp_path / "idx"
    folder.mkdir()
    sizes = {"x_train": (300, 28, 28), "y_train": (300,), "x_test": (50, 28, 28), "y_test": (50,)}
    for key, stem in fm.FILES.items():
        high = 256 if key.startswith("x") else 10
        write_idx(folder / f"{stem}.gz", rng.integers(0, high, sizes[key], dtype=np.uint8))
    out = tmp_path / "out"
    _load("dropout_mlp").main(["--data-dir", str(folder), "--epochs", "1", "--hidden", "16", "16", "--out",
                               str(out)])
    err = capsys.readouterr().err
    assert "not the registered Fashion-MNIST" in err and err.count("WARNING") == 1
    result = json.loads((out / "results.json").read_text())
    assert result["dataset"]["name"] == "idx" and result["dataset"]["sha256_verified"] is False
    assert result["dataset"]["source"] == f"idx:{folder}"


def test_debug_nans_and_a_diverging_trajectory_exit_3(tmp_path, capsys):
    code, printed = _exit_code(capsys, SMALL + ["--lr", "1e30", "--epochs", "2", "--debug-nans", "--out",
                                                str(tmp_path / "a")])
    assert code == 3 and "jax_debug_nans" in printed.err
    assert json.loads((tmp_path / "a" / "results.json").read_text())["status"] == "diverged"
    code, printed = _exit_code(capsys, ["--lr", "1e30", "--epochs", "2", "--out", str(tmp_path / "b")],
                               "decay_vs_penalty")
    assert code == 3 and "[SGD: penalty] training diverged" in printed.err


def test_duplicate_variants_are_refused(tmp_path, capsys):
    for lambdas in (["3", "3"], ["0", "-0"]):                 # equal in float32, the precision training uses
        code, printed = _exit_code(capsys, ["--lambdas", *lambdas, "--out", str(tmp_path)], "weight_decay")
        assert code == 2 and "--lambdas must hold distinct values in float32" in printed.err
    code, printed = _exit_code(capsys, ["--lambdas", "1", "1", "--out", str(tmp_path)], "model_selection")
    assert code == 2 and "--lambdas must hold distinct values" in printed.err


def test_files_of_the_user_in_checkpoints_survive(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    mine = out / "checkpoints" / "my_model.pt"
    mine.write_text("mine")
    _load("dropout_mlp").main(SMALL + ["--epochs", "1", "--out", str(out), "--quiet"])
    _load("dropout_mlp").main(SMALL + ["--epochs", "1", "--out", str(out), "--quiet", "--overwrite"])
    assert mine.read_text() == "mine" and (out / "checkpoints" / "dropout.msgpack").exists()


def test_resume_on_other_data_is_refused(tmp_path, capsys, monkeypatch):
    import regjax.data.fashion_mnist as fm
    from regjax.data import write_idx

    monkeypatch.setattr(fm, "DOWNLOAD_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    out = tmp_path / "out"
    argv = ["--epochs", "1", "--hidden", "16", "16", "--train-size", "300", "--out", str(out)]
    _load("dropout_mlp").main(argv)  # no Fashion-MNIST: falls back to digits
    folder = tmp_path / "idx"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for key, stem in fm.FILES.items():
        shape = {"x_train": (400, 8, 8), "y_train": (400,), "x_test": (50, 8, 8), "y_test": (50,)}[key]
        write_idx(folder / f"{stem}.gz", rng.integers(0, 256 if key[0] == "x" else 10, shape, dtype=np.uint8))
    monkeypatch.setenv("REGJAX_DATA_DIR", str(folder))  # the data appear between the run and its resume
    code, printed = _exit_code(capsys, argv + ["--resume", "--epochs", "2"])
    assert code == 2 and "trained on other data (name: 'digits', now 'idx'" in printed.err


def test_a_failing_checkpoint_write_is_reported_not_hidden(tmp_path, monkeypatch):
    import regjax.checkpoint as ck
    from regjax.checkpoint import CheckpointError

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "write_bytes_atomic", disk_full)
    out = tmp_path / "out"
    with pytest.raises(CheckpointError, match="No space left"):
        _load("weight_decay").main(["--epochs", "2", "--out", str(out), "--quiet"])
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "failed" and "No space left" in result["error"]


def test_no_compile_cache_holds_for_that_run_only(tmp_path):
    """--no-compile-cache keeps this run's compilations out of the persistent cache (JAX asks the cache for
    none of them), and the cache is back for whatever the process compiles next (main() may run in-process)."""
    import jax
    from jax import monitoring

    asked = []
    monitoring.register_event_listener(
        lambda event, **kw: asked.append(event) if event == "/jax/compilation_cache/compile_requests_use_cache" else None)
    module = _load("weight_decay")  # --num-inputs no other test uses: shapes this process has not compiled yet
    module.main(["--epochs", "1", "--num-inputs", "37", "--out", str(tmp_path / "a"), "--quiet", "--no-compile-cache"])
    assert asked == [] and jax.config.jax_enable_compilation_cache is True
    module.main(["--epochs", "1", "--num-inputs", "38", "--out", str(tmp_path / "b"), "--quiet"])
    assert asked  # the session's cache (tests/conftest.py) is in use again


def test_a_process_other_than_0_resumes_from_the_shared_folder_and_writes_nothing_there(tmp_path, monkeypatch):
    """In a multi-process run every process continues from the checkpoints in the shared --out; only process 0
    writes there (the others' results and plots go to a temporary folder, removed at the end)."""
    import regjax.runner.run as run_module
    from regjax.runner.devices import Devices

    out = tmp_path / "out"
    argv = ["--epochs", "1", "--n", "20", "--batch-size", "10", "--out", str(out), "--quiet"]
    _load("linear_regression").main(argv)
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(run_module, "setup_devices", lambda args, refuse: Devices(1, 2, primary=False))
    seen = {}
    module = _load("linear_regression")
    fit = module.runner.Run.fit

    def spy(run, *args, **kwargs):
        seen.update(folder=run.folder, out=run.out, ckpt_dir=run.ckpt_dir, resuming=run.resuming)
        return fit(run, *args, **kwargs)

    monkeypatch.setattr(module.runner.Run, "fit", spy)
    module.main(["--epochs", "2", "--n", "20", "--batch-size", "10", "--out", str(out), "--quiet", "--resume"])
    assert seen["resuming"] is True and seen["folder"] == out and seen["ckpt_dir"] == out / "checkpoints"
    assert seen["out"] != out and not seen["out"].exists()  # its own temporary folder, removed at the end
    after = {p.name: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing in the shared folder was touched


# ---- the same refusals and ends from Python (a notebook's main([...])): exceptions, never SystemExit ----------
def test_main_from_python_raises_exceptions_naming_the_experiment_never_system_exit(tmp_path, capsys):
    from regjax.engine import Diverged

    main = _load("dropout_mlp").main
    with pytest.raises(runner.UsageError, match=r"^dropout_mlp: argument --rates: must be a probability in \[0, 1\], "
                                                r"got 1.5$"):
        main(["--rates", "1.5", "0.5"])
    with pytest.raises(runner.UsageError, match="^dropout_mlp: --batch-size 5000 exceeds the 1347 training examples"):
        main([*SMALL, "--batch-size", "5000", "--out", str(tmp_path / "big")])
    with pytest.raises(runner.HelpShown):
        main(["--help"])
    assert "--rates" in capsys.readouterr().out
    out = tmp_path / "nan"
    with pytest.raises(Diverged, match=r"^dropout_mlp: \[dropout\] training diverged: .* \(results: .*results.json\)"):
        main([*SMALL, "--lr", "1e30", "--epochs", "2", "--out", str(out), "--quiet"])
    assert json.loads((out / "results.json").read_text())["status"] == "diverged"
    assert not runner.on_command_line()

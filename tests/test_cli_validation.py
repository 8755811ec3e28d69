"""Bad input to the command line and to `train`: clear errors, before any
heavy work; fast `--help`; Ctrl-C; `--epochs` as the total; run directories."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import pytest
import tomllib
from PIL import Image

from keras_spikformer import presets
from keras_spikformer.cli import main as cli_main
from keras_spikformer.training.recipe import Recipe
from keras_spikformer.training.run_setup import (
    describe_schedule,
    fit_schedule,
    write_run_file,
)
from keras_spikformer.training.trainer import train

ROOT = Path(__file__).parents[1]
TRAIN = ["train", "--preset", "spikformer_tiny_digits", "--dataset", "digits"]
CONVERT = ["convert", "ckpt.pth", "-o", "out"]
ANALYZE = ["analyze", "--preset", "p", "--dataset", "digits", "-o", "out"]


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    "argv, message",
    [
        (TRAIN + ["-o", "r", "--batch-size", "0"], "--batch-size: must be a positive"),
        (TRAIN + ["-o", "r", "--batch-size", "-4"], "--batch-size: must be a positive"),
        (TRAIN + ["-o", "r", "--epochs", "0"], "--epochs: must be a positive integer"),
        (TRAIN + ["-o", "r", "--epochs", "1.5"], "--epochs: expected an integer"),
        (TRAIN + ["-o", "r", "--learning-rate", "0"], "--learning-rate: must be a pos"),
        (TRAIN + ["-o", "r", "--learning-rate", "-1"], "--learning-rate: must be a po"),
        (TRAIN + ["-o", "r", "--learning-rate", "nan"], "--learning-rate: must be a p"),
        (TRAIN + ["-o", "r", "--num-classes", "0"], "at least 2 classes, got 0"),
        (TRAIN + ["-o", "r", "--num-classes", "1"], "at least 2 classes, got 1"),
        (TRAIN + ["-o", "r", "--seed", "-1"], "--seed: must be an integer >= 0"),
        (["evaluate", *TRAIN[1:], "--batch-size", "0"], "--batch-size: must be a pos"),
        (CONVERT + ["--num-heads", "0"], "--num-heads: must be a positive integer"),
        (CONVERT + ["--num-timesteps", "0"], "--num-timesteps: must be a positive"),
        (CONVERT + ["--num-timesteps", "2.5"], "--num-timesteps: expected an integ"),
        (CONVERT + ["--patch-size", "0"], "--patch-size: must be a positive integer"),
        (CONVERT + ["--attention-scale", "0"], "--attention-scale: must be a positi"),
        (CONVERT + ["--image-size", "0"], "--image-size: sizes must be positive"),
        (CONVERT + ["--image-size", "32x32x3"], "--image-size: takes N or HxW"),
        (ANALYZE + ["--num-images", "0"], "--num-images: must be a positive integer"),
    ],
)
def test_out_of_range_options_are_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli_main.build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err


@pytest.mark.backend_independent
def test_valid_options_parse():
    args = cli_main.build_parser().parse_args(
        CONVERT + ["--image-size", "32x48", "--num-heads", "4"]
    )
    assert args.image_size == (32, 48) and args.num_heads == 4
    args = cli_main.build_parser().parse_args(
        TRAIN + ["-o", "r", "--learning-rate", "1e-3", "--num-classes", "2"]
    )
    assert args.learning_rate == 1e-3 and args.num_classes == 2


@pytest.mark.backend_independent
def test_the_script_starts_from_the_light_launcher():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["keras-spikformer"] == (
        "keras_spikformer_cli:main"
    )


@pytest.mark.large
@pytest.mark.backend_independent
def test_help_and_argument_errors_answer_fast_without_keras():
    def run(*argv):
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "keras_spikformer_cli", *argv],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        return result, time.perf_counter() - started

    result, seconds = run("--help")
    assert result.returncode == 0 and "train" in result.stdout and seconds < 2
    result, seconds = run(*TRAIN, "-o", "r", "--batch-size", "0")
    assert result.returncode == 2 and seconds < 2
    assert "--batch-size: must be a positive integer" in result.stderr
    assert "tensorflow" not in result.stderr.lower()  # no TF log lines
    probe = (
        "import sys, keras_spikformer_cli as launcher\n"
        "cli = launcher._light_cli()\n"
        f"cli.build_parser().parse_args({TRAIN + ['-o', 'r']!r})\n"
        "heavy = {'keras', 'tensorflow', 'jax', 'torch', 'numpy'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


@pytest.mark.backend_independent
@pytest.mark.parametrize("saved", [True, False])
def test_ctrl_c_is_one_line_with_exit_code_130(tmp_path, monkeypatch, capsys, saved):
    def interrupted(args):
        raise KeyboardInterrupt

    add = cli_main.COMMANDS["train"][0]
    monkeypatch.setitem(cli_main.COMMANDS, "train", (add, interrupted))
    if saved:
        (tmp_path / "run" / "backup").mkdir(parents=True)
    assert cli_main.main(TRAIN + ["-o", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    hint = "rerun with --resume" if saved else "rerun the same command"
    assert err.startswith("keras-spikformer train: interrupted") and hint in err


def test_fit_schedule_scales_every_part():
    recipe = Recipe.from_preset("spikformer_tiny_cifar")  # 300 + 10 epochs
    assert (recipe.warmup_epochs, recipe.cooldown_epochs) == (20, 10)
    one = fit_schedule(recipe, 1)
    assert one.total_epochs() == 1 and one.warmup_epochs == 0
    part = fit_schedule(recipe, 31)
    assert (part.epochs, part.warmup_epochs, part.cooldown_epochs) == (30, 2, 1)
    assert part.augment["mixup_off_epoch"] == 20  # 200 of 310
    assert fit_schedule(recipe, 310) == recipe
    assert describe_schedule(part).startswith("schedule: 31 epochs = 30 cosine")
    with pytest.raises(ValueError, match="`epochs` must be an integer >= 1"):
        fit_schedule(recipe, 0)


class Stop(Exception):
    pass


class StopAtStart(keras.callbacks.Callback):
    """Ends `fit` before the first step, keeping the epochs it was given."""

    def on_train_begin(self, logs=None):
        self.epochs = self.params["epochs"]
        raise Stop()


def _digits_preset(tmp_path, name="digits", **recipe_changes):
    preset = tmp_path / name
    shutil.copytree(presets.resolve("spikformer_tiny_digits"), preset)
    recipe = json.loads((preset / "recipe.json").read_text())
    (preset / "recipe.json").write_text(json.dumps({**recipe, **recipe_changes}))
    return preset


def test_epochs_is_the_total_with_the_schedule_printed(tmp_path, capsys):
    preset = _digits_preset(tmp_path, epochs=300, warmup_epochs=20, cooldown_epochs=10)
    stop = StopAtStart()
    with pytest.raises(Stop):
        train(preset, "digits", tmp_path / "run", epochs=1, callbacks=[stop])
    assert stop.epochs == 1  # was 11: the recipe's 10 cooldown epochs on top
    out = capsys.readouterr().out
    assert "schedule: 1 epochs = 1 cosine (the first 0 warm up) + 0 cooldown" in out
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["preset"] == str(preset) and run["num_classes"] == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "`epochs` must be an integer >= 1"),
        ({"batch_size": -4}, "`batch_size` must be an integer >= 1"),
        ({"learning_rate": -1.0}, "`learning_rate` must be a positive number"),
        ({"num_classes": 1}, "`num_classes` must be an integer >= 2"),
    ],
)
def test_train_refuses_out_of_range_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train("spikformer_tiny_digits", "digits", tmp_path / "run", **kwargs,
              callbacks=[StopAtStart()])  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_output_that_is_not_a_run_of_ours_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty .thesis.tex. and holds no"):
        train("spikformer_tiny_digits", "digits", out, callbacks=[StopAtStart()])
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_resume_with_another_architecture_is_refused(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(Stop):
        train(_digits_preset(tmp_path), "digits", run, callbacks=[StopAtStart()])
    (run / "backup").mkdir()  # as after an interrupted epoch
    other = _digits_preset(tmp_path, "wider")
    config = json.loads((other / "config.json").read_text())
    config["config"]["hidden_dim"] = 128
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="was started with preset .*hidden_dim: 64 ->"):
        train(other, "digits", run, resume=True, callbacks=[StopAtStart()])


def test_one_class_folder_is_refused(tmp_path):
    for split in ("train", "test"):
        folder = tmp_path / "data" / split / "only_class"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("L", (16, 16), color=i * 40).save(folder / f"{i}.png")
    with pytest.raises(ValueError, match="1 class; a classifier needs at least 2"):
        train(
            "spikformer_tiny_digits", "folder", tmp_path / "run",
            data_dir=tmp_path / "data", callbacks=[StopAtStart()],
        )  # fmt: skip


def test_ended_run_directory_written_by_us_can_restart(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_run_file(run, {"preset": "x", "num_classes": 10, "config": {}})
    (run / "log.csv").write_text("epoch\n")  # killed before its first backup
    with pytest.raises(Stop):
        train("spikformer_tiny_digits", "digits", run, callbacks=[StopAtStart()])


@pytest.mark.large
def test_sigint_during_training_then_resume(tmp_path):
    out = tmp_path / "run"
    # The CLI with Python's KeyboardInterrupt handler installed even when pytest
    # runs with SIGINT ignored (a background job of a shell, `nohup ... &`): the
    # child would inherit that, Python would install no handler and the run
    # would train on to exit 0. (No `preexec_fn`: unsafe in a threaded parent.)
    child = (
        "import runpy, signal; "
        "signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('keras_spikformer_cli', run_name='__main__')"
    )
    argv = [sys.executable, "-c", child, *TRAIN, "-o", str(out)]
    # Enough epochs that the run is still training when the signal arrives.
    argv += ["--epochs", "20", "--batch-size", "128"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    saved = out / "backup" / "training_metadata.json"  # written after an epoch
    while not saved.is_file() and process.poll() is None:
        assert time.time() < deadline, "no epoch was backed up in 300 s"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    err = err.decode()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("keras-spikformer train: interrupted: rerun with --resume")
    resumed = subprocess.run(argv + ["--resume"], capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 20

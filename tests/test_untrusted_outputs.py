"""Nothing of the user's is deleted or silently replaced (issue 29: 4, 5, 6).

`--overwrite` / `overwrite=True` replace only a directory this library wrote
of the same kind; run markers are recognisably ours; SIGTERM and SIGHUP clean
up like Ctrl-C.
"""

import json
import os
import signal

import pytest

from keras_spikformer import Spikformer, presets
from keras_spikformer.analysis.run_analysis import REPORT
from keras_spikformer.cli import main as cli
from keras_spikformer.io_utils import atomic_directory, check_writable_directory
from keras_spikformer.training.run_setup import (
    check_evaluate_output,
    check_run_directory,
    write_run_file,
)

pytestmark = pytest.mark.backend_independent

PRESET = "spikformer_tiny_digits"


@pytest.fixture(scope="module")
def model():
    return Spikformer.from_preset(PRESET)


def _user_directory(path):
    path.mkdir()
    (path / "thesis.tex").write_text("years of work")
    (path / "config.json").write_text("{}")
    return path


def test_overwrite_never_replaces_a_directory_of_the_users(model, tmp_path):
    mine = _user_directory(tmp_path / "mine")
    with pytest.raises(FileExistsError, match="not a keras-spikformer preset"):
        model.save_to_preset(mine, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temp left


def test_overwrite_replaces_a_preset_of_ours(model, tmp_path):
    model.save_to_preset(tmp_path / "p")
    (tmp_path / "p" / "metadata.json").write_text('{"old": true}')
    model.save_to_preset(tmp_path / "p", overwrite=True)
    assert "old" not in json.loads((tmp_path / "p" / "metadata.json").read_text())


def test_overwrite_refuses_the_current_directory(model, tmp_path, monkeypatch):
    model.save_to_preset(tmp_path / "p")
    monkeypatch.chdir(tmp_path / "p")
    with pytest.raises(FileExistsError, match="current directory"):
        model.save_to_preset(".", overwrite=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileExistsError, match="current directory"):
        check_writable_directory(tmp_path, True, REPORT)


def test_overwrite_refuses_symlinks_and_files(model, tmp_path):
    model.save_to_preset(tmp_path / "p")
    (tmp_path / "link").symlink_to(tmp_path / "p")
    with pytest.raises(FileExistsError, match="symbolic link"):
        model.save_to_preset(tmp_path / "link", overwrite=True)
    (tmp_path / "file").write_text("notes")
    with pytest.raises(FileExistsError, match="is a file"):
        model.save_to_preset(tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_text() == "notes"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_zoo_is_never_written(model):
    with pytest.raises(FileExistsError, match="preset zoo"):
        model.save_to_preset(presets.zoo_dir() / PRESET, overwrite=True)
    with pytest.raises(FileExistsError, match="preset zoo"):
        model.save_to_preset(presets.zoo_dir() / "new_preset")
    assert not (presets.zoo_dir() / "new_preset").exists()


def test_a_report_never_replaces_a_preset(model, tmp_path):
    model.save_to_preset(tmp_path / "p")
    with pytest.raises(FileExistsError, match="not a keras-spikformer analysis report"):
        check_writable_directory(tmp_path / "p", True, REPORT)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.json").write_text("{}")
    (tmp_path / "r" / "firing_rates.png").write_bytes(b"png")
    assert check_writable_directory(tmp_path / "r", True, REPORT) == tmp_path / "r"


def test_analyze_cli_refuses_before_any_work(tmp_path, capsys):
    mine = _user_directory(tmp_path / "mine")
    code = cli.main(
        ["analyze", "--preset", PRESET, "--dataset", "digits", "--output", str(mine),
         "--overwrite"]
    )  # fmt: skip
    assert (
        code == 2
        and "not a keras-spikformer analysis report" in capsys.readouterr().err
    )
    assert (mine / "thesis.tex").exists()


# ----------------------------------------------------------------- 5: markers
def test_train_refuses_a_run_json_that_is_not_ours(tmp_path):
    (tmp_path / "run.json").write_text('{"experiment": "someone else"}')
    (tmp_path / "data.csv").write_text("1,2,3")
    with pytest.raises(FileExistsError, match="holds no keras-spikformer run"):
        check_run_directory(tmp_path, resume=False)
    write_run_file(tmp_path, {"preset": PRESET, "num_classes": 10, "config": {}})
    assert check_run_directory(tmp_path, resume=False)[2] == 0


def test_evaluate_output_never_replaces_metrics(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text('{"test_accuracy": 0.96}')
    with pytest.raises(FileExistsError, match="already holds metrics.json"):
        check_evaluate_output(tmp_path)
    code = cli.main(
        [
            "evaluate",
            "--preset",
            PRESET,
            "--dataset",
            "digits",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 2 and "already holds metrics.json" in capsys.readouterr().err
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "test_accuracy": 0.96
    }
    run = tmp_path / "run"
    run.mkdir()
    write_run_file(run, {"preset": PRESET, "num_classes": 10, "config": {}})
    with pytest.raises(FileExistsError, match="is a training run"):
        check_evaluate_output(run)


# ------------------------------------------------------ 6: SIGTERM and SIGHUP
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(tmp_path, monkeypatch, capsys, name):
    signum = getattr(signal, name)
    # Under `nohup` SIGHUP starts ignored, and the CLI keeps an ignored signal
    # ignored: start from the default disposition, as in a terminal session.
    original = signal.signal(signum, signal.SIG_DFL)

    def command(args):
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "config.json").write_text("{}")
            os.kill(os.getpid(), signum)  # arrives while the preset is half written
            (tmp / "model.weights.h5").write_bytes(b"never")

    monkeypatch.setitem(cli.COMMANDS, "convert", (cli.COMMANDS["convert"][0], command))
    args = cli.build_parser().parse_args(["convert", "x.pth", "--output", "out"])
    try:
        assert cli.run(args) == 128 + signum
        assert "interrupted" in capsys.readouterr().err
        assert list(tmp_path.iterdir()) == []  # no .out.tmp-* directory left
        assert signal.getsignal(signum) is signal.SIG_DFL  # handlers restored
    finally:
        signal.signal(signum, original)

"""Anytime prediction: `predict(x, early_exit=...)` stops each sample once its
confidence rule holds on the running mean logits, and the accuracy-vs-time-
steps curve (`analysis.time_curve`, `keras-spikformer analyze --time-curve`).
"""

import json

import keras
import numpy as np
import pytest

from keras_spikformer import Spikformer
from keras_spikformer.analysis.time_curve import time_curve
from keras_spikformer.streaming import EarlyExit, anytime_predict
from keras_spikformer.streaming.stream import Stream

PRESET = "spikformer_tiny_digits"  # trained, T = 2, 16x16x1
CLOSE = 0.0 if keras.backend.backend() == "tensorflow" else 1e-5


@pytest.fixture(scope="module")
def digits_model():
    from keras_spikformer.testing.tiny_models import zero_initialisers

    with zero_initialisers():  # the preset's weights replace them all
        return Spikformer.from_preset(PRESET, load_weights=True)


def digits(count, start=0):
    """Raw uint8 16x16x1 sklearn digits (the preset's preprocessor takes them)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = raw.images[start : start + count, ..., None] * (255.0 / 16.0)
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2).astype("uint8")
    return images, raw.target[start : start + count]


def multi_step(model, x):
    """What `model.predict` returns for model-ready `x` (the multi-step
    model, called directly: no compiled predict function to build)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def running_means(model, x, num_steps, frames=False):
    """`[num_steps, N, classes]`: the stream's mean logits after each step,
    the whole input as one batch."""
    stream = model.stream(len(x))
    stream.reset_state()
    out = []
    for t in range(num_steps):
        step = stream.step(x[:, t] if frames else x)
        out.append(keras.ops.convert_to_numpy(step["mean_logits"]))
    return np.stack(out)


def split_threshold(scores):
    """A threshold between two well-separated scores in the middle of `scores`."""
    values = np.sort(scores)
    gaps = np.diff(values)
    middle = np.arange(len(gaps))
    best = np.argmax(gaps - 1e-3 * np.abs(middle - len(gaps) / 2))
    assert gaps[best] > 1e-4, "no separable scores"
    return float((values[best] + values[best + 1]) / 2)


# --- the rule ----------------------------------------------------------------


@pytest.mark.backend_independent
def test_rule_specs_and_clear_errors():
    assert EarlyExit.get(0.9) == EarlyExit("max_probability", 0.9)
    assert EarlyExit.get("margin:0.3") == EarlyExit("margin", 0.3)
    rule = EarlyExit("margin", 0.25, min_steps=3)
    config = keras.saving.serialize_keras_object(rule)
    assert keras.saving.deserialize_keras_object(config) == rule
    assert EarlyExit.get(rule.get_config()) == rule
    # Softmax [0.5, 0.3, 0.2] (logits = log p): max 0.5, margin 0.2.
    logits = np.log([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(
        EarlyExit("max_probability", 1).confidence(logits), [0.5, 0.6]
    )
    np.testing.assert_allclose(EarlyExit("margin", 1).confidence(logits), [0.2, 0.4])
    assert EarlyExit("margin", 0.3).exits(logits, 1).tolist() == [False, True]
    assert not EarlyExit("margin", 0.3, min_steps=2).exits(logits, 1).any()
    with pytest.raises(ValueError, match=r"\(0, 1\].*could ever exit above 1"):
        EarlyExit.get(1.5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        EarlyExit.get("margin:0")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        EarlyExit("margin", float("nan"))
    with pytest.raises(ValueError, match="Did you mean 'margin'"):
        EarlyExit.get("marign:0.3")
    with pytest.raises(ValueError, match="'rule:threshold'"):
        EarlyExit.get("margin")
    with pytest.raises(ValueError, match="min_steps"):
        EarlyExit("margin", 0.3, min_steps=0)
    with pytest.raises(ValueError, match="early_exit"):
        EarlyExit.get(True)


# --- anytime prediction -------------------------------------------------------


def test_a_rule_that_never_fires_gives_predict(digits_model):
    images, _ = digits(5)
    expected = multi_step(digits_model, digits_model.preprocess(images))
    # 5 images by 2: the last batch is padded, the padding dropped.
    logits, steps = digits_model.predict(images, early_exit="margin:1.0", batch_size=2)
    assert logits.shape == expected.shape and steps.tolist() == [2] * 5
    np.testing.assert_allclose(logits, expected, atol=CLOSE, rtol=0)
    with pytest.raises(ValueError, match="fused"):
        digits_model.predict(images, early_exit=0.9, fused=True)
    with pytest.raises(ValueError, match="callbacks"):
        digits_model.predict(images, early_exit=0.9, callbacks=[])
    with pytest.raises(ValueError, match="could ever exit above 1"):
        digits_model.predict(images, early_exit=1.01)


def test_a_rule_that_always_fires_stops_every_batch_at_min_steps(
    digits_model, monkeypatch
):
    images, _ = digits(5)
    means = running_means(digits_model, digits_model.preprocess(images), 2)
    calls = []
    step = Stream.step
    monkeypatch.setattr(Stream, "step", lambda s, x: calls.append(1) or step(s, x))
    logits, steps = anytime_predict(digits_model, images, 1e-6, batch_size=2)
    assert steps.tolist() == [1] * 5
    assert len(calls) == 3  # 3 batches, each stopped after its first step
    np.testing.assert_allclose(logits, means[0], atol=1e-5, rtol=0)
    rule = EarlyExit("max_probability", 1e-6, min_steps=2)
    logits, steps = anytime_predict(digits_model, images, rule, batch_size=2)
    assert steps.tolist() == [2] * 5
    np.testing.assert_allclose(logits, means[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="min_steps=3 is more than the 2 steps"):
        anytime_predict(digits_model, images, EarlyExit("margin", 0.5, min_steps=3))


def test_each_sample_stops_at_its_own_step_with_that_steps_mean(digits_model):
    images, _ = digits(7)
    means = running_means(digits_model, digits_model.preprocess(images), 2)
    for rule in ("max_probability", "margin"):
        scores = EarlyExit(rule, 1.0).confidence(means[0])
        threshold = split_threshold(scores)
        logits, steps = anytime_predict(
            digits_model, images, EarlyExit(rule, threshold), batch_size=4
        )
        expected_steps = np.where(scores >= threshold, 1, 2)
        assert 1 in expected_steps and 2 in expected_steps
        assert steps.tolist() == expected_steps.tolist()
        expected = means[expected_steps - 1, np.arange(len(images))]
        np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


def frames_model():
    """A random event-frame Spikformer: `[batch, 3, 8, 8, 2]`. Random weights
    from numpy (JAX would compile one random kernel per weight shape)."""
    from keras_spikformer.testing.tiny_models import tiny_frames_spikformer

    model = tiny_frames_spikformer(num_timesteps=3, num_classes=4)
    rng = np.random.default_rng(1)
    for variable in model.trainable_weights:
        scale = 1.0 if len(variable.shape) == 1 else 0.5
        shift = 1.0 if "gamma" in variable.path else 0.0
        variable.assign(shift + scale * rng.normal(size=variable.shape) * 0.3)
    return model


def test_event_inputs_feed_frame_t_at_step_t():
    model = frames_model()
    rng = np.random.default_rng(0)
    frames = rng.poisson(1.5, size=(5, 3, 8, 8, 2)).astype("float32")
    logits, steps = model.predict(frames, early_exit="margin:1.0", batch_size=5)
    assert steps.tolist() == [3] * 5
    np.testing.assert_allclose(logits, multi_step(model, frames), atol=1e-5, rtol=0)
    # Two steps only: the first two frames.
    means = running_means(model, frames, 2, frames=True)
    logits, steps = anytime_predict(model, frames, "margin:1.0", num_steps=2)
    assert steps.tolist() == [2] * 5
    np.testing.assert_allclose(logits, means[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="hold 3 frames but 4 steps"):
        anytime_predict(model, frames, 0.9, num_steps=4)
    with pytest.raises(ValueError, match=r"streams event frames \[N, T, 8, 8, 2\]"):
        anytime_predict(model, frames[:, 0], 0.9)


# --- the accuracy-vs-time-steps curve ------------------------------------------


def test_time_curve_ends_at_evaluate_and_scores_each_rule(digits_model):
    images, labels = digits(20, start=100)
    rules = [EarlyExit("max_probability", 0.9), EarlyExit("margin", 0.5)]
    # Batches of 8: the third is padded.
    curve = time_curve(digits_model, (images, labels), rules, batch_size=8)
    digits_model.compile()
    _, accuracy = digits_model.evaluate(images, labels, verbose=0)
    assert curve["num_examples"] == 20 and curve["num_steps"] == 2
    assert curve["accuracy"][-1] == pytest.approx(accuracy, abs=1e-6)
    means = running_means(digits_model, digits_model.preprocess(images), 2)
    first = float(np.mean(np.argmax(means[0], -1) == labels))
    assert curve["accuracy"][0] == pytest.approx(first)
    assert first != curve["accuracy"][-1]  # the two steps differ here
    for rule, point in zip(rules, curve["early_exit"], strict=True):
        steps = np.where(rule.exits(means[0], 1), 1, 2)
        logits = means[steps - 1, np.arange(len(images))]
        assert point["rule"] == rule.rule and point["threshold"] == rule.threshold
        assert point["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == labels))
        assert point["mean_steps"] == pytest.approx(np.mean(steps))
        assert point["exited_early"] == pytest.approx(np.mean(steps < 2))
        assert 0 < point["exited_early"] < 1


@pytest.mark.backend_independent
def test_analyze_time_curve_refuses_bad_rules_before_any_work(tmp_path, capsys):
    from keras_spikformer.cli.main import main as cli

    out = tmp_path / "curve"
    args = ["analyze", "--preset", PRESET, "--dataset", "digits", "-o", str(out)]
    assert cli(args + ["--time-curve", "--exit-rules", "margin:2"]) == 2
    assert "could ever exit above 1" in capsys.readouterr().err
    assert cli(args + ["--exit-rules", "margin:0.5"]) == 2
    assert "--time-curve" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.large
def test_analyze_time_curve_cli_on_the_digits_test_split(tmp_path, capsys):
    from keras_spikformer.cli.main import main as cli
    from keras_spikformer.training.trainer import evaluate

    out = tmp_path / "curve"
    args = ["analyze", "--preset", PRESET, "--dataset", "digits", "--time-curve"]
    args += ["--exit-rules", "max_probability:0.9", "margin:0.5", "-o", str(out)]
    assert cli(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "time_curve.json",
        "time_curve.png",
    ]
    curve = json.loads((out / "time_curve.json").read_text())
    expected = evaluate(PRESET, "digits", verbose=0)
    assert curve["num_examples"] == expected["num_test"] == 360
    assert curve["accuracy"][-1] == pytest.approx(expected["test_accuracy"], abs=1e-6)
    assert [p["rule"] for p in curve["early_exit"]] == ["max_probability", "margin"]
    for point in curve["early_exit"]:
        assert 1.0 <= point["mean_steps"] <= 2.0
    image = pytest.importorskip("matplotlib.image").imread(out / "time_curve.png")
    assert float(np.std(image[..., :3])) > 0
    assert cli(args) == 2  # an existing curve is not replaced silently
    assert "overwrite" in capsys.readouterr().err
    assert cli(args + ["--overwrite"]) == 0

"""Firing rates, synaptic operations, energy, the rate callback and plots."""

import csv
import functools
import json
import math

import keras
import numpy as np
import pytest
from conftest import FIXTURE_PRESETS, images_of, load_fixture, state_dict_of

from keras_spikformer import Spikformer, record_spikes
from keras_spikformer.analysis.callbacks import FiringRateCallback
from keras_spikformer.analysis.energy import (
    CONVENTIONS,
    energy_report,
    product_events,
)
from keras_spikformer.analysis.firing_rates import firing_rates, neuron_layer_names
from keras_spikformer.convert import load_reference_weights
from keras_spikformer.layers import SpikingDense

FIXTURES = sorted(FIXTURE_PRESETS)


@functools.cache
def fixture_model(name):
    """Built once per module (building is slow under JAX); no test changes it."""
    npz, config = load_fixture(name)
    model = Spikformer.from_preset(FIXTURE_PRESETS[name], load_weights=False)
    load_reference_weights(model, state_dict_of(npz))
    return model, images_of(npz), config


def random_images(model, n=1, seed=0):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype("float32")


# --- firing rates -------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_firing_rates_match_reference_fixture(name):
    model, images, config = fixture_model(name)
    before = keras.ops.convert_to_numpy(model(images, training=False))
    moving = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    rates = firing_rates(model, images)
    expected = {k: v["rate"] for k, v in config["lif_stats"].items()}
    assert list(rates) == list(expected)  # reference names, model order
    for key, rate in expected.items():
        assert rates[key] == pytest.approx(rate, abs=1e-6), key
    # Slicing the batch changes nothing; the model and its outputs are untouched.
    sliced = firing_rates(model, images, batch_size=1)
    assert sliced == pytest.approx(rates, abs=1e-7)
    after = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_array_equal(before, after)
    for old, var in zip(moving, model.non_trainable_variables, strict=True):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(var))


def test_firing_rates_of_any_model_with_neurons_use_layer_paths():
    inputs = keras.Input((2, 5, 8))
    x = SpikingDense(16, name="first")(inputs)
    outputs = SpikingDense(4, name="second")(x)
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).normal(size=(2, 2, 5, 8)).astype("float32")
    rates = firing_rates(model, images)
    assert list(rates) == ["first/lif", "second/lif"]
    with record_spikes() as record:
        model(images)
    layers = neuron_layer_names(model)
    for name, rate in rates.items():
        spikes = keras.ops.convert_to_numpy(record.last(layers[name]))
        assert rate == pytest.approx(float(spikes.mean()), abs=1e-7)


def test_firing_rates_errors():
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no spiking neuron layers"):
        firing_rates(dense, np.zeros((1, 4)))
    model, _, _ = fixture_model("cifar10_small")
    with pytest.raises(ValueError, match="empty batch"):
        firing_rates(model, np.zeros((0, 32, 32, 3)))
    with pytest.raises(ValueError, match="expects inputs of shape"):
        firing_rates(model, np.zeros((1, 28, 28, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        firing_rates(model, np.zeros((1, 32, 32, 3)), batch_size=0)


# --- MACs, SOPs, energy -------------------------------------------------------


def analytic_macs(config):
    """MACs per image and time step of every counted operation, from the config."""
    height, width, channels = config["image_shape"]
    dim, heads = config["hidden_dim"], config["num_heads"]
    pooled = int(math.log2(config["patch_size"]))
    widths = [dim // 8, dim // 4, dim // 2, dim]
    macs = {}
    c_in = channels
    for i, c_out in enumerate(widths):
        suffix = ("", "1", "2", "3")[i]
        macs[f"patch_embed.proj_conv{suffix}"] = height * width * 3 * 3 * c_in * c_out
        c_in = c_out
        if i >= 4 - pooled:  # MaxPool(3, 2, pad 1) halves even sizes
            height, width = height // 2, width // 2
    macs["patch_embed.rpe_conv"] = height * width * 3 * 3 * dim * dim
    tokens, head_dim = height * width, dim // heads
    hidden = int(dim * config["mlp_ratio"])
    for b in range(config["num_layers"]):
        for name in ("q", "k", "v"):
            macs[f"block.{b}.attn.{name}_linear"] = tokens * dim * dim
        if tokens < head_dim:
            macs[f"block.{b}.attn.q@k^T"] = heads * tokens * head_dim * tokens
            macs[f"block.{b}.attn.(q@k^T)@v"] = heads * tokens * tokens * head_dim
        else:
            macs[f"block.{b}.attn.k^T@v"] = heads * head_dim * tokens * head_dim
            macs[f"block.{b}.attn.q@(k^T@v)"] = heads * tokens * head_dim * head_dim
        macs[f"block.{b}.attn.proj_linear"] = tokens * dim * dim
        macs[f"block.{b}.mlp.fc1_linear"] = tokens * dim * hidden
        macs[f"block.{b}.mlp.fc2_linear"] = tokens * hidden * dim
    macs["head"] = dim * config["num_classes"]
    return macs


def check_energy_formula(report, e_mac, e_ac):
    t = report.num_timesteps
    for row in report.layers:
        if row["input"] == "real":
            assert row["input_rate"] is None and row["sops"] == 0
            passes = 1 if row["name"] == "head" else t
            assert row["timesteps"] == passes
            assert row["mac_ops"] == pytest.approx(passes * row["macs"])
        else:
            assert row["timesteps"] == t and row["mac_ops"] == 0
            assert row["sops"] == pytest.approx(row["input_rate"] * t * row["macs"])
        energy = (row["sops"] * e_ac + row["mac_ops"] * e_mac) * 1e3
        assert row["energy_mj"] == pytest.approx(energy)
    sops = sum(r["sops"] for r in report.layers)
    mac_ops = sum(r["mac_ops"] for r in report.layers)
    assert report.total_sops == pytest.approx(sops / 1e9)
    assert report.total_mj == pytest.approx((sops * e_ac + mac_ops * e_mac) * 1e3)
    ann = sum(r["macs"] for r in report.layers)
    assert report.ann_mj == pytest.approx(ann * e_mac * 1e3)


@pytest.mark.parametrize(
    "preset", ["spikformer_4_384_cifar10", "spikformer_8_384_imagenet"]
)
def test_macs_match_analytic_counts(preset):
    model = Spikformer.from_preset(preset, load_weights=False)
    report = energy_report(model, random_images(model), e_mac=5e-12, e_ac=1e-12)
    expected = analytic_macs(
        {**model.backbone.get_config(), "num_classes": model.num_classes}
    )
    assert [row["name"] for row in report.layers] == list(expected)
    assert {row["name"]: row["macs"] for row in report.layers} == expected
    check_energy_formula(report, 5e-12, 1e-12)
    kinds = {row["name"]: (row["kind"], row["input"]) for row in report.layers}
    assert kinds["patch_embed.proj_conv"] == ("conv", "real")
    assert kinds["block.0.attn.q_linear"] == ("linear", "counts")
    assert kinds["block.0.attn.proj_linear"] == ("linear", "spikes")
    assert kinds["head"] == ("linear", "real")


@pytest.mark.parametrize("name", FIXTURES)
def test_input_rates_are_measured_on_the_real_spikes(name):
    model, images, config = fixture_model(name)
    report = energy_report(model, images)
    rows = {row["name"]: row for row in report.layers}
    rates = {k: v["rate"] for k, v in config["lif_stats"].items()}
    assert report.firing_rates == pytest.approx(rates, abs=1e-6)
    # Layers fed directly by a neuron see that neuron's rate.
    assert rows["block.0.attn.proj_linear"]["input_rate"] == pytest.approx(
        rates["block.0.attn.attn_lif"], abs=1e-6
    )
    assert rows["block.0.mlp.fc2_linear"]["input_rate"] == pytest.approx(
        rates["block.0.mlp.fc1_lif"], abs=1e-6
    )
    if model.backbone.patch_size == 4:  # stage 0 is not pooled on CIFAR
        assert rows["patch_embed.proj_conv1"]["input_rate"] == pytest.approx(
            rates["patch_embed.proj_lif"], abs=1e-6
        )
    # The residual stream is a count: q, k and v see the same input, fc1 sees more.
    q = rows["block.0.attn.q_linear"]["input_rate"]
    assert rows["block.0.attn.v_linear"]["input_rate"] == q
    assert rows["block.0.mlp.fc1_linear"]["input_rate"] >= q
    check_energy_formula(report, 4.6e-12, 0.9e-12)
    assert json.loads(report.to_json())["total_mj"] == pytest.approx(report.total_mj)
    table = report.to_markdown()
    assert "| block.0.mlp.fc1_linear | linear | counts |" in table
    assert CONVENTIONS.splitlines()[0] in table
    assert (
        report.conventions.startswith(CONVENTIONS)
        and "Spikformer" in report.conventions
    )


@pytest.mark.parametrize("tokens, head_dim", [(6, 8), (9, 4)])
def test_attention_product_events_are_exact(tokens, head_dim):
    rng = np.random.default_rng(tokens)
    heads = 2
    q, k, v = (
        (rng.random((2, 3, tokens, heads * head_dim)) < 0.3).astype("float32")
        for _ in range(3)
    )
    names, macs, events = product_events(q, k, v, heads)

    def split(x):  # [B, T, heads, N, d]
        return x.reshape(2, 3, tokens, heads, head_dim).swapaxes(2, 3)

    qh, kh, vh = split(q), split(k), split(v)
    if tokens < head_dim:
        assert names == ("q@k^T", "(q@k^T)@v")
        scores = qh @ kh.swapaxes(-1, -2)
        pairs1 = qh[..., :, None, :] * kh[..., None, :, :]  # [.., n, m, c]
        pairs2 = (scores != 0)[..., :, :, None] * vh[..., None, :, :]  # [.., n, m, e]
        assert macs == (heads * tokens * tokens * head_dim,) * 2
    else:
        assert names == ("k^T@v", "q@(k^T@v)")
        kv = kh.swapaxes(-1, -2) @ vh  # [.., c, e]
        pairs1 = kh[..., :, :, None] * vh[..., :, None, :]  # [.., n, c, e]
        pairs2 = qh[..., :, :, None] * (kv != 0)[..., None, :, :]  # [.., n, c, e]
        assert macs == (heads * head_dim * head_dim * tokens,) * 2
    assert events == (float(pairs1.sum()), float(pairs2.sum()))


def test_energy_report_leaves_the_model_as_it_was_even_on_error():
    model = Spikformer.from_preset("spikformer_tiny_dvs", load_weights=False)
    images = np.random.default_rng(0).poisson(0.3, (1, *model.inputs[0].shape[1:]))
    report = energy_report(model, images.astype("float32"))
    first = report.layers[0]
    assert first["name"] == "patch_embed.proj_conv"
    assert first["input"] == "events" and first["mac_ops"] == 0  # DVS: events
    assert first["input_rate"] == pytest.approx(images.mean(), rel=1e-6)
    with pytest.raises(ValueError, match="expects inputs of shape"):
        energy_report(model, np.zeros((1, 4, 32, 32, 2)))
    patched = [
        layer.name
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if "call" in layer.__dict__
    ]
    assert patched == []
    with pytest.raises(TypeError, match="Spikformer"):
        energy_report(keras.Sequential([keras.Input((2, 4)), SpikingDense(2)]), [])


# --- callback -----------------------------------------------------------------


def test_firing_rate_callback_logs_rates(tmp_path):
    # The fixture's architecture and batch shape: under JAX the eager ops are
    # then already compiled, which keeps this test short.
    model = Spikformer.from_preset("spikformer_tiny_cifar", load_weights=False)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = random_images(model, n=4)
    y = np.arange(4)
    callback = FiringRateCallback(
        x[:2], log_prefix="rate/", tensorboard_dir=str(tmp_path / "tb")
    )
    csv_path = tmp_path / "log.csv"
    history = model.fit(
        x,
        y,
        batch_size=2,
        epochs=1,
        validation_data=(x[:2], y[:2]),
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv_path))],
        verbose=0,
    )
    rates = firing_rates(model, x[:2])
    for name, rate in rates.items():
        assert history.history[f"rate/{name}"][-1] == pytest.approx(rate, abs=1e-7)
    assert "rate/mean" in history.history
    with open(csv_path) as f:
        columns = next(csv.reader(f))
    assert "rate/block.0.attn.attn_lif" in columns
    import tensorflow as tf

    scalars = {}
    for path in (tmp_path / "tb").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars[value.tag] = float(tf.make_ndarray(value.tensor))
    assert scalars["rate/block.0.mlp.fc1_lif"] == pytest.approx(
        rates["block.0.mlp.fc1_lif"], abs=1e-7
    )
    seen = {}
    spy = keras.callbacks.LambdaCallback(on_test_end=lambda logs: seen.update(logs))
    model.evaluate(x, y, batch_size=2, callbacks=[callback, spy], verbose=0)
    assert seen["rate/patch_embed.proj_lif"] == pytest.approx(
        rates["patch_embed.proj_lif"], abs=1e-7
    )
    assert callback.last_logs["rate/mean"] == pytest.approx(
        sum(rates.values()) / len(rates)
    )


# --- plots --------------------------------------------------------------------


def read_png(path):
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert float(np.std(image[..., :3])) > 0, "blank image"
    return image


def test_plots_are_written_with_the_size_asked(tmp_path):
    pytest.importorskip("matplotlib")
    from keras_spikformer.analysis.plots import (
        plot_attention_maps,
        plot_firing_rates,
        plot_spike_raster,
    )

    model, images, _ = fixture_model("cifar10_small")
    rates = firing_rates(model, images)
    path = plot_firing_rates(rates, tmp_path / "rates.png", figsize=(6, 4), dpi=50)
    assert read_png(path).shape[:2] == (200, 300)
    path = plot_spike_raster(
        model, images[0], "block.0.attn.q_lif", tmp_path / "raster.png", neurons=32,
        figsize=(5, 4), dpi=40,
    )  # fmt: skip
    assert read_png(path).shape[:2] == (160, 200)
    path = plot_attention_maps(
        model, images[0], tmp_path / "attention.png", block=0, head=1,
        figsize=(9, 3), dpi=40,
    )  # fmt: skip
    assert read_png(path).shape[:2] == (120, 360)
    with pytest.raises(ValueError, match="Did you mean"):
        plot_spike_raster(model, images[0], "block.0.attn.q_lf", tmp_path / "x.png")
    with pytest.raises(ValueError, match="block"):
        plot_attention_maps(model, images[0], tmp_path / "x.png", block=3)


@pytest.mark.parametrize(
    "preset, plots",
    [
        ("spikformer_tiny_digits", ["attention_maps.png"]),
        # Other families: no attention-map figure (their attention has no score map).
        ("sdt_tiny_cifar", []),
    ],
)
def test_analyze_cli_writes_report_table_and_plots(preset, plots, tmp_path, capsys):
    from keras_spikformer.cli.main import main as cli

    out = tmp_path / "analysis"
    args = ["analyze", "--preset", preset, "--dataset", "digits"]
    assert cli(args + ["--num-images", "4", "--output", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        plots + ["firing_rates.png", "report.json", "report.md", "spike_raster.png"]
    )
    report = json.loads((out / "report.json").read_text())
    assert report["total_mj"] > 0  # the encoding layer's MACs at least
    if preset.startswith("spikformer"):  # a fresh SDT is silent on upscaled digits
        assert report["total_sops_g"] > 0
    assert "Counting conventions" in (out / "report.md").read_text()
    # An existing report is not overwritten silently.
    assert cli(args + ["--num-images", "4", "--output", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err

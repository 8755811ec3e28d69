"""The streaming image pipeline: timm's transforms, bad input, order, static shapes."""

import io
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_spikformer.data import crops
from keras_spikformer.data.augment import make_eval_preprocess, make_train_augment
from keras_spikformer.data.image_datasets import image_folder
from keras_spikformer.data.image_decode import (
    EvalExampleTransform,
    TrainExampleTransform,
)
from keras_spikformer.data.image_pipeline import eval_batches, train_batches
from keras_spikformer.training.recipe import Recipe

IMAGENET = "spikformer_8_384_imagenet"


def smooth_image(rng, height, width, channels=3):
    """A photo-like image: smooth colour waves plus a little noise."""
    y, x = np.mgrid[0:height, 0:width]
    waves = [
        128 + 100 * np.sin(x / 7.0 + c) * np.cos(y / 9.0 - c) for c in range(channels)
    ]
    noisy = np.stack(waves, -1) + rng.normal(0, 8, (height, width, channels))
    return np.clip(noisy, 0, 255).astype("uint8")


def encode(array, fmt, mode=None):
    image = Image.fromarray(array.squeeze())
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, quality=95)
    return out.getvalue()


# ----------------------------------------------- timm's logic in numpy/PIL
def timm_rrc_box(height, width, draws, scale, ratio, attempts=10):
    """timm's RandomResizedCropAndInterpolation.get_params, fed uniform draws."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for k in range(attempts):
        target_area = area * (scale[0] + (scale[1] - scale[0]) * draws[k])
        aspect = math.exp(
            log_ratio[0] + (log_ratio[1] - log_ratio[0]) * draws[attempts + k]
        )
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(draws[2 * attempts] * (height - h + 1))  # randint(0, H - h)
            j = int(draws[2 * attempts + 1] * (width - w + 1))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def timm_eval(image, size, crop_pct):
    """timm's eval transform on a PIL image: Resize(floor(size / crop_pct)), CenterCrop."""
    short = math.floor(size / crop_pct)
    width, height = image.size
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_h, new_w = short, int(short * width / height)
    image = image.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)), "float64")


@pytest.mark.backend_independent
def test_random_resized_crop_boxes_match_timm():
    rng = np.random.default_rng(0)
    cases = [((0.08, 1.0), (3 / 4, 4 / 3)), ((1.0, 1.0), (3 / 4, 4 / 3))]
    cases.append(((0.5, 1.0), (0.2, 0.4)))  # mostly fallback, on both sides
    for scale, ratio in cases:
        heights = rng.integers(20, 600, 300)
        widths = rng.integers(20, 600, 300)
        widths[:20] = heights[:20] * 5  # wide: fallback crops to max ratio
        draws = rng.random((300, 22))
        boxes = crops.random_resized_crop_box(
            tf.constant(heights), tf.constant(widths), tf.constant(draws), scale, ratio
        )
        got = np.stack([b.numpy() for b in boxes], 1)
        want = [
            timm_rrc_box(h, w, d, scale, ratio)
            for h, w, d in zip(heights, widths, draws, strict=True)
        ]
        np.testing.assert_array_equal(got, np.array(want))
    # scale (1, 1) on a square image: always the fallback, the whole image.
    box = crops.random_resized_crop_box(
        tf.constant(50),
        tf.constant(50),
        tf.constant(rng.random(22)),
        (1, 1),
        (0.75, 4 / 3),
    )
    assert [int(b) for b in box] == [0, 0, 50, 50]


@pytest.mark.backend_independent
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_train_crop_matches_pil(fmt):
    rng = np.random.default_rng(1)
    transform = TrainExampleTransform((56, 56), scale=(0.08, 1.0))
    for height, width in [(300, 400), (333, 250), (64, 80)]:
        data = encode(smooth_image(rng, height, width), fmt)
        seed = tf.constant([3, height], tf.int64)
        image, _ = transform(tf.constant(data), 0, seed)
        crop_seed = tf.random.experimental.stateless_split(seed, 3)[0]
        top, left, h, w = (int(v) for v in transform.crop_box(height, width, crop_seed))
        pil = Image.open(io.BytesIO(data)).convert("RGB")
        want = pil.crop((left, top, left + w, top + h)).resize((56, 56), Image.BICUBIC)
        diff = np.abs(image.numpy() - np.asarray(want, "float64"))
        # PNG: PIL's 8-bit rounding only. JPEG: libjpeg's partial decode of the
        # crop upsamples chroma differently on the crop's edge blocks.
        assert diff.mean() < (0.25 if fmt == "PNG" else 0.5), diff.mean()
        assert (diff > 2).mean() <= (0.0 if fmt == "PNG" else 0.01)


@pytest.mark.backend_independent
@pytest.mark.parametrize("crop_pct", [1.0, 0.875])
def test_eval_transform_matches_pil(crop_pct):
    rng = np.random.default_rng(2)
    transform = EvalExampleTransform((56, 56), crop_pct=crop_pct)
    for fmt in ("JPEG", "PNG"):
        for height, width in [(300, 400), (333, 250), (61, 80)]:
            data = encode(smooth_image(rng, height, width), fmt)
            image, _ = transform(tf.constant(data), 0)
            want = timm_eval(Image.open(io.BytesIO(data)).convert("RGB"), 56, crop_pct)
            diff = np.abs(image.numpy() - want)
            assert diff.max() <= 1 and diff.mean() < 0.25, (fmt, height, diff.max())


# ------------------------------------------------------------- a tiny folder
def make_folder(root, per_class=6, classes=("a", "b", "c"), bad=True, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                h, w = rng.integers(40, 90, 2)
                fmt = "JPEG" if i % 3 else "PNG"
                suffix = ".jpg" if fmt == "JPEG" else ".png"
                (folder / f"{i}{suffix}").write_bytes(
                    encode(smooth_image(rng, h, w), fmt)
                )
    if bad:
        train = root / "train"
        (train / "a" / "not_an_image.jpg").write_bytes(b"plain text, not a JPEG")
        (train / "a" / "notes.txt").write_text("not an image")
        jpeg = (train / "a" / "1.jpg").read_bytes()
        (train / "b" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
        png = (train / "a" / "0.png").read_bytes()
        (train / "b" / "truncated.png").write_bytes(png[: len(png) // 2])
        grey = smooth_image(rng, 50, 70, channels=1)
        (train / "c" / "grey.jpg").write_bytes(encode(grey, "JPEG"))
        (train / "c" / "cmyk.jpg").write_bytes(
            encode(smooth_image(rng, 50, 70), "JPEG", "CMYK")
        )
        (train / "c" / "rgba.png").write_bytes(
            encode(smooth_image(rng, 50, 70), "PNG", "RGBA")
        )
        (train / "d").mkdir()  # an empty class folder
        (root / "test" / "d").mkdir()
    return root


def _recipe(**augment):
    return Recipe.from_dict(
        {
            "learning_rate": 1e-3,
            "weight_decay": 0.0,
            "epochs": 1,
            "global_batch_size": 4,
            "augment": augment,
        }
    )


@pytest.mark.backend_independent
def test_bad_inputs_are_converted_or_skipped_and_counted(tmp_path):
    with pytest.warns(UserWarning, match="not"):
        data = image_folder(make_folder(tmp_path), (32, 32))
    # Listed: 18 good, a text file named .jpg, 2 truncated, grey, CMYK, RGBA.
    assert data.class_names == ["a", "b", "c", "d"] and data.num_train == 24
    augment = make_train_augment(_recipe(horizontal_flip=True), 32, 4, seed=0)
    batches = list(train_batches(data.records.train, augment, 4, seed=0, epochs=2))
    assert len(batches) == 2 * (24 // 4)  # every epoch full despite bad files
    for x, y in batches:
        assert x.shape == (4, 32, 32, 3) and np.isfinite(x.numpy()).all()
        assert y.shape == (4, 4)
    report = data.input_report()
    assert report["train_non_image_files"] == 1
    assert report["train_empty_class_folders"] == 1
    # The text file and the truncated PNG always fail to decode; the
    # truncated JPEG may be cut inside the image data (also undecodable).
    per_epoch = report["train_undecodable_files"] / 2
    assert per_epoch in (2, 3), report
    # Grey-scale, CMYK and RGBA images are decoded to RGB.
    test = eval_batches(data.records.test, make_eval_preprocess(_recipe(), 32, 4), 5)
    assert sum(int(x.shape[0]) for x, _ in test) == data.num_test == 18


@pytest.mark.backend_independent
def test_one_class_folder_and_folder_errors(tmp_path):
    data = image_folder(
        make_folder(tmp_path / "one", classes=("only",), bad=False), (32, 32)
    )
    assert data.num_classes == 1 and data.num_train == 6
    (tmp_path / "mismatch" / "train" / "a").mkdir(parents=True)
    (tmp_path / "mismatch" / "test" / "zzz").mkdir(parents=True)
    (tmp_path / "mismatch" / "train" / "a" / "x.png").write_bytes(
        encode(smooth_image(np.random.default_rng(0), 8, 8), "PNG")
    )
    with pytest.raises(ValueError, match="zzz"):
        image_folder(tmp_path / "mismatch", (32, 32))
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "a").mkdir(parents=True)
    with (
        pytest.warns(UserWarning, match="no image"),
        pytest.raises(FileNotFoundError, match="holds no"),
    ):
        image_folder(tmp_path / "empty", (32, 32))


@pytest.mark.backend_independent
def test_order_crops_and_flips_depend_only_on_seed_and_epoch(tmp_path):
    data = image_folder(make_folder(tmp_path, bad=False), (32, 32))
    recipe = _recipe(random_resized_crop_scale=[0.08, 1.0], horizontal_flip=True)
    augment = make_train_augment(recipe, 32, 3, seed=0)

    def run(seed, start):
        ds = train_batches(
            data.records.train, augment, 4, seed=seed, start_epoch=start, epochs=3
        )
        return [x.numpy() for x, _ in ds]

    full, resumed = run(7, 0), run(7, 1)
    steps = data.num_train // 4
    assert len(full) == 3 * steps and len(resumed) == 2 * steps
    for a, b in zip(full[steps:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(full[0], full[steps])  # epochs differ
    assert not np.array_equal(full[0], run(8, 0)[0])  # seeds differ


@pytest.mark.large
def test_fit_on_the_pipeline_keeps_batch_norm_on_its_fast_path(tmp_path, monkeypatch):
    from keras_spikformer.layers.batch_norm import BatchNorm
    from keras_spikformer.training.trainer import (
        _train_pipeline,
        build_model,
        preprocessors,
    )

    data = image_folder(make_folder(tmp_path, per_class=4, bad=False), (64, 64))
    recipe = Recipe.from_preset("spikformer_tiny_imagenet")
    model = build_model("spikformer_tiny_imagenet", num_classes=3)
    if hasattr(model, "apply_preprocessor"):
        model.apply_preprocessor = False
    train_aug, _ = preprocessors(recipe, model, 0, augment=True)
    ds = _train_pipeline(data, 4, 0, 0, 1, train_aug)
    assert all(None not in s.shape for s in ds.element_spec)
    fallbacks = []
    keras_call = keras.layers.BatchNormalization.call

    def spy(self, inputs, training=None, mask=None):
        if isinstance(self, BatchNorm) and training:
            fallbacks.append((self.name, tuple(inputs.shape)))
        return keras_call(self, inputs, training=training, mask=mask)

    monkeypatch.setattr(keras.layers.BatchNormalization, "call", spy)
    model.compile(
        optimizer="adam",
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=[],
    )
    model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
    uses = [layer for layer in model._flatten_layers() if isinstance(layer, BatchNorm)]
    assert uses, "the model has no BatchNorm: the test would prove nothing"
    assert not fallbacks, f"BatchNorm fell back to Keras' path: {fallbacks[:3]}"


@pytest.mark.backend_independent
def test_cutmix_and_erasing_follow_timm():
    from keras_spikformer.data.erasing import RandomErasing
    from keras_spikformer.data.mixing import MixUpCutMix

    rng = np.random.default_rng(3)
    images = tf.constant(rng.normal(size=(6, 20, 24, 3)), tf.float32)
    labels = tf.one_hot(np.arange(6), 6)
    cutmix = MixUpCutMix(0.0, 1.0, seed=0)
    for _ in range(3):
        mixed, mixed_labels = (t.numpy() for t in cutmix(images, labels))
        pasted = np.any(mixed != images.numpy(), axis=(0, 3))
        # Pixels come from the mirrored image inside one box, else unchanged.
        flipped = images.numpy()[::-1]
        np.testing.assert_array_equal(mixed[:, pasted], flipped[:, pasted])
        lam = 1 - pasted.sum() / pasted.size  # timm's corrected lam
        np.testing.assert_allclose(mixed_labels[0, 0], lam, atol=1e-6)
        np.testing.assert_allclose(mixed_labels[0, 5], 1 - lam, atol=1e-6)
    erase = RandomErasing(1.0, seed=0)
    erased = erase(images).numpy()
    for before, after in zip(images.numpy(), erased, strict=True):
        rows, cols = np.nonzero(np.any(after != before, axis=-1))
        assert len(rows) > 0 and (after[rows, cols] == 0).all()
        box = after[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert (box == 0).all()  # one rectangle
        area = box.shape[0] * box.shape[1] / (20 * 24)
        assert 0.02 - 0.01 <= area <= 1 / 3 + 0.05


@pytest.mark.large
@pytest.mark.backend_independent
def test_input_pipeline_benchmark_writes_its_record(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "input_pipeline.py"
    record_path = tmp_path / "record.json"
    for fmt in ("folder", "tfds"):
        subprocess.run(
            [sys.executable, str(script), "--num-images", "24", "--image-size", "64",
             "--batch-size", "8", "--seconds", "1", "--warmup-batches", "1",
             "--format", fmt, "--cache-dir", str(tmp_path / "cache"),
             "--json", str(record_path)],
            check=True, capture_output=True,
        )  # fmt: skip
        record = json.loads(record_path.read_text())
        assert record["format"] == fmt and record["cores"] >= 1
        assert record["train_images_per_second"] > 0
        assert record["eval_images_per_second"] > 0 and record["peak_rss_mb"] > 0
    assert len(list((tmp_path / "cache").rglob("*.JPEG"))) == 24 + 24


@pytest.mark.backend_independent
def test_unprepared_tfds_directory_gives_the_clear_error(tmp_path, monkeypatch):
    from keras_spikformer.data.image_datasets import tfds_images

    monkeypatch.setenv("KERAS_SPIKFORMER_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not prepared in .*tfds build"):
        tfds_images("cifar10", str(tmp_path), (32, 32))
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        tfds_images("cifar10", str(tmp_path / "a_file"), (32, 32))

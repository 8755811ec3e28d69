"""RandAugment: each op against PIL with timm's formulas; per-example draws."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from keras_spikformer.data.rand_augment import RAND_AUGMENT_OPS, RandAugment

FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean


def photo(height=37, width=53, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    waves = [128 + 100 * np.sin(x / 5 + c) * np.cos(y / 7 - c) for c in range(3)]
    noisy = np.stack(waves, -1) + rng.normal(0, 10, (height, width, 3))
    return np.clip(noisy, 0, 255).astype("uint8")


def timm_op(name, image, level, sign):
    """timm's `auto_augment.py` op at magnitude `10 * level`, on a PIL image."""
    width, height = image.size
    geo = dict(resample=Image.BILINEAR, fillcolor=FILL)
    enhance = max(0.1, 1.0 + sign * 0.9 * level)
    add = int(level * 110)
    ops = {
        "auto_contrast": lambda: ImageOps.autocontrast(image),
        "equalize": lambda: ImageOps.equalize(image),
        "invert": lambda: ImageOps.invert(image),
        "posterize": lambda: ImageOps.posterize(image, 4 - int(level * 4)),
        "solarize": lambda: ImageOps.solarize(image, 256 - int(level * 256)),
        "solarize_add": lambda: image.point(
            [min(255, i + add) if i < 128 else i for i in range(256)] * 3
        ),
        "color": lambda: ImageEnhance.Color(image).enhance(enhance),
        "contrast": lambda: ImageEnhance.Contrast(image).enhance(enhance),
        "brightness": lambda: ImageEnhance.Brightness(image).enhance(enhance),
        "sharpness": lambda: ImageEnhance.Sharpness(image).enhance(enhance),
        "rotate": lambda: image.rotate(sign * level * 30, **geo),
        "shear_x": lambda: image.transform(
            image.size, Image.AFFINE, (1, sign * level * 0.3, 0, 0, 1, 0), **geo
        ),
        "shear_y": lambda: image.transform(
            image.size, Image.AFFINE, (1, 0, 0, sign * level * 0.3, 1, 0), **geo
        ),
        "translate_x": lambda: image.transform(
            image.size,
            Image.AFFINE,
            (1, 0, sign * level * 0.45 * width, 0, 1, 0),
            **geo,
        ),
        "translate_y": lambda: image.transform(
            image.size,
            Image.AFFINE,
            (1, 0, 0, 0, 1, sign * level * 0.45 * height),
            **geo,
        ),
    }
    return np.asarray(ops[name](), "int32")


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", RAND_AUGMENT_OPS["timm"])
def test_each_op_gives_pils_pixels(name):
    ra = RandAugment(fill=FILL)
    array = photo()
    for level, sign in [(0.93, 1.0), (0.61, -1.0)]:
        got = ra.apply_op(
            name, tf.constant(array), tf.constant(level), tf.constant(sign)
        ).numpy()
        assert got.dtype == np.uint8 and got.shape == array.shape
        want = timm_op(name, Image.fromarray(array), level, sign)
        diff = np.abs(got.astype("int32") - want)
        # Pixel ops are PIL's integer formulas; the bilinear geometric ops
        # can differ by float rounding (a grey level on a rare pixel).
        assert diff.max() <= 1 and (diff > 0).mean() < 0.005, (name, diff.max())
        assert not np.array_equal(got, array) or name == "auto_contrast"


@pytest.mark.backend_independent
def test_augment_image_draws_depend_only_on_the_seed():
    ra = RandAugment(magnitude=9, num_ops=2, magnitude_std=0.5, prob=1.0)
    image = tf.constant(photo(40, 40, seed=1))
    outs = [ra.augment_image(image, [7, i]).numpy() for i in range(6)]
    again = ra.augment_image(image, [7, 0]).numpy()
    np.testing.assert_array_equal(outs[0], again)
    assert len({o.tobytes() for o in outs}) > 3  # different seeds, different ops
    assert all(o.dtype == np.uint8 and o.shape == (40, 40, 3) for o in outs)
    # prob 0: nothing applied. The batch call maps the same function.
    off = RandAugment(prob=0.0)
    np.testing.assert_array_equal(off.augment_image(image, [1, 2]).numpy(), image)
    batch = RandAugment(seed=0)(tf.stack([image, image]))
    assert batch.dtype == tf.float32 and batch.shape == (2, 40, 40, 3)


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", RAND_AUGMENT_OPS["timm"])
def test_compiled_augment_gives_the_op_by_op_pixels(name):
    # augment_image runs one XLA program for static shapes; it must give the
    # pixels of the op-by-op graph that test_each_op_gives_pils_pixels checks.
    ra = RandAugment(magnitude=9, num_ops=1, magnitude_std=0.5, ops=(name,), prob=1.0)
    image = tf.constant(photo())
    for i in range(3):
        got = ra.augment_image(image, [3, i]).numpy()
        seeds = tf.random.experimental.stateless_split(tf.constant([3, i], tf.int64), 2)
        draws = tf.random.stateless_uniform([1, 3], seeds[0])
        noise = tf.random.stateless_normal([1], seeds[1])
        want = ra._augment(image, draws, noise).numpy()
        diff = np.abs(got.astype("int32") - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.005, (name, diff.max())
        assert not np.array_equal(got, image.numpy()) or name == "auto_contrast"

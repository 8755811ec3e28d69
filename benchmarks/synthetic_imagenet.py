"""The synthetic ImageNet-format dataset of `input_pipeline.py`: JPEG folder and TFDS copy.

Written once under a cache directory (never committed): `folder/{train,val}/
<class>/*.JPEG` with 300-500 px sides and up to 1000 classes, and on demand a
prepared TFDS builder of the same files (ImageNet's feature layout).
"""

import time
from pathlib import Path

DATASET_VERSION = 2
TFDS_NAME = "synthetic_imagenet_jpeg"


def dataset_dir(cache_dir, num_images):
    """Where the dataset of `num_images` training images lives."""
    return Path(cache_dir) / f"v{DATASET_VERSION}_{num_images}"


def _synthetic_jpeg(rng, index, noise):
    """A photo-like JPEG: smooth colour waves plus noise; 300-500 px sides.

    The waves are separable (outer products of 1-D waves) and the noise is a
    random window of one shared noise tile, so that generating 20k images
    takes minutes, not an hour, on a loaded 2-core machine.
    """
    import io

    import numpy as np
    from PIL import Image

    height, width = (int(v) for v in rng.integers(300, 501, 2))
    freq = rng.uniform(0.01, 0.1, 6).astype("float32")
    y = np.arange(height, dtype="float32")[:, None]
    x = np.arange(width, dtype="float32")[None, :]
    waves = [
        np.sin(x * freq[c] + index) * np.cos(y * freq[c + 3] - c) for c in range(3)
    ]
    top, left = (int(v) for v in rng.integers(0, noise.shape[0] - 500, 2))
    image = np.stack(waves, -1) * 90 + 128
    image += noise[top : top + height, left : left + width]
    out = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype("uint8")).save(
        out, "JPEG", quality=90
    )
    return out.getvalue()


def generate(args):
    """Writes `folder/{train,val}/<class>/*.JPEG` (once; TFDS copy: `ensure_tfds`)."""
    import numpy as np

    root = dataset_dir(args.cache_dir, args.num_images)
    done = root / "DONE"
    if done.is_file():
        return root
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 12, (768, 768, 3)).astype("float32")
    num_classes = min(1000, args.num_images)
    num_val = max(num_classes, args.num_images // 20)
    started = time.time()
    for split, count in (("train", args.num_images), ("val", num_val)):
        for i in range(count):
            folder = root / "folder" / split / f"n{i % num_classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            image = _synthetic_jpeg(rng, i, noise)
            (folder / f"{split}_{i:08d}.JPEG").write_bytes(image)
    (root / "DONE").write_text(f"{time.time() - started:.0f} s\n")
    return root


def _tfds_builder_class():
    import tensorflow_datasets as tfds

    class SyntheticImagenetJpeg(tfds.core.GeneratorBasedBuilder):
        """The synthetic folder as a TFDS builder (ImageNet's feature layout)."""

        VERSION = tfds.core.Version("1.0.0")
        name = TFDS_NAME

        def __init__(self, *, folder=None, **kwargs):
            self._folder = folder
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(encoding_format="jpeg"),
                        "label": tfds.features.ClassLabel(num_classes=1000),
                        "file_name": tfds.features.Text(),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {
                "train": self._generate_examples(Path(self._folder) / "train"),
                "validation": self._generate_examples(Path(self._folder) / "val"),
            }

        def _generate_examples(self, split_dir):
            for path in sorted(split_dir.glob("*/*.JPEG")):
                label = int(path.parent.name[1:])
                yield (
                    path.name,
                    {
                        "image": str(path),
                        "label": label,
                        "file_name": path.name,
                    },
                )

    return SyntheticImagenetJpeg


def _prepare_tfds(root):
    """Prepares the TFDS copy of the folder (once)."""
    if (root / "TFDS_DONE").is_file():
        return
    builder = _tfds_builder_class()(folder=root / "folder", data_dir=str(root / "tfds"))
    builder.download_and_prepare()
    (root / "TFDS_DONE").write_text("prepared\n")

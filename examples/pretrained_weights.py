"""
Title: Predicting with the authors' pretrained weights
Author: keras-spikformer developers
Date created: 2026/12/07
Last modified: 2026/12/07
Description: One call loads the Spike-driven Transformer's published ImageNet checkpoint (downloaded, verified, converted and cached on first use); classify two photos with it.
Accelerator: None (the first run downloads the checkpoint; later runs read the cache)
"""

"""
## Introduction

The authors of the Spike-driven Transformer (Yao et al., NeurIPS 2023)
published their ImageNet checkpoints on Google Drive. `from_preset` knows
where (each zoo preset's `metadata.json` records a `weights_source`), so

```python
model = keras_spikformer.SpikeDrivenTransformer.from_preset("sdt_8_384_imagenet")
```

gives the trained 16.8M-parameter model. On the first call it downloads the
file (with a progress bar; Google Drive needs `pip install
"keras-spikformer[weights]"` for its confirmation page), converts it with the
torch-free converter (nothing in the file runs) and stores the converted
preset in the cache (`$KERAS_SPIKFORMER_CACHE`, by default
`~/.cache/keras_spikformer`). Every later call reads the cache and never
touches the network; `KERAS_SPIKFORMER_OFFLINE=1` makes that a rule.

Run it with `python examples/pretrained_weights.py [--preset NAME]
[--images A.jpg B.png]`. Without `--images` it classifies the two photos that
ship with scikit-learn.
"""

import argparse
import os
import time
from pathlib import Path

import keras
import numpy as np

import keras_spikformer as ks
from keras_spikformer import fetch

"""
## The images

Any photos of any size: the classifier's preprocessor resizes each one the
way the preset was evaluated (resize the shorter side, centre crop, the
ImageNet mean and std), so they go in as raw uint8 pixels.
"""


def load_images(paths):
    if not paths:
        from sklearn.datasets import load_sample_images

        sample = load_sample_images()
        names = [Path(f).name for f in sample.filenames]
        return names, list(sample.images)
    images = [
        keras.utils.img_to_array(keras.utils.load_img(p), dtype="uint8") for p in paths
    ]
    return [Path(p).name for p in paths], images


"""
## ImageNet's class ids

TensorFlow Datasets ships ImageNet's 1000 WordNet ids in class order; we print
those beside each class index (no download needed).
"""


def class_ids(num_classes):
    if num_classes != 1000:
        return None
    import tensorflow_datasets as tfds

    path = Path(tfds.__file__).parent / "datasets" / "imagenet2012" / "labels.txt"
    return path.read_text().split() if path.is_file() else None


"""
## Load, predict, and look at the cache
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--preset", default="sdt_8_384_imagenet")
    parser.add_argument("--images", nargs="*", default=None)
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args(argv)

    started = time.time()
    model = ks.ImageClassifier.from_preset(args.preset)  # fetched on first use
    first = time.time() - started
    conversion = model.preset_metadata.get("conversion", {})
    print(
        f"{type(model).__name__} from {args.preset} in {first:.1f} s; weights: "
        f"{model.preset_metadata.get('weights')}"
    )
    if conversion:
        print(f"converted checkpoint: sha256 {conversion['sha256'][:16]}...")
    print(f"cache: {fetch.settings.cache_dir()}")

    names, images = load_images(args.images)
    logits = model.predict(images, verbose=0)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    ids = class_ids(probabilities.shape[-1])
    results = {}
    for name, p in zip(names, probabilities, strict=True):
        top = np.argsort(p)[::-1][: args.top]
        results[name] = [(int(k), float(p[k])) for k in top]
        shown = ", ".join(
            f"{k}{f' ({ids[k]})' if ids else ''}: {p[k]:.3f}" for k in top
        )
        print(f"{name}: {shown}")

    # A second `from_preset` reads the converted preset from the cache: no
    # download, no conversion.
    started = time.time()
    ks.ImageClassifier.from_preset(args.preset)
    print(f"second from_preset: {time.time() - started:.1f} s (from the cache)")
    return results


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
